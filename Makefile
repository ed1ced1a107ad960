# Two commands for a fresh machine: `make demo` and `make test`. Everything else is installed here.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LAYERS := layers/build/sizes.json

.PHONY: install check test test-fast demo bench layers lint clean build deploy mutate smoke

$(STAMP): requirements/lambda.txt requirements/plot.txt requirements/parquet.txt requirements/dev.txt pyproject.toml
	@echo "Setting up $(VENV) (first run only: a few minutes, ~1.2 GB; pip's progress follows)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar on -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# the Lambda layers (python3.12 arm64 wheels); fails if a function exceeds Lambda's 250 MB
$(LAYERS): $(STAMP) layers/build.py requirements/lambda.txt requirements/plot.txt requirements/parquet.txt
	$(PY) layers/build.py

# lint (pyflakes, pycodestyle, import order, pyupgrade, bugbear) and type-check src/ before the tests
check: $(STAMP)
	$(VENV)/bin/ruff check src
	$(VENV)/bin/mypy

test: check $(STAMP) $(LAYERS)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(PY) -m sandbox.demo --out demo-output

# e.g. make bench BENCH_ARGS="--repeats 1" on a busy machine (python -m bench.run --help)
bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

layers: $(STAMP)
	$(PY) layers/build.py

# mutation testing (not CI): prints the mutants no test kills; see [tool.mutmut] in pyproject.toml.
# MUTANTS='core.science.l2p.x__valid_range*' restricts the run (fnmatch on mutant names)
mutate: $(STAMP)
	$(PY) -m pip install -q -r requirements/mutate.txt
	rm -rf mutants
	HYPOTHESIS_PROFILE=mutate COLOC_SCENE_CACHE=$(CURDIR)/.sandbox-cache $(VENV)/bin/mutmut run --max-children $${MUTATE_JOBS:-2} $(MUTANTS) || true
	$(VENV)/bin/mutmut results
	$(VENV)/bin/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json

lint: check
	$(VENV)/bin/cfn-lint template.yaml

# Deploying (needs AWS credentials for us-west-2): the layers first, so `sam build` never
# packages a template whose layer folders do not exist (that only fails at upload time).
DEPLOY_VENV := .venv-deploy
SAM         := $(DEPLOY_VENV)/bin/sam

$(SAM): requirements/deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install -q -r requirements/deploy.txt
	touch $(SAM)

build: $(LAYERS) $(SAM)
	$(SAM) validate --lint
	$(SAM) build

deploy: build
	$(SAM) deploy --guided

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) demo-output smoke-output layers/build .cache build .aws-sam *.egg-info mutants

# the seed case against the real NASA services (needs Earthdata credentials; skipped without)
smoke: $(STAMP)
	$(PY) -m tools.smoke --out smoke-output

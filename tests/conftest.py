"""Shared fixtures. Area-specific fixtures live in the test modules or in tests/<area>_fixtures.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import Phase, settings

# `make mutate`: a failing example is enough to kill a mutant; shrinking it would only time out
settings.register_profile("mutate", phases=[Phase.explicit, Phase.reuse, Phase.generate])
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

# Unit tests run on plain loopback whatever the shell exports; the tests that measure I/O ask
# for a modelled sandbox explicitly (tests/sandbox/test_netmodel.py, the ``modelled_sandbox`` fixture).
os.environ.pop("COLOC_SANDBOX_NETWORK", None)

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO / "tests" / "data" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Real NASA files copied from ../shared/realdata (ATL07 subsets, L2P subsets, CMR JSON, notes)."""
    assert REALDATA.is_dir(), f"missing test data at {REALDATA}"
    return REALDATA

# Sandbox fixtures (moto server + Earthdata emulator + seed scene), the fault sandbox, and the
# handlers' environment (handler_environment).
pytest_plugins = ["tests.sandbox_fixtures", "tests.faults_fixtures", "tests.handler_fixtures"]

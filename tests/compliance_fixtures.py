"""The IOOS compliance checker's verdict on a written product (CF-1.8, ACDD-1.3): its high-priority
failures and its errors.

Apart from tests/product_fixtures.py on purpose: that module also runs inside the Lambda layer
closure (tests/deploy/test_layers.py), which must not load compliance_checker."""
from __future__ import annotations

from compliance_checker.base import BaseCheck

CHECKS = ["cf:1.8", "acdd:1.3"]


def compliance_failures(cs, path):
    ds = cs.load_dataset(str(path))
    results = cs.run_all(ds, CHECKS, skip_checks=[])
    assert set(results) == {"cf:1.8", "acdd:1.3"}, results.keys()
    failures, errors = [], []
    for name, (groups, errs) in results.items():
        errors += [f"{name}: {k}: {v}" for k, v in errs.items()]
        for r in groups:
            bad = r.value is False or (isinstance(r.value, tuple) and r.value[0] < r.value[1])
            if bad and r.weight >= BaseCheck.HIGH:
                failures.append(f"{name} [{r.name}] {r.msgs}")
    return failures, errors

"""Property: under any mix of injected faults, a date ends either complete with exactly one result,
or in a named ColocationError with nothing of the request in the output bucket.

Hypothesis draws a fault plan (transient or persistent faults on CMR, TEA/S3 downloads,
/s3credentials, in-place S3 reads and the output bucket) and runs the production run_task.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from core.errors import ColocationError
from sandbox.emulator import s3_error_fault
from tests import faults_fixtures as ff
from tests.pipeline_fixtures import run_date

pytestmark = pytest.mark.slow  # ~3 s per drawn plan

times = st.one_of(st.integers(1, 3), st.none())  # None: until removed (persistent)
FAULTS = st.one_of(
    st.builds(lambda s, n: ("/search/granules.umm_json", dict(app="cmr", status=s, times=n)),
              st.sampled_from([429, 500, 503]), times),
    st.builds(lambda b, n: ("/search/granules.umm_json", dict(app="cmr", body=b, content_type="application/json",
                                                             times=n)),
              st.sampled_from(['{"items": [{"meta": ', '{"feed": {}}']), st.integers(1, 2)),
    st.builds(lambda k, v, n: ("/nsidc-cumulus-prod-protected/", dict(app="s3", **{k: v}, times=n)),
              st.sampled_from(["truncate_to", "drop_after"]), st.integers(0, 8 << 20), st.integers(1, 3)),
    st.builds(lambda s, n: ("/nsidc-cumulus-prod-protected/", dict(app="nsidc", status=s, times=n)),
              st.sampled_from([401, 404, 500, 503]), times),
    st.builds(lambda b, n: ("/s3credentials", dict(app="podaac", body=b, content_type="application/json", times=n)),
              st.sampled_from(["", "{}", '{"accessKeyId": "x"}']), times),
    st.builds(lambda s, n: ("/s3credentials", dict(app="podaac", status=s, times=n)),
              st.sampled_from([500, 503]), times),
    st.builds(lambda c, n: ("/podaac-ops-cumulus-protected/", dict(app="s3api", method="GET", **s3_error_fault(c),
                                                                  times=n)),
              st.sampled_from(["SlowDown", "InternalError"]), st.integers(1, 2)),
    st.builds(lambda c, n: ("/podaac-ops-cumulus-protected/", dict(app="s3api", **s3_error_fault(c), times=n)),
              st.sampled_from(["AccessDenied", "NoSuchKey"]), times),
    st.builds(lambda n: ("/podaac-ops-cumulus-protected/", dict(app="s3api", method="GET", truncate_to=4096,
                                                               times=n)), times),
)


@pytest.fixture(scope="module")
def sb(sandbox_scene, tmp_path_factory):
    return ff.fault_sandbox(sandbox_scene, tmp_path_factory)


@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(FAULTS, min_size=1, max_size=3))
def test_any_fault_plan_ends_complete_or_named_and_clean(sb, plan):
    ff.reset(sb)
    try:
        for prefix, rule in plan:
            sb.faults.add(prefix, **rule)
        t = ff.task(sb)
        try:
            manifest = run_date(t, ff.services(sb))
        except ColocationError as exc:
            assert str(exc), plan
            ff.assert_nothing_written(sb, t)
        else:
            ff.assert_one_complete_result(sb, t, manifest)
    finally:
        ff.reset(sb)

"""The seed case run "in region" (L2P in place from S3) and "outside the region" (L2P over HTTPS
range requests on the URL TEA redirects to: CloudFront, with a second hop) gives identical
colocation results, and the manifest says which path each granule took."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from core.access.earthdata import StaticToken
from core.config import ConfigError, Settings
from core.jobs.date_plan import plan
from core.pipeline.services import build_services, l2p_access
from core.request import parse_request
from tests.pipeline_fixtures import run_date
from tests.sandbox_fixtures import caller_kept_in_place

SEED = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22", "radius_m": 1000.0}


def _run(sb, prefix: str, tmp_path):
    settings = sb.settings.replace(output_prefix=prefix)
    services = build_services(settings, token_provider=StaticToken(sb.edl_token), s3_client=sb.boto3_client("s3"))
    manifest = run_date(plan(parse_request(SEED, settings))[0], services)
    s3 = sb.boto3_client("s3")
    products = {}
    for key in manifest["outputs"]:
        if key.endswith("_sst.nc"):
            path = tmp_path / f"{prefix}-{key.rsplit('/', 1)[-1]}"
            s3.download_file(settings.output_bucket, key, str(path))
            products[key.rsplit("/", 1)[-1]] = xr.load_dataset(path)
    return manifest, products


@pytest.fixture(scope="module")
def both_runs(sandbox, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("in-and-out")
    state = sandbox.state
    with caller_kept_in_place(sandbox):
        sandbox.set_in_region(True)
        state.requests.clear()
        inside = _run(sandbox, "in-region", tmp_path)
        inside_requests = list(state.requests)
        sandbox.set_in_region(False)
        state.cloudfront_hops = 2
        state.requests.clear()
        outside = _run(sandbox, "outside-region", tmp_path)
        outside_requests = list(state.requests)
    return inside, inside_requests, outside, outside_requests


def test_seed_case_gives_identical_matches_in_and_outside_the_region(both_runs, sandbox):
    (m_in, nc_in), _, (m_out, nc_out), _ = both_runs
    assert m_in["status"] == m_out["status"] == "complete"
    assert m_in["counts"] == m_out["counts"] and m_in["counts"]["matched"] > 0
    assert sorted(nc_in) == sorted(nc_out) and nc_in
    for name, ds in nc_in.items():
        other = nc_out[name]
        assert sorted(ds.data_vars) == sorted(other.data_vars)
        for var in ds.data_vars:
            np.testing.assert_array_equal(ds[var].values, other[var].values, err_msg=f"{name}:{var}")
    # the same blocks were read either way: the block cache is the same
    per_in, per_out = m_in["bytes"]["sst_per_granule"], m_out["bytes"]["sst_per_granule"]
    assert sorted(per_in) == sorted(per_out)
    for title in per_in:
        assert per_in[title]["bytes_fetched"] == per_out[title]["bytes_fetched"], title
        assert per_in[title]["window"] == per_out[title]["window"], title


def test_the_manifest_says_which_path_each_granule_took(both_runs, sandbox):
    (m_in, _), _, (m_out, _), _ = both_runs
    assert {r["access"] for r in m_in["bytes"]["sst_per_granule"].values()} == {"s3"}
    out = m_out["bytes"]["sst_per_granule"].values()
    assert {r["access"] for r in out} == {"https"}
    assert all(r["resolves"] == 1 for r in out)  # TEA's redirect resolved once per granule
    assert {r["resolved_host"] for r in out} == {sandbox.servers["cloudfront2"].host}


def test_outside_the_region_no_s3_credentials_are_asked_for_and_no_token_reaches_cloudfront(both_runs, sandbox):
    _, inside, _, outside = both_runs
    assert any(r.path == "/s3credentials" for r in inside)
    assert not any(r.path == "/s3credentials" for r in outside)
    cloudfront = [r for r in outside if r.app.startswith("cloudfront")]
    assert cloudfront and all("Authorization" not in r.headers and "Cookie" not in r.headers for r in cloudfront)
    # at TEA, per L2P granule read: one resolving request, and its DMR++ sidecar (published
    # beside the granule); every range of the granule itself then goes to CloudFront only
    tea_l2p = [r for r in outside if r.app == "podaac"]
    granule_requests = [r for r in tea_l2p if not r.path.endswith(".dmrpp")]
    assert granule_requests and all(r.headers.get("Range") == "bytes=0-0" for r in granule_requests)
    read = set(both_runs[2][0]["bytes"]["sst_per_granule"])
    assert read and len(granule_requests) == len(read) == len({r.path for r in tea_l2p if r.path.endswith(".dmrpp")})


@pytest.mark.parametrize("mode, region, want", [
    ("auto", "us-west-2", "s3"), ("auto", "eu-west-1", "https"), ("auto", None, "https"),
    ("s3", None, "s3"), ("https", "us-west-2", "https"),
])
def test_l2p_access_auto_follows_aws_region(monkeypatch, mode, region, want):
    if region is None:
        monkeypatch.delenv("AWS_REGION", raising=False)
    else:
        monkeypatch.setenv("AWS_REGION", region)
    assert l2p_access(Settings().replace(l2p_access=mode)) == want


def test_l2p_access_rejects_other_values():
    # refused when the settings are built (a handler's cold start), naming the variable
    with pytest.raises(ConfigError, match="COLOC_L2P_ACCESS: Input should be 's3', 'https' or 'auto'"):
        Settings.from_env({"COLOC_L2P_ACCESS": "ftp"})
    with pytest.raises(ConfigError, match="l2p_access"):
        Settings().replace(l2p_access="ftp")
    assert Settings().l2p_access == "auto"

"""Settings validate themselves: COLOC_* values are checked when the settings are built (a
handler's cold start), a bad one is refused naming its variable, and the environment round trip
the sandbox relies on (comma-separated tuples, JSON mappings) holds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ATL07_ACCESS, L2P_ACCESS, ConfigError, Settings

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_environment_round_trip_keeps_every_setting():
    s = Settings().replace(earthdata_hosts=("a.example", "b.example"), s3_endpoint_url="http://127.0.0.1:5000",
                           s3credentials_endpoints={"POCLOUD": "http://127.0.0.1:1/s3credentials"},
                           http_retries=0, radius_m=750.5, l2p_access="https")
    env = s.to_env()
    assert env["COLOC_EARTHDATA_HOSTS"] == "a.example,b.example"
    assert env["COLOC_S3CREDENTIALS_ENDPOINTS"] == '{"POCLOUD": "http://127.0.0.1:1/s3credentials"}'
    assert Settings.from_env(env) == s
    assert Settings.from_env({}) == Settings()


def test_values_are_parsed_as_before():
    s = Settings.from_env({"COLOC_EARTHDATA_HOSTS": " a.example, b.example ,", "COLOC_S3_ENDPOINT_URL": "",
                           "COLOC_RADIUS_M": "500", "COLOC_HTTP_RETRIES": "2", "COLOC_ATL07_ACCESS": "direct",
                           "coloc_output_bucket": "lower-case-name-works"})
    assert s.earthdata_hosts == ("a.example", "b.example")
    assert s.s3_endpoint_url is None  # empty: boto3's default endpoint
    assert (s.radius_m, s.http_retries, s.atl07_access, s.output_bucket) == (500.0, 2, "direct", "lower-case-name-works")


def test_settings_without_from_env_ignore_the_process_environment(monkeypatch):
    monkeypatch.setenv("COLOC_RADIUS_M", "7")
    assert Settings().radius_m == 1000.0
    assert Settings.from_env().radius_m == 7.0


@pytest.mark.parametrize("name, value, message", [
    ("COLOC_L2P_ACCESS", "ftp", "Input should be 's3', 'https' or 'auto'"),
    ("COLOC_ATL07_ACCESS", "stream", "Input should be 'download', 'direct' or 'auto'"),
    ("COLOC_HTTP_RETRIES", "five", "valid integer"),
    ("COLOC_RADIUS_M", "0", "greater than 0"),
    ("COLOC_MIN_QUALITY_LEVEL", "6", "less than or equal to 5"),
    ("COLOC_PRESIGN_EXPIRY_S", str(8 * 86400), "less than or equal to 604800"),
    ("COLOC_CMR_URL", "cmr.earthdata.nasa.gov", "should match pattern"),
    ("COLOC_S3CREDENTIALS_ENDPOINTS", "POCLOUD=https://x", "must be a JSON object"),
    ("COLOC_S3CREDENTIALS_ENDPOINTS", "[1, 2]", "valid dictionary"),
    ("COLOC_SST_COLLECTION", "MODIS Aqua", "must be a CMR concept id"),
])
def test_a_bad_value_is_refused_naming_its_variable(name, value, message):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert f"{name}: " in str(info.value) and message in str(info.value)
    assert value not in str(info.value) or value.isdigit()  # the value is not echoed


def test_replace_validates_like_the_environment():
    s = Settings()
    assert s.replace(l2p_access="s3").l2p_access == "s3" and s.l2p_access == "auto"
    with pytest.raises(ConfigError, match="l2p_access: Input should be"):
        s.replace(l2p_access="ftp")
    with pytest.raises(ConfigError, match="no_such_setting: Extra inputs are not permitted"):
        s.replace(no_such_setting=1)
    with pytest.raises(Exception):
        s.radius_m = 5.0  # frozen
    assert set(ATL07_ACCESS) == {"download", "direct", "auto"} and set(L2P_ACCESS) == {"s3", "https", "auto"}


@pytest.mark.parametrize("module", ["handlers.api", "handlers.colocate"])
def test_a_bad_variable_fails_the_handlers_cold_start(module):
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLOC_L2P_ACCESS": "ftp", "AWS_DEFAULT_REGION": "us-west-2",
           "POWERTOOLS_TRACE_DISABLED": "1"}
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert "ConfigError: invalid settings: COLOC_L2P_ACCESS: Input should be 's3', 'https' or 'auto'" in out.stderr
    env["COLOC_L2P_ACCESS"] = "https"
    assert subprocess.run([sys.executable, "-c", f"import {module}"], env=env).returncode == 0


def test_requests_settings_and_searches_accept_one_collection_syntax():
    from pydantic import ValidationError

    from core.access.catalog import parse_collection
    from core.errors import InputError
    from core.request import ColocationRequest

    seed = {"bbox": [-62.8, 81.7, -56.4, 83.0], "date": "2019-06-22"}
    good = ["C1940473819-POCLOUD", "ATL07.007", "ATL07/007", "ATL07/007/NSIDC_CPRD", "MODIS_A-JPL-L2P-v2019.0",
            "MODIS_A-JPL-L2P-v2019.0/2019.0", "VIIRS_N20-OSPO-L2P-v2.61"]
    bad = ["ATL07", "c123-nsidc", "C1940473819-POCLOUD&provider=EVIL", "my favourite SST", "ATL07/", "a/b/c/d"]
    for c in good:
        assert ColocationRequest.model_validate({**seed, "sst_collection": c}).sst_collection == c
        assert Settings().replace(sst_collection=c).sst_collection == c
        parse_collection(c)
    for c in bad:
        with pytest.raises(ValidationError):
            ColocationRequest.model_validate({**seed, "sst_collection": c})
        with pytest.raises(ConfigError):
            Settings().replace(sst_collection=c)
        with pytest.raises(InputError):
            parse_collection(c)

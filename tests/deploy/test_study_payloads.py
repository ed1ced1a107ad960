"""A study's dates through the real state machine (issue 23): many ATL07 granules a date, every
date published, and state payloads that do not grow with the granules (the product keys live
in each date's manifest; a Map item's result carries keys of the date and counts only)."""
from __future__ import annotations

import json

import pytest

from bench import scale
from bench.study import named_copies

pytestmark = pytest.mark.slow

K = 12  # ATL07 granules listed for the data date (the cut scene's two, under 6 names each)
DATES = ("2019-06-21", "2019-06-23")


@pytest.fixture(scope="module")
def study_sandbox(sandbox_scene, tmp_path_factory):
    from sandbox.services import Sandbox

    with Sandbox(named_copies(sandbox_scene, K), workdir=tmp_path_factory.mktemp("study")) as sb:
        yield sb


def test_many_granules_a_date_through_the_inline_map_keep_payloads_small(study_sandbox, handler_environment):
    from core.manifest import RunManifest
    from sandbox.deployment import deployed_state_machine, lambda_environment

    sb = study_sandbox
    handler_environment({**lambda_environment(sb), "HOME": str(sb.workdir)},
                        drop=("EARTHDATA_USERNAME", "EARTHDATA_PASSWORD", "NETRC"))
    request = {"bbox": [-62.8, 81.7, -56.4, 83.0], "start": DATES[0], "end": DATES[1]}
    with deployed_state_machine(sb) as stack:
        desc = stack.run(request, timeout_s=900)
        events = scale._history(stack.sfn, desc["executionArn"])
    assert desc["status"] == "SUCCEEDED", desc
    output = json.loads(desc["output"])
    assert output["n_dates"] == 3 and output["n_failed"] == 0, output
    # Plan kept every date (ATL07 has data from 2018-10-13, MODIS from 2002) and said so
    assert output["trim"] == {"requested": 3, "kept": 3, "first": DATES[0], "last": DATES[1], "reasons": []}

    # every date published; the data date's K products (each with its PNG and pixel table) are listed by its manifest and the run's
    s3, bucket = sb.boto3_client("s3"), sb.settings.output_bucket
    run = RunManifest.model_validate(json.loads(s3.get_object(Bucket=bucket, Key=output["manifest_key"])["Body"]
                                                .read()))
    assert [d.date for d in run.dates] == ["2019-06-21", "2019-06-22", "2019-06-23"]
    assert all(d.status == "complete" and d.manifest_key for d in run.dates)
    for d in run.dates:
        s3.head_object(Bucket=bucket, Key=d.manifest_key)
    data_date = run.dates[1]
    assert len([k for k in data_date.outputs if k.endswith("_sst.nc")]) == K, data_date.outputs

    # what travelled through the state: no granule's product key anywhere, the largest payload far under
    # the 256 KiB quota (a tenth of it is the bound for any request)
    payloads = scale.state_payloads(events)
    texts = [d.get("input") or d.get("output") or "" for e in events for k, d in e.items()
             if k.endswith("EventDetails") and isinstance(d, dict)]
    assert texts and not any("_sst.nc" in t or "_sst.png" in t for t in texts)  # per-granule products
    largest = max(payloads, key=lambda r: r["bytes"])
    assert largest["bytes"] < 0.10 * scale.PAYLOAD_LIMIT_BYTES, largest
    # the inline Map's result array holds each date's result once, of the same size with or without data
    map_out = next(json.loads(d["output"]) for e in events for k, d in e.items()
                   if k.endswith("EventDetails") and isinstance(d, dict) and d.get("name") == "DatesInline"
                   and "output" in d)
    sizes = [len(json.dumps(r)) for r in map_out["results"]]
    assert max(sizes) < 2 * min(sizes) < 4096, sizes

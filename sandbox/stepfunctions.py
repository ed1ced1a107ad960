"""Step Functions in the sandbox: where moto's executor differs from AWS, make it answer as AWS.

moto (5.2.5) executes the real definition, but a Distributed Map's ``ResultWriter`` only writes
an empty ``manifest.json`` (its source says "TODO: generate result files"). AWS writes the
children's results as well: ``<Prefix>/<map run id>/manifest.json`` lists ``SUCCEEDED_<n>.json``
(and ``FAILED_``/``PENDING_``) files, each a JSON array of child executions with their
``Input``/``Output`` as JSON strings (Step Functions developer guide, "ResultWriter (Map)").
:func:`aws_result_writer` writes them the same way, so the state machine's Summarize step reads
in the sandbox what it reads in AWS (e.g. a failed date's one-line error, recorded by the
child's Catch and therefore a SUCCEEDED child output).

    monkeypatch.setattr(ResourceEvalS3, "_handle_put_object", staticmethod(aws_result_writer))
"""
from __future__ import annotations

import json
from datetime import UTC, datetime


def aws_result_writer(env, resource_runtime_part, state_credentials) -> None:
    """Replacement for moto's ``ResourceEvalS3._handle_put_object`` (same stack protocol)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval.resource_eval_s3 import (  # noqa: E501
        ResourceEvalS3,
    )

    parameters = env.stack.pop()
    results = env.stack.pop()  # the Map's output: one entry per child execution
    s3 = ResourceEvalS3._get_s3_client(resource_runtime_part=resource_runtime_part,
                                       state_credentials=state_credentials)
    record = env.map_run_record_pool_manager.get_all().pop()
    prefix = parameters["Prefix"]
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    base = prefix + record.map_run_arn.split(":")[-1] + "/"
    now = datetime.now(UTC).isoformat()
    files: dict[str, list] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
    rows = [{"ExecutionArn": f"{record.map_run_arn}:{i}", "Name": str(i), "Status": "SUCCEEDED",
             "Input": "{}", "Output": json.dumps(r), "StartDate": now, "StopDate": now}
            for i, r in enumerate(results or [])]
    if rows:
        body = json.dumps(rows).encode()
        key = base + "SUCCEEDED_0.json"
        s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=body)
        files["SUCCEEDED"].append({"Key": key, "Size": len(body)})
    manifest_key = base + "manifest.json"
    s3.put_object(Bucket=parameters["Bucket"], Key=manifest_key, Body=json.dumps(
        {"DestinationBucket": parameters["Bucket"], "MapRunArn": record.map_run_arn,
         "ResultFiles": files}, indent=2).encode())
    env.stack.append({"MapRunArn": record.map_run_arn,
                      "ResultWriterDetails": {"Bucket": parameters["Bucket"], "Key": manifest_key}})

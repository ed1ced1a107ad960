"""``python -m sandbox.invoke events/<name>.json``: drive an entry point offline, print what a
caller would see.

The event decides the entry point:

* an API Gateway proxy event (``httpMethod``): ``handlers.api``; a POST that starts a job is
  followed by GETs of its ``status_url`` until the job is no longer running — the execution
  runs the real state machine in moto with its Lambda tasks in this process
  (sandbox.deployment, as the end-to-end tests deploy it);
* a Step Functions input (a request with ``start``/``end``, ``events/stepfunctions_input.json``):
  ``StartExecution`` of that state machine, then ``DescribeExecution`` until it ends;
* anything else (``events/direct.json``, a Map item such as ``events/sfn_task.json``):
  ``handlers.colocate``, as ``aws lambda invoke`` would call ColocateFunction.

Everything runs against the sandbox over the seed scene (built once into .sandbox-cache/);
the functions get the environment template.yaml gives them, pointed at the sandbox.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_S = 0.5


ENTRY_POINTS = ("direct", "api", "stepfunctions")


def entry_point(event: Any, name: str = "") -> str:
    """``api`` for an API Gateway proxy event, ``stepfunctions`` for a file named so (a state
    machine input is a request, as a direct event is), else ``direct``."""
    if isinstance(event, dict) and "httpMethod" in event and "requestContext" in event:
        return "api"
    if name.startswith("stepfunctions"):
        return "stepfunctions"
    return "direct"


def _show(out: Callable[[str], None], title: str, body: Any) -> None:
    out(title)
    out(json.dumps(body, indent=2, default=str))


def invoke_direct(event: Any, out: Callable[[str], None]) -> int:
    from sandbox.deployment import call_handler

    payload, is_error = call_handler("ColocateFunction", "handlers.colocate.handler", event)
    _show(out, "ColocateFunction → " + ("FunctionError: Unhandled" if is_error else "StatusCode 200"),
          json.loads(payload))
    return 1 if is_error else 0


def _api_call(event: dict) -> tuple[int, dict]:
    from handlers.api import handler
    from sandbox.lambda_context import LambdaContext

    resp = handler(event, LambdaContext("ApiFunction"))
    try:
        body = json.loads(resp.get("body") or "null")
    except ValueError:
        body = resp.get("body")
    return resp["statusCode"], body


def _get_event(post: dict, job_id: str) -> dict:
    """The GET a caller sends to the status_url, in the shape API Gateway hands the function."""
    event = copy.deepcopy(post)
    path = f"/colocations/{job_id}"
    stage = (post.get("requestContext") or {}).get("stage")
    event.update(httpMethod="GET", path=path, resource="/colocations/{job_id}", body=None,
                 pathParameters={"job_id": job_id}, isBase64Encoded=False)
    ctx = event.setdefault("requestContext", {})
    ctx.update(httpMethod="GET", resourcePath="/colocations/{job_id}",
               path=f"/{stage}{path}" if stage else path)
    return event


def invoke_api(event: dict, out: Callable[[str], None], *, timeout_s: float) -> int:
    status, body = _api_call(event)
    _show(out, f"{event.get('httpMethod')} {event.get('path')} → {status}", body)
    job = body.get("job_id") if isinstance(body, dict) else None
    if event.get("httpMethod") != "POST" or status not in (200, 202, 409) or not job:
        return 0 if status < 400 else 1
    get = _get_event(event, job)
    url = body.get("status_url") or get["path"]
    deadline = time.monotonic() + timeout_s
    shown_running = False
    while True:
        status, body = _api_call(get)
        running = status == 200 and body.get("status") == "running"
        if not running or not shown_running:
            _show(out, f"GET {url} → {status}", body)
            shown_running = shown_running or running
        if not running:
            return 0 if status == 200 and body.get("status") == "complete" else 1
        if time.monotonic() > deadline:
            out(f"still running after {timeout_s:.0f} s")
            return 1
        time.sleep(POLL_S)


def invoke_stepfunctions(stack, event: Any, out: Callable[[str], None], *, timeout_s: float) -> int:
    desc = stack.run(event, name=f"invoke-{uuid.uuid4().hex[:12]}", timeout_s=timeout_s)
    shown = {k: desc.get(k) for k in ("executionArn", "status", "startDate", "stopDate", "error", "cause")
             if desc.get(k) is not None}
    if desc.get("output"):
        shown["output"] = json.loads(desc["output"])
    _show(out, f"StartExecution → DescribeExecution: {desc['status']}", shown)
    return 0 if desc["status"] == "SUCCEEDED" and not (shown.get("output") or {}).get("n_failed") else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("event", help="an event file, e.g. events/api_post.json")
    parser.add_argument("--entry", choices=ENTRY_POINTS,
                        help="the entry point (default: from the event: an API Gateway event → api, "
                             "stepfunctions*.json → stepfunctions, else direct)")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="longest wait for a job (default: 600 s)")
    parser.add_argument("--scene", choices=("full", "cut"), default="full",
                        help="the real-size seed scene, or its ATL07 tracks cut to ±200 km (default: full)")
    parser.add_argument("--logs", action="store_true", help="the functions' INFO logs too (JSON, stdout)")
    parser.add_argument("--fault", action="append", default=[], type=fault_spec, metavar="APP[/PATH]=STATUS",
                        help="an upstream answers STATUS to every request under PATH (e.g. nsidc=503: the ATL07 "
                             "DAAC is down; apps: " + ", ".join(FAULT_APPS) + "); with an API POST the job fails, "
                             "then the fault is lifted and the same request is POSTed again, as the status's "
                             "rerun hint says (repeatable)")
    args = parser.parse_args(argv)
    path = Path(args.event)
    try:
        event = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"invoke: error: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    kind = args.entry or entry_point(event, path.name)

    # before the handlers are imported: Powertools reads these when its objects are made
    os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO" if args.logs else "ERROR"
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF blobs between the answers
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    from sandbox.deployment import deployed_state_machine, lambda_environment
    from sandbox.services import seed_sandbox

    def out(line: str) -> None:
        print(line, flush=True)

    out(f"Starting the sandbox (synthetic {args.scene} seed scene, moto, CMR and Earthdata emulators)…")
    with seed_sandbox(extent=args.scene) as sb, contextlib.ExitStack() as stack:
        os.environ.update(lambda_environment(sb))
        os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO" if args.logs else "ERROR"
        out(f"# {kind} entry point, offline sandbox (moto + Earthdata emulator), event {path}")
        deployment = None
        if kind != "direct":
            deployment = stack.enter_context(deployed_state_machine(sb))
            os.environ["STATE_MACHINE_ARN"] = deployment.arn  # what template.yaml gives the API function
        rules = [sb.faults.add(prefix, app=app, status=status, body=f"sandbox fault: {status}")
                 for app, prefix, status in args.fault]
        for app, prefix, status in args.fault:
            out(f"# fault: {app} answers {status} to every request under {prefix}")
        code = drive(kind, event, out, deployment=deployment, timeout_s=args.timeout_s)
        if rules and kind == "api" and event.get("httpMethod") == "POST":
            for rule in rules:
                sb.faults.remove(rule)
            out("# the fault is lifted; following the rerun hint: POST the same request again "
                "(only the failed dates run)")
            code = drive(kind, event, out, deployment=deployment, timeout_s=args.timeout_s)
        if kind != "direct":
            out("# the sandbox stops now: its presigned URLs stop working with it")
        return code


FAULT_APPS = ("cmr", "edl", "nsidc", "podaac", "onprem", "s3", "cloudfront")


def fault_spec(text: str) -> tuple[str, str, int]:
    """``APP[/PATH]=STATUS`` → (app, path prefix, status), e.g. ``nsidc=503``, ``podaac/s3credentials=500``."""
    where, _, status = text.partition("=")
    app, _, path = where.partition("/")
    if app not in FAULT_APPS or not status.isdigit() or not 400 <= int(status) <= 599:
        raise argparse.ArgumentTypeError(f"not APP[/PATH]=STATUS with APP one of {', '.join(FAULT_APPS)} and "
                                         f"STATUS 400-599: {text!r}")
    return app, "/" + path, int(status)


def drive(kind: str, event: Any, out: Callable[[str], None], *, deployment=None, timeout_s: float = 600.0) -> int:
    """Call the entry point ``kind`` with ``event`` and print the answers (0: the caller got
    what it asked for). The functions' environment (and STATE_MACHINE_ARN for the API) is the
    caller's to set."""
    if kind == "direct":
        return invoke_direct(event, out)
    if kind == "api":
        return invoke_api(event, out, timeout_s=timeout_s)
    return invoke_stepfunctions(deployment, event, out, timeout_s=timeout_s)


if __name__ == "__main__":
    sys.exit(main())

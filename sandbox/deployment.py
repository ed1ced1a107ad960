"""The stack's state machine in the sandbox: the real definition executed by moto, its Lambda
tasks run by the real handlers (the end-to-end tests, ``python -m sandbox.invoke``, the fan-out
benchmark all deploy it this way).

moto executes ``statemachine/colocation.asl.json`` but runs a Lambda task through its own
Lambda runtime, which needs Docker; here that one step is replaced: an invocation calls a
*runner* with the function's logical id (template.yaml), its Handler and the event, and the
runner answers what the Python runtime would (the result, or ``errorMessage``/``errorType``/
``stackTrace``). Where moto's executor differs from AWS it is made to answer as AWS: its
Distributed Map ``ResultWriter`` writes the result files (sandbox/stepfunctions.py); and the
Map's retry waits (5, 15, 45 s) are recorded and, with ``fast_retries``, shortened.

    with deployed_state_machine(sb) as stack:          # handlers in this process
        sfn.start_execution(stateMachineArn=stack.arn, input=...)
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import requests

from sandbox.lambda_context import LambdaContext

REPO = Path(__file__).resolve().parents[1]
DEFINITION = REPO / "statemachine" / "colocation.asl.json"
# template.yaml's functions that the state machine calls: logical id → Handler
FUNCTIONS = {"PlanFunction": "handlers.plan.handler", "ColocateFunction": "handlers.colocate.handler",
             "SummarizeFunction": "handlers.summarize.handler"}
# what template.yaml's Globals give every function besides the sandbox's endpoints
FUNCTION_ENVIRONMENT = {"POWERTOOLS_TRACE_DISABLED": "1", "POWERTOOLS_SERVICE_NAME": "atl07-sst-colocation",
                        "POWERTOOLS_METRICS_NAMESPACE": "Atl07SstColocation", "LOG_LEVEL": "INFO",
                        "MALLOC_ARENA_MAX": "2"}  # ColocateFunction's (template.yaml): read by a new process

# (logical id, Handler, event) → (the invocation's payload as JSON, whether it is an error)
Runner = Callable[[str, str, dict], "tuple[str, bool]"]


def lambda_environment(sb) -> dict[str, str]:
    """The environment the functions get, pointed at the sandbox: the EDL token is read from
    Secrets Manager (the production path), not from EARTHDATA_TOKEN."""
    env = sb.env()
    env.pop("EARTHDATA_TOKEN", None)
    env.update(FUNCTION_ENVIRONMENT)
    return env


def runtime_error(exc: BaseException) -> dict:
    """What the Python Lambda runtime reports for an exception a handler raised."""
    return {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": "sandbox-0000",
            "stackTrace": traceback.format_tb(exc.__traceback__)}


def call_handler(logical: str, handler: str, event: dict) -> tuple[str, bool]:
    """The default runner: import the Handler and call it in this process."""
    module, func = handler.rsplit(".", 1)
    fn = getattr(importlib.import_module(module), func)
    try:
        return json.dumps(fn(event, LambdaContext(logical))), False
    except Exception as exc:
        return json.dumps(runtime_error(exc)), True


@dataclass
class Deployment:
    sfn: object  # a boto3 Step Functions client on the sandbox
    arn: str  # the state machine's ARN
    functions: dict[str, str]  # logical id → function ARN
    calls: list[tuple[str, dict]] = field(default_factory=list)  # (logical id, event) per invocation
    waits: list[float] = field(default_factory=list)  # retry waits the Map asked for (s)

    def run(self, request: dict, *, name: str | None = None, timeout_s: float = 600.0, poll_s: float = 0.2) -> dict:
        """Start an execution and wait for it to end; DescribeExecution's answer."""
        arn = self.sfn.start_execution(stateMachineArn=self.arn, input=json.dumps(request),
                                       **({"name": name} if name else {}))["executionArn"]
        deadline = time.monotonic() + timeout_s
        while True:
            desc = self.sfn.describe_execution(executionArn=arn)
            if desc["status"] != "RUNNING" or time.monotonic() > deadline:
                return desc
            time.sleep(poll_s)


@contextlib.contextmanager
def _patched(obj, name: str, value) -> Iterator[None]:
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


@contextlib.contextmanager
def _environ(key: str, value: str) -> Iterator[None]:
    saved = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


@contextlib.contextmanager
def deployed_state_machine(sb, *, runner: Runner = call_handler, output_prefix: str | None = None,
                           fast_retries: bool = True, max_concurrency: int | None = None) -> Iterator[Deployment]:
    """The state machine and its three functions in the sandbox's moto, executing; moto is put
    back as it was afterwards (its Lambda runtime, ResultWriter, retry waits, executor off).

    ``max_concurrency`` replaces both Maps' ``MaxConcurrency`` (bench/scale.py measures the
    orchestration at 1 as well as at the definition's value); None deploys the definition as is."""
    from moto.awslambda.models import LambdaFunction
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (
        resource_eval_s3,
    )

    from sandbox.stepfunctions import aws_result_writer

    tag = uuid.uuid4().hex[:8]
    calls: list[tuple[str, dict]] = []
    waits: list[float] = []
    logical_of: dict[str, str] = {}

    def invoke(function, event=None):
        event = event if isinstance(event, dict) else json.loads(event or "{}")
        logical = logical_of[function.function_name]
        calls.append((logical, event))
        payload, is_error = runner(logical, function.handler, event)
        return payload, is_error, ""

    real_sleep = time.sleep
    sleep = (lambda s: (waits.append(s), real_sleep(min(s, 0.1)))) if fast_retries else (
        lambda s: (waits.append(s), real_sleep(s)))
    config = f"{sb.moto_url}/moto-api/config"
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(LambdaFunction, "_invoke_lambda", invoke))
        stack.enter_context(_patched(resource_eval_s3.ResourceEvalS3, "_handle_put_object",
                                     staticmethod(aws_result_writer)))
        stack.enter_context(_patched(retrier_decl, "time", SimpleNamespace(sleep=sleep)))
        # moto's executor calls Lambda through its own server
        stack.enter_context(_environ("MOTO_PORT", sb.moto_url.rsplit(":", 1)[1]))
        requests.post(config, json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
        stack.callback(requests.post, config, json={"stepfunctions": {"execute_state_machine": False}}, timeout=10)

        iam = sb.boto3_client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
             "Action": "sts:AssumeRole"}]})
        role = iam.create_role(RoleName=f"coloc-sandbox-{tag}", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        lam = sb.boto3_client("lambda")
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as z:
            z.writestr("placeholder.py", "# the runner calls the handlers from src/\n")
        arns = {}
        for logical, handler in FUNCTIONS.items():
            name = f"coloc-{tag}-{logical}"
            logical_of[name] = logical
            arns[logical] = lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler=handler,
                                                Code={"ZipFile": code.getvalue()}, Timeout=900)["FunctionArn"]
        text = DEFINITION.read_text()
        subs = {"PlanFunctionArn": arns["PlanFunction"], "ColocateFunctionArn": arns["ColocateFunction"],
                "SummarizeFunctionArn": arns["SummarizeFunction"], "OutputBucket": sb.settings.output_bucket,
                "OutputPrefix": output_prefix or sb.settings.output_prefix}
        for k, v in subs.items():
            text = text.replace("${%s}" % k, v)
        if max_concurrency is not None:
            definition = json.loads(text)
            for state in definition["States"].values():
                if state.get("Type") == "Map":
                    state["MaxConcurrency"] = max_concurrency
            text = json.dumps(definition)
        sfn = sb.boto3_client("stepfunctions")
        arn = sfn.create_state_machine(name=f"coloc-{tag}", definition=text, roleArn=role)["stateMachineArn"]
        yield Deployment(sfn=sfn, arn=arn, functions=arns, calls=calls, waits=waits)

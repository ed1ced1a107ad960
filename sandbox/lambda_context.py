"""The Lambda context object the handlers receive, for calling them outside Lambda
(the demo, the tests, the benchmarks): the attributes Powertools reads."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LambdaContext:
    function_name: str = "ColocateFunction"
    memory_limit_in_mb: int = 2048
    aws_request_id: str = "sandbox-0000"
    remaining_ms: int = 900_000
    function_version: str = "$LATEST"
    log_stream_name: str = "sandbox"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-west-2:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms

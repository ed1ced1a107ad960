"""The Lambda handlers' environment in a test: ``handler_environment(values, drop=...)`` sets (and
drops) variables, then forgets the handlers' process-wide state (handlers.runtime.reset: settings,
clients, the pipeline's services) so the next call builds it from that environment; the test's
end restores the environment and forgets the state again."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import pytest

SetHandlerEnvironment = Callable[..., None]


@pytest.fixture
def handler_environment(monkeypatch) -> Iterator[SetHandlerEnvironment]:
    from handlers import runtime  # here, not at collection: its cold start reads the environment

    def apply(values: Mapping[str, str], drop: Iterable[str] = ()) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        for key in drop:
            monkeypatch.delenv(key, raising=False)
        runtime.reset()

    yield apply
    runtime.reset()

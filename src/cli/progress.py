"""The progress display of ``colocate run`` on stderr: dates done, granules found, bytes moving.

It listens to the pipeline's progress events (core.pipeline.services.Services.progress) and draws them
with tqdm; it is off (draws nothing) when stderr is not a terminal or with ``--quiet``, and
then ``write`` is the only thing that reaches stderr.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, TextIO

# a stage of run_task (core.pipeline.task's timer names) → what the bar says meanwhile
STAGES = {"search": "searching CMR", "atl07_download": "downloading ATL07", "atl07_read": "reading ATL07",
          "sst_open": "opening L2P", "sst_read": "reading L2P", "colocate": "colocating", "write": "writing products",
          "upload": "storing", "publish": "publishing"}


def stage_label(name: str) -> str:
    """What the bar says during stage ``name``: a known stage's words, else the name made readable
    (``quicklook_draw`` → "quicklook draw", ``sst_x`` → "L2P x"), never the internal name itself."""
    if name in STAGES:
        return STAGES[name]
    words = {"sst": "L2P", "atl07": "ATL07"}
    return " ".join(words.get(w, w) for w in name.split("_") if w) or "working"


class ProgressReporter:
    """``with ProgressReporter(n_dates, enabled=...) as progress: services.progress = progress``."""

    def __init__(self, dates: int, *, enabled: bool, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.found = {"atl07": 0, "l2p": 0}
        self.failed = 0
        self._bars: list = []
        self._exit = contextlib.ExitStack()
        self.dates_bar = self.bytes_bar = None
        if enabled:
            try:
                from tqdm import tqdm
                from tqdm.contrib.logging import logging_redirect_tqdm
            except ImportError:  # the display is a convenience: run without it
                return
            self.dates_bar = tqdm(total=dates, unit="date", desc="dates", file=self.stream, position=0,
                                  dynamic_ncols=True)
            self.bytes_bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, desc="searching CMR",
                                  file=self.stream, position=1, dynamic_ncols=True, leave=False)
            self._bars = [self.bytes_bar, self.dates_bar]
            self._exit.enter_context(logging_redirect_tqdm())  # log lines above the bars, not through them

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exc) -> None:
        for bar in self._bars:
            bar.close()
        self._exit.close()

    # --- the pipeline's events -----------------------------------------------------------------
    def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "found":
            self.found["atl07"] += int(info.get("atl07", 0))
            self.found["l2p"] += int(info.get("sst", 0))
            if self.dates_bar is not None:
                self.dates_bar.set_postfix(ATL07=self.found["atl07"], L2P=self.found["l2p"], refresh=True)
        elif event == "stage" and self.bytes_bar is not None:
            self.bytes_bar.set_description_str(stage_label(str(info.get("name", ""))))
        elif event == "bytes" and self.bytes_bar is not None:
            self.bytes_bar.update(int(info.get("n", 0)))

    def date_done(self, complete: bool) -> None:
        self.failed += 0 if complete else 1
        if self.dates_bar is not None:
            self.dates_bar.update(1)

    def write(self, line: str) -> None:
        """A line for the user (above the bars while they are drawn)."""
        if self.dates_bar is not None:
            self.dates_bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

"""`make demo` end to end on the full-size seed scene (two ~240 MB ATL07 granules, 14 L2P).

Runs the demo as a subprocess: moto's backends are process-global, and the full scene's ATL07
objects carry the same keys as the session sandbox's cut-down ones.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sandbox_fixtures import scene_cache

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_demo_on_the_full_scale_scene(full_scene, tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLOC_", "AWS_"))}
    run = subprocess.run([sys.executable, "-m", "sandbox.demo", "--out", str(out), "--cache", str(scene_cache())],
                         cwd=REPO, capture_output=True, text=True, timeout=1800, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "ATL07 granules 2 found, L2P granules 14 found, 0 skipped" in run.stdout
    manifest = json.loads((out / "manifest_2019-06-22.json").read_text())
    counts = manifest["counts"]
    assert (counts["atl07_granules"], counts["sst_granules"], counts["skipped"]) == (2, 14, 0)
    atl07 = [g for g in full_scene.granules if g.short_name == "ATL07"]
    # both real-size granules downloaded whole; strong beams of ~235 k segments each were read
    assert manifest["bytes"]["atl07_downloaded"] == sum(g.size_bytes for g in atl07) > 480e6
    assert 0 < counts["matched"] < counts["segments"]
    assert set(manifest["bytes"]["sst_per_granule"]) <= {g.title for g in full_scene.granules} | {
        g.file_name for g in full_scene.granules}

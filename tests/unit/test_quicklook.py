"""core.products.quicklook: the PNG is written, decodes, has the expected size and shows the data."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
import xarray as xr

from core.products.granule_netcdf import build_dataset, write_netcdf
from core.products.quicklook import DPI, FIGSIZE_IN, render_quicklook
from tests.product_fixtures import PARAMS, antimeridian_scene, seed_scene, unmatched_scene

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WIDTH, HEIGHT = int(FIGSIZE_IN[0] * DPI), int(FIGSIZE_IN[1] * DPI)


def _read(path):
    import matplotlib.image as mpimg
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (WIDTH, HEIGHT)
    rgba = mpimg.imread(path)
    assert rgba.shape[:2] == (HEIGHT, WIDTH)
    return rgba[..., :3]


def _colourful(rgb, cols=slice(None)) -> int:
    """Pixels with strong saturation (colour-mapped SST, not grey axes/tracks/text)."""
    part = rgb[:, cols]
    return int(((part.max(axis=-1) - part.min(axis=-1)) > 0.35).sum())


@pytest.fixture(scope="module")
def seed():
    tracks, swaths = seed_scene(n=1500)
    return build_dataset(tracks, [s.granule for s in swaths], PARAMS, now=NOW), swaths


def test_seed_case_with_swath(seed, tmp_path):
    ds, swaths = seed
    path = render_quicklook(ds, tmp_path / "q.png", swaths)
    assert path == tmp_path / "q.png" and path.stat().st_size > 50_000
    rgb = _read(path)
    assert len(np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 200
    # the map (left ~45 %) carries the colour-mapped swath; without swath and matches it is grey
    assert _colourful(rgb, slice(0, int(WIDTH * 0.45))) > 40_000
    assert [p.name for p in tmp_path.iterdir()] == ["q.png"]  # no temporary file left


def test_map_colour_comes_from_swath_and_matches(seed, tmp_path):
    ds, swaths = seed
    tracks, _ = unmatched_scene(n=1500)
    plain = build_dataset(tracks, [], PARAMS, now=NOW)
    grey = _read(render_quicklook(plain, tmp_path / "none.png"))
    only_tracks = _read(render_quicklook(ds, tmp_path / "tracks.png"))  # matches, no swath
    left = slice(0, int(WIDTH * 0.45))
    assert _colourful(grey, left) < 500  # legend/label specks at most
    assert _colourful(only_tracks, left) > 5 * max(_colourful(grey, left), 100)


def test_antimeridian_track(tmp_path):
    tracks, swaths = antimeridian_scene(n=1200)
    ds = build_dataset(tracks, [s.granule for s in swaths], PARAMS, now=NOW)
    rgb = _read(render_quicklook(ds, tmp_path / "am.png", swaths))
    # a seam at 180° would stretch the mesh across the map or drop half the swath
    assert 40_000 < _colourful(rgb, slice(0, int(WIDTH * 0.45))) < 0.45 * WIDTH * HEIGHT * 0.6


@pytest.mark.parametrize("case", ["no_tracks", "no_tracks_with_swath", "no_matches"])
def test_degenerate_inputs_render(case, seed, tmp_path):
    _, swaths = seed
    if case == "no_matches":
        tracks, _ = unmatched_scene(n=400)
        ds = build_dataset(tracks, [], PARAMS, now=NOW)
    else:
        ds = build_dataset([], [], PARAMS, now=NOW)
    path = render_quicklook(ds, tmp_path / f"{case}.png", swaths if case == "no_tracks_with_swath" else None)
    assert path.stat().st_size > 10_000
    _read(path)


def test_reopened_product_and_awkward_swath(seed, tmp_path):
    """Decoded file (ints masked to float) and a swath with fill coordinates and no quality_level."""
    ds, swaths = seed
    sw = swaths[0]
    lat, lon = sw.lat.copy(), sw.lon.copy()
    lat[:3, :] = np.nan  # fill rows at the swath edge
    lon[:, -2:] = np.nan
    lat[40:45, 10:20] = np.nan  # a scan gap
    awkward = replace(sw, lat=lat, lon=lon, quality_level=None, l2p_flags=None)
    p = write_netcdf(ds, tmp_path / "p.nc")
    with xr.open_dataset(p) as back:
        rgb = _read(render_quicklook(back, tmp_path / "r.png", [awkward]))
    assert _colourful(rgb, slice(0, int(WIDTH * 0.45))) > 40_000


def test_matplotlib_stays_off_the_colocation_path():
    code = (
        "import sys, core.products.granule_netcdf, core.model, core.products.quicklook\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at module level'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": "src:.", "PATH": "/usr/bin:/bin"}, cwd=str(_repo()))
    assert res.returncode == 0, res.stderr


def test_preload_from_threads_while_rendering(tmp_path):
    """preload() in several threads at once, a render started meanwhile: every call returns, the
    render waits for the import and writes its PNG; no backend is chosen and pyplot stays out."""
    code = (
        "import sys, threading\n"
        "from datetime import datetime, timezone\n"
        "from core.products.granule_netcdf import build_dataset\n"
        "import core.products.quicklook as q\n"
        "from tests.product_fixtures import PARAMS, seed_scene\n"
        "tracks, swaths = seed_scene(n=200)\n"
        "ds = build_dataset(tracks, [s.granule for s in swaths], PARAMS, now=datetime(2026, 1, 1, tzinfo=timezone.utc))\n"
        "errors = []\n"
        "threading.excepthook = lambda a: errors.append(repr(a.exc_value))\n"
        "threads = [threading.Thread(target=q.preload) for _ in range(4)]\n"
        "[t.start() for t in threads]\n"
        "path = q.render_quicklook(ds, sys.argv[1], swaths=swaths)\n"
        "[t.join() for t in threads]\n"
        "q.preload()\n"
        "assert not errors, errors\n"
        "assert path.stat().st_size > 20_000\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "import matplotlib\n"
        "assert matplotlib.rcParams._get_backend_or_none() is None, 'a backend was selected'\n"
    )
    # a fresh MPLCONFIGDIR: the font cache is built inside the first preload, so the render waits
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.png")], capture_output=True, text=True,
                         env={"PYTHONPATH": "src:.", "PATH": "/usr/bin:/bin", "MPLCONFIGDIR": str(tmp_path)},
                         cwd=str(_repo()))
    assert res.returncode == 0, res.stderr[-3000:]


def _repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


def test_real_l2p_swath(realdata, tmp_path):
    """A full real MODIS L2P granule (fill coordinates, no quality_level) under a synthetic track."""
    from core.model import Track
    from core.science import l2p
    from tests.product_fixtures import granule_beams, nearest_matches

    with l2p.open_l2p(realdata / "l2p" / "SS_MODIS_A-JPL-L2P-v2014.0_uncut.nc") as g:
        sw = g.window(slice(None), slice(None))
    ok = np.isfinite(sw.sst) & ~np.isnat(sw.time)
    r, c = np.argwhere(ok)[ok.sum() // 2]  # start the track on a valid pixel
    t0 = sw.time[r, c]
    beams = granule_beams("ATL07-01_synthetic.h5", float(sw.lat[r, c]), float(sw.lon[r, c]), 10.0, 3000, t0, seed=21)
    tracks = [Track(b, nearest_matches(b, [sw], min_quality_level=0)) for b in beams]
    ds = build_dataset(tracks, [sw.granule], PARAMS, now=NOW)
    assert int((ds["sst_granule"] >= 0).sum()) > 0
    rgb = _read(render_quicklook(ds, tmp_path / "real.png", [sw]))
    assert _colourful(rgb, slice(0, int(WIDTH * 0.45))) > 1_000


def test_tracks_without_matches_say_why(tmp_path):
    from core.products.quicklook import _no_match_reasons

    tracks, _ = unmatched_scene(n=300)
    tracks[0].matches.n_outside_dt[:] = 2  # pixels near in space, none inside the time window
    tracks[1].matches.n_rejected_quality[:5] = 1
    ds = build_dataset(tracks, [], PARAMS, now=NOW)
    starts = np.concatenate([[0], np.cumsum(ds["rowSize"].values)[:-1]])
    lines = _no_match_reasons(ds, starts, ds["rowSize"].values, [str(b) for b in ds["beam"].values])
    assert len(lines) == len(tracks)
    assert f"{2 * int(ds['rowSize'].values[0])} outside Δt" in lines[0]
    assert "5 rejected by quality" in lines[1]
    assert lines[2].endswith("no L2P pixel within the radius")
    path = render_quicklook(ds, tmp_path / "why.png")
    assert path.stat().st_size > 20_000


def test_the_figure_states_how_pixels_were_chosen(seed, tmp_path):
    """Third title line: radius, Δt, the minimum quality level in the producer's words and the
    ice rule with the share of ice-flagged matches; "NOT SCREENED" when nothing was screened;
    matches are counted with a valid height; the legend names the grey and the request box."""
    from core.products.quicklook import _map_legend, _rules, _Segments, _suptitle, preload

    ds, swaths = seed
    seg = _Segments(ds)
    rules = _rules(ds, seg)
    assert rules.startswith("radius 1000 m, |Δt| ≤ 6 h, quality_level ≥ 4 (acceptable_quality)"), rules
    n_ice = int((ds["sst_match_flags"].values[seg.matched] & 1).sum())
    assert f"ice-flagged pixels allowed ({n_ice} of {int(seg.matched.sum())} matches)" in rules
    valid = int((seg.matched & np.isfinite(seg.height)).sum())
    assert f"{valid} matched with a valid height" in _suptitle(ds, seg, swaths) and valid < seg.matched.sum()
    unscreened = ds.assign_attrs(colocation_quality_screening="none: no quality screening was applied",
                                 colocation_exclude_ice="true")
    assert "NOT SCREENED on quality_level, ice-flagged pixels excluded" in _rules(unscreened, seg)
    preload()
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", label="request bbox")
    _map_legend(ax, unscreened, swaths=True)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["request bbox", "L2P pixel without valid SST or failing quality_level or ice bit"]
    assert "NOT SCREENED" in [t.get_text() for t in ax.texts]

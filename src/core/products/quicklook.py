"""PNG quicklook of a colocation product: SST map around the tracks, and an along-track profile.

matplotlib is the heaviest import of the service and ships in its own Lambda layer, so it is
imported by :func:`preload` (which the pipeline may call early, in a thread) or at the first
:func:`render_quicklook`, never at module import; nothing on the colocation path imports it.
The map uses a polar stereographic projection computed with numpy (no cartopy), centred on the
tracks, so polar and antimeridian-crossing tracks draw without seams.
"""
from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import xarray as xr

from core.atomic import atomic_path
from core.model import SstSwath

if TYPE_CHECKING:  # matplotlib is imported at the first render (see preload), never here
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

FIGSIZE_IN = (13.0, 6.0)
DPI = 100  # → 1300 × 600 px
MAX_SWATH_CELLS = 600  # per side: stride larger swaths down, the PNG cannot show more
MAX_POINTS = 150_000  # segments drawn per layer; ~1.4 M would cost seconds and hundreds of MB
K0 = 2.0 * 6371.0088  # stereographic scale (km) on a sphere
# Fixed layout (pixels: left, bottom, width, height), sized for the widest labels the panels take
# (map ticks to "−1000" km, colour bar "272.75", two-line title). A layout engine (constrained or
# bbox_inches="tight") measures every tick label in an extra draw before the real one: ~30 % of
# a render on the seed case, for the same picture (matplotlib backend_bases.print_figure).
# (three title lines: what, the granules, how it was screened)
_MAP_PX = (72, 48, 430, 470)  # with a colour bar; the map is square (aspect "equal", box adjusted)
_MAP_ALONE_PX = (72, 48, 560, 470)  # nothing was colour-mapped: the map takes the bar's room
_CBAR_PX = (508, 84, 20, 398)
_PROF_PX = (675, 48, 542, 470)
# PNG deflate level: PIL's default 6 encodes a seed-case quicklook in ~49 ms, level 1 in ~32 ms
# for 5 % more bytes (435 → 458 kB)
PNG_COMPRESS_LEVEL = 1

SWATH_ALPHA = 0.75  # SST pixels let the graticule and the grey of failing pixels show through
GREY_FAILING = (0.72, 0.72, 0.72, 1.0)  # pixels whose quality_level fails the screening
# one colour per ATLAS beam name (pairs: left strong/weak alike in hue), the same in every quicklook
BEAM_COLOURS = {"gt1l": "#1f77b4", "gt1r": "#9ecae1", "gt2l": "#2ca02c", "gt2r": "#a1d99b",
                "gt3l": "#d62728", "gt3r": "#fc9272"}

_preload_lock = threading.Lock()
_preloaded = threading.Event()


def preload() -> None:
    """Import what :func:`render_quicklook` draws with, so its first call does not pay it.

    The pipeline may call this in a background thread while it waits on the network: it is
    idempotent and thread-safe (a lock serialises the first call; a render that starts meanwhile
    waits for it). No backend is selected and pyplot is never imported: the figure draws on its
    own Agg canvas, so nothing here touches the process-wide backend (``matplotlib.use`` would
    switch a pyplot already imported elsewhere, which GUI backends allow on the main thread only).
    """
    if _preloaded.is_set():
        return
    with _preload_lock:
        if _preloaded.is_set():
            return
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # one tiny draw loads the font (FreeType face, glyph cache) and the modules the artists
        # import lazily, which the first real render would otherwise pay
        fig = Figure(figsize=(1.0, 1.0), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.2, 0.2, 0.7, 0.7))
        ax.scatter([0.0], [0.0], c=[1.0], cmap=matplotlib.colormaps["turbo"])
        ax.set_title("0", fontsize=10)
        fig.canvas.draw()
        _preloaded.set()


def _px_rect(px) -> tuple[float, float, float, float]:
    left, bottom, width, height = px
    w, h = FIGSIZE_IN[0] * DPI, FIGSIZE_IN[1] * DPI
    return left / w, bottom / h, width / w, height / h


class _Stereo:
    """Polar stereographic (sphere) about the hemisphere's pole, ``lon0`` pointing up."""

    def __init__(self, lat: np.ndarray, lon: np.ndarray):
        self.south = bool(np.nanmean(lat) < 0) if lat.size else False
        lam = np.radians(lon)
        self.lon0 = float(np.arctan2(np.nanmean(np.sin(lam)), np.nanmean(np.cos(lam)))) if lon.size else 0.0

        self.x0 = self.y0 = 0.0
        if lat.size:
            x, y = self(lat, lon)
            self.x0, self.y0 = 0.5 * (np.nanmin(x) + np.nanmax(x)), 0.5 * (np.nanmin(y) + np.nanmax(y))

    def __call__(self, lat, lon):
        lat = np.asarray(lat, dtype=np.float64)
        phi = np.radians(-lat if self.south else lat)
        r = K0 * np.tan(np.pi / 4 - phi / 2)
        d = np.radians(np.asarray(lon, dtype=np.float64)) - self.lon0
        if self.south:
            return r * np.sin(d) - self.x0, r * np.cos(d) - self.y0
        return r * np.sin(d) - self.x0, -r * np.cos(d) - self.y0


def _short(name: str) -> str:
    """GHRSST GDS2 names (<time>-<RDAC>-L2P_GHRSST-<type>-<product>[-<extra>]-v02.0-fv01.0)
    shortened to time and product, so several fit in a title."""
    parts = name.removesuffix(".nc").split("-")
    if len(parts) >= 7 and parts[2].endswith("_GHRSST"):
        return f"{parts[0]} {'-'.join(parts[4:-2])}"
    return name if len(name) <= 48 else name[:47] + "…"


def _names(values, limit=3) -> str:
    values = [_short(str(v)) for v in values]
    if not values:
        return "none"
    shown = ", ".join(values[:limit])
    return shown + (f" (+{len(values) - limit} more)" if len(values) > limit else "")


def _swath_coords(lat: np.ndarray, lon: np.ndarray):
    """Mesh coordinates for a swath window with fill (NaN) locations.

    pcolormesh needs finite corners everywhere: rows with fewer than two valid pixels are
    dropped, gaps inside a row are filled linearly (longitudes unwrapped first, so a row that
    crosses 180° is not interpolated the long way round). Returns the kept-row mask, the filled
    lat/lon and the validity mask of the kept rows (filled cells are masked when drawn).
    """
    valid = np.isfinite(lat) & np.isfinite(lon)
    rows = valid.sum(axis=1) >= 2
    lat, lon, valid = lat[rows], lon[rows], valid[rows]
    # rows without a gap (most of a swath window) in one vectorised pass; a per-row loop over
    # every row was ~10 % of a render
    full = valid.all(axis=1)
    out_lat = lat.astype(np.float64)
    out_lon = np.degrees(np.unwrap(np.radians(lon.astype(np.float64)), axis=1))
    cols = np.arange(lat.shape[1])
    for r in np.flatnonzero(~full):
        c = np.flatnonzero(valid[r])
        out_lat[r] = np.interp(cols, c, lat[r, c])
        out_lon[r] = np.interp(cols, c, np.degrees(np.unwrap(np.radians(lon[r, c]))))
    return rows, out_lat, out_lon, valid


def _draw_graticule(ax, proj: _Stereo, lat, lon, xlim, ylim):
    """Parallels and meridians at round intervals over the plotted area, labelled at the edge."""
    view_km = xlim[1] - xlim[0]
    deg_km = 111.2
    dlat = next((s for s in (0.1, 0.25, 0.5, 1, 2, 5, 10, 20) if s * deg_km >= view_km / 6), 30)
    lon_c = np.degrees(proj.lon0)
    rel = (lon - lon_c + 180.0) % 360.0 - 180.0
    # meridians converge poleward: space them by their distance at the view's equatorward edge
    coslat = max(np.cos(np.radians(np.nanmin(np.abs(lat)))), 0.02)
    dlon = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 45) if s * deg_km * coslat >= view_km / 4), 90)
    lat_lo, lat_hi = np.floor(lat.min() / dlat - 2) * dlat, np.ceil(lat.max() / dlat + 2) * dlat
    lons = np.linspace(lon_c + rel.min() - 3 * dlon, lon_c + rel.max() + 3 * dlon, 400)
    style = dict(color="0.6", lw=0.5, ls=":", zorder=1)
    for la in np.arange(lat_lo, lat_hi + dlat / 2, dlat):
        if abs(la) >= 90:
            continue
        x, y = proj(np.full_like(lons, la), lons)
        ax.plot(x, y, **style)
        inside = (x > xlim[0]) & (x < xlim[1]) & (y > ylim[0]) & (y < ylim[1])
        if inside.any():
            i = np.flatnonzero(inside)[-1]
            ax.annotate(f"{la:g}°", (x[i], y[i]), fontsize=7, color="0.4", ha="right", va="bottom")
    lats = np.linspace(max(lat_lo, -90), min(lat_hi, 90), 100)
    for lo in np.arange(np.floor(lons[0] / dlon) * dlon, lons[-1], dlon):
        x, y = proj(lats, np.full_like(lats, lo))
        ax.plot(x, y, **style)
        inside = (x > xlim[0]) & (x < xlim[1]) & (y > ylim[0]) & (y < ylim[1])
        if inside.any():
            # label where the meridian leaves the view, away from where meridians converge
            cand = np.flatnonzero(inside)
            i = cand[np.argmax(np.hypot(x[cand] - np.mean(xlim), y[cand] - np.mean(ylim)))]
            w = (lo + 180) % 360 - 180
            name = f"{abs(w):g}°" + ("" if w in (0, -180) else "E" if w > 0 else "W")
            ax.annotate(name, (x[i], y[i]), fontsize=7, color="0.4", ha="left", va="top")


def _bbox(value) -> tuple[float, float, float, float] | None:
    try:
        box = tuple(float(v) for v in str(value).split(","))
    except ValueError:
        return None
    return box if len(box) == 4 else None


def _bbox_outline(box, n: int = 60):
    """Latitudes and longitudes around a W,S,E,N box (edges sampled: parallels curve on the map)."""
    w, s, e, nth = box
    east = e if e > w else e + 360.0  # across the antimeridian
    lons = np.linspace(w, east, n)
    lats = np.linspace(s, nth, n)
    lat = np.concatenate([np.full(n, s), lats, np.full(n, nth), lats[::-1]])
    lon = np.concatenate([lons, np.full(n, east), lons[::-1], np.full(n, w)])
    return lat, lon


def _no_match_reasons(ds: xr.Dataset, starts, row_size, beams) -> list[str]:
    """One line per trajectory without a match, from the per-segment candidate counts: nothing
    within the radius, only pixels outside the time window, or only rejected ones."""
    if "sst_n_outside_dt" not in ds:
        return []
    counts = {k: np.asarray(ds[f"sst_{k}"].values) for k in
              ("n_outside_dt", "n_rejected_quality", "n_out_of_range")}
    index = np.asarray(ds["sst_granule"].values)
    lines = []
    for k, (s0, n) in enumerate(zip(starts, row_size, strict=True)):
        part = slice(int(s0), int(s0 + n))
        if n == 0 or (index[part] >= 0).any():
            continue
        dt, q, rng = (int(counts[c][part].sum()) for c in ("n_outside_dt", "n_rejected_quality", "n_out_of_range"))
        if dt + q + rng == 0:
            why = "no L2P pixel within the radius"
        else:
            why = f"pixels within radius: {dt} outside Δt, {q} rejected by quality, {rng} outside valid range"
        lines.append(f"{beams[k]}: no match, {why}")
    return lines[:8]


def _thin(n: int) -> slice:
    return slice(None, None, max(1, int(np.ceil(n / MAX_POINTS))))


class _Segments:
    """The product's segments as the panels draw them (float64; the SST of an unmatched one is NaN)."""

    def __init__(self, ds: xr.Dataset):
        self.lat = np.asarray(ds["lat"].values, dtype=np.float64)
        self.lon = np.asarray(ds["lon"].values, dtype=np.float64)
        self.sst = np.asarray(ds["sst"].values, dtype=np.float64)
        self.height = np.asarray(ds["height_segment_height"].values, dtype=np.float64)
        self.matched = np.isfinite(self.sst)
        self.hit = np.flatnonzero(self.matched)[_thin(int(self.matched.sum()))]  # the matched ones drawn
        self.row_size = np.asarray(ds["rowSize"].values, dtype=np.int64)
        self.starts = (np.concatenate([[0], np.cumsum(self.row_size)[:-1]]) if self.row_size.size
                       else np.zeros(0, int))
        self.beams = [str(b) for b in ds["beam"].values]


class _SwathLayer(NamedTuple):
    x: np.ndarray  # projected cell centres (km)
    y: np.ndarray
    sst: np.ma.MaskedArray  # masked where no pixel, or where the pixel fails the quality screening
    failing: np.ndarray  # located pixels whose quality_level fails the screening (drawn grey)


def render_quicklook(ds: xr.Dataset, path: str | os.PathLike, swaths: list[SstSwath] | None = None) -> Path:
    """Render ``ds`` (from :func:`core.products.granule_netcdf.build_dataset`, in memory or re-opened) to a PNG.

    Left: the L2P SST of ``swaths`` (if given) around the tracks, tracks in grey, matched
    segments coloured by their SST on the same colour scale. Right: height and matched SST
    along track versus latitude. Works with no matches, no swaths and no segments.
    """
    preload()  # imports matplotlib once (or waits for a preload under way in another thread)
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    swaths = [s for s in (swaths or []) if s is not None and s.lat.size]
    seg = _Segments(ds)
    ref_lat, ref_lon = _view_points(seg, swaths)
    proj = _Stereo(ref_lat, ref_lon)
    layers = _swath_layers(swaths, proj, ds.attrs)
    norm = _colour_scale([seg.sst[seg.matched], *(layer.sst.compressed() for layer in layers)])
    cmap = matplotlib.colormaps["turbo"]

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)  # no layout engine: one draw (see _MAP_PX)
    FigureCanvasAgg(fig)
    coloured = bool(layers) or bool(seg.hit.size)  # something takes the colour bar
    ax_map = fig.add_axes(_px_rect(_MAP_PX if coloured else _MAP_ALONE_PX))
    ax_prof = fig.add_axes(_px_rect(_PROF_PX))
    _draw_map(fig, ax_map, proj, seg, layers, norm, cmap)
    _set_view(ax_map, proj, ref_lat, ref_lon, ds.attrs.get("colocation_bbox"))
    _map_legend(ax_map, ds, bool(layers))
    _draw_profile(ax_prof, ds, seg, south=proj.south)
    fig.suptitle(_suptitle(ds, seg, swaths),
                 fontsize=9.5, y=0.995, va="top")  # three lines above the panel titles (_PROF_PX's top)
    if ds.attrs.get("data_mode") == "synthetic":  # a sandbox product must not pass for NASA data
        fig.text(0.5, 0.5, "SYNTHETIC", fontsize=64, color="red", alpha=0.35, rotation=25,
                 ha="center", va="center", weight="bold", zorder=100)

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    log.info("wrote quicklook %s", path.name)
    return path


def _view_points(seg: _Segments, swaths: list[SstSwath]) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes the projection and the view follow: the tracks; with no tracks, the swaths."""
    if seg.lat.size:
        return seg.lat, seg.lon
    if swaths:
        ref_lat = np.concatenate([s.lat[np.isfinite(s.lat)].ravel() for s in swaths]).astype(np.float64)
        ref_lon = np.concatenate([s.lon[np.isfinite(s.lat)].ravel() for s in swaths]).astype(np.float64)
        return ref_lat, ref_lon
    return np.zeros(0), np.zeros(0)


def _swath_layers(swaths: list[SstSwath], proj: _Stereo, attrs: Mapping[str, Any]) -> list[_SwathLayer]:
    """Each swath (strided to MAX_SWATH_CELLS a side) projected, ready to draw. The background shows
    only the pixels that could be matched (quality passes), the others grey."""
    min_ql = attrs.get("colocation_min_quality_level")
    screened = not str(attrs.get("colocation_quality_screening", "")).startswith("none")
    layers = []
    for sw in swaths:
        step = max(1, int(np.ceil(max(sw.shape) / MAX_SWATH_CELLS)))
        rows, la, lo, valid = _swath_coords(np.asarray(sw.lat[::step, ::step], dtype=np.float64),
                                            np.asarray(sw.lon[::step, ::step], dtype=np.float64))
        if la.shape[0] < 2:
            continue
        t = np.asarray(sw.sst[::step, ::step], dtype=np.float64)[rows]
        passes = np.isfinite(t)
        if screened and min_ql is not None and sw.quality_level is not None:
            passes &= np.asarray(sw.quality_level[::step, ::step])[rows] >= int(min_ql)
        if str(attrs.get("colocation_exclude_ice", "false")).lower() == "true":
            passes &= ~sw.ice()[::step, ::step][rows]  # ineligible like a failed quality level
        t[~(valid & passes)] = np.nan
        x, y = proj(la, lo)
        layers.append(_SwathLayer(x, y, np.ma.masked_invalid(t), valid & ~passes))
    return layers


def _colour_scale(values: list[np.ndarray]) -> Normalize:
    """The SST scale shared by swath pixels and matched segments: their 1st to 99th percentile."""
    from matplotlib.colors import Normalize

    allv = np.concatenate(values) if values else np.zeros(0)
    if allv.size:
        vmin, vmax = np.percentile(allv, [1, 99])
        if vmax - vmin < 0.5:
            vmin, vmax = vmin - 0.25, vmax + 0.25
    else:
        vmin, vmax = 271.0, 278.0
    return Normalize(vmin=vmin, vmax=vmax)


def _draw_map(fig: Figure, ax: Axes, proj: _Stereo, seg: _Segments, layers: list[_SwathLayer], norm: Normalize,
              cmap: Colormap) -> None:
    """Map panel: the swaths' SST, the segments over them (matched ones on the same scale), the colour bar."""
    from matplotlib.cm import ScalarMappable

    mappable, bar_alpha = None, None  # the colour bar shows the swath's translucency, or the segments'
    for layer in layers:
        # one RGBA mesh per swath: SST cells translucent over the map, cells failing quality
        # opaque grey, the rest transparent (the two sets are disjoint). Two meshes (scalar +
        # grey) drew the same pixels for twice the per-mesh cost, ~10 % of a render.
        rgba = cmap(norm(layer.sst), alpha=SWATH_ALPHA)  # masked → the colormap's "bad": transparent
        rgba[layer.failing] = GREY_FAILING
        with warnings.catch_warnings():
            # a swath is curvilinear in any projection: midpoint cell edges are what we want
            warnings.filterwarnings("ignore", message=".*not monotonically increasing or decreasing.*")
            ax.pcolormesh(layer.x, layer.y, rgba, shading="nearest", rasterized=True, zorder=0)
    if layers:
        mappable, bar_alpha = ScalarMappable(norm=norm, cmap=cmap), SWATH_ALPHA

    if seg.lat.size:
        tx, ty = proj(seg.lat, seg.lon)
        every = _thin(seg.lat.size)
        miss = np.flatnonzero(~seg.matched)[_thin(int((~seg.matched).sum()))]
        ax.scatter(tx[every], ty[every], s=22, c="k", lw=0, zorder=2)  # outline: matched colours stand out
        ax.scatter(tx[miss], ty[miss], s=8, c="0.85", lw=0, zorder=3, label="segment, no SST match")
        if seg.hit.size:  # above everything (the request box too), on the black outline of the tracks
            mappable, bar_alpha = ax.scatter(tx[seg.hit], ty[seg.hit], c=seg.sst[seg.hit], s=10, cmap=cmap, norm=norm,
                                             lw=0, zorder=6, label="segment, matched SST"), None
    if mappable is not None:
        fig.colorbar(mappable, cax=fig.add_axes(_px_rect(_CBAR_PX)), label="SST (K)", alpha=bar_alpha)


def _map_legend(ax: Axes, ds: xr.Dataset, swaths: bool) -> None:
    """The map's legend: segments, the grey of pixels that could not be matched, the request box;
    "NOT SCREENED" across the map when no quality screening was applied."""
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    if swaths:
        rule = "quality_level" + (" or ice bit" if _attr_true(ds.attrs.get("colocation_exclude_ice")) else "")
        handles.append(Patch(fc=GREY_FAILING, ec="none", label=f"L2P pixel without valid SST or failing {rule}"))
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=7, markerscale=2, framealpha=0.85)
    if str(ds.attrs.get("colocation_quality_screening", "")).startswith("none"):
        ax.text(0.5, 0.93, "NOT SCREENED", transform=ax.transAxes, ha="center", va="top", fontsize=13,
                fontweight="bold", color="crimson", zorder=20, bbox=dict(fc="white", ec="crimson", alpha=0.85))


def _attr_true(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1")


def _set_view(ax: Axes, proj: _Stereo, ref_lat: np.ndarray, ref_lon: np.ndarray, bbox_attr: Any) -> None:
    """Map extent around the view points (square), graticule, request box; axis labels and title."""
    if ref_lat.size:
        rx, ry = proj(ref_lat, ref_lon)
        cx, cy = 0.5 * (np.nanmin(rx) + np.nanmax(rx)), 0.5 * (np.nanmin(ry) + np.nanmax(ry))
        half = max(np.nanmax(rx) - np.nanmin(rx), np.nanmax(ry) - np.nanmin(ry)) * 0.6 + 15.0
        xlim, ylim = (cx - half, cx + half), (cy - half, cy + half)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        _draw_graticule(ax, proj, ref_lat, ref_lon, xlim, ylim)
        box = _bbox(bbox_attr)
        if box is not None:
            bx, by = proj(*_bbox_outline(box))
            ax.plot(bx, by, color="k", lw=1.0, ls="--", zorder=5, label="request bbox")
    else:
        ax.text(0.5, 0.5, "no segments and no SST swath", ha="center", va="center", transform=ax.transAxes)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("km from centre (polar stereographic)")
    ax.set_ylabel("km from centre")
    ax.set_title(f"L2P SST and ATL07 tracks ({'S' if proj.south else 'N'} polar stereographic)", fontsize=10)


def _draw_profile(ax: Axes, ds: xr.Dataset, seg: _Segments, *, south: bool) -> None:
    """Along-track panel: height per beam, matched SST on a second axis, why tracks have no match."""
    xprof, xlabel = _profile_axis(ds, seg, south)
    shown = _draw_heights(ax, seg, xprof)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ATL07 height_segment_height (m)")
    if shown:
        ax.legend(loc="upper left", fontsize=7, markerscale=4, columnspacing=1.2, ncols=min(len(shown), 3),
                  title="height, beam", title_fontsize=7)
    if seg.matched.any():  # an SST axis only when there is an SST to show
        ax_sst = ax.twinx()
        ax_sst.plot(xprof[seg.hit], seg.sst[seg.hit], "o", ms=1.2, color="crimson", alpha=0.5, label="matched SST")
        ax_sst.legend(loc="upper right", fontsize=7, markerscale=3)
        ax_sst.set_ylabel("matched L2P SST (K)", color="crimson")
        ax_sst.tick_params(axis="y", colors="crimson")
    else:
        ax.text(0.5, 0.93, "no SST matches", ha="center", va="center", transform=ax.transAxes,
                fontsize=12, color="crimson", bbox=dict(fc="white", ec="crimson", alpha=0.9))
    reasons = _no_match_reasons(ds, seg.starts, seg.row_size, seg.beams)
    if reasons:
        ax.text(0.01, 0.02, "\n".join(reasons), ha="left", va="bottom", transform=ax.transAxes,
                fontsize=6.5, family="monospace", bbox=dict(fc="white", ec="0.6", alpha=0.85), zorder=10)
    if not seg.lat.size:
        ax.text(0.5, 0.4, "no segments", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Along track: height and matched SST", fontsize=10)


def _profile_axis(ds: xr.Dataset, seg: _Segments, south: bool) -> tuple[np.ndarray, str]:
    """The along-track axis and its label: latitude reads best, unless a track turns back in
    latitude (near its orbit's 88° turning point); then minutes."""
    lat = seg.lat
    folds = any(
        n > 1 and (lat[s0:s0 + n].max() > max(lat[s0], lat[s0 + n - 1]) + 0.02
                   or lat[s0:s0 + n].min() < min(lat[s0], lat[s0 + n - 1]) - 0.02)
        for s0, n in zip(seg.starts, seg.row_size, strict=True)
    )
    if folds:
        t_all = np.asarray(ds["time"].values)
        xprof = (t_all - t_all.min()) / np.timedelta64(60, "s")
        return xprof, f"minutes after {np.datetime_as_string(t_all.min(), unit='s')}Z"
    return lat, "latitude (°N)" if not south else "latitude (°)"


def _draw_heights(ax: Axes, seg: _Segments, xprof: np.ndarray) -> set[str]:
    """Height along track, a colour per trajectory; returns the beams labelled (once each)."""
    shown: set[str] = set()
    for k, (s0, n) in enumerate(zip(seg.starts, seg.row_size, strict=True)):
        if n == 0:
            continue
        sl = slice(s0, s0 + n, max(1, int(np.ceil(seg.lat.size / MAX_POINTS))))
        label = seg.beams[k] if seg.beams[k] not in shown else None
        shown.add(seg.beams[k])
        ax.plot(xprof[sl], seg.height[sl], ".", ms=1.5, color=BEAM_COLOURS.get(seg.beams[k], "0.4"), alpha=0.6,
                label=label)
    return shown


def _suptitle(ds: xr.Dataset, seg: _Segments, swaths: list[SstSwath]) -> str:
    """Two lines: the day and the match count; the ATL07 and L2P granules (the swaths' if the product names none)."""
    granules = [str(g) for g in dict.fromkeys(ds["atl07_granule"].values)]
    sources = [str(s) for s in ds["sst_source_name"].values] if "sst_source_name" in ds else []
    sources = sources or [s.granule for s in swaths]
    if seg.lat.size:
        day = np.datetime_as_string(np.asarray(ds["time"].values).min(), unit="D")
    else:
        day = str(ds.attrs.get("time_coverage_start", ds.attrs.get("request_date", "")))[:10] or "no data"
    n_match = int((seg.matched & np.isfinite(seg.height)).sum())  # a match without a height pairs nothing
    return (f"ATL07 × GHRSST L2P colocation, {day}: {seg.lat.size} segments, {n_match} matched with a valid height "
            f"({100.0 * n_match / max(seg.lat.size, 1):.1f} %)\n"
            f"ATL07: {_names(granules)}   L2P: {_names(sources)}\n{_rules(ds, seg)}")


def _rules(ds: xr.Dataset, seg: _Segments) -> str:
    """How pixels were chosen: radius, Δt, the minimum quality level (in the producer's words) and the ice rule."""
    a = ds.attrs
    radius = a.get("colocation_radius_m", "?")
    radius = f"{float(radius):g} m" if isinstance(radius, (int, float, np.number)) else str(radius)
    dt = a.get("colocation_max_dt_s")
    dt_text = f"|Δt| ≤ {float(dt) / 3600:g} h" if isinstance(dt, (int, float, np.number)) else "|Δt| ?"
    if str(a.get("colocation_quality_screening", "")).startswith("none"):
        quality = "NOT SCREENED on quality_level"
    else:
        level = a.get("colocation_min_quality_level", "?")
        word = _quality_word(ds, level)
        quality = f"quality_level ≥ {level}" + (f" ({word})" if word else "")
    if _attr_true(a.get("colocation_exclude_ice")):
        ice = "ice-flagged pixels excluded"
    else:
        flags = np.asarray(ds["sst_match_flags"].values) if "sst_match_flags" in ds else np.zeros(0, np.int8)
        n_ice = int((flags[seg.matched] & 1).sum()) if flags.size == seg.matched.size else 0
        ice = f"ice-flagged pixels allowed ({n_ice} of {int(seg.matched.sum())} matches)"
    return f"radius {radius}, {dt_text}, {quality}, {ice}"


def _quality_word(ds: xr.Dataset, level: Any) -> str | None:
    """The producer's word for the minimum level (sst_quality_level's flag table), if one table."""
    attrs = ds["sst_quality_level"].attrs if "sst_quality_level" in ds else {}
    words, values = str(attrs.get("flag_meanings", "")).split(), attrs.get("flag_values")
    if values is None or not words:
        return None
    return next((w for v, w in zip(np.atleast_1d(values).tolist(), words, strict=False) if str(v) == str(level)), None)

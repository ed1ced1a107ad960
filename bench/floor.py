"""The floor of a run: a lower bound of its wall time in the modelled network, and the exact
chunk floor of the L2P bytes it had to fetch.

Wall-time floor (issue 13; formula and terms in bench/README.md)::

    floor_s = transfer_s(bytes_that_must_move) + sequential_round_trips_s + colocation_cpu_s

* ``transfer_s(B)``: the fastest the modelled aggregate can move B bytes, with as many
  connections as it takes to fill it: ``peak_mbps`` while the burst bucket lasts (it empties
  after ``burst_mb / (peak_mbps - aggregate_mbps)`` seconds, having moved ``peak_mbps`` × that),
  then ``aggregate_mbps`` (sandbox/netmodel.py, docs/NETWORK.md).
* ``sequential_round_trips_s``: the requests that cannot start before the previous one has
  answered, each one median first byte (``latency_ms``), plus one set-up (``connect_ms``) for
  each new host on that chain (``CHAIN``).
* ``colocation_cpu_s``: the run's own ``colocate`` stage (the kernel), as the manifest timed it.

Bytes that must move: each ATL07 granule as the run's access mode needs it (a download moves
the whole file), plus the L2P chunk floor below.

L2P chunk floor (``l2p_chunk_floor``): every chunk of latitude (to find where the swath is)
plus, for every variable the service reads for the window (longitude, SST, sst_dtime,
quality_level, l2p_flags, SSES, dt_analysis, time: the name lists of ``core.science.l2p``), only the
chunks that intersect the window, from the HDF5 chunk index (h5py ``get_chunk_info``). A granule
read without a window costs its latitude only. HDF5 metadata (superblock, object headers,
chunk B-trees) is reported beside it, not inside: a reader working from a published ``.dmrpp``
sidecar would not read it from the granule.

L2P information floor (``l2p_information_floor``, issue 26): the chunk floor, with longitude counted
in every chunk whose latitudes reach the segments' band (± the radius), not only in the window's:
a reader that does not know the swath beforehand must read those to find the window's columns.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MB = 1e6

# The requests of one date that must follow each other: (host, what). Searches of the two
# collections run side by side, so do the ATL07 redirect and the L2P credentials, and so do the
# reads of all L2P granules; what cannot overlap is each step waiting on the one before.
CHAIN = (
    ("cmr", "granule search (both collections at once)"),
    ("tea", "/s3credentials for L2P, alongside the ATL07 redirect"),
    ("s3", "HDF5 metadata of each L2P granule (superblock, object headers, chunk index)"),
    ("s3", "latitude chunks (where is the swath?)"),
    ("s3", "the window's chunks (needs latitude and the ATL07 segments)"),
)


# With ``atl07_access=direct`` the L2P windows also wait on the ATL07 read in place, itself a chain:
# the NSIDC credentials, the granule's first page (a paged granule's metadata, core.science.atl07),
# the chunks of the locations, then those of the box's rows (issue 26).
CHAIN_DIRECT = (
    ("cmr", "granule search (both collections at once)"),
    ("tea", "/s3credentials for NSIDC and L2P side by side"),
    ("s3", "ATL07 first page (all its metadata), beside the L2P metadata and latitude"),
    ("s3", "ATL07 locations' chunks"),
    ("s3", "ATL07 chunks of the box's rows"),
    ("s3", "the window's chunks (needs the segments)"),
)


@dataclass(frozen=True)
class Floor:
    transfer_s: float
    round_trips_s: float
    cpu_s: float
    bytes: int
    sequential_requests: int
    new_connections: int

    @property
    def total_s(self) -> float:
        return self.transfer_s + self.round_trips_s + self.cpu_s

    def as_dict(self) -> dict:
        return {"floor_s": round(self.total_s, 3), "transfer_s": round(self.transfer_s, 3),
                "round_trips_s": round(self.round_trips_s, 3), "cpu_s": round(self.cpu_s, 3),
                "bytes": int(self.bytes), "sequential_requests": self.sequential_requests,
                "new_connections": self.new_connections}


def transfer_s(n_bytes: float, config) -> float:
    """Least time the modelled aggregate (burst, then sustained) needs for ``n_bytes``."""
    if config is None or n_bytes <= 0:
        return 0.0
    peak, sustained = config.peak_mbps * MB, config.aggregate_mbps * MB
    burst = config.burst_mb * MB
    if peak <= sustained or burst <= 0:
        return n_bytes / sustained
    burst_s = burst / (peak - sustained)  # the bucket refills at the sustained rate while draining
    in_burst = peak * burst_s
    if n_bytes <= in_burst:
        return n_bytes / peak
    return burst_s + (n_bytes - in_burst) / sustained


def round_trips_s(config, chain=CHAIN) -> tuple[float, int, int]:
    """(seconds, requests, new connections) of the chain of requests that cannot overlap."""
    if config is None:
        return 0.0, len(chain), 0
    hosts = list(dict.fromkeys(host for host, _ in chain))
    seconds = len(chain) * config.latency_ms / 1e3 + len(hosts) * config.connect_ms / 1e3
    return seconds, len(chain), len(hosts)


def wall_floor(n_bytes: int, cpu_s: float, config, chain=CHAIN) -> Floor:
    rt, n_req, n_conn = round_trips_s(config, chain)
    return Floor(transfer_s(n_bytes, config), rt, float(cpu_s), int(n_bytes), n_req, n_conn)


# --- L2P chunk floor -----------------------------------------------------------------------------
def _window_variables(names: set[str]) -> tuple[str | None, list[str]]:
    """(latitude, the variables the service reads for a window), by core.science.l2p's own name lists."""
    from core.science import l2p

    def first(candidates):
        return next((n for n in candidates if n in names), None)

    lat = first(l2p.LAT_NAMES)
    window = [first(l2p.LON_NAMES), first(l2p.SST_NAMES), first(l2p.DTIME_NAMES), first(l2p.QUALITY_NAMES),
              first(l2p.FLAGS_NAMES), *[v for v in l2p.OPTIONAL_VARS if v in names], first(("time",))]
    return lat, [v for v in dict.fromkeys(window) if v]


def _chunks(ds) -> list[tuple[tuple[int, ...], int]]:
    """(logical offset, stored bytes) of every allocated chunk of a dataset (one for contiguous)."""
    if ds.chunks is None:
        return [((0,) * ds.ndim, int(ds.id.get_storage_size()))]
    out = []
    for i in range(ds.id.get_num_chunks()):
        info = ds.id.get_chunk_info(i)
        out.append((tuple(int(o) for o in info.chunk_offset), int(info.size)))
    return out


def _intersects(offset, chunk_shape, window) -> bool:
    """Whether a chunk at ``offset`` overlaps the (rows, cols) window in the last two dims."""
    (r0, r1), (c0, c1) = window
    cr, cc = offset[-2], offset[-1]
    hr, hc = chunk_shape[-2], chunk_shape[-1]
    return cr < r1 and cr + hr > r0 and cc < c1 and cc + hc > c0


def l2p_information_floor(path: Path, window: list[int] | None, band: tuple[float, float]) -> dict:
    """What any reader without prior knowledge of the swath must fetch of one L2P file (issue 26):
    latitude whole (where is the swath?), longitude in the chunks whose latitudes reach ``band``
    (the segments' latitudes, ± the search radius: there the window's columns are found), and
    only the window's chunks of the other variables the service reads."""
    import h5py
    import numpy as np

    from core.science.l2p import LON_NAMES

    base = l2p_chunk_floor(path, window)
    per_var = dict(base["per_variable"])
    with h5py.File(path, "r") as f:
        names = {k for k, v in f.items() if isinstance(v, h5py.Dataset)}
        lat_name, window_vars = _window_variables(names)
        lon_name = next((v for v in window_vars if v in LON_NAMES), None)
        if lat_name is not None and lon_name is not None and f[lat_name].chunks and f[lon_name].chunks:
            lat, lon = f[lat_name], f[lon_name]
            shape = lat.chunks
            lo, hi = band
            reach = set()
            for off, _ in _chunks(lat):
                block = lat[tuple(slice(o, o + c) for o, c in zip(off, shape))]
                block = block * float(lat.attrs.get("scale_factor", 1.0)) + float(lat.attrs.get("add_offset", 0.0))
                if np.any((block >= lo) & (block <= hi)):
                    reach.add(off[-2:])
            per_var[lon_name] = sum(n for off, n in _chunks(lon) if off[-2:] in reach)
    return {**base, "floor_bytes": sum(per_var.values()), "per_variable": per_var, "band": list(band)}


def l2p_chunk_floor(path: Path, window: list[int] | None) -> dict:
    """Bytes of latitude + the window's chunks of one L2P file; ``window`` = [r0, r1, c0, c1]."""
    import h5py

    with h5py.File(path, "r") as f:
        names = {k for k, v in f.items() if isinstance(v, h5py.Dataset)}
        lat, window_vars = _window_variables(names)
        per_var: dict[str, int] = {}
        chunk_bytes = 0
        for name in names:
            chunk_bytes += sum(n for _, n in _chunks(f[name]))
        if lat is not None:
            per_var[lat] = sum(n for _, n in _chunks(f[lat]))
        if window is not None:
            win = ((window[0], window[1]), (window[2], window[3]))
            for name in window_vars:
                ds = f[name]
                if ds.ndim < 2:  # e.g. time: read whole
                    per_var[name] = sum(n for _, n in _chunks(ds))
                    continue
                shape = ds.chunks or ds.shape
                per_var[name] = sum(n for off, n in _chunks(ds) if _intersects(off, shape, win))
        size = Path(path).stat().st_size
    floor = sum(per_var.values())
    return {"floor_bytes": floor, "per_variable": per_var, "window": window,
            "metadata_bytes": size - chunk_bytes, "file_size": size}

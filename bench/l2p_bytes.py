"""Where the bytes of an L2P granule are, and what a window read must fetch.

* Real granule: per-variable compressed bytes from the kerchunk references
  (``tests/data/realdata/l2p/*.zarr.json``: offset/size of every chunk).
* Sandbox granules: the same from the HDF5 chunk index (h5py ``get_chunk_info``).

The reader must fetch every chunk of lat and lon (to find the window) plus, for each of
SST / sst_dtime / quality_level / l2p_flags, the chunks the window touches. With
(1015, 677) chunks a window touches 1 to 4 of the 4 chunks per variable. The lower bound is
computed for one chunk (best case) and for all four (window straddling the chunk corner).

    .venv/bin/python -m bench.l2p_bytes
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from bench.common import REPO

REAL = sorted((REPO / "tests" / "data" / "realdata" / "l2p").glob("*.zarr.json"))
WINDOW_VARS = ("sea_surface_temperature", "sst_dtime", "quality_level", "l2p_flags")
GEO_VARS = ("lat", "lon")


def real_chunks(path: Path) -> dict[str, list[int]]:
    refs = json.loads(path.read_text())
    refs = refs.get("refs", refs)
    out: dict[str, list[int]] = {}
    for key, value in refs.items():
        if key.endswith("/.zchunkstore"):
            var = key.rsplit("/", 1)[0]
            out[var] = [c["size"] for k, c in value.items() if isinstance(c, dict) and "size" in c]
    return out


def h5_chunks(path: Path) -> dict[str, list[int]]:
    import h5py

    out: dict[str, list[int]] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                if obj.chunks is None:
                    out[name] = [obj.id.get_storage_size()]
                else:
                    out[name] = [obj.id.get_chunk_info(i).size for i in range(obj.id.get_num_chunks())]
        f.visititems(visit)
    return out


def analyse(chunks: dict[str, list[int]], file_size: int) -> dict:
    per_var = {v: sum(s) for v, s in chunks.items()}
    data = sum(per_var.values())
    geo = sum(per_var.get(v, 0) for v in GEO_VARS)
    win_vars = [v for v in WINDOW_VARS if v in chunks]
    one_chunk = sum(max(chunks[v]) for v in win_vars)  # the window in one chunk (worst such chunk)
    all_chunks = sum(per_var[v] for v in win_vars)
    return {
        "file_size": file_size,
        "data_bytes": data,
        "metadata_bytes": file_size - data,
        "per_variable_bytes": dict(sorted(per_var.items(), key=lambda kv: -kv[1])),
        "per_variable_fraction": {v: round(b / file_size, 4) for v, b in sorted(per_var.items(), key=lambda kv: -kv[1])},
        "lat_lon_fraction": round(geo / file_size, 4),
        # what a lat/lon-first window read cannot avoid, plus HDF5 metadata
        "min_fetch_fraction_window_in_one_chunk": round((geo + one_chunk + file_size - data) / file_size, 4),
        "min_fetch_fraction_window_in_all_chunks": round((geo + all_chunks + file_size - data) / file_size, 4),
        # lat read whole first; lon only in the chunk(s) whose lat reaches the query band
        "lat_first_fraction_one_chunk": round(
            (per_var.get("lat", 0) + max(chunks.get("lon", [0])) + one_chunk + file_size - data) / file_size, 4),
        # if lat/lon came from elsewhere (a geolocation index) only the window chunks remain
        "window_only_fraction_one_chunk": round((one_chunk + file_size - data) / file_size, 4),
    }


def measure(scene_dir: Path | None = None) -> dict:
    out: dict = {"real": {}, "sandbox": {}}
    for path in REAL:
        chunks = real_chunks(path)
        # file size: the real granule is not stored; the chunk extent (last offset + size) bounds it
        refs = json.loads(path.read_text())
        refs = refs.get("refs", refs)
        end = max(c["offset"] + c["size"] for k, v in refs.items() if k.endswith("/.zchunkstore")
                  for c in v.values() if isinstance(c, dict) and "size" in c)
        out["real"][path.name.replace(".zarr.json", "")] = analyse(chunks, end)
    if scene_dir is None:
        from sandbox.scene import build_scene

        # the L2P granules are the same in both extents; the cut scene is the one the tests build
        scene = build_scene(REPO / ".sandbox-cache", extent="cut")
        files = [Path(g.path) for g in scene.granules if g.daac == "podaac"]
    else:
        files = sorted(p for p in scene_dir.rglob("*.nc") if p.stat().st_size > 10_000)
    agg = defaultdict(list)
    for p in files:
        a = analyse(h5_chunks(p), p.stat().st_size)
        for k in ("lat_lon_fraction", "min_fetch_fraction_window_in_one_chunk", "min_fetch_fraction_window_in_all_chunks",
                  "lat_first_fraction_one_chunk"):
            agg[k].append(a[k])
        out["sandbox"].setdefault("example", {"granule": p.name, **a})
    out["sandbox"]["granules"] = len(files)
    out["sandbox"]["ranges"] = {k: [min(v), max(v)] for k, v in agg.items()}
    return out


def main(argv=None) -> int:
    print(json.dumps(measure(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The pixel-scale table: one row per matched SST pixel, with the ATL07 statistics within it.

One L2P pixel (~1 km) is the match of 10–100 consecutive ATL07 segments (~10–200 m each), so the
per-segment rows of a product are not independent samples of the SST. This table aggregates to
the SST's own scale: per (ATL07 granule, L2P granule, pixel row, pixel column) the pixel's SST
and error statistics, and the segments it was paired with — how many, how many with a valid
height, the lead fraction, median and spread of their heights, the along-track length they
cover, their mean time and the pixel's offset from it.

Built from a per-granule product (core.products.granule_netcdf, in memory or opened from its
file), so every entry point derives it the same way: ``colocate files --out X.nc`` writes
``X_pixels.nc``, the service writes ``<granule>_sst_pixels.nc`` beside each product, and the
request-level Parquet holds it as its own table (template.yaml's Glue table ``pixels``).
"""
from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from core.atomic import atomic_path
from core.products.attributes import CONVENTIONS, PRODUCT_NAME, date_attrs, scrub, utc_stamp
from core.products.tables import PIXELS

log = logging.getLogger(__name__)

PIXEL_DIM = "pixel"
PIXELS_SUFFIX = "_pixels.nc"  # X.nc -> X_pixels.nc
# ATL07 data dictionary: height_segment_ssh_flag 1 = sea_surface (a lead); where a product has no
# ssh flag, height_segment_type 2-9 are the specular and dark lead classes (0 cloud_covered, 1 other)
LEAD_TYPES = range(2, 10)
MATCH_FLAG_PIXEL_BITS = 0b0111  # ice_flagged, below_freezing, unscreened: the pixel's (height_invalid is a segment's)

# The table's columns, in order: (name, Arrow type, units or "", description), from the one
# declaration (core.products.tables.PIXELS) the Parquet field metadata and template.yaml's Glue
# table ``pixels`` follow too.
_ARROW = {"string": "string", "int": "int32", "tinyint": "int8", "smallint": "int16", "float": "float32",
          "double": "float64", "timestamp": "timestamp[us, UTC]"}
PIXEL_COLUMNS: tuple[tuple[str, str, str, str], ...] = tuple(
    (c.name, _ARROW[c.type], c.units, c.description) for c in PIXELS.columns)


_CONTENT = {"lat": "coordinate", "lon": "coordinate", "time": "coordinate",
            **dict.fromkeys(("sst", "sst_bias_corrected", "height_median", "height_stddev", "lead_fraction"),
                            "physicalMeasurement"),
            **dict.fromkeys(("sst_sses_bias", "sst_sses_standard_deviation", "sst_quality_level", "sst_match_flags"),
                            "qualityInformation"),
            **dict.fromkeys(("atl07_granule", "sst_source_name", "sst_collection_name", "sst_pixel_nj", "sst_pixel_ni",
                             "segment_time_mean"), "referenceInformation")}
_DESCRIPTORS = ("sst_pixel_nj", "sst_pixel_ni", "sst_sses_bias", "sst_bias_corrected", "height_stddev",
                "lead_fraction", "along_track_length", "segment_time_mean", "distance_min")


def _values(ds: xr.Dataset, name: str, dtype=np.float64) -> np.ndarray:
    """An obs variable as ``dtype``; NaN where the product has no such variable."""
    if name not in ds.variables:
        return np.full(ds.sizes["obs"], np.nan)
    return np.asarray(ds[name].values).astype(dtype)


def _names(ds: xr.Dataset, index_var: str, name_var: str, pick: np.ndarray) -> np.ndarray:
    names = np.array([str(v) for v in np.asarray(ds[name_var].values)], dtype=object) if name_var in ds else None
    if names is None or not names.size:
        return np.full(pick.size, "unknown", dtype=object)
    return names[np.clip(pick, 0, names.size - 1)]


def pixel_frame(product: xr.Dataset):
    """One row per matched pixel of a per-granule product (pandas DataFrame, PIXEL_COLUMNS)."""
    import pandas as pd

    ds = product
    gi = np.asarray(ds["sst_granule"].values)
    gi = np.where(np.isfinite(gi), gi, -1).astype(np.int64) if gi.dtype.kind == "f" else gi.astype(np.int64)
    matched = gi >= 0
    rows = np.asarray(ds["rowSize"].values, dtype=np.int64)
    owner = np.repeat(np.arange(rows.size), rows)
    if not matched.any():
        return pd.DataFrame({name: pd.Series([], dtype=_pandas_type(kind)) for name, kind, _, _ in PIXEL_COLUMNS})
    ci = _values(ds, "sst_collection", np.float64)
    height = _values(ds, "height_segment_height")
    if "height_segment_ssh_flag" in ds:
        lead: np.ndarray | None = _values(ds, "height_segment_ssh_flag") == 1
    else:
        lead = np.isin(_values(ds, "height_segment_type"), LEAD_TYPES) if "height_segment_type" in ds else None
    time_ns = np.asarray(ds["time"].values).astype("datetime64[ns]").astype(np.int64)
    seg = pd.DataFrame({
        "atl07_granule": np.array([str(v) for v in np.asarray(ds["atl07_granule"].values)], dtype=object)[owner],
        "beam": np.array([str(v) for v in np.asarray(ds["beam"].values)], dtype=object)[owner],
        "sst_source_name": _names(ds, "sst_granule", "sst_source_name", gi),
        "sst_collection_name": _names(ds, "sst_collection", "sst_collection_name",
                                      np.where(np.isfinite(ci), ci, 0).astype(np.int64)),
        "sst_pixel_nj": _values(ds, "sst_pixel_nj"), "sst_pixel_ni": _values(ds, "sst_pixel_ni"),
        "lat": _values(ds, "sst_pixel_lat"), "lon": _values(ds, "sst_pixel_lon"),
        "seg_ns": time_ns, "pixel_ns": time_ns + np.round(np.nan_to_num(_values(ds, "sst_dt")) * 1e9).astype(np.int64),
        **{k: _values(ds, k) for k in ("sst", "sst_sses_bias", "sst_sses_standard_deviation", "sst_bias_corrected",
                                       "sst_quality_level", "sst_match_flags", "sst_distance")},
        "pixel_flags": np.nan_to_num(_values(ds, "sst_match_flags")).astype(np.int64) & MATCH_FLAG_PIXEL_BITS,
        "height": height,
        "valid_height": np.isfinite(height),
        "lead": np.where(np.isfinite(height) & lead, 1.0, 0.0) if lead is not None else np.nan,
        "length": _values(ds, "height_segment_length_seg"),
    })[matched]
    keys = ["atl07_granule", "sst_source_name", "sst_pixel_nj", "sst_pixel_ni"]
    grouped = seg.groupby(keys, sort=False, dropna=False)
    first = grouped.first()
    n_valid = grouped["valid_height"].sum()
    valid = seg[seg["valid_height"]].groupby(keys, sort=False, dropna=False)["height"]
    mean_ns = grouped["seg_ns"].mean()
    out = pd.DataFrame({
        "sst_collection_name": first["sst_collection_name"],
        "lat": first["lat"], "lon": first["lon"],
        "time": first["pixel_ns"],
        **{k: first[k] for k in ("sst", "sst_sses_bias", "sst_sses_standard_deviation", "sst_bias_corrected",
                                 "sst_quality_level")},
        "sst_match_flags": grouped["pixel_flags"].max(),  # the pixel's bits are alike for all its segments
        "n_segments": grouped.size(),
        "n_segments_valid_height": n_valid,
        "n_beams": grouped["beam"].nunique(),
        "lead_fraction": grouped["lead"].sum(min_count=1) / n_valid.where(n_valid > 0),
        "height_median": valid.median(),
        "height_stddev": valid.std(ddof=0).where(valid.count() >= 2),
        "along_track_length": grouped["length"].sum(min_count=1),
        "segment_time_mean": mean_ns,
        "dt_mean": (first["pixel_ns"] - mean_ns) / 1e9,
        "distance_min": grouped["sst_distance"].min(),
    }).reset_index()
    return _typed(out)


def _pandas_type(kind: str) -> Any:
    return {"string": object, "timestamp[us, UTC]": "datetime64[us, UTC]"}.get(kind, kind)


def _typed(frame):
    """The frame's columns in PIXEL_COLUMNS order and types (times UTC microseconds)."""
    import pandas as pd

    cols = {}
    for name, kind, _, _ in PIXEL_COLUMNS:
        values = frame[name]
        if kind.startswith("timestamp"):
            ns = values.to_numpy()
            ns = ns.astype(np.int64) if ns.dtype.kind in "iu" else np.round(ns.astype(np.float64)).astype(np.int64)
            cols[name] = pd.to_datetime(ns, unit="ns", utc=True).astype("datetime64[us, UTC]")
        elif kind == "string":
            cols[name] = values.astype(object).map(str)
        else:
            cols[name] = values.to_numpy(np.float64).astype(kind) if kind.startswith("float") else \
                np.nan_to_num(values.to_numpy(np.float64), nan=-1).astype(kind)
    return pd.DataFrame(cols)


def pixel_dataset(product: xr.Dataset, *, now: datetime | None = None) -> xr.Dataset:
    """The pixel table of a per-granule product as a CF-1.8 netCDF dataset (featureType point)."""
    frame = pixel_frame(product)
    created = utc_stamp((now or datetime.now(UTC)).astimezone(UTC))
    data = {}
    for name, kind, units, doc in PIXEL_COLUMNS:
        values = frame[name].to_numpy()
        if kind.startswith("timestamp"):
            values = frame[name].dt.tz_localize(None).to_numpy().astype("datetime64[ns]")
        attrs: dict[str, Any] = {"long_name": doc}
        if units:
            attrs["units"] = units
        data[name] = ((PIXEL_DIM,), values, attrs)
    ds = xr.Dataset({k: v for k, v in data.items() if k not in ("lat", "lon", "time")},
                    coords={k: data[k] for k in ("time", "lat", "lon")})
    ds["lat"].attrs.update(standard_name="latitude", axis="Y")
    ds["lon"].attrs.update(standard_name="longitude", axis="X")
    ds["time"].attrs.update(standard_name="time", axis="T")
    sst_name = str(product["sst"].attrs.get("standard_name", "sea_surface_temperature"))
    standard = {"sst": sst_name, "sst_sses_standard_deviation": f"{sst_name} standard_error",
                "n_segments": "number_of_observations", "n_segments_valid_height": "number_of_observations",
                "n_beams": "number_of_observations", "dt_mean": "time_sample_difference_due_to_collocation",
                "height_median": "height_above_mean_sea_level"}
    for vname, var in ds.variables.items():
        var.attrs["coverage_content_type"] = _CONTENT.get(str(vname), "auxiliaryInformation")
        if vname in standard:
            var.attrs["standard_name"] = standard[str(vname)]
    ds["height_median"].attrs["cell_methods"] = "area: median"
    # CF has no standard name for these (ACDD wants one on every data variable): they describe the
    # pixel's sample, as auxiliary coordinates of its segment count (as in the products)
    ds["n_segments"].encoding["coordinates"] = "time lat lon " + " ".join(_DESCRIPTORS)
    ds["sst_match_flags"].attrs.update(flag_masks=np.array([1, 2, 4], np.int8),
                                       flag_meanings="ice_flagged below_freezing unscreened")
    ds["sst_match_flags"].attrs.pop("units", None)
    ds["sst_quality_level"].attrs.pop("units", None)
    ds["sst_quality_level"].attrs.update({k: v for k, v in product["sst_quality_level"].attrs.items()
                                          if k.startswith("flag_")})
    for name in ("time", "segment_time_mean"):
        ds[name].encoding.update(units="microseconds since 2018-01-01 00:00:00", calendar="standard", dtype="float64")
    for vname, var in ds.variables.items():
        if var.dtype.kind == "f" and vname not in ("lat", "lon", "time", "segment_time_mean"):
            var.encoding["_FillValue"] = np.array(np.nan, var.dtype)
        elif var.dtype == object:
            var.encoding["dtype"] = str
    keep = ("Conventions", "naming_authority", "standard_name_vocabulary", "request_id", "license",
            "colocation_radius_m", "colocation_max_dt_s", "colocation_min_quality_level", "colocation_exclude_ice",
            "colocation_quality_screening", "colocation_ice_screening", "colocation_quality_warning", "references",
            "creator_name", "publisher_name", "institution", "project")
    ds.attrs = {**{k: product.attrs[k] for k in keep if k in product.attrs},
                "Conventions": CONVENTIONS, "featureType": "point", "cdm_data_type": "Point",
                "title": "ICESat-2 ATL07 segments aggregated to the scale of their matched GHRSST L2P pixels",
                "keywords": str(product.attrs.get("keywords", "ICESat-2, ATL07, GHRSST, L2P, colocation")),
                "keywords_vocabulary": "GCMD Science Keywords",
                "summary": ("One row per matched SST pixel (granule, row, column) with the statistics of the ATL07 "
                            "segments paired with it; made from the per-segment product "
                            + scrub(str(product.attrs.get("id", ""))) + ". Consecutive segments share a pixel, "
                            "so this is the table of independent SST samples."),
                "id": f"{PRODUCT_NAME}_pixels_{scrub(str(product.attrs.get('id', '')))}",
                "source": scrub(str(product.attrs.get("source", ""))),
                "history": f"{created} pixel table from the per-segment product",
                **date_attrs(created)}
    return ds


def pixels_path(product_path: str | os.PathLike) -> Path:
    """``X.nc`` → ``X_pixels.nc`` (the pixel table beside its product)."""
    path = Path(product_path)
    return path.with_name(f"{path.stem}{PIXELS_SUFFIX}")


def write_pixel_table(product: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write the pixel table of ``product`` to ``path`` atomically; returns the path."""
    path = Path(path)
    ds = pixel_dataset(product)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
    log.info("wrote %s (%d pixels)", path.name, ds.sizes[PIXEL_DIM])
    return path

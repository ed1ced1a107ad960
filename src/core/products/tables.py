"""The tables the request-level results are queried as, declared once: each column's name,
Glue/Athena type, units and description, and the table's partition keys.

Everything that describes a table is generated from here, so the descriptions can never differ:

* template.yaml's Glue table (``Columns`` and ``PartitionKeys``, each with its description as
  the column comment) between the ``BEGIN/END generated`` markers: ``python -m
  core.products.tables template.yaml`` rewrites that block (tests/unit/test_tables.py fails while
  template.yaml differs from it);
* each Parquet file's field metadata (core.products.request_outputs.write_parquet): the units
  and description of every column, in the file's key-value metadata (``PANDAS_ATTRS``, which
  pandas restores as ``df.attrs["columns"]``; DuckDB shows it with ``parquet_kv_metadata``).

More than one table fits: a table is a :class:`Table` in :data:`TABLES`.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

GLUE_COMMENT_MAX = 255  # Glue's limit on a column comment (AWS Glue API, "Column structure")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Glue/Athena (Hive) type
    description: str
    units: str = ""  # UDUNITS, as in the netCDF products; "" for names, flags and times

    def comment(self) -> str:
        text = f"{self.description} [{self.units}]" if self.units else self.description
        return text[:GLUE_COMMENT_MAX]


@dataclass(frozen=True)
class Table:
    name: str  # the Glue table's name
    resource: str  # its template.yaml logical id
    description: str
    columns: tuple[Column, ...]
    partitions: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        return next((c for c in (*self.columns, *self.partitions) if c.name == name), None)

    def field_metadata(self, names: Iterable[str]) -> dict[str, dict[str, str]]:
        """``{column: {"description", "units"?}}`` of the named columns this table declares."""
        out: dict[str, dict[str, str]] = {}
        for name in names:
            col = self.column(str(name))
            if col is not None:
                out[col.name] = {"description": col.description, **({"units": col.units} if col.units else {})}
        return out


_N = "number of L2P pixels within sst_radius and colocation_max_dt_s "
_FROM_FILE = " (from the file, else the collection profile)"

MATCHES = Table(
    name="matches", resource="MatchesTable",
    description="Every matched ATL07 segment with its GHRSST L2P SST, one row per segment",
    columns=(
        Column("trajectory_id", "string", "ATL07 granule and beam of the segment"),
        Column("atl07_granule", "string", "ATL07 source granule file name"),
        Column("beam", "string", "ATLAS ground track (gt1l ... gt3r)"),
        Column("beam_strength", "string", "beam energy: strong, weak, mixed (yaw flip inside the granule) or unknown"),
        Column("height_segment_id", "int", "ATL07 height segment identifier"),
        Column("height_segment_height", "float", "ATL07 height of the segment surface", "m"),
        Column("beam_strength_flag", "tinyint", "beam energy of the segment's beam at the segment's time"),
        Column("height_segment_quality", "smallint", "ATL07 height_segment_quality flag"),
        Column("height_segment_type", "smallint", "ATL07 height_segment_type (surface type)"),
        Column("height_segment_fit_quality_flag", "smallint", "ATL07 height_segment_fit_quality_flag"),
        Column("height_segment_confidence", "float", "ATL07 surface height confidence", "1"),
        Column("height_segment_ssh_flag", "smallint", "ATL07 height_segment_ssh_flag (sea surface)"),
        Column("height_segment_length_seg", "float", "ATL07 length of the segment", "m"),
        Column("seg_dist_x", "double", "ATL07 along-track distance", "m"),
        Column("ice_conc_amsr2", "float", "ATL07 v006+ sea ice concentration from AMSR2, as a fraction", "1"),
        Column("ice_conc_ssmi", "float", "ATL07 v006+ sea ice concentration from SSM/I, as a fraction", "1"),
        Column("sst", "float", "colocated GHRSST L2P SST, of the kind sst_collection_standard_name says", "K"),
        Column("sst_distance", "float", "great-circle distance from the segment to the matched pixel centre", "m"),
        Column("sst_dt", "double", "matched pixel time minus segment time", "s"),
        Column("sst_radius", "float", "colocation radius applied to the segment", "m"),
        Column("sst_pixel_nj", "int", "row (nj) of the matched pixel in its L2P granule", "1"),
        Column("sst_pixel_ni", "int", "column (ni) of the matched pixel in its L2P granule", "1"),
        Column("sst_quality_level", "tinyint", "GHRSST quality_level of the matched pixel (5 best)"),
        Column("sst_l2p_flags", "smallint", "GHRSST l2p_flags of the matched pixel"),
        Column("sst_ice", "tinyint", "ice bit of the matched pixel's l2p_flags"),
        Column("sst_sses_bias", "float", "SSES bias of the matched pixel", "K"),
        Column("sst_sses_standard_deviation", "float", "SSES standard deviation of the matched pixel", "K"),
        Column("sst_dt_analysis", "float", "matched pixel SST minus the L2P product's reference analysis", "K"),
        Column("sst_n_valid", "int", _N + "with a valid SST (the match is the nearest of them)", "1"),
        Column("sst_n_rejected_quality", "int", _N + "whose quality_level is below the minimum", "1"),
        Column("sst_n_out_of_range", "int", _N + "whose SST is outside the variable's valid range", "1"),
        Column("sst_n_ice", "int", _N + "whose l2p_flags ice bit is set (also counted above)", "1"),
        Column("sst_n_outside_dt", "int", "number of L2P pixels within sst_radius but outside colocation_max_dt_s",
               "1"),
        Column("sst_median", "float", "median SST of the valid pixels within sst_radius and the time window", "K"),
        Column("sst_stddev", "float", "standard deviation (ddof 0) of the SST of those valid pixels; NULL with "
               "fewer than two", "K"),
        Column("sst_source_name", "string", "GHRSST L2P granule of the match (file name)"),
        Column("sst_source_platform", "string", "platform of the L2P granule" + _FROM_FILE),
        Column("sst_source_sensor", "string", "sensor of the L2P granule" + _FROM_FILE),
        Column("sst_source_standard_name", "string", "SST standard name of the L2P granule" + _FROM_FILE),
        Column("sst_collection_name", "string", "SST collection of the match (CMR concept id or short name)"),
        Column("time", "timestamp", "segment time, UTC (Parquet timestamp adjusted to UTC, microseconds)"),
        Column("lat", "double", "segment centre latitude", "degrees_north"),
        Column("lon", "double", "segment centre longitude", "degrees_east"),
        Column("ice_conc", "float", "ATL07 v003-v005 sea ice concentration as a fraction (NULL in rows from v006+ "
               "granules)", "1"),
        Column("height_segment_surface_error_est", "float", "ATL07 error estimate of the segment's surface height "
               "(NULL where the version lacks it)", "m"),
        Column("layer_flag", "smallint", "ATL07 consolidated cloud flag (NULL where the version lacks it)"),
        Column("cloud_flag_asr", "smallint", "ATL07 cloud probability from apparent surface reflectance"),
        Column("msw_flag", "smallint", "ATL07 multiple-scattering warning flag"),
        Column("sst_bias_corrected", "float", "sst minus sst_sses_bias (GDS 2.0); its uncertainty is "
               "sst_sses_standard_deviation", "K"),
        Column("sst_pixel_lat", "float", "matched pixel centre latitude", "degrees_north"),
        Column("sst_pixel_lon", "float", "matched pixel centre longitude", "degrees_east"),
        Column("sst_match_flags", "tinyint", "bits: 1 ice_flagged, 2 below_freezing (SST < 271.35 K), "
               "4 unscreened (no quality screening), 8 height_invalid"),
        Column("sst_n_excluded_ice", "int", _N + "that would be valid but are excluded as ice (exclude_ice)", "1"),
        Column("sst_collection_standard_name", "string", "standard name of the match's SST in its collection "
               "(skin, subskin, foundation or sea_water_temperature)"),
        Column("sst_collection_quality_flag_values", "string", "quality_level flag values of the match's collection"),
        Column("sst_collection_quality_flag_meanings", "string",
               "quality_level flag meanings of the match's collection, in its producer's words"),
        Column("sst_collection_l2p_flag_masks", "string", "l2p_flags flag masks of the match's collection"),
        Column("sst_collection_l2p_flag_meanings", "string", "l2p_flags flag meanings of the match's collection"),
        Column("sst_collection_citation", "string", "citation (DOI) of the match's collection"),
    ),
    # The folders ``request_id=<id>/date=<YYYY-MM-DD>/``: Hive readers (DuckDB, pyarrow, pandas)
    # find the same two columns, typed alike, as Athena's partition projection does.
    partitions=(
        Column("request_id", "string", "the request (job) id; every query names one (partition projection: injected)"),
        Column("date", "date", "UTC date of the request's per-date task"),
    ),
)

_BY_PIXEL = "of the ATL07 segments paired with the pixel"

PIXELS = Table(
    name="pixels", resource="PixelsTable",
    description="Every matched GHRSST L2P pixel with the statistics of the ATL07 segments paired with it",
    columns=(
        Column("atl07_granule", "string", "ATL07 granule whose segments were paired with the pixel"),
        Column("sst_source_name", "string", "L2P granule of the pixel"),
        Column("sst_collection_name", "string", "SST collection of the pixel"),
        Column("sst_pixel_nj", "int", "row of the pixel in its L2P granule (0-based, full swath)", "1"),
        Column("sst_pixel_ni", "int", "column of the pixel in its L2P granule (0-based, full swath)", "1"),
        Column("lat", "float", "pixel centre latitude", "degrees_north"),
        Column("lon", "float", "pixel centre longitude", "degrees_east"),
        Column("time", "timestamp", "pixel time (L2P time + sst_dtime), UTC"),
        Column("sst", "float", "the pixel's SST (its source's standard name: sst_source_standard_name in the products)",
               "K"),
        Column("sst_sses_bias", "float", "SSES bias of the pixel (GDS 2.0)", "K"),
        Column("sst_sses_standard_deviation", "float", "SSES standard deviation: uncertainty of sst_bias_corrected",
               "K"),
        Column("sst_bias_corrected", "float", "sst - sst_sses_bias (GDS 2.0)", "K"),
        Column("sst_quality_level", "tinyint", "the pixel's L2P quality_level (its producer's flag table)", "1"),
        Column("sst_match_flags", "tinyint", "bits 1 ice_flagged, 2 below_freezing, 4 unscreened (as the products)",
               "1"),
        Column("n_segments", "int", "ATL07 segments paired with the pixel", "1"),
        Column("n_segments_valid_height", "int", "of those, segments with a valid height_segment_height", "1"),
        Column("n_beams", "int", "beams those segments belong to", "1"),
        Column("lead_fraction", "float", "share of the valid-height segments that are leads "
               "(height_segment_ssh_flag 1; else height_segment_type 2-9); NaN without a valid height", "1"),
        Column("height_median", "float", "median height_segment_height " + _BY_PIXEL + " (valid heights)", "m"),
        Column("height_stddev", "float", "standard deviation (ddof 0) of those heights; NaN with fewer than two", "m"),
        Column("along_track_length", "float", "sum of height_segment_length_seg " + _BY_PIXEL + " (NaN without it)",
               "m"),
        Column("segment_time_mean", "timestamp", "mean time " + _BY_PIXEL + ", UTC"),
        Column("dt_mean", "double", "pixel time minus segment_time_mean", "s"),
        Column("distance_min", "float", "great-circle distance from the pixel centre to its nearest segment", "m"),
    ),
    partitions=MATCHES.partitions,  # the same request_id=<id>/date=<day>/ folders
)

TABLES: tuple[Table, ...] = (MATCHES, PIXELS)


# ---------------------------------------------------------------------------- template.yaml
BEGIN = "# BEGIN generated by `python -m core.products.tables template.yaml`: {name} {part}"
END = "# END generated: {name} {part}"
PARTS = {"PartitionKeys": "partitions", "Columns": "columns"}  # the Glue key -> the Table field


def glue_lines(table: Table, key: str, indent: str) -> list[str]:
    """The generated lines of ``table``'s Glue ``key`` (Columns or PartitionKeys) at ``indent``."""
    import json

    # JSON strings are YAML flow scalars: any comment text is quoted safely
    return [f"{indent}{key}:", *(f"{indent}  - {{Name: {c.name}, Type: {c.type}, Comment: {json.dumps(c.comment())}}}"
                                 for c in getattr(table, PARTS[key]))]


def regenerate(text: str) -> str:
    """``text`` (template.yaml) with every table's generated blocks rewritten from :data:`TABLES`."""
    lines = text.splitlines()
    for table in TABLES:
        for key in PARTS:
            begin, end = BEGIN.format(name=table.name, part=key), END.format(name=table.name, part=key)
            starts = [i for i, line in enumerate(lines) if line.strip() == begin]
            ends = [i for i, line in enumerate(lines) if line.strip() == end]
            if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
                raise ValueError(f"template: expected one '{begin}' ... '{end}' block")
            indent = lines[starts[0]][: len(lines[starts[0]]) - len(lines[starts[0]].lstrip())]
            lines[starts[0] + 1: ends[0]] = glue_lines(table, key, indent)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def main(argv: list[str] | None = None) -> int:
    """``python -m core.products.tables template.yaml``: rewrite the generated Glue blocks."""
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m core.products.tables template.yaml", file=sys.stderr)
        return 2
    path = Path(args[0])
    text = path.read_text()
    new = regenerate(text)
    if new != text:
        path.write_text(new)
        print(f"{path}: Glue tables regenerated")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The request-level results (core.products.request_outputs) against the per-granule products they come from.

The netCDF is read back with xarray and netCDF4, the Parquet with DuckDB (an independent reader of
the Hive-partitioned dataset, not the writer); every matched segment of every product must be there
with the same values, and nothing else.
"""
from __future__ import annotations

from datetime import UTC, datetime

import duckdb  # pinned dev dependency: a missing one is a failure, not a skip
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from core.products.granule_netcdf import build_dataset, write_netcdf
from core.products.request_outputs import MergeError, glue_columns, matches_frame, write_request_products
from tests.product_fixtures import PARAMS, antimeridian_scene, every_field_pairing, seed_scene, unmatched_scene

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REQUEST = {"bbox": [-62.8, 81.7, -56.4, 83.0], "start": "2019-06-22T00:00:00Z", "end": "2019-06-24T23:59:59Z"}


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """Three dates' products: the seed scene (without height_segment_quality: a variable that first appears
    later), the antimeridian scene (another L2P granule: sst_granule must be re-indexed) and one
    with no match at all."""
    tmp = tmp_path_factory.mktemp("products")
    out = []
    for date, scene, drop in (("2019-06-22", seed_scene, ["height_segment_quality"]), ("2019-06-23", antimeridian_scene, []),
                              ("2019-06-24", unmatched_scene, [])):
        tracks, swaths = scene(n=800)
        ds = build_dataset(tracks, [s.granule for s in swaths], PARAMS, request_id="rtest", now=NOW)
        out.append((date, write_netcdf(ds.drop_vars(drop), tmp / f"{date}.nc")))
    return out


@pytest.fixture(scope="module")
def merged(products, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merged")
    dates = ((d, (xr.open_dataset(p) for p in [path])) for d, path in products)
    result = write_request_products(dates, tmp / "req.nc", tmp / "parquet", request_id="rtest", request=REQUEST,
                                    now=NOW, run_ids={"2019-06-22": "aaa", "2019-06-23": "bbb"})
    return result, tmp


def _matched(ds: xr.Dataset) -> np.ndarray:
    return np.flatnonzero(ds["sst_granule"].values >= 0)


def test_netcdf_holds_every_matched_segment_of_every_product(products, merged):
    result, _ = merged
    with xr.open_dataset(result.netcdf) as req:
        start = 0
        total = 0
        for date, path in products:
            with xr.open_dataset(path) as prod:
                idx = _matched(prod)
                rows = slice(start, start + idx.size)
                for name, var in prod.variables.items():
                    if var.dims == ("obs",) and name not in ("sst_granule", "sst_collection"):
                        np.testing.assert_array_equal(req[name].values[rows], var.values[idx], err_msg=name)
                # the index re-points at the same L2P granule by name
                names = req["sst_source_name"].values[req["sst_granule"].values[rows]]
                np.testing.assert_array_equal(names, prod["sst_source_name"].values[prod["sst_granule"].values[idx]])
                # trajectories: the product's, with the matched rows only
                owner = np.repeat(np.arange(prod.sizes["trajectory"]), prod["rowSize"].values)[idx]
                kept = np.unique(owner)
                sel = req["colocation_date"].values == date
                np.testing.assert_array_equal(req["trajectory_id"].values[sel], prod["trajectory_id"].values[kept])
                np.testing.assert_array_equal(req["rowSize"].values[sel], np.bincount(owner)[kept])
                start += idx.size
                total += prod.sizes["obs"]
        assert start == req.sizes["obs"] == result.matched > 0
        # a variable missing from the first product is fill for its rows
        first = _matched(xr.open_dataset(products[0][1])).size
        late = req["height_segment_quality"].values
        assert np.isnan(late[:first]).all() and np.isin(late[first:], [0, 1]).all()
        assert set(req["sst_source_name"].values) == {"20190622100001-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc",
                                                      "20190623113000-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc"}
        assert req["sst_granule"].attrs["flag_values"].tolist() == [-1, 0, 1]
        assert req["sst_granule"].attrs["flag_meanings"].split()[0] == "no_match"
        # flag tables kept as the products declare them
        with xr.open_dataset(products[0][1]) as prod:
            for name in ("sst_quality_level", "sst_l2p_flags", "height_segment_type"):
                for key in ("flag_values", "flag_masks", "flag_meanings"):
                    if key in prod[name].attrs:
                        np.testing.assert_array_equal(req[name].attrs[key], prod[name].attrs[key])
        assert req.attrs["segments_matched_any_height"] == start and req.attrs["segments_total"] == total
        # segments_matched counts the matches with a height
        assert req.attrs["segments_matched"] == int(np.isfinite(req["height_segment_height"].values).sum()) < start
        assert req.attrs["request_start"] == REQUEST["start"] and req.attrs["featureType"] == "trajectory"
        assert req.attrs["colocation_dates"] == "2019-06-22,2019-06-23,2019-06-24"
        assert req.attrs["time_coverage_start"] < req.attrs["time_coverage_end"]
        # the two products lie on both sides of the antimeridian and at -58 E: one arc holds both
        assert req.attrs["geospatial_lon_min"] > 0 > req.attrs["geospatial_lon_max"]
    import netCDF4

    with netCDF4.Dataset(result.netcdf) as nc:  # another reader: the ragged array adds up
        assert int(nc["rowSize"][:].sum()) == nc.dimensions["obs"].size
        assert nc["rowSize"].sample_dimension == "obs" and nc["trajectory_id"].cf_role == "trajectory_id"


def test_request_netcdf_passes_the_compliance_checker(merged, tmp_path):
    pytest.importorskip("compliance_checker")
    from compliance_checker.runner import CheckSuite

    from tests.compliance_fixtures import compliance_failures

    suite = CheckSuite()
    suite.load_all_available_checkers()
    failures, errors = compliance_failures(suite, merged[0].netcdf)
    assert not errors and not failures, "\n".join(errors + failures)


def test_parquet_has_every_matched_row_with_the_products_values(products, merged):
    result, tmp = merged
    assert sorted(result.partitions) == ["2019-06-22", "2019-06-23"]  # no file for a date without matches
    assert result.partitions["2019-06-22"].name == "part-aaa.parquet"
    table = duckdb.sql(f"SELECT * FROM read_parquet('{tmp}/parquet/**/*.parquet', hive_partitioning = true) "
                       "ORDER BY atl07_granule, beam, time").df()
    assert len(table) == result.matched
    for date, path in products:
        with xr.open_dataset(path) as prod:
            idx = _matched(prod)
            got = table[table["date"].astype(str) == date]
            assert len(got) == idx.size
            if not idx.size:
                continue
            owner = np.repeat(np.arange(prod.sizes["trajectory"]), prod["rowSize"].values)[idx]
            # expected straight from the product (not through matches_frame), ordered as the query
            exp = {"atl07_granule": prod["atl07_granule"].values[owner], "beam": prod["beam"].values[owner],
                   "time": prod["time"].values[idx].astype("datetime64[us]"), "sst": prod["sst"].values[idx],
                   "lat": prod["lat"].values[idx], "sst_quality_level": prod["sst_quality_level"].values[idx],
                   "height_segment_id": prod["height_segment_id"].values[idx],
                   "sst_source_name": prod["sst_source_name"].values[prod["sst_granule"].values[idx]]}
            order = np.lexsort((exp["time"], exp["beam"], exp["atl07_granule"]))
            for name, values in exp.items():
                column = got[name].to_numpy()
                if name == "time":  # a UTC-adjusted timestamp: DuckDB hands it over timezone-aware
                    column = got[name].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
                elif values.dtype.kind == "f":
                    column = column.astype(np.float64)
                np.testing.assert_array_equal(column, values[order], err_msg=name)
    # a fill is NULL, not a sentinel: no -1 quality level among the matches
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{tmp}/parquet/**/*.parquet') "
                      "WHERE sst_quality_level < 0 OR sst IS NULL").fetchall() == [(0,)]


def test_readme_duckdb_example_runs(merged):
    """The README's DuckDB query, as printed there, on the written dataset."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Reading the request-level results", 1)[1]
    query = re.search(r'duckdb\.sql\("""(.*?)"""\)', section, re.S).group(1)
    _, tmp = merged
    out = duckdb.sql(query.replace("parquet/", f"{tmp}/parquet/")).fetchall()
    assert out and all(r[1] > 0 for r in out)


def test_glue_table_lists_every_column_a_product_can_have(tmp_path):
    """template.yaml's Glue columns = the Parquet columns of products with every optional field
    (ATL07 v006's two ice concentrations, and the single one of v003-v005)."""
    from tests.deploy_fixtures import sam_template

    found = set()
    for v006 in (True, False):
        (tmp_path / str(v006)).mkdir()
        pairing, params = every_field_pairing(tmp_path / str(v006), ice_conc_v006=v006)
        frame = matches_frame(build_dataset(pairing.tracks, pairing.source_info(), params, now=NOW))
        found |= set(glue_columns(frame))
    columns = [(c["Name"], c["Type"]) for c in
               sam_template()["Resources"]["MatchesTable"]["Properties"]["TableInput"]["StorageDescriptor"]["Columns"]]
    assert sorted(found) == sorted(columns) and len(columns) == len({c for c, _ in columns})
    # and every product's columns are among them (with the same type)
    tracks, swaths = seed_scene(n=800)
    seed = matches_frame(build_dataset(tracks, [s.granule for s in swaths], PARAMS, now=NOW))
    assert set(glue_columns(seed)) <= set(columns)
    keys = sam_template()["Resources"]["MatchesTable"]["Properties"]["TableInput"]["PartitionKeys"]
    assert [k["Name"] for k in keys] == ["request_id", "date"] and not {"request_id", "date"} & set(frame.columns)


def test_a_product_missing_a_variable_without_fill_is_refused(products, tmp_path):
    date, path = products[1]
    good, bad = xr.open_dataset(products[0][1]), xr.open_dataset(path).drop_vars("sst_n_valid")
    with pytest.raises(MergeError, match="sst_n_valid"):
        write_request_products([("2019-06-22", [good]), (date, [bad])], tmp_path / "r.nc", tmp_path / "pq",
                               request_id="rtest")
    assert not list(tmp_path.glob("*.nc")) and not list(tmp_path.glob(".r.nc*"))  # nothing half-written


def test_a_granule_on_two_dates_gives_two_trajectories_and_in_memory_products_merge(tmp_path):
    """A granule that spans midnight appears in two dates' products: its trajectory ids stay
    unique. Products straight from build_dataset (not from a file) merge the same way, and a
    trajectory variable one of them lacks is empty there (not shifted onto other trajectories)."""
    tracks, swaths = seed_scene(n=800)
    ds = build_dataset(tracks, [s.granule for s in swaths], PARAMS, request_id="rtest", now=NOW)
    result = write_request_products([("2019-06-22", [ds]), ("2019-06-23", [ds.drop_vars("beam_strength")])],
                                    tmp_path / "r.nc", tmp_path / "pq", request_id="rtest")
    with xr.open_dataset(result.netcdf) as req:
        ids = req["trajectory_id"].values
        assert len(set(ids)) == len(ids) == 2 * (req.sizes["trajectory"] // 2)
        second = req["colocation_date"].values == "2019-06-23"
        assert set(req["beam_strength"].values[~second]) <= {"strong", "weak"}
        assert set(req["beam_strength"].values[second]) == {""} and all(i.endswith(":2019-06-23") for i in ids[second])
        assert req.sizes["obs"] == 2 * int((ds["sst_granule"].values >= 0).sum())
    table = duckdb.sql(f"SELECT sst_quality_level FROM read_parquet('{tmp_path}/pq/**/*.parquet')").df()
    assert table["sst_quality_level"].notna().all() and (table["sst_quality_level"] >= 4).all()


def test_no_product_writes_nothing(tmp_path):
    result = write_request_products([("2019-06-22", [])], tmp_path / "r.nc", tmp_path / "pq", request_id="r")
    assert result.netcdf is None and result.partitions == {} and not list(tmp_path.rglob("*"))


NAVO_QUALITY = "not_used not_used not_used cloudy probably_cloudy clear"  # NAVO VIIRS L2P's own table
GHRSST_QUALITY = "no_data bad_data worst_quality low_quality acceptable_quality best_quality"


def _collection_product(tmp_path, name, collection, standard_name, meanings, lon0):
    """One ATL07 granule against one L2P granule of ``collection``, as its product."""
    from core.params import ColocationParams
    from core.science.atl07 import read_atl07
    from core.science.pairing import pair_granule, read_local_windows
    from tests.science_fixtures import delta_time_for, synthetic_swath_file, track_geometry, write_atl07

    folder = tmp_path / name
    folder.mkdir()
    l2p, _ = synthetic_swath_file(folder, 82.3, lon0, rows=40, cols=30, name=f"{name}_L2P.nc", sses=True,
                                  global_attrs={"id": collection}, sst_standard_name=standard_name,
                                  quality_meanings=meanings)
    lat, lon = track_geometry(82.3, lon0, n=200, length_m=30_000, angle_deg=20)
    atl = write_atl07(folder / f"ATL07-01_2019062209500{len(name)}_13070301_006_01.h5",
                      {"gt1l": dict(lat=lat, lon=lon, delta_time=delta_time_for("2019-06-22T10:02:00")
                                    + np.arange(200) * 0.5)}, beam_type_attr=True)
    params = ColocationParams(radius_m=1500.0, max_dt_s=3600.0, min_quality_level=4)
    granule = read_atl07(atl)
    pairing = pair_granule(granule, read_local_windows(granule, [(l2p, None)], params), params)
    assert pairing.matched > 0
    ds = build_dataset(pairing.tracks, pairing.source_info(), params.as_attrs(), warnings=pairing.warnings, now=NOW)
    return ds, pairing


def test_mixed_collections_keep_each_collections_semantics(tmp_path):
    """A MODIS-like (skin, GHRSST quality words) and a NAVO-like (sea_water_temperature, its own
    quality words) product merged: each row's standard name and quality table are its
    collection's, no single table is claimed, the screening parameters stay, and NAVO's
    "probably_cloudy" at the minimum level is warned about in the product and the merge."""
    modis, _ = _collection_product(tmp_path, "modis", "MODIS_A-JPL-L2P-v2019.0", "sea_surface_skin_temperature",
                                   GHRSST_QUALITY, -60.0)
    navo, pairing = _collection_product(tmp_path, "navo", "VIIRS_NPP-NAVO-L2P-v3.0", "sea_water_temperature",
                                        NAVO_QUALITY, -40.0)
    # the NAVO product alone: its own words, a warning, no "skin" claimed, cited from its file
    assert navo["sst"].attrs["standard_name"] == "sea_water_temperature" and "skin" not in navo.attrs["title"]
    assert "probably_cloudy" in navo.attrs["colocation_quality_warning"]
    assert any("probably_cloudy" in w for w in pairing.warnings)
    assert navo["sst_quality_level"].attrs["flag_meanings"] == NAVO_QUALITY
    assert list(navo["sst_collection_name"].values) == ["VIIRS_NPP-NAVO-L2P-v3.0"]
    assert "none" not in navo.attrs["references"] and "VIIRS_NPP-NAVO-L2P-v3.0" in navo.attrs["references"]
    assert "colocation_quality_warning" not in modis.attrs
    request = {"min_quality_level": 4, "start": "2019-06-22T00:00:00Z"}
    result = write_request_products([("2019-06-22", [modis, navo])], tmp_path / "r.nc", tmp_path / "pq",
                                    request_id="rmix", request=request, now=NOW, pixels_dir=tmp_path / "px")
    with xr.open_dataset(result.netcdf) as req:
        coll = [str(c) for c in req["sst_collection_name"].values]
        row = req["sst_collection"].values
        by_row = {c: {k: str(req[f"sst_collection_{k}"].values[coll.index(c)])
                      for k in ("standard_name", "quality_flag_meanings")} for c in coll}
        assert by_row["VIIRS_NPP-NAVO-L2P-v3.0"] == {"standard_name": "sea_water_temperature",
                                                     "quality_flag_meanings": NAVO_QUALITY}
        assert by_row["MODIS_A-JPL-L2P-v2019.0"]["quality_flag_meanings"] == GHRSST_QUALITY
        assert {coll[i] for i in np.unique(row)} == set(coll)  # rows of both collections
        assert "flag_meanings" not in req["sst_quality_level"].attrs  # no one table claimed
        assert "sst_collection_quality_flag_meanings" in req["sst_quality_level"].attrs["comment"]
        assert req["sst"].attrs["standard_name"] == "sea_surface_temperature"
        assert "sst_collection_standard_name" in req["sst"].attrs["comment"]
        assert req.attrs["colocation_min_quality_level"] == 4
        assert req.attrs["colocation_quality_screening"] == "quality_level >= 4"
        assert "probably_cloudy" in req.attrs["colocation_quality_warning"] and req.attrs["title"]
    frame = pd.read_parquet(result.partitions["2019-06-22"])
    navo_rows = frame[frame["sst_collection_name"] == "VIIRS_NPP-NAVO-L2P-v3.0"]
    assert len(navo_rows) and (navo_rows["sst_collection_quality_flag_meanings"] == NAVO_QUALITY).all()
    pixels = pd.read_parquet(tmp_path / "px" / "date=2019-06-22" / "part-0.parquet")
    assert int(pixels["n_segments"].sum()) == len(frame)
    assert set(pixels["sst_collection_name"]) == set(coll)

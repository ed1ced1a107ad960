"""core.products.granule_netcdf: CF trajectory dataset built from core.model tracks, written and read back."""
from __future__ import annotations

from datetime import UTC, datetime

import netCDF4
import numpy as np
import pytest
import xarray as xr

from core.model import Matches, Track
from core.products.granule_netcdf import build_dataset, scrub, write_netcdf
from tests.product_fixtures import (
    PARAMS,
    SEED_ATL07,
    SEED_L2P,
    antimeridian_scene,
    granule_beams,
    haversine,
    seed_scene,
    unmatched_scene,
)

OBS_VARS = {
    "time", "lat", "lon", "height_segment_id", "height_segment_height", "height_segment_quality",
    "height_segment_type", "beam_strength_flag", "sst", "sst_distance", "sst_dt", "sst_quality_level",
    "sst_l2p_flags", "sst_granule", "sst_radius", "sst_pixel_nj", "sst_pixel_ni", "sst_ice",
    "sst_sses_bias", "sst_sses_standard_deviation", "sst_n_valid", "sst_n_rejected_quality",
    "sst_n_out_of_range", "sst_n_ice", "sst_n_outside_dt", "sst_median", "sst_stddev", "sst_collection",
    "sst_n_excluded_ice", "sst_bias_corrected", "sst_pixel_lat", "sst_pixel_lon", "sst_match_flags",
}
TRAJ_VARS = {"trajectory_id", "atl07_granule", "beam", "beam_strength", "rowSize"}
SOURCE_VARS = {"sst_source_name", "sst_source_platform", "sst_source_sensor", "sst_source_standard_name",
               "sst_collection_name", "sst_collection_standard_name", "sst_collection_quality_flag_values",
               "sst_collection_quality_flag_meanings", "sst_collection_l2p_flag_masks",
               "sst_collection_l2p_flag_meanings", "sst_collection_citation"}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def seed():
    tracks, swaths = seed_scene()
    return tracks, swaths, build_dataset(tracks, [s.granule for s in swaths], PARAMS, request_id="req-1", now=NOW)


@pytest.fixture(scope="module")
def seed_file(seed, tmp_path_factory):
    return write_netcdf(seed[2], tmp_path_factory.mktemp("prod") / "seed.nc")


def _expected(tracks, attr, sub):
    return np.concatenate([np.asarray(getattr(getattr(t, sub), attr)) for t in tracks])


def test_layout_is_contiguous_ragged_trajectory(seed):
    tracks, _, ds = seed
    assert ds.attrs["featureType"] == "trajectory"
    assert ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3"
    assert set(ds.variables) == OBS_VARS | TRAJ_VARS | SOURCE_VARS
    assert all(ds[v].dims == ("obs",) for v in OBS_VARS)
    assert all(ds[v].dims == ("trajectory",) for v in TRAJ_VARS)
    assert ds.sizes["trajectory"] == 6
    assert ds["rowSize"].attrs["sample_dimension"] == "obs"
    assert ds["trajectory_id"].attrs["cf_role"] == "trajectory_id"
    assert ds["rowSize"].values.tolist() == [len(t.segments) for t in tracks]
    assert int(ds["rowSize"].sum()) == ds.sizes["obs"] == sum(len(t.segments) for t in tracks)
    assert list(ds["beam"].values) == ["gt1l", "gt1r", "gt2l", "gt2r", "gt3l", "gt3r"]
    assert list(ds["beam_strength"].values) == ["strong", "weak"] * 3  # sc_orient 0: left strong


def test_values_follow_the_tracks(seed):
    tracks, swaths, ds = seed
    lat = _expected(tracks, "lat", "segments")
    np.testing.assert_array_equal(ds["lat"].values, lat)
    # row r of trajectory k is segment r of track k
    start = np.concatenate([[0], np.cumsum(ds["rowSize"].values)[:-1]])
    for k, t in enumerate(tracks):
        sl = slice(start[k], start[k] + len(t.segments))
        np.testing.assert_array_equal(ds["height_segment_id"].values[sl], t.segments.height_segment_id)
        np.testing.assert_array_equal(ds["sst"].values[sl], t.matches.sst)
    matched = _expected(tracks, "granule_index", "matches") >= 0
    assert 0 < matched.sum() < matched.size  # realistic: some matched, some not
    assert np.isnan(ds["sst"].values[~matched]).all()
    assert np.isfinite(ds["sst"].values[matched]).all()
    # the stored distance is the distance from the segment to a valid pixel of the named swath
    sw = swaths[0]
    ok = np.isfinite(sw.sst) & (sw.quality_level >= 4)
    i = np.flatnonzero(matched)[::997]
    d = haversine(ds["lat"].values[i, None], ds["lon"].values[i, None], sw.lat[ok][None], sw.lon[ok][None]).min(axis=1)
    np.testing.assert_allclose(ds["sst_distance"].values[i], d, atol=1.0)


def test_global_attributes(seed):
    _, _, ds = seed
    a = ds.attrs
    for key in ("title", "summary", "keywords", "id", "naming_authority", "source", "history", "date_created",
                "creator_name", "publisher_name", "license", "references", "product_version",
                "time_coverage_start", "time_coverage_end", "time_coverage_duration", "standard_name_vocabulary"):
        assert a.get(key), key
    assert a["colocation_radius_m"] == 1000.0 and a["colocation_max_dt_s"] == 21600.0
    assert a["colocation_min_quality_level"] == 4
    assert a["atl07_collection"] == "C3564876395-NSIDC_CPRD" and a["sst_collection"] == "C1940473819-POCLOUD"
    assert a["colocation_bbox"] == "-62.8,81.7,-56.4,83"
    assert SEED_ATL07 in a["source"] and "MODIS_A" in a["source"]
    assert "10.5067/GHMDA-2PJ19" in a["references"] and "10.5067/ATLAS/ATL07" in a["references"]
    assert a["date_created"] == "2026-11-25T12:00:00Z"
    assert a["id"].endswith("req-1") and a["request_id"] == "req-1"
    lat, lon, t = ds["lat"].values, ds["lon"].values, ds["time"].values
    assert a["geospatial_lat_min"] == lat.min() and a["geospatial_lat_max"] == lat.max()
    assert a["geospatial_lon_min"] == lon.min() and a["geospatial_lon_max"] == lon.max()
    assert a["time_coverage_start"] == np.datetime_as_string(t.min(), "us") + "Z"
    # a match counts where its segment has a height; the count without that condition beside it
    matched = ds["sst_granule"].values >= 0
    assert a["segments_matched"] == int((matched & np.isfinite(ds["height_segment_height"].values)).sum())
    assert a["segments_matched_any_height"] == int(matched.sum()) > a["segments_matched"]


def test_round_trip_xarray(seed, seed_file):
    tracks, _, ds = seed
    with xr.open_dataset(seed_file) as back:  # decode_cf default, no fix-ups
        assert back["time"].dtype == np.dtype("datetime64[ns]")
        want = _expected(tracks, "time", "segments").astype(np.int64)
        got = back["time"].values.astype(np.int64)
        assert np.abs(got - want).max() <= 500  # rounded to the microsecond, no more
        assert (got % 1000 == 0).all()
        np.testing.assert_array_equal(back["time"].values, ds["time"].values)
        for v in ("lat", "lon", "sst", "sst_distance", "sst_dt", "height_segment_height"):
            np.testing.assert_array_equal(back[v].values, ds[v].values, err_msg=v)
        unmatched = ds["sst_granule"].values < 0
        assert np.isnan(back["sst"].values[unmatched]).all()
        assert np.isnan(back["sst_quality_level"].values[unmatched]).all()  # fill decoded to NaN
        np.testing.assert_array_equal(back["sst_quality_level"].values[~unmatched],
                                      ds["sst_quality_level"].values[~unmatched])
        assert back["sst_granule"].dtype == np.int32  # an enumeration, never masked
        names = back["sst_source_name"].values
        assert set(names[back["sst_granule"].values[~unmatched]]) == {SEED_L2P}
        assert back["sst_granule"].attrs["flag_meanings"].split()[0] == "no_match"
        assert int(back["rowSize"].sum()) == back.sizes["obs"]
        assert list(back["beam"].values) == list(ds["beam"].values)
        assert back.attrs["featureType"] == "trajectory"


def test_round_trip_netcdf4(seed, seed_file):
    _, _, ds = seed
    with netCDF4.Dataset(seed_file) as nc:
        assert nc.data_model == "NETCDF4"
        assert nc["rowSize"].sample_dimension == "obs"
        assert nc["rowSize"][:].sum() == nc.dimensions["obs"].size
        t = netCDF4.num2date(nc["time"][:], nc["time"].units, only_use_cftime_datetimes=False,
                             only_use_python_datetimes=True)
        want = ds["time"].values.astype("datetime64[us]").astype(object)
        assert list(t[:50]) == list(want[:50])
        sst = nc["sst"][:]
        assert np.ma.isMaskedArray(sst)
        np.testing.assert_array_equal(np.ma.getmaskarray(sst), ds["sst_granule"].values < 0)
        assert nc["sst"].units == "K" and nc["sst"].standard_name == "sea_surface_skin_temperature"
        assert nc["sst_quality_level"][:].mask.sum() == (ds["sst_granule"].values < 0).sum()
        assert nc["beam"][0] == "gt1l"
        assert nc.featureType == "trajectory"


def test_antimeridian_track(tmp_path):
    tracks, swaths = antimeridian_scene()
    ds = build_dataset(tracks, [s.granule for s in swaths], PARAMS, now=NOW)
    lon = ds["lon"].values
    assert (lon >= -180).all() and (lon < 180).all()
    assert (lon > 179).any() and (lon < -179).any()
    a = ds.attrs
    # ACDD: west > east when the data cross the antimeridian
    assert a["geospatial_lon_min"] > a["geospatial_lon_max"]
    assert a["geospatial_lon_min"] == lon[lon > 0].min() and a["geospatial_lon_max"] == lon[lon < 0].max()
    assert (ds["sst_granule"] >= 0).sum() > 0
    with xr.open_dataset(write_netcdf(ds, tmp_path / "am.nc")) as back:
        np.testing.assert_array_equal(back["lon"].values, lon)


def test_zero_matches_is_a_valid_product(tmp_path):
    tracks, _ = unmatched_scene()
    ds = build_dataset(tracks, [], PARAMS, now=NOW)
    assert ds.sizes["sst_source"] == 0 and ds.sizes["obs"] == sum(len(t.segments) for t in tracks)
    assert np.isnan(ds["sst"].values).all() and (ds["sst_granule"].values == -1).all()
    with xr.open_dataset(write_netcdf(ds, tmp_path / "none.nc")) as back:
        assert back.sizes["obs"] == ds.sizes["obs"] and back.attrs["segments_matched"] == 0
        assert np.isnan(back["sst"].values).all()


@pytest.mark.parametrize("bbox", [[-62.8, 81.7, -56.4, 83.0], "-62.8,81.7,-56.4,83"])
def test_zero_tracks_is_a_valid_product(tmp_path, bbox):
    ds = build_dataset([], [], {"bbox": bbox}, now=NOW)
    assert ds.sizes["obs"] == 0 and ds.sizes["trajectory"] == 0
    assert ds.attrs["geospatial_lat_min"] == 81.7  # coverage falls back to the request box
    assert ds.attrs["geospatial_lon_min"] == -62.8 and ds.attrs["colocation_bbox"] == "-62.8,81.7,-56.4,83"
    p = write_netcdf(ds, tmp_path / "empty.nc")
    with xr.open_dataset(p) as back:
        assert back.sizes["obs"] == 0 and back["time"].dtype == np.dtype("datetime64[ns]")
    with netCDF4.Dataset(p) as nc:
        assert nc.dimensions["trajectory"].size == 0


def test_invalid_segments_dropped_and_counted():
    beams = granule_beams(SEED_ATL07, 81.8, -58.0, 350.0, 500, "2019-06-22T05:53:17", seed=11)[:2]
    beams[0].time[[3, 7]] = np.datetime64("NaT")
    beams[1].lat[10] = np.nan
    beams[1].lon[11] = np.inf
    tracks = [Track(b, Matches.empty(len(b))) for b in beams]
    ds = build_dataset(tracks, [], {}, now=NOW)
    assert ds["rowSize"].values.tolist() == [len(beams[0]) - 2, len(beams[1]) - 2]
    assert ds.attrs["segments_dropped_invalid_location_or_time"] == 4
    assert not np.isnat(ds["time"].values).any() and np.isfinite(ds["lon"].values).all()


def test_inconsistent_inputs_are_rejected():
    b = granule_beams(SEED_ATL07, 81.8, -58.0, 350.0, 300, "2019-06-22T05:53:17", seed=12)[0]
    with pytest.raises(ValueError, match="matches.sst has length"):
        build_dataset([Track(b, Matches.empty(len(b) - 1))], [], {})
    m = Matches.empty(len(b))
    m.granule_index[0] = 1
    with pytest.raises(ValueError, match="granule_index"):
        build_dataset([Track(b, m)], ["only-one.nc"], {})


def test_no_secrets_or_presigned_queries_in_attributes():
    tracks, swaths = seed_scene(n=300)
    url = ("https://podaac-ops-cumulus-protected.s3.us-west-2.amazonaws.com/MODIS_A-JPL-L2P-v2019.0/"
           f"{swaths[0].granule}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAXXX&X-Amz-Signature=abc")
    params = dict(PARAMS, edl_token="eyJ-secret", aws_secret_access_key="s3cr3t", password="pw",
                  title="Seed case https://user:pw@example.org/x?token=eyJ-secret")
    ds = build_dataset(tracks, [url], params, atl07_attrs={"short_name": "ATL07", "session_token": "tok",
                                                          "identifier_product_doi": "doi:10.5067/ATLAS/ATL07.006"},
                       history="requested via https://api.example/run?sig=abc", now=NOW)
    text = repr(ds.attrs) + repr(ds["sst_source_name"].values)
    for secret in ("X-Amz", "eyJ-secret", "s3cr3t", "pw@", "sig=abc", "tok", "ASIA"):
        assert secret not in text, secret
    assert ds["sst_source_name"].values[0] == swaths[0].granule
    assert ds.attrs["atl07_short_name"] == "ATL07"
    assert "https://doi.org/10.5067/ATLAS/ATL07.006" in ds.attrs["references"]


@pytest.mark.parametrize("raw, clean", [
    ("https://h/a/b.nc?X-Amz-Signature=1", "https://h/a/b.nc"),
    ("s3://bucket/k.nc#frag", "s3://bucket/k.nc"),
    ("see https://u:p@h/x?q=1 and http://g/y", "see https://h/x and http://g/y"),
    ("no url here", "no url here"),
])
def test_scrub(raw, clean):
    assert scrub(raw) == clean


def test_write_is_atomic(tmp_path, seed):
    _, _, ds = seed
    target = tmp_path / "out.nc"
    bad = ds.copy()
    bad.attrs["unserialisable"] = {"nested": "dict"}  # netCDF attributes cannot hold a dict
    with pytest.raises(Exception):
        write_netcdf(bad, target)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file is left
    write_netcdf(ds, target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nc"]
    first = target.stat().st_ino
    write_netcdf(ds, target)  # replacing an existing file goes through a new inode (rename)
    assert target.stat().st_ino != first and [p.name for p in tmp_path.iterdir()] == ["out.nc"]

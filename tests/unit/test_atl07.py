"""ATL07 reader: real subsets (missing beams), GPS→UTC, bbox windows, fills, errors."""
from __future__ import annotations

import io
import re

import h5py
import numpy as np
import pytest

from core.errors import InputError
from core.model import BEAMS, BBox
from core.science.atl07 import atlas_delta_time_to_utc, beam_strength, gps_to_utc, read_atl07
from tests.raw_oracle import read_atl07_raw
from tests.science_fixtures import CountingReader, delta_time_for, track_geometry, write_atl07

REAL = ["processed_ATL07-01_20190222003738_08490201_003_02.h5", "processed_ATL07-01_20190225115500_09020201_003_02.h5"]


@pytest.mark.parametrize("name", REAL)
def test_real_granule_beams_and_warnings(realdata, name):
    g = read_atl07(realdata / "atl07" / name)
    assert g.name == name and g.sc_orient == 0
    # segments per beam, counted in the raw file (h5py; valid location and time)
    expected = {beam: seg.lat.size for beam, seg in read_atl07_raw(realdata / "atl07" / name).items()}
    assert {b.beam: len(b) for b in g.beams} == expected and sum(expected.values()) > 0
    skipped = set(BEAMS) - set(expected)
    assert {w.split(":")[0] for w in g.warnings} == skipped  # e.g. gt2r holds only `stats`
    for b in g.beams:
        assert b.strength == ("strong" if b.beam.endswith("l") else "weak")  # sc_orient 0: backward
        assert set(np.unique(b.quality)) <= {0, 1}
        # the two quality variables stay apart, with the granule's own flag tables (v003)
        assert set(np.unique(b.fields["height_segment_fit_quality_flag"])) <= {-1, 1, 2, 3, 4, 5}
        assert b.field_attrs["height_segment_fit_quality_flag"]["flag_meanings"] == "invalid best high med low poor"
        assert b.field_attrs["height_segment_quality"]["flag_meanings"] == "bad_quality good_quality"
        assert b.field_attrs["height_segment_ssh_flag"]["flag_meanings"] == "sea_ice sea_surface"
        for name in ("height_segment_confidence", "height_segment_ssh_flag", "height_segment_length_seg",
                     "seg_dist_x", "ice_conc"):  # v003: stats/ice_conc, no _amsr2/_ssmi
            assert b.fields[name].shape == (len(b),), name
        assert "ice_conc_amsr2" not in b.fields
        assert not (b.height > 1e30).any()  # the 3.4e38 fill became NaN
        assert np.all(np.isfinite(b.lat)) and not np.isnat(b.time).any()
        assert b.height_segment_id.dtype == np.int64 and (b.height_segment_id > 0).all()


@pytest.mark.parametrize("name", REAL)
def test_real_granule_times_are_utc(realdata, name):
    path = realdata / "atl07" / name
    g = read_atl07(path)
    stamp = re.search(r"ATL07-\d\d_(\d{14})_", name).group(1)
    file_start = np.datetime64(f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]}", "ns")
    first = min(b.time.min() for b in g.beams)
    last = max(b.time.max() for b in g.beams)
    assert file_start <= first and last <= file_start + np.timedelta64(100, "m")
    # exact: the granule's own start delta_time against its recorded UTC start (leap seconds!)
    with h5py.File(path) as h:
        start_dt = h["ancillary_data/start_delta_time"][0]
        start_utc = h["ancillary_data/data_start_utc"][0].decode().rstrip("Z")
        beam = g.beams[0].beam
        first_dt = h[f"{beam}/sea_ice_segments/delta_time"][0]
    got = atlas_delta_time_to_utc(np.array([start_dt]))[0]
    assert abs((got - np.datetime64(start_utc, "ns")) / np.timedelta64(1, "us")) <= 1
    assert g.beams[0].time[0] == atlas_delta_time_to_utc(np.array([first_dt]))[0]
    # every segment time against the independent decoding (delta_time + fixed 18 s)
    raw = read_atl07_raw(path)
    for b in g.beams:
        assert np.abs((b.time - raw[b.beam].time) / np.timedelta64(1, "ns")).max() <= 1000, b.beam
    # granule name's timestamp equals the granule start in UTC
    assert g.attrs["granule_start_utc"].startswith(file_start.astype("datetime64[s]").astype(str))


def test_gps_leap_seconds():
    # 2017-01-01 leap second: GPS-UTC went from 17 to 18
    assert gps_to_utc(np.array([1198800018.0]))[0] == np.datetime64("2018-01-01T00:00:00", "ns")
    before = (np.datetime64("2016-12-31T23:59:59", "s") - np.datetime64("1980-01-06", "s")).astype(float) + 17
    assert gps_to_utc(np.array([before]))[0] == np.datetime64("2016-12-31T23:59:59", "ns")
    assert np.isnat(gps_to_utc(np.array([np.nan]))[0])
    assert atlas_delta_time_to_utc(np.array([0.0]))[0] == np.datetime64("2018-01-01T00:00:00", "ns")


def _beams(n=2000, lat0=82.0, lon0=-60.0, start="2019-06-22T10:00:00"):
    lat, lon = track_geometry(lat0, lon0, n=n, length_m=200_000, angle_deg=5)
    dt = delta_time_for(start) + np.arange(n) * 0.01
    return {b: dict(lat=lat + 0.001 * i, lon=lon, delta_time=dt, height=np.linspace(0, 1, n))
            for i, b in enumerate(BEAMS)}


def test_synthetic_granule_values_and_strength(tmp_path):
    beams = _beams(100)
    beams["gt1r"]["height"][5] = np.nan
    beams["gt1r"]["quality"] = np.r_[np.zeros(50), np.ones(50)]
    beams["gt1r"]["type"] = np.arange(100) % 10
    for orient, left, right in ((0, "strong", "weak"), (1, "weak", "strong"), (2, "unknown", "unknown")):
        p = write_atl07(tmp_path / f"o{orient}.h5", beams, sc_orient=orient)
        g = read_atl07(p)
        assert [b.beam for b in g.beams] == list(BEAMS) and not g.warnings or orient == 2
        assert g.sc_orient == orient
        strengths = {b.beam: b.strength for b in g.beams}
        assert strengths["gt2l"] == left and strengths["gt2r"] == right
    b = g.beams[1]
    assert b.beam == "gt1r" and np.isnan(b.height[5]) and b.height[6] == np.float32(beams["gt1r"]["height"][6])
    np.testing.assert_array_equal(b.quality, beams["gt1r"]["quality"])
    np.testing.assert_array_equal(b.segment_type, np.arange(100) % 10)
    assert b.time[0] == np.datetime64("2019-06-22T10:00:00", "ns")
    # float64 delta_time carries ~ns precision at this epoch
    assert abs(b.time[1] - np.datetime64("2019-06-22T10:00:00.01", "ns")) < np.timedelta64(1, "us")
    g = read_atl07(write_atl07(tmp_path / "none.h5", beams, sc_orient=None))
    assert g.sc_orient is None and {b.strength for b in g.beams} == {"unknown"}
    assert beam_strength("gt3l", 0) == "strong" and beam_strength("gt3l", 1) == "weak"


@pytest.mark.parametrize("fill_as_array", [True, False])
def test_fill_scalar_or_array_and_quality_variables_apart(tmp_path, fill_as_array):
    beams = {"gt2l": dict(lat=[80.0, 80.001, np.nan, 80.003], lon=[1.0, 1.0, 1.0, 1.0],
                          delta_time=[1.0, 2.0, 3.0, 4.0], height=[1.0, np.nan, 2.0, 3.0],
                          fit_quality=np.array([1, -1, 2, 3]))}
    p = write_atl07(tmp_path / "v001.h5", beams, fill_as_array=fill_as_array,
                    skip_vars=("heights/height_segment_quality", "height_segment_id"))
    g = read_atl07(p)
    (b,) = g.beams
    assert len(b) == 3  # the segment without a location is dropped
    np.testing.assert_array_equal(b.height, np.array([1.0, np.nan, 3.0], np.float32))
    # no height_segment_quality: it is filled, never taken from the fit flag (opposite sense)
    np.testing.assert_array_equal(b.quality, [-1, -1, -1])
    np.testing.assert_array_equal(b.fields["height_segment_fit_quality_flag"], [1, -1, 3])
    assert any("heights/height_segment_quality missing" in w for w in g.warnings)
    np.testing.assert_array_equal(b.height_segment_id, [-1, -1, -1])
    assert any("height_segment_id missing" in w for w in g.warnings)
    assert any("gt1l" in w for w in g.warnings)


def test_bbox_restricts_and_reads_less(tmp_path):
    beams = _beams(200_000)
    p = write_atl07(tmp_path / "big.h5", beams, chunks=10_000)
    whole = CountingReader(p)
    g_all = read_atl07(whole)
    lat = g_all.beams[0].lat
    box = BBox(-180, float(np.quantile(lat, 0.40)), 180, float(np.quantile(lat, 0.45)))
    part = CountingReader(p)
    g = read_atl07(part, bbox=box, margin_deg=0.0)
    for b_all, b in zip(g_all.beams, g.beams):
        inside = box.contains(b_all.lon, b_all.lat)
        np.testing.assert_array_equal(b.lat, b_all.lat[inside])
        np.testing.assert_array_equal(b.time, b_all.time[inside])
        np.testing.assert_array_equal(b.height, b_all.height[inside])
    # lat/lon are read whole; delta_time, heights, ids... only for the window
    assert part.bytes_read < 0.55 * whole.bytes_read, (part.bytes_read, whole.bytes_read)
    # a margin widens the selection
    wider = read_atl07(p, bbox=box, margin_deg=0.05)
    assert len(wider.beams[0]) > len(g.beams[0])


def test_antimeridian_bbox(tmp_path):
    lat, lon = track_geometry(75.0, 180.0, n=400, length_m=100_000, angle_deg=90)
    dt = delta_time_for("2020-01-01T00:00:00") + np.arange(400) * 0.1
    p = write_atl07(tmp_path / "am.h5", {"gt1l": dict(lat=lat, lon=lon, delta_time=dt)})
    g = read_atl07(p, bbox=BBox(179.5, 74.0, -179.5, 76.0), margin_deg=0)
    (b,) = g.beams
    assert (b.lon > 179.5).any() and (b.lon < -179.5).any()
    assert np.all((b.lon >= 179.5) | (b.lon <= -179.5))
    assert len(b) == np.count_nonzero((lon >= 179.5) | (lon <= -179.5))
    g = read_atl07(p, bbox=BBox(10, 74, 20, 76))
    assert [len(b) for b in g.beams] == [0]


def test_file_object_source(tmp_path):
    buf = io.BytesIO()
    write_atl07(buf, _beams(50))
    buf.seek(0)
    g = read_atl07(buf)
    assert len(g.beams) == 6 and len(g.beams[0]) == 50


def test_not_atl07_raises_input_error(tmp_path, realdata):
    text = tmp_path / "a.h5"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an HDF5"):
        read_atl07(text)
    with pytest.raises(InputError, match="not found"):
        read_atl07(tmp_path / "missing.h5")
    with pytest.raises(InputError, match="not an ATL07"):
        read_atl07(realdata / "l2p" / "SS_MODIS_A-JPL-L2P-v2014.0_cut.nc")
    with pytest.raises(InputError, match="not an ATL07"):
        read_atl07(write_atl07(tmp_path / "atl10.h5", _beams(5), short_name="ATL10"))


def test_yaw_flip_without_orient_times_gives_unknown_strength(tmp_path):
    p = write_atl07(tmp_path / "flip.h5", _beams(20))
    with h5py.File(p, "r+") as h:
        del h["orbit_info/sc_orient"]
        h["orbit_info/sc_orient"] = np.array([0, 1], dtype=np.int8)
    g = read_atl07(p)
    assert g.sc_orient is None and {b.strength for b in g.beams} == {"unknown"}
    assert any("changes within the granule" in w for w in g.warnings)


def test_yaw_flip_splits_strength_per_segment(tmp_path):
    beams = _beams(100)  # delta_time runs over 1 s from 2019-06-22T10:00:00
    flip = delta_time_for("2019-06-22T10:00:00.5")
    p = write_atl07(tmp_path / "flip.h5", beams, sc_orient=[0, 1], beam_type_attr=True,
                    sc_orient_time=[delta_time_for("2019-06-22T09:00:00"), flip])
    g = read_atl07(p)
    for b in g.beams:
        assert b.strength == "mixed"  # the group attribute cannot be right on both sides of the flip
        before = beams[b.beam]["delta_time"] < flip
        left = b.beam.endswith("l")
        # backward (0) first: left beams strong; forward (1) after the flip: right beams strong
        np.testing.assert_array_equal(b.strength_flag, np.where(before, int(left), int(not left)))
    assert any("yaw flip" in w for w in g.warnings)


def test_strength_from_the_beam_attribute_and_v006_ice_concentration(tmp_path):
    # the beams' own atlas_beam_type wins over the sc_orient rule (here deliberately contradicting it)
    p = write_atl07(tmp_path / "v6.h5", _beams(30), sc_orient=1, beam_type_attr=True, ice_conc_v006=True)
    g = read_atl07(p)
    assert {b.beam: b.strength for b in g.beams}["gt1l"] == "strong"
    for b in g.beams:
        assert "ice_conc" not in b.fields
        np.testing.assert_array_equal(b.fields["ice_conc_amsr2"], np.full(len(b), 95.0, np.float32))
        assert b.fields["ice_conc_ssmi"].shape == (len(b),)
    assert not any("ice concentration" in w for w in g.warnings)


@pytest.mark.parametrize("name, release", [
    ("ATL07-01_20190622055317_12980301_007_01.h5", 7), ("ATL07-02_20190222003738_08490201_003_02.h5", 3),
    ("processed_ATL07-01_20190222003738_08490201_003_02.h5", None), ("MODIS_A.nc", None)])
def test_release_of_a_granule_name(name, release):
    from core.science.atl07 import release_of

    assert release_of(name) == release


@pytest.mark.parametrize("mode, name, region, direct", [
    ("auto", "ATL07-01_20190622055317_12980301_007_01.h5", "us-west-2", True),  # paged, in region
    ("auto", "ATL07-01_20190622055317_12980301_006_01.h5", "us-west-2", False),  # older layout: download
    ("auto", "ATL07-01_20190622055317_12980301_007_01.h5", "eu-west-1", False),  # out of region
    ("download", "ATL07-01_20190622055317_12980301_007_01.h5", "us-west-2", False),
    ("direct", "ATL07-01_20190622055317_12980301_006_01.h5", "eu-west-1", True)])
def test_atl07_access_auto_reads_in_place_only_where_cheaper(monkeypatch, mode, name, region, direct):
    from core.access.cmr import Granule
    from core.config import Settings
    from core.pipeline.atl07_inputs import use_direct_access

    monkeypatch.setenv("AWS_REGION", region)
    granule = Granule("G1-NSIDC_CPRD", name, name, 1, None, None, None, https_url="https://x/y.h5",
                      s3_url="s3://b/y.h5", s3credentials_url="https://x/s3credentials")
    assert use_direct_access(granule, Settings(atl07_access=mode)) is direct

"""ATL07 read in place (core.science.atl07 over core.access.rangefile / core.access.inplace) against the sandbox's S3:
the same granule as from the local file, with and without a DMR++ sidecar, in a bounded number
of fetches; and the chunk ranges a byte map gives equal those of HDF5's own chunk index."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from core.access.credentials import S3CredentialsProvider
from core.access.dmrpp import parse_dmrpp
from core.access.earthdata import EarthdataSession, StaticToken
from core.access.inplace import dataset_ranges
from core.access.s3access import open_s3_filesystem
from core.model import BBox
from core.science.atl07 import open_atl07_in_place, read_atl07
from sandbox.dmrpp import dmrpp_document
from sandbox.services import Sandbox
from tests.science_fixtures import CountingReader

SEED_BBOX = BBox(-62.8, 81.7, -56.4, 83.0)


def _atl07(sb):
    return sorted((g for g in sb.scene.granules if g.daac == "nsidc"), key=lambda g: g.file_name)


def _fs(sb):
    session = EarthdataSession(sb.settings, StaticToken(sb.edl_token))
    return open_s3_filesystem(S3CredentialsProvider(session, sb.settings.s3credentials_endpoints["NSIDC_CPRD"]),
                              sb.settings)


@pytest.fixture(scope="module")
def sidecar_sandbox(sandbox_scene, tmp_path_factory):
    """The seed scene's ATL07 granules with a .dmrpp published beside each (as if NSIDC did)."""
    scene = SimpleNamespace(granules=[g for g in sandbox_scene.granules if g.daac == "nsidc"])
    with Sandbox(scene, workdir=tmp_path_factory.mktemp("sidecar-sandbox"), dmrpp_daacs=("podaac", "nsidc")) as sb:
        try:
            yield sb
        finally:  # moto's buckets are process-global: other tests' sandboxes must not see them
            s3 = sb.boto3_client("s3")
            for bucket, key, _ in sb.sidecars:
                if key.startswith("ATLAS/"):
                    s3.delete_object(Bucket=bucket, Key=key)


def assert_same_granule(a, b, *, names: bool = True) -> None:
    assert not names or (a.name, [x.granule for x in a.beams]) == (b.name, [x.granule for x in b.beams])
    assert (a.sc_orient, a.attrs, a.warnings) == (b.sc_orient, b.attrs, b.warnings)
    assert [x.beam for x in a.beams] == [x.beam for x in b.beams]
    for x, y in zip(a.beams, b.beams, strict=True):
        assert (x.strength, set(x.fields)) == (y.strength, set(y.fields))
        for name in ("time", "lat", "lon", "height_segment_id", "height", "quality", "segment_type"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=f"{x.beam} {name}")
        for name in x.fields:
            np.testing.assert_array_equal(x.fields[name], y.fields[name], err_msg=f"{x.beam} {name}")
        assert repr(x.field_attrs) == repr(y.field_attrs)


class ReadCounter(CountingReader):
    """A local file counting h5py's reads."""

    reads = 0

    def readinto(self, b):
        self.reads += 1
        return super().readinto(b)


class FetchLog:
    """Records each fetch_many call of a RangeFile: a wave (many ranges side by side) or an
    on-demand miss (``readahead`` bytes, a part or two where it meets bytes already held)."""

    def __init__(self, file):
        self.calls: list[int] = []
        inner = file.fetch_many

        def fetch_many(ranges):
            self.calls.append(len(ranges))
            return inner(ranges)

        file.fetch_many = fetch_many

    @property
    def waves(self) -> list[int]:
        return [n for n in self.calls if n > 4]

    @property
    def misses(self) -> int:
        return sum(1 for n in self.calls if n <= 4)


def _read_in_place(sb, g, bbox=SEED_BBOX, *, use_sidecar=True):
    fh, byte_map = open_atl07_in_place(_fs(sb), sb.links(g)["s3"], sb.settings)
    byte_map = byte_map if use_sidecar else None
    log = FetchLog(fh)
    with fh:
        got = read_atl07(fh, bbox=bbox, margin_deg=sb.settings.bbox_margin_deg, byte_map=byte_map)
    return got, fh, byte_map, log


@pytest.mark.parametrize("index", [0, 1])
def test_in_place_without_sidecar_is_the_local_read(sandbox, index):
    g = _atl07(sandbox)[index]
    got, fh, byte_map, log = _read_in_place(sandbox, g)
    assert byte_map is None  # NSIDC publishes none in the default sandbox
    assert_same_granule(got, read_atl07(g.path, bbox=SEED_BBOX, margin_deg=sandbox.settings.bbox_margin_deg))
    assert sum(len(b) for b in got.beams) > 0
    # h5py's reads one by one would be a round trip each: the scene's granules are paged (Release
    # 007), so the first page (all the metadata), latitude, longitude where latitude reaches the
    # bbox, the rows' chunks: four calls side by side, nothing on demand; less than the granule
    assert len(log.calls) == 4, log.calls
    assert fh.bytes_fetched < 0.9 * fh.size


@pytest.mark.parametrize("index", [0, 1])
def test_in_place_with_sidecar_is_the_local_read_in_few_fetches(sidecar_sandbox, index):
    sb = sidecar_sandbox
    g = _atl07(sb)[index]
    got, fh, byte_map, log = _read_in_place(sb, g)
    assert byte_map is not None and f"/{got.beams[0].beam}/sea_ice_segments/latitude" in byte_map
    assert_same_granule(got, read_atl07(g.path, bbox=SEED_BBOX, margin_deg=sb.settings.bbox_margin_deg))
    # two waves (metadata + locations before h5py opens the file; the rows' chunks) and nothing
    # on demand; without the sidecar, on the paged scene, the first page holds the metadata:
    # then latitude, longitude in the bbox's band, the rows
    assert len(log.waves) == 2 and log.misses == 0, log.calls
    _, fh_plain, _, log_plain = _read_in_place(sb, g, use_sidecar=False)
    assert len(log_plain.calls) == 4, log_plain.calls
    # every gap between the chunks: the first page, and the last page's free tail (< a page) besides
    assert fh.bytes_fetched < fh_plain.bytes_fetched + (8 << 20)


def test_in_place_whole_granule_and_an_empty_bbox(sidecar_sandbox):
    sb = sidecar_sandbox
    g = _atl07(sb)[0]
    got, fh, _, log = _read_in_place(sb, g, bbox=None)
    assert_same_granule(got, read_atl07(g.path))
    assert len(log.calls) == 2
    empty, fh_empty, _, log_empty = _read_in_place(sb, g, bbox=BBox(10, -10, 20, 0))
    assert sum(len(b) for b in empty.beams) == 0 and len(empty.beams) == len(got.beams)
    assert len(log_empty.waves) == 1 and fh_empty.bytes_fetched < fh.bytes_fetched  # nothing for rows


def test_two_granules_side_by_side(sidecar_sandbox):
    sb = sidecar_sandbox
    out, errors = {}, []

    def read(g):
        try:
            out[g.file_name] = _read_in_place(sb, g)[0]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=read, args=(g,)) for g in _atl07(sb)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    for g in _atl07(sb):
        local = read_atl07(g.path, bbox=SEED_BBOX, margin_deg=sb.settings.bbox_margin_deg)
        assert_same_granule(out[g.file_name], local)


def test_unreadable_sidecar_is_ignored(sidecar_sandbox, caplog):
    sb = sidecar_sandbox
    g = _atl07(sb)[0]
    s3 = sb.boto3_client("s3")
    key = g.key.replace(".h5", "_copy.h5")
    s3.copy_object(Bucket=g.bucket, Key=key, CopySource={"Bucket": g.bucket, "Key": g.key})
    s3.put_object(Bucket=g.bucket, Key=key + ".dmrpp", Body=b"<html>not a DMR++</html>")
    try:
        fh, byte_map = open_atl07_in_place(_fs(sb), f"s3://{g.bucket}/{key}", sb.settings)
        with fh:
            got = read_atl07(fh, bbox=SEED_BBOX, margin_deg=sb.settings.bbox_margin_deg, byte_map=byte_map)
    finally:
        s3.delete_objects(Bucket=g.bucket, Delete={"Objects": [{"Key": key}, {"Key": key + ".dmrpp"}]})
    assert byte_map is None and "unusable" in caplog.text
    assert got.name == key.rsplit("/", 1)[-1]
    assert_same_granule(got, read_atl07(g.path, bbox=SEED_BBOX, margin_deg=sb.settings.bbox_margin_deg), names=False)


def test_byte_map_ranges_are_the_chunk_index_ranges(tmp_path):
    path = tmp_path / "layouts.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("g/rows", data=np.arange(1000.0), chunks=(64,), compression="gzip")
        f.create_dataset("g/table", data=np.arange(3000, dtype="i4").reshape(300, 10), chunks=(50, 4))
        f.create_dataset("g/plain", data=np.arange(500, dtype="i2"))  # contiguous
        f.create_dataset("g/sparse", shape=(1000,), dtype="f4", chunks=(100,), fillvalue=-1)
        f["g/sparse"][450:460] = 1.0  # one chunk written, nine never allocated
    byte_map = parse_dmrpp(dmrpp_document(path))
    with h5py.File(path) as f:
        for name, rows in (("g/rows", None), ("g/rows", [slice(0, 1)]), ("g/rows", [slice(100, 130), slice(600, 900)]),
                           ("g/table", [slice(120, 160)]), ("g/table", None), ("g/plain", [slice(3, 4)]),
                           ("g/sparse", None), ("g/sparse", [slice(0, 460)]), ("g/nothing", None)):
            from_index = sorted(dataset_ranges(f, name, rows, None))
            assert sorted(dataset_ranges(None, name, rows, byte_map)) == from_index, (name, rows)
            ds = f.get(name)
            if isinstance(ds, h5py.Dataset) and ds.chunks is not None:
                # exactly the chunks holding a row asked for
                want = {i for i in range(ds.id.get_num_chunks())
                        if rows is None or any(r.start < ds.id.get_chunk_info(i).chunk_offset[0] + ds.chunks[0]
                                               and ds.id.get_chunk_info(i).chunk_offset[0] < r.stop for r in rows)}
                assert len(from_index) == len(want), (name, rows)
        assert dataset_ranges(f, "g/rows", [slice(100, 120)], None) == [
            (f["g/rows"].id.get_chunk_info(1).byte_offset,
             f["g/rows"].id.get_chunk_info(1).byte_offset + f["g/rows"].id.get_chunk_info(1).size)]
        assert len(dataset_ranges(f, "g/table", [slice(120, 160)], None)) == 2 * 3  # 2 row chunks x 3 column chunks
        assert len(dataset_ranges(f, "g/sparse", None, None)) == 1

"""core.results.LocalOutputStore: the bucket's layout and publish-last semantics in a folder."""
from __future__ import annotations

import threading

import pytest

from core.errors import ColocationError
from core.results import LocalOutputStore, OutputStore


def test_same_keys_as_the_bucket(tmp_path):
    local, bucket = LocalOutputStore(tmp_path), OutputStore(None, "b")
    for method, args in (("manifest_key", ("r1", "2019-06-22")), ("output_key", ("r1", "2019-06-22", "run", "a.nc")),
                         ("run_manifest_key", ("r1",)), ("plan_key", ("r1",))):
        assert getattr(local, method)(*args) == getattr(bucket, method)(*args)
    assert local.path(local.manifest_key("r1", "2019-06-22")) == tmp_path / "colocations/r1/2019-06-22/manifest.json"


def test_the_manifest_is_published_once_whoever_comes_second(tmp_path):
    store = LocalOutputStore(tmp_path)
    wins = []
    barrier = threading.Barrier(8)

    def publish(i):
        barrier.wait()
        wins.append((i, store.publish_manifest("r1", "2019-06-22", {"run_id": str(i)})))

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in wins if won]
    assert len(winners) == 1
    assert store.get_manifest("r1", "2019-06-22") == {"run_id": str(winners[0])}
    assert store.published_dates("r1") == {"2019-06-22"}
    # no staging file left behind
    assert sorted(p.name for p in (tmp_path / "colocations/r1/2019-06-22").iterdir()) == ["manifest.json"]


def test_files_being_written_are_not_listed_and_deleting_a_run_removes_its_folder(tmp_path):
    store = LocalOutputStore(tmp_path)
    src = tmp_path / "x.nc"
    src.write_bytes(b"\x89HDF data")
    key = store.output_key("r1", "2019-06-22", "run1", "x.nc")
    assert store.upload(src, key, "application/x-netcdf") == 9
    (store.path(key).parent / ".y.nc.123.part").write_bytes(b"half")
    assert list(store.list_keys("colocations/r1/")) == [key]
    store.delete_keys([key])
    assert not store.path(key).parent.exists() or list(store.path(key).parent.iterdir())
    assert list(store.list_keys("colocations/r1/")) == []
    assert store.get_manifest("r1", "2019-06-22") is None and store.list_manifests("r1") == []


def test_keys_cannot_leave_the_folder(tmp_path):
    store = LocalOutputStore(tmp_path / "out")
    for key in ("../escape", "colocations/../../x", "/abs", ""):
        with pytest.raises(ValueError):
            store.path(key)


def test_a_folder_that_cannot_be_written_is_one_named_error(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ColocationError, match=r"^output folder .*out: (File exists|Not a directory)"):
        LocalOutputStore(blocker).put_json("colocations/r1/x.json", {})

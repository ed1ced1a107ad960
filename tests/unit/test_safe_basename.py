"""core.atomic.safe_basename: every name from a remote service becomes a basename that stays in
the folder it is joined to, or is refused with a reason (issue 24; the whole date in
tests/faults/test_faults_hostile_cmr.py)."""
from __future__ import annotations

import pytest

from core.access.download import file_name_from_url
from core.atomic import UnsafeNameError, safe_basename
from core.errors import InputError


@pytest.mark.parametrize("name, safe", [
    ("ATL07-01_20190622055317_12980301_007_01.h5", "ATL07-01_20190622055317_12980301_007_01.h5"),
    ("/../../../tmp/victim.h5", "victim.h5"),
    ("../../etc/passwd", "passwd"),
    ("C:\\\\data\\\\x.nc", "x.nc"),
    ("dir/sub/x.nc", "x.nc"),
])
def test_a_name_keeps_only_its_last_component(name, safe):
    assert safe_basename(name) == safe


@pytest.mark.parametrize("name, why", [
    ("", "empty"), (".", "directory reference"), ("..", "directory reference"), ("x/", "directory reference"),
    (".hidden.h5", "hidden"), ("a\x00b.h5", "control characters"), ("a\nb.h5", "control characters"),
    ("é" * 101, "longer than 200 bytes"),
])
def test_a_name_that_cannot_be_made_safe_says_why(name, why):
    with pytest.raises(UnsafeNameError, match=why):
        safe_basename(name)


def test_a_url_without_a_safe_last_segment_is_refused_by_field():
    assert file_name_from_url("https://h/b/ATL07%2F..%2Fx.h5") == "x.h5"
    with pytest.raises(InputError) as info:
        file_name_from_url("https://h/b/..")
    assert info.value.field == "url"

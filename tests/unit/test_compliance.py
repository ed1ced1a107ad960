"""The written product passes the IOOS compliance checker (CF-1.8, ACDD-1.3), offline.

Any high-priority failure fails the test, with the checker's messages in the assertion.
"""
from __future__ import annotations

import socket
import warnings
from datetime import UTC, datetime

import pytest

# a pinned dev dependency (requirements/dev.txt): missing is a failure, never a skip
from compliance_checker.cf.util import StandardNameTable  # noqa: E402
from compliance_checker.runner import CheckSuite  # noqa: E402

from core.products.granule_netcdf import STANDARD_NAME_VOCABULARY, build_dataset, write_netcdf
from tests.compliance_fixtures import compliance_failures
from tests.product_fixtures import PARAMS, antimeridian_scene, seed_scene, unmatched_scene

pytestmark = [
    pytest.mark.filterwarnings("ignore:The ioos_sos checker is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Passing the dataset to every single check is deprecated:DeprecationWarning"),
]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, no cached tables: a download attempt raises instead of silently succeeding."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CF_STANDARD_NAME_TABLE", raising=False)
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError(f"DNS lookup attempted: {a[0]}")))


@pytest.fixture(scope="module")
def suite():
    cs = CheckSuite()
    cs.load_all_available_checkers()
    return cs


def test_product_declares_the_bundled_standard_name_table():
    # a different version would make the checker try to download that table
    assert STANDARD_NAME_VOCABULARY.endswith(f"v{StandardNameTable()._version}")


@pytest.mark.parametrize("scene", ["seed", "antimeridian", "no_matches", "no_tracks"])
def test_no_high_priority_failures(scene, suite, offline, tmp_path, capsys):
    if scene == "seed":
        tracks, swaths = seed_scene(n=800)
    elif scene == "antimeridian":
        tracks, swaths = antimeridian_scene(n=800)
    elif scene == "no_matches":
        tracks, swaths = unmatched_scene(n=500)
    else:
        tracks, swaths = [], []
    ds = build_dataset(tracks, [s.granule for s in swaths], PARAMS, request_id="cc-test", now=NOW)
    path = write_netcdf(ds, tmp_path / f"{scene}.nc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        failures, errors = compliance_failures(suite, path)
    assert not errors, "\n".join(errors)
    assert not failures, "high-priority compliance failures:\n" + "\n".join(failures)
    fetch = [str(w.message) for w in caught if "standard name table" in str(w.message).lower()]
    assert not fetch, fetch
    assert "downloaded standard name table" not in capsys.readouterr().err.lower()


def test_real_atl07_granules(realdata, suite, offline, tmp_path):
    """Both real ATL07 files (one with a beam holding only stats) through the reader, unmatched."""
    from core.model import Matches, Track
    from core.science import atl07

    tracks, attrs = [], {}
    for f in sorted((realdata / "atl07").glob("*.h5")):
        g = atl07.read_atl07(f)
        attrs = g.attrs
        tracks += [Track(b, Matches.empty(len(b))) for b in g.beams]
    assert len({t.segments.granule for t in tracks}) == 2 and len(tracks) >= 6
    ds = build_dataset(tracks, [], PARAMS, atl07_attrs=attrs, now=NOW)
    path = write_netcdf(ds, tmp_path / "real.nc")
    failures, errors = compliance_failures(suite, path)
    assert not errors and not failures, "\n".join(errors + failures)


def test_product_of_every_new_field_passes(suite, offline, tmp_path):
    """A VIIRS-labelled product with SSES, dt_analysis, flag tables copied from the files, the
    footprint radius, no quality screening and a yaw flip: still no high-priority failure."""
    from tests.product_fixtures import every_field_pairing

    pairing, params = every_field_pairing(tmp_path)
    assert pairing.matched > 0
    ds = build_dataset(pairing.tracks, pairing.source_info(), params, request_id="cc-new", now=NOW,
                       warnings=pairing.warnings)
    assert ds["sst"].attrs["standard_name"] == "sea_surface_subskin_temperature"
    path = write_netcdf(ds, tmp_path / "new.nc")
    failures, errors = compliance_failures(suite, path)
    assert not errors and not failures, "\n".join(errors + failures)


def test_pixel_table_passes(suite, offline, tmp_path):
    """The pixel-scale table (X_pixels.nc) of a product with every field: no high-priority failure."""
    from core.products.pixel_table import write_pixel_table
    from tests.product_fixtures import every_field_pairing

    pairing, params = every_field_pairing(tmp_path)
    ds = build_dataset(pairing.tracks, pairing.source_info(), params, request_id="cc-px", now=NOW)
    path = write_pixel_table(ds, tmp_path / "new_pixels.nc")
    failures, errors = compliance_failures(suite, path)
    assert not errors and not failures, "\n".join(errors + failures)

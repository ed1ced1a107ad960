"""Sandbox fixtures (imported by tests/conftest.py).

``sandbox``       session-scoped Sandbox over the seed scene (sandbox/scene.py) with its ATL07
                  tracks cut to +/-200 km (``extent="cut"``; the L2P granules are full), built
                  once into a cache directory. ``full_sandbox``: the same at full scale (slow).
``mini_sandbox``  session-scoped Sandbox over a tiny stand-in scene (two random files), for
                  the access-layer tests; ``faults`` are cleared after every test by
                  ``clean_faults``.
``modelled_sandbox``  the seed scene behind the ``lambda-us-west-2`` network model
                  (sandbox/netmodel.py), for the end-to-end tests that measure I/O behaviour.
``sb``, ``session``, ``atl07``  the mini sandbox with clean faults, an EarthdataSession on it, and
                  an ATL07 granule of ``sb`` with its HTTPS link and bytes.
"""
from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sandbox.services import Sandbox, scene_cache

MINI_ATL07 = "ATL07-01_20190622055317_12980301_006_02.h5"
MINI_L2P = "20190622100501-JPL-L2P_GHRSST-SSTskin-MODIS_A-D-v02.0-fv01.0.nc"


def make_mini_scene(root: Path, *, atl07_size: int = 3 * 1024 * 1024 + 123, l2p_size: int = 8 * 1024 * 1024 + 7):
    """Two deterministic random files standing in for an ATL07 and an L2P granule."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20190622)
    start = datetime(2019, 6, 22, 5, 53, 17, tzinfo=UTC)
    granules = []
    for name, size, daac, bucket, short, version, provider in (
        (MINI_ATL07, atl07_size, "nsidc", "nsidc-cumulus-prod-protected", "ATL07", "006", "NSIDC_CPRD"),
        (MINI_L2P, l2p_size, "podaac", "podaac-ops-cumulus-protected", "MODIS_A-JPL-L2P-v2019.0", "2019.0", "POCLOUD"),
    ):
        path = root / name
        if not path.exists() or path.stat().st_size != size:
            path.write_bytes(rng.bytes(size))
        key = f"{short}/{name}" if daac == "podaac" else f"ATLAS/{short}/{version}/2019/06/22/{name}"
        granules.append(
            SimpleNamespace(
                concept_id=f"G-{name[:12]}-{provider}",
                collection_concept_id=f"C-{short}-{provider}",
                short_name=short,
                version=version,
                provider=provider,
                title=name.rsplit(".", 1)[0],
                file_name=name,
                path=path,
                size_bytes=size,
                start=start,
                end=start,
                polygon=None,
                bucket=bucket,
                key=key,
                daac=daac,
            )
        )
    return SimpleNamespace(granules=granules)


@contextlib.contextmanager
def caller_kept_in_place(sb):
    """Restores where the caller is (region, CloudFront hops, URL lifetime and clock, settings)
    after a block that moves it (``sb.set_in_region(False)``)."""
    state = sb.state
    saved = (state.caller_in_region, state.cloudfront_hops, state.cloudfront_ttl_s, state.cloudfront_clock,
             sb.settings)
    try:
        yield sb
    finally:
        (state.caller_in_region, state.cloudfront_hops, state.cloudfront_ttl_s, state.cloudfront_clock,
         sb.settings) = saved


@pytest.fixture(scope="session")
def mini_scene(tmp_path_factory):
    return make_mini_scene(tmp_path_factory.mktemp("mini-scene"))


@pytest.fixture(scope="session")
def mini_sandbox(mini_scene, tmp_path_factory):
    with Sandbox(mini_scene, workdir=tmp_path_factory.mktemp("mini-sandbox")) as sb:
        yield sb


@pytest.fixture
def clean_faults(mini_sandbox):
    """Faults, request log and credential lifetime reset around a test."""
    mini_sandbox.faults.clear()
    mini_sandbox.state.requests.clear()
    ttl = mini_sandbox.state.credentials_ttl_s
    yield mini_sandbox.faults
    mini_sandbox.faults.clear()
    mini_sandbox.state.credentials_ttl_s = ttl


@pytest.fixture(scope="session")
def sandbox_scene(tmp_path_factory):
    from sandbox.scene import build_scene

    return build_scene(scene_cache(), extent="cut")


@pytest.fixture(scope="session")
def full_scene():
    from sandbox.scene import build_scene

    return build_scene(scene_cache(), extent="full")


@pytest.fixture(scope="session")
def sandbox(sandbox_scene, tmp_path_factory):
    """The sandbox over the seed-case scene (session-scoped)."""
    with Sandbox(sandbox_scene, workdir=tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture(scope="session")
def modelled_sandbox(sandbox_scene, tmp_path_factory):
    """The seed-case sandbox with Lambda's network modelled; its ledger is reset per test."""
    with Sandbox(sandbox_scene, workdir=tmp_path_factory.mktemp("modelled-sandbox"),
                 network="lambda-us-west-2") as sb:
        yield sb


@pytest.fixture
def sb(mini_sandbox, clean_faults):
    """The mini sandbox with clean faults (modules may override ``sb`` with another sandbox)."""
    return mini_sandbox


@pytest.fixture
def session(sb):
    """A production EarthdataSession holding the sandbox user's EDL token."""
    from core.access.earthdata import EarthdataSession, StaticToken

    s = EarthdataSession(sb.settings, StaticToken(sb.edl_token))
    yield s
    s.close()


@pytest.fixture
def atl07(sb):
    """An ATL07 granule of ``sb``'s scene, its HTTPS link and its bytes (the download tests' file)."""
    g = next(g for g in sb.scene.granules if g.daac == "nsidc")
    return g, sb.links(g)["https"], g.path.read_bytes()


def first_granule(sb, daac="nsidc"):
    """The first granule of ``sb``'s scene from that DAAC (``nsidc``: ATL07, ``podaac``: L2P)."""
    return next(g for g in sb.scene.granules if g.daac == daac)


def leftovers(d):
    """The names of the files a download left in directory ``d``."""
    return sorted(p.name for p in d.iterdir())

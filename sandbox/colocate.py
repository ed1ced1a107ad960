"""``python -m sandbox.colocate run ...``: the ``colocate`` command against the offline sandbox.

The same command line as ``colocate`` (cli.command) with the synthetic seed scene behind it:
emulated CMR, Earthdata Login and DAACs, outside us-west-2 as a laptop is (L2P over HTTPS).
``--scene cut`` takes the seed scene with its ATL07 tracks cut to ±200 km around the box (the
fast tests' scene); ``full`` (default) the real-size one. Development only: the service and the
installed ``colocate`` never import this package.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from cli.command import World, main as colocate_main
from core.access.earthdata import StaticToken
from core.config import Settings


def sandbox_world(scene: str, *, quiet: bool = False) -> World:
    @contextlib.contextmanager
    def open_sandbox(_settings: Settings) -> Iterator[tuple[Settings, Any]]:
        import time

        from sandbox.services import seed_sandbox

        # said at once: building or loading the scene and starting moto take ~30 s of silence otherwise
        say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
        say(f"Starting the sandbox (synthetic {scene} seed scene, moto, CMR and Earthdata emulators)…")
        t0 = time.monotonic()
        # a laptop: outside us-west-2, L2P over HTTPS
        with seed_sandbox(in_region=False, extent=scene) as sb:
            assert sb.settings is not None  # set once the sandbox has started
            say(f"sandbox ready in {time.monotonic() - t0:.0f} s; results are SYNTHETIC (not NASA data)")
            yield sb.settings, StaticToken(sb.edl_token)

    return World("sandbox", open_sandbox, data_mode="synthetic")


def main(argv: Sequence[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--scene", choices=("full", "cut"), default="full")
    args, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    quiet = any(a in ("-q", "--quiet") for a in rest)  # colocate's own --quiet: nothing on stderr
    return colocate_main(rest, world=sandbox_world(args.scene, quiet=quiet))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

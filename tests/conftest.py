"""Shared fixtures: the real frames in ../shared/data and small simulated nights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NAPARI_ASTRO_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real camera frames of ../shared/data; skip when absent (users' machines)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real frames not available: {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def cli_inprocess(capfd):
    """Run ``napari-astro ARGS`` in this process (a subprocess costs ~5 s of imports);
    returns a CompletedProcess. capfd also catches what pyindi-client's C++ code writes
    on file descriptor 2."""
    import subprocess

    from napari_astro.cli import main

    def run(*args):
        capfd.readouterr()
        code = main(list(args))
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run

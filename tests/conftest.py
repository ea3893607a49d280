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

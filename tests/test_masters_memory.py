"""Masters under a memory limit: groups larger than the budget are combined in row
bands, with the same result and memory bounded by the budget, not the group size."""

import tracemalloc

import numpy as np
import pytest

from napari_astro.pipeline.params import Execution

from napari_astro.core.frames import scan_frames
from napari_astro.core.simulate import NightParams, simulate_night
from napari_astro.pipeline.calibrate import build_masters
from napari_astro.pipeline.steps import MastersParams


@pytest.fixture(scope="module")
def cal_frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("mm") / "night"
    simulate_night(root, NightParams(width=320, height=240, n_lights=1, n_darks=8, n_flats=8,
                                     n_biases=8, seed=11))
    return scan_frames([root / "bias", root / "darks", root / "flats"])


def _build(frames, limit):
    tracemalloc.start()
    ms = build_masters(frames, None, MastersParams(), execution=Execution(memory_limit=limit))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return ms, peak


def test_banded_masters_equal_in_memory_masters(cal_frames):
    full, peak_full = _build(cal_frames, "2GB")
    banded, peak_banded = _build(cal_frames, "200KB")
    for a, b in zip(full.all(), banded.all()):
        assert a.type == b.type
        np.testing.assert_allclose(a.image.data, b.image.data, rtol=0, atol=1e-6)
        assert a.image.get("NCOMBINE") == b.image.get("NCOMBINE") == 8
    # 8 frames of 320x240 float32 are 2.4 MB per group in memory; bands stay far below
    group_bytes = 8 * 320 * 240 * 4
    assert peak_banded < peak_full
    assert peak_banded < 0.6 * group_bytes + 3 * 320 * 240 * 4


def test_groups_over_the_band_budget_are_banded_by_default(cal_frames, monkeypatch):
    """A group larger than BAND_BUDGET is combined in row bands (two buffers, the next
    band read while one is combined) even under a large memory limit: same masters
    bit for bit as the whole-stack path, less memory."""
    from napari_astro.pipeline import masters as mmod

    full, peak_full = _build(cal_frames, "2GB")          # 2.4 MB groups: whole stack
    monkeypatch.setattr(mmod, "BAND_BUDGET", 300_000)    # now every group is banded
    banded, peak_banded = _build(cal_frames, "2GB")
    for a, b in zip(full.all(), banded.all()):
        assert a.type == b.type
        np.testing.assert_array_equal(a.image.data, b.image.data)
    assert peak_banded < 0.6 * peak_full

"""The kernel warm-up (issue 13): after :func:`warm_kernels`, a stack of real Seestar
lights compiles no numba kernel (the warm-up passes the types a real run passes), and
the kernels run in threads give the serial result bit for bit."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from numba.core import event as numba_event

from napari_astro.pipeline import warmup


class _Compiles(numba_event.Listener):
    """Names of the functions numba compiles (cache loads are not compiles)."""

    def __init__(self):
        self.names: list[str] = []

    def on_start(self, event):
        fn = event.data["dispatcher"].py_func
        self.names.append(f"{fn.__module__}.{fn.__qualname__}")

    def on_end(self, event):
        pass


def test_stack_after_warm_up_compiles_nothing(shared_data, tmp_path):
    from napari_astro.pipeline.stack import run_stack

    src = sorted((shared_data / "seestar_m94" / "session1").glob("*.fit"))[:3]
    if len(src) < 3:
        pytest.skip("fewer than 3 Seestar M94 lights in the shared data")
    lights = tmp_path / "lights"
    lights.mkdir()
    for f in src:
        shutil.copy(f, lights / f.name.replace(" ", "_"))
    lines = []
    warmup.warm_kernels(log=lines.append)
    assert [ln.split(":")[0] for ln in lines] == [f"warm-up {s}" for s in warmup.STAGES]
    assert warmup.cache_is_warm()
    assert warmup.warm_in_subprocess(only_if_cold=True) is None  # warm: nothing started

    rec = _Compiles()
    with numba_event.install_listener("numba:compile", rec):
        res = run_stack([lights], tmp_path / "stack.fits")
    ours = [n for n in rec.names if n.startswith("napari_astro.")]
    assert ours == [], f"kernels the warm-up did not cover: {ours}"
    img = res.images[next(iter(res.images))]
    assert img.data.shape == (3, 1920, 1080)
    assert np.isfinite(img.data).all()
    assert float(img.data.max()) > 0.0


def test_threaded_kernels_match_serial():
    from napari_astro.core.integration.combine import _compute_tile, _Plan
    from napari_astro.core.integration.strategies import LinearFit, Winsorized

    rng = np.random.default_rng(7)
    buf = rng.normal(1.0, 0.1, (7, 3, 11, 300)).astype(np.float32)
    buf[rng.random(buf.shape) < 0.03] = np.nan
    buf[rng.random(buf.shape) < 0.02] += 4.0
    # Winsorized (the stack's default) and linear fit (which also moves indices)
    for rej in (Winsorized(), LinearFit()):
        for combine in ("average", "median"):
            plan = _Plan.build(7, 3, rej, combine)
            threaded = _compute_tile(plan, buf, parallel=True)
            serial = _compute_tile(plan, buf, parallel=False)
            for a, b in zip(threaded, serial):
                np.testing.assert_array_equal(a, b)
            # the outliers added above are rejected (the counts are real, not zeros)
            assert threaded[6].sum() > 0, rej


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown warm-up stage"):
        warmup.warm_kernels(["calibrate", "bogus"])


def test_plugin_discovery_starts_the_warm_up_check_in_a_thread(monkeypatch):
    """napari's discovery of the plugin starts the cold-cache check off napari's thread;
    the check calls warm_in_subprocess(only_if_cold=True); the opt-out is honoured."""
    import threading

    import napari_astro

    calls = []
    monkeypatch.setattr(warmup, "warm_in_subprocess", lambda **kw: calls.append(kw))
    monkeypatch.delenv("NAPARI_ASTRO_NO_WARMUP", raising=False)
    napari_astro._warm_kernels_when_cold()
    for t in threading.enumerate():
        if t.name == "napari-astro-warmup-check":
            t.join(30)
    assert calls == [{"only_if_cold": True}]
    monkeypatch.setenv("NAPARI_ASTRO_NO_WARMUP", "1")
    napari_astro._warm_kernels_when_cold()
    assert calls == [{"only_if_cold": True}]

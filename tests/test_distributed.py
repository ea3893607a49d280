"""`napari-astro stack --scheduler`: a real Dask scheduler and two worker processes on
localhost give the same stack as the local run."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_astro.core.errors import BadInputError
from napari_astro.core.io import read_image
from napari_astro.core.simulate import NightParams, load_truth, simulate_night
from napari_astro.pipeline.params import Execution
from napari_astro.pipeline.stack import run_stack
from napari_astro.pipeline.steps import RegisterParams

distributed = pytest.importorskip("distributed")
DASK = Path(sys.executable).with_name("dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask scheduler`` + two ``dask worker`` processes (1 process, 1 thread each)."""
    if not DASK.exists():
        pytest.skip(f"no dask command beside {sys.executable}")
    logs = tmp_path_factory.mktemp("dask")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = []

    def start(name, *args):
        out = open(logs / f"{name}.log", "w")
        procs.append(subprocess.Popen([str(DASK), *args], stdout=out, stderr=subprocess.STDOUT,
                                      cwd=logs))

    start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port),
          "--no-dashboard")
    for k in range(2):
        start(f"worker{k}", "worker", addr, "--nworkers", "1", "--nthreads", "1",
              "--no-dashboard", "--name", f"w{k}", "--local-directory", str(logs / f"w{k}"))
    try:
        with distributed.Client(addr, timeout=60) as c:
            c.wait_for_workers(2, timeout=90)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("night") / "night"
    simulate_night(root, NightParams(width=256, height=192, n_lights=5, n_darks=3, n_flats=3,
                                     n_biases=3, seed=5))
    return root


def _run(night, out, scheduler=None):
    truth = load_truth(night)
    t0 = time.perf_counter()
    res = run_stack([night], out, register=RegisterParams(reference=str(truth.lights[0])),
                    execution=Execution(scheduler=scheduler))
    return res, time.perf_counter() - t0


def test_two_workers_give_the_local_stack(cluster, night, tmp_path, capsys):
    local, t_local = _run(night, tmp_path / "local.fits")
    dist, t2 = _run(night, tmp_path / "dist.fits", scheduler=cluster)
    a = read_image(tmp_path / "local.fits").data
    b = read_image(tmp_path / "dist.fits").data
    assert a.shape == b.shape == (3, 192, 256)
    assert np.nanmax(np.abs(a - b)) <= 1e-6
    assert np.array_equal(np.isnan(a), np.isnan(b))
    # the same frames were accepted, with the same transforms
    for ra, rb in zip(local.quality[""], dist.quality[""]):
        assert ra["accepted"] == rb["accepted"]
        np.testing.assert_allclose(ra["matrix"], rb["matrix"], atol=1e-9)
    log = (tmp_path / "dist.log").read_text()
    assert "Dask cluster" in log
    # the tasks really ran in the worker processes: their calibrated frames exist, and
    # the work folders hold the same files
    names = sorted(p.name for p in (tmp_path / "dist.fits.work").rglob("*.fits"))
    assert names == sorted(p.name for p in (tmp_path / "local.fits.work").rglob("*.fits"))
    with capsys.disabled():   # the timings of 1 and 2 workers: benchmarks/bench_distributed.py
        print(f"\n[distributed] 256x192 x5 night: local {t_local:.1f} s, 2 workers {t2:.1f} s "
              "(cold worker processes, loaded machine)")


def test_unreachable_scheduler_is_bad_input(night, tmp_path):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}), \
            pytest.raises(BadInputError) as err:
        run_stack([night], tmp_path / "x.fits",
                  execution=Execution(scheduler=f"tcp://127.0.0.1:{_free_port()}"))
    assert "--scheduler" in str(err.value)


def test_tls_spec_is_checked(tmp_path):
    from napari_astro.pipeline.distributed import security_from_spec

    assert security_from_spec("") is None
    with pytest.raises(BadInputError):
        security_from_spec("only-one.pem")
    with pytest.raises(BadInputError):
        security_from_spec(f"{tmp_path}/ca.pem,{tmp_path}/c.pem,{tmp_path}/k.pem")

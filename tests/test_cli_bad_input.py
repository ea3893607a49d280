"""Bad input: exit status 2, one stderr line naming the file, nothing written.

The five cases of issue #2 (truncated FITS, text file named .fits, zero-byte file,
FITS without image data, unknown IMAGETYP) through ``scan_frames`` directly and
through ``napari-astro masters SESSION -o OUT`` (in-process and as a subprocess).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from napari_astro import cli
from napari_astro.core.errors import BadInputError
from napari_astro.core.frames import scan_frames

CASES = ["truncated", "text", "empty", "nodata", "unknown"]
PHRASES = {"truncated": "truncated", "text": "not a FITS file", "empty": "empty file",
           "nodata": "no image data", "unknown": "unknown frame type"}


def _masters_built() -> bool:
    try:
        from napari_astro.pipeline import masters
    except ImportError:
        return False
    return hasattr(masters, "cli_masters")


needs_masters = pytest.mark.skipif(not _masters_built(), reason="masters not built yet")


def _good(path: Path, imagetyp: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    data = (1000 + rng.normal(0, 10, size=(40, 60))).astype(np.uint16)
    hdr = fits.Header({"IMAGETYP": imagetyp, "EXPTIME": 0.0, "GAIN": 100, "CCD-TEMP": -10.0})
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data, header=hdr).writeto(path)
    return path


def _session(tmp_path: Path, case: str) -> tuple[Path, Path]:
    """A session of 5 good bias frames plus one bad file; returns (session, bad file)."""
    s = tmp_path / "session"
    goods = [_good(s / "bias" / f"bias_{i:02d}.fits", "Bias", i) for i in range(5)]
    if case == "truncated":
        bad = s / "bias" / "bias_99.fits"
        bad.write_bytes(goods[0].read_bytes()[: 2880 + 1000])  # header + part of the pixels
    elif case == "text":
        bad = s / "bias" / "notes.fits"
        bad.write_text("exposure log: 5 x bias at -10 C\n" * 100)
    elif case == "empty":
        bad = s / "bias" / "bias_zero.fits"
        bad.write_bytes(b"")
    elif case == "nodata":
        bad = s / "bias" / "header_only.fits"
        fits.PrimaryHDU(header=fits.Header({"IMAGETYP": "Bias"})).writeto(bad)
    elif case == "unknown":
        bad = _good(s / "misc" / "frame_0001.fits", "Tricolor", 99)  # no typed folder
    else:  # pragma: no cover
        raise ValueError(case)
    return s, bad


@pytest.mark.parametrize("case", CASES)
def test_scan_frames_names_the_bad_file(case, tmp_path):
    session, bad = _session(tmp_path, case)
    with pytest.raises(BadInputError) as err:
        scan_frames([session])
    assert err.value.path == str(bad)
    assert PHRASES[case] in err.value.problem
    assert err.value.message.startswith(str(bad)) and "\n" not in err.value.message
    log: list[str] = []
    frames = scan_frames([session], skip_bad=True, log=log.append)
    assert len(frames) == 5 and all(f.path != bad for f in frames)
    assert len(log) == 1 and str(bad) in log[0]


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


@needs_masters
@pytest.mark.parametrize("case", CASES)
def test_masters_cli_exit_2_one_line(case, tmp_path, capsys):
    session, bad = _session(tmp_path, case)
    out = tmp_path / "out"
    status = cli.main(["masters", str(session), "-o", str(out)])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert str(bad) in lines[0] and PHRASES[case] in lines[0]
    assert "Traceback" not in captured.err
    _assert_nothing_written(out)


@needs_masters
def test_masters_entry_point_subprocess(tmp_path):
    session, bad = _session(tmp_path, "truncated")
    out = tmp_path / "out"
    exe = Path(sys.executable).with_name("napari-astro")
    if not exe.exists():
        found = shutil.which("napari-astro")
        if found is None:
            pytest.skip("the napari-astro entry point is not installed")
        exe = Path(found)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([str(exe), "masters", str(session), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and str(bad) in lines[0] and "truncated" in lines[0], proc.stderr
    _assert_nothing_written(out)


@needs_masters
def test_masters_cli_missing_session(tmp_path, capsys):
    missing = tmp_path / "no_such_session"
    status = cli.main(["masters", str(missing), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and str(missing) in err[0]
    _assert_nothing_written(tmp_path / "out")


# ------------------------------------------------- pre-processing: checked before any work
@pytest.fixture(scope="module")
def small_night(tmp_path_factory):
    from napari_astro.core.simulate import NightParams, simulate_night

    root = tmp_path_factory.mktemp("small") / "night"
    simulate_night(root, NightParams(width=128, height=96, n_lights=3, n_darks=2, n_flats=2,
                                     n_biases=2, seed=4))
    return root


def _one_line_exit_2(argv, capsys) -> str:
    status = cli.main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert status == 2, captured.err
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_stack_one_light_names_the_folder(small_night, tmp_path, capsys):
    session = tmp_path / "one"
    shutil.copytree(small_night / "bias", session / "bias")
    (session / "lights").mkdir()
    shutil.copy(small_night / "lights" / "light_0001.fits", session / "lights")
    out = tmp_path / "o.fits"
    line = _one_line_exit_2(["stack", str(session), "-o", str(out)], capsys)
    assert str(session) in line and "found 1 light; integration needs at least 2" in line
    assert not out.exists() and not (tmp_path / "o.fits.work").exists()


def test_stack_no_lights_leaves_nothing(small_night, tmp_path, capsys):
    out = tmp_path / "o.fits"
    line = _one_line_exit_2(["stack", str(small_night / "darks"), "-o", str(out)], capsys)
    assert "no light frames" in line and str(small_night / "darks") in line
    assert sorted(tmp_path.iterdir()) == []


@pytest.fixture
def immutable_dir(tmp_path):
    """A folder nobody (root included) can write into: ``chattr +i``."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available to make a folder immutable")
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not permitted here (needs root on a filesystem with "
                    "attributes)")
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")
        except OSError:
            pass
        else:  # pragma: no cover - the attribute did not take
            probe.unlink()
            pytest.skip("the immutable attribute does not stop writes here")
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


@pytest.mark.parametrize("command", ["stack", "integrate", "masters", "calibrate", "register"])
def test_output_in_a_read_only_folder_is_exit_2(command, small_night, immutable_dir, tmp_path,
                                                capsys):
    lights = sorted((small_night / "lights").glob("*.fits"))
    work = tmp_path / "work"
    argv = {
        "stack": ["stack", str(small_night), "-o", str(immutable_dir / "s.fits"),
                  "--work-dir", str(work)],
        "integrate": ["integrate", *map(str, lights), "-o", str(immutable_dir / "i.fits")],
        "masters": ["masters", str(small_night), "-o", str(immutable_dir / "m")],
        "calibrate": ["calibrate", str(small_night), "-o", str(immutable_dir / "c")],
        "register": ["register", *map(str, lights), "-o", str(immutable_dir / "r")],
    }[command]
    line = _one_line_exit_2(argv, capsys)
    assert str(immutable_dir) in line and "not writable" in line
    assert list(immutable_dir.iterdir()) == []
    assert not work.exists()                  # refused before the work folder was made

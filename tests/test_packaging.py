"""Packaging for napari's plugin manager: the built wheel is a discoverable plugin.

Builds the wheel, installs it (without dependencies) into a fresh venv, and checks
from that venv that ``npe2 validate napari-astro`` passes and that npe2 and napari
discover the plugin *from the wheel's files* (not from the editable checkout).

Why this venv set-up: a venv with all of napari's dependencies would take minutes to
download; ``--system-site-packages`` does not see /work/venv's packages when the test
runs from a venv. So the fresh venv gets a ``.pth`` line pointing at the running
interpreter's site-packages (dependencies only: path lines in a ``.pth`` file do not
execute the ``.pth`` files found there, so the editable install's path hook stays
off), and the wheel is installed with ``pip --python <venv> install --no-deps``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(180)


def _run(cmd: list[str], extra_env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.update(extra_env or {})
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=170, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    dist = tmp_path_factory.mktemp("dist")
    # Copy the sources so the build cannot touch the checkout (and ignores caches).
    src = tmp_path_factory.mktemp("src") / "napari-astro"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "dist", "build", ".pytest_cache",
        "benchmarks", "docs", "tests", "_aot*"))
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist)]
    try:
        import hatchling  # noqa: F401

        cmd.append("--no-isolation")  # offline and ~10x faster than an isolated build
    except ImportError:
        pass
    # without the build hook's prebuilt kernels (hatch_build.py: a minute of compiling;
    # measured by benchmarks/bench_first_run.py --pip-venv instead)
    _run(cmd + [str(src)], extra_env={"NAPARI_ASTRO_NO_PREBUILD": "1"})
    wheels = list(dist.glob("napari_astro-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_ships_the_manifest(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        manifest = zf.read("napari_astro/napari.yaml").decode()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        metadata = zf.read(next(n for n in names if n.endswith("METADATA"))).decode()
    # The manifest is a real file in the wheel (the repository keeps a symlink).
    assert manifest == (ROOT / "napari.yaml").read_text()
    assert "[napari.manifest]" in entry_points
    assert "napari-astro = napari_astro._plugin:napari.yaml" in entry_points
    assert zf_names_has(names, "napari_astro/_plugin/napari.yaml")
    assert "Classifier: Framework :: napari" in metadata
    for module in ("_reader.py", "_writer.py", "widgets/_base.py", "widgets/stack.py"):
        assert f"napari_astro/{module}" in names


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)])
    py = env_dir / "bin" / "python"
    new_site = Path(subprocess.check_output(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    parent_site = sysconfig.get_paths()["purelib"]
    # Dependencies from the running environment, after the venv's own site-packages.
    (new_site / "_parent_env.pth").write_text(parent_site + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
          "--no-index", "--disable-pip-version-check", "-q", str(wheel)])
    return env_dir


def test_installed_wheel_is_discovered(venv):
    py = venv / "bin" / "python"
    code = textwrap.dedent("""
        import importlib.util, json, napari_astro, npe2
        from npe2 import PluginManager
        pm = PluginManager.instance()
        pm.discover()
        mf = pm.get_manifest("napari-astro")  # raises KeyError if not discovered
        from napari.plugins import _initialize_plugins
        _initialize_plugins()
        from napari.plugins._npe2 import get_readers
        spec = importlib.util.find_spec("napari_astro")
        print(json.dumps({
            "module": napari_astro.__file__,
            "locations": list(spec.submodule_search_locations),
            "version": mf.package_version,
            "widgets": [w.display_name for w in mf.contributions.widgets],
            "readers": sorted(get_readers("night.fits")),
        }))
    """)
    out = _run([str(py), "-c", code])
    import json

    info = json.loads(out.stdout.strip().splitlines()[-1])
    # The package and its manifest (found by npe2 through the package's search
    # locations) come from the fresh venv, not from the checkout.
    assert Path(info["module"]).resolve().is_relative_to(venv.resolve()), info["module"]
    assert info["locations"] and all(Path(p).resolve().is_relative_to(venv.resolve())
                                     for p in info["locations"]), info["locations"]
    assert (Path(info["locations"][0]) / "napari.yaml").is_file()
    import napari_astro

    assert info["version"] == napari_astro.__version__
    widgets = info["widgets"]
    assert widgets.index("Calibration") < widgets.index("Registration") < \
        widgets.index("Integration") < widgets.index("Stack a night") < widgets.index("Crop")
    assert "napari-astro" in info["readers"]


def test_npe2_validate_from_the_installed_wheel(venv):
    py = venv / "bin" / "python"
    out = _run([str(py), "-m", "npe2", "validate", "napari-astro", "--imports"])
    assert "valid" in (out.stdout + out.stderr).lower()


def zf_names_has(names, name) -> bool:
    return name in names


def test_discovery_makes_napari_astro_the_reader_of_fits(venv, tmp_path):
    """napari's plugin discovery alone (no napari-astro code asked for) makes
    napari-astro the preferred reader of .fit/.fits, so the first file dropped on a
    fresh napari opens without a reader dialog; a user's own choice is kept."""
    py = venv / "bin" / "python"
    code = textwrap.dedent("""
        import json, sys
        import napari
        from napari.settings import get_settings
        from napari.plugins import _initialize_plugins
        pre = dict(get_settings().plugins.extension2reader)
        _initialize_plugins()
        from npe2 import PluginManager
        PluginManager.instance().discover()
        prefs = dict(get_settings().plugins.extension2reader)
        print(json.dumps({"pre": pre, "prefs": prefs}))
    """)
    import os

    env = dict(os.environ, NAPARI_CONFIG=str(tmp_path / "settings.yaml"))
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert "*.fit" not in info["pre"]
    assert info["prefs"].get("*.fit") == "napari-astro"
    assert info["prefs"].get("*.fits") == "napari-astro"
    assert info["prefs"].get("*.xisf") == "napari-astro"

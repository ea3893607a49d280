"""`napari-astro demo`: the whole workflow on a simulated night, measured against truth."""

import numpy as np
from PIL import Image

from napari_astro.cli import main
from napari_astro.core.io import read_image


def test_demo_runs_the_workflow(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--size", "400x300", "--lights", "6"]) == 0
    stack = read_image(out / "stack.fits")
    assert stack.is_color and stack.shape2d == (300, 400)
    assert any(h.startswith("pre.integrate") for h in stack.history)
    # final.jpg is the default recipe's result: cropped to what every frame covered
    # (the dither leaves a few px per side), a dark-grey sky with the stars above it
    jpg = np.asarray(Image.open(out / "final.jpg"))
    assert jpg.ndim == 3 and jpg.shape[2] == 3
    assert 0.85 * 300 < jpg.shape[0] < 300 and 0.85 * 400 < jpg.shape[1] < 400
    assert 15 < np.median(jpg) < 70 and jpg.max() > 200
    report = (out / "report.txt").read_text()
    assert "post-processing (default recipe, 9 steps)" in report
    assert "post.crop: automatic crop from the coverage map" in report
    assert (out / "final_recipe.toml").exists()
    # the report measures the stack against the simulator's truth: linear and flat
    for line in report.splitlines():
        if line.startswith("channel"):
            scale = float(line.split("stack = ")[1].split(" *")[0])
            assert abs(scale - 1) < 0.03, line
    # a second run refuses to clobber the folder
    assert main(["demo", "-o", str(out), "--size", "400x300", "--lights", "6"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_demo_overwrite_removes_only_its_own_files(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    # a folder with someone else's files and no demo manifest: refused, untouched
    (out / "my_notes.txt").write_text("mine")
    assert main(["demo", "-o", str(out), "--size", "256x192", "--lights", "3",
                 "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["my_notes.txt"]
    (out / "my_notes.txt").unlink()
    assert main(["demo", "-o", str(out), "--size", "256x192", "--lights", "3"]) == 0
    first = (out / "stack.fits").stat().st_mtime_ns
    # the user adds files beside the demo's; --overwrite redoes the demo, keeps them
    (out / "my_notes.txt").write_text("mine")
    (out / "extra").mkdir()
    (out / "extra" / "keep.fits").write_bytes(b"not ours")
    assert main(["demo", "-o", str(out), "--size", "256x192", "--lights", "3",
                 "--overwrite"]) == 0
    assert (out / "my_notes.txt").read_text() == "mine"
    assert (out / "extra" / "keep.fits").read_bytes() == b"not ours"
    assert (out / "stack.fits").stat().st_mtime_ns != first
    assert (out / "final.jpg").exists() and (out / "stack_coverage.fits").exists()

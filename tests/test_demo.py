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
    jpg = np.asarray(Image.open(out / "final.jpg"))
    assert jpg.shape == (300, 400, 3) and jpg.std() > 10
    report = (out / "report.txt").read_text()
    # the report measures the stack against the simulator's truth: linear and flat
    for line in report.splitlines():
        if line.startswith("channel"):
            scale = float(line.split("stack = ")[1].split(" *")[0])
            assert abs(scale - 1) < 0.03, line
    # a second run refuses to clobber the folder
    assert main(["demo", "-o", str(out), "--size", "400x300", "--lights", "6"]) == 2
    assert "not empty" in capsys.readouterr().err

"""The CLI's tqdm bar imports tqdm without importlib.metadata (core/progress.py)."""

import subprocess
import sys


def test_tqdm_bar_without_importlib_metadata_and_true_version():
    code = (
        "import sys\n"
        "from napari_astro.core.progress import TqdmProgress\n"
        "with TqdmProgress('x', disable=True) as bar:\n"
        "    bar(1, 2, 'half')\n"
        "import tqdm\n"
        "print('metadata' if 'importlib.metadata' in sys.modules else 'none')\n"
        "print(tqdm.__version__)\n"
        "import importlib.metadata as md\n"
        "print(md.version('tqdm'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "none", "tqdm's import pulled in importlib.metadata"
    assert out[1] == out[2], f"tqdm.__version__ {out[1]} is not the installed {out[2]}"

"""The layering rule of STYLE.md: core/, pipeline/ and capture/ import no GUI code."""

import subprocess
import sys
import textwrap

import pytest

BLOCKED = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")


@pytest.mark.parametrize("module", ["napari_astro.core", "napari_astro.core.io",
                                    "napari_astro.pipeline", "napari_astro.cli"])
def test_core_imports_without_gui(module):
    code = textwrap.dedent(f"""
        import sys, importlib, pkgutil
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {BLOCKED!r}:
                    raise ImportError('blocked GUI import: ' + name)
                return None
        sys.meta_path.insert(0, Block())
        import {module} as m
        # import every submodule too
        if hasattr(m, '__path__'):
            for info in pkgutil.walk_packages(m.__path__, m.__name__ + '.'):
                importlib.import_module(info.name)
        print('ok')
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")

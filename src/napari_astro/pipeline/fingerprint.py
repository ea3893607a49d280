"""Content fingerprints of the stack run's stages, so a re-run redoes exactly what changed.

Each stage's products live in one folder of the work folder with a ``stage.json``
holding the stage's fingerprint: a hash of its inputs (the files' path, size and
modification time, or the fingerprint of the stage before it) and of exactly the
parameters that change its products. On a re-run :meth:`Stage.open` compares:

* same fingerprint, finished -> the products are reused as they are;
* same fingerprint, unfinished (an interrupted run) -> the finished products are
  kept (every product is written atomically, so an existing file is complete) and
  the stage resumes;
* another fingerprint -> the stage's products are deleted and it is redone.

Execution settings (threads, memory, scheduler) never enter a fingerprint: they do
not change the products.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

__all__ = ["files_fingerprint", "fingerprint", "Stage"]

STAGE_FILE = "stage.json"


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able ``parts`` (dicts sorted by key)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def files_fingerprint(paths: Iterable["str | os.PathLike[str]"]) -> str:
    """Hash of each file's resolved path, size and modification time (ns), in order
    of path: a file replaced or touched since changes it, reading none of the pixels."""
    rows = []
    for p in sorted(Path(p).resolve() for p in paths):
        st = p.stat()
        rows.append((str(p), st.st_size, st.st_mtime_ns))
    return fingerprint(rows)


class Stage:
    """One stage's product folder and its fingerprint (see the module docstring).

    Parameters
    ----------
    folder : path
        Where the stage writes its products (created by :meth:`open`).
    name : str
        For the log ("calibrate [none]").
    key : str
        The stage's fingerprint.
    products : str
        Glob of the product files deleted when the fingerprint changed (files directly
        in ``folder``; sub-folders are other stages).
    """

    def __init__(self, folder: "str | os.PathLike[str]", name: str, key: str, *,
                 products: str = "*") -> None:
        self.folder = Path(folder)
        self.name = name
        self.key = key
        self.products = products
        self.state = "new"

    def _read(self) -> dict:
        try:
            return json.loads((self.folder / STAGE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def open(self) -> str:
        """Prepare the folder; returns and keeps in :attr:`state` one of "reused"
        (finished with this fingerprint), "resumed" (unfinished, same fingerprint),
        "changed" (products of another fingerprint deleted) or "new"."""
        saved = self._read()
        if saved.get("key") == self.key:
            self.state = "reused" if saved.get("done") else "resumed"
            return self.state
        if self.folder.is_dir():
            had = False
            for p in self.folder.glob(self.products):
                if p.is_file() and p.name != STAGE_FILE:
                    p.unlink()
                    had = True
            self.state = "changed" if had or saved else "new"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write({"key": self.key, "done": False})
        return self.state

    @property
    def reused(self) -> bool:
        return self.state == "reused"

    def info(self) -> dict:
        """What :meth:`finish` stored (counts, log lines)."""
        return self._read().get("info", {})

    def finish(self, **info: Any) -> None:
        """Mark the stage finished with this fingerprint (and keep ``info``)."""
        self._write({"key": self.key, "done": True, "info": info})

    def _write(self, data: dict) -> None:
        from ..core.io._atomic import atomic_output

        with atomic_output(self.folder / STAGE_FILE, overwrite=True) as tmp:
            tmp.write_text(json.dumps(data, indent=1, default=str))

    def describe(self) -> str:
        """One log line: what this run does with the stage and why."""
        why = {"reused": "reused: inputs and parameters unchanged",
               "resumed": "resumed: finished products of an interrupted run kept",
               "changed": "redone: inputs or parameters changed",
               "new": "computed"}[self.state]
        return f"{self.name}: {why} (fingerprint {self.key})"

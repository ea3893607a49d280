"""Atomic file output: write to a temporary file in the destination folder, then rename.

A crash or Ctrl-C never leaves a half-written output under the final name, and an
existing output is only replaced when asked.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import BadInputError

__all__ = ["atomic_output"]


@contextlib.contextmanager
def atomic_output(path: "str | os.PathLike[str]", *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Raises :class:`BadInputError` if ``path`` exists and ``overwrite`` is False.
    """
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise BadInputError(dest, "output exists (use --overwrite to replace it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real extension (".fits", ".fits.fz") so writers that look at it behave;
    # names like "Light_10.0s_x.fit" must not yield ".0s_x.fit".
    n = 2 if dest.suffix.lower() in (".fz", ".gz") else 1
    suffix = "".join(dest.suffixes[-n:]) or ".tmp"
    fd, tmpname = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".part{suffix}",
                                   dir=dest.parent)
    os.close(fd)
    tmp = Path(tmpname)
    tmp.unlink()  # writers create the file themselves
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()

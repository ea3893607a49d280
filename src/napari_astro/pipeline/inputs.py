"""Inputs and outputs of every pre-processing subcommand, checked before any work.

* :func:`expand` turns the paths a user gives (files and folders, folders searched
  recursively, hidden files and folders skipped, only supported image extensions)
  into the list of files; ``masters``, ``calibrate``, ``register``, ``integrate`` and
  ``stack`` all call it (``core.frames.expand_inputs`` owns the rule, so
  ``scan_frames`` follows the same one).
* :func:`check_output_dir` and :func:`check_output_file` refuse an output that
  cannot be written (missing permission, immutable folder, existing file without
  ``--overwrite``, wrong extension) with a :class:`BadInputError` naming the folder
  or file, so a run fails in the first second, not after an hour of work.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from ..core.errors import BadInputError

__all__ = ["expand", "check_output_dir", "check_output_file", "file_stem", "IMAGE_OUTPUTS"]

#: Extensions a stacked image may be written as.
IMAGE_OUTPUTS = (".fits", ".fit", ".fts", ".xisf")


def expand(inputs: "Sequence[str | os.PathLike[str]] | str | os.PathLike[str]", *,
           skip_bad: bool = False, log: Optional[Callable[[str], None]] = None) -> list[Path]:
    """Files named in ``inputs``; folders replaced by their image files (recursively,
    sorted by path, hidden files skipped, duplicates dropped).

    Raises
    ------
    BadInputError
        A missing input or a folder without image files (unless ``skip_bad``: then
        a ``log`` line each).
    """
    from ..core.frames import expand_inputs

    return expand_inputs(inputs, skip_bad=skip_bad, log=log)


_DOUBLE_EXTENSIONS = (".fits.fz", ".fit.fz", ".fits.gz", ".fit.gz")


def file_stem(name: "str | os.PathLike[str]") -> str:
    """A frame's name without its extension, compressed FITS included
    (``light_01.fits.fz`` -> ``light_01``): the stem of every intermediate's name."""
    name = Path(name).name
    low = name.lower()
    for ext in _DOUBLE_EXTENSIONS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_output_dir(folder: "str | os.PathLike[str]") -> None:
    """Refuse an output folder that cannot be created or written.

    The folder itself need not exist: its nearest existing ancestor must take a new
    file (a probe file is created and removed: ``os.access`` says yes to root even in
    an immutable folder).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BadInputError(folder, "output is a file, not a folder")
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise BadInputError(base, "is a file, not a folder")
    _probe_folder(base)


def _probe_folder(folder: Path) -> None:
    """The folder check of ``stepcli.check_output_path`` (same messages), here so that
    a pre-processing run does not import the step registry with it."""
    if folder.joinpath("probe.fits").is_dir():
        raise BadInputError(folder / "probe.fits", "is a folder, not an output file")
    folder = Path(os.path.abspath(folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(folder, "output folder is not writable")
    try:  # root passes os.access; an immutable folder still refuses the file
        import tempfile

        fd, probe = tempfile.mkstemp(dir=folder, prefix=".napari-astro-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BadInputError(folder, f"output folder is not writable ({exc.strerror})") from None


def check_output_file(path: "str | os.PathLike[str]", *, overwrite: bool,
                      extensions: Iterable[str] = IMAGE_OUTPUTS) -> None:
    """Refuse an output file with another extension, one that exists (without
    ``overwrite``), or one whose folder cannot be written."""
    p = Path(path)
    exts = tuple(extensions)
    if not p.name.lower().endswith(exts):
        raise BadInputError(p, f"output must end in {'/'.join(exts)}")
    if p.is_dir():
        raise BadInputError(p, "is a folder, not an output file")
    if p.exists() and not overwrite:
        raise BadInputError(p, "output exists (use --overwrite to replace it)")
    check_output_dir(p.parent if str(p.parent) else Path("."))

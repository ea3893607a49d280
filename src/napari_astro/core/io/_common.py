"""Checks and messages every reader shares, so bad input reads the same everywhere."""

from __future__ import annotations

from pathlib import Path

from ..errors import BadInputError

__all__ = ["short_error", "check_readable"]


def short_error(exc: Exception) -> str:
    """One line of at most 160 characters describing ``exc`` (for BadInputError)."""
    return " ".join(str(exc).split())[:160] or type(exc).__name__


def check_readable(path: Path) -> int:
    """Raise :class:`BadInputError` naming ``path`` if it is missing, a folder or empty.

    Returns the file size in bytes (readers go on to check their own signature).
    """
    if not path.exists():
        raise BadInputError(path, "file not found")
    if path.is_dir():
        raise BadInputError(path, "is a folder, not a file")
    size = path.stat().st_size
    if size == 0:
        raise BadInputError(path, "empty file (0 bytes)")
    return size

"""Exceptions that carry a user-facing message.

:class:`BadInputError` is what every reader and step raises for bad input (missing,
truncated or non-FITS files, mixed sizes, unknown frame types, NaNs, zero flats...).
The CLI turns it into exit status 2 and one line ``"<file>: <problem>"``.
"""

from __future__ import annotations

import os

__all__ = ["BadInputError", "NotBuiltError"]


class BadInputError(ValueError):
    """Bad input: names the offending file (or option) and the problem.

    Parameters
    ----------
    path : str or os.PathLike or None
        The file (or option name) at fault; None when no single file is to blame.
    problem : str
        What is wrong, in one short sentence without a trailing full stop.
    """

    def __init__(self, path: "str | os.PathLike[str] | None", problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = " ".join(str(self.problem).split())  # always one line
        return f"{self.path}: {text}" if self.path else text


class NotBuiltError(RuntimeError):
    """A subcommand or step that is not implemented yet."""

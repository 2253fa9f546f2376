"""The errors the command line turns into one-line messages and exit status 2.

Plugins raise :class:`InputError` for anything wrong with a file the user named (missing,
empty, truncated, unknown format, unsafe) and :class:`UsageError` for option values that
make no sense. Both carry a message meant for the user as it stands: no traceback is
shown unless ``--debug`` is given.
"""

from __future__ import annotations

import os


class GraphinspectError(Exception):
    """Base class of the errors that end a command with exit status 2."""


class InputError(GraphinspectError):
    """A file the user named cannot be used; ``str()`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UsageError(GraphinspectError):
    """The command line asks for something that cannot be done."""

"""The small typed records that hooks return.

A plugin contributes capabilities by returning these from its hook implementations
(see :mod:`inspector.hookspecs`); the core never inspects a plugin module beyond them.
Each record is a frozen dataclass of plain values and callables, so a plugin may build
them from functions, bound methods or objects as it likes.
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from inspector.ir import Model
    from inspector.manager import Plugins
    from inspector.results import DiffResult


@dataclass(frozen=True, slots=True)
class ModelLoader:
    """Reads one family of model files into a :class:`~inspector.ir.Model`.

    - ``sniff(path, head)`` says whether this loader reads the file, from its first
      bytes (``head``, up to 4096) and, if it must, the file itself. It must be cheap
      and must not raise for files it does not read.
    - ``load(path)`` reads it, raising :class:`~inspector.errors.InputError` with a
      one-line problem for anything wrong with the file.
    - ``formats`` names what it reads, for ``graphinspect plugins`` and error messages.
    - ``priority``: loaders are asked in descending priority; a specific loader
      (TorchScript is a zip too) outranks a general one.
    """

    name: str
    formats: tuple[str, ...]
    sniff: Callable[[Path, bytes], bool]
    load: Callable[[Path], "Model"]
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Subcommand:
    """A ``graphinspect <name>`` command.

    ``configure_parser(parser)`` adds its arguments; ``run(args, plugins)`` does the
    work and returns the exit status. ``run`` raises
    :class:`~inspector.errors.GraphinspectError` for bad input or usage; the front end
    prints it as one line and exits 2.
    """

    name: str
    summary: str
    configure_parser: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, "Plugins"], int]


@dataclass(frozen=True, slots=True)
class Reporter:
    """Renders a versioned report document (a JSON-compatible dict) in one format.

    ``render(document, stream, options)`` writes to a text stream; ``options`` holds the
    command's presentation settings, which a reporter reads with ``options.get`` and may
    ignore: ``color`` (False for ``--no-color``, None to decide from the stream) and
    ``to_file`` (True when the text goes to an ``-o`` file; colour is then off); the
    built-in tables also honour a ``width`` and a ``height`` when given, and the diff
    table ``all`` (every layer) and ``quiet`` (the verdict line only). Narrowing (``--only-problems``, ``--layer``)
    is done in the document before it is rendered. ``schemas`` lists the document
    schemas it understands, as names or shell-style patterns (``"graphinspect/diff@1"``,
    ``"graphinspect/*"`` for every document); ``suffixes`` the file endings that select
    it for ``-o FILE`` when no ``--format`` is given.
    """

    name: str
    description: str
    schemas: tuple[str, ...]
    render: Callable[[dict[str, Any], TextIO, dict[str, Any]], None]
    suffixes: tuple[str, ...] = ()

    def renders(self, schema: str) -> bool:
        """Whether this reporter understands documents of ``schema``."""
        return any(fnmatch.fnmatchcase(schema, pattern) for pattern in self.schemas)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a diff noticed: ``severity`` is "error", "warning" or "info"; ``code`` a
    stable identifier ("mismatch", "nan_inf", "unfolded_batchnorm", ...); ``layer`` the
    target (or source) layer it concerns, or None for the model as a whole."""

    severity: str
    code: str
    message: str
    layer: str | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """A whole-diff check: ``run(result)`` looks at a finished
    :class:`~inspector.results.DiffResult` and yields :class:`Finding` records."""

    name: str
    description: str
    run: Callable[["DiffResult"], Iterable[Finding]]

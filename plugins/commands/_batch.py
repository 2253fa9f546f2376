"""``graphinspect diff --pairs MANIFEST``: audit many exports at once, in parallel processes.

A private helper of :mod:`plugins.commands.diff` (not a plugin). Each pair runs exactly
what ``graphinspect diff SOURCE TARGET --format json`` runs: :func:`inspector.cli.main`,
in a worker process; this module only reads the manifest, hands pairs to workers,
collects one row per pair and builds the summary document (rendered by
:mod:`._batch_table`).

The manifest
    A UTF-8 text file (``-``: standard input), one pair a line, ``SOURCE TARGET``
    separated by whitespace. Quoting works as in a shell (``"my model.pt" 'x.onnx'``,
    :mod:`shlex`), a ``#`` at the start of a word starts a comment, blank lines are
    skipped. Relative paths are relative to the manifest's folder (to the working folder
    for ``-``); there is no ``~`` or ``$VAR`` expansion (it is not a shell). The whole
    manifest is read and checked before anything runs: a line that is not two paths (or
    an unclosed quote) is one line naming ``MANIFEST:LINE``, exit 2, nothing run or
    written. A missing or unreadable model is *not* a manifest error: it is that pair's
    own trouble, reported in its row, and the other pairs run.

Options
    ``--rtol``, ``--atol``, ``--only-problems`` and ``--layer`` apply to every pair
    (:data:`PAIR_OPTIONS`). The command's own report is the summary: ``--format``
    ``table`` (default) or ``json``, ``-o FILE`` writes it to FILE (format from the
    suffix) with the total line on stderr, ``--quiet`` prints the total line only. The
    per-pair reports need a folder, and ``-o`` names one file (written like ``cp``; a
    folder is refused there on purpose), so the folder has its own option, ``--out-dir``.

``--out-dir DIR``
    Created if missing (its parent must exist). Pair ``i`` gets ``DIR/NNN-<target
    stem>.json`` (``003-yolov8n.json``: the index, zero-padded to three digits or more,
    keeps names unique and sorted in manifest order), byte for byte what ``graphinspect
    diff SOURCE TARGET --format json -o FILE`` writes, through the same code; a pair in
    trouble gets no report. ``DIR/summary.json`` is the summary document. Existing files
    are replaced atomically (:class:`~inspector.output_file.OutputFile`); reports of an
    earlier, longer manifest are left alone (``summary.json`` lists the current ones).
    An output that is one of the manifest's inputs (or the manifest) is refused before
    anything runs. Without ``--out-dir`` nothing is written: the table and the exit
    status only.

``--timeout SECONDS`` (default: none)
    A pair still running SECONDS after it was handed to a worker has its worker killed
    (a worker's first pair also counts the worker's start: about 2 s for torch's
    import): the pair is a trouble row, "did not finish within SECONDS s (--timeout):
    stopped", and a new worker takes the remaining pairs. A file crafted to make a reader hang (or a model
    far larger than expected) then costs its own pair, not the batch. Nothing of the
    stopped pair is written: a report file appears only once complete.

``--jobs N`` (default 1; ``auto``: one per CPU this process may use)
    Pairs run in ``N`` worker processes, started with ``spawn`` (a fresh interpreter:
    no torch or thread state copied from the parent, and the same environment and
    plugins as a single ``graphinspect diff``). A worker diffs pair after pair, so torch
    is imported once per worker, not once per pair. The default is 1 because each worker
    holds two models and torch at once (hundreds of MB for a detector, GBs for a large
    model): running several is a choice about memory the user makes. Even with one job
    the pairs run in a worker, never in this process, so that a pair that crashes native
    code (SIGSEGV in a reader, the kernel's OOM kill) becomes a trouble row with the
    line a single ``graphinspect diff`` would print (:mod:`inspector.isolation`), and a
    new worker takes the remaining pairs. An exception in a pair (MemoryError included)
    is that pair's one-line error, as in a single diff.

The summary document (``"schema": "graphinspect/batch@1"``; schema in
``inspector/schemas/batch-1.schema.json``; fields only added within a major version)::

    {"schema": "graphinspect/batch@1", "tool": {...},
     "manifest": "pairs.txt", "out_dir": "reports" | null, "jobs": 2,
     "timeout": 600.0 | null, "seconds": 9.1,
     "tolerance": {"rtol": float | null, "atol": float | null},
     "totals": {"pairs": 4, "faithful": 1, "differs": 1, "incomplete": 0, "trouble": 2},
     "exit_status": 2,
     "pairs": [{"index": 1, "line": 3, "source": "...", "target": "...",
                "verdict": "faithful" | "differs" | "incomplete" | "trouble",
                "exit_status": 0 | 1 | 2 | ...,
                "layers": {"ok": 7, "mismatch": 0, "unmatched": 0} | null,
                "coverage": 1.0 | null,     # explained / (explained + unexplained) elements
                "seconds": 0.8,
                "report": "001-model.json" | null,   # relative to the summary's folder
                "error": null | "the one-line problem"}]}

``source`` and ``target`` are the paths as handed to the diff (the manifest's folder
joined to what the line says): the same strings as in each report.

Exit status: 2 if any pair is in trouble (or the manifest, an option or the output
folder is), else 1 if any pair differs or is incomplete, else 0: a single diff's rule
(:mod:`inspector.cli`) over the worst pair.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.cli import EXIT_DIFFERS, EXIT_OK, EXIT_TROUBLE, escape
from inspector.errors import InputError, UsageError
from inspector.output_file import OutputError, OutputFile

SCHEMA = "graphinspect/batch@1"
STDIN = "-"
SUMMARY_NAME = "summary.json"
TROUBLE = "trouble"
ERROR_PREFIX = "graphinspect: error: "

PAIR_OPTIONS = {"rtol": "--rtol", "atol": "--atol", "only_problems": "--only-problems", "layer": "--layer"}
"""diff's options passed on to every pair (dest -> flag). A new diff option goes here or
in :data:`SUMMARY_OPTIONS`; the tests check that every option is in one of them."""

SUMMARY_OPTIONS = frozenset(
    {
        *("source", "target", "pairs", "jobs", "timeout", "out_dir", "format", "output", "quiet", "all", "debug"),
        *("color", "no_color"),
    }
)
"""diff's options that are about the batch itself (or refused with it), not passed on."""


# ----------------------------------------------------------------------- manifest


@dataclass(frozen=True, slots=True)
class Pair:
    """One line of the manifest: its 1-based ``index`` among the pairs, its ``line``
    number, and the two paths joined to the manifest's folder."""

    index: int
    line: int
    source: str
    target: str


def read_manifest(given: str) -> list[Pair]:
    """Every pair the manifest lists, or :class:`InputError` for the first bad line
    (``"pairs.txt:3: ..."``), an unreadable manifest or one that lists nothing."""
    if given == STDIN:
        data, folder, shown = sys.stdin.buffer.read(), "", "<stdin>"
    else:
        shown, folder = given, os.path.dirname(given)
        try:
            data = Path(given).read_bytes()
        except FileNotFoundError:
            raise InputError(given, "no such file (the manifest of --pairs)") from None
        except IsADirectoryError:
            raise InputError(given, "is a folder, not a manifest (one 'SOURCE TARGET' pair a line)") from None
        except OSError as exc:
            raise InputError(given, f"cannot read the manifest: {(exc.strerror or str(exc)).lower()}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(shown, "is not UTF-8 text (a manifest lists one 'SOURCE TARGET' pair a line)") from None
    pairs = []
    for number, line in enumerate(text.split("\n"), 1):
        try:
            fields = _fields(line.removesuffix("\r"))
        except ValueError as exc:
            raise InputError(f"{shown}:{number}", f"{str(exc).lower()}") from None
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(
                f"{shown}:{number}", f"expected two paths, SOURCE TARGET, found {len(fields)}: {shlex.join(fields)}"
            )
        for field in fields:
            if not field or "\0" in field:
                raise InputError(f"{shown}:{number}", "an empty path" if not field else "a path with a NUL byte")
        source, target = (os.path.join(folder, field) for field in fields)
        pairs.append(Pair(len(pairs) + 1, number, source, target))
    if not pairs:
        raise InputError(shown, "lists no pairs (one 'SOURCE TARGET' pair a line)")
    return pairs


def _fields(line: str) -> list[str]:
    """The words of one line, quoted as in a shell; ``#`` starts a comment only at the
    start of a word (shlex's own ``comments`` would cut ``model#2.pt`` in two)."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    fields = []
    while not line[lexer.instream.tell() :].lstrip().startswith("#"):
        token = lexer.get_token()
        if token is None:
            break
        fields.append(token)
    return fields


def report_name(pair: Pair, count: int) -> str:
    """``003-yolov8n.json``: the index (as wide as the largest, three digits at least)
    and the target's stem with anything but letters, digits, ``.``, ``_`` and ``-`` as
    ``_`` (at most 80 characters)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(pair.target).stem)[:80].strip(".") or "pair"
    return f"{pair.index:0{max(3, len(str(count)))}d}-{stem}.json"


# ----------------------------------------------------------------------- outputs


def prepare_out_dir(given: str, pairs: Sequence[Pair], manifest: str) -> dict[int, OutputFile]:
    """The checked report files (by pair index, and ``0`` for the summary) in ``given``,
    which is created when missing; :class:`OutputError` when the folder cannot be used
    or a report would replace an input. Nothing is created when anything is refused."""
    folder = Path(given)
    names = {pair.index: report_name(pair, len(pairs)) for pair in pairs}
    names[0] = SUMMARY_NAME
    if folder.exists():
        if not folder.is_dir():
            raise OutputError(f"--out-dir {escape(given)}: is not a folder")
        inputs = _identities([manifest, *(path for pair in pairs for path in (pair.source, pair.target))])
        outputs = {}
        for index, name in names.items():
            output = OutputFile.prepare(folder / name, "--out-dir")
            identity = _identity(folder / name)
            if identity in inputs:
                raise OutputError(
                    f"--out-dir {escape(given)}: {escape(name)} is the input {escape(inputs[identity])}; "
                    "refusing to overwrite an input file"
                )
            outputs[index] = output
        return outputs
    parent = folder.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"--out-dir {escape(given)}: folder {escape(str(parent))} does not exist")
    try:
        folder.mkdir()
    except OSError as exc:
        raise OutputError(
            f"--out-dir {escape(given)}: cannot create it: {(exc.strerror or str(exc)).lower()}"
        ) from None
    return {index: OutputFile.prepare(folder / name, "--out-dir") for index, name in names.items()}


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


def _identities(paths: Sequence[str]) -> dict[tuple[int, int], str]:
    found = {}
    for path in paths:
        identity = _identity(path) if path != STDIN else None
        if identity is not None:
            found.setdefault(identity, path)
    return found


# ----------------------------------------------------------------------- one pair


def pair_argv(args, pair: Pair, report: str | None) -> list[str]:
    """The command line of a single ``graphinspect diff`` for ``pair`` with ``args``'
    :data:`PAIR_OPTIONS` (``--`` before the paths: a file may be named ``-x.pt``)."""
    argv = ["diff", "--format", "json"]
    for dest, flag in PAIR_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        else:
            for item in value if isinstance(value, list) else [value]:
                argv += [flag, str(item)]
    if report is not None:
        argv += ["-o", report]
    return [*argv, "--", pair.source, pair.target]


def run_pair(argv: list[str], report: str | None, debug: bool) -> dict[str, Any]:
    """Run one ``graphinspect diff`` in this process (a worker): its row's fields
    (``exit_status``, ``verdict``, ``layers``, ``coverage``, ``seconds``, ``error``)."""
    from inspector.cli import main

    started = time.perf_counter()
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse's usage errors, as the command line would exit
            status = exc.code if isinstance(exc.code, int) else EXIT_TROUBLE
    seconds = time.perf_counter() - started
    if debug and stderr.getvalue():
        sys.__stderr__.write(stderr.getvalue())
    row: dict[str, Any] = {"exit_status": status, "seconds": seconds, "verdict": TROUBLE}
    row.update(layers=None, coverage=None, error=None)
    if status not in (EXIT_OK, EXIT_DIFFERS):
        row["error"] = _error_of(stderr.getvalue(), status)
        return row
    try:
        text = Path(report).read_text(encoding="utf-8") if report is not None else stdout.getvalue()
        document = json.loads(text)
    except (OSError, ValueError) as exc:
        row["error"] = f"the report could not be read back: {exc}"
        return row
    summary = document["summary"]
    row["verdict"] = summary["verdict"]
    row["layers"] = {
        "ok": summary["matched"],
        "mismatch": summary["mismatched"],
        "unmatched": summary["unmatched_target"],
    }
    row["coverage"] = coverage_of(summary)
    return row


def coverage_of(summary: dict[str, Any]) -> float | None:
    """explained / (explained + unexplained) parameter elements, as the verdict line
    counts them; None when the document has no coverage or nothing was stored."""
    coverage = summary.get("coverage") or {}
    explained = (coverage.get("explained") or {}).get("elements")
    unexplained = (coverage.get("unexplained") or {}).get("elements")
    if explained is None or unexplained is None or explained + unexplained == 0:
        return None
    return explained / (explained + unexplained)


def _error_of(stderr: str, status: int) -> str:
    """The one-line problem a single diff printed (its last ``graphinspect: error:``
    line, without the prefix), else what is known."""
    errors = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1].removeprefix(ERROR_PREFIX)
    if status == 130:
        return "interrupted"
    last = stderr.strip().splitlines()[-1:] or ["no message"]
    return f"exit status {status}: {escape(last[0])}"


# ----------------------------------------------------------------------- the batch


def run_batch(args, plugins) -> int:
    """``graphinspect diff --pairs MANIFEST ...``: the contract is the module docstring."""
    from inspector import progress
    from inspector.output import choose_format, emit, prepare_output
    from plugins.commands._batch_table import STYLES, total_line, verdict_of
    from plugins.commands._workers import run_in_workers

    if args.source is not None or args.target is not None:
        raise UsageError("--pairs MANIFEST replaces SOURCE TARGET; give one or the other")
    pairs = read_manifest(args.pairs)
    inputs = [
        args.pairs if args.pairs != STDIN else None,
        *(path for pair in pairs for path in (pair.source, pair.target)),
    ]
    output = prepare_output(args.output, inputs=inputs)
    fmt = choose_format(args.format, output, plugins, SCHEMA, default="table")
    if args.quiet and (output is None or output.is_stdout) and fmt != "table":
        raise UsageError(f"--quiet prints the total line only, not a {fmt} summary; add -o FILE to write one")
    jobs = min(default_jobs() if args.jobs == 0 else args.jobs or 1, len(pairs))
    outputs = prepare_out_dir(args.out_dir, pairs, args.pairs) if args.out_dir is not None else {}
    reports = {index: str(output.given) for index, output in outputs.items() if index}
    tasks = [(pair_argv(args, pair, reports.get(pair.index)), reports.get(pair.index), args.debug) for pair in pairs]
    rows: dict[int, dict[str, Any]] = {}
    started = time.perf_counter()

    with progress.shown(enabled=not args.quiet):
        with progress.step(
            f"Diffing {len(pairs)} pairs in {jobs} process{'es' if jobs > 1 else ''}", len(pairs)
        ) as step:

            def done(position: int, row: dict[str, Any]) -> None:
                rows[pairs[position].index] = row
                step.advance()

            run_in_workers(run_pair, tasks, jobs, done, _crash_row, timeout=args.timeout)

    document = summary_document(args, pairs, rows, reports, jobs, time.perf_counter() - started)
    if 0 in outputs:
        buffer = io.StringIO()
        plugins.reporter("json", SCHEMA).render(document, buffer, {"to_file": True})
        outputs[0].write_text(buffer.getvalue())
    options = {"color": False if args.no_color else None, "quiet": args.quiet}
    emit(document, fmt, output, plugins, options, verdict=(total_line(document), STYLES[verdict_of(document)]))
    return document["exit_status"]


def default_jobs() -> int:
    """``--jobs auto``: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def timeout_option(text: str) -> float:
    """An argparse ``type`` for ``--timeout``: a positive number of seconds."""
    import argparse
    import math

    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return seconds


def jobs_option(text: str) -> int:
    """An argparse ``type`` for ``--jobs``: a positive number, or ``auto`` (0)."""
    import argparse

    if text == "auto":
        return 0
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number or 'auto', not {text!r}")
    return int(text)


def _crash_row(seconds: float, problem: str) -> dict[str, Any]:
    """The row of a pair whose worker died (``problem``: the one line, without prefix)."""
    return {
        "exit_status": EXIT_TROUBLE,
        "seconds": seconds,
        "verdict": TROUBLE,
        "layers": None,
        "coverage": None,
        "error": problem,
    }


def summary_document(args, pairs, rows, reports, jobs: int, seconds: float) -> dict[str, Any]:
    """The ``graphinspect/batch@1`` document (see the module docstring)."""
    from inspector.output import document_header

    entries = []
    for pair in pairs:
        row = rows[pair.index]
        wrote = row["verdict"] != TROUBLE and pair.index in reports
        entries.append(
            {
                "index": pair.index,
                "line": pair.line,
                "source": pair.source,
                "target": pair.target,
                **{key: row[key] for key in ("verdict", "exit_status", "layers", "coverage", "seconds")},
                "report": os.path.basename(reports[pair.index]) if wrote else None,
                "error": row["error"],
            }
        )
    verdicts = [entry["verdict"] for entry in entries]
    totals = {"pairs": len(entries)}
    totals.update({word: verdicts.count(word) for word in ("faithful", "differs", "incomplete", TROUBLE)})
    if totals[TROUBLE]:
        status = EXIT_TROUBLE
    elif totals["differs"] or totals["incomplete"]:
        status = EXIT_DIFFERS
    else:
        status = EXIT_OK
    return {
        **document_header(SCHEMA),
        "manifest": args.pairs,
        "out_dir": args.out_dir,
        "jobs": jobs,
        "timeout": args.timeout,
        "seconds": seconds,
        "tolerance": {"rtol": args.rtol, "atol": args.atol},
        "totals": totals,
        "exit_status": status,
        "pairs": entries,
    }

"""``graphinspect diff MODEL.pt MODEL.onnx``: explain every parameter of the export.

Loads both files, matches every parameter-carrying ONNX layer to the PyTorch layers it
came from, re-computes it with the transform plugins, and reports the result through a
reporter plugin (``--format``; by default a rich table). Exit status like diff(1):
0 faithful, 1 differs or incomplete, 2 trouble.

``--only-problems`` and ``--layer GLOB`` narrow the listed layers in every format; the
summary and verdict always cover the whole model. The table lists the layers that are
fine up to a screenful (``--all``: every one); ``--quiet`` prints the verdict line only.
With ``-o FILE`` the report goes to the file and the verdict line to stderr. Loading and
matching show progress on stderr when they take more than a moment (a terminal only).

``--pairs MANIFEST`` (instead of SOURCE TARGET) audits many pairs, in ``--jobs N``
worker processes, each pair exactly as this command would, with one JSON report per pair
in ``--out-dir DIR`` and a summary table; a bad pair (or, with ``--timeout SECONDS``, a
pair that runs too long) does not stop the others. The
contract is in :mod:`plugins.commands._batch`, the table in :mod:`._batch_table`.
"""

from __future__ import annotations

import fnmatch
import os

from inspector import progress
from inspector.cli import EXIT_DIFFERS, EXIT_OK, non_negative
from inspector.errors import UsageError
from inspector.hookspecs import hookimpl
from inspector.isolation import keep_until_exit
from inspector.output import choose_format, emit, prepare_output
from inspector.records import Reporter, Subcommand
from plugins.commands import _batch_table
from plugins.commands._batch import jobs_option, run_batch, timeout_option
from plugins.reports._wording import verdict_and_style

EXIT_BY_VERDICT = {"faithful": EXIT_OK, "differs": EXIT_DIFFERS, "incomplete": EXIT_DIFFERS}


def configure_parser(parser) -> None:
    parser.add_argument(
        "source",
        nargs="?",
        help="the PyTorch model (.pt/.pth checkpoint, state_dict, TorchScript, .pt2, safetensors)",
    )
    parser.add_argument("target", nargs="?", help="its export (.onnx)")
    parser.add_argument(
        "--format",
        help="table (default), json, markdown, html, junit, sarif, github, model-explorer, "
        "or a reporter plugin's format",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE (format from its suffix unless --format)"
    )
    parser.add_argument(
        "--rtol",
        type=non_negative,
        help="relative tolerance (default per dtype: 1e-4 for fp32, 2e-3 if fp16 is involved, 1.6e-2 for bf16); "
        "--atol keeps its default unless given",
    )
    parser.add_argument(
        "--atol", type=non_negative, help="absolute tolerance (default per dtype: 1e-6 for fp32, 1e-5 fp16, 1e-4 bf16)"
    )
    parser.add_argument("--only-problems", action="store_true", help="list only layers that differ or are unmatched")
    parser.add_argument(
        "--layer", metavar="GLOB", action="append", help="list only layers whose ONNX or PyTorch name matches GLOB"
    )
    parser.add_argument(
        "--all", action="store_true", help="table: list every layer that is fine (by default: up to a screenful)"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print the verdict line only (the exit status says the same); with -o the file still gets the report",
    )
    batch = parser.add_argument_group("batch audits (instead of SOURCE TARGET)")
    batch.add_argument(
        "--pairs",
        metavar="MANIFEST",
        help="diff every pair MANIFEST lists, one 'SOURCE TARGET' a line (paths relative to its folder; - for stdin); "
        "prints a summary table",
    )
    batch.add_argument(
        "--jobs",
        metavar="N",
        type=jobs_option,
        help="with --pairs: pairs run in N worker processes (default 1; auto: one per CPU)",
    )
    batch.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=timeout_option,
        help="with --pairs: stop a pair still running after SECONDS (a trouble row; the others go on)",
    )
    batch.add_argument(
        "--out-dir",
        metavar="DIR",
        help="with --pairs: write each pair's JSON report (NNN-<name>.json) and summary.json into DIR",
    )


def run(args, plugins) -> int:
    if args.pairs is not None:
        return run_batch(args, plugins)
    if args.source is None or args.target is None:
        raise UsageError("diff needs SOURCE and TARGET (or --pairs MANIFEST)")
    for option, value in (("--out-dir", args.out_dir), ("--jobs", args.jobs), ("--timeout", args.timeout)):
        if value is not None:
            raise UsageError(f"{option} goes with --pairs MANIFEST, not with SOURCE TARGET")
    from inspector.diff import diff_models  # numpy and the matching machinery: not for --help
    from inspector.report import SCHEMA, build_document

    output = prepare_output(args.output, inputs=[args.source, args.target])
    fmt = choose_format(args.format, output, plugins, SCHEMA, default="table")
    to_stdout = output is None or output.is_stdout
    if args.quiet and to_stdout and fmt != "table":
        raise UsageError(f"--quiet prints the verdict line only, not a {fmt} report; add -o FILE to write one")
    with progress.shown(enabled=not args.quiet):
        with progress.step(f"Loading {os.path.basename(args.source)} and {os.path.basename(args.target)}"):
            source, target = plugins.load_pair(args.source, args.target)
        if output is not None:
            output.protect([*source.files, *target.files])
        result = diff_models(plugins, source, target, rtol=args.rtol, atol=args.atol)
    document = build_document(result, rtol=args.rtol, atol=args.atol)
    document["layers"] = select_layers(document["layers"], args.only_problems, args.layer)
    options = {"color": False if args.no_color else None, "all": args.all, "quiet": args.quiet}
    verdict = verdict_and_style(document)
    emit(document, fmt, output, plugins, options, verdict=verdict)
    keep_until_exit(source, target, result, document)
    return EXIT_BY_VERDICT[result.verdict]


def select_layers(layers: list[dict], only_problems: bool, globs: list[str] | None) -> list[dict]:
    """The document's layers narrowed by ``--only-problems`` and ``--layer``."""
    from inspector.results import OK

    selected = [layer for layer in layers if not only_problems or layer["status"] != OK]
    if globs:
        selected = [
            layer
            for layer in selected
            if any(fnmatch.fnmatchcase(name, glob) for glob in globs for name in [layer["target"], *layer["sources"]])
        ]
    return selected


@hookimpl
def graphinspect_subcommands():
    yield Subcommand(
        "diff",
        "Match every ONNX layer to its PyTorch origin, re-compute each transform, and report what differs.",
        configure_parser,
        run,
    )


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "table", "The batch summary as a table.", (_batch_table.SCHEMA,), _batch_table.render, suffixes=(".txt",)
    )

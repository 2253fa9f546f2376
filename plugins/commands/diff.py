"""``graphinspect diff MODEL.pt MODEL.onnx``: explain every parameter of the export.

Loads both files, matches every parameter-carrying ONNX layer to the PyTorch layers it
came from, re-computes it with the transform plugins, and reports the result through a
reporter plugin (``--format``; by default a rich table). Exit status like diff(1):
0 faithful, 1 differs or incomplete, 2 trouble.

``--only-problems`` and ``--layer GLOB`` narrow the listed layers in every format; the
summary and verdict always cover the whole model.
"""

from __future__ import annotations

import fnmatch

from inspector.cli import EXIT_DIFFERS, EXIT_OK, non_negative
from inspector.diff import diff_models
from inspector.hookspecs import hookimpl
from inspector.output import choose_format, emit, prepare_output
from inspector.records import Subcommand
from inspector.report import SCHEMA, build_document
from inspector.results import OK

EXIT_BY_VERDICT = {"faithful": EXIT_OK, "differs": EXIT_DIFFERS, "incomplete": EXIT_DIFFERS}


def configure_parser(parser) -> None:
    parser.add_argument(
        "source", help="the PyTorch model (.pt/.pth checkpoint, state_dict, TorchScript, .pt2, safetensors)"
    )
    parser.add_argument("target", help="its export (.onnx)")
    parser.add_argument("--format", help="table (default), json, markdown, html, or a reporter plugin's format")
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


def run(args, plugins) -> int:
    output = prepare_output(args.output, inputs=[args.source, args.target])
    fmt = choose_format(args.format, output, plugins, SCHEMA, default="table")
    source, target = plugins.load_pair(args.source, args.target)
    if output is not None:
        output.protect([*source.files, *target.files])
    result = diff_models(plugins, source, target, rtol=args.rtol, atol=args.atol)
    document = build_document(result, rtol=args.rtol, atol=args.atol)
    document["layers"] = select_layers(document["layers"], args.only_problems, args.layer)
    emit(document, fmt, output, plugins, {"color": False if args.no_color else None})
    return EXIT_BY_VERDICT[result.verdict]


def select_layers(layers: list[dict], only_problems: bool, globs: list[str] | None) -> list[dict]:
    """The document's layers narrowed by ``--only-problems`` and ``--layer``."""
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

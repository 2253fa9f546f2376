"""``graphinspect verify MODEL.pt MODEL.onnx``: run both models and compare what they predict.

Both models get the same input (random with a fixed seed, ``--input FILE.npy|.npz`` or
``--image FILE`` through the canonical preprocessing, :mod:`.inputs`), checked against
the ONNX input contract (:mod:`.lint`: shape and dtype are errors, suspicious value
ranges are warnings). The PyTorch model runs on CPU in eval mode and float32
(:mod:`.runners`: TorchScript and .pt2 as they are; a state_dict with ``--model
FACTORY``; a pickled module with ``--model`` or, executing code from the file,
``--trust-pickle``), the ONNX model in ONNX Runtime on CPU. Each ONNX output is compared
with the PyTorch output paired with it (:mod:`.metrics`); with ``--per-layer`` every
layer the diff matched is compared too, in execution order, and the first divergent
one named (:mod:`.per_layer`). An output that cannot be paired with a PyTorch output
(an export with NMS built in) makes the verdict "incomplete": nothing was compared.

Exit status: 0 same, 1 differs or incomplete, 2 trouble (bad input or usage).

The document (``"schema": "graphinspect/verify@2"``; version 2: the verdict and
status word "differ" became "differs", as in every other document; fields are only ever added within
a major version)::

    {
      "schema": "graphinspect/verify@2",
      "tool": {"name": "graphinspect", "version": "..."},
      "source": {"path", "format", "runner"},      # runner: how the PyTorch model was run
      "target": {"path", "format"},
      "inputs": [{"name", "shape", "dtype", "origin": "random" | "image" | "file",
                  "path": str | null, "min", "max"}],
      "lint": [{"severity": "error" | "warning" | "info", "code", "message"}],
      "tolerance": {"atol", "rtol", "check_error_stat": "max" | "mean" | "median",
                    "layer_rtol"},
      "outputs": [{"name", "shape", "source_index": int | null, "source_shape",
                   "max_abs_err", "max_rel_err", "mean_abs_err", "median_abs_err",
                   "cosine", "top1_agreement": float | null,
                   "topk_agreement": float | null, "topk": int | null,
                   "sorted_rows": bool,               # the same rows in another order
                   "unpaired_rows": int | null,       # rows without an equal partner
                   "status": "same" | "differs" | "incomplete",
                   "reason": str | null}],            # why an output could not be compared
      "verdict": "same" | "differs" | "incomplete",
      "verdict_reason": str | null,
      "layers": [                                   # only with --per-layer
        {"target": "<ONNX node>", "op", "tensor": "<ONNX tensor compared>",
         "module": "<PyTorch module>" | "<a> + <b>" | null, "sources": [...],
         "transform", "diff_status": "ok" | "mismatch" | "unmatched",
         "status": "same" | "differs" | "not_comparable", "reason": str | null,
         "shape", "max_abs_err", "max_rel_err", "mean_abs_err", "cosine",
         "worst_channel": int | null, "growth": float | null,
         "input_error": float | null, "inputs": ["<ONNX node>", ...],
         "suspects": ["<ONNX node>", ...], "reordered_by": ["TopK <node>", ...],
         "rows_reordered": bool, "unpaired_rows": int | null}
      ],
      "first_divergent": "<ONNX node>" | null,
      "divergence_reason": str | null              # outputs differ, no layer named: why
    }

``max_rel_err`` of an output is ``max|onnx - torch| / max|torch|`` (relative to the
tensor's scale); of a layer, the largest of its output channels' errors, each relative to
its channel's scale (:mod:`.per_layer`). ``growth`` is a layer's ``max_rel_err`` over
``input_error``, the largest error of the compared layers it reads from.
Non-finite numbers are written as null.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from inspector import progress
from inspector.cli import EXIT_DIFFERS, EXIT_OK, non_negative, positive
from inspector.errors import UsageError
from inspector.hookspecs import hookimpl
from inspector.output import choose_format, emit, prepare_output
from inspector.records import Reporter, Subcommand
from plugins.commands.verify.report import SCHEMA, render_table, verdict_and_style
from plugins.commands.verify.words import ERROR_STATS, TRUST_PICKLE_HELP

EXIT_BY_VERDICT = {"same": EXIT_OK, "differs": EXIT_DIFFERS, "incomplete": EXIT_DIFFERS}
DEFAULT_CHUNK_MB = 1024


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", help="the PyTorch model: TorchScript, .pt2, a state_dict (with --model) or a pickled module"
    )
    parser.add_argument("target", help="its export (.onnx)")
    given = parser.add_argument_group("input (default: random values in [0, 1) of the ONNX input shape, --seed 0)")
    exclusive = given.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--image",
        metavar="FILE",
        help="an image, preprocessed the canonical way: RGB, resize, /255, CHW, batch (needs graphinspect[images])",
    )
    exclusive.add_argument(
        "--input",
        metavar="FILE",
        help="your own tensors: a .npy for a one-input model, or a .npz with one array per input name",
    )
    given.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    given.add_argument(
        "--imgsz",
        metavar="H[,W]",
        help="the input size where the ONNX shape is symbolic (default: the models' imgsz metadata)",
    )
    given.add_argument(
        "--resize",
        choices=("stretch", "letterbox"),
        default="stretch",
        help="how --image is fitted to the input size (letterbox pads with 114 like Ultralytics)",
    )
    given.add_argument(
        "--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="subtract per channel after /255 (--image)"
    )
    given.add_argument(
        "--std", type=float, nargs=3, metavar=("R", "G", "B"), help="divide per channel after --mean (--image)"
    )
    running = parser.add_argument_group("running PyTorch (this runs code)")
    running.add_argument(
        "--model",
        metavar="FACTORY",
        help="build the architecture with package.module:factory or path/to/file.py:factory "
        "and load the file's weights into it (weights-only)",
    )
    running.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)
    checking = parser.add_argument_group(
        "tolerance (defaults by the ONNX model's precision: fp32 atol 1e-4, rtol 1e-3, layer-rtol 1e-3; fp16 "
        "1e-3, 1e-2, 1e-2)"
    )
    checking.add_argument("--atol", type=non_negative, help="absolute tolerance of the outputs")
    checking.add_argument(
        "--rtol", type=non_negative, help="relative tolerance of the outputs: |onnx - torch| <= atol + rtol * |torch|"
    )
    checking.add_argument(
        "--check-error-stat",
        choices=ERROR_STATS,
        default="max",
        help="apply the tolerance to every element (max, default), or to the mean or median error",
    )
    layers = parser.add_argument_group("per layer")
    layers.add_argument(
        "--per-layer",
        action="store_true",
        help="compare every matched layer's activation and name the first that diverges",
    )
    layers.add_argument(
        "--layer",
        metavar="GLOB",
        action="append",
        help="only layers whose ONNX node or PyTorch module matches GLOB (repeatable; implies --per-layer)",
    )
    layers.add_argument("--layers", dest="layer", action="append", help=argparse.SUPPRESS)  # the 0.1 spelling
    layers.add_argument(
        "--layer-rtol", type=non_negative, help="a layer diverges when max|onnx - torch| > layer-rtol x max|torch|"
    )
    layers.add_argument(
        "--chunk-mb",
        type=positive,
        default=DEFAULT_CHUNK_MB,
        help=f"ONNX intermediate tensors fetched per run, in MiB (default {DEFAULT_CHUNK_MB})",
    )
    parser.add_argument("--format", help="table (default) or json, or a reporter plugin's format")
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE (format from its suffix unless --format)"
    )


def run(args: argparse.Namespace, plugins: Any) -> int:
    factory_file = args.model.rpartition(":")[0] if args.model and ".py:" in args.model else None
    output = prepare_output(args.output, inputs=[args.source, args.target, args.image, args.input, factory_file])
    fmt = choose_format(args.format, output, plugins, SCHEMA, default="table")
    with progress.shown():
        document = _verify(args, plugins, output)
    options = {"color": False if args.no_color else None}
    emit(document, fmt, output, plugins, options, verdict=verdict_and_style(document))
    return EXIT_BY_VERDICT[document["verdict"]]


def _verify(args: argparse.Namespace, plugins: Any, output: Any) -> dict[str, Any]:
    """Load, run, compare: the verify document (progress on stderr meanwhile, a terminal only)."""
    from plugins.commands.verify import inputs as input_sources
    from plugins.commands.verify.lint import Lint, check_contract, value_lints
    from plugins.commands.verify.report import build_document
    from plugins.commands.verify.runners import build_torch_runner, onnx_session, run_session

    with progress.step(f"Loading {os.path.basename(args.source)} and {os.path.basename(args.target)}"):
        source, target = plugins.load_pair(args.source, args.target)
    if output is not None:
        output.protect([*source.files, *target.files])
    if target.format != "onnx":
        raise UsageError(f"verify compares a PyTorch model with an ONNX model; {args.target} is {target.format}")
    if source.format == "onnx":
        raise UsageError(
            f"verify compares a PyTorch model with an ONNX model; both {args.source} and {args.target} are ONNX"
        )
    runner = build_torch_runner(source, args.model, args.trust_pickle)

    imgsz = input_sources.parse_imgsz(args.imgsz)
    if args.imgsz and imgsz is None:
        raise UsageError(f"--imgsz wants H or H,W (positive integers), not {args.imgsz!r}")
    if (args.mean or args.std or args.resize != "stretch") and not args.image:
        raise UsageError("--mean, --std and --resize apply to --image")
    if args.image:
        tensors = input_sources.image_inputs(args.image, target, source, imgsz, args.resize, args.mean, args.std)
    elif args.input:
        tensors = input_sources.file_inputs(args.input, target)
    else:
        tensors = input_sources.random_inputs(target, args.seed, imgsz or input_sources.model_imgsz(target, source))
    check_contract(tensors, target)
    tolerances = resolve_tolerances(args, target)
    arrays = [tensor.array for tensor in tensors]
    feeds = {tensor.name: tensor.array for tensor in tensors}

    lints = [Lint("info", "runner", note) for note in runner.notes]
    cached_diff: list[Any] = []

    def diff():
        if not cached_diff:
            from inspector.diff import diff_models

            cached_diff.append(diff_models(plugins, source, target))
        return cached_diff[0]

    layers = None
    first_divergent = None
    per_layer_note = None  # why per-layer compared nothing, said once
    onnx_outputs = torch_outputs = None
    if args.per_layer or args.layer:
        from plugins.commands.verify.per_layer import compare_layers, plan_layers

        if not runner.hookable:
            per_layer_note = (
                f"{source.path} runs as {runner.runner}, whose submodules cannot be hooked: no layer is compared "
                "(per-layer needs the model as Python modules: --model FACTORY with its weights, or a .pt2)"
            )
            lints.append(Lint("warning", "per_layer_unavailable", per_layer_note))
        layers = plan_layers(diff(), runner, args.layer) if runner.hookable else []
        # The per-layer runs return the outputs too: each framework runs once.
        layer_run = compare_layers(
            layers, runner, target, arrays, feeds, tolerances.layer_rtol, int(args.chunk_mb * 2**20)
        )
        first_divergent, onnx_outputs, torch_outputs = (
            layer_run.first_divergent,
            layer_run.onnx_outputs,
            layer_run.torch_outputs,
        )
    if onnx_outputs is None:
        with progress.step("Running the ONNX model in ONNX Runtime"):
            onnx_outputs = run_session(onnx_session(target.path, target.path), feeds, target.path)
    if torch_outputs is None:
        with progress.step("Running the PyTorch model"):
            torch_outputs = runner.run(arrays)

    if any(tensor.origin != "random" for tensor in tensors):
        lints += value_lints(tensors, _onnx_proto(target.path), target, source, diff)
    outputs, output_lints = compare_outputs(target, onnx_outputs, torch_outputs, tolerances)
    lints += output_lints

    divergence_reason = None
    if layers is not None and first_divergent is None and any(output.status != "same" for output in outputs):
        from plugins.commands.verify.per_layer import why_none_diverges

        divergence_reason = per_layer_note or why_none_diverges(layers)

    return build_document(
        source, runner.runner, target, tensors, lints, tolerances, outputs, layers, first_divergent, divergence_reason
    )


def resolve_tolerances(args: argparse.Namespace, target: Any):
    """The tolerances: the options where given, else the defaults of the ONNX model's
    least precise float dtype (:data:`plugins.commands.verify.metrics.DEFAULT_TOLERANCES`)."""
    from plugins.commands.verify.metrics import Tolerances, default_tolerances

    dtypes = set(target.dtypes()) | {info.dtype for info in [*target.inputs, *target.outputs]}
    atol, rtol, layer_rtol = default_tolerances(dtypes)
    return Tolerances(
        atol=args.atol if args.atol is not None else atol,
        rtol=args.rtol if args.rtol is not None else rtol,
        check_error_stat=args.check_error_stat,
        layer_rtol=args.layer_rtol if args.layer_rtol is not None else layer_rtol,
    )


def compare_outputs(target: Any, onnx_outputs: list, torch_outputs: list, tolerances: Any) -> tuple[list, list]:
    """One comparison per ONNX output (paired by :func:`~plugins.commands.verify.metrics.pair_outputs`)
    and the lint the pairing calls for. An output that cannot be paired (no PyTorch output
    of its size) is "incomplete", with the reason: nothing was compared."""
    from plugins.commands.verify.lint import Lint
    from plugins.commands.verify.metrics import INCOMPLETE, OutputComparison, compare_output, pair_outputs

    lints = []
    names = [info.name for info in target.outputs]
    torch_shapes = [list(array.shape) for array in torch_outputs]
    pairs, note = pair_outputs([array.shape for array in onnx_outputs], [array.shape for array in torch_outputs])
    if note:
        lints.append(Lint("info" if all(index is not None for index in pairs) else "warning", "output_pairing", note))
    comparisons = []
    for name, actual, index in zip(names, onnx_outputs, pairs):
        expected = torch_outputs[index] if index is not None else None
        if expected is None or expected.size != actual.size:
            comparison = OutputComparison(
                name, list(actual.shape), index, None if expected is None else torch_shapes[index]
            )
            comparison.status = INCOMPLETE
            returned = ", ".join("x".join(str(d) for d in shape) or "scalar" for shape in torch_shapes) or "nothing"
            comparison.reason = (
                f"no PyTorch output of its size to compare it with (the PyTorch model returns {returned}): the "
                "export computes another output (post-processing such as NMS built in?)"
                if expected is None
                else f"it has shape {list(actual.shape)}, the PyTorch output paired with it "
                f"{torch_shapes[index]}: they cannot be compared"
            )
            comparisons.append(comparison)
            continue
        if expected.shape != actual.shape:
            lints.append(
                Lint(
                    "info",
                    "reshaped",
                    f"ONNX output {name!r} {list(actual.shape)} compared with PyTorch output {index} "
                    f"{list(expected.shape)} reshaped",
                )
            )
        comparison = compare_output(name, actual, expected, tolerances)
        comparison.source_index = index
        if comparison.sorted_rows:
            lints.append(
                Lint(
                    "info",
                    "sorted_rows",
                    f"ONNX output {name!r}: the same rows as PyTorch's in another order (ties, as TopK over "
                    "equal scores gives); each row was compared with its equal partner",
                )
            )
        comparisons.append(comparison)
    return comparisons, lints


def _onnx_proto(path: str) -> Any:
    import onnx

    try:
        return onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - the loader already read it; the lint is best effort
        return None


@hookimpl
def graphinspect_subcommands():
    yield Subcommand(
        "verify",
        "Run the PyTorch model and its ONNX export on the same input, compare the outputs (and layers), check "
        "the input.",
        configure_parser,
        run,
    )


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "table", "A rich summary with the outputs and layers tables.", (SCHEMA,), render_table, suffixes=(".txt",)
    )

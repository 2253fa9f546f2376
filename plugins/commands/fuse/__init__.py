"""``graphinspect fuse MODEL.pt``: the fused weights of a model, re-computed in float64.

Frameworks fuse a model before deploying it (Ultralytics ``model.fuse()``, timm
``reparameterize_model``) and exporters fold each BatchNorm into the conv before it,
which is why "the same" conv holds [-0.306, 0.345] in the .pt and [-2.926, 3.297] in
the .onnx. ``fuse`` does what the model's own framework does, no more and no less
(:mod:`plugins.commands.fuse.policy`: which groups, under which names; what is left
unfused and why), out of place, in float64, with the transform plugins that ``diff``
uses, and shows each fused layer's range before and after, and how much fusion scaled it::

    w' = w * s,   b' = (b - mean) * s + beta,   s = gamma / sqrt(var + eps)   (per channel)

The model is read safely (no code from the file runs). Options:

- ``--layer GLOB``: list only groups whose fused name or a source module matches;
- ``--weights FILE`` (.pt/.pth/.safetensors): write the fused state_dict, the tensors a
  ``state_dict()`` of the framework's fused model holds, named as it names them (it loads
  with ``load_state_dict(strict=True)``; :mod:`plugins.commands.fuse.weights`); always
  the whole model, whatever ``--layer`` lists;
- ``--fold-all``: also fold the Conv/Linear + BatchNorm pairs the framework keeps (an
  exporter folds them next);
- ``--against MODEL.onnx``: look each listed group up in a diff against the export
  (:mod:`plugins.commands.fuse.against`); where the file does not record BatchNorm eps (a bare
  state_dict) and the export fits another value than the guess, fuse uses that value;
- ``--format``/``-o FILE``: how and where the report goes (stdout by default), as
  in every command.

Exit status: 0 done (with ``--against``: every listed group found in the export and
re-computed within tolerance), 1 some group not found or different, 2 bad input or
usage (one line; nothing written).

The document (``"schema": "graphinspect/fuse@1"``; a contract: fields are only ever
added, never renamed or removed, within a major version)::

    {
      "schema": "graphinspect/fuse@1",
      "tool": {"name": "graphinspect", "version": "0.1.0"},
      "source": {"path", "format"},
      "framework": "ultralytics" | "timm" | "torch" | "state_dict",  # whose fusion is reproduced
      "fusion": "Ultralytics model.fuse()" | ...,                    # the same, in words
      "groups": [                               # the listed groups, in source order
        {"transform": "fold_batchnorm" | "merge_branches" | ...,
         "sources": ["model.0.conv", "model.0.bn"],      # PyTorch module paths
         "fused_name": "model.0.conv",          # the fused layer's path in the export
         "note": "eps 0.001 from the module",
         "params": [{"name": "weight" | "bias",  # the tensor is <fused_name>.<name>
                     "source_tensor": "<state_dict key>" | null,  # the conv's own tensor
                     "before_range": [lo, hi] | null,             # null: the conv has no bias
                     "after_range": [lo, hi],
                     "abs_max_ratio": float | null}]}             # max|after| / max|before|
      ],
      "unfused": [{"sources": [...], "reason": str}],   # groups left as they are, and why
      "dropped": [{"module", "tensors": n, "reason"}],   # modules the fusion removes (not written)
      "written": {"path", "format": "pytorch-state-dict" | "safetensors", "tensors": n} | null,
      "against": null | {
        "path", "verdict": "faithful" | "differs" | "incomplete",  # of the whole diff
        "checked": n, "mismatched": n, "not_found": n, "not_exported": n,
        "layers": [{"fused_name", "target": "<ONNX node>" | null,
                    "status": "ok" | "mismatch" | "not_found" | "not_exported",
                    "max_rel_err": float | null, "note": ""}]}
    }

Ranges are (min, max) over finite values. A merged block's "before" is its widest
branch conv (the kxk one).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from inspector import progress
from inspector.diff import diff_models
from inspector.errors import InputError, UsageError
from inspector.hookspecs import hookimpl
from inspector.ir import Model
from inspector.output import choose_format, document_header, emit, prepare_output
from inspector.output_file import OutputFile
from inspector.records import Reporter, Subcommand
from inspector.transforms import SourceIndex
from plugins.commands.fuse.against import adopt_export_eps, against_entry, all_ok
from plugins.commands.fuse.groups import FusedGroup, abs_max_ratio, fuse_group, value_range
from plugins.commands.fuse.policy import Plan, plan
from plugins.commands.fuse.table import render_table
from plugins.commands.fuse.weights import WEIGHT_FORMATS, fused_state_dict, weight_format, write_weights

SCHEMA = "graphinspect/fuse@1"


def configure_parser(parser) -> None:
    parser.add_argument(
        "model", help="the PyTorch model (.pt/.pth checkpoint or pickled module, state_dict, safetensors)"
    )
    parser.add_argument(
        "--layer",
        metavar="GLOB",
        action="append",
        help="list only groups whose fused name or a source module matches GLOB (repeatable)",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        help="write the fused state_dict to FILE: .pt/.pth (torch.save, loadable with "
        "torch.load(weights_only=True)) or .safetensors. Names are the exporter's; fused "
        "weights and biases are float32, as exporters fold in fp32; other tensors keep their "
        "stored dtype. Always the whole model, whatever --layer lists",
    )
    parser.add_argument(
        "--fold-all",
        action="store_true",
        help="also fold the Conv/Linear + BatchNorm pairs the model's framework keeps when it fuses "
        "(what an ONNX exporter folds next), e.g. those outside timm's re-parameterisable blocks",
    )
    parser.add_argument(
        "--against",
        metavar="MODEL.onnx",
        help="check the fused groups against this export (exit 1 if one is not found or differs)",
    )
    parser.add_argument("--format", help="report format: table (default), json, or a reporter plugin's format")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the report to FILE instead of stdout (format from its suffix unless --format)",
    )
    parser.add_argument("--report", dest="output", help=argparse.SUPPRESS)  # the 0.1 spelling of -o


def run(args, plugins) -> int:
    weights, report = _prepare_outputs(args)
    fmt = choose_format(args.format, report, plugins, SCHEMA, default="table")
    with progress.shown():
        document, ok = _fuse(args, plugins, weights, report)
    emit(document, fmt, report, plugins, {"color": False if args.no_color else None})
    return 0 if ok else 1


def _fuse(args, plugins, weights: OutputFile | None, report: OutputFile | None) -> tuple[dict[str, Any], bool]:
    """Load, plan, fuse, write the weights, check against the export: (the document, all ok)."""
    with progress.step(f"Loading {os.path.basename(args.model)}"):
        model = plugins.load_model(args.model)
    for output in (weights, report):
        if output is not None:
            output.protect(model.files)
    if model.format == "onnx":
        raise InputError(args.model, "is an ONNX model; fuse reads the PyTorch model (give the export with --against)")
    index = SourceIndex(model)
    transforms = plugins.transforms()

    result = None
    if args.against:
        with progress.step(f"Loading {os.path.basename(args.against)}"):
            target = plugins.load_model(args.against)
        if target.format != "onnx":
            raise InputError(args.against, f"is not an ONNX model ({target.format}); --against takes the export")
        for output in (weights, report):
            if output is not None:
                output.protect(target.files)
        result = diff_models(plugins, model, target)
    planned = plan(index, transforms, fold_all=args.fold_all, diff=result)
    groups = [fuse_group(p.transform, p.candidate, name=p.fused_name, note=p.note) for p in planned.groups]
    if result is not None:
        groups = adopt_export_eps(groups, result, result.target, index, transforms)
    listed = [group for group in groups if group.matches(args.layer)] if args.layer else groups
    if args.layer and not listed:
        print(f"graphinspect: note: --layer matches none of the {len(groups)} fused groups", file=sys.stderr)
    against = against_entry(result, listed) if result is not None else None

    written = None
    if weights is not None:
        state = fused_state_dict(model, groups, [name for drop in planned.dropped for name in drop.tensors])
        written = {"path": args.weights, "format": write_weights(weights, state), "tensors": len(state)}

    document = build_document(model, listed, written, against, planned)
    return document, against is None or all_ok(against)


def build_document(
    model: Model,
    groups: list[FusedGroup],
    written: dict | None,
    against: dict | None,
    planned: Plan | None = None,
) -> dict[str, Any]:
    """The fuse document (see the module docstring for the contract)."""
    document = document_header(SCHEMA)
    document["source"] = {"path": model.path, "format": model.format}
    document["framework"] = planned.framework if planned is not None else None
    document["fusion"] = planned.fusion if planned is not None else None
    document["groups"] = [_group_entry(group) for group in groups]
    document["unfused"] = [entry.entry() for entry in planned.unfused] if planned is not None else []
    document["dropped"] = [entry.entry() for entry in planned.dropped] if planned is not None else []
    document["written"] = written
    document["against"] = against
    return document


def _group_entry(group: FusedGroup) -> dict[str, Any]:
    params = []
    for role, values in group.params.items():
        before = group.before(role)
        before_range = _finite_range(before.stats().range) if before is not None else None
        after_range = value_range(values)
        params.append(
            {
                "name": role,
                "source_tensor": before.tensor_name if before is not None else None,
                "before_range": _pair(before_range),
                "after_range": _pair(after_range),
                "abs_max_ratio": abs_max_ratio(before_range, after_range),
            }
        )
    return {
        "transform": group.transform,
        "sources": list(group.sources),
        "fused_name": group.fused_name,
        "note": group.note,
        "params": params,
    }


def _finite_range(pair: tuple[float, float]) -> tuple[float, float] | None:
    """A stats range, or None when the tensor holds no finite value (stats give NaN)."""
    return None if any(value != value for value in pair) else pair


def _pair(value: tuple[float, float] | None) -> list[float] | None:
    return None if value is None else [float(value[0]), float(value[1])]


def _prepare_outputs(args) -> tuple[OutputFile | None, OutputFile | None]:
    """The weights file (``--weights``) and the report (``-o``), checked before any work:
    usable paths, not an input, not each other."""
    inputs = [args.model, args.against]
    weights = prepare_output(args.weights, inputs=inputs, option="--weights")
    if weights is not None:
        weight_format(weights)
    report = prepare_output(args.output, inputs=inputs, option="-o")
    if report is not None and report.suffix in WEIGHT_FORMATS:
        # In graphinspect 0.1, -o was the weights file; a report in fused.pt helps no one.
        raise UsageError(f"-o {args.output}: -o is the report; write the fused weights with --weights {args.output}")
    if weights is not None and weights.is_stdout:
        raise UsageError("--weights -: the weights are binary; give them a file")
    if weights is not None and report is not None and weights.same_destination(report):
        raise UsageError(f"--weights and -o name the same file: {args.weights}")
    return weights, report


@hookimpl
def graphinspect_subcommands():
    yield Subcommand(
        "fuse",
        "Re-compute the fused weights an exporter makes (Conv+BN folding, RepConv merging): "
        "ranges before and after, the fused state_dict (--weights), checked against an export (--against).",
        configure_parser,
        run,
    )


@hookimpl
def graphinspect_reporters():
    yield Reporter("table", "A rich table of the fused groups.", (SCHEMA,), render_table, suffixes=(".txt",))

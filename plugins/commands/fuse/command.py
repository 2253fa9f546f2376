"""What ``graphinspect fuse`` does once its arguments are parsed (the contract is in
:mod:`plugins.commands.fuse`, which imports this module only to run the command:
``graphinspect --help`` needs neither numpy nor the loaders)."""

from __future__ import annotations

import os
import sys
from typing import Any

from inspector import progress
from inspector.diff import diff_models
from inspector.errors import InputError, UsageError
from inspector.ir import Model
from inspector.output import choose_format, document_header, emit, prepare_output
from inspector.output_file import OutputFile
from inspector.transforms import SourceIndex
from plugins.commands.fuse import SCHEMA
from plugins.commands.fuse.against import adopt_export_eps, against_entry, all_ok
from plugins.commands.fuse.groups import FusedGroup, abs_max_ratio, fuse_group, value_range
from plugins.commands.fuse.policy import Plan, plan
from plugins.commands.fuse.weights import WEIGHT_FORMATS, fused_state_dict, weight_format, write_weights


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

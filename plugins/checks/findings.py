"""The built-in diff checks: what a careful reader of the table should not miss.

- ``mismatch`` (error): a layer whose parameters no transform re-computes, with the
  parameter, the size of the error and the output channels where it sits;
- ``unmatched_target`` (error): an ONNX weight layer traced to nothing, with the closest
  candidate and why the others were rejected;
- ``nan_inf`` (error): NaN or Inf in a parameter of either model;
- ``unfolded_batchnorm`` (warning): a BatchNormalization left as its own ONNX node;
- ``guessed_eps`` (info): a BatchNorm eps the file does not record, found by trying;
- ``unmatched_source`` (warning, or info for modules plainly unused at inference):
  PyTorch layers the export does not use;
- ``untraced_constant`` (info): ONNX constants that are not PyTorch parameters
  (scale factors, position tables folded at export).
"""

from __future__ import annotations

import re
from typing import Iterable

from inspector.results import MISMATCH, UNMATCHED, DiffResult
from inspector.hookspecs import hookimpl
from inspector.records import Check, Finding
from inspector.report import describe_mismatch, layer_entry
from inspector.transforms import EPS_GUESSED

# Name parts of modules that only training uses (auxiliary heads, denoising queries,
# losses, teachers): their absence from an export is expected.
TRAINING_ONLY = re.compile(r"(^|[._])(aux\w*|denoising\w*|dn_\w*|criterion|loss\w*|teacher\w*|ema)($|[._])", re.IGNORECASE)
LISTED = 8


def mismatches(result: DiffResult) -> Iterable[Finding]:
    for layer in result.layers:
        if layer.status == MISMATCH:
            yield Finding("error", "mismatch", describe_mismatch(layer_entry(layer)), layer.target)


def unmatched_targets(result: DiffResult) -> Iterable[Finding]:
    for layer in result.layers:
        if layer.status == UNMATCHED:
            why = f": {layer.reasons[0]}" if layer.reasons else ": no PyTorch layer of this kind and shape"
            yield Finding("error", "unmatched_target", f"{layer.op} {layer.target} is not traced to the PyTorch model{why}", layer.target)


def nan_inf(result: DiffResult) -> Iterable[Finding]:
    for side, model in (("PyTorch", result.source), ("ONNX", result.target)):
        for layer, param in model.params():
            stats = param.value_range()
            if stats.nan or stats.inf:
                yield Finding(
                    "error", "nan_inf",
                    f"{side} tensor {param.tensor_name} holds {stats.nan} NaN and {stats.inf} Inf values",
                    layer.name,
                )


def unfolded_batchnorm(result: DiffResult) -> Iterable[Finding]:
    for layer in result.layers:
        if layer.kind == "batchnorm":
            yield Finding(
                "warning", "unfolded_batchnorm",
                f"BatchNorm {', '.join(layer.sources) or layer.target} was not folded into the layer before it: "
                "it runs as a separate BatchNormalization node",
                layer.target,
            )


def guessed_eps(result: DiffResult) -> Iterable[Finding]:
    guessed = [layer for layer in result.layers if layer.facts.get(EPS_GUESSED)]
    if guessed:
        values = sorted({layer.variant for layer in guessed})
        yield Finding(
            "info", "guessed_eps",
            f"The file does not record BatchNorm eps; {len(guessed)} folded layer{'s' if len(guessed) != 1 else ''} "
            f"fit with {'; '.join(values)}",
        )


def unmatched_source(result: DiffResult) -> Iterable[Finding]:
    unused = [name for name in result.unmatched_source if TRAINING_ONLY.search(name)]
    other = [name for name in result.unmatched_source if not TRAINING_ONLY.search(name)]
    if other:
        shown = ", ".join(other[:LISTED]) + (f" (+{len(other) - LISTED} more)" if len(other) > LISTED else "")
        yield Finding("warning", "unmatched_source", f"{len(other)} PyTorch layers have no ONNX counterpart: {shown}")
    if unused:
        shown = ", ".join(unused[:LISTED]) + (f" (+{len(unused) - LISTED} more)" if len(unused) > LISTED else "")
        yield Finding(
            "info", "unused_at_inference",
            f"{len(unused)} PyTorch layers are training-only by their names and not exported, as expected: {shown}",
        )


def untraced_constants(result: DiffResult) -> Iterable[Finding]:
    names = result.untraced_constants
    if names:
        shown = ", ".join(names[:LISTED]) + (f" (+{len(names) - LISTED} more)" if len(names) > LISTED else "")
        yield Finding(
            "info", "untraced_constant",
            f"{len(names)} ONNX nodes use constants that are not PyTorch parameters (computed at export): {shown}",
        )


@hookimpl
def graphinspect_checks():
    yield Check("mismatch", "Layers whose parameters differ, and where.", mismatches)
    yield Check("unmatched_target", "ONNX weight layers traced to nothing.", unmatched_targets)
    yield Check("nan_inf", "NaN or Inf in either model's parameters.", nan_inf)
    yield Check("unfolded_batchnorm", "BatchNorms left as separate ONNX nodes.", unfolded_batchnorm)
    yield Check("guessed_eps", "BatchNorm eps found by trying.", guessed_eps)
    yield Check("unmatched_source", "PyTorch layers the export does not use.", unmatched_source)
    yield Check("untraced_constant", "ONNX constants that are not PyTorch parameters.", untraced_constants)

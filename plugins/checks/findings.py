"""The built-in diff checks: what a careful reader of the table should not miss.

- ``mismatch`` (error): a layer whose parameters no transform re-computes, with the
  parameter, the size of the error and the output channels where it sits;
- ``unmatched_target`` (error): an ONNX weight layer traced to nothing, with the closest
  candidate and why the others were rejected;
- ``nan_inf`` (error): NaN or Inf in a parameter of either model (info in a constant
  computed at export);
- ``unfolded_batchnorm`` (warning): BatchNormalization nodes left right after the
  Conv they could be folded into; ``training_mode_batchnorm`` (warning): marked
  training_mode;
- ``guessed_eps`` (info): a BatchNorm eps the file does not record, found by trying;
- ``unmatched_source`` (warning, or info for modules plainly unused at inference):
  PyTorch layers the export does not use;
- ``export_constant`` (info): ONNX tensors shown not to be PyTorch parameters
  (position tables and anchors computed at export, neutral norm constants), and
  ``bookkeeping_constant`` (info) counting scalars and shape inputs;
- ``unexplained`` (error): stored numbers that nothing explains and no layer row shows
  (inside subgraphs, the rest of a partly explained tensor).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from inspector.hookspecs import hookimpl
from inspector.ir import Layer, Param
from inspector.records import Check, Finding
from inspector.report import describe_mismatch, layer_entry
from inspector.results import MISMATCH, UNEXPLAINED, UNMATCHED, DiffResult
from inspector.transforms import EPS_GUESSED

# Name parts of modules that only training uses (auxiliary heads, denoising queries,
# losses, teachers): their absence from an export is expected.
TRAINING_ONLY = re.compile(
    r"(^|[._])(aux\w*|denoising\w*|dn_\w*|criterion|loss\w*|teacher\w*|ema)($|[._])", re.IGNORECASE
)
LISTED = 8


def mismatches(result: DiffResult) -> Iterable[Finding]:
    for layer in result.layers:
        if layer.status == MISMATCH:
            yield Finding("error", "mismatch", describe_mismatch(layer_entry(layer)), layer.target)


def unmatched_targets(result: DiffResult) -> Iterable[Finding]:
    for layer in result.layers:
        if layer.status == UNMATCHED:
            why = f": {layer.reasons[0]}" if layer.reasons else ": no PyTorch layer of this kind and shape"
            if layer.kind == "unsupported":
                why = (
                    ": its weights are in a layout graphinspect cannot read back (ONNX Runtime's NCHWc blocks, "
                    "made for the CPU that optimised the file); optimise at ORT_ENABLE_EXTENDED to compare it"
                )
            yield Finding(
                "error",
                "unmatched_target",
                f"{layer.op} {layer.target} is not traced to the PyTorch model{why}",
                layer.target,
            )


def nan_inf(result: DiffResult) -> Iterable[Finding]:
    """NaN/Inf in a parameter is an error; in a constant computed at export (a mask, an
    anchor table with deliberate Inf) it is information."""
    constants = {constant.tensor for constant in result.constants}
    for side, model in (("PyTorch", result.source), ("ONNX", result.target)):
        params = list(model.params())
        finite = _shown_finite([param for _, param in params])
        for layer, param in params:
            if id(param) in finite:
                continue
            stats = param.value_range()
            if stats.nan or stats.inf:
                computed = side == "ONNX" and param.tensor_name in constants
                yield Finding(
                    "info" if computed else "error",
                    "nan_inf",
                    f"{side} {'constant' if computed else 'tensor'} {param.tensor_name} holds {stats.nan} NaN and "
                    f"{stats.inf} Inf values" + (" (computed at export, not a parameter)" if computed else ""),
                    layer.name,
                )


_INTEGER_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})
_BATCHED_DTYPES = frozenset({"float16", "float32", "float64"})
BATCH_ELEMENTS = 1 << 20
"""Elements of small float tensors checked for NaN/Inf in one pass (see :func:`_shown_finite`)."""
BATCH_PARAMS = 4096
"""Tensors checked in one pass, at most: each may lie on a page of its own in a mapped
file, and a pass keeps the pages of all of them resident until it is done."""


def _shown_finite(params: list[Param]) -> set[int]:
    """ids of params shown to hold no NaN/Inf without computing their ranges: integers
    (which cannot), and small float tensors whose range nothing needed (a BatchNorm's
    statistics once folded), checked together in passes of up to :data:`BATCH_ELEMENTS`
    elements (one numpy call for thousands of tensors, where a range each costs a dozen).
    A pass that finds a NaN or Inf shows nothing: its params are looked at one by one."""
    finite: set[int] = set()
    batch: list[Param] = []
    arrays: list[np.ndarray] = []
    elements = 0

    def check() -> None:
        if arrays and np.isfinite(np.concatenate(arrays)).all():
            finite.update(id(param) for param in batch)
        for param in batch:
            param.release()  # the values are not needed again: read again if they are
        batch.clear()
        arrays.clear()

    for param in params:
        if param.known_range() is not None:
            continue
        if param.dtype in _INTEGER_DTYPES:
            finite.add(id(param))
            continue
        if param.dtype not in _BATCHED_DTYPES or param.numel > BATCH_ELEMENTS // 16:
            continue
        array = param.array()
        if array.dtype.char not in "efd":  # float16, float32, float64 (dtype.name is slow)
            continue
        if elements + array.size > BATCH_ELEMENTS or len(batch) == BATCH_PARAMS:
            check()
            elements = 0
        batch.append(param)
        arrays.append(array.reshape(-1))
        elements += array.size
    check()
    return finite


def unfolded_batchnorm(result: DiffResult) -> Iterable[Finding]:
    """BatchNormalization nodes every exporter would have folded: right after the Conv
    whose output they normalise (a training-mode export, or constant folding off),
    or marked ``training_mode``. A BatchNorm that follows an activation or normalises a
    block's input (MobileOne's identity branch) cannot be folded and is not mentioned."""
    producers = {name: layer for layer in result.target.layers for name in layer.outputs}
    foldable, training = [], []
    for entry in result.layers:
        if entry.kind != "batchnorm":
            continue
        try:
            node = result.target.layer(entry.target)
        except KeyError:
            continue
        name = ", ".join(entry.sources) or entry.target
        if int(node.attrs.get("training_mode", 0) or 0):
            training.append(name)
        feeding = producers.get(node.inputs[0]) if node.inputs else None
        # Only after a Conv: the legacy exporter never folds a ConvTranspose or a Linear.
        if feeding is not None and feeding.kind == "conv":
            foldable.append(name)
    if foldable:
        yield Finding(
            "warning",
            "unfolded_batchnorm",
            f"{_counted(foldable, 'BatchNorm')} right after the layer {'it' if len(foldable) == 1 else 'each'} "
            f"normalises {'was' if len(foldable) == 1 else 'were'} not folded into it and "
            f"{'runs as a separate node' if len(foldable) == 1 else 'run as separate nodes'} "
            "(exported in training mode, or without constant folding?)",
        )
    if training:
        yield Finding(
            "warning",
            "training_mode_batchnorm",
            f"{_counted(training, 'BatchNormalization')} {'is' if len(training) == 1 else 'are'} marked "
            "training_mode=1: ONNX Runtime normalises with the batch's statistics, not the model's",
        )


def _counted(names: list[str], noun: str) -> str:
    shown = ", ".join(names[:LISTED]) + (f" (+{len(names) - LISTED} more)" if len(names) > LISTED else "")
    return f"{len(names)} {noun}{'s' if len(names) != 1 else ''} ({shown})"


def guessed_eps(result: DiffResult) -> Iterable[Finding]:
    guessed = [layer for layer in result.layers if layer.facts.get(EPS_GUESSED)]
    if guessed:
        values = sorted({layer.variant for layer in guessed})
        yield Finding(
            "info",
            "guessed_eps",
            f"The file does not record BatchNorm eps; {len(guessed)} folded layer{'s' if len(guessed) != 1 else ''} "
            f"fit with {'; '.join(values)}",
        )


def unmatched_source(result: DiffResult) -> Iterable[Finding]:
    """Source layers the export does not use: a warning, but for those whose absence is
    expected, by their names (:data:`TRAINING_ONLY`) or as the earlier items of a list
    whose last item is exported (:func:`earlier_items_of_used_lists`)."""
    if not result.unmatched_source:
        return
    unused, rest = [], []
    for name in result.unmatched_source:
        (unused if TRAINING_ONLY.search(name) else rest).append(name)
    matched = {source for layer in result.layers if layer.status != UNMATCHED for source in layer.sources}
    earlier = earlier_items_of_used_lists(rest, result.source.layers, matched)
    other = [name for name in rest if name not in earlier]
    if other:
        layers = "PyTorch layers have" if len(other) != 1 else "PyTorch layer has"
        yield Finding("warning", "unmatched_source", f"{len(other)} {layers} no ONNX counterpart: {_listed(other)}")
    if unused:
        yield Finding(
            "info",
            "unused_at_inference",
            f"{len(unused)} PyTorch {'layers are' if len(unused) != 1 else 'layer is'} training-only by "
            f"{'their names' if len(unused) != 1 else 'its name'} and not exported, as expected: {_listed(unused)}",
        )
    if earlier:
        names = [name for name in rest if name in earlier]
        yield Finding(
            "info",
            "unused_list_items",
            f"{len(names)} PyTorch {'layers' if len(names) != 1 else 'layer'} of a list "
            f"{'are' if len(names) != 1 else 'is'} not exported while the list's last item is (per-step heads "
            f"for training's auxiliary losses, as in DETR decoders): {_listed(names)}",
        )


LIST_ITEM = re.compile(r"^(.*)\.(\d+)((?:\.[^.]*\D[^.]*)*)$")
"""A module path as (list, index, rest): the last numbered part is the item of a list
(``model.28.dec_score_head.0`` -> ``model.28.dec_score_head``, 0, ``""``)."""


def earlier_items_of_used_lists(unmatched: list[str], layers: list[Layer], matched: set[str]) -> set[str]:
    """The names in ``unmatched`` that are the earlier items of a list of alike layers
    whose last item alone is exported: a decoder computes a score head per step for
    training's auxiliary losses and exports only the last (RT-DETR's ``dec_score_head.0``
    to ``.4`` of six).

    A list is the layers of ``layers`` whose paths differ only in their last number
    (``head.0``, ``head.1``; ``head.0.conv``, ``head.1.conv``). Its earlier items count
    only when the item of the highest number is ``matched``, every other item is
    unmatched, and all have one type and one set of param shapes: a stack of blocks
    missing one block from its export (``blocks.3`` of twelve) stays a warning."""
    if not unmatched:
        return set()
    lists: dict[tuple[str, str], dict[int, Layer]] = {}
    for layer in layers:
        item = LIST_ITEM.match(layer.name)
        if item:
            lists.setdefault((item[1], item[3]), {})[int(item[2])] = layer
    missing = set(unmatched)
    earlier: set[str] = set()
    for items in lists.values():
        last = items[max(items)]
        others = [layer for index, layer in items.items() if layer is not last]
        if others and last.name in matched and all(layer.name in missing and _alike(layer, last) for layer in others):
            earlier.update(layer.name for layer in others)
    return earlier


def _alike(layer: Layer, other: Layer) -> bool:
    shapes = [(role, param.shape) for role, param in layer.params.items()]
    return layer.op_type == other.op_type and shapes == [(role, p.shape) for role, p in other.params.items()]


def _listed(names: list[str]) -> str:
    return ", ".join(names[:LISTED]) + (f" (+{len(names) - LISTED} more)" if len(names) > LISTED else "")


def export_constants(result: DiffResult) -> Iterable[Finding]:
    """The stored tensors shown to be no parameters, by reason; scalars and shape inputs
    are only counted (every graph has many)."""
    computed = [c for c in result.constants if c.reason != "a scalar" and not c.reason.startswith("input ")]
    bookkeeping = len(result.constants) - len(computed)
    if computed:
        shown = ", ".join(f"{c.tensor} ({c.op}, {c.elements} values)" for c in computed[:LISTED])
        more = f" (+{len(computed) - LISTED} more)" if len(computed) > LISTED else ""
        yield Finding(
            "info",
            "export_constant",
            f"{len(computed)} ONNX tensor"
            f"{'s are not PyTorch parameters' if len(computed) != 1 else ' is not a PyTorch parameter'}: "
            f"{shown}{more}; each is listed with its reason in the constants",
        )
    if bookkeeping:
        yield Finding(
            "info",
            "bookkeeping_constant",
            f"{bookkeeping} ONNX tensors are scalars or shape, axes and scale inputs, not parameters",
        )


def unexplained_numbers(result: DiffResult) -> Iterable[Finding]:
    """Stored numbers in no layer row that nothing explains (subgraphs, parts of tensors)."""
    tally = result.coverage.totals[UNEXPLAINED]
    in_rows = sum(
        p.numel for layer in result.layers if layer.status == UNMATCHED for p in _target_params(result, layer)
    )
    if tally.elements > in_rows:
        yield Finding(
            "error",
            "unexplained",
            f"{tally.elements} floating-point numbers the ONNX model stores ({tally.bytes} bytes) are not explained "
            f"by any PyTorch parameter",
        )


def _target_params(result: DiffResult, layer):
    try:
        return list(result.target.layer(layer.target).params.values())
    except KeyError:
        return []


@hookimpl
def graphinspect_checks():
    yield Check("mismatch", "Layers whose parameters differ, and where.", mismatches)
    yield Check("unmatched_target", "ONNX weight layers traced to nothing.", unmatched_targets)
    yield Check("nan_inf", "NaN or Inf in either model's parameters.", nan_inf)
    yield Check("unfolded_batchnorm", "BatchNorms left as separate ONNX nodes.", unfolded_batchnorm)
    yield Check("guessed_eps", "BatchNorm eps found by trying.", guessed_eps)
    yield Check("unmatched_source", "PyTorch layers the export does not use.", unmatched_source)
    yield Check("export_constant", "ONNX tensors shown not to be PyTorch parameters.", export_constants)
    yield Check("unexplained", "Stored numbers nothing explains.", unexplained_numbers)

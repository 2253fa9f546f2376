"""The input contract: what the ONNX model declares, and what the values suggest.

:func:`check_contract` raises :class:`~inspector.errors.InputError` (exit 2) when an
input's shape or dtype is not what the ONNX model declares (symbolic dimensions accept
any size). :func:`value_lints` then looks at the value range of float inputs the user
gave (``--input``, ``--image``), because the classic export bugs live there:

- ``scaled_by_225``: the image was divided by 225, not 255 (:func:`divided_by_225`): its
  values sit on the k/225 grid (a dark image too), or its max is above 1 and at most
  255/225 = 1.133 (a resized image, off the grid);
- ``not_scaled``: values above 1.5 and up to 255, no 1/255 scaling was applied
  (unless the graph divides by 255 itself: :func:`graph_input_scaling` says so);
- ``normalised_input``: negative values, a mean/std normalisation was applied; if the
  ONNX graph already normalises its input (Sub/Div or Mul/Add by per-channel constants
  right after it, :func:`graph_input_scaling`) or its first Conv carries a per-input-
  channel factor the PyTorch conv does not have (:func:`folded_normalisation`), the
  normalisation would be applied twice and the lint is a warning.

The checks are heuristics; every message says what it saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.errors import InputError
from inspector.ir import CONV, Model

if TYPE_CHECKING:
    from inspector.results import DiffResult
    from plugins.commands.verify.inputs import InputTensor

RATIO_225 = 255.0 / 225.0
"""The max of an image that was divided by 225 instead of 255 (1.1333)."""

ELEMENTWISE_OPS = ("Sub", "Div", "Mul", "Add")
PASS_THROUGH_OPS = ("Cast", "Identity", "Transpose")


@dataclass(frozen=True, slots=True)
class Lint:
    """One remark on the run: ``severity`` "error", "warning" or "info"; ``code`` stable."""

    severity: str
    code: str
    message: str

    def entry(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "message": self.message}


def check_contract(inputs: list["InputTensor"], target: Model) -> None:
    """Raise InputError when an input's shape or dtype differs from the ONNX declaration."""
    declared = {info.name: info for info in target.inputs}
    for tensor in inputs:
        info = declared[tensor.name]
        where = tensor.path or f"the {tensor.origin} input"
        if str(tensor.array.dtype) != info.dtype:
            hint = f" (convert it with .astype(numpy.{info.dtype}))" if info.dtype != "undefined" else ""
            raise InputError(
                where, f"input {tensor.name!r} has dtype {tensor.array.dtype}, the ONNX model wants {info.dtype}{hint}"
            )
        if info.shape is None:
            continue
        shape = tuple(tensor.array.shape)
        fits = len(shape) == len(info.shape) and all(
            not isinstance(dim, int) or dim == size for dim, size in zip(info.shape, shape)
        )
        if not fits:
            wanted = "x".join(str(dim) if isinstance(dim, int) else "?" for dim in info.shape)
            got = "x".join(str(size) for size in shape)
            raise InputError(where, f"input {tensor.name!r} has shape {got}, the ONNX model wants {wanted}")


def value_lints(
    inputs: list["InputTensor"],
    proto: Any,
    target: Model,
    source: Model,
    diff: Callable[[], "DiffResult"] | None = None,
) -> list[Lint]:
    """Warnings and notes about the value ranges of the user's float inputs.

    ``proto`` is the ONNX ModelProto (None to skip the graph checks); ``diff`` gives the
    diff of the two models, asked for only when a normalised input needs the first-conv
    check.
    """
    lints: list[Lint] = []
    for tensor in inputs:
        array = tensor.array
        if tensor.origin == "random" or array.dtype.kind != "f" or array.size == 0:
            continue
        lo, hi = float(np.nanmin(array)), float(np.nanmax(array))
        scaling = graph_input_scaling(proto, tensor.name)
        label = f"input {tensor.name!r} (min {lo:.4g}, max {hi:.4g})"
        evidence = divided_by_225(array)
        if evidence:
            lints.append(
                Lint(
                    "warning",
                    "scaled_by_225",
                    f"{label}: {evidence}; the image was probably divided by 225 instead of 255",
                )
            )
        elif lo >= 0 and 1.5 < hi <= 255.5:
            if scaling and "1/255" in scaling:
                lints.append(
                    Lint(
                        "info",
                        "not_scaled",
                        f"{label}: values up to 255 and {scaling}, so unscaled input looks intended",
                    )
                )
            else:
                lints.append(
                    Lint(
                        "warning",
                        "not_scaled",
                        f"{label}: values up to 255 mean no 1/255 scaling was applied; most vision exports expect 0..1",
                    )
                )
        elif lo < 0:
            folded = None
            if scaling is None and diff is not None:
                folded = folded_normalisation(diff(), target, source, tensor.name)
            where = scaling or folded
            if where:
                lints.append(
                    Lint(
                        "warning",
                        "normalised_twice",
                        f"{label}: negative values mean a mean/std normalisation was applied, but {where}: the "
                        "input would be normalised twice",
                    )
                )
            else:
                lints.append(
                    Lint(
                        "info",
                        "normalised_input",
                        f"{label}: negative values mean a mean/std normalisation was applied; the model must "
                        "expect it (it does not normalise its input itself, as far as the graph shows)",
                    )
                )
        elif scaling and "normalises" in scaling:
            lints.append(Lint("info", "normalisation_in_graph", f"{label}: {scaling}, so it takes 0..1 input as given"))
    return lints


def divided_by_225(array: np.ndarray, sample: int = 200_000) -> str | None:
    """What shows a float image was divided by 225 instead of 255, or None.

    Pixels are integers 0..255, so ``x = k / 225``: ``225 x`` is an integer for (nearly)
    every value while ``255 x`` is not (``k/225 = m/255`` only when 15 divides k). That
    holds for a dark image whose max is below 1 too. A resized or filtered image leaves
    the grid; then a max above 1 and at most 255/225 is the sign. ``sample``: values
    looked at (evenly spaced) on a large input.
    """
    values = np.asarray(array, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > RATIO_225 * (1 + 1e-4):
        return None
    if hi > 1 + 1e-4:
        return f"its max {hi:.4g} is above 1 and at most 255/225 = 1.133"
    values = values[:: max(1, values.size // sample)]
    on_225, on_255 = _on_grid(values, 225), _on_grid(values, 255)
    distinct = np.unique(np.round(values * 225)).size
    if distinct >= 8 and on_225 >= 0.999 and on_255 < 0.9:
        return "its values sit on the k/225 grid (k = 0..255), not on k/255"
    return None


def _on_grid(values: np.ndarray, divisor: int) -> float:
    """The fraction of ``values`` within float32 noise of a multiple of 1/divisor."""
    scaled = values * divisor
    return float(np.mean(np.abs(scaled - np.round(scaled)) < 1e-3))


# ----------------------------------------------------------------------------- the graph


def graph_input_scaling(proto: Any, input_name: str, max_steps: int = 4) -> str | None:
    """What the ONNX graph does to ``input_name`` before anything else, in words, or None.

    Follows the input through at most ``max_steps`` nodes of Sub/Div/Mul/Add with a
    constant operand (and Cast/Identity/Transpose), as long as each is the tensor's only
    consumer: a scalar 255 (Div) or 1/255 (Mul) is a 1/255 scaling, constants of one value
    per channel a mean/std normalisation.
    """
    if proto is None:
        return None
    from onnx import numpy_helper

    graph = proto.graph
    constants: dict[str, Any] = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = attr.t
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: list[str] = []
    tensor = input_name
    for _ in range(max_steps):
        users = consumers.get(tensor, [])
        if len(users) != 1:
            break
        node = users[0]
        if node.op_type in PASS_THROUGH_OPS:
            tensor = node.output[0]
            continue
        if node.op_type not in ELEMENTWISE_OPS or len(node.input) != 2:
            break
        other = node.input[1] if node.input[0] == tensor else node.input[0]
        if other not in constants:
            break
        values = numpy_helper.to_array(constants[other]).astype(np.float64).ravel()
        if values.size == 1:
            value = float(values[0])
            if (node.op_type == "Div" and abs(value - 255) < 1e-3) or (
                node.op_type == "Mul" and abs(value * 255 - 1) < 1e-4
            ):
                found.append(
                    f"the ONNX graph scales its input by 1/255 itself ({node.op_type} {node.name or node.output[0]!r})"
                )
        elif 1 < values.size <= 4:
            shown = ", ".join(f"{value:.4g}" for value in values)
            found.append(
                f"the ONNX graph normalises its input itself ({node.op_type} by per-channel constants {shown} "
                f"in {node.name or node.output[0]!r})"
            )
        tensor = node.output[0]
    return "; ".join(found) or None


def folded_normalisation(diff: "DiffResult", target: Model, source: Model, input_name: str) -> str | None:
    """Whether the first ONNX Conv reading ``input_name`` holds the PyTorch conv's
    weight times a per-input-channel factor (a normalisation folded in at export).

    Only looked at when the diff could not explain that Conv. With ``R[o, c]`` the
    least-squares factor between the target and source kernels of output channel ``o``
    and input channel ``c``, a fold of BatchNorm (or nothing) makes ``R[o, c] / R[o, 0]``
    equal 1 for every ``c``; a folded ``1/std[c]`` makes it ``std[0]/std[c]``, the same
    for every ``o``. Reported when the kernels are proportional (within 1e-3) and some
    channel's factor is off by more than 1%.
    """
    conv = next((layer for layer in target.layers if layer.kind == CONV and input_name in layer.inputs), None)
    if conv is None or "weight" not in conv.params:
        return None
    layer_diff = next((layer for layer in diff.layers if layer.target == conv.name), None)
    if layer_diff is None or layer_diff.status != "mismatch" or not layer_diff.sources:
        return None
    source_layer = next((layer for layer in source.layers if layer.name == layer_diff.sources[0]), None)
    if source_layer is None or "weight" not in source_layer.params:
        return None
    t = conv.params["weight"].array().astype(np.float64)
    w = source_layer.params["weight"].array().astype(np.float64)
    if t.shape != w.shape or t.ndim < 3 or t.shape[1] < 2:
        return None
    t, w = t.reshape(t.shape[0], t.shape[1], -1), w.reshape(w.shape[0], w.shape[1], -1)
    norms = (w * w).sum(axis=2)
    if (norms == 0).any():
        return None
    ratio = (t * w).sum(axis=2) / norms
    residual = np.abs(t - ratio[:, :, None] * w).max() / max(np.abs(t).max(), 1e-30)
    if residual > 1e-3 or (ratio[:, :1] == 0).any():
        return None
    factors = np.median(ratio / ratio[:, :1], axis=0)
    if np.abs(factors - 1).max() < 0.01:
        return None
    shown = ", ".join(f"{factor:.3f}" for factor in factors)
    return (
        f"the first ONNX Conv {conv.name!r} equals PyTorch's {source_layer.name} with its input channels scaled "
        f"by {shown} (relative to channel 0): a normalisation was probably folded into it at export"
    )

"""The ``split_qkv`` transform: nn.MultiheadAttention's packed input projection, cut up.

``nn.MultiheadAttention`` keeps the query, key and value projections in one
``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E) (or in separate ``q_proj_weight``,
``k_proj_weight``, ``v_proj_weight`` when key/value widths differ). Exporters write::

    q:  W_q = in_proj_weight[0:E],   b_q = in_proj_bias[0:E]
    k:  W_k = in_proj_weight[E:2E],  b_k = in_proj_bias[E:2E]
    v:  W_v = in_proj_weight[2E:3E], b_v = in_proj_bias[2E:3E]
    qkv: the whole (3E, E) block when query, key and value are one tensor

each as a Linear in the target's layout (:mod:`plugins.transforms._layouts`: a MatMul stores the
transpose). One PyTorch parameter thus explains up to three ONNX layers. ONNX Runtime's
``com.microsoft.Attention`` holds the whole block transposed, (E, 3E).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from inspector import ir
from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import float64, linear_to_target

PARTS = ("q", "k", "v", "qkv")


def attention_layers_at(anchor: str, source: SourceIndex) -> list[Layer]:
    """The attention layer at ``anchor``, its parent when the anchor is inside one (its
    out_proj), or the attention layers just below a module anchor."""
    layer = source.layer(anchor)
    if layer is not None:
        if layer.kind == ir.ATTENTION:
            return [layer]
        parent = source.layer(source.parent(anchor))
        return [parent] if parent is not None and parent.kind == ir.ATTENTION else []
    return [child for child in source.under(anchor, depth=2) if child.kind == ir.ATTENTION]


def projection(attention: Layer, part: str) -> tuple[np.ndarray, np.ndarray | None, object]:
    """(W, b, origin param) of one part of the packed projection, in PyTorch layout."""
    params = attention.params
    if "in_proj_weight" in params:
        packed = float64(params["in_proj_weight"])
        bias = float64(params["in_proj_bias"]) if "in_proj_bias" in params else None
        width = packed.shape[0] // 3
        rows = slice(None) if part == "qkv" else slice("qkv".index(part) * width, ("qkv".index(part) + 1) * width)
        return packed[rows], None if bias is None else bias[rows], params["in_proj_weight"]
    weights = [params.get(f"{name}_proj_weight") for name in "qkv"]
    if any(weight is None for weight in weights):
        raise KeyError("no in_proj_weight and no q/k/v_proj_weight")
    bias = float64(params["in_proj_bias"]) if "in_proj_bias" in params else None
    widths = [weight.shape[0] for weight in weights]
    starts = np.cumsum([0, *widths])
    if part == "qkv":
        if len({weight.shape[1:] for weight in weights}) > 1:
            # kdim/vdim differ from embed_dim: the three projections read different inputs.
            raise KeyError("q/k/v_proj_weight take inputs of different widths: they are never one block")
        return np.concatenate([float64(w) for w in weights]), bias, weights[0]
    index = "qkv".index(part)
    rows = slice(int(starts[index]), int(starts[index + 1]))
    return float64(weights[index]), None if bias is None else bias[rows], weights[index]


class SplitQKV(Transform):
    """W_part = in_proj_weight[rows(part)], b_part = in_proj_bias[rows(part)], in the target's layout."""

    name = "split_qkv"
    description = "nn.MultiheadAttention in_proj_weight/in_proj_bias cut into q/k/v projections."
    target_kinds = frozenset({ir.LINEAR, ir.ATTENTION})
    order = 40
    phrase = "attention q/k/v slices"
    explains = "Linear weights are stored transposed or split"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        for attention in attention_layers_at(anchor, source):
            parts = ("qkv",) if target.kind == ir.ATTENTION else PARTS
            for part in parts:
                yield self.candidate(attention, variant=part, part=part)

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        (attention,) = candidate.sources
        target_weight = target.params.get("weight")
        if target_weight is None:
            return "no weight"
        try:
            weight, _, _ = projection(attention, str(candidate.get("part")))
        except KeyError as exc:
            return str(exc.args[0])
        if weight.size != target_weight.numel:
            return (
                f"the {candidate.get('part')} projection has {weight.size} elements, the target {target_weight.numel}"
            )
        return None

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        (attention,) = candidate.sources
        part = str(candidate.get("part"))
        weight, bias, origin = projection(attention, part)
        if target is not None and target.kind == ir.ATTENTION:
            params = {"weight": weight.T}
            if bias is not None:
                params["bias"] = bias
            axes = {"weight": 1, "bias": 0}
        else:
            expected_weight, expected_bias, axis = linear_to_target(weight, bias, target)
            params = {"weight": expected_weight}
            if expected_bias is not None:
                params["bias"] = expected_bias
            axes = {"weight": axis, "bias": 0}
        origins = {"weight": origin, "bias": attention.params.get("in_proj_bias")}
        return Reproduction(params, origins, axes, f"{part} slice of {attention.name}.in_proj")


@hookimpl
def graphinspect_transforms():
    yield SplitQKV()

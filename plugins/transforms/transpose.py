"""The ``transpose`` transform: a Linear stored in another layout.

``torch.nn.Linear`` holds ``W`` (out, in) and ``b``. Exporters write::

    Gemm(transB=0):  B = W^T / alpha,  C = b / beta
    Gemm(transB=1):  B = W / alpha,    C = b / beta   (alpha = beta = 1 is ``identity``)
    MatMul (+ Add):  B = W^T,          bias = b       (the Add is joined by the ONNX loader)

ONNX Runtime's contrib ops read the same way: FusedGemm is a Gemm with an activation, and
FusedMatMul (transA/transB/alpha) a MatMul whose ``alpha`` may be a scalar multiply of
the model it fused in (MatMulScaleFusion): then ``B = W^T`` (or ``W``) as it is, the
variant "alpha fused from a scalar multiply". Which layout a target uses is its
``attrs[WEIGHT_LAYOUT]``.

onnxslim rewrites Reshape + MatMul + Add as Reshape + Gemm with a new ``<name>_weight``
initializer holding ``W`` again (transB=1); the dtype may change on the way (an fp16
checkpoint exported as fp32), which this transform also accepts. A Gemm(transB=1) with
alpha = beta = 1 stores ``W`` as it is: that is ``identity`` (or ``cast``), not this. See
:mod:`plugins.transforms._layouts` for the layout rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from inspector import ir
from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import float64, linear_is_transposed, linear_to_target


def linear_layers_at(anchor: str, source: SourceIndex) -> list[Layer]:
    """The Linear at ``anchor``, or the Linears just below a module anchor."""
    layer = source.layer(anchor)
    if layer is not None:
        if layer.kind == ir.LINEAR:
            return [layer]
        return [child for child in source.under(anchor, depth=1) if child.kind == ir.LINEAR]
    return [child for child in source.under(anchor, depth=2) if child.kind == ir.LINEAR]


class Transpose(Transform):
    """B = W^T / alpha (MatMul, Gemm transB=0) or W / alpha (Gemm transB=1); C = b / beta."""

    name = "transpose"
    description = "Linear exported as Gemm (transB 0/1, alpha/beta) or MatMul with a transposed initializer."
    target_kinds = frozenset({ir.LINEAR})
    order = 25
    phrase = "Linear stored transposed"
    explains = "Linear weights are stored transposed or split"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        fused_scale = float(target.attrs.get("alpha", 1.0)) != 1.0 and target.op_type.startswith("com.microsoft.Fused")
        for layer in linear_layers_at(anchor, source):
            yield self.candidate(layer)
            if fused_scale:
                # ONNX Runtime fuses a scalar multiply after a MatMul into FusedMatMul's
                # alpha: then the stored weight is W itself.
                yield self.candidate(layer, variant="alpha fused from a scalar multiply", alpha_in_weight=False)

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        (linear,) = candidate.sources
        weight, target_weight = linear.params.get("weight"), target.params.get("weight")
        if weight is None or target_weight is None or len(weight.shape) != 2:
            return "no 2-D weight"
        expected_shape = weight.shape[::-1] if linear_is_transposed(target) else weight.shape
        if tuple(target_weight.shape) != tuple(expected_shape):
            return f"weight shape {list(target_weight.shape)} != {list(expected_shape)} in this layout"
        scaled = float(target.attrs.get("alpha", 1.0)) != 1.0 or float(target.attrs.get("beta", 1.0)) != 1.0
        if not linear_is_transposed(target) and not scaled:
            return "same layout: that is identity (or a cast)"
        return None

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        (linear,) = candidate.sources
        bias = linear.params.get("bias")
        alpha_in_weight = bool(candidate.get("alpha_in_weight", True))
        weight, expected_bias, axis = linear_to_target(
            float64(linear.params["weight"]), float64(bias) if bias is not None else None, target, alpha_in_weight
        )
        params = {"weight": weight}
        if expected_bias is not None:
            params["bias"] = expected_bias
        layout = "W^T" if linear_is_transposed(target) else "W"
        alpha = float(target.attrs.get("alpha", 1.0)) if target is not None and alpha_in_weight else 1.0
        note = f"{target.op_type if target is not None else 'Linear'} stores {layout}" + (
            f" / alpha {alpha:g}" if alpha != 1.0 else ""
        )
        return Reproduction(
            params, {"weight": linear.params["weight"], "bias": bias}, {"weight": axis, "bias": 0}, note
        )


@hookimpl
def graphinspect_transforms():
    yield Transpose()

"""The ``identity`` transform: the target holds the source's values as they are.

    t = s            (same dtype, same layout; an absent bias is a zero bias)

Its sibling :mod:`plugins.transforms.cast` is the same pairing across dtypes. Both pair a
target layer with one source layer of the same kind: Conv with Conv2d,
BatchNormalization kept as a node with BatchNorm2d, LayerNormalization with LayerNorm,
Gather with Embedding, a Gemm(transB=1, alpha=beta=1) with Linear. Layouts that differ
(a transposed Linear) belong to the ``transpose`` transform. A target that is not a
weight layer (an Add or Mul of a constant) is paired param by param: its single constant
with a same-shaped source parameter (a LayerScale ``gamma``, a position embedding).
"""

from __future__ import annotations

from collections.abc import Iterable

from inspector import ir
from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.targets import WEIGHT_KINDS
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import conv_attrs_disagree, float64, linear_is_transposed

MATRIX_KINDS = frozenset({ir.CONV, ir.CONV_TRANSPOSE, ir.LINEAR})


class Identity(Transform):
    """t = s: the target stores the source tensor unchanged."""

    name = "identity"
    description = "Parameters kept as they are (same values, dtype and layout)."
    order = 10
    phrase = "unchanged"
    changes_dtype = False

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        layer = source.layer(anchor)
        if layer is None:
            layers = source.under(anchor, depth=2)
        elif target.kind in WEIGHT_KINDS and layer.kind != target.kind:
            # An attention module named by the scope of its out_proj's Gemm.
            layers = [layer, *source.under(anchor, depth=1)]
        else:
            layers = [layer]
        for layer in layers:
            if target.kind in WEIGHT_KINDS:
                if layer.kind == target.kind:
                    yield self.candidate(layer)
                elif target.kind == ir.EMBEDDING:
                    # A table looked up at run time (LeViT's attention_biases): any
                    # module's parameter can be a Gather's data.
                    yield from self._constant_candidates(target, layer)
            else:
                yield from self._constant_candidates(target, layer)

    def _constant_candidates(self, target: Layer, layer: Layer) -> Iterable[Candidate]:
        floats = [param for param in target.params.values() if param.dtype.startswith(("float", "bfloat"))]
        if len(floats) != 1:
            return
        (wanted,) = floats
        for param in layer.params.values():
            # A Conv or Linear weight is what a Conv, Gemm or MatMul holds, never an
            # operand of an Add or a Mul: a constant of its size is a coincidence.
            if param.name == "weight" and layer.kind in MATRIX_KINDS:
                continue
            if param.numel == wanted.numel:
                yield self.candidate(layer, variant=param.name, role=param.name, uses=((layer.name, param.name),))

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        (layer,) = candidate.sources
        pairs = self._pairs(target, candidate)
        if not pairs:
            return "no parameter in common"
        for target_role, source_role in pairs:
            t, s = target.params.get(target_role), layer.params.get(source_role)
            if t is None:
                continue  # a source bias the target lacks: compared with zeros
            if s is None:
                if target_role == "bias":
                    continue
                return f"the source has no {source_role}"
            if t.numel != s.numel:
                return f"{target_role} has {t.numel} elements, the source {s.numel}"
            if target.kind in WEIGHT_KINDS and t.shape != s.shape and target_role == "weight":
                return f"weight shape {_shape(t.shape)} != {_shape(s.shape)}"
            if (t.dtype != s.dtype) != self.changes_dtype:
                return f"dtype {s.dtype} -> {t.dtype}" + (
                    ": that is a cast" if not self.changes_dtype else " is no cast"
                )
        if target.kind == ir.LINEAR:
            if linear_is_transposed(target):
                return "the target stores the weight transposed"
            if float(target.attrs.get("alpha", 1.0)) != 1.0 or float(target.attrs.get("beta", 1.0)) != 1.0:
                return "Gemm alpha/beta scale the weights"
        if target.kind in (ir.CONV, ir.CONV_TRANSPOSE):
            return conv_attrs_disagree(target, layer)
        return None

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        (layer,) = candidate.sources
        if target is None:
            return Reproduction({role: float64(p) for role, p in layer.params.items()}, origins=dict(layer.params))
        params, origins = {}, {}
        for target_role, source_role in self._pairs(target, candidate):
            source_param = layer.params.get(source_role)
            if source_param is None:
                continue
            stored = target.params.get(target_role)
            params[target_role] = float64(source_param).reshape(
                stored.shape if stored is not None else source_param.shape
            )
            origins[target_role] = source_param
        note = ""
        if self.changes_dtype:
            dtypes = sorted(
                {
                    f"{layer.params[s].dtype} -> {target.params[t].dtype}"
                    for t, s in self._pairs(target, candidate)
                    if s in layer.params
                }
            )
            note = ", ".join(dtypes)
        return Reproduction(params, origins=origins, note=note)

    @staticmethod
    def _pairs(target: Layer, candidate: Candidate) -> list[tuple[str, str]]:
        """(target role, source role) pairs."""
        role = candidate.get("role")
        if role is not None:
            floats = [r for r, p in target.params.items() if p.dtype.startswith(("float", "bfloat"))]
            return [(floats[0], str(role))]
        (layer,) = candidate.sources
        pairs = [(r, r) for r in target.params if r in layer.params or r == "bias"]
        if target.kind in WEIGHT_KINDS and "bias" in layer.params and "bias" not in target.params:
            pairs.append(("bias", "bias"))  # a bias the export dropped is compared with zeros
        return pairs


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


@hookimpl
def graphinspect_transforms():
    yield Identity()

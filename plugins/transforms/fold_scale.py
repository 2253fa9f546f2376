"""The ``fold_scale`` transform: a per-channel scale (and shift) merged into the conv before it.

ONNX Runtime's basic optimisations fold a ``Mul`` by a constant per-channel tensor that
follows a Conv into its weights (ConvMulFusion), and a following ``Add`` of one into its
bias (ConvAddFusion): a layer scale after a conv (FastViT's ``mlp.fc2`` then
``layer_scale.gamma``), or a model's own ``x * scale + shift``::

    w'_c = w_c * g_c
    b'_c = b_c * g_c + t_c          (t = 0 without a shift; b = 0 for a conv without bias)

where the conv may itself be folded with the BatchNorm after it first (``w * s``,
``(b - mean) * s + beta``). ``g`` and ``t`` are parameters of C elements (a LayerScale's
``gamma``, a (C, 1, 1) tensor) held by a layer that comes after the conv in the model
before the next conv, or by a module enclosing it. Everything is re-computed in float64.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from inspector import ir
from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import conv_attrs_disagree, float64
from plugins.transforms.fold_batchnorm import batchnorm_after, bn_affine

FOLLOWING = 4
"""Layers after the conv looked at for its scale, before giving up."""


def _per_channel(layer: Layer, channels: int) -> list[str]:
    """The roles of ``layer``'s float params of ``channels`` elements (not a norm's stats)."""
    if layer.kind in (ir.BATCHNORM, ir.CONV, ir.CONV_TRANSPOSE, ir.LINEAR):
        return []
    return [
        role
        for role, p in layer.params.items()
        if p.dtype.startswith(("float", "bfloat"))
        and p.numel == channels
        and role not in ("running_mean", "running_var")
    ]


def scale_holders(conv: Layer, source: SourceIndex) -> list[Layer]:
    """Layers that may hold the conv's scale: those after it until the next conv, then the
    modules enclosing it (their own parameters: a model's ``self.scale``)."""
    found = []
    for count, layer in enumerate(source.following(conv)):
        if layer.kind in (ir.CONV, ir.CONV_TRANSPOSE, ir.LINEAR) or count >= FOLLOWING:
            break
        found.append(layer)
    path = source.parent(conv.name)
    while True:
        holder = source.layer(path)
        if holder is not None:
            found.append(holder)
        if not path:
            break
        path = source.parent(path)
    return found


class FoldScale(Transform):
    """w' = w * g, b' = b * g + t (after an optional BatchNorm fold): see the module docstring."""

    name = "fold_scale"
    description = "A per-channel scale (and shift) after a conv folded into it (ONNX Runtime's Conv+Mul/Add fusion)."
    target_kinds = frozenset({ir.CONV})
    order = 22
    phrase = "Conv + per-channel scale folded"
    explains = "per-channel scales after convs were folded into them"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        layer = source.layer(anchor)
        convs = (
            [layer]
            if layer is not None and layer.kind == ir.CONV
            else [child for child in source.under(anchor, depth=2) if child.kind == ir.CONV]
        )
        for conv in convs:
            weight = conv.params.get("weight")
            if weight is None:
                continue
            channels = weight.shape[0]
            bn = batchnorm_after(conv, source)
            for holder in scale_holders(conv, source):
                roles = _per_channel(holder, channels)
                for scale_role in roles:
                    shifts: list[tuple[Layer, str] | None] = [None]
                    shifts += [(holder, role) for role in roles if role != scale_role]
                    for shift in shifts:
                        for with_bn in [False, True] if bn is not None else [False]:
                            sources = [conv, *([bn] if with_bn else []), holder]
                            uses = (
                                [(conv.name, r) for r in conv.params]
                                + ([(bn.name, r) for r in bn.params] if with_bn else [])
                                + [(holder.name, scale_role)]
                            )
                            variant = (
                                f"{holder.name}.{scale_role}"
                                + (f" + {shift[1]}" if shift else "")
                                + (" after the BatchNorm" if with_bn else "")
                            )
                            if shift:
                                uses.append((holder.name, shift[1]))
                            yield self.candidate(
                                *dict.fromkeys(sources),
                                variant=variant,
                                conv=conv.name,
                                bn=bn.name if with_bn else None,
                                holder=holder.name,
                                scale=scale_role,
                                shift=shift[1] if shift else None,
                                uses=tuple(uses),
                            )

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        by_name = {layer.name: layer for layer in candidate.sources}
        conv = by_name[str(candidate.get("conv"))]
        stored = target.params.get("weight")
        if stored is None or tuple(stored.shape) != tuple(conv.params["weight"].shape):
            return f"weight shape {list(stored.shape) if stored else None} != {list(conv.params['weight'].shape)}"
        return conv_attrs_disagree(target, conv)

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        by_name = {layer.name: layer for layer in candidate.sources}
        conv = by_name[str(candidate.get("conv"))]
        holder = by_name[str(candidate.get("holder"))]
        weight = float64(conv.params["weight"])
        channels = weight.shape[0]
        bias = float64(conv.params["bias"]) if "bias" in conv.params else np.zeros(channels)
        if candidate.get("bn") is not None:
            bn = by_name[str(candidate.get("bn"))]
            scale, shift = bn_affine(bn, float(bn.attrs.get("eps", 1e-5)))
            weight = weight * scale.reshape(-1, *([1] * (weight.ndim - 1)))
            bias = bias * scale + shift
        gamma = float64(holder.params[str(candidate.get("scale"))]).reshape(-1)
        weight = weight * gamma.reshape(-1, *([1] * (weight.ndim - 1)))
        bias = bias * gamma
        if candidate.get("shift") is not None:
            bias = bias + float64(holder.params[str(candidate.get("shift"))]).reshape(-1)
        origins = {"weight": conv.params["weight"], "bias": holder.params[str(candidate.get("scale"))]}
        return Reproduction(
            {"weight": weight, "bias": bias},
            origins,
            {"weight": 0, "bias": 0},
            note=f"times {holder.name or 'the model'}.{candidate.get('scale')}"
            + (f", plus {candidate.get('shift')}" if candidate.get("shift") else ""),
        )


@hookimpl
def graphinspect_transforms():
    yield FoldScale()

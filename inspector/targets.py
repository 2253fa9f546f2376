"""Which target (ONNX) layers a diff must explain, prepared for the transforms.

Weight layers (:data:`WEIGHT_KINDS`) must be explained; other layers with non-scalar
float constants are explained when they can be and otherwise listed as untraced
(scale factors, position tables folded at export).
"""

from __future__ import annotations

import numpy as np

from inspector import ir
from inspector.ir import Layer, Model

WEIGHT_KINDS = frozenset(
    {
        ir.CONV,
        ir.CONV_TRANSPOSE,
        ir.LINEAR,
        ir.BATCHNORM,
        ir.LAYERNORM,
        ir.GROUPNORM,
        ir.INSTANCENORM,
        ir.ATTENTION,
        ir.RECURRENT,
        ir.UNSUPPORTED,
        "prelu",
        "rmsnorm",
    }
)
"""Target kinds whose parameters must be explained; other constants are explained when
they can be, reconciled with the parameters left unused, or shown to be computed at
export (:mod:`inspector.coverage`). A Gather's table (EMBEDDING) is among the others: it is
an embedding's weight, or a constant computed at export (RT-DETR's anchors)."""


def prepare_targets(target: Model) -> tuple[list[Layer], list[Layer]]:
    """(layers to explain, other constant-carrying layers) in execution order.

    A layer of a weight kind must be explained; any other layer holding a float
    constant of more than one element is explained when it can be. Loaders have already
    joined what exporters split (an ONNX MatMul and the Add of its bias are one layer).
    """
    explained: list[Layer] = []
    others: list[Layer] = []
    for layer in target.layers:
        if not layer.params:
            continue
        if layer.kind in WEIGHT_KINDS and not _neutral_instance_norm(layer):
            explained.append(layer)
        elif any(param.numel > 1 and param.dtype.startswith(("float", "bfloat")) for param in layer.params.values()):
            others.append(layer)
    return explained, others


def _neutral_instance_norm(layer: Layer) -> bool:
    """An InstanceNormalization with scale 1 and bias 0: how both exporters write a
    GroupNorm (its affine parameters follow as Mul and Add) and an InstanceNorm without
    affine parameters. Those constants are made at export, not PyTorch parameters, so the
    layer is explained when it can be and otherwise listed as untraced."""
    if layer.kind != ir.INSTANCENORM or not set(layer.params) <= {"weight", "bias"}:
        return False
    weight, bias = layer.params.get("weight"), layer.params.get("bias")
    return bool((weight is None or np.all(weight.array() == 1)) and (bias is None or np.all(bias.array() == 0)))

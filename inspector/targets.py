"""Which target (ONNX) layers a diff must explain, prepared for the transforms.

Weight layers (:data:`WEIGHT_KINDS`) must be explained; other layers with non-scalar
float constants are explained when they can be and otherwise listed as untraced
(scale factors, position tables folded at export). Exporters split one PyTorch layer
over several nodes in known ways; :func:`prepare_targets` joins them back so the
transforms see the layer whole.
"""

from __future__ import annotations

import numpy as np

from inspector import ir
from inspector.ir import Layer, Model, Param

WEIGHT_KINDS = frozenset(
    {ir.CONV, ir.CONV_TRANSPOSE, ir.LINEAR, ir.BATCHNORM, ir.LAYERNORM, ir.GROUPNORM, ir.INSTANCENORM,
     ir.EMBEDDING, ir.ATTENTION, "prelu", "rmsnorm"}
)
"""Target kinds whose parameters must be explained; other constants are explained when
they can be and otherwise listed as untraced (scale factors, folded position tables)."""


def prepare_targets(target: Model) -> tuple[list[Layer], list[Layer]]:
    """(layers to explain, other constant-carrying layers) in execution order.

    A MatMul whose output feeds an Add of a constant vector is how exporters write a
    Linear on 3-D input: the Add's constant joins the MatMul as its "bias" (in a copy of
    the layer), and the Add is not listed on its own. When the Add's other operand is a
    slice a Split cuts from a constant at run time (the dynamo exporter splits
    ``in_proj_bias`` so), that slice is the MatMul's bias.
    """
    consumers: dict[str, list[Layer]] = {}
    producers: dict[str, tuple[Layer, int]] = {}
    for layer in target.layers:
        for name in layer.inputs:
            consumers.setdefault(name, []).append(layer)
        for position, name in enumerate(layer.outputs):
            producers[name] = (layer, position)
    absorbed: set[str] = set()
    explained: list[Layer] = []
    others: list[Layer] = []
    for layer in target.layers:
        if not layer.params or layer.name in absorbed:
            continue
        if layer.kind in WEIGHT_KINDS and not _neutral_instance_norm(layer):
            if layer.op_type == "MatMul" and "bias" not in layer.params and layer.outputs:
                add = _bias_add(layer, consumers.get(layer.outputs[0], []))
                if add is not None:
                    absorbed.add(add.name)
                    layer = _with_bias(layer, add)
                else:
                    layer = _with_split_bias(layer, consumers.get(layer.outputs[0], []), producers)
            explained.append(layer)
        elif any(param.numel > 1 and param.dtype.startswith(("float", "bfloat")) for param in layer.params.values()):
            others.append(layer)
    others = [layer for layer in others if layer.name not in absorbed]
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


def _bias_add(matmul: Layer, consumers: list[Layer]) -> Layer | None:
    weight = matmul.params.get("weight")
    if len(consumers) != 1 or weight is None or len(weight.shape) != 2:
        return None
    add = consumers[0]
    if add.op_type != "Add" or len(add.params) != 1:
        return None
    (param,) = add.params.values()
    return add if param.numel == weight.shape[1] else None


def _with_split_bias(matmul: Layer, consumers: list[Layer], producers: dict[str, tuple[Layer, int]]) -> Layer:
    """``matmul`` with the bias an Add takes from an equal Split of a constant vector, or
    ``matmul`` itself when its Add is no such thing."""
    weight = matmul.params.get("weight")
    if len(consumers) != 1 or weight is None or len(weight.shape) != 2 or consumers[0].op_type != "Add":
        return matmul
    add = consumers[0]
    others = [name for name in add.inputs if name != matmul.outputs[0]]
    if add.params or len(others) != 1 or others[0] not in producers:
        return matmul
    split, position = producers[others[0]]
    if split.op_type != "Split" or len(split.params) != 1 or len(split.inputs) != 1:
        return matmul  # a "split" sizes input (a shape constant) is not kept: sizes unknown
    (whole,) = split.params.values()
    width = weight.shape[1]
    sizes = split.attrs.get("split") or [whole.numel // max(len(split.outputs), 1)] * len(split.outputs)
    if len(whole.shape) != 1 or sum(sizes) != whole.numel or sizes[position] != width:
        return matmul
    start, stop = sum(sizes[:position]), sum(sizes[:position]) + width
    part = Param("bias", (width,), whole.dtype, lambda: whole.array()[start:stop], f"{whole.tensor_name}[{start}:{stop}]")
    merged = Layer(
        matmul.name, matmul.kind, matmul.op_type, matmul.attrs, {**matmul.params, "bias": part},
        matmul.inputs, add.outputs, matmul.hints + add.hints, {**matmul.metadata, "bias_node": add.name},
    )
    merged.index = matmul.index
    return merged


def _with_bias(layer: Layer, add: Layer) -> Layer:
    (bias,) = add.params.values()
    merged = Layer(
        layer.name, layer.kind, layer.op_type, layer.attrs, {**layer.params, "bias": bias},
        layer.inputs, add.outputs, layer.hints + add.hints, {**layer.metadata, "bias_node": add.name},
    )
    merged.index = layer.index
    return merged

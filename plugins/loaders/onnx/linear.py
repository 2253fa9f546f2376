"""Linear layers as ONNX writes them, normalised to one layer each.

``torch.nn.Linear`` computes ``y = x W^T + b`` with ``W`` of shape (out, in). Exporters
write it as

- ``Gemm(x, B, C)``: ``alpha * x op(B) + beta * C`` with ``op(B) = B^T`` when ``transB``;
- ``com.microsoft.FusedMatMul(x, B)``: ``alpha * op(x) op(B)``, ``transA``/``transB``;
- ``MatMul(x, B)`` with ``B = W^T``, followed by ``Add(., b)`` (inputs of rank > 2), or
  by ``Add(., Split(in_proj_bias)[i])`` where the dynamo exporter cuts a
  ``MultiheadAttention`` bias at run time.

Each of these becomes one LINEAR layer that the rest of graphinspect reads without
knowing ONNX: ``attrs[WEIGHT_LAYOUT]`` (:func:`weight_layout`, set when the layer is
built) says whether the weight is stored (out, in) or (in, out)
(:data:`inspector.ir.WEIGHT_LAYOUT`), and :func:`normalise_linears` joins the
bias of a MatMul's Add joins the MatMul as its "bias" param (the Add is not listed on
its own; the joined layer's outputs are the Add's, and it keeps the Add's name in
``metadata["bias_node"]``). A Split's slice is a Param viewing the whole tensor.
"""

from __future__ import annotations

from inspector.ir import IN_OUT, LINEAR, OUT_IN, WEIGHT_LAYOUT, Layer, Param

from .kinds import MATMUL_OPS


def normalise_linears(layers: list[Layer]) -> list[Layer]:
    """``layers`` with every Linear's layout recorded and MatMul biases joined."""
    if not any(_may_take_a_bias(layer) for layer in layers):
        return layers  # no MatMul to join a bias to: the graph's edges are not needed
    consumers: dict[str, list[Layer]] = {}
    producers: dict[str, tuple[Layer, int]] = {}
    for layer in layers:
        for name in layer.inputs:
            consumers.setdefault(name, []).append(layer)
        for position, name in enumerate(layer.outputs):
            producers[name] = (layer, position)
    absorbed: set[int] = set()
    normalised: list[Layer] = []
    for layer in layers:
        if id(layer) in absorbed:
            continue
        if _may_take_a_bias(layer):
            following = consumers.get(layer.outputs[0], [])
            add = _bias_add(layer, following)
            if add is not None:
                absorbed.add(id(add))
                layer = _joined(layer, add, next(iter(add.params.values())))
            else:
                layer = _with_split_bias(layer, following, producers)
        normalised.append(layer)
    return normalised


def _may_take_a_bias(layer: Layer) -> bool:
    """Whether ``layer`` is a MatMul Linear whose bias may be an Add (or a Split) after it."""
    return layer.kind == LINEAR and layer.op_type in MATMUL_OPS and "bias" not in layer.params and bool(layer.outputs)


def weight_layout(op_type: str, attrs: dict, weight_position: int) -> str:
    """:data:`IN_OUT` or :data:`OUT_IN` for a Linear written as ``op_type`` whose weight
    is its input at ``weight_position``."""
    if op_type in ("Gemm", "com.microsoft.FusedGemm", "com.microsoft.FusedMatMul"):
        return OUT_IN if int(attrs.get("transB", 0)) else IN_OUT
    if op_type == "MatMul" and weight_position == 0:
        return OUT_IN  # MatMul(W, x) computes W @ x: W is stored (out, in)
    return IN_OUT if op_type == "MatMul" else OUT_IN


def _bias_add(matmul: Layer, consumers: list[Layer]) -> Layer | None:
    weight = matmul.params.get("weight")
    if len(consumers) != 1 or weight is None or len(weight.shape) != 2:
        return None
    add = consumers[0]
    if add.op_type != "Add" or len(add.params) != 1:
        return None
    (param,) = add.params.values()
    width = weight.shape[1] if matmul.attrs.get(WEIGHT_LAYOUT) == IN_OUT else weight.shape[0]
    return add if param.numel == width else None


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
    width = weight.shape[1] if matmul.attrs.get(WEIGHT_LAYOUT) == IN_OUT else weight.shape[0]
    sizes = split.attrs.get("split") or [whole.numel // max(len(split.outputs), 1)] * len(split.outputs)
    if len(whole.shape) != 1 or sum(sizes) != whole.numel or sizes[position] != width:
        return matmul
    start, stop = sum(sizes[:position]), sum(sizes[:position]) + width
    part = Param(
        "bias",
        (width,),
        whole.dtype,
        lambda: whole.array()[start:stop],
        f"{whole.tensor_name}[{start}:{stop}]",
        view_of=whole,
    )
    return _joined(matmul, add, part)


def _joined(matmul: Layer, add: Layer, bias: Param) -> Layer:
    return Layer(
        matmul.name,
        matmul.kind,
        matmul.op_type,
        matmul.attrs,
        {**matmul.params, "bias": bias},
        matmul.inputs,
        add.outputs,
        matmul.hints + add.hints,
        {**matmul.metadata, "bias_node": add.name},
    )

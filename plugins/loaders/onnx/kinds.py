"""What an ONNX op is (its normalised kind) and what its constant inputs are (param roles).

Op types are domain-qualified for non-default domains ("com.microsoft.FusedConv"),
exactly as :attr:`inspector.ir.Layer.op_type` shows them.

Param roles, by input position (a constant input is an initializer, a Constant node's
output, or either through a chain of Identity nodes):

=====================================  ==============================================
op                                     inputs -> roles
=====================================  ==============================================
Conv, ConvTranspose,                   1 W -> weight, 2 B -> bias
com.microsoft.FusedConv / NhwcConv
Gemm                                   0 A -> input_0, 1 B -> weight, 2 C -> bias
MatMul                                 the constant operand -> weight (B when both
                                       are; A is then input_0)
BatchNormalization                     1 -> weight, 2 -> bias, 3 -> running_mean,
                                       4 -> running_var
LayerNormalization, GroupNormalization,  1 scale -> weight, 2 bias -> bias
InstanceNormalization
SimplifiedLayerNormalization           1 scale -> weight
com.microsoft.SkipLayerNormalization   2 gamma -> weight, 3 beta -> bias,
                                       4 bias -> input_bias
PRelu                                  1 slope -> weight
Gather                                 0 data -> weight (when not shape-like)
com.microsoft.Attention                1 -> weight, 2 -> bias
com.microsoft.MultiHeadAttention       3 -> bias
LSTM, GRU, RNN                         1 W -> weight_ih, 2 R -> weight_hh, 3 B -> bias
Add, Sub / Mul, Div / Pow              first kept constant -> bias / scale / constant
anything else                          i -> input_<i>
=====================================  ==============================================

Role inputs in the table (all but the last two rows, and the Gather rule) are always
params, whatever their size. Every other constant input is a param only when it is not
shape-like (:func:`is_shape_like`): scalars, integer or boolean tensors of at most
:data:`SMALL_INT_NUMEL` elements, and the shape/axes/scales inputs of shape ops
(Reshape shape, Slice starts, Resize scales, ...) are skipped, so that ``inspect`` is
not flooded with the graph's bookkeeping constants.
"""

from __future__ import annotations

from inspector.ir import (
    ACTIVATION,
    ATTENTION,
    BATCHNORM,
    CONSTANT,
    CONV,
    CONV_TRANSPOSE,
    ELEMENTWISE,
    EMBEDDING,
    GROUPNORM,
    INSTANCENORM,
    LAYERNORM,
    LINEAR,
    RECURRENT,
    UNSUPPORTED,
)

SMALL_INT_NUMEL = 64
"""Integer/bool constants up to this size, outside role inputs, are taken as shape data."""

_CONV_ROLES = {1: "weight", 2: "bias"}
_NORM_ROLES = {1: "weight", 2: "bias"}
_RNN_ROLES = {1: "weight_ih", 2: "weight_hh", 3: "bias"}

ROLES: dict[str, dict[int, str]] = {
    "Conv": _CONV_ROLES,
    "ConvTranspose": _CONV_ROLES,
    "com.microsoft.FusedConv": _CONV_ROLES,
    "com.microsoft.NhwcConv": _CONV_ROLES,
    "Gemm": {0: "input_0", 1: "weight", 2: "bias"},
    "com.microsoft.FusedGemm": {0: "input_0", 1: "weight", 2: "bias"},
    "com.microsoft.nchwc.Conv": _CONV_ROLES,
    "BatchNormalization": {1: "weight", 2: "bias", 3: "running_mean", 4: "running_var"},
    "LayerNormalization": _NORM_ROLES,
    "GroupNormalization": _NORM_ROLES,
    "InstanceNormalization": _NORM_ROLES,
    "SimplifiedLayerNormalization": {1: "weight"},
    "com.microsoft.SimplifiedLayerNormalization": {1: "weight"},
    "com.microsoft.SkipLayerNormalization": {2: "weight", 3: "bias", 4: "input_bias"},
    "com.microsoft.SkipSimplifiedLayerNormalization": {2: "weight", 3: "input_bias"},
    "PRelu": {1: "weight"},
    "com.microsoft.Attention": {1: "weight", 2: "bias"},
    "com.microsoft.MultiHeadAttention": {3: "bias"},
    "LSTM": _RNN_ROLES,
    "GRU": _RNN_ROLES,
    "RNN": _RNN_ROLES,
}
"""Role by input position for ops whose constant inputs are parameters."""

ELEMENTWISE_ROLES = {"Add": "bias", "Sub": "bias", "Mul": "scale", "Div": "scale", "Pow": "constant"}

# Inputs that are shapes, axes, indices or resampling factors, never parameters.
_SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 2, 3),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Split": (1,),
    "TopK": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "ReduceProd": (1,),
    "ReduceL2": (1,),
    "Clip": (1, 2),
}

_KINDS = {
    "Conv": CONV,
    "com.microsoft.FusedConv": CONV,
    "com.microsoft.NhwcConv": CONV,
    "ConvTranspose": CONV_TRANSPOSE,
    "Gemm": LINEAR,
    "com.microsoft.FusedGemm": LINEAR,
    # ONNX Runtime's blocked layout (ORT_ENABLE_ALL): weights reordered into channel
    # blocks whose size depends on the CPU that optimised the file.
    "com.microsoft.nchwc.Conv": UNSUPPORTED,
    "BatchNormalization": BATCHNORM,
    "LayerNormalization": LAYERNORM,
    "SimplifiedLayerNormalization": LAYERNORM,
    "com.microsoft.SimplifiedLayerNormalization": LAYERNORM,
    "com.microsoft.SkipLayerNormalization": LAYERNORM,
    "com.microsoft.SkipSimplifiedLayerNormalization": LAYERNORM,
    "GroupNormalization": GROUPNORM,
    "com.microsoft.GroupNorm": GROUPNORM,
    "InstanceNormalization": INSTANCENORM,
    "Attention": ATTENTION,
    "com.microsoft.Attention": ATTENTION,
    "com.microsoft.MultiHeadAttention": ATTENTION,
    "Constant": CONSTANT,
    "LSTM": RECURRENT,
    "GRU": RECURRENT,
    "RNN": RECURRENT,
}
_ACTIVATIONS = (
    "Relu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Gelu", "LeakyRelu", "Clip", "Elu",
    "Selu", "Celu", "Softplus", "Softsign", "Mish", "PRelu", "ThresholdedRelu", "Swish",
    "com.microsoft.Gelu", "com.microsoft.FastGelu", "com.microsoft.BiasGelu", "com.microsoft.QuickGelu",
)  # fmt: skip
_KINDS.update({op: ACTIVATION for op in _ACTIVATIONS})
_KINDS.update({op: ELEMENTWISE for op in ELEMENTWISE_ROLES})


MATMUL_OPS = ("MatMul", "com.microsoft.FusedMatMul")


def param_roles(op_type: str, constants: dict[int, tuple[str, int]]) -> dict[int, str]:
    """The role of each constant input that is a param, by position.

    ``constants`` maps the position of every constant input to its (dtype, element
    count); positions left out of the result are shape-like constants, not params.
    """
    table = ROLES.get(op_type, {})
    if op_type in MATMUL_OPS and constants:
        table = {1 if 1 in constants else min(constants): "weight"}
    elementwise_role = ELEMENTWISE_ROLES.get(op_type)
    roles: dict[int, str] = {}
    for position, (dtype, numel) in sorted(constants.items()):
        role = table.get(position)
        if role is None:
            if is_shape_like(op_type, position, dtype, numel):
                continue
            if op_type == "Gather" and position == 0:
                role = "weight"
            elif elementwise_role is not None and elementwise_role not in roles.values():
                role = elementwise_role
            else:
                role = f"input_{position}"
        roles[position] = role
    return roles


def qualified_op_type(op_type: str, domain: str) -> str:
    """``op_type`` prefixed with its domain unless the domain is the default one."""
    return op_type if domain in ("", "ai.onnx") else f"{domain}.{op_type}"


def layer_kind(op_type: str, roles: set[str]) -> str:
    """The normalised kind of a node, given its qualified op type and its param roles.

    MatMul is a linear layer and Gather an embedding only when they hold a weight.
    """
    if op_type in MATMUL_OPS:
        return LINEAR if "weight" in roles else op_type.lower()
    if op_type == "Gather":
        return EMBEDDING if "weight" in roles else "gather"
    return _KINDS.get(op_type, op_type.lower())


def is_dtype_integral(dtype: str) -> bool:
    return dtype == "bool" or dtype.startswith(("int", "uint"))


def is_shape_like(op_type: str, position: int, dtype: str, numel: int) -> bool:
    """Whether a constant input outside the role table is graph bookkeeping, not a param."""
    if position in _SHAPE_INPUTS.get(op_type, ()):
        return True
    if dtype in ("string", "undefined") or numel <= 1:
        return True
    return is_dtype_integral(dtype) and numel <= SMALL_INT_NUMEL

"""How targets store what PyTorch layers hold: shared by the transform plugins.

Not a plugin itself (it implements no hook); the transforms import it.

Linear layouts. A ``torch.nn.Linear`` computes ``y = x W^T + b`` with ``W`` of shape
(out, in). Exporters write it as

- ``Gemm(A=x, B, C)`` computing ``alpha * A op(B) + beta * C`` where ``op(B) = B^T`` if
  ``transB`` else ``B``: so ``B = W / alpha`` (transB=1) or ``B = W^T / alpha``
  (transB=0), and ``C = b / beta``;
- ``MatMul(x, B)`` with ``B = W^T`` (in, out), plus an ``Add`` of ``b`` (the ONNX
  loader joins that Add's constant to the MatMul as its "bias").

Which layout a target uses is its ``attrs[WEIGHT_LAYOUT]``, set by the loader
(:data:`inspector.ir.WEIGHT_LAYOUT`).

Conv attributes. ONNX names them ``group``/``strides``/``dilations``/``kernel_shape``;
PyTorch ``groups``/``stride``/``dilation``/``kernel_size``. A source whose attributes
are unknown (a bare state_dict) is not contradicted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

from inspector.ir import IN_OUT, WEIGHT_LAYOUT, Layer


def linear_is_transposed(target: Layer | None) -> bool:
    """Whether ``target`` stores a Linear weight as (in, out)."""
    return target is not None and target.attrs.get(WEIGHT_LAYOUT) == IN_OUT


def linear_to_target(
    weight: np.ndarray, bias: np.ndarray | None, target: Layer | None, alpha_in_weight: bool = True
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(expected weight, expected bias, output-channel axis) of a Linear's ``W``/``b`` in
    ``target``'s layout (the PyTorch layout when ``target`` is None).

    ``alpha_in_weight``: the target's ``alpha`` scales the stored weight back to ``W``
    (B = W / alpha); off, ``alpha`` is a scalar multiply of the model that ONNX Runtime
    fused into the op (MatMulScaleFusion into FusedMatMul) and B = W as it is."""
    attrs = target.attrs if target is not None else {}
    alpha = float(attrs.get("alpha", 1.0)) if alpha_in_weight else 1.0
    beta = float(attrs.get("beta", 1.0))
    transposed = linear_is_transposed(target)
    expected_weight = (weight.T if transposed else weight) / alpha
    expected_bias = None if bias is None else bias / beta
    if expected_bias is not None and target is not None and "bias" in target.params:
        stored = target.params["bias"].shape
        if int(np.prod(stored)) == expected_bias.size:
            expected_bias = expected_bias.reshape(stored)
    return expected_weight, expected_bias, 1 if transposed else 0


def _as_tuple(value, rank: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return (int(value),) * rank
    return tuple(map(int, value))


_CONV_ATTRS = (("group", "groups"), ("strides", "stride"), ("dilations", "dilation"))
"""(ONNX attribute, PyTorch attribute) a Conv and its source conv must agree on."""


def conv_attrs_disagree(target: Layer, conv: Layer) -> str | None:
    """Why the target Conv cannot be this source conv (groups/stride/dilation), or None."""
    target_attrs, source_attrs = target.attrs, conv.attrs
    for target_key, source_key in _CONV_ATTRS:
        if target_key not in target_attrs or source_key not in source_attrs:
            continue
        target_value, source_value = target_attrs[target_key], source_attrs[source_key]
        if target_key == "group":
            target_value, source_value = int(target_value), int(source_value)
        else:
            weight = conv.params.get("weight")
            rank = max(len(weight.shape) - 2, 1) if weight is not None else 2
            target_value, source_value = _as_tuple(target_value, rank), _as_tuple(source_value, rank)
        if target_value != source_value:
            return f"{source_key} {source_value} != {target_key} {target_value}"
    return None


def float64(param) -> np.ndarray:
    """A param's values as float64 (the precision every re-computation uses)."""
    return np.asarray(param.array(), dtype=np.float64)


def arrangements(values: np.ndarray, shape: tuple[int, ...]) -> Iterable[np.ndarray]:
    """``values`` with its axes permuted (size-1 axes dropped first) to give ``shape``."""
    squeezed = values.reshape([d for d in values.shape if d != 1])
    wanted = tuple(d for d in shape if d != 1)
    if squeezed.ndim > 5:
        return
    for permutation in itertools.permutations(range(squeezed.ndim)):
        arranged = squeezed.transpose(permutation)
        if arranged.shape == wanted:
            yield arranged.reshape(shape)


def closest(options: list[np.ndarray], actual: np.ndarray) -> np.ndarray:
    """The option nearest ``actual`` elementwise (max abs difference): how a transform picks
    among layouts that all fit the target's shape. A layout is never a value choice: a
    changed element stays a difference in every one."""
    return min(options, key=lambda option: float(np.max(np.abs(option - actual))) if option.size else 0.0)

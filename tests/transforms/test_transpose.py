"""transpose on numpy layers: a Linear's W (out, in) and b in the layout an exporter chose.

    Gemm computes alpha * x op(B) + beta * C, op(B) = B^T if transB else B, and must equal
    x W^T + b:   transB=1: B = W / alpha     transB=0: B = W^T / alpha     C = b / beta
    MatMul(x, B) + Add(b):  B = W^T, bias = b

The layout is ``attrs[WEIGHT_LAYOUT]``: "out_in" (transB=1) or "in_out" (transB=0, MatMul).
"""

from __future__ import annotations

import numpy as np
import pytest

from inspector.ir import IN_OUT, LINEAR, OUT_IN, WEIGHT_LAYOUT
from inspector.results import MISMATCH, OK
from tests.support.layers import (
    applicable,
    check_reasons,
    describe,
    diff,
    layer,
    layer_diff,
    param_diff,
    randn,
    rng,
    source,
    tampered,
    target,
    transform,
)

TRANSPOSE = "transpose"


def _linear(r, out=6, inp=4, dtype=np.float32):
    w, b = randn(r, out, inp, dtype=dtype), randn(r, out, dtype=dtype)
    return w, b, source(layer("head.fc", LINEAR, "Linear", weight=w, bias=b))


def gemm(weight, bias, trans_b, alpha=1.0, beta=1.0, name="/head/fc/Gemm"):
    attrs = {"transB": trans_b, "alpha": alpha, "beta": beta, WEIGHT_LAYOUT: OUT_IN if trans_b else IN_OUT}
    return layer(name, LINEAR, "Gemm", attrs, hints=("head.fc",), weight=weight, bias=bias)


def _64(array):
    return np.asarray(array, dtype=np.float64)


@pytest.mark.parametrize(
    "trans_b, alpha, beta, note",
    [
        (0, 1.0, 1.0, "Gemm stores W^T"),
        (0, 0.5, 1.0, "Gemm stores W^T / alpha 0.5"),
        (1, 2.0, 0.5, "Gemm stores W / alpha 2"),
        (1, 1.0, 4.0, "Gemm stores W"),
    ],
)
def test_gemm_layouts_and_scales(trans_b, alpha, beta, note):
    w, b, src = _linear(rng(0))
    stored_weight = (_64(w) if trans_b else _64(w).T) / alpha
    stored_bias = _64(b) / beta
    tgt = gemm(stored_weight.astype(np.float32), stored_bias.astype(np.float32), trans_b, alpha, beta)
    result = diff(src, target(tgt))
    entry = layer_diff(result, "/head/fc/Gemm")
    assert (entry.status, entry.transform, entry.sources, entry.note) == (OK, TRANSPOSE, ["head.fc"], note), describe(
        result
    )
    (candidate,) = applicable(transform(TRANSPOSE), src, tgt, "head.fc")
    reproduction = transform(TRANSPOSE).reproduce(tgt, candidate)
    np.testing.assert_allclose(reproduction.params["weight"], stored_weight, rtol=1e-12)
    np.testing.assert_allclose(reproduction.params["bias"], stored_bias, rtol=1e-12)
    assert reproduction.channel_axes == {"weight": 0 if trans_b else 1, "bias": 0}


def test_matmul_with_its_add_stores_the_transpose():
    w, b, src = _linear(rng(1))
    tgt = layer("/head/fc/MatMul", LINEAR, "MatMul", {WEIGHT_LAYOUT: IN_OUT}, hints=("head.fc",), weight=w.T, bias=b)
    entry = layer_diff(diff(src, target(tgt)), "/head/fc/MatMul")
    assert (entry.status, entry.transform, entry.note) == (OK, TRANSPOSE, "MatMul stores W^T")
    assert param_diff(entry, "weight").max_abs_err == 0.0


def test_a_bias_stored_as_a_row():
    w, b, src = _linear(rng(2))
    tgt = gemm(w.T, b.reshape(1, 6), 0)
    assert layer_diff(diff(src, target(tgt)), "/head/fc/Gemm").status == OK


def test_a_half_precision_linear_stored_transposed_in_fp32():
    w, b, src = _linear(rng(3), dtype=np.float16)
    tgt = gemm(w.T.astype(np.float32), b.astype(np.float32), 0)
    entry = layer_diff(diff(src, target(tgt)), "/head/fc/Gemm")
    assert (entry.status, entry.transform) == (OK, TRANSPOSE)
    assert param_diff(entry, "weight").tolerance.rtol == 2e-3  # fp16's


def test_a_square_linear_stored_transposed_is_not_identity():
    w, b, src = _linear(rng(4), out=5, inp=5)
    entry = layer_diff(diff(src, target(gemm(w.T, b, 0))), "/head/fc/Gemm")
    assert (entry.status, entry.transform) == (OK, TRANSPOSE)


def test_a_square_linear_left_untransposed_in_a_transposing_layout_is_a_mismatch():
    # The exporter said (in, out) but wrote W itself: x @ W instead of x @ W^T.
    w, b, src = _linear(rng(5), out=5, inp=5)
    entry = layer_diff(diff(src, target(gemm(w, b, 0))), "/head/fc/Gemm")
    assert entry.status == MISMATCH


def test_the_linears_of_a_module_anchor():
    r = rng(6)
    w = randn(r, 3, 4)
    src = source(
        layer("head.fc", LINEAR, "Linear", weight=w),
        layer("head.norm", "layernorm", "LayerNorm", weight=np.ones(3, np.float32)),
    )
    tgt = layer("mm", LINEAR, "MatMul", {WEIGHT_LAYOUT: IN_OUT}, hints=("head",), weight=w.T)
    assert [c.names for c in applicable(transform(TRANSPOSE), src, tgt, "head")] == [["head.fc"]]


# ----------------------------------------------------------------------------- does not apply


def test_check_says_why_it_does_not_apply():
    w, b, src = _linear(rng(7))
    same_layout = gemm(w, b, 1)
    assert check_reasons(transform(TRANSPOSE), src, same_layout, "head.fc") == [
        "same layout: that is identity (or a cast)"
    ]
    claims_in_out = layer("g", LINEAR, "Gemm", {"transB": 0, WEIGHT_LAYOUT: IN_OUT}, hints=("head.fc",), weight=w)
    assert check_reasons(transform(TRANSPOSE), src, claims_in_out, "head.fc") == [
        "weight shape [6, 4] != [4, 6] in this layout"
    ]
    vector = source(layer("head.fc", LINEAR, "Linear", weight=np.ones(6, np.float32)))
    assert check_reasons(transform(TRANSPOSE), vector, gemm(w.T, b, 0), "head.fc") == ["no 2-D weight"]


def test_a_layout_that_does_not_fit_leaves_the_layer_unexplained():
    w, b, src = _linear(rng(8))
    tgt = layer("g", LINEAR, "Gemm", {"transB": 0, WEIGHT_LAYOUT: IN_OUT}, hints=("head.fc",), weight=w, bias=b)
    entry = layer_diff(diff(src, target(tgt)), "g")
    assert entry.status == "unmatched"
    assert "transpose(head.fc): weight shape [6, 4] != [4, 6] in this layout" in entry.reasons


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("trans_b, axis", [(0, 1), (1, 0)])
def test_two_percent_in_one_output_channel_is_caught(trans_b, axis):
    w, b, src = _linear(rng(9))
    stored = (_64(w) if trans_b else _64(w).T) / 2.0
    tgt = gemm(tampered(stored, 3, axis=axis).astype(np.float32), b, trans_b, alpha=2.0)
    result = diff(src, target(tgt))
    entry = layer_diff(result, "/head/fc/Gemm")
    assert (entry.status, entry.transform) == (MISMATCH, TRANSPOSE), describe(result)
    assert param_diff(entry, "weight").bad_channels == [3]

"""identity on numpy layers: t = s, same dtype, same layout; an absent bias is a zero bias.

It pairs a target layer with one source layer of the same kind (Conv with Conv2d, a kept
BatchNormalization with BatchNorm2d, Gather with Embedding, Gemm(transB=1, alpha=beta=1)
with Linear), and a non-weight constant (a Mul's) param by param with a same-sized
source parameter.
"""

from __future__ import annotations

import numpy as np
import pytest

from inspector.ir import BATCHNORM, CONV, EMBEDDING, IN_OUT, LAYERNORM, LINEAR, OUT_IN, WEIGHT_LAYOUT
from inspector.results import MISMATCH, OK
from tests.support.layers import (
    applicable,
    bn_stats,
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

IDENTITY = "identity"


def _conv(r, bias=True, **attrs):
    w = randn(r, 6, 3, 3, 3)
    b = randn(r, 6) if bias else None
    return (
        w,
        b,
        source(
            layer(
                "c", CONV, "Conv2d", {"groups": 1, "stride": (1, 1), **attrs}, weight=w, **({"bias": b} if bias else {})
            )
        ),
    )


def test_a_conv_kept_as_it_is():
    w, b, src = _conv(rng(0))
    tgt = layer("/c/Conv", CONV, "Conv", {"group": 1, "strides": [1, 1]}, hints=("c",), weight=w, bias=b)
    result = diff(src, target(tgt))
    entry = layer_diff(result, "/c/Conv")
    assert (entry.status, entry.transform, entry.sources, entry.note) == (OK, IDENTITY, ["c"], "")
    assert [(p.name, p.max_abs_err, p.source_tensor) for p in entry.params] == [
        ("weight", 0.0, "c.weight"),
        ("bias", 0.0, "c.bias"),
    ]
    assert result.verdict == "faithful" and result.findings == []
    (candidate,) = applicable(transform(IDENTITY), src, tgt, "c")
    reproduction = transform(IDENTITY).reproduce(tgt, candidate)
    assert reproduction.params["weight"].dtype == np.float64
    np.testing.assert_array_equal(reproduction.params["weight"], w.astype(np.float64))


def test_a_batchnorm_kept_as_a_node_is_explained_and_flagged():
    r = rng(1)
    bn = bn_stats(r, 5)
    src = source(layer("bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn))
    tgt = layer("/bn/BatchNormalization", BATCHNORM, "BatchNormalization", {"epsilon": 1e-5}, hints=("bn",), **bn)
    result = diff(src, target(tgt))
    entry = layer_diff(result, "/bn/BatchNormalization")
    assert (entry.status, entry.transform) == (OK, IDENTITY)
    assert [p.name for p in entry.params] == ["weight", "bias", "running_mean", "running_var"]
    assert result.findings == []  # no conv feeds it: nothing could have been folded
    conv = layer("/conv/Conv", "conv", "Conv", outputs=("c",), weight=randn(r, 5, 5, 1, 1))
    after_conv = layer(
        "/bn/BatchNormalization", BATCHNORM, "BatchNormalization", {"epsilon": 1e-5}, hints=("bn",), inputs=("c",), **bn
    )
    result = diff(src, target(conv, after_conv))
    assert [f.code for f in result.findings if f.severity == "warning"] == ["unfolded_batchnorm"]


@pytest.mark.parametrize(
    "kind, source_op, target_op, shape",
    [(LAYERNORM, "LayerNorm", "LayerNormalization", (16,)), (EMBEDDING, "Embedding", "Gather", (50, 8))],
)
def test_other_weight_layers(kind, source_op, target_op, shape):
    w = randn(rng(2), *shape)
    src = source(layer("m", kind, source_op, weight=w))
    entry = layer_diff(diff(src, target(layer("n", kind, target_op, hints=("m",), weight=w))), "n")
    assert (entry.status, entry.transform) == (OK, IDENTITY)


def test_a_linear_as_gemm_with_trans_b_and_unit_alpha_beta():
    r = rng(3)
    w, b = randn(r, 6, 4), randn(r, 6)
    src = source(layer("fc", LINEAR, "Linear", weight=w, bias=b))
    tgt = layer(
        "g",
        LINEAR,
        "Gemm",
        {"transB": 1, "alpha": 1.0, "beta": 1.0, WEIGHT_LAYOUT: OUT_IN},
        hints=("fc",),
        weight=w,
        bias=b,
    )
    entry = layer_diff(diff(src, target(tgt)), "g")
    assert (entry.status, entry.transform) == (OK, IDENTITY)


def test_a_constant_is_paired_with_a_parameter_of_its_size():
    r = rng(4)
    gamma = r.uniform(0.5, 1.5, 8).astype(np.float32)
    src = source(layer("blk.ls", "layerscale", "LayerScale", gamma=gamma, other=np.zeros(3, np.float32)))
    tgt = layer("mul", "mul", "Mul", hints=("blk.ls",), scale=gamma.reshape(8, 1, 1))
    entry = layer_diff(diff(src, target(tgt)), "mul")
    assert (entry.status, entry.transform, entry.variant) == (OK, IDENTITY, "gamma")
    assert param_diff(entry, "scale").source_tensor == "blk.ls.gamma"


# ----------------------------------------------------------------------------- bias


def test_a_zero_bias_in_the_target_stands_for_none_in_the_source():
    w, _, src = _conv(rng(5), bias=False)
    tgt = layer("n", CONV, "Conv", hints=("c",), weight=w, bias=np.zeros(6, np.float32))
    entry = layer_diff(diff(src, target(tgt)), "n")
    assert (entry.status, entry.transform) == (OK, IDENTITY)
    assert param_diff(entry, "bias").source_tensor is None


def test_a_bias_the_source_does_not_have_is_a_difference():
    w, _, src = _conv(rng(6), bias=False)
    bias = np.zeros(6, np.float32)
    bias[2] = 0.5
    entry = layer_diff(diff(src, target(layer("n", CONV, "Conv", hints=("c",), weight=w, bias=bias))), "n")
    assert entry.status == MISMATCH and param_diff(entry, "bias").bad_channels == [2]


def test_a_zero_bias_in_the_source_may_be_left_out():
    w = randn(rng(7), 6, 3, 3, 3)
    src = source(layer("c", CONV, "Conv2d", weight=w, bias=np.zeros(6, np.float32)))
    entry = layer_diff(diff(src, target(layer("n", CONV, "Conv", hints=("c",), weight=w))), "n")
    assert (entry.status, entry.transform) == (OK, IDENTITY)


def test_a_dropped_source_bias_is_a_difference():
    w, b, src = _conv(rng(8), bias=True)
    result = diff(src, target(layer("n", CONV, "Conv", hints=("c",), weight=w)))
    entry = layer_diff(result, "n")
    assert entry.status == MISMATCH, describe(result)
    assert param_diff(entry, "bias").status == MISMATCH


# ----------------------------------------------------------------------------- does not apply


@pytest.mark.parametrize(
    "target_weight, attrs, reason",
    [
        (np.zeros((6, 3, 1, 1), np.float32), {}, "weight has 18 elements, the source 162"),
        (np.zeros((6, 27, 1, 1), np.float32), {}, "weight shape 6x27x1x1 != 6x3x3x3"),
        (np.zeros((6, 3, 3, 3), np.float16), {}, "dtype float32 -> float16: that is a cast"),
        (np.zeros((6, 3, 3, 3), np.float32), {"group": 3}, "groups 1 != group 3"),
        (np.zeros((6, 3, 3, 3), np.float32), {"strides": [2, 2]}, "stride (1, 1) != strides (2, 2)"),
    ],
)
def test_check_says_why_a_conv_is_not_kept(target_weight, attrs, reason):
    _, _, src = _conv(rng(9), bias=False)
    tgt = layer("n", CONV, "Conv", attrs, hints=("c",), weight=target_weight)
    assert check_reasons(transform(IDENTITY), src, tgt, "c") == [reason]


@pytest.mark.parametrize(
    "attrs, stored, reason",
    [
        ({WEIGHT_LAYOUT: IN_OUT}, lambda w: w.T, "the target stores the weight transposed"),
        ({WEIGHT_LAYOUT: OUT_IN, "alpha": 2.0}, lambda w: w / 2, "Gemm alpha/beta scale the weights"),
        ({WEIGHT_LAYOUT: OUT_IN, "beta": 0.5}, lambda w: w, "Gemm alpha/beta scale the weights"),
    ],
)
def test_check_says_why_a_square_linear_is_not_kept(attrs, stored, reason):
    w = randn(rng(10), 4, 4)  # square: the shape cannot tell the layouts apart
    src = source(layer("fc", LINEAR, "Linear", weight=w))
    tgt = layer("g", LINEAR, "Gemm", attrs, hints=("fc",), weight=stored(w))
    assert check_reasons(transform(IDENTITY), src, tgt, "fc") == [reason]


def test_a_constant_with_no_parameter_of_its_size_has_no_candidate():
    src = source(layer("blk.ls", "layerscale", "LayerScale", gamma=np.ones(8, np.float32)))
    tgt = layer("mul", "mul", "Mul", hints=("blk.ls",), scale=np.ones(5, np.float32))
    assert check_reasons(transform(IDENTITY), src, tgt, "blk.ls") == []


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("channel", [0, 4])
def test_two_percent_in_one_channel_is_caught(channel):
    w, b, src = _conv(rng(11))
    result = diff(src, target(layer("n", CONV, "Conv", hints=("c",), weight=tampered(w, channel), bias=b)))
    entry = layer_diff(result, "n")
    assert (entry.status, entry.transform) == (MISMATCH, IDENTITY), describe(result)
    assert param_diff(entry, "weight").bad_channels == [channel]
    assert result.verdict == "differs"

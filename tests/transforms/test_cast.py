"""cast on numpy layers: t = dtype(s), the tolerance of the less precise dtype.

An fp16/bf16 checkpoint exported as fp32 holds exactly the checkpoint's values widened;
an fp32 model exported as fp16 holds them rounded to fp16's precision.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from inspector.compare import DTYPE_TOLERANCES
from inspector.ir import BATCHNORM, CONV, LINEAR, OUT_IN, WEIGHT_LAYOUT
from inspector.results import MISMATCH, OK, Tolerance
from tests.support.layers import (
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

CAST = "cast"
BF16 = ml_dtypes.bfloat16


@pytest.mark.parametrize(
    "source_dtype, target_dtype, tolerance_of",
    [
        (np.float16, np.float32, "float16"),  # an Ultralytics fp16 checkpoint, exported as fp32
        (BF16, np.float32, "bfloat16"),
        (np.float32, np.float16, "float16"),  # exported in half precision
        (np.float32, np.float64, "float32"),
    ],
)
def test_a_conv_in_another_dtype(source_dtype, target_dtype, tolerance_of):
    r = rng(0)
    w, b = randn(r, 6, 3, 3, 3, dtype=source_dtype), randn(r, 6, dtype=source_dtype)
    src = source(layer("c", CONV, "Conv2d", weight=w, bias=b))
    # The export's values: the source's, converted (rounded to nearest when narrowing).
    tgt = layer("/c/Conv", CONV, "Conv", hints=("c",), weight=w.astype(target_dtype), bias=b.astype(target_dtype))
    result = diff(src, target(tgt))
    entry = layer_diff(result, "/c/Conv")
    source_name, target_name = np.dtype(source_dtype).name, np.dtype(target_dtype).name
    assert (entry.status, entry.transform, entry.note) == (OK, CAST, f"{source_name} -> {target_name}"), describe(
        result
    )
    assert param_diff(entry, "weight").tolerance == DTYPE_TOLERANCES[tolerance_of]
    assert result.by_transform() == {"cast": 1}


def test_the_tolerances_are_those_of_the_dtypes():
    assert DTYPE_TOLERANCES["float32"] == Tolerance(1e-4, 1e-6)
    assert DTYPE_TOLERANCES["float16"].rtol > DTYPE_TOLERANCES["float32"].rtol
    assert DTYPE_TOLERANCES["bfloat16"].rtol > DTYPE_TOLERANCES["float16"].rtol


def test_several_parameters_of_one_layer():
    bn = bn_stats(rng(1), 4, dtype=np.float16)
    src = source(layer("bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-3}, **bn))
    tgt = layer("n", BATCHNORM, "BatchNormalization", hints=("bn",), **{k: v.astype(np.float32) for k, v in bn.items()})
    entry = layer_diff(diff(src, target(tgt)), "n")
    assert (entry.status, entry.transform, entry.note) == (OK, CAST, "float16 -> float32")


def test_a_half_precision_linear_as_gemm():
    r = rng(2)
    w = randn(r, 5, 7, dtype=np.float16)
    src = source(layer("fc", LINEAR, "Linear", weight=w))
    tgt = layer("g", LINEAR, "Gemm", {"transB": 1, WEIGHT_LAYOUT: OUT_IN}, hints=("fc",), weight=w.astype(np.float32))
    assert (layer_diff(diff(src, target(tgt)), "g").transform) == CAST


# ----------------------------------------------------------------------------- does not apply


def _pair(source_dtype, target_dtype, **target_attrs):
    w = randn(rng(3), 4, 2, 3, 3, dtype=source_dtype)
    src = source(layer("c", CONV, "Conv2d", {"groups": 1}, weight=w))
    return src, layer("n", CONV, "Conv", target_attrs, hints=("c",), weight=w.astype(target_dtype))


def test_the_same_dtype_is_no_cast_and_another_is_no_identity():
    src, same = _pair(np.float32, np.float32)
    assert check_reasons(transform(CAST), src, same, "c") == ["dtype float32 -> float32 is no cast"]
    src, widened = _pair(np.float16, np.float32)
    assert check_reasons(transform("identity"), src, widened, "c") == ["dtype float16 -> float32: that is a cast"]
    assert check_reasons(transform(CAST), src, widened, "c") == [None]


def test_cast_checks_shapes_and_attributes_as_identity_does():
    src, grouped = _pair(np.float16, np.float32, group=2)
    assert check_reasons(transform(CAST), src, grouped, "c") == ["groups 1 != group 2"]
    wrong = layer("n", CONV, "Conv", hints=("c",), weight=np.zeros((4, 2, 1, 1), np.float32))
    assert check_reasons(transform(CAST), src, wrong, "c") == ["weight has 8 elements, the source 72"]


def test_a_cast_is_not_a_licence_to_round_further():
    # Rounding to bf16 moves a value by up to 2^-8 of itself: within bf16's tolerance, but
    # beyond fp16's (fp16 itself rounds by at most 2^-11). Values stored as fp16 claim
    # fp16's precision and are judged by it.
    w = randn(rng(4), 64, 8)
    src = source(layer("fc", LINEAR, "Linear", weight=w))
    as_bf16 = layer("g", LINEAR, "Gemm", {"transB": 1, WEIGHT_LAYOUT: OUT_IN}, hints=("fc",), weight=w.astype(BF16))
    assert layer_diff(diff(src, target(as_bf16)), "g").status == OK
    # The same bf16-rounded values stored as fp16 are judged at fp16's tolerance: too far.
    as_fp16 = layer(
        "g",
        LINEAR,
        "Gemm",
        {"transB": 1, WEIGHT_LAYOUT: OUT_IN},
        hints=("fc",),
        weight=w.astype(BF16).astype(np.float16),
    )
    assert layer_diff(diff(src, target(as_fp16)), "g").status == MISMATCH


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("source_dtype", [np.float16, BF16])
def test_two_percent_in_one_channel_is_caught(source_dtype):
    w = randn(rng(5), 8, 4, 3, 3, dtype=source_dtype)
    src = source(layer("c", CONV, "Conv2d", weight=w))
    stored = tampered(w.astype(np.float32), 6)
    result = diff(src, target(layer("n", CONV, "Conv", hints=("c",), weight=stored)))
    entry = layer_diff(result, "n")
    assert (entry.status, entry.transform) == (MISMATCH, CAST), describe(result)
    assert param_diff(entry, "weight").bad_channels == [6]

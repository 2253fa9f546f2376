"""split_qkv on numpy layers: nn.MultiheadAttention's packed projection cut into q, k, v.

    in_proj_weight (3E, E), in_proj_bias (3E):
    W_q = rows [0, E),  W_k = rows [E, 2E),  W_v = rows [2E, 3E)   (same rows of the bias)

each stored as a Linear in the target's layout (a MatMul holds W^T); the whole block at
once when q, k and v are one tensor; ORT's com.microsoft.Attention holds it as (E, 3E).
With kdim/vdim != E PyTorch keeps q_proj_weight (E, E), k_proj_weight (E, kdim) and
v_proj_weight (E, vdim) instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from inspector.ir import ATTENTION, IN_OUT, LINEAR, OUT_IN, WEIGHT_LAYOUT
from inspector.results import MISMATCH, OK
from tests.support.layers import (
    applicable,
    candidates,
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

SPLIT = "split_qkv"
E = 4


def _attention(r, with_bias=True):
    packed, bias = randn(r, 3 * E, E), randn(r, 3 * E)
    extra = {"in_proj_bias": bias} if with_bias else {}
    src = source(
        layer("enc.attn", ATTENTION, "MultiheadAttention", in_proj_weight=packed, **extra),
        layer("enc.attn.out_proj", LINEAR, "NonDynamicallyQuantizableLinear", weight=randn(r, E, E), bias=randn(r, E)),
    )
    return packed, bias if with_bias else None, src


def rows(part: str) -> slice:
    start = "qkv".index(part) * E
    return slice(start, start + E)


def matmul(name, weight, bias=None, hints=("enc.attn",)):
    extra = {} if bias is None else {"bias": bias}
    return layer(name, LINEAR, "MatMul", {WEIGHT_LAYOUT: IN_OUT}, hints=hints, weight=weight, **extra)


def test_q_k_v_slices_as_matmuls():
    packed, bias, src = _attention(rng(0))
    tgt = target(*[matmul(f"/enc/attn/{part}/MatMul", packed[rows(part)].T, bias[rows(part)]) for part in "qkv"])
    result = diff(src, tgt)
    assert [(e.status, e.transform, e.variant, e.sources) for e in result.layers] == [
        (OK, SPLIT, part, ["enc.attn"]) for part in "qkv"
    ], describe(result)
    assert [e.note for e in result.layers] == [f"{part} slice of enc.attn.in_proj" for part in "qkv"]
    assert result.unmatched_source == ["enc.attn.out_proj"]
    # Every slice is located in the packed tensor: its source is the whole in_proj_weight.
    assert {param_diff(e, "weight").source_tensor for e in result.layers} == {"enc.attn.in_proj_weight"}


@pytest.mark.parametrize("part", ["q", "k", "v"])
def test_each_slice_reproduced(part):
    packed, bias, src = _attention(rng(1))
    tgt = layer(
        "g",
        LINEAR,
        "Gemm",
        {"transB": 1, WEIGHT_LAYOUT: OUT_IN},
        hints=("enc.attn",),
        weight=packed[rows(part)],
        bias=bias[rows(part)],
    )
    chosen = [c for c in applicable(transform(SPLIT), src, tgt, "enc.attn") if c.variant == part]
    reproduction = transform(SPLIT).reproduce(tgt, chosen[0])
    np.testing.assert_array_equal(reproduction.params["weight"], packed[rows(part)].astype(np.float64))
    np.testing.assert_array_equal(reproduction.params["bias"], bias[rows(part)].astype(np.float64))
    assert layer_diff(diff(src, target(tgt)), "g").variant == part


def test_the_numbers_pick_the_slice_not_the_order():
    # Three same-shaped candidates (and out_proj): only one reproduces the target.
    packed, bias, src = _attention(rng(2))
    tgt = matmul("n", packed[rows("v")].T, bias[rows("v")])
    assert {c.variant for c in candidates(transform(SPLIT), src, tgt, "enc.attn")} == {"q", "k", "v", "qkv"}
    entry = layer_diff(diff(src, target(tgt)), "n")
    assert (entry.status, entry.variant) == (OK, "v")


def test_the_whole_block_as_one_projection():
    packed, bias, src = _attention(rng(3), with_bias=False)
    entry = layer_diff(diff(src, target(matmul("qkv", packed.T))), "qkv")
    assert (entry.status, entry.transform, entry.variant) == (OK, SPLIT, "qkv")


def test_ort_attention_holds_the_block_transposed():
    packed, bias, src = _attention(rng(4))
    tgt = layer("Attention_0", ATTENTION, "com.microsoft.Attention", hints=("enc.attn",), weight=packed.T, bias=bias)
    entry = layer_diff(diff(src, target(tgt)), "Attention_0")
    assert (entry.status, entry.transform, entry.variant) == (OK, SPLIT, "qkv")
    (candidate,) = applicable(transform(SPLIT), src, tgt, "enc.attn")
    assert transform(SPLIT).reproduce(tgt, candidate).channel_axes == {"weight": 1, "bias": 0}


def test_an_anchor_on_out_proj_finds_its_attention():
    packed, bias, src = _attention(rng(5))
    tgt = matmul("n", packed[rows("k")].T, bias[rows("k")], hints=("enc.attn.out_proj",))
    assert (layer_diff(diff(src, target(tgt)), "n").variant) == "k"


def test_separate_projections_of_other_widths():
    r = rng(6)
    kdim, vdim = 3, 5
    q, k, v, bias = randn(r, E, E), randn(r, E, kdim), randn(r, E, vdim), randn(r, 3 * E)
    src = source(
        layer(
            "attn",
            ATTENTION,
            "MultiheadAttention",
            q_proj_weight=q,
            k_proj_weight=k,
            v_proj_weight=v,
            in_proj_bias=bias,
        )
    )
    tgt = target(*[matmul(part, weight.T, bias[rows(part)], hints=("attn",)) for part, weight in zip("qkv", (q, k, v))])
    result = diff(src, tgt)
    assert [(e.target, e.status, e.variant) for e in result.layers] == [("q", OK, "q"), ("k", OK, "k"), ("v", OK, "v")]
    reasons = check_reasons(transform(SPLIT), src, matmul("x", np.zeros((E, 3 * E), np.float32)), "attn")
    assert "q/k/v_proj_weight take inputs of different widths: they are never one block" in reasons[-1]


# ----------------------------------------------------------------------------- does not apply


def test_check_says_why_it_does_not_apply():
    packed, bias, src = _attention(rng(7))
    wide = matmul("n", np.zeros((E, 3), np.float32))
    assert check_reasons(transform(SPLIT), src, wide, "enc.attn") == [
        "the q projection has 16 elements, the target 12",
        "the k projection has 16 elements, the target 12",
        "the v projection has 16 elements, the target 12",
        "the qkv projection has 48 elements, the target 12",
    ]
    no_weight = layer("n", LINEAR, "MatMul", {WEIGHT_LAYOUT: IN_OUT}, hints=("enc.attn",), bias=np.zeros(E, np.float32))
    assert set(check_reasons(transform(SPLIT), src, no_weight, "enc.attn")) == {"no weight"}


def _unpacked_source():
    r = rng(8)
    return source(layer("attn", ATTENTION, "MultiheadAttention", bias_k=randn(r, 1, 1, E)))


def test_an_attention_without_projections():
    reasons = check_reasons(transform(SPLIT), _unpacked_source(), matmul("n", np.zeros((E, E), np.float32)), "attn")
    assert len(reasons) == 4 and all("no in_proj_weight and no q/k/v_proj_weight" in reason for reason in reasons)


def test_reasons_are_not_quoted():
    reasons = check_reasons(transform(SPLIT), _unpacked_source(), matmul("n", np.zeros((E, E), np.float32)), "attn")
    assert reasons[0] == "no in_proj_weight and no q/k/v_proj_weight"


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("part, channel", [("q", 0), ("k", 2), ("v", 3)])
def test_two_percent_in_one_channel_of_a_slice_is_caught(part, channel):
    packed, bias, src = _attention(rng(9))
    tgt = matmul("n", tampered(packed[rows(part)].T, channel, axis=1), bias[rows(part)])
    result = diff(src, target(tgt))
    entry = layer_diff(result, "n")
    assert (entry.status, entry.transform, entry.variant) == (MISMATCH, SPLIT, part), describe(result)
    assert param_diff(entry, "weight").bad_channels == [channel]

"""fold_batchnorm on numpy layers: the fold re-computed here, independently of the plugin.

Per output channel c, with s = gamma / sqrt(var + eps)::

    w'_c = w_c * s_c          b'_c = (b_c - mean_c) * s_c + beta_c

A ConvTranspose's output channels are its weight's axis 1 within each group; a Linear's
are the rows of W (out, in), stored transposed by a MatMul.
"""

from __future__ import annotations

import numpy as np
import pytest

from inspector.ir import BATCHNORM, CONV, CONV_TRANSPOSE, IN_OUT, LINEAR, OUT_IN, WEIGHT_LAYOUT
from inspector.results import MISMATCH, OK
from inspector.transforms import EPS_GUESSED
from tests.support.layers import (
    applicable,
    bn_stats,
    candidates,
    check_reasons,
    describe,
    diff,
    layer,
    layer_diff,
    param,
    param_diff,
    randn,
    rng,
    source,
    tampered,
    target,
    transform,
)

FOLD = "fold_batchnorm"


def scale(bn: dict, eps: float) -> np.ndarray:
    return bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + eps)


def fold(w: np.ndarray, bn: dict, eps: float, b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(w', b') with the output channels on axis 0 (Conv, Linear as PyTorch holds it)."""
    s = scale(bn, eps)
    b = np.zeros(s.shape) if b is None else b.astype(np.float64)
    w_folded = w.astype(np.float64) * s.reshape(-1, *([1] * (w.ndim - 1)))
    b_folded = (b - bn["running_mean"].astype(np.float64)) * s + bn["bias"].astype(np.float64)
    return w_folded, b_folded


def fold_transposed(w: np.ndarray, bn: dict, eps: float, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(w', b') of a ConvTranspose, weight (in, out/groups, k...): input channel i is in
    group i // (in/groups), and its column j feeds output channel group * out/groups + j."""
    s = scale(bn, eps)
    in_channels, per_group = w.shape[:2]
    folded = np.empty(w.shape)
    for i in range(in_channels):
        group = i // (in_channels // groups)
        for j in range(per_group):
            folded[i, j] = w[i, j].astype(np.float64) * s[group * per_group + j]
    return folded, -bn["running_mean"].astype(np.float64) * s + bn["bias"].astype(np.float64)


def f32(array):
    return np.asarray(array, dtype=np.float32)


def conv_bn(r, out=8, inp=4, k=3, eps=1e-3, bias=False, conv_attrs=None, bn_attrs="eps"):
    w, bn = randn(r, out, inp, k, k), bn_stats(r, out)
    extra = {"bias": randn(r, out)} if bias else {}
    attrs = {"groups": 1, "stride": (1, 1), "dilation": (1, 1)} if conv_attrs is None else conv_attrs
    src = source(
        layer("blk.conv", CONV, "Conv2d", attrs, weight=w, **extra),
        layer("blk.bn", BATCHNORM, "BatchNorm2d", {"eps": eps} if bn_attrs == "eps" else {}, **bn),
    )
    return w, bn, extra.get("bias"), src


def fused(w_folded, b_folded, name="/blk/conv/Conv", hints=("blk.conv",), attrs=None, kind=CONV, op="Conv"):
    return layer(
        name, kind, op, {"group": 1} if attrs is None else attrs, hints=hints, weight=f32(w_folded), bias=f32(b_folded)
    )


# ----------------------------------------------------------------------------- the fold


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_and_batchnorm_fold(eps, bias):
    w, bn, b, src = conv_bn(rng(0), eps=eps, bias=bias)
    w_f, b_f = fold(w, bn, eps, b)
    tgt = fused(w_f, b_f)
    result = diff(src, target(tgt))
    entry = layer_diff(result, "/blk/conv/Conv")
    assert (entry.status, entry.transform, entry.sources) == (OK, FOLD, ["blk.conv", "blk.bn"]), describe(result)
    assert entry.facts == {"eps": eps, EPS_GUESSED: False}
    assert entry.note == f"eps {eps:g} from the module"
    assert result.verdict == "faithful" and result.findings == []
    # The re-computation itself, far tighter than any tolerance.
    (candidate,) = applicable(transform(FOLD), src, tgt, "blk.conv")
    reproduction = transform(FOLD).reproduce(tgt, candidate)
    np.testing.assert_allclose(reproduction.params["weight"], w_f, rtol=1e-12)
    np.testing.assert_allclose(reproduction.params["bias"], b_f, rtol=1e-12, atol=1e-12)
    assert reproduction.channel_axes == {"weight": 0, "bias": 0}
    assert reproduction.origins["weight"] is src.layers[0].params["weight"]


def test_the_fold_changes_the_ranges_it_explains():
    w, bn, _, src = conv_bn(rng(1))
    w_f, b_f = fold(w, bn, 1e-3)
    entry = layer_diff(diff(src, target(fused(w_f, b_f))), "/blk/conv/Conv")
    weight = param_diff(entry, "weight")
    assert weight.source_range == (float(w.min()), float(w.max()))
    assert weight.target_range == (float(f32(w_f).min()), float(f32(w_f).max()))
    assert weight.source_range != weight.target_range


def test_a_batchnorm_without_affine_parameters():
    r = rng(2)
    w = randn(r, 6, 3, 1, 1)
    stats = bn_stats(r, 6)
    bn = {"running_mean": stats["running_mean"], "running_var": stats["running_var"]}
    src = source(layer("c", CONV, "Conv2d", weight=w), layer("bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn))
    s = 1 / np.sqrt(bn["running_var"].astype(np.float64) + 1e-5)
    tgt = fused(w * s.reshape(-1, 1, 1, 1), -bn["running_mean"] * s, name="n", hints=("c",))
    assert layer_diff(diff(src, target(tgt)), "n").status == OK


def test_conv1d_and_batchnorm1d():
    r = rng(3)
    w, bn = randn(r, 5, 2, 3), bn_stats(r, 5)
    src = source(
        layer("c", CONV, "Conv1d", {"groups": 1, "stride": (1,)}, weight=w),
        layer("bn", BATCHNORM, "BatchNorm1d", {"eps": 1e-5}, **bn),
    )
    tgt = fused(*fold(w, bn, 1e-5), name="n", hints=("c",), attrs={"group": 1, "strides": [1]})
    entry = layer_diff(diff(src, target(tgt)), "n")
    assert (entry.status, entry.transform) == (OK, FOLD)


def test_dynamo_names_hold_fused_values():
    # The dynamo exporter keeps "conv.weight" on the fused weight and names the new bias
    # "conv.weight_bias"; the node's scope is the BatchNorm's. The numbers decide.
    w, bn, _, src = conv_bn(rng(4))
    w_f, b_f = fold(w, bn, 1e-3)
    tgt = layer(
        "node_conv",
        CONV,
        "Conv",
        {"group": 1},
        hints=("blk.bn", "blk.conv.weight", "blk.conv.weight_bias"),
        weight=param("weight", f32(w_f), "blk.conv.weight"),
        bias=param("bias", f32(b_f), "blk.conv.weight_bias"),
    )
    entry = layer_diff(diff(src, target(tgt)), "node_conv")
    assert (entry.status, entry.transform, entry.sources) == (OK, FOLD, ["blk.conv", "blk.bn"])
    assert [p.target_tensor for p in entry.params] == ["blk.conv.weight", "blk.conv.weight_bias"]


def test_numbers_pair_convs_and_batchnorms_defined_apart():
    # conv1, conv2, bn1, bn2 of one shape: the definition order pairs conv2 with bn1 first.
    r = rng(5)
    w1, w2, bn1, bn2 = randn(r, 4, 4, 1, 1), randn(r, 4, 4, 1, 1), bn_stats(r, 4), bn_stats(r, 4)
    src = source(
        layer("m.conv1", CONV, "Conv2d", weight=w1),
        layer("m.conv2", CONV, "Conv2d", weight=w2),
        layer("m.bn1", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn1),
        layer("m.bn2", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn2),
    )
    tgt = target(
        fused(*fold(w1, bn1, 1e-5), name="a", hints=("m.conv1",)),
        fused(*fold(w2, bn2, 1e-5), name="b", hints=("m.conv2",)),
    )
    result = diff(src, tgt)
    assert [(e.status, e.sources) for e in result.layers] == [(OK, ["m.conv1", "m.bn1"]), (OK, ["m.conv2", "m.bn2"])]


# ----------------------------------------------------------------------------- eps


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_eps_is_guessed_when_the_source_does_not_record_it(eps):
    w, bn, _, src = conv_bn(rng(6), bn_attrs=None)
    tgt = fused(*fold(w, bn, eps))
    assert [c.variant for c in candidates(transform(FOLD), src, tgt, "blk.conv")] == ["eps=1e-05", "eps=0.001"]
    result = diff(src, target(tgt))
    entry = layer_diff(result, "/blk/conv/Conv")
    assert (entry.status, entry.variant) == (OK, f"eps={eps:g}")
    assert entry.facts == {"eps": eps, EPS_GUESSED: True}
    assert entry.note == f"eps {eps:g} (guessed: the file does not record it)"
    (finding,) = [f for f in result.findings if f.code == "guessed_eps"]
    assert finding.message == f"The file does not record BatchNorm eps; 1 folded layer fit with eps={eps:g}"


def test_the_eps_guesses_are_told_apart():
    # The variances are small, so eps 1e-5 instead of 1e-3 is several percent off.
    w, bn, _, src = conv_bn(rng(7), bn_attrs=None)
    right, wrong = fold(w, bn, 1e-3)[0], fold(w, bn, 1e-5)[0]
    assert np.abs(right - wrong).max() / np.abs(right).max() > 0.01


def test_the_guess_that_fit_the_last_layer_is_tried_first(monkeypatch):
    # A model shares one eps. Block 0's small variances tell the guesses apart (only 1e-3
    # fits); blocks 1 and 2 have variances so large that either guess fits: they take
    # the eps block 0 showed, and the wrong guess is no longer tried before it.
    r = rng(12)
    layers, targets = [], []
    for block in range(3):
        w, bn = randn(r, 8, 4, 3, 3), bn_stats(r, 8)
        if block:
            bn["running_var"] = r.uniform(500.0, 1000.0, 8).astype(np.float32)
        layers += [
            layer(f"b{block}.conv", CONV, "Conv2d", {"groups": 1}, weight=w),
            layer(f"b{block}.bn", BATCHNORM, "BatchNorm2d", {}, **bn),
        ]
        targets.append(fused(*fold(w, bn, 1e-3), name=f"/b{block}/conv/Conv", hints=(f"b{block}.conv",)))
        wrong = fold(w, bn, 1e-5)[0]
        fits_either = np.abs(wrong - fold(w, bn, 1e-3)[0]).max() / np.abs(wrong).max() < 1e-6
        assert fits_either == bool(block)
    tried = []
    fold_transform = transform(FOLD)
    reproduce = type(fold_transform).reproduce
    monkeypatch.setattr(
        type(fold_transform),
        "reproduce",
        lambda self, tgt, candidate: (
            tried.append((candidate.names[0], candidate.variant)) or reproduce(self, tgt, candidate)
        ),
    )
    result = diff(source(*layers), target(*targets))
    assert [(entry.status, entry.variant) for entry in result.layers] == [(OK, "eps=0.001")] * 3, describe(result)
    assert tried == [
        ("b0.conv", "eps=1e-05"),
        ("b0.conv", "eps=0.001"),
        ("b1.conv", "eps=0.001"),
        ("b2.conv", "eps=0.001"),
    ]
    (finding,) = [f for f in result.findings if f.code == "guessed_eps"]
    assert finding.message == "The file does not record BatchNorm eps; 3 folded layers fit with eps=0.001"


def test_the_transform_that_fit_the_last_layer_of_an_op_type_is_tried_first(monkeypatch):
    # An export folds every BatchNorm or none. Block 0's Conv is tried as the unfolded
    # weight (identity) first, and folded; the next Convs try the fold first. Block 1's
    # BatchNorm changes nothing, so either fits: it is reported folded, as the others.
    r = rng(13)
    layers, targets = [], []
    for block in range(3):
        w, bn = randn(r, 8, 4, 3, 3), bn_stats(r, 8)
        if block == 1:
            bn = {"weight": np.ones(8, np.float32), "bias": np.zeros(8, np.float32)}
            bn["running_mean"], bn["running_var"] = np.zeros(8, np.float32), np.full(8, 1 - 1e-3, np.float32)
        layers += [
            layer(f"b{block}.conv", CONV, "Conv2d", {"groups": 1}, weight=w),
            layer(f"b{block}.bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-3}, **bn),
        ]
        targets.append(fused(*fold(w, bn, 1e-3), name=f"/b{block}/conv/Conv", hints=(f"b{block}.conv",)))
    tried = []
    for name in ("identity", FOLD):
        cls = type(transform(name))
        monkeypatch.setattr(
            cls,
            "reproduce",
            lambda self, tgt, candidate, _original=cls.reproduce: (
                tried.append((candidate.names[0], self.name)) or _original(self, tgt, candidate)
            ),
        )
    result = diff(source(*layers), target(*targets))
    assert [(entry.status, entry.transform) for entry in result.layers] == [(OK, FOLD)] * 3, describe(result)
    assert tried == [("b0.conv", "identity"), ("b0.conv", FOLD), ("b1.conv", FOLD), ("b2.conv", FOLD)]
    assert result.unmatched_source == []


def test_an_eps_no_guess_fits_is_a_mismatch():
    w, bn, _, src = conv_bn(rng(8), bn_attrs=None)
    entry = layer_diff(diff(src, target(fused(*fold(w, bn, 1e-4)))), "/blk/conv/Conv")
    assert (entry.status, entry.transform) == (MISMATCH, FOLD)


def test_a_recorded_eps_is_not_second_guessed():
    w, bn, _, src = conv_bn(rng(9), eps=1e-5)
    tgt = fused(*fold(w, bn, 1e-3))  # folded with another eps than the module's
    assert [c.variant for c in candidates(transform(FOLD), src, tgt, "blk.conv")] == [""]
    assert layer_diff(diff(src, target(tgt)), "/blk/conv/Conv").status == MISMATCH


# ----------------------------------------------------------------------------- ConvTranspose


def _transposed(r, groups, record_groups=True, in_channels=8, per_group=3):
    w, bn = randn(r, in_channels, per_group, 3, 3), bn_stats(r, groups * per_group)
    attrs = {"groups": groups} if record_groups else {}
    src = source(
        layer("up.conv", CONV_TRANSPOSE, "ConvTranspose2d", attrs, weight=w),
        layer("up.bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn),
    )
    return w, bn, src


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("record_groups", [True, False])  # a bare state_dict does not record them
def test_conv_transpose_with_groups(groups, record_groups):
    w, bn, src = _transposed(rng(10), groups, record_groups)
    w_f, b_f = fold_transposed(w, bn, 1e-5, groups)
    tgt = fused(
        w_f,
        b_f,
        name="/up/ConvTranspose",
        hints=("up.conv",),
        attrs={"group": groups},
        kind=CONV_TRANSPOSE,
        op="ConvTranspose",
    )
    entry = layer_diff(diff(src, target(tgt)), "/up/ConvTranspose")
    assert (entry.status, entry.transform) == (OK, FOLD)
    (candidate,) = applicable(transform(FOLD), src, tgt, "up.conv")
    reproduction = transform(FOLD).reproduce(tgt, candidate)
    np.testing.assert_allclose(reproduction.params["weight"], w_f, rtol=1e-12)
    np.testing.assert_allclose(reproduction.params["bias"], b_f, rtol=1e-12, atol=1e-12)


def test_conv_transpose_groups_from_the_batchnorm_must_agree_with_the_target():
    w, bn, src = _transposed(rng(11), 2, record_groups=False)
    tgt = fused(
        *fold_transposed(w, bn, 1e-5, 2),
        name="t",
        hints=("up.conv",),
        attrs={"group": 1},
        kind=CONV_TRANSPOSE,
        op="ConvTranspose",
    )
    assert check_reasons(transform(FOLD), src, tgt, "up.conv") == [
        "groups 2 (from the BatchNorm's features) != group 1"
    ]


# ----------------------------------------------------------------------------- Linear + BatchNorm1d


def _linear_bn(r, bias=True):
    w, bn = randn(r, 6, 5), bn_stats(r, 6)
    extra = {"bias": randn(r, 6)} if bias else {}
    src = source(
        layer("head.fc", LINEAR, "Linear", weight=w, **extra),
        layer("head.bn", BATCHNORM, "BatchNorm1d", {"eps": 1e-5}, **bn),
    )
    return w, bn, extra.get("bias"), src


@pytest.mark.parametrize("bias", [True, False])
def test_linear_and_batchnorm1d_as_gemm(bias):
    w, bn, b, src = _linear_bn(rng(12), bias)
    w_f, b_f = fold(w, bn, 1e-5, b)
    tgt = layer(
        "/head/fc/Gemm",
        LINEAR,
        "Gemm",
        {"transB": 1, WEIGHT_LAYOUT: OUT_IN},
        hints=("head.fc",),
        weight=f32(w_f),
        bias=f32(b_f),
    )
    entry = layer_diff(diff(src, target(tgt)), "/head/fc/Gemm")
    assert (entry.status, entry.transform, entry.sources) == (OK, FOLD, ["head.fc", "head.bn"])


def test_linear_and_batchnorm1d_as_matmul_stores_the_transpose():
    w, bn, b, src = _linear_bn(rng(13))
    w_f, b_f = fold(w, bn, 1e-5, b)
    tgt = layer(
        "/head/fc/MatMul",
        LINEAR,
        "MatMul",
        {WEIGHT_LAYOUT: IN_OUT},
        hints=("head.fc",),
        weight=f32(w_f.T),
        bias=f32(b_f),
    )
    entry = layer_diff(diff(src, target(tgt)), "/head/fc/MatMul")
    assert (entry.status, entry.transform) == (OK, FOLD)
    (candidate,) = applicable(transform(FOLD), src, tgt, "head.fc")
    reproduction = transform(FOLD).reproduce(tgt, candidate)
    np.testing.assert_allclose(reproduction.params["weight"], w_f.T, rtol=1e-12)
    assert reproduction.channel_axes["weight"] == 1


# ----------------------------------------------------------------------------- does not apply


@pytest.mark.parametrize(
    "target_kind, op, weight_shape, attrs, reason",
    [
        (CONV_TRANSPOSE, "ConvTranspose", (8, 4, 3, 3), {}, "a Conv2d cannot become a ConvTranspose"),
        (CONV, "Conv", (8, 4, 1, 1), {}, "weight has 32 elements, the source 288"),
        (CONV, "Conv", (8, 36, 1, 1), {}, "weight shape [8, 36, 1, 1] != [8, 4, 3, 3]"),
        (CONV, "Conv", (8, 4, 3, 3), {"group": 2}, "groups 1 != group 2"),
        (CONV, "Conv", (8, 4, 3, 3), {"strides": [2, 2]}, "stride (1, 1) != strides (2, 2)"),
        (CONV, "Conv", (8, 4, 3, 3), {"dilations": [2, 2]}, "dilation (1, 1) != dilations (2, 2)"),
    ],
)
def test_check_says_why_it_does_not_apply(target_kind, op, weight_shape, attrs, reason):
    _, _, _, src = conv_bn(rng(14))
    tgt = layer("n", target_kind, op, attrs, hints=("blk.conv",), weight=np.zeros(weight_shape, np.float32))
    assert check_reasons(transform(FOLD), src, tgt, "blk.conv") == [reason]


def test_a_target_without_weight():
    _, _, _, src = conv_bn(rng(15))
    tgt = layer("n", CONV, "Conv", hints=("blk.conv",), bias=np.zeros(8, np.float32))
    assert check_reasons(transform(FOLD), src, tgt, "blk.conv") == ["no weight"]


def test_rejected_folds_are_the_reasons_of_an_unmatched_layer():
    w, bn, _, src = conv_bn(rng(16))
    tgt = fused(*fold(w, bn, 1e-3), attrs={"group": 1, "strides": [2, 2]})
    entry = layer_diff(diff(src, target(tgt)), "/blk/conv/Conv")
    assert entry.status == "unmatched"
    assert "fold_batchnorm(blk.conv + blk.bn): stride (1, 1) != strides (2, 2)" in entry.reasons


def test_a_batchnorm_of_another_width_is_not_proposed():
    r = rng(17)
    src = source(
        layer("c", CONV, "Conv2d", weight=randn(r, 8, 4, 1, 1)),
        layer("bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn_stats(r, 6)),
    )
    tgt = layer("n", CONV, "Conv", hints=("c",), weight=np.zeros((8, 4, 1, 1), np.float32))
    assert candidates(transform(FOLD), src, tgt, "c") == []


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("channel", [0, 5, 7])
def test_two_percent_in_one_channel_is_caught(channel):
    w, bn, _, src = conv_bn(rng(18))
    w_f, b_f = fold(w, bn, 1e-3)
    result = diff(src, target(fused(tampered(w_f, channel), b_f)))
    entry = layer_diff(result, "/blk/conv/Conv")
    assert (entry.status, entry.transform) == (MISMATCH, FOLD), describe(result)
    assert (param_diff(entry, "weight").bad_channels, param_diff(entry, "bias").status) == ([channel], OK)


def test_two_percent_in_one_bias_is_caught():
    w, bn, _, src = conv_bn(rng(19))
    w_f, b_f = fold(w, bn, 1e-3)
    b_f[3] += 0.02 * np.abs(b_f).max()
    entry = layer_diff(diff(src, target(fused(w_f, b_f))), "/blk/conv/Conv")
    assert entry.status == MISMATCH and param_diff(entry, "bias").bad_channels == [3]


def test_two_percent_in_one_channel_of_a_transposed_linear_is_caught():
    w, bn, b, src = _linear_bn(rng(20))
    w_f, b_f = fold(w, bn, 1e-5, b)
    tgt = layer(
        "mm",
        LINEAR,
        "MatMul",
        {WEIGHT_LAYOUT: IN_OUT},
        hints=("head.fc",),
        weight=f32(tampered(w_f.T, 4, axis=1)),
        bias=f32(b_f),
    )
    entry = layer_diff(diff(src, target(tgt)), "mm")
    assert (entry.status, param_diff(entry, "weight").bad_channels) == (MISMATCH, [4])


def test_two_percent_in_one_channel_of_a_conv_transpose_is_caught():
    w, bn, src = _transposed(rng(21), 1)
    w_f, b_f = fold_transposed(w, bn, 1e-5, 1)
    tgt = fused(
        tampered(w_f, 2, axis=1),
        b_f,
        name="t",
        hints=("up.conv",),
        attrs={"group": 1},
        kind=CONV_TRANSPOSE,
        op="ConvTranspose",
    )
    entry = layer_diff(diff(src, target(tgt)), "t")
    assert (entry.status, param_diff(entry, "weight").bad_channels) == (MISMATCH, [2])


def test_two_percent_in_one_output_channel_of_a_grouped_conv_transpose_is_located():
    groups, per_group, channel = 2, 3, 4  # group 1, column 1
    w, bn, src = _transposed(rng(22), groups)
    w_f, b_f = fold_transposed(w, bn, 1e-5, groups)
    w_f[4:, channel - per_group] *= 1.02  # input channels 4..7 are group 1
    tgt = fused(
        w_f, b_f, name="t", hints=("up.conv",), attrs={"group": groups}, kind=CONV_TRANSPOSE, op="ConvTranspose"
    )
    entry = layer_diff(diff(src, target(tgt)), "t")
    assert entry.status == MISMATCH
    assert param_diff(entry, "weight").bad_channels == [channel]


def test_a_batchnorm_at_the_root_folds_into_the_last_conv_of_a_nested_stem():
    """timm's ResNet-D: conv1 is a Sequential ending in a conv; bn1 (at the root) follows it."""
    r = rng(31)
    w0, w6, bn = randn(r, 8, 3, 3, 3), randn(r, 16, 8, 3, 3), bn_stats(r, 16)
    src = source(
        layer("conv1.0", CONV, "Conv2d", weight=w0),
        layer("conv1.6", CONV, "Conv2d", weight=w6),
        layer("bn1", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn),
        layer("layer1.0.conv1", CONV, "Conv2d", weight=randn(r, 16, 16, 3, 3)),
    )
    s = bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + 1e-5)
    folded = layer(
        "/conv1/conv1.6/Conv",
        CONV,
        "Conv",
        hints=("conv1.6",),
        weight=(w6 * s[:, None, None, None]).astype(np.float32),
        bias=(bn["bias"] - bn["running_mean"] * s).astype(np.float32),
    )
    entry = layer_diff(diff(src, target(folded)), "/conv1/conv1.6/Conv")
    assert (entry.status, entry.transform, entry.sources) == (OK, "fold_batchnorm", ["conv1.6", "bn1"])


def test_the_next_block_s_batchnorm_is_not_the_one_after_a_block_s_last_conv():
    """A pre-activation block ends in a conv; the next block's bn1 does not normalise it."""
    r = rng(32)
    src = source(
        layer("layer1.0.conv2", CONV, "Conv2d", weight=randn(r, 4, 4, 3, 3)),
        layer("layer1.1.bn1", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn_stats(r, 4)),
    )
    tgt = layer("n", CONV, "Conv", hints=("layer1.0.conv2",), weight=randn(r, 4, 4, 3, 3))
    assert [c.names for c in candidates(transform("fold_batchnorm"), src, tgt, "layer1.0.conv2")] == []

"""merge_branches on numpy layers: RepVGG/RepConv re-parameterisation re-computed here.

Each branch i is a conv folded with its BatchNorm, (w_i * s_i, beta_i - mean_i * s_i)
with s_i = gamma_i / sqrt(var_i + eps_i); the merged conv is their sum, each kernel
zero-padded (centred) to k x k, plus the identity BatchNorm as a kernel with s_0 at the
centre tap of each output channel's own input channel (c mod in_channels_per_group).
"""

from __future__ import annotations

import numpy as np
import pytest

from inspector.ir import BATCHNORM, CONV
from inspector.results import MISMATCH, OK
from inspector.transforms import EPS_GUESSED
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

MERGE = "merge_branches"


def affine(bn: dict, eps: float) -> tuple[np.ndarray, np.ndarray]:
    s = bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + eps)
    return s, bn["bias"].astype(np.float64) - bn["running_mean"].astype(np.float64) * s


def merged(w3, bn3, w1, bn1, bn0, groups, eps=1e-5, identity_eps=None):
    """The re-parameterised 3x3 conv, element by element."""
    channels, per_group = w3.shape[:2]
    s3, t3 = affine(bn3, eps)
    weight = w3.astype(np.float64) * s3[:, None, None, None]
    bias = t3.copy()
    if w1 is not None:
        s1, t1 = affine(bn1, eps)
        weight[:, :, 1, 1] += w1[:, :, 0, 0].astype(np.float64) * s1[:, None]
        bias += t1
    if bn0 is not None:
        s0, t0 = affine(bn0, eps if identity_eps is None else identity_eps)
        for c in range(channels):
            group = c // (channels // groups)
            own_input = c - group * per_group  # channel c's input, counted within its group
            weight[c, own_input, 1, 1] += s0[c]
        bias += t0
    return weight, bias


def block(
    r,
    channels=8,
    groups=1,
    names=("rbr_dense", "rbr_1x1", "rbr_identity"),
    identity=True,
    conv_attrs="known",
    eps=1e-5,
    identity_eps=None,
    prefix="blk",
):
    per_group = channels // groups
    w3, w1 = randn(r, channels, per_group, 3, 3), randn(r, channels, per_group, 1, 1)
    bn3, bn1, bn0 = bn_stats(r, channels), bn_stats(r, channels), bn_stats(r, channels)
    c_attrs = {"groups": groups, "stride": (1, 1), "dilation": (1, 1)} if conv_attrs == "known" else {}
    b_attrs = {"eps": eps} if conv_attrs == "known" else {}
    i_attrs = {"eps": identity_eps or eps} if conv_attrs == "known" else {}
    dense, one, ident = names
    layers = [
        layer(f"{prefix}.{dense}.conv", CONV, "Conv2d", c_attrs, weight=w3),
        layer(f"{prefix}.{dense}.bn", BATCHNORM, "BatchNorm2d", b_attrs, **bn3),
        layer(f"{prefix}.{one}.conv", CONV, "Conv2d", c_attrs, weight=w1),
        layer(f"{prefix}.{one}.bn", BATCHNORM, "BatchNorm2d", b_attrs, **bn1),
    ]
    if identity:
        layers.append(layer(f"{prefix}.{ident}", BATCHNORM, "BatchNorm2d", i_attrs, **bn0))
    return (w3, bn3, w1, bn1, bn0 if identity else None), layers


def conv(weight, bias, groups=1, name="/blk/conv/Conv", hints=("blk.conv",), **attrs):
    return layer(
        name,
        CONV,
        "Conv",
        {"group": groups, **attrs},
        hints=hints,
        weight=weight.astype(np.float32),
        bias=bias.astype(np.float32),
    )


# ----------------------------------------------------------------------------- the merge


@pytest.mark.parametrize("groups", [1, 2, 8])
def test_repvgg_3x3_1x1_and_identity(groups):
    arrays, layers = block(rng(groups), groups=groups)
    weight, bias = merged(*arrays, groups=groups)
    src, tgt = source(*layers), conv(weight, bias, groups)
    result = diff(src, target(tgt))
    entry = layer_diff(result, "/blk/conv/Conv")
    assert (entry.status, entry.transform) == (OK, MERGE), describe(result)
    assert entry.sources == [layer.name for layer in layers]
    assert entry.note == "2 branches + identity of blk; eps from the modules"
    assert entry.facts == {EPS_GUESSED: False, "branches": 2, "identity": True}
    assert result.unmatched_source == []
    (candidate,) = applicable(transform(MERGE), src, tgt, "blk")
    reproduction = transform(MERGE).reproduce(tgt, candidate)
    np.testing.assert_allclose(reproduction.params["weight"], weight, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reproduction.params["bias"], bias, rtol=1e-12, atol=1e-12)


def test_the_identity_kernel_of_a_depthwise_block_is_its_centre_tap():
    # groups == channels: each channel's own input is input 0 of its group.
    arrays, layers = block(rng(20), channels=4, groups=4)
    with_identity, _ = merged(*arrays, groups=4)
    without, _ = merged(*arrays[:4], None, groups=4)
    s0 = affine(arrays[4], 1e-5)[0]
    expected = np.zeros((4, 1, 3, 3))
    expected[:, 0, 1, 1] = s0
    np.testing.assert_allclose(with_identity - without, expected, atol=1e-12)


def test_ultralytics_repconv_exported_as_its_new_conv_child():
    # Ultralytics' fuse_convs makes model.3.conv, a child the checkpoint does not have.
    arrays, layers = block(rng(3), names=("conv1", "conv2", "bn"), prefix="model.3")
    weight, bias = merged(*arrays, groups=1)
    tgt = conv(weight, bias, name="/model.3/conv/Conv", hints=("model.3.conv",))
    entry = layer_diff(diff(source(*layers), target(tgt)), "/model.3/conv/Conv")
    assert (entry.status, entry.transform, entry.matched_by) == (OK, MERGE, "scope")


def test_timm_names_and_no_identity_branch():
    arrays, layers = block(rng(4), names=("conv_kxk", "conv_1x1", "identity"), identity=False)
    weight, bias = merged(*arrays, groups=1)
    entry = layer_diff(diff(source(*layers), target(conv(weight, bias))), "/blk/conv/Conv")
    assert (entry.status, entry.transform) == (OK, MERGE)
    assert entry.facts == {EPS_GUESSED: False, "branches": 2, "identity": False}


def test_eps_is_guessed_for_branches_and_identity_apart():
    # Ultralytics' Conv blocks use eps 1e-3, RepConv's own identity BatchNorm keeps 1e-5.
    arrays, layers = block(rng(5), conv_attrs="unknown", names=("conv1", "conv2", "bn"))
    weight, bias = merged(*arrays, groups=1, eps=1e-3, identity_eps=1e-5)
    entry = layer_diff(diff(source(*layers), target(conv(weight, bias))), "/blk/conv/Conv")
    assert (entry.status, entry.variant) == (OK, "eps=0.001, identity eps=1e-05")
    assert entry.facts[EPS_GUESSED] is True
    assert (
        entry.note
        == "2 branches + identity of blk; eps 0.001, identity eps 1e-05 (guessed: the file does not record it)"
    )


def test_a_grouped_block_from_a_bare_state_dict():
    arrays, layers = block(rng(6), groups=2, conv_attrs="unknown")
    weight, bias = merged(*arrays, groups=2)
    entry = layer_diff(diff(source(*layers), target(conv(weight, bias, groups=2))), "/blk/conv/Conv")
    assert (entry.status, entry.transform) == (OK, MERGE)


# ----------------------------------------------------------------------------- does not apply


def test_check_compares_the_widest_branch():
    arrays, layers = block(rng(7))
    src = source(*layers)
    one_by_one = layer("n", CONV, "Conv", {"group": 1}, weight=np.zeros((8, 8, 1, 1), np.float32))
    assert check_reasons(transform(MERGE), src, one_by_one, "blk") == [
        "weight shape [8, 8, 1, 1] != the widest branch's [8, 8, 3, 3]"
    ]
    strided = layer("n", CONV, "Conv", {"group": 1, "strides": [2, 2]}, weight=np.zeros((8, 8, 3, 3), np.float32))
    assert check_reasons(transform(MERGE), src, strided, "blk") == ["stride (1, 1) != strides (2, 2)"]
    grouped = layer("n", CONV, "Conv", {"group": 2}, weight=np.zeros((8, 8, 3, 3), np.float32))
    assert check_reasons(transform(MERGE), src, grouped, "blk") == ["groups 1 != group 2"]


def test_branches_of_different_strides_are_no_block():
    r = rng(8)
    src = source(
        layer("blk.a.conv", CONV, "Conv2d", {"stride": (1, 1)}, weight=randn(r, 4, 4, 3, 3)),
        layer("blk.a.bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn_stats(r, 4)),
        layer("blk.b.conv", CONV, "Conv2d", {"stride": (2, 2)}, weight=randn(r, 4, 4, 1, 1)),
        layer("blk.b.bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn_stats(r, 4)),
    )
    tgt = layer("n", CONV, "Conv", {"group": 1}, weight=np.zeros((4, 4, 3, 3), np.float32))
    assert check_reasons(transform(MERGE), src, tgt, "blk") == []


def test_a_missing_identity_branch_is_a_mismatch_at_the_centre_taps():
    arrays, layers = block(rng(9))
    weight, bias = merged(*arrays[:4], None, groups=1)  # exported without the identity branch
    entry = layer_diff(diff(source(*layers), target(conv(weight, bias))), "/blk/conv/Conv")
    assert (entry.status, entry.transform) == (MISMATCH, MERGE)
    assert param_diff(entry, "weight").bad_channels == list(range(8))


# ----------------------------------------------------------------------------- tampering


@pytest.mark.parametrize("groups, channel", [(1, 6), (2, 1)])
def test_two_percent_in_one_channel_is_caught(groups, channel):
    arrays, layers = block(rng(10 + groups), groups=groups)
    weight, bias = merged(*arrays, groups=groups)
    result = diff(source(*layers), target(conv(tampered(weight, channel), bias, groups)))
    entry = layer_diff(result, "/blk/conv/Conv")
    assert (entry.status, entry.transform) == (MISMATCH, MERGE), describe(result)
    assert param_diff(entry, "weight").bad_channels == [channel]
    assert result.verdict == "differs"


def test_another_blocks_numbers_under_this_blocks_name_are_a_mismatch():
    arrays, layers = block(rng(12))
    other, _ = block(rng(13))
    weight, bias = merged(*other, groups=1)
    entry = layer_diff(diff(source(*layers), target(conv(weight, bias))), "/blk/conv/Conv")
    assert (entry.status, entry.matched_by) == (MISMATCH, "scope")  # named, so traced; numbers differ

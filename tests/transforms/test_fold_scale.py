"""fold_scale on numpy layers: a LayerScale's gamma after a conv (FastViT's mlp.fc2), and
a model's own scale and shift, folded into the conv as ONNX Runtime does; the math is
re-computed here; a changed channel is caught."""

from __future__ import annotations

import numpy as np

from inspector.ir import CONV
from inspector.results import MISMATCH, OK
from tests.support.layers import bn_stats, diff, layer, layer_diff, randn, rng, source, target


def test_a_layer_scale_after_a_conv():
    r = rng(1)
    w, b, gamma = randn(r, 6, 4, 1, 1), randn(r, 6), r.uniform(0.5, 1.5, (6, 1, 1)).astype(np.float32)
    src = source(
        layer("blk.mlp.fc2", CONV, "Conv2d", weight=w, bias=b),
        layer("blk.layer_scale", "layerscale2d", "LayerScale2d", gamma=gamma),
    )
    g = gamma.reshape(-1).astype(np.float64)
    fused = layer(
        "/blk/mlp/fc2/Conv",
        CONV,
        "Conv",
        hints=("blk.mlp.fc2",),
        weight=(w * g[:, None, None, None]).astype(np.float32),
        bias=(b * g).astype(np.float32),
    )
    entry = layer_diff(diff(src, target(fused)), "/blk/mlp/fc2/Conv")
    assert (entry.status, entry.transform, entry.variant) == (OK, "fold_scale", "blk.layer_scale.gamma")
    assert entry.sources == ["blk.mlp.fc2", "blk.layer_scale"]


def test_a_batchnorm_then_a_model_scale_and_shift():
    r = rng(2)
    w, bn = randn(r, 5, 3, 3, 3), bn_stats(r, 5)
    scale, shift = r.uniform(0.5, 1.5, 5).astype(np.float32), randn(r, 5)
    src = source(
        layer("", "net", "Net", scale=scale, shift=shift),
        layer("conv", CONV, "Conv2d", weight=w),
        layer("bn", "batchnorm", "BatchNorm2d", {"eps": 1e-5}, **bn),
    )
    s = bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + 1e-5)
    g = scale.astype(np.float64)
    weight = w * (s * g)[:, None, None, None]
    bias = (bn["bias"] - bn["running_mean"] * s) * g + shift
    fused = layer(
        "/conv/Conv", CONV, "Conv", hints=("conv",), weight=weight.astype(np.float32), bias=bias.astype(np.float32)
    )
    result = diff(src, target(fused))
    entry = layer_diff(result, "/conv/Conv")
    assert (entry.status, entry.transform) == (OK, "fold_scale")
    assert entry.variant == ".scale + shift after the BatchNorm"
    changed = weight.copy()
    changed[3] *= 1.02
    bad = layer(
        "/conv/Conv", CONV, "Conv", hints=("conv",), weight=changed.astype(np.float32), bias=bias.astype(np.float32)
    )
    entry = layer_diff(diff(src, target(bad)), "/conv/Conv")
    assert entry.status == MISMATCH and 3 in entry.params[0].bad_channels

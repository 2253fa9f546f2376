"""A guessed source kind is settled by the target layer its names point to, within its
family: a state_dict's 4-D weight that the export runs as a ConvTranspose, a Sequential's
1-D weight and bias that it runs as a LayerNormalization."""

from __future__ import annotations

import numpy as np

from inspector.ir import CONV, CONV_TRANSPOSE, GUESSED_KIND, LAYERNORM, NORM
from inspector.results import OK
from tests.support.layers import diff, layer, layer_diff, randn, rng, source, target


def test_a_guessed_conv_the_export_runs_as_a_conv_transpose():
    r = rng(1)
    w = randn(r, 4, 6, 2, 2)  # (in, out/groups, k, k)
    src = source(layer("up", CONV, "Conv2d?", {GUESSED_KIND: True}, weight=w))
    tgt = target(layer("/up/ConvTranspose", CONV_TRANSPOSE, "ConvTranspose", hints=("up",), weight=w))
    result = diff(src, tgt)
    entry = layer_diff(result, "/up/ConvTranspose")
    assert (entry.status, entry.transform) == (OK, "identity")
    assert result.source.layer("up").kind == CONV  # the loaded model is left as it was


def test_a_guessed_norm_of_a_sequential_the_export_runs_as_a_layernorm():
    r = rng(2)
    g, b = r.uniform(0.5, 1.5, 8).astype(np.float32), randn(r, 8)
    src = source(layer("features.0.2", NORM, "Norm?", {GUESSED_KIND: True}, weight=g, bias=b))
    tgt = target(
        layer(
            "/features/features.0/features.0.2/LayerNormalization",
            LAYERNORM,
            "LayerNormalization",
            hints=("features.0.2",),
            weight=g,
            bias=b,
        )
    )
    entry = layer_diff(diff(src, tgt), "/features/features.0/features.0.2/LayerNormalization")
    assert (entry.status, entry.transform) == (OK, "identity")


def test_a_known_kind_is_never_settled_into_another():
    w = randn(rng(3), 4, 6, 2, 2)
    src = source(layer("up", CONV, "Conv2d", weight=w))  # a pickled module says Conv2d
    tgt = target(layer("/up/ConvTranspose", CONV_TRANSPOSE, "ConvTranspose", hints=("up",), weight=w))
    assert layer_diff(diff(src, tgt), "/up/ConvTranspose").status != OK

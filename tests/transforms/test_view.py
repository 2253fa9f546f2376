"""view on numpy layers: a class token broadcast to a batch of 2, a position table cut to
a smaller input (prefix and suffix), computed here with numpy; a changed element is caught."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.results import MISMATCH, OK
from tests.support.layers import diff, layer, layer_diff, param, randn, rng, source, target


def _root(r):
    return source(
        layer("", "visiontransformer", "VisionTransformer", cls_token=randn(r, 1, 1, 6), pos_embed=randn(r, 1, 10, 6))
    )


@pytest.mark.parametrize(
    "make, variant",
    [
        (lambda m: np.broadcast_to(m["cls_token"], (2, 1, 6)), "cls_token broadcast"),
        (lambda m: m["pos_embed"][:, :7], "pos_embed sliced"),
        (lambda m: m["pos_embed"][:, 3:], "pos_embed sliced"),
    ],
)
def test_a_broadcast_or_sliced_parameter(make, variant):
    src = _root(rng(1))
    root = src.layer("")
    stored = np.ascontiguousarray(make({role: p.array() for role, p in root.params.items()}))
    tgt = target(layer("node_cat", "concat", "Concat", hints=("",), input_0=param("input_0", stored, "expand")))
    result = diff(src, tgt)
    entry = layer_diff(result, "node_cat")
    assert (entry.status, entry.transform, entry.variant) == (OK, "view", variant)
    changed = stored.copy()
    changed.reshape(-1)[4] *= 1.02
    tgt = target(layer("node_cat", "concat", "Concat", hints=("",), input_0=param("input_0", changed, "expand")))
    assert layer_diff(diff(src, tgt), "node_cat").status == MISMATCH

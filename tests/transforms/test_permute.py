"""permute on numpy layers: a table stored with its axes swapped, a layer scale that lost
its size-1 axes (that is identity: a reshape), a changed element caught."""

from __future__ import annotations

from inspector.results import MISMATCH, OK
from tests.support.layers import diff, layer, layer_diff, param, randn, rng, source, target


def test_a_table_stored_transposed():
    table = randn(rng(1), 4, 9)
    src = source(layer("attn", "attention", "Attention", attention_biases=table))
    for stored, status in ((table.T.copy(), OK), (None, MISMATCH)):
        if stored is None:
            stored = table.T.copy()
            stored[5, 2] *= 1.02
        tgt = target(layer("g", "gathernd", "GatherND", hints=("attn",), input_0=param("input_0", stored, "val_1")))
        entry = layer_diff(diff(src, tgt), "g")
        assert (entry.status, entry.transform) == (status, "permute")


def test_a_reshape_is_identity_not_permute():
    gamma = randn(rng(2), 6)
    src = source(layer("blk.ls", "layerscale", "LayerScale", gamma=gamma))
    tgt = target(layer("m", "mul", "Mul", hints=("blk.ls",), scale=param("scale", gamma.reshape(6, 1, 1), "g")))
    assert layer_diff(diff(src, tgt), "m").transform == "identity"

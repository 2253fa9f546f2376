"""The gather transform on numpy layers: Swin's and LeViT's bias tables looked up by
their index buffers (computed independently in the test), or by value when the index
buffer is not in the file; a changed entry is caught."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.results import MISMATCH, OK
from tests.support.layers import diff, layer, layer_diff, param, param_diff, rng, source, target


def swin(r, window: int = 3, heads: int = 2):
    """torchvision Swin: table ((2w-1)^2, heads), index (w^2 * w^2,) flat."""
    table = r.normal(size=((2 * window - 1) ** 2, heads)).astype(np.float32)
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    index = (relative[:, :, 0] * (2 * window - 1) + relative[:, :, 1]).reshape(-1).astype(np.int64)
    n = window * window
    folded = table[index].reshape(n, n, heads).transpose(2, 0, 1)[None]  # what the exporter stores
    return table, index, folded


def levit(r, heads: int = 3, points: int = 7, n: int = 4):
    table = r.normal(size=(heads, points)).astype(np.float32)
    index = r.integers(0, points, size=(n, n)).astype(np.int64)
    return table, index, table[:, index]


def _attention(table, index=None):
    params = {"relative_position_bias_table": table}
    if index is not None:
        params["relative_position_index"] = index
    return source(layer("blk.attn", "attention", "WindowAttention", **params))


@pytest.mark.parametrize("build", [swin, levit])
def test_a_folded_table_lookup_is_reproduced(build):
    table, index, folded = build(rng(1))
    tgt = target(layer("/blk/attn/Add", "add", "Add", hints=("blk.attn",), bias=folded.astype(np.float32)))
    entry = layer_diff(diff(_attention(table, index), tgt), "/blk/attn/Add")
    assert (entry.status, entry.transform) == (OK, "gather")
    assert param_diff(entry, "bias").max_abs_err == 0


@pytest.mark.parametrize("build", [swin, levit])
def test_a_changed_entry_of_the_folded_table_is_a_mismatch(build):
    table, index, folded = build(rng(2))
    changed = folded.astype(np.float32).copy()
    changed.reshape(-1)[5] *= 1.02
    tgt = target(layer("/blk/attn/Add", "add", "Add", hints=("blk.attn",), bias=changed))
    result = diff(_attention(table, index), tgt)
    assert layer_diff(result, "/blk/attn/Add").status == MISMATCH and result.verdict == "differs"


def test_without_the_index_buffer_every_value_is_looked_up_in_its_head_s_row():
    """A state_dict without LeViT's non-persistent attention_bias_idxs."""
    table, _, folded = levit(rng(3))
    tgt = target(layer("/blk/attn/Add", "add", "Add", hints=("blk.attn",), bias=folded))
    entry = layer_diff(diff(_attention(table), tgt), "/blk/attn/Add")
    assert (entry.status, entry.transform, entry.variant) == (
        OK,
        "gather",
        "relative_position_bias_table looked up by value",
    )
    changed = folded.copy()
    changed[1, 2, 3] *= 1.02
    entry = layer_diff(
        diff(_attention(table), target(layer("/blk/attn/Add", "add", "Add", hints=("blk.attn",), bias=changed))),
        "/blk/attn/Add",
    )
    assert entry.status == MISMATCH


def test_a_permuted_table_is_reproduced_by_permute():
    """dynamo stores LeViT's (heads, points) table as the (points, heads) data of a GatherND."""
    table, _, _ = levit(rng(4))
    tgt = target(
        layer(
            "/blk/attn/GatherND",
            "gathernd",
            "GatherND",
            hints=("blk.attn",),
            input_0=param("input_0", table.T.copy(), "val_79"),
        )
    )
    entry = layer_diff(diff(_attention(table), tgt), "/blk/attn/GatherND")
    assert (entry.status, entry.transform) == (OK, "permute")

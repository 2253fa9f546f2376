"""The recurrent transform on numpy layers: LSTM/GRU/RNN gates re-ordered by hand in the
test, directions stacked, biases concatenated; a 2% change in one gate row is caught."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.ir import RECURRENT
from inspector.results import MISMATCH, OK
from tests.support.layers import (
    check_reasons,
    diff,
    layer,
    layer_diff,
    param_diff,
    randn,
    rng,
    source,
    target,
    transform,
)

HIDDEN, INPUT = 5, 3
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def torch_weights(r, family: str, layers: int = 2, bidirectional: bool = True, bias: bool = True) -> dict:
    """What nn.LSTM/GRU/RNN's state_dict holds, randomised."""
    gates, weights = GATES[family], {}
    for k in range(layers):
        width = INPUT if k == 0 else HIDDEN * (2 if bidirectional else 1)
        for suffix in ["", "_reverse"] if bidirectional else [""]:
            weights[f"weight_ih_l{k}{suffix}"] = randn(r, gates * HIDDEN, width)
            weights[f"weight_hh_l{k}{suffix}"] = randn(r, gates * HIDDEN, HIDDEN)
            if bias:
                weights[f"bias_ih_l{k}{suffix}"] = randn(r, gates * HIDDEN)
                weights[f"bias_hh_l{k}{suffix}"] = randn(r, gates * HIDDEN)
    return weights


def onnx_order(array: np.ndarray, family: str) -> np.ndarray:
    """Gate blocks from PyTorch's order to ONNX's, written out per family."""
    blocks = np.split(array, GATES[family], axis=0)
    if family == "LSTM":
        i, f, g, o = blocks
        return np.concatenate([i, o, f, g])  # ONNX: input, output, forget, cell
    if family == "GRU":
        r, z, n = blocks
        return np.concatenate([z, r, n])  # ONNX: update, reset, hidden
    return array


def onnx_node(weights: dict, family: str, k: int, name: str, bidirectional: bool = True, **attrs):
    suffixes = ["", "_reverse"] if bidirectional else [""]
    w = np.stack([onnx_order(weights[f"weight_ih_l{k}{s}"], family) for s in suffixes])
    r = np.stack([onnx_order(weights[f"weight_hh_l{k}{s}"], family) for s in suffixes])
    b = np.stack(
        [
            np.concatenate(
                [
                    onnx_order(weights.get(f"bias_ih_l{k}{s}", np.zeros(w.shape[1], np.float32)), family),
                    onnx_order(weights.get(f"bias_hh_l{k}{s}", np.zeros(w.shape[1], np.float32)), family),
                ]
            )
            for s in suffixes
        ]
    )
    if family == "GRU":
        attrs.setdefault("linear_before_reset", 1)
    return layer(
        name,
        RECURRENT,
        family,
        attrs,
        hints=("rnn",),
        weight_ih=w,
        weight_hh=r,
        bias=b,
        input_5=np.zeros((len(suffixes), 1, HIDDEN), np.float32),
    )


@pytest.mark.parametrize("family", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_every_layer_of_a_stacked_module_is_reproduced(family, bidirectional):
    weights = torch_weights(rng(1), family, bidirectional=bidirectional)
    src = source(layer("rnn", RECURRENT, family, {"num_layers": 2}, **weights))
    tgt = target(
        onnx_node(weights, family, 0, "/rnn/X", bidirectional), onnx_node(weights, family, 1, "/rnn/X_1", bidirectional)
    )
    result = diff(src, tgt)
    assert [(e.target, e.status, e.transform, e.variant) for e in result.layers] == [
        ("/rnn/X", OK, "recurrent", "layer 0"),
        ("/rnn/X_1", OK, "recurrent", "layer 1"),
    ]
    assert all(p.max_abs_err == 0 for e in result.layers for p in e.params)
    assert result.verdict == "faithful" and result.coverage.unexplained == 0


def test_a_module_without_bias_is_a_zero_b():
    weights = torch_weights(rng(2), "LSTM", layers=1, bias=False)
    src = source(layer("rnn", RECURRENT, "LSTM", **weights))
    entry = layer_diff(diff(src, target(onnx_node(weights, "LSTM", 0, "n"))), "n")
    assert entry.status == OK and not param_diff(entry, "bias").max_abs_err


@pytest.mark.parametrize("role, axis", [("weight_ih", 1), ("weight_hh", 1), ("bias", 1)])
def test_two_percent_in_one_gate_row_is_caught(role, axis):
    weights = torch_weights(rng(3), "LSTM", layers=1)
    node = onnx_node(weights, "LSTM", 0, "n")
    values = node.params[role].array().copy()
    values[1, 7] *= 1.02  # the reverse direction, row 7 (the output gate's third row)
    node = layer(
        "n",
        RECURRENT,
        "LSTM",
        node.attrs,
        hints=node.hints,
        **{**{k: p.array() for k, p in node.params.items()}, role: values},
    )
    entry = layer_diff(diff(source(layer("rnn", RECURRENT, "LSTM", **weights)), target(node)), "n")
    assert entry.status == MISMATCH and param_diff(entry, role).bad_channels == [7]


def test_pytorch_gate_order_is_not_accepted_as_it_is():
    """A node holding PyTorch's gate order computes another LSTM: a mismatch."""
    weights = torch_weights(rng(4), "LSTM", layers=1, bidirectional=False)
    unordered = layer(
        "n",
        RECURRENT,
        "LSTM",
        hints=("rnn",),
        weight_ih=weights["weight_ih_l0"][None],
        weight_hh=weights["weight_hh_l0"][None],
        bias=np.concatenate([weights["bias_ih_l0"], weights["bias_hh_l0"]])[None],
    )
    entry = layer_diff(diff(source(layer("rnn", RECURRENT, "LSTM", **weights)), target(unordered)), "n")
    assert entry.status == MISMATCH


def test_reasons_it_does_not_apply():
    weights = torch_weights(rng(5), "GRU", layers=1)
    src = source(layer("rnn", RECURRENT, "GRU", **weights))
    node = onnx_node(weights, "GRU", 0, "n", linear_before_reset=0)
    assert check_reasons(transform("recurrent"), src, node, "rnn") == [
        "linear_before_reset=0 computes another GRU than PyTorch's"
    ]
    wrong = layer(
        "n",
        RECURRENT,
        "GRU",
        hints=("rnn",),
        weight_ih=np.zeros((2, 15, 4), np.float32),
        weight_hh=np.zeros((2, 15, 5), np.float32),
    )
    assert check_reasons(transform("recurrent"), src, wrong, "rnn") == [
        "W shape [2, 15, 4] != [2, 15, 3] (layer 0, 2 direction(s))"
    ]
    assert check_reasons(transform("recurrent"), src, layer("n", RECURRENT, "LSTM", weight_ih=np.zeros(1)), "rnn") == []

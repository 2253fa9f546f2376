"""inspector.targets: which target layers a diff must explain, and which only may be.

Weight layers must be explained (their absence from the source makes a diff
"incomplete"); other layers holding a float constant of more than one element are
explained when they can be and otherwise listed as untraced. An InstanceNormalization
with scale 1 and bias 0 is how exporters write a GroupNorm or a non-affine InstanceNorm:
its constants are made at export, so it is not a weight layer.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from inspector import ir
from inspector.targets import WEIGHT_KINDS, prepare_targets
from tests.support.layers import layer, match, source, target

ONES, ZEROS = np.ones(4, np.float32), np.zeros(4, np.float32)


def _sorted_out(*layers):
    explained, others = prepare_targets(target(*layers))
    return [layer.name for layer in explained], [layer.name for layer in others]


@pytest.mark.parametrize("kind", sorted(WEIGHT_KINDS - {ir.INSTANCENORM}))
def test_every_weight_kind_must_be_explained(kind):
    assert _sorted_out(layer("n", kind, "Op", weight=np.ones((2, 2), np.float32))) == (["n"], [])


def test_the_weight_kinds():
    assert WEIGHT_KINDS >= {
        ir.CONV,
        ir.CONV_TRANSPOSE,
        ir.LINEAR,
        ir.BATCHNORM,
        ir.LAYERNORM,
        ir.GROUPNORM,
        ir.ATTENTION,
        ir.RECURRENT,
        "prelu",
        "rmsnorm",
    }
    # A Gather's table is an embedding's weight or a constant computed at export: it is
    # explained when it can be, never forced onto a parameter.
    assert ir.EMBEDDING not in WEIGHT_KINDS


def test_layers_without_params_are_left_out():
    assert _sorted_out(layer("relu", ir.ACTIVATION, "Relu"), layer("conv", ir.CONV, "Conv")) == ([], [])


@pytest.mark.parametrize(
    "values, listed",
    [
        (np.full(3, 0.5, np.float32), True),
        (np.full((2, 2), 0.5, np.float16), True),
        (np.full(3, 0.5, ml_dtypes.bfloat16), True),
        (np.full(3, 0.5, np.float64), True),
        (np.array([255.0], np.float32), False),  # a scalar (one element): a scale factor, not a parameter
        (np.array(255.0, np.float32), False),
        (np.arange(4, dtype=np.int64), False),  # shapes and indices
        (np.ones(4, bool), False),
    ],
)
def test_other_constants_are_explained_when_they_can_be(values, listed):
    assert _sorted_out(layer("mul", "mul", "Mul", scale=values)) == ([], ["mul"] if listed else [])


def test_a_layer_with_one_float_constant_among_others_is_listed():
    assert _sorted_out(layer("add", "add", "Add", shape=np.arange(3), bias=np.ones(3, np.float32))) == ([], ["add"])


@pytest.mark.parametrize(
    "params, neutral",
    [
        ({"weight": ONES, "bias": ZEROS}, True),  # GroupNorm as InstanceNorm + Mul + Add
        ({"weight": ONES}, True),
        ({"bias": ZEROS}, True),
        ({"weight": ONES, "bias": ZEROS + 0.5}, False),
        ({"weight": ONES * 2, "bias": ZEROS}, False),
        ({"weight": ONES, "bias": ZEROS, "mean": ZEROS}, False),  # not just scale and bias
    ],
)
def test_a_neutral_instance_norm_is_no_weight_layer(params, neutral):
    norm = layer("in", ir.INSTANCENORM, "InstanceNormalization", **params)
    assert _sorted_out(norm) == (([], ["in"]) if neutral else (["in"], []))


def test_a_neutral_instance_norm_of_one_channel_is_nothing_to_explain():
    norm = layer(
        "in", ir.INSTANCENORM, "InstanceNormalization", weight=np.ones(1, np.float32), bias=np.zeros(1, np.float32)
    )
    assert _sorted_out(norm) == ([], [])


def test_both_lists_keep_execution_order():
    layers = [
        layer("c2", ir.CONV, "Conv", weight=np.ones((2, 2, 1, 1), np.float32)),
        layer("m1", "mul", "Mul", scale=np.ones(2, np.float32)),
        layer("c1", ir.CONV, "Conv", weight=np.ones((2, 2, 1, 1), np.float32)),
        layer("m0", "mul", "Mul", scale=np.ones(2, np.float32)),
    ]
    assert _sorted_out(*layers) == (["c2", "c1"], ["m1", "m0"])


def test_the_verdict_follows_what_must_be_explained():
    empty = source()
    neutral = target(layer("in", ir.INSTANCENORM, "InstanceNormalization", weight=ONES, bias=ZEROS))
    affine = target(layer("in", ir.INSTANCENORM, "InstanceNormalization", weight=ONES * 2, bias=ZEROS))
    untraced = match(empty, neutral)
    assert (untraced.verdict, untraced.layers) == ("faithful", [])
    assert [(c.layer, c.reason[:25]) for c in untraced.constants] == [
        ("in", "the neutral scale or bias"),
        ("in", "the neutral scale or bias"),
    ]
    missing = match(empty, affine)
    assert missing.verdict == "incomplete" and [e.status for e in missing.layers] == ["unmatched"]

"""The layer representation's arithmetic: what a broadcast tensor stores, and statistics
over its stored values that equal those over every element."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.ir import Layer, Model, Param, ParamStats, ValueRange, stored_shape_of


@pytest.mark.parametrize(
    "shape, strides, stored",
    [
        ((2**30,), (0,), (1,)),
        ((4, 1000), (1, 0), (4, 1)),
        ((3, 5, 7), (0, 7, 1), (1, 5, 7)),
        ((4, 1000), (1000, 1), None),  # dense
        ((1, 8), (0, 1), None),  # a size-1 axis of stride 0 repeats nothing
        ((0, 5), (0, 1), None),  # empty
        ((), (), None),  # scalar
    ],
)
def test_stored_shape_of_a_strided_view(shape, strides, stored):
    assert stored_shape_of(shape, strides) == stored


def test_statistics_of_a_broadcast_array_are_those_of_every_element():
    rng = np.random.default_rng(3)
    stored = rng.standard_normal((4, 1)).astype(np.float32)
    stored[2, 0] = np.nan
    broadcast = np.broadcast_to(stored, (4, 1000))
    dense = np.array(broadcast)
    stats, expected = ParamStats.of(broadcast), ParamStats.of(dense)
    assert (stats.numel, stats.nan, stats.inf) == (4000, 1000, 0) == (expected.numel, expected.nan, expected.inf)
    finite = dense[np.isfinite(dense)].astype(np.float64)
    assert stats.min == finite.min() and stats.max == finite.max()
    assert stats.mean == pytest.approx(finite.mean()) and stats.std == pytest.approx(finite.std())
    assert ValueRange.of(broadcast) == ValueRange(stats.min, stats.max, 1000, 0)


def test_a_broadcast_param_counts_its_shape_and_its_stored_bytes_apart():
    stored = np.arange(3, dtype=np.float16).reshape(3, 1)
    broadcast = Param("scale", (3, 1000), "float16", lambda: np.broadcast_to(stored, (3, 1000)), stored_shape=(3, 1))
    dense = Param("weight", (2, 2), "float32", lambda: np.zeros((2, 2), np.float32))
    shared = Layer("a", "other", "A", params={"scale": broadcast, "weight": dense})
    model = Model("test", "x", [shared, Layer("b", "other", "B", params={"scale": broadcast})])
    assert (broadcast.numel, broadcast.stored_numel, broadcast.nbytes, broadcast.stored_nbytes) == (3000, 3, 6000, 6)
    assert (dense.stored_numel, dense.stored_nbytes) == (4, 16)
    assert (model.num_parameters, model.nbytes, model.stored_nbytes) == (3004, 6016, 22)

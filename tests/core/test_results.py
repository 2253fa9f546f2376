"""inspector.results: the verdict rules and the per-transform counts (pure data).

"differs" when any target layer is a mismatch; else "incomplete" when any is unmatched;
else "faithful". Unused source layers and untraced constants never change the verdict.
"""

from __future__ import annotations

import dataclasses

import pytest

from inspector.results import DIFFERS, FAITHFUL, INCOMPLETE, MISMATCH, OK, UNMATCHED, DiffResult, LayerDiff, Tolerance
from tests.support.layers import source, target


def _result(*statuses_and_transforms, **fields) -> DiffResult:
    layers = [
        LayerDiff(target=f"n{i}", op="Conv", kind="conv", status=status, transform=transform)
        for i, (status, transform) in enumerate(statuses_and_transforms)
    ]
    return DiffResult(source(), target(), layers=layers, **fields)


@pytest.mark.parametrize(
    "statuses, verdict",
    [
        ([], FAITHFUL),
        ([OK, OK], FAITHFUL),
        ([OK, UNMATCHED], INCOMPLETE),
        ([OK, MISMATCH], DIFFERS),
        ([UNMATCHED, MISMATCH, OK], DIFFERS),  # a difference outranks a gap
    ],
)
def test_verdict(statuses, verdict):
    transform = {OK: "identity", MISMATCH: "identity", UNMATCHED: None}
    assert _result(*[(s, transform[s]) for s in statuses]).verdict == verdict


def test_unused_source_layers_and_constants_do_not_change_the_verdict():
    from inspector.results import ConstantTensor

    result = _result(
        (OK, "identity"),
        unmatched_source=["aux.head"],
        constants=[ConstantTensor("t", "Mul", "Mul_3", 4, "computed at export")],
    )
    result.coverage.add("constant", "Mul", 4, 16)
    assert result.verdict == FAITHFUL


def test_unexplained_numbers_make_it_incomplete():
    result = _result((OK, "identity"))
    result.coverage.add("unexplained", "LSTM", 1, 4)
    assert result.verdict == INCOMPLETE
    result.coverage.add("explained", "LSTM", 99, 396)
    assert result.verdict == INCOMPLETE  # one number left is one too many


def test_count():
    result = _result((OK, "a"), (MISMATCH, "a"), (OK, "b"), (UNMATCHED, None))
    assert (result.count(OK), result.count(MISMATCH), result.count(UNMATCHED)) == (2, 1, 1)


def test_by_transform_counts_accepted_layers_most_first_then_by_name():
    result = _result(
        (OK, "identity"),
        (OK, "fold_batchnorm"),
        (OK, "fold_batchnorm"),
        (OK, "cast"),
        (MISMATCH, "identity"),
        (MISMATCH, "identity"),
        (UNMATCHED, None),
        (OK, "cast"),
        (OK, "transpose"),
    )
    counts = result.by_transform()
    assert counts == {"cast": 2, "fold_batchnorm": 2, "identity": 1, "transpose": 1}
    assert list(counts) == ["cast", "fold_batchnorm", "identity", "transpose"]


def test_defaults_of_a_layer_diff_say_unmatched():
    entry = LayerDiff(target="n", op="Conv", kind="conv")
    assert (entry.status, entry.transform, entry.sources, entry.params, entry.reasons) == (UNMATCHED, None, [], [], [])


def test_tolerance_is_a_value():
    assert Tolerance(1e-4, 1e-6) == Tolerance(rtol=1e-4, atol=1e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Tolerance(1e-4, 1e-6).rtol = 1.0  # type: ignore[misc]

"""Pairing output rows that come in another order, and the verdict words (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.commands.verify.metrics import Tolerances, compare_output
from plugins.commands.verify.report import verdict_of
from plugins.commands.verify.rows import match_rows

TOLERANCES = Tolerances(atol=1e-4, rtol=1e-3)


def _detections(count: int = 300, seed: int = 0) -> np.ndarray:
    """Rows like a detector's: box (4), score, class; many scores tied."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.random((count, 4)) * 64, rng.random((count, 1)), rng.integers(0, 3, (count, 1))], 1)
    rows[: count // 3, 4] = 0.5  # a third of the scores tie
    return rows[None].astype(np.float32)


def test_every_row_paired_is_the_same_in_another_order():
    expected = _detections()
    order = np.random.default_rng(1).permutation(expected.shape[1])
    actual = expected[:, order] + np.float32(2e-6)
    result = compare_output("dets", actual, expected, TOLERANCES)
    assert result.status == "same" and result.sorted_rows and result.unpaired_rows is None
    assert result.max_abs_err < 1e-5  # the errors of the paired rows, not of the misaligned ones


def test_noise_in_the_first_column_does_not_break_the_pairing():
    # Two rows tie in the first column up to float noise, which flips their sorted order:
    # a lexicographic sort pairs (1.0, 3) with (1.0, 5) and calls them different.
    expected = np.array([[[1.0, 5.0, 0.9], [1.0 + 1e-7, 3.0, 0.8], [7.0, 1.0, 0.1]]])
    actual = np.array([[[1.0, 3.0, 0.8], [1.0 + 2e-7, 5.0, 0.9], [7.0, 1.0, 0.1]]])
    lexsorted = [np.lexsort(block.T[::-1]) for block in (actual[0], expected[0])]
    assert not np.allclose(actual[0][lexsorted[0]], expected[0][lexsorted[1]], atol=1e-4, rtol=1e-3)
    result = compare_output("dets", actual, expected, TOLERANCES)
    assert result.status == "same" and result.sorted_rows


def test_a_chain_of_near_ties_needs_an_augmenting_path():
    # Greedy nearest pairing gives actual 0 the expected 0 and strands actual 2.
    expected = np.array([[0.0, 0.0], [1.5e-4, 0.0], [3.0e-4, 0.0]])
    actual = np.array([[1.0e-4, 0.0], [2.0e-4, 0.0], [0.0, 0.0]])
    match = match_rows(actual, expected, 1e-4, 0.0)
    assert match.unpaired == 0
    assert (np.abs(actual - expected[match.permutation]) <= 1e-4).all()
    assert sorted(match.permutation.tolist()) == [0, 1, 2]


def test_a_row_without_an_equal_partner_differs():
    expected = _detections(50)
    actual = expected[:, ::-1].copy()
    actual[0, 7, 0] += 1.0  # one box moved by a pixel
    result = compare_output("dets", actual, expected, TOLERANCES)
    assert result.status == "differs" and not result.sorted_rows and result.unpaired_rows == 1


def test_identical_rows_and_nan_rows_pair():
    expected = np.zeros((1, 400, 6), dtype=np.float32)  # padding rows, all equal
    expected[0, :3] = [[1, 2, 3, 4, 0.9, 1], [5, 6, 7, 8, 0.8, 0], [np.nan, 0, 0, 0, 0, 0]]
    actual = expected[:, ::-1].copy()
    result = compare_output("dets", actual, expected, TOLERANCES)
    assert result.status == "same" and result.sorted_rows


@pytest.mark.parametrize(
    "statuses, verdict",
    [
        (["same", "same"], "same"),
        (["same", "incomplete"], "incomplete"),
        (["differs", "incomplete"], "differs"),
        ([], "incomplete"),
    ],
)
def test_verdict_words(statuses, verdict):
    outputs = [{"name": f"o{i}", "status": status, "reason": "why"} for i, status in enumerate(statuses)]
    found, reason = verdict_of(outputs)
    assert found == verdict
    assert (reason is None) == (verdict == "same")

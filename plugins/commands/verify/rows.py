"""Pairing the rows of two outputs that may hold the same rows in another order.

A detection head selects its rows with a TopK (or NonZero, NMS): when two scores tie
within float noise, ONNX Runtime and PyTorch may return the same rows in another order,
and an elementwise comparison then calls two equal outputs different. Sorting the rows
lexicographically does not survive noise in the first column, so the rows are paired
instead:

- two rows are *equal* when every element is within tolerance,
  ``|a - e| <= atol + rtol * |e|`` (``atol`` a number or one per column); NaN equals NaN
  and equal infinities are equal;
- candidates are found by one *key column* (the column of the expected rows with the
  most distinct values): both sides sorted by it, a row of ``a`` is compared only with
  the rows of ``e`` whose key is within tolerance of its own;
- the pairing is a maximum bipartite matching of the "equal" relation (augmenting paths,
  started from a greedy pairing of nearest rows), so a tie chain cannot strand a row
  that has a partner.

:func:`match_rows` returns the permutation when every row has an equal partner (and
only then: "same (rows reordered)" is never said of an output where a row lacks one),
else the number of rows without a partner. Cost: one sort per side and, per row, the
candidates in its key window; a window that grows past :data:`MAX_PAIR_CHECKS` element
comparisons in total (thousands of tied rows) falls back to an exact lexicographic
sort, whose pairing is then checked row by row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PAIR_CHECKS = 20_000_000
"""Element comparisons spent on candidate windows before falling back to a sort."""


@dataclass(frozen=True, slots=True)
class RowMatch:
    """``permutation[i]``: the expected row equal to actual row ``i`` (None when some row
    has no partner); ``unpaired``: how many actual rows have no equal expected row."""

    permutation: np.ndarray | None
    unpaired: int


def row_errors(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``|a - e|`` (float64, broadcasting) with matching NaNs and equal infinities 0 and
    any other non-finite difference +inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(actual - expected)
        if not np.isfinite(err).all():
            special = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
            err = np.where(special, 0.0, err)
            err = np.where(np.isnan(err), np.inf, err)
    return err


def rows_equal(actual: np.ndarray, expected: np.ndarray, atol, rtol: float) -> np.ndarray:
    """Whether each row pair (broadcast over leading axes) is equal within tolerance."""
    limit = atol + rtol * np.where(np.isfinite(expected), np.abs(expected), 0.0)
    return (row_errors(actual, expected) <= limit).all(axis=-1)


def match_rows(actual: np.ndarray, expected: np.ndarray, atol, rtol: float) -> RowMatch:
    """Pair the rows (first axis) of two (N, C) arrays, each with an equal row of the other."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    count = a.shape[0]
    if count == 0:
        return RowMatch(np.arange(0), 0)
    atol_row = np.broadcast_to(np.asarray(atol, dtype=np.float64), (a.shape[1],))
    adjacency = _candidates(a, e, atol_row, rtol)
    if adjacency is None:
        return _by_sorting(a, e, atol_row, rtol)
    pair_of_actual = _matching(adjacency, count)
    unpaired = int(np.sum(pair_of_actual < 0))
    return RowMatch(pair_of_actual if unpaired == 0 else None, unpaired)


def _key_column(e: np.ndarray) -> int:
    """The column telling rows apart best: most distinct values, then largest spread."""
    best, best_score = 0, (-1, -1.0)
    for column in range(e.shape[1]):
        values = e[:, column]
        finite = values[np.isfinite(values)]
        score = (len(np.unique(values)), float(finite.std()) if finite.size else 0.0)
        if score > best_score:
            best, best_score = column, score
    return best


def _candidates(a: np.ndarray, e: np.ndarray, atol_row: np.ndarray, rtol: float) -> list[list[int]] | None:
    """For each actual row, the expected rows equal to it (None: windows too large)."""
    column = _key_column(e)
    key_e = np.where(np.isnan(e[:, column]), np.inf, e[:, column])
    order = np.argsort(key_e, kind="stable")
    sorted_keys = key_e[order]
    key_a = a[:, column]
    # |a - e| <= atol + rtol |e|  implies  |a - e| <= (atol + rtol |a|) / (1 - rtol).
    reach = (atol_row[column] + rtol * np.abs(key_a)) / max(1.0 - rtol, 1e-12)
    reach = np.where(np.isfinite(reach), reach, 0.0) * (1 + 1e-9) + 1e-300
    lo = np.searchsorted(sorted_keys, key_a - reach, side="left")
    hi = np.searchsorted(sorted_keys, key_a + reach, side="right")
    special = ~np.isfinite(key_a)  # NaN or inf keys: compare with every row of equal key
    if int(np.sum(hi - lo)) * a.shape[1] > MAX_PAIR_CHECKS:
        return None
    adjacency: list[list[int]] = []
    for row in range(a.shape[0]):
        if special[row]:
            same_key = np.isnan(e[:, column]) if np.isnan(key_a[row]) else key_e == key_a[row]
            window = np.nonzero(same_key)[0]
        else:
            window = order[lo[row] : hi[row]]
        if window.size == 0:
            adjacency.append([])
            continue
        equal = rows_equal(a[row][None, :], e[window], atol_row, rtol)
        hits = window[equal]
        if hits.size > 1:  # nearest first: the greedy start then pairs most rows at once
            distance = np.abs(e[hits] - a[row]).max(axis=1)
            hits = hits[np.argsort(distance, kind="stable")]
        adjacency.append([int(j) for j in hits])
    return adjacency


def _matching(adjacency: list[list[int]], count: int) -> np.ndarray:
    """A maximum matching (Kuhn's augmenting paths, iterative, greedy start): for each
    actual row, its expected row or -1."""
    pair_of_actual = np.full(count, -1, dtype=np.int64)
    pair_of_expected: dict[int, int] = {}
    for row, options in enumerate(adjacency):
        for j in options:
            if j not in pair_of_expected:
                pair_of_expected[j] = row
                pair_of_actual[row] = j
                break
    for row in range(count):
        if pair_of_actual[row] >= 0 or not adjacency[row]:
            continue
        _augment(row, adjacency, pair_of_actual, pair_of_expected)
    return pair_of_actual


def _augment(start: int, adjacency, pair_of_actual: np.ndarray, pair_of_expected: dict[int, int]) -> bool:
    """One augmenting path from the free actual row ``start`` (depth-first, iterative)."""
    visited: set[int] = set()
    # Stack of (actual row, next option index); parent links rebuild the path.
    stack = [(start, 0)]
    via: dict[int, int] = {}  # expected row -> actual row that reached it
    while stack:
        row, position = stack[-1]
        options = adjacency[row]
        if position >= len(options):
            stack.pop()
            continue
        stack[-1] = (row, position + 1)
        j = options[position]
        if j in visited:
            continue
        visited.add(j)
        via[j] = row
        owner = pair_of_expected.get(j)
        if owner is None:
            # Flip the path back to the start.
            while True:
                row = via[j]
                previous = int(pair_of_actual[row])
                pair_of_actual[row] = j
                pair_of_expected[j] = row
                if row == start:
                    return True
                j = previous
        stack.append((owner, 0))
    return False


def _by_sorting(a: np.ndarray, e: np.ndarray, atol_row: np.ndarray, rtol: float) -> RowMatch:
    """Fallback for masses of tied rows: pair the i-th rows of both sides sorted
    lexicographically, then check each pair."""
    order_a = np.lexsort(a.T[::-1])
    order_e = np.lexsort(e.T[::-1])
    equal = rows_equal(a[order_a], e[order_e], atol_row, rtol)
    unpaired = int(np.sum(~equal))
    if unpaired:
        return RowMatch(None, unpaired)
    permutation = np.empty(a.shape[0], dtype=np.int64)
    permutation[order_a] = order_e
    return RowMatch(permutation, 0)

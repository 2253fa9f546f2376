"""Comparing an ONNX output (``a``, actual) with the PyTorch output (``e``, expected).

Errors, over all elements, in float64:

- ``max_abs_err = max|a - e|``, ``mean_abs_err``, ``median_abs_err``;
- ``max_rel_err = max|a - e| / max|e|``: the error relative to the tensor's scale
  (0 when both are 0), so that elements near zero do not blow it up;
- ``cosine = <a, e> / (|a| |e|)`` over the flattened tensors (1 when both are zero).

The verdict of one output, by ``check_error_stat`` (like Polygraphy's):

- "max": every element satisfies ``|a - e| <= atol + rtol * |e|`` (numpy.allclose);
- "mean": ``mean|a - e| <= atol + rtol * mean|e|``;
- "median": ``median|a - e| <= atol + rtol * median|e|``.

NaN equals NaN and equal infinities are equal; any other non-finite difference fails.

Rows in another order: when the comparison fails for an output of 2 or more dims, the
rows (vectors along the last axis, per index of the axes before the row axis) of the
ONNX output are paired each with an equal row of the PyTorch output
(:func:`plugins.commands.verify.rows.match_rows`). When every row has an equal partner,
the output is "same" with ``sorted_rows`` true ("same (rows reordered)"): the two hold
the same rows in another order, as a TopK over tied scores (detection heads) produces,
and the metrics are those of the paired rows. When some row has none, it "differs" and
``unpaired_rows`` says how many.

An ONNX output with no PyTorch output to pair it with (another count and no output of
its size: an export with NMS built in) is "incomplete": nothing was compared, and
``reason`` says why.

Class scores: for float outputs of 2 or 3 dims whose last axis has at least 2 entries,
``top1_agreement`` is the fraction of rows (all leading indices) whose ONNX arg-max is
a PyTorch top-1 class up to ties (its PyTorch score within the tolerance of the best),
``topk_agreement`` the mean fraction of the ONNX top-k indices that are in the PyTorch
top k up to ties (null when the axis has no more than k entries).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inspector.compare import least_precise
from plugins.commands.verify.words import DIFFER, ERROR_STATS, INCOMPLETE, SAME  # noqa: F401 - the words, re-exported


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Output tolerance (``atol``, ``rtol``, ``check_error_stat``) and the per-layer one
    (``layer_rtol``: ``max|t - e| / max|e|`` of an activation must not exceed it)."""

    atol: float
    rtol: float
    check_error_stat: str = "max"
    layer_rtol: float = 1e-3


# Defaults by the least precise float dtype of the ONNX model's inputs, outputs and
# weights: (atol, rtol, layer_rtol). fp32 ONNX Runtime and PyTorch kernels differ by a
# few ulps per op (~1e-7 relative), which grows to ~1e-5 through a deep network; fp16
# rounds to ~5e-4 per op.
DEFAULT_TOLERANCES = {
    "float64": (1e-5, 1e-4, 1e-4),
    "float32": (1e-4, 1e-3, 1e-3),
    "float16": (1e-3, 1e-2, 1e-2),
    "bfloat16": (1e-2, 5e-2, 5e-2),
}


def default_tolerances(dtypes: set[str]) -> tuple[float, float, float]:
    """(atol, rtol, layer_rtol) for the least precise float dtype among ``dtypes``."""
    return DEFAULT_TOLERANCES[least_precise(dtypes)]


@dataclass(slots=True)
class OutputComparison:
    """One ONNX output against its PyTorch counterpart (see the module docstring)."""

    name: str
    shape: list[int]
    source_index: int | None = None
    source_shape: list[int] | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    mean_abs_err: float | None = None
    median_abs_err: float | None = None
    cosine: float | None = None
    top1_agreement: float | None = None
    topk_agreement: float | None = None
    topk: int | None = None
    sorted_rows: bool = False
    unpaired_rows: int | None = None
    status: str = DIFFER
    reason: str | None = None
    notes: list[str] = field(default_factory=list)

    def entry(self) -> dict:
        return {
            "name": self.name,
            "shape": self.shape,
            "source_index": self.source_index,
            "source_shape": self.source_shape,
            "max_abs_err": self.max_abs_err,
            "max_rel_err": self.max_rel_err,
            "mean_abs_err": self.mean_abs_err,
            "median_abs_err": self.median_abs_err,
            "cosine": self.cosine,
            "top1_agreement": self.top1_agreement,
            "topk_agreement": self.topk_agreement,
            "topk": self.topk,
            "sorted_rows": self.sorted_rows,
            "unpaired_rows": self.unpaired_rows,
            "status": self.status,
            "reason": self.reason,
        }


def abs_errors(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``|a - e|`` in float64, with matching NaNs and equal infinities counted as 0 and
    any other non-finite difference as +inf."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e)
        if not np.isfinite(err).all():
            same_special = (a == e) | (np.isnan(a) & np.isnan(e))
            err = np.where(same_special, 0.0, err)
            err = np.where(np.isnan(err), np.inf, err)
    return err


def within(err: np.ndarray, expected: np.ndarray, tolerances: Tolerances) -> bool:
    """The verdict rule of ``tolerances.check_error_stat`` (module docstring)."""
    if err.size == 0:
        return True
    magnitude = np.abs(np.asarray(expected, dtype=np.float64))
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    stat = tolerances.check_error_stat
    if stat == "max":
        return bool((err <= tolerances.atol + tolerances.rtol * magnitude).all())
    reduce = np.mean if stat == "mean" else np.median
    return bool(reduce(err) <= tolerances.atol + tolerances.rtol * reduce(magnitude))


def compare_output(name: str, actual: np.ndarray, expected: np.ndarray, tolerances: Tolerances) -> OutputComparison:
    """Compare one paired output; ``expected`` is reshaped to ``actual``'s shape when only
    the shapes differ (the caller has checked the element counts)."""
    result = OutputComparison(name, list(actual.shape), source_shape=list(expected.shape))
    if expected.shape != actual.shape:
        expected = expected.reshape(actual.shape)
    err = abs_errors(actual, expected)
    ok = within(err, expected, tolerances)
    if not ok and actual.ndim >= 2 and actual.shape[-2] > 1 and actual.dtype.kind in "fiub":
        paired, unpaired = pair_rows(actual, expected, tolerances)
        if paired is not None:
            paired_err = abs_errors(actual, paired)
            if within(paired_err, paired, tolerances):
                ok, err, expected = True, paired_err, paired
                result.sorted_rows = True
        else:
            result.unpaired_rows = unpaired
    _fill_errors(result, err, actual, expected)
    result.status = SAME if ok else DIFFER
    if actual.dtype.kind == "f" and actual.ndim in (2, 3) and actual.shape[-1] >= 2:
        result.top1_agreement, result.topk_agreement, result.topk = class_agreement(actual, expected, tolerances)
    return result


def _fill_errors(result: OutputComparison, err: np.ndarray, actual: np.ndarray, expected: np.ndarray) -> None:
    if err.size == 0:
        result.max_abs_err = result.max_rel_err = result.mean_abs_err = result.median_abs_err = 0.0
        result.cosine = 1.0
        return
    result.max_abs_err = float(err.max())
    result.mean_abs_err = float(err.mean())
    result.median_abs_err = float(np.median(err))
    e = np.asarray(expected, dtype=np.float64)
    finite = np.abs(e[np.isfinite(e)])
    scale = float(finite.max()) if finite.size else 0.0
    result.max_rel_err = relative(result.max_abs_err, scale)
    result.cosine = cosine(actual, expected)


def relative(max_abs: float, scale: float) -> float:
    """``max_abs / scale``; 0 when both are 0, inf when only the scale is."""
    if scale > 0:
        return max_abs / scale
    return 0.0 if max_abs == 0 else float("inf")


def cosine(actual: np.ndarray, expected: np.ndarray) -> float:
    """Cosine similarity of the flattened tensors (float64); 1 when both are all zeros,
    0 when only one is, NaN when either holds a non-finite value."""
    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    norm_a, norm_e = float(np.dot(a, a)), float(np.dot(e, e))
    if norm_a == 0 and norm_e == 0:
        return 1.0
    if norm_a == 0 or norm_e == 0:
        return 0.0
    return float(np.dot(a, e) / np.sqrt(norm_a * norm_e))


def pair_rows(actual: np.ndarray, expected: np.ndarray, tolerances: Tolerances) -> tuple[np.ndarray | None, int]:
    """``expected`` with the rows of each leading index put in the order of the equal rows
    of ``actual`` (None when a row has no equal partner), and the count of rows without one."""
    from plugins.commands.verify.rows import match_rows

    blocks_a = actual.reshape(-1, actual.shape[-2], actual.shape[-1])
    blocks_e = expected.reshape(-1, expected.shape[-2], expected.shape[-1])
    paired = np.empty_like(blocks_e)
    unpaired = 0
    for index, (block_a, block_e) in enumerate(zip(blocks_a, blocks_e)):
        match = match_rows(block_a, block_e, tolerances.atol, tolerances.rtol)
        if match.permutation is None:
            unpaired += match.unpaired
        else:
            paired[index] = block_e[match.permutation]
    return (None if unpaired else paired.reshape(expected.shape)), unpaired


def class_agreement(
    actual: np.ndarray, expected: np.ndarray, tolerances: Tolerances, k: int = 5
) -> tuple[float, float | None, int | None]:
    """(top-1 agreement, top-k agreement or None, k or None) over the last axis."""
    classes = actual.shape[-1]
    a = np.asarray(actual, dtype=np.float64).reshape(-1, classes)
    e = np.asarray(expected, dtype=np.float64).reshape(-1, classes)
    if not (np.isfinite(a).all() and np.isfinite(e).all()):
        return float("nan"), None, None
    rows = np.arange(a.shape[0])
    best = e.max(axis=1)
    tie = tolerances.atol + tolerances.rtol * np.abs(best)
    top1 = float(np.mean(e[rows, a.argmax(axis=1)] >= best - tie))
    if classes <= k:
        return top1, None, None
    top_a = np.argpartition(-a, k - 1, axis=1)[:, :k]
    kth_e = -np.partition(-e, k - 1, axis=1)[:, k - 1]
    tie_k = tolerances.atol + tolerances.rtol * np.abs(kth_e)
    in_top = e[rows[:, None], top_a] >= (kth_e - tie_k)[:, None]
    return top1, float(in_top.mean()), k


# ----------------------------------------------------------------------------- pairing


def pair_outputs(
    onnx_shapes: list[tuple[int, ...]], torch_shapes: list[tuple[int, ...]]
) -> tuple[list[int | None], str | None]:
    """For each ONNX output, the index of its PyTorch output (or None), and a note when
    the pairing was not simply one to one in order.

    Same counts: in order. Otherwise each ONNX output takes the first unused PyTorch
    output of the same shape (then of the same element count).
    """
    if len(onnx_shapes) == len(torch_shapes):
        return list(range(len(onnx_shapes))), None
    used: set[int] = set()
    pairs: list[int | None] = []
    for shape in onnx_shapes:
        match = next(
            (i for i, other in enumerate(torch_shapes) if i not in used and tuple(other) == tuple(shape)), None
        )
        if match is None:
            size = int(np.prod(shape))
            match = next(
                (i for i, other in enumerate(torch_shapes) if i not in used and int(np.prod(other)) == size), None
            )
        if match is not None:
            used.add(match)
        pairs.append(match)
    note = (
        f"the ONNX model has {len(onnx_shapes)} output{'s' if len(onnx_shapes) != 1 else ''} and the PyTorch model "
        f"returns {len(torch_shapes)} tensor{'s' if len(torch_shapes) != 1 else ''}: outputs were paired by shape"
    )
    return pairs, note

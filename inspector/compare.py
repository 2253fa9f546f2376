"""Comparing a target tensor with its re-computation: tolerances, a full comparison, a
cheap probe.

Closeness is elementwise, ``|t - e| <= atol + rtol * max(|e|, SMALL_FRACTION * max|e|)``,
with ``rtol``/``atol`` from the least precise floating dtype involved
(:func:`default_tolerance`). The result says how far off (absolute, and relative to the
tensor's scale) and where (which output channels).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from inspector.results import Tolerance

SMALL_FRACTION = 0.01
"""Elements below this fraction of a tensor's scale are compared at that fraction: a
fold's rounding error follows the size of its terms, not of a result that cancels to
almost zero."""

# Per dtype: (rtol, atol). The lowest precision among the source and target tensors
# involved decides; fp16 and bf16 loosen the comparison to their rounding error.
DTYPE_TOLERANCES = {
    "float64": Tolerance(1e-4, 1e-6),
    "float32": Tolerance(1e-4, 1e-6),
    "float16": Tolerance(2e-3, 1e-5),
    "bfloat16": Tolerance(1.6e-2, 1e-4),
}
_PRECISION_RANK = {"float64": 0, "float32": 1, "float16": 2, "bfloat16": 3}


def least_precise(dtypes: Iterable[str]) -> str:
    """The least precise floating dtype in ``dtypes`` ("float32" when none is less precise)."""
    worst = "float32"
    for dtype in dtypes:
        if _PRECISION_RANK.get(dtype, 1) > _PRECISION_RANK[worst]:
            worst = dtype
    return worst


def default_tolerance(dtypes: Iterable[str]) -> Tolerance:
    """The tolerance of the least precise floating dtype in ``dtypes`` (fp32 if none)."""
    return DTYPE_TOLERANCES[least_precise(dtypes)]


# ----------------------------------------------------------------------------- compare


@dataclass(slots=True)
class Comparison:
    """One target tensor against its expected values (see :class:`~inspector.results.ParamDiff`)."""

    ok: bool
    max_abs_err: float
    max_rel_err: float
    bad_fraction: float
    violation: float  # max |t - e| / tolerance; <= 1 when ok
    bad_channels: list[int]
    expected_range: tuple[float, float]
    approximate: bool = False  # measured on a probe of PROBE_SIZE elements only
    located: bool = True  # False: bad_channels not listed (compare(locate=False))


PROBE_SIZE = 4096
"""Elements a probe compares before a full comparison."""

SCREEN_SIZE = 64
"""Elements :func:`screen` compares."""


@functools.lru_cache(maxsize=1024)
def _sample(size: int, count: int) -> np.ndarray:
    """``count`` pseudo-random flat indices into ``size`` elements, the same every run
    (seeded by the size; kept, since many tensors of a model share a size)."""
    index = np.random.default_rng(size).integers(0, size, count)
    index.flags.writeable = False
    return index


def _take(array: np.ndarray, flat_index: np.ndarray) -> np.ndarray:
    """``array``'s elements at C-order flat positions, without copying the whole array."""
    if array.flags.c_contiguous:
        return array.reshape(-1)[flat_index]
    return array[np.unravel_index(flat_index, array.shape)]


def screen(target: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> bool:
    """Whether ``target`` may be within ``tolerance`` of ``expected``: False only when
    :func:`compare` is sure to find a bad element, because one of a pseudo-random sample
    of :data:`SCREEN_SIZE` elements (all of a smaller tensor) is one, with exactly the
    tolerance compare gives it. True proves nothing (compare decides); non-finite
    expected values are left to compare.

    A few microseconds for a tensor of any size, where a comparison that fails costs a
    hundred times that. The tolerance depends on the whole tensor's scale (``max|e|``),
    and grows with it: a sample that passes with its own scale (no larger than the
    tensor's) passes with the tensor's, so the scale is computed only to confirm a
    failure.
    """
    try:
        # Only the sample is widened to float64: a copy of the whole tensor would cost
        # more than the comparison the screen is there to spare.
        e = np.asarray(expected)
        t = np.asarray(target)
        if e.size == 0 or t.size != e.size:
            return True
        if e.size > SCREEN_SIZE:
            index = _sample(e.size, SCREEN_SIZE)
            t, e_sample = _take(t, index), _take(e, index).astype(np.float64)
        else:
            e_sample = e.reshape(-1).astype(np.float64)
            t = t.reshape(-1)
        if t.dtype.kind != "f":
            t = t.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(np.subtract(t, e_sample, dtype=np.float64))
            magnitude = np.abs(e_sample)
            if _within(err, magnitude, tolerance, float(magnitude.max())):
                return True
            if e_sample.size == e.size:
                return False  # the sample is the tensor: its scale is the tensor's
            return _within(err, magnitude, tolerance, max(abs(float(e.min())), abs(float(e.max()))))
    except Exception:  # noqa: BLE001 - a screen proves failures only; compare reports the rest
        return True


def screen_or_accept(target: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> "Comparison | bool":
    """:func:`screen`'s answer, or, for a tensor :func:`compare` would not probe (at most
    :data:`PROBE_SIZE` elements) whose every element is within the smallest tolerance any
    element gets, the :class:`Comparison` compare returns for it (the screen passes then).

    For a small tensor numpy's cost per call outweighs the elements: the full error, the
    range and the scale cost what the screen does, and the candidate that fits is then
    compared once instead of screened and compared. When the fast path does not accept,
    the screen's sample is judged as :func:`screen` judges it, from the same float64
    errors (an element's error does not depend on which others are computed with it),
    with the tensor's scale known already: the screen passes when the sample passes at
    its own scale ``s`` or at the tensor's ``S``, and for ``0 < s <= S`` every element's
    tolerance at ``s`` is at most its tolerance at ``S`` (see :func:`_within`), so the
    check at ``S`` decides alone unless the sample is all zeros.
    """
    e = np.asarray(expected)
    if e.size > PROBE_SIZE:
        return screen(target, e, tolerance)
    try:
        t = np.asarray(target)
        if t.size != e.size:
            return True
        if e.size == 0:
            return Comparison(True, 0.0, 0.0, 0.0, 0.0, [], (0.0, 0.0))
        if e.dtype.kind != "f":
            e = e.astype(np.float64)
        if t.dtype.kind != "f":
            t = t.astype(np.float64)
        if t.shape != e.shape:
            t = t.reshape(e.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            lo, hi = float(_minimum(e, axis=None)), float(_maximum(e, axis=None))
            err = np.subtract(t, e, dtype=np.float64)
            np.abs(err, out=err)
            accepted = _within_floor(float(_maximum(err, axis=None)), lo, hi, tolerance)
            if accepted is not None:
                return accepted
            scale = max(abs(lo), abs(hi))
            if not math.isfinite(scale):
                return True  # a NaN or Inf expected value: compare decides
            if e.size > SCREEN_SIZE:
                index = _sample(e.size, SCREEN_SIZE)
                err, e = err.reshape(-1)[index], _take(e, index)
            magnitude = np.abs(e.astype(np.float64, copy=False))
            if _within(err, magnitude, tolerance, scale):
                return True
            own = float(_maximum(magnitude, axis=None))
            return own == 0.0 and own != scale and _within(err, magnitude, tolerance, own)
    except Exception:  # noqa: BLE001 - as screen: compare reports the rest
        return True


_minimum, _maximum = np.minimum.reduce, np.maximum.reduce


def _within(err: np.ndarray, magnitude: np.ndarray, tolerance: Tolerance, scale: float) -> bool:
    """Whether every ``err`` is within the tolerance :func:`compare` gives an expected value
    of that ``magnitude`` in a tensor of that ``scale`` (True when the scale is not finite:
    compare treats such tensors element by element). For scales ``0 < s <= S`` (and
    tolerances >= 0) each limit at ``s`` is at most the limit at ``S``: every term grows
    with the scale, and rounding keeps that order."""
    if not math.isfinite(scale):
        return True
    limit = np.maximum(magnitude, SMALL_FRACTION * scale)
    limit *= tolerance.rtol
    limit += effective_atol(tolerance, scale)  # atol' + rtol * max(|e|, c), in place
    return bool(np.less_equal(err, limit).all())


def _within_floor(max_abs: float, lo: float, hi: float, tolerance: Tolerance) -> "Comparison | None":
    """:func:`compare`'s result when the largest error ``max_abs`` is within the smallest
    tolerance any element of a tensor ranging over [``lo``, ``hi``] gets (every element
    is then within its own: the common case of a faithful export), else None."""
    scale = max(abs(lo), abs(hi))
    floor = effective_atol(tolerance, scale) + tolerance.rtol * SMALL_FRACTION * scale
    if math.isfinite(max_abs) and math.isfinite(scale) and max_abs <= floor:
        rel = max_abs / scale if scale > 0 else 0.0
        violation = max_abs / floor if floor > 0 else 0.0
        return Comparison(True, max_abs, rel, 0.0, violation, [], (lo, hi))
    return None


def compare(
    target: np.ndarray,
    expected: np.ndarray,
    tolerance: Tolerance,
    channel_axis: int = 0,
    probe_first: bool = False,
    groups: int = 1,
    locate: bool = True,
) -> Comparison:
    """Compare elementwise: ``|t - e| <= atol' + rtol * max(|e|, SMALL_FRACTION * scale)``
    with ``scale = max|e|`` and ``atol' = atol * min(1, scale)`` (a tensor of tiny values,
    a 1e-6 layer scale, is judged against its own size; with
    ``tolerance.atol_follows_scale`` off, ``atol`` as given).

    NaN equals NaN and +Inf equals +Inf; anything else non-finite is a difference, where
    the target or the expected value is non-finite.

    Bad channels are located along ``channel_axis``; with ``groups`` > 1 and axis 1 (a
    grouped ConvTranspose weight, (in, out/groups, k...)), an element at (i, j) belongs
    to output channel ``(i // (in/groups)) * (out/groups) + j``. Without ``locate``
    they are not listed (``located`` False): a candidate that is not the one reported.

    With ``probe_first``, a pseudo-random sample of :data:`PROBE_SIZE` elements is
    compared first, with exactly the tolerance the full comparison gives them (the scale
    is the whole tensor's); when the sample already fails, the result covers the sample
    only (``approximate``): enough to reject and rank a candidate, never wrong about
    failing. The sample's seed is fixed, so runs repeat; it is random because evenly
    spaced elements alias with kernel sizes and miss, say, merged 3x3 centre taps.
    """
    # The expected values keep their float dtype (min and max are exact in it, and the
    # subtraction widens inside the ufunc): no float64 copy of a large tensor.
    e = np.asarray(expected)
    if e.dtype.kind != "f":
        e = e.astype(np.float64)
    t = np.asarray(target)
    if t.dtype.kind != "f":
        t = t.astype(np.float64)
    if t.shape != e.shape:
        t = t.reshape(e.shape)
    if e.ndim == 0:  # ufuncs on 0-d arrays return scalars, which cannot be written into
        e, t = e.reshape(1), t.reshape(1)
    if e.size == 0:
        return Comparison(True, 0.0, 0.0, 0.0, 0.0, [], (0.0, 0.0))
    with np.errstate(invalid="ignore", over="ignore"):
        lo, hi = float(e.min()), float(e.max())
        scale = max(abs(lo), abs(hi))
        if probe_first and e.size > PROBE_SIZE and np.isfinite(scale):
            index = _sample(e.size, PROBE_SIZE)
            sample = _compare_slowly(
                _take(t, index).astype(np.float64), _take(e, index).astype(np.float64), None, tolerance, 0, 1, scale
            )
            if not sample.ok:
                sample.approximate = True
                sample.bad_channels = []
                sample.bad_fraction = max(sample.bad_fraction, 1 / PROBE_SIZE)
                return sample
        # Widening inside the ufunc avoids a full float64 copy of the target.
        err = np.subtract(t, e, dtype=np.float64)
        np.abs(err, out=err)
        # Every element within the smallest tolerance any element gets: done in three
        # passes, which is the common case of a faithful export.
        accepted = _within_floor(float(err.max()), lo, hi, tolerance)
        if accepted is not None:
            return accepted
        return _compare_slowly(
            t.astype(np.float64), e.astype(np.float64, copy=False), err, tolerance, channel_axis, groups, locate=locate
        )


def effective_atol(tolerance: Tolerance, scale: float) -> float:
    """The absolute tolerance a tensor of this scale gets (see :func:`compare`)."""
    if not tolerance.atol_follows_scale or not math.isfinite(scale) or scale <= 0:
        return tolerance.atol
    return tolerance.atol * min(1.0, scale)


def _compare_slowly(
    t, e, err, tolerance: Tolerance, channel_axis: int, groups: int = 1, scale: float | None = None, locate=True
) -> Comparison:
    """Every element's own tolerance, the error's size and where it sits (unless not
    ``locate``). ``scale`` is the tensor's (for a sample of it); ``err`` is ``|t - e|``
    when already computed."""
    magnitude = np.abs(e)
    finite = np.isfinite(e)
    if scale is None:
        scale = float(magnitude[finite].max()) if finite.any() else 0.0
    if err is None:
        err = np.abs(t - e)
    same_special = (t == e) | (np.isnan(t) & np.isnan(e))
    err = np.where(same_special, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)
    # A non-finite expected value is matched only by the same value: its tolerance
    # (rtol * inf) would otherwise let anything pass.
    err = np.where(~finite & ~same_special, np.inf, err)
    tolerance_elem = effective_atol(tolerance, scale) + tolerance.rtol * np.maximum(
        np.where(finite, magnitude, 0.0), SMALL_FRACTION * scale
    )
    bad = err > tolerance_elem
    max_abs = float(err.max())
    violation = float((err / tolerance_elem).max()) if tolerance_elem.min() > 0 else (0.0 if max_abs == 0 else np.inf)
    bad_count = int(bad.sum())
    channels = bad_channels(bad, channel_axis, groups) if bad_count and locate else []
    lo = float(e[finite].min()) if finite.any() else float("nan")
    hi = float(e[finite].max()) if finite.any() else float("nan")
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    located = locate or not bad_count
    return Comparison(bad_count == 0, max_abs, rel, bad_count / e.size, violation, channels, (lo, hi), located=located)


def bad_channels(bad: np.ndarray, channel_axis: int, groups: int = 1) -> list[int]:
    """The output channels holding a True of ``bad`` (see :func:`compare` for groups)."""
    if bad.ndim <= 1:
        return [int(c) for c in np.flatnonzero(bad)] if bad.ndim == 1 else [0]
    axis = channel_axis % bad.ndim if -bad.ndim <= channel_axis < bad.ndim else 0
    if groups > 1 and axis == 1:
        in_rows = bad.any(axis=tuple(range(2, bad.ndim))) if bad.ndim > 2 else bad  # (in, out/groups)
        rows, columns = np.nonzero(in_rows)
        per_group_in, per_group_out = bad.shape[0] // groups, bad.shape[1]
        return sorted({int(row // per_group_in * per_group_out + column) for row, column in zip(rows, columns)})
    other = tuple(i for i in range(bad.ndim) if i != axis)
    return [int(c) for c in np.flatnonzero(bad.any(axis=other))]


FAILED = Comparison(False, np.inf, np.inf, 1.0, np.inf, [], (float("nan"), float("nan")))


def finite_range(array: np.ndarray) -> tuple[float, float]:
    """(min, max) over the finite values; NaNs when there are none."""
    finite = array[np.isfinite(array)]
    return (float(finite.min()), float(finite.max())) if finite.size else (float("nan"), float("nan"))


def channel_errors(actual, expected, channel_axis: int = 0, groups: int = 1) -> list[float] | None:
    """The largest error of each output channel relative to the tensor's scale,
    ``max over the channel |t - e| / max|e|`` (the channel's share of ``max_rel_err``;
    the largest entry is ``max_rel_err``), for a parameter that differs. Channels are
    counted as :func:`~inspector.compare.bad_channels` counts them (``groups`` for a
    grouped ConvTranspose); a 1-D tensor has one channel per element. ``actual`` None is
    an absent tensor (zeros); None when the shapes cannot be compared."""
    if expected is None:
        return None
    e = np.asarray(expected, dtype=np.float64)
    t = np.zeros_like(e) if actual is None else np.asarray(actual)
    if t.size != e.size:
        return None
    t = t.reshape(e.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(np.subtract(t, e, dtype=np.float64))
        err[t == e] = 0.0  # the same infinity on both sides
        err[np.isnan(t) & np.isnan(e)] = 0.0
        err[np.isnan(err)] = np.inf
        finite = np.abs(e[np.isfinite(e)])
        scale = float(finite.max()) if finite.size else 0.0
        if err.ndim <= 1:
            per_channel = err.reshape(-1)
        else:
            axis = channel_axis % err.ndim if -err.ndim <= channel_axis < err.ndim else 0
            if groups > 1 and axis == 1 and err.shape[0] % groups == 0:
                rows = err.reshape(err.shape[0], err.shape[1], -1).max(axis=2)  # (in, out/groups)
                per_channel = rows.reshape(groups, -1, err.shape[1]).max(axis=1).reshape(-1)
            else:
                per_channel = np.moveaxis(err, axis, 0).reshape(err.shape[axis], -1).max(axis=1)
        if scale > 0:
            relative = per_channel / scale
        else:
            relative = np.where(per_channel == 0, 0.0, np.inf)
    return [float(value) for value in relative]

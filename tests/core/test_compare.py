"""inspector.compare: tolerances per dtype, the elementwise rule, NaN/Inf, the probe, channels.

The rule under test, written out here and not taken from the module:

    |t - e| <= atol + rtol * max(|e|, 0.01 * scale),   scale = max |e| over finite e
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from inspector.compare import (
    PROBE_SIZE,
    SCREEN_SIZE,
    Comparison,
    compare,
    default_tolerance,
    least_precise,
    screen,
    screen_or_accept,
)
from inspector.results import Tolerance

FP32 = Tolerance(rtol=1e-4, atol=1e-6)


def allowed(expected: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Each element's tolerance, by the rule in the module docstring of this test."""
    e = np.asarray(expected, dtype=np.float64)
    scale = np.abs(e[np.isfinite(e)]).max()
    return tolerance.atol + tolerance.rtol * np.maximum(np.abs(e), 0.01 * scale)


# ----------------------------------------------------------------------------- tolerances


@pytest.mark.parametrize(
    "dtypes, worst",
    [
        ({"float32"}, "float32"),
        ({"float64"}, "float32"),  # nothing less precise than fp32: fp32's tolerance
        ({"float32", "float16"}, "float16"),
        ({"float16", "bfloat16", "float32"}, "bfloat16"),
        ({"int64", "float32"}, "float32"),  # num_batches_tracked and friends do not count
        (set(), "float32"),
    ],
)
def test_least_precise(dtypes, worst):
    assert least_precise(dtypes) == worst


def test_tolerances_loosen_with_the_least_precise_dtype():
    fp32 = default_tolerance({"float32"})
    fp16 = default_tolerance({"float32", "float16"})
    bf16 = default_tolerance({"bfloat16", "float32"})
    # A tolerance must at least cover the dtype's own rounding (half an ulp at 1.0) and
    # be looser for every less precise dtype.
    for tolerance, dtype in ((fp32, np.float32), (fp16, np.float16), (bf16, ml_dtypes.bfloat16)):
        assert tolerance.rtol >= float(ml_dtypes.finfo(dtype).eps) / 2
    assert fp32.rtol < fp16.rtol < bf16.rtol
    assert fp32.atol <= fp16.atol <= bf16.atol
    assert default_tolerance({"float64"}) == fp32


def test_fp16_rounding_passes_its_tolerance_and_fails_fp32s():
    expected = np.linspace(-3, 3, 101)
    stored = expected.astype(np.float16)
    assert compare(stored, expected, default_tolerance({"float16"})).ok
    assert not compare(stored, expected, default_tolerance({"float32"})).ok


# ----------------------------------------------------------------------------- the rule


def test_each_element_gets_its_own_tolerance():
    tolerance = Tolerance(rtol=1e-3, atol=0.0)
    expected = np.array([10.0, 1.0, -2.0, 0.5])
    limit = allowed(expected, tolerance)  # 1e-2, 1e-3, 2e-3, 5e-4
    assert np.allclose(limit, [1e-2, 1e-3, 2e-3, 5e-4])
    assert compare(expected + 0.9 * limit, expected, tolerance).ok
    for position in range(expected.size):
        off = expected.copy()
        off[position] += 1.1 * limit[position]
        result = compare(off, expected, tolerance)
        assert not result.ok, position
        assert result.bad_fraction == pytest.approx(1 / expected.size)
        assert result.bad_channels == [position]
        assert result.violation == pytest.approx(1.1)


def test_small_elements_are_compared_at_a_hundredth_of_the_scale():
    # A fold's rounding error follows its terms, not a result that cancels to ~0: an
    # element of 1e-6 in a tensor of scale 100 is allowed rtol * 1 (0.01 * 100), not rtol * 1e-6.
    tolerance = Tolerance(rtol=1e-4, atol=0.0)
    expected = np.array([100.0, 1e-6, -50.0])
    floor = 1e-4 * 0.01 * 100.0
    near = expected.copy()
    near[1] += 0.9 * floor
    assert compare(near, expected, tolerance).ok
    far = expected.copy()
    far[1] += 1.1 * floor
    result = compare(far, expected, tolerance)
    assert not result.ok and result.bad_channels == [1]


def test_atol_is_added_to_the_relative_part():
    tolerance = Tolerance(rtol=1e-4, atol=1e-3)
    expected = np.array([2.0, 1.0])
    limit = 1e-3 + 1e-4 * 2.0
    assert compare(expected + [0.99 * limit, 0], expected, tolerance).ok
    assert not compare(expected + [1.01 * limit, 0], expected, tolerance).ok


def test_errors_are_measured_absolute_and_relative_to_the_scale():
    expected = np.array([[4.0, -8.0], [1.0, 2.0]])
    target = expected + np.array([[0.0, 0.0], [0.5, 0.0]])
    result = compare(target, expected, FP32)
    assert not result.ok
    assert result.max_abs_err == pytest.approx(0.5)
    assert result.max_rel_err == pytest.approx(0.5 / 8.0)
    assert result.bad_fraction == pytest.approx(1 / 4)
    assert result.violation == pytest.approx(0.5 / (1e-6 + 1e-4 * 1.0))
    assert result.expected_range == (-8.0, 4.0)
    assert result.bad_channels == [1]
    assert not result.approximate


def test_a_faithful_tensor_reports_its_small_error():
    generator = np.random.default_rng(0)
    expected = generator.standard_normal((16, 3, 3, 3))
    stored = expected.astype(np.float32)
    result = compare(stored, expected, FP32)
    error = np.abs(stored.astype(np.float64) - expected)
    assert result.ok and result.bad_channels == [] and result.bad_fraction == 0
    assert result.max_abs_err == pytest.approx(error.max())
    assert result.max_rel_err == pytest.approx(error.max() / np.abs(expected).max())
    assert 0 < result.violation <= 1
    assert result.expected_range == (expected.min(), expected.max())


def test_integer_and_reshaped_targets_are_compared_as_values():
    expected = np.arange(6, dtype=np.float64).reshape(2, 3)
    assert compare(np.arange(6, dtype=np.int64), expected, FP32).ok
    assert not compare(np.arange(6, dtype=np.int64)[::-1].copy(), expected, FP32).ok


def test_empty_tensors_agree():
    result = compare(np.zeros((0, 3)), np.zeros((0, 3)), FP32)
    assert result.ok and result.max_abs_err == 0


def test_all_zero_expected_is_compared_with_atol_alone():
    expected = np.zeros(4)
    assert compare(expected + 0.9e-6, expected, FP32).ok
    result = compare(expected + [0, 0, 2e-6, 0], expected, FP32)
    assert not result.ok and result.bad_channels == [2]
    assert result.max_rel_err == float("inf")  # an error on a tensor of scale 0


# ----------------------------------------------------------------------------- NaN / Inf


@pytest.mark.parametrize(
    "target, expected, ok",
    [
        ([1.0, np.nan], [1.0, np.nan], True),  # NaN where NaN is expected
        ([1.0, np.inf], [1.0, np.inf], True),
        ([1.0, -np.inf], [1.0, -np.inf], True),
        ([1.0, np.nan], [1.0, 2.0], False),  # NaN where a number is expected
        ([1.0, np.inf], [1.0, 2.0], False),
        ([1.0, -np.inf], [1.0, 2.0], False),
    ],
)
def test_nan_equals_nan_and_inf_equals_the_same_inf(target, expected, ok):
    result = compare(np.array(target), np.array(expected), FP32)
    assert result.ok is ok
    if not ok:
        assert result.bad_channels == [1]
        assert result.max_abs_err == float("inf")


@pytest.mark.parametrize(
    "target, expected",
    [
        ([1.0, -np.inf], [1.0, np.inf]),  # the other infinity
        ([1.0, 5.0], [1.0, np.inf]),  # a number where Inf is expected
        ([1.0, 2.0], [1.0, np.nan]),  # a number where NaN is expected
        ([1.0, np.nan], [1.0, np.inf]),
    ],
)
def test_anything_else_non_finite_is_a_difference(target, expected):
    # The module's own contract: "NaN equals NaN and +Inf equals +Inf; anything else
    # non-finite is a difference."
    result = compare(np.array(target), np.array(expected), FP32)
    assert not result.ok
    assert result.bad_channels == [1]


def test_ranges_ignore_non_finite_expected_values():
    expected = np.array([np.nan, -3.0, 2.0, np.inf])
    result = compare(expected.copy(), expected, FP32)
    assert result.ok
    assert result.expected_range == (-3.0, 2.0)


def test_a_nan_in_a_large_target_is_found_with_or_without_the_probe():
    expected = np.random.default_rng(1).standard_normal(PROBE_SIZE * 4)
    target = expected.copy()
    target[12345] = np.nan
    assert compare(target, expected, FP32).bad_channels == [12345]
    probed = compare(target, expected, FP32, probe_first=True)
    assert not probed.ok
    assert probed.approximate or probed.bad_channels == [12345]  # the sample may hold it


# ----------------------------------------------------------------------------- the probe


def test_the_probe_rejects_a_widely_wrong_tensor_approximately():
    generator = np.random.default_rng(2)
    expected = generator.standard_normal((64, 32, 3, 3))
    target = expected * 1.5
    result = compare(target, expected, FP32, channel_axis=0, probe_first=True)
    assert not result.ok and result.approximate
    assert result.bad_channels == []  # a sample cannot say where
    assert result.bad_fraction > 0.9
    full = compare(target, expected, FP32, channel_axis=0)
    assert not full.approximate and full.bad_channels == list(range(64))


def test_the_probe_is_not_used_on_small_tensors():
    expected = np.ones(PROBE_SIZE)
    result = compare(expected * 2, expected, FP32, probe_first=True)
    assert not result.ok and not result.approximate and result.bad_channels == list(range(PROBE_SIZE))


def test_a_passing_probe_is_followed_by_the_full_comparison():
    # One element off in 64K: the sample (4096 of them) almost surely misses it; the full
    # comparison must not.
    generator = np.random.default_rng(3)
    expected = generator.standard_normal((256, 256))
    target = expected.copy()
    target[200, 17] += 1.0
    result = compare(target, expected, FP32, channel_axis=0, probe_first=True)
    assert not result.ok and not result.approximate
    assert result.bad_channels == [200]


def test_the_probe_uses_the_whole_tensors_scale():
    # One large element sets the scale; the probe's sample almost surely misses it. Errors
    # on the small elements are within 0.01 * scale * rtol, so the tensor is close: a
    # probe that used its sample's own scale would wrongly reject it.
    generator = np.random.default_rng(4)
    expected = generator.uniform(-1e-3, 1e-3, PROBE_SIZE * 8)
    expected[5] = 1000.0
    target = expected + 0.5 * (1e-4 * 0.01 * 1000.0)
    result = compare(target, expected, FP32, probe_first=True)
    assert result.ok and not result.approximate


@pytest.mark.parametrize("seed", range(12))
def test_the_probe_is_never_wrong_about_failing(seed):
    generator = np.random.default_rng(seed)
    expected = generator.standard_normal((48, 40, 3))
    fraction = [0.0, 1e-4, 1e-3, 0.01, 0.2, 1.0][seed % 6]
    target = expected.copy()
    off = generator.random(expected.shape) < fraction
    target[off] *= 1.0 + generator.choice([-1, 1], off.sum()) * generator.uniform(1e-4, 0.05, off.sum())
    full = compare(target, expected, FP32, channel_axis=1)
    probed = compare(target, expected, FP32, channel_axis=1, probe_first=True)
    assert probed.ok == full.ok
    if probed.approximate:
        assert not full.ok
    else:
        assert probed.bad_channels == full.bad_channels
        assert probed.max_abs_err == full.max_abs_err


def test_the_probe_repeats():
    expected = np.random.default_rng(5).standard_normal(PROBE_SIZE * 3)
    target = expected.copy()
    target[::7] *= 1.01
    first = compare(target, expected, FP32, probe_first=True)
    second = compare(target, expected, FP32, probe_first=True)
    assert first.approximate and (first.max_abs_err, first.bad_fraction) == (second.max_abs_err, second.bad_fraction)


# ----------------------------------------------------------------------------- the screen


@pytest.mark.parametrize("seed", range(24))
def test_the_screen_is_never_wrong_about_failing(seed):
    # Tensors of many sizes (below, at and above the sample), some elements off by a bit
    # or a lot, one huge element setting the scale, NaN/Inf targets; a "no" from the
    # screen must always be a "no" from the comparison.
    generator = np.random.default_rng(100 + seed)
    size = [1, 7, SCREEN_SIZE, SCREEN_SIZE + 1, 300, 5000][seed % 6]
    expected = generator.standard_normal(size) * generator.choice([1e-6, 1.0, 1e4])
    if seed % 4 == 0:
        expected[generator.integers(size)] = 1000.0
    fraction = [0.0, 0.01, 0.3, 1.0][seed % 4]
    target = expected.copy()
    off = generator.random(size) < fraction
    target[off] *= 1.0 + generator.choice([-1, 1], off.sum()) * generator.uniform(1e-6, 0.05, off.sum())
    if seed % 5 == 0:
        target[generator.integers(size)] = generator.choice([np.nan, np.inf])
    full = compare(target, expected, FP32)
    if not screen(target, expected, FP32):
        assert not full.ok
    if full.ok:
        assert screen(target, expected, FP32)


def test_the_screen_rejects_a_widely_wrong_tensor_of_any_size():
    generator = np.random.default_rng(7)
    for shape in [(3,), (16, 16, 3, 3), (64, 64, 3, 3)]:
        expected = generator.standard_normal(shape)
        assert not screen(expected * 1.5, expected, FP32)
        assert screen(expected.astype(np.float32), expected, FP32)  # the rounding of fp32 is within fp32's tolerance


def test_the_screen_uses_the_whole_tensors_scale():
    # One element of 1e5, which the sample almost surely misses, sets the scale: every
    # element is then allowed 0.01 * 1e5 * rtol = 0.1. Judged by its own scale (1e-3) the
    # sample would fail an error of 0.05; the screen must look at the whole tensor first.
    generator = np.random.default_rng(8)
    expected = generator.uniform(-1e-3, 1e-3, SCREEN_SIZE * 50)
    expected[3] = 1e5
    target = expected + 0.5 * (1e-4 * 0.01 * 1e5)  # within the tolerance every element gets
    assert compare(target, expected, FP32).ok and screen(target, expected, FP32)
    target = expected + 3 * (1e-4 * 0.01 * 1e5)  # beyond it, everywhere
    assert not compare(target, expected, FP32).ok and not screen(target, expected, FP32)


def test_the_screen_leaves_non_finite_and_odd_inputs_to_compare():
    expected = np.array([1.0, np.nan, 2.0, np.inf])
    assert screen(expected + 5, expected, FP32)  # a NaN or Inf expected: compare decides
    assert screen(np.zeros(3), np.zeros(4), FP32)  # sizes differ: the matcher fails it outright
    assert screen(np.zeros(0), np.zeros(0), FP32)
    assert not screen(np.arange(6, dtype=np.int64)[::-1].copy(), np.arange(6.0), FP32)  # integers are compared too
    wide = np.linspace(-1, 1, 200)
    assert screen(wide.astype(ml_dtypes.bfloat16), wide, default_tolerance({"bfloat16"}))


@pytest.mark.parametrize("seed", range(36))
def test_screen_or_accept_answers_as_the_screen_and_the_comparison_do(seed):
    # The matcher's screen of a candidate: a Comparison only where compare accepts (and
    # then exactly compare's), otherwise the screen's own answer, for tensors of every
    # size around the sample and the probe, dtypes, NaN/Inf and one element setting the scale.
    generator = np.random.default_rng(300 + seed)
    size = [1, 7, SCREEN_SIZE, SCREEN_SIZE + 1, 2304, PROBE_SIZE, PROBE_SIZE + 1][seed % 7]
    expected = generator.standard_normal(size) * generator.choice([1e-7, 1.0, 1e4])
    if seed % 4 == 0:
        expected[generator.integers(size)] = 1000.0
    fraction = [0.0, 0.002, 0.3, 1.0][seed % 4]
    target = expected.astype([np.float32, np.float64, np.float16][seed % 3])
    off = generator.random(size) < fraction
    target[off] *= 1.0 + generator.choice([-1, 1], off.sum()) * generator.uniform(1e-6, 0.05, off.sum())
    if seed % 5 == 0:
        target[generator.integers(size)] = generator.choice([np.nan, np.inf])
    if seed % 9 == 0:
        expected[generator.integers(size)] = np.nan
    tolerance = default_tolerance({target.dtype.name})
    outcome = screen_or_accept(target, expected, tolerance)
    full = compare(target, expected, tolerance, probe_first=True, locate=False)
    if isinstance(outcome, Comparison):
        assert size <= PROBE_SIZE and full.ok and outcome == full
    else:
        assert outcome == screen(target, expected, tolerance)
        assert outcome or not full.ok
        finite = np.abs(expected[np.isfinite(expected)])
        scale = finite.max() if finite.size else np.nan
        floor = tolerance.atol * min(1.0, scale) + tolerance.rtol * 0.01 * scale
        assert size > PROBE_SIZE or not full.ok or not full.max_abs_err <= floor  # else accepted outright


def test_screen_or_accept_keeps_the_screens_leniency_for_a_sample_of_zeros():
    # A sample of zeros is judged at its own scale 0 (atol, 1e-6) as well as at the
    # tensor's (1e-3: 2e-9 for a zero): the screen passes and leaves the "no" to compare.
    expected = np.zeros(300)
    index = np.arange(300)
    unsampled = np.setdiff1d(index, np.random.default_rng(300).integers(0, 300, SCREEN_SIZE))[:3]
    expected[unsampled] = 1e-3
    target = expected + np.where(expected == 0, 5e-7, 0.0)
    assert screen(target, expected, FP32) is True
    assert screen_or_accept(target, expected, FP32) is True
    assert not compare(target, expected, FP32).ok


def test_comparing_without_locating_lists_no_channels():
    expected = np.random.default_rng(9).standard_normal((8, 4))
    target = expected.copy()
    target[5] *= 1.5
    unlocated = compare(target, expected, FP32, locate=False)
    located = compare(target, expected, FP32)
    assert not unlocated.ok and not unlocated.located and unlocated.bad_channels == []
    assert located.located and located.bad_channels == [5]
    assert (unlocated.max_abs_err, unlocated.violation, unlocated.bad_fraction) == (
        located.max_abs_err,
        located.violation,
        located.bad_fraction,
    )
    assert compare(expected, expected, FP32, locate=False).located  # nothing to locate


# ----------------------------------------------------------------------------- channels


def test_bad_channels_along_the_channel_axis():
    generator = np.random.default_rng(6)
    expected = generator.standard_normal((5, 7, 3))
    target = expected.copy()
    target[:, 4, :] *= 1.02
    target[:, 6, 1] *= 1.02
    assert compare(target, expected, FP32, channel_axis=1).bad_channels == [4, 6]
    assert compare(target, expected, FP32, channel_axis=0).bad_channels == [0, 1, 2, 3, 4]
    assert compare(target, expected, FP32, channel_axis=-1).bad_channels == [0, 1, 2]


def test_an_axis_out_of_range_falls_back_to_axis_0():
    expected = np.ones((3, 4))
    target = expected.copy()
    target[2, 1] = 2.0
    assert compare(target, expected, FP32, channel_axis=5).bad_channels == [2]


def test_channels_of_vectors_and_scalars():
    expected = np.arange(1.0, 7.0)
    target = expected.copy()
    target[[1, 4]] += 1
    assert compare(target, expected, FP32).bad_channels == [1, 4]


@pytest.mark.parametrize("target, ok", [(2.0, True), (3.0, False)])
def test_scalars_compare(target, ok):
    result = compare(np.array(target), np.array(2.0), FP32)
    assert result.ok is ok
    assert result.bad_channels == ([] if ok else [0])

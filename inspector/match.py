"""The matching engine: candidates from hints, then structure, accepted only by numbers.

For every target layer that carries parameters, the :class:`Matcher`

1. collects *anchors*, source paths the target is probably about, cheapest first:
   its hints (tensor names, legacy scope paths, dynamo name scopes) resolved against the
   source's layer and module paths (:class:`HintResolver`), then the source layer that
   sequence alignment of the two models puts at its place (:func:`align`), then nearby
   source layers of the same kind and shape (a bounded search, not all pairs);
2. asks each transform, in order, for candidates around each anchor, checks them, and
   re-computes the target's parameters;
3. accepts the first candidate whose every parameter is within tolerance
   (:func:`compare`); otherwise keeps the closest one and reports a mismatch when the
   source is credible (named by a hint, or at most half the elements are off; for a
   constant that is not a weight layer's, named by a tensor name, or by its scope with
   at most half the elements off), and "unmatched" when not.

A name is never proof: the dynamo exporter keeps ``conv.weight`` on a tensor that holds
conv x BN, so a name only makes a candidate; the numbers decide.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from inspector import ir
from inspector.diff import MISMATCH, OK, UNMATCHED, DiffResult, LayerDiff, ParamDiff, Tolerance
from inspector.ir import Layer, Model, Param
from inspector.records import Finding
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform

WEIGHT_KINDS = frozenset(
    {ir.CONV, ir.CONV_TRANSPOSE, ir.LINEAR, ir.BATCHNORM, ir.LAYERNORM, ir.GROUPNORM, ir.INSTANCENORM,
     ir.EMBEDDING, ir.ATTENTION, "prelu", "rmsnorm"}
)
"""Target kinds whose parameters must be explained; other constants are explained when
they can be and otherwise listed as untraced (scale factors, folded position tables)."""

PRIMARY_KINDS = frozenset({ir.CONV, ir.CONV_TRANSPOSE, ir.LINEAR, ir.EMBEDDING})
"""Kinds that take part in sequence alignment."""

SEARCH_LIMIT = 8
"""How many same-kind, same-shape source layers the last-resort search tries."""

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


def default_tolerance(dtypes: Iterable[str]) -> Tolerance:
    """The tolerance of the least precise floating dtype in ``dtypes`` (fp32 if none)."""
    worst = "float32"
    for dtype in dtypes:
        if _PRECISION_RANK.get(dtype, 1) > _PRECISION_RANK[worst]:
            worst = dtype
    return DTYPE_TOLERANCES[worst]


# ----------------------------------------------------------------------------- compare


@dataclass(slots=True)
class Comparison:
    """One target tensor against its expected values (see :class:`~inspector.diff.ParamDiff`)."""

    ok: bool
    max_abs_err: float
    max_rel_err: float
    bad_fraction: float
    violation: float  # max |t - e| / tolerance; <= 1 when ok
    bad_channels: list[int]
    expected_range: tuple[float, float]


PROBE_SIZE = 4096
"""Elements a probe compares before a full comparison (evenly spaced over the tensor)."""


def compare(target: np.ndarray, expected: np.ndarray, tolerance: Tolerance, channel_axis: int = 0) -> Comparison:
    """Compare elementwise: ``|t - e| <= atol + rtol * max(|e|, SMALL_FRACTION * max|e|)``.

    NaN equals NaN and +Inf equals +Inf; anything else non-finite is a difference.
    """
    e = np.asarray(expected, dtype=np.float64)
    t = np.asarray(target)
    if t.dtype.kind != "f":
        t = t.astype(np.float64)
    if t.shape != e.shape:
        t = t.reshape(e.shape)
    if e.size == 0:
        return Comparison(True, 0.0, 0.0, 0.0, 0.0, [], (0.0, 0.0))
    with np.errstate(invalid="ignore", over="ignore"):
        # Widening inside the ufunc avoids a full float64 copy of the target.
        err = np.subtract(t, e, dtype=np.float64)
        np.abs(err, out=err)
        max_abs = float(err.max())
        lo, hi = float(e.min()), float(e.max())
        scale = max(abs(lo), abs(hi))
        floor = tolerance.atol + tolerance.rtol * SMALL_FRACTION * scale
        if np.isfinite(max_abs) and np.isfinite(scale) and max_abs <= floor:
            # Every element is within the smallest tolerance any element gets: done in
            # three passes, which is the common case of a faithful export.
            rel = max_abs / scale if scale > 0 else 0.0
            violation = max_abs / floor if floor > 0 else 0.0
            return Comparison(True, max_abs, rel, 0.0, violation, [], (lo, hi))
        return _compare_slowly(t.astype(np.float64), e, err, tolerance, channel_axis)


def _compare_slowly(t, e, err, tolerance: Tolerance, channel_axis: int) -> Comparison:
    magnitude = np.abs(e)
    finite = np.isfinite(e)
    scale = float(magnitude[finite].max()) if finite.any() else 0.0
    same_special = (t == e) | (np.isnan(t) & np.isnan(e))
    err = np.where(same_special, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)
    tolerance_elem = tolerance.atol + tolerance.rtol * np.maximum(magnitude, SMALL_FRACTION * scale)
    bad = err > tolerance_elem
    max_abs = float(err.max())
    violation = float((err / tolerance_elem).max()) if tolerance_elem.min() > 0 else (0.0 if max_abs == 0 else np.inf)
    bad_count = int(bad.sum())
    channels: list[int] = []
    if bad_count:
        if e.ndim == 0:
            channels = [0]
        else:
            axis = channel_axis if -e.ndim <= channel_axis < e.ndim else 0
            other = tuple(i for i in range(e.ndim) if i != axis % e.ndim)
            channels = [int(c) for c in np.flatnonzero(bad.any(axis=other) if other else bad)]
    lo = float(e[finite].min()) if finite.any() else float("nan")
    hi = float(e[finite].max()) if finite.any() else float("nan")
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return Comparison(bad_count == 0, max_abs, rel, bad_count / e.size, violation, channels, (lo, hi))


def probe(target: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> bool:
    """Whether a sample of elements agrees: a cheap test before a full comparison.

    Never wrong when it says False: the sampled elements get exactly the tolerance the
    full :func:`compare` gives them (the scale is the whole tensor's), so a sample that
    fails means the tensor fails. A True is confirmed by :func:`compare`. The sample is
    pseudo-random (a fixed seed, so runs repeat): evenly spaced elements alias with
    kernel sizes and miss, say, the centre taps of merged 3x3 kernels.
    """
    if expected.size <= PROBE_SIZE:
        return True
    with np.errstate(invalid="ignore", over="ignore"):
        lo, hi = float(np.nanmin(expected)), float(np.nanmax(expected))
        scale = max(abs(lo), abs(hi))
        if not np.isfinite(scale):
            return True  # let the full comparison sort out infinities
        index = np.unravel_index(_sample_indices(expected.size), expected.shape)
        e = np.asarray(expected[index], dtype=np.float64)
        t = np.asarray(target.reshape(expected.shape)[index], dtype=np.float64)
        tolerance_elem = tolerance.atol + tolerance.rtol * np.maximum(np.abs(e), SMALL_FRACTION * scale)
        err = np.abs(t - e)
        return bool(np.all((err <= tolerance_elem) | (t == e) | (np.isnan(t) & np.isnan(e))))


def _sample_indices(size: int) -> np.ndarray:
    return np.random.default_rng(size).integers(0, size, PROBE_SIZE)


# ----------------------------------------------------------------------------- hints

_CALL_SUFFIX = re.compile(r"^(.+)_(\d+)$")
_TENSOR_SUFFIXES = (".weight_bias", "_weight", ".weight", ".bias", ".running_mean", ".running_var")


class HintResolver:
    """Resolves a target hint to source paths (layers or modules).

    Exact paths and state_dict keys first; then the longest unique match of trailing
    path components (a wrapper adds leading components: ``m.model.0.bn`` -> ``model.0.bn``;
    the legacy exporter repeats Sequential names: ``model.model.0.conv``; or the source
    has a prefix the hint lacks: ``module.`` of DataParallel), never a partial overlap of
    two paths that both have components the other lacks; then with a
    call-count suffix removed (``conv_1``: the module's second call); then the parent
    module (a fused RepConv's new ``conv`` child is not in the checkpoint).
    """

    def __init__(self, source: SourceIndex) -> None:
        self.source = source
        self._suffixes: dict[tuple[str, ...], list[str]] = {}
        for path in source.modules:
            if not path:
                continue
            parts = tuple(path.split("."))
            for k in range(1, len(parts) + 1):
                self._suffixes.setdefault(parts[-k:], []).append(path)

    def resolve(self, hint: str) -> tuple[list[str], str]:
        """(paths, how) where how is "name" (a state_dict key) or "scope"."""
        found = self.source.by_tensor(hint)
        if found is not None:
            return [found[0].name], "name"
        for suffix in _TENSOR_SUFFIXES:
            if hint.endswith(suffix):
                found = self.source.by_tensor(hint[: -len(suffix)] + (".weight" if suffix == ".weight_bias" else suffix))
                if found is not None:
                    return [found[0].name], "name"
                stem = hint[: -len(suffix)]
                paths = self._by_path(stem)
                if paths:
                    return paths, "name"
        paths = self._by_path(hint)
        return paths, "scope"

    def _by_path(self, path: str) -> list[str]:
        if not path:
            return []
        if self.source.is_module(path):
            return [path]
        parts = path.replace("/", ".").split(".")
        parts = [part for part in parts if part]
        for candidate_parts in (parts, [_strip_call_suffix(part) for part in parts]):
            found = self._by_suffix(candidate_parts)
            if found:
                return found
        if len(parts) > 1:
            parent = self._by_suffix(parts[:-1])
            if parent:
                return parent
        return []

    def _by_suffix(self, parts: list[str]) -> list[str]:
        exact = ".".join(parts)
        if self.source.is_module(exact):
            return [exact]
        for k in range(len(parts), 0, -1):
            # One side may have leading components the other lacks (a wrapper, a repeated
            # Sequential name), but not both: "model.2.m.0.conv" is not "model.0.conv",
            # though both end in "0.conv".
            paths = [
                path for path in self._suffixes.get(tuple(parts[-k:]), ())
                if k == len(parts) or path.count(".") + 1 == k
            ]
            if paths:
                if len(paths) == 1:
                    return list(paths)
                # Ambiguous: a longer suffix could not decide, a shorter one cannot either.
                return list(paths)[:SEARCH_LIMIT] if k >= 2 else []
        return []


def _strip_call_suffix(part: str) -> str:
    match = _CALL_SUFFIX.match(part)
    return match.group(1) if match and not part.isdigit() else part


# ----------------------------------------------------------------------------- alignment


def signature(layer: Layer) -> tuple[str, tuple[int, ...]] | None:
    """(kind family, weight shape in PyTorch layout) for alignment, or None.

    A Gemm without transB and a MatMul store a Linear weight transposed; their shape is
    turned back so it equals the PyTorch module's.
    """
    if layer.kind not in PRIMARY_KINDS:
        return None
    weight = layer.params.get("weight")
    if weight is None:
        return None
    shape = weight.shape
    if layer.kind == ir.LINEAR and len(shape) == 2:
        transposed = layer.op_type == "MatMul" or (layer.op_type == "Gemm" and not layer.attrs.get("transB", 0))
        if transposed:
            shape = shape[::-1]
    if layer.kind == ir.CONV_TRANSPOSE and len(shape) >= 2:
        shape = (shape[0], shape[1]) + tuple(shape[2:])
    return layer.kind, tuple(shape)


def align(source_layers: list[Layer], target_layers: list[Layer]) -> dict[str, Layer]:
    """Target layer name -> the source layer at its place, by aligning the sequences of
    (kind, weight shape) of the two models (longest matching blocks, not all pairs)."""
    source_seq = [(layer, sig) for layer in source_layers if (sig := signature(layer)) is not None]
    target_seq = [(layer, sig) for layer in target_layers if (sig := signature(layer)) is not None]
    matcher = difflib.SequenceMatcher(None, [sig for _, sig in source_seq], [sig for _, sig in target_seq], autojunk=False)
    aligned: dict[str, Layer] = {}
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            aligned[target_seq[block.b + offset][0].name] = source_seq[block.a + offset][0]
    return aligned


# ----------------------------------------------------------------------------- targets


def prepare_targets(target: Model) -> tuple[list[Layer], list[Layer]]:
    """(layers to explain, other constant-carrying layers) in execution order.

    A MatMul whose output feeds an Add of a constant vector is how exporters write a
    Linear on 3-D input: the Add's constant joins the MatMul as its "bias" (in a copy of
    the layer), and the Add is not listed on its own. When the Add's other operand is a
    slice a Split cuts from a constant at run time (the dynamo exporter splits
    ``in_proj_bias`` so), that slice is the MatMul's bias.
    """
    consumers: dict[str, list[Layer]] = {}
    producers: dict[str, tuple[Layer, int]] = {}
    for layer in target.layers:
        for name in layer.inputs:
            consumers.setdefault(name, []).append(layer)
        for position, name in enumerate(layer.outputs):
            producers[name] = (layer, position)
    absorbed: set[str] = set()
    explained: list[Layer] = []
    others: list[Layer] = []
    for layer in target.layers:
        if not layer.params or layer.name in absorbed:
            continue
        if layer.kind in WEIGHT_KINDS and not _neutral_instance_norm(layer):
            if layer.op_type == "MatMul" and "bias" not in layer.params and layer.outputs:
                add = _bias_add(layer, consumers.get(layer.outputs[0], []))
                if add is not None:
                    absorbed.add(add.name)
                    layer = _with_bias(layer, add)
                else:
                    layer = _with_split_bias(layer, consumers.get(layer.outputs[0], []), producers)
            explained.append(layer)
        elif any(param.numel > 1 and param.dtype.startswith(("float", "bfloat")) for param in layer.params.values()):
            others.append(layer)
    others = [layer for layer in others if layer.name not in absorbed]
    return explained, others


def _neutral_instance_norm(layer: Layer) -> bool:
    """An InstanceNormalization with scale 1 and bias 0: how both exporters write a
    GroupNorm (its affine parameters follow as Mul and Add) and an InstanceNorm without
    affine parameters. Those constants are made at export, not PyTorch parameters, so the
    layer is explained when it can be and otherwise listed as untraced."""
    if layer.kind != ir.INSTANCENORM or not set(layer.params) <= {"weight", "bias"}:
        return False
    weight, bias = layer.params.get("weight"), layer.params.get("bias")
    return bool((weight is None or np.all(weight.array() == 1)) and (bias is None or np.all(bias.array() == 0)))


def _bias_add(matmul: Layer, consumers: list[Layer]) -> Layer | None:
    weight = matmul.params.get("weight")
    if len(consumers) != 1 or weight is None or len(weight.shape) != 2:
        return None
    add = consumers[0]
    if add.op_type != "Add" or len(add.params) != 1:
        return None
    (param,) = add.params.values()
    return add if param.numel == weight.shape[1] else None


def _with_split_bias(matmul: Layer, consumers: list[Layer], producers: dict[str, tuple[Layer, int]]) -> Layer:
    """``matmul`` with the bias an Add takes from an equal Split of a constant vector, or
    ``matmul`` itself when its Add is no such thing."""
    weight = matmul.params.get("weight")
    if len(consumers) != 1 or weight is None or len(weight.shape) != 2 or consumers[0].op_type != "Add":
        return matmul
    add = consumers[0]
    others = [name for name in add.inputs if name != matmul.outputs[0]]
    if add.params or len(others) != 1 or others[0] not in producers:
        return matmul
    split, position = producers[others[0]]
    if split.op_type != "Split" or len(split.params) != 1 or len(split.inputs) != 1:
        return matmul  # a "split" sizes input (a shape constant) is not kept: sizes unknown
    (whole,) = split.params.values()
    width = weight.shape[1]
    sizes = split.attrs.get("split") or [whole.numel // max(len(split.outputs), 1)] * len(split.outputs)
    if len(whole.shape) != 1 or sum(sizes) != whole.numel or sizes[position] != width:
        return matmul
    start, stop = sum(sizes[:position]), sum(sizes[:position]) + width
    part = Param("bias", (width,), whole.dtype, lambda: whole.array()[start:stop], f"{whole.tensor_name}[{start}:{stop}]")
    merged = Layer(
        matmul.name, matmul.kind, matmul.op_type, matmul.attrs, {**matmul.params, "bias": part},
        matmul.inputs, add.outputs, matmul.hints + add.hints, {**matmul.metadata, "bias_node": add.name},
    )
    merged.index = matmul.index
    return merged


def _with_bias(layer: Layer, add: Layer) -> Layer:
    (bias,) = add.params.values()
    merged = Layer(
        layer.name, layer.kind, layer.op_type, layer.attrs, {**layer.params, "bias": bias},
        layer.inputs, add.outputs, layer.hints + add.hints, {**layer.metadata, "bias_node": add.name},
    )
    merged.index = layer.index
    return merged


# ----------------------------------------------------------------------------- matcher


@dataclass(slots=True)
class _Attempt:
    candidate: Candidate
    transform: Transform
    reproduction: Reproduction
    comparisons: dict[str, tuple[Comparison, Tolerance]]
    matched_by: str
    approximate: bool = False

    @property
    def ok(self) -> bool:
        return not self.approximate and all(comparison.ok for comparison, _ in self.comparisons.values())

    @property
    def violation(self) -> float:
        return max((c.violation for c, _ in self.comparisons.values()), default=0.0)

    @property
    def bad_fraction(self) -> float:
        return max((c.bad_fraction for c, _ in self.comparisons.values()), default=0.0)


class Matcher:
    """Matches one target model against one source model with the given transforms."""

    def __init__(
        self,
        transforms: list[Transform],
        source: Model,
        target: Model,
        rtol: float | None = None,
        atol: float | None = None,
    ) -> None:
        self.transforms = transforms
        self.source_model = source
        self.target_model = target
        self.source = SourceIndex(source)
        self.resolver = HintResolver(self.source)
        self.rtol = rtol
        self.atol = atol
        self._aligned: dict[str, Layer] | None = None
        self._targets, self._others = prepare_targets(target)
        self.transform_errors: dict[str, tuple[str, str]] = {}
        """Transform name -> (first target layer, error) for transforms that raised."""

    # -- public ---------------------------------------------------------------------

    def run(self) -> DiffResult:
        result = DiffResult(self.source_model, self.target_model)
        used: set[str] = set()
        for layer in self._targets:
            diff = self.explain(layer, must_explain=True)
            _release(layer)
            result.layers.append(diff)
            used.update(diff.sources)
        for layer in self._others:
            diff = self.explain(layer, must_explain=False)
            _release(layer)
            if diff.status == UNMATCHED:
                result.untraced_constants.append(layer.name)
            else:
                result.layers.append(diff)
                used.update(diff.sources)
        result.layers.sort(key=lambda item: self.target_model.layer(item.target).index)
        result.unmatched_source = [layer.name for layer in self.source.layers if layer.name not in used and _has_weights(layer)]
        for name, (layer, error) in self.transform_errors.items():
            result.findings.append(Finding(
                "warning", "transform_error",
                f"the {name} transform raised {error} (first on {layer}); it was skipped where it failed", layer,
            ))
        return result

    def explain(self, target: Layer, must_explain: bool = True) -> LayerDiff:
        """Find and verify the source of one target layer."""
        best: _Attempt | None = None
        reasons: list[str] = []
        tried: set[tuple[str, tuple[str, ...], str]] = set()
        for anchor, matched_by in self.anchors(target, searching=must_explain):
            for transform in self.transforms:
                if transform.target_kinds and target.kind not in transform.target_kinds:
                    continue
                try:
                    for candidate in transform.propose(target, anchor, self.source):
                        key = (transform.name, tuple(candidate.names), candidate.variant)
                        if key in tried:
                            continue
                        tried.add(key)
                        reason = transform.check(target, candidate)
                        if reason is not None:
                            reasons.append(f"{transform.name}({' + '.join(candidate.names)}): {reason}")
                            continue
                        attempt = self._attempt(target, transform, candidate, matched_by)
                        if attempt.ok:
                            return self._layer_diff(target, attempt, OK)
                        if best is None or attempt.violation < best.violation:
                            best = attempt
                except Exception as exc:  # noqa: BLE001 - one broken transform must not end the diff
                    error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    self.transform_errors.setdefault(transform.name, (target.name, error))
                    reasons.append(f"{transform.name} failed: {error}")
        # A weight layer must come from somewhere: its closest candidate is credible when
        # named or mostly right. Another constant may be made at export (a position
        # table that happens to have a parameter's size): credible when named, or found
        # in the module's scope and mostly right (a GroupNorm's weight as a Mul).
        credible = best is not None and (
            best.matched_by == "name"
            or (must_explain and best.matched_by == "scope")
            or ((must_explain or best.matched_by == "scope") and best.bad_fraction <= 0.5)
        )
        if credible:
            if best.approximate:
                best = self._attempt(target, best.transform, best.candidate, best.matched_by, full=True)
                if best.ok:  # cannot happen (a failed probe is a real difference); be safe
                    return self._layer_diff(target, best, OK)
            return self._layer_diff(target, best, MISMATCH)
        diff = self._unmatched(target)
        if best is not None:
            reasons.insert(0, f"closest: {best.transform.name}({' + '.join(best.candidate.names)}) differs in "
                              f"{best.bad_fraction:.0%} of the elements")
        diff.reasons = reasons[:10]
        return diff

    def anchors(self, target: Layer, searching: bool = True) -> Iterable[tuple[str, str]]:
        """Source paths to try for ``target``, strongest first, each with how it was found.

        A path named by several hints is tried once, as found by the strongest of them: a
        dynamo node's scope names the module, and its initializer's name names it too
        (``cross.in_proj_weight``), which makes a difference credible (a "name").
        """
        found: dict[str, str] = {}
        for hint in target.hints:
            paths, how = self.resolver.resolve(hint)
            for path in paths:
                if found.get(path) != "name":
                    found[path] = how
        yield from found.items()
        seen = set(found)
        aligned = self.aligned().get(target.name)
        if aligned is not None and aligned.name not in seen:
            seen.add(aligned.name)
            yield aligned.name, "alignment"
        if searching:
            for layer in self._search(target):
                if layer.name not in seen:
                    seen.add(layer.name)
                    yield layer.name, "search"

    def aligned(self) -> dict[str, Layer]:
        if self._aligned is None:
            self._aligned = align(self.source.layers, self._targets)
        return self._aligned

    # -- internals --------------------------------------------------------------------

    def _search(self, target: Layer) -> list[Layer]:
        """Source layers of the target's kind with a same-shaped weight, nearest in relative
        position first (bounded: this is the fallback when names and alignment fail)."""
        wanted = signature(target)
        shapes = {p.shape for p in target.params.values()}
        relative = target.index / max(len(self.target_model.layers), 1)
        found = []
        for layer in self.source.layers:
            if wanted is not None:
                if signature(layer) != wanted:
                    continue
            elif layer.kind != target.kind or not shapes & {p.shape for p in layer.params.values()}:
                continue
            distance = abs(self.source.position(layer) / max(len(self.source.layers), 1) - relative)
            found.append((distance, layer))
        found.sort(key=lambda item: item[0])
        return [layer for _, layer in found[:SEARCH_LIMIT]]

    def _attempt(self, target: Layer, transform: Transform, candidate: Candidate, matched_by: str, full: bool = False) -> _Attempt:
        """Reproduce and compare. Unless ``full``, a parameter whose probe fails ends the
        attempt early (its comparison then covers the probe only, ``approximate``)."""
        reproduction = transform.reproduce(target, candidate)
        comparisons: dict[str, tuple[Comparison, Tolerance]] = {}
        source_dtypes = {p.dtype for layer in candidate.sources for p in layer.params.values()}
        roles = list(dict.fromkeys([*target.params, *reproduction.params]))
        approximate = False
        for role in roles:
            target_param = target.params.get(role)
            expected = reproduction.params.get(role)
            if target_param is None and role != "bias":
                continue  # a transform may reproduce more than this layer stores
            tolerance = self._tolerance(source_dtypes | ({target_param.dtype} if target_param else set()))
            actual = target_param.array() if target_param is not None else np.zeros_like(expected)
            if expected is None:
                if role != "bias":
                    comparisons[role] = (_FAILED, tolerance)
                    continue
                expected = np.zeros(actual.shape, dtype=np.float64)
            if actual.size != expected.size:
                comparisons[role] = (Comparison(False, np.inf, np.inf, 1.0, np.inf, [], _range(expected)), tolerance)
                continue
            axis = reproduction.channel_axes.get(role, 0)
            if not full and not probe(actual, expected, tolerance):
                comparisons[role] = (_sampled(actual, expected, tolerance, axis), tolerance)
                approximate = True
                break
            comparisons[role] = (compare(actual, expected, tolerance, axis), tolerance)
        return _Attempt(candidate, transform, reproduction, comparisons, matched_by, approximate)

    def _tolerance(self, dtypes: set[str]) -> Tolerance:
        default = default_tolerance(dtypes)
        return Tolerance(
            self.rtol if self.rtol is not None else default.rtol,
            self.atol if self.atol is not None else default.atol,
        )

    def _layer_diff(self, target: Layer, attempt: _Attempt, status: str) -> LayerDiff:
        diff = LayerDiff(
            target=target.name,
            op=target.op_type,
            kind=target.kind,
            sources=attempt.candidate.names,
            transform=attempt.transform.name,
            status=status,
            matched_by=attempt.matched_by,
            note=attempt.reproduction.note,
            variant=attempt.candidate.variant,
        )
        for role, (comparison, tolerance) in attempt.comparisons.items():
            target_param = target.params.get(role)
            origin = attempt.reproduction.origins.get(role)
            diff.params.append(
                ParamDiff(
                    name=role,
                    target_tensor=target_param.tensor_name if target_param is not None else "(absent: zero)",
                    source_tensor=origin.tensor_name if origin is not None else None,
                    source_range=origin.value_range().range if origin is not None else None,
                    target_range=target_param.value_range().range if target_param is not None else (0.0, 0.0),
                    reproduced_range=comparison.expected_range,
                    max_abs_err=comparison.max_abs_err,
                    max_rel_err=comparison.max_rel_err,
                    status=OK if comparison.ok else MISMATCH,
                    bad_channels=comparison.bad_channels,
                    bad_channel_count=len(comparison.bad_channels),
                    channel_axis=attempt.reproduction.channel_axes.get(role, 0),
                    tolerance=tolerance,
                )
            )
        return diff

    def _unmatched(self, target: Layer) -> LayerDiff:
        diff = LayerDiff(target=target.name, op=target.op_type, kind=target.kind)
        for role, param in target.params.items():
            diff.params.append(ParamDiff(name=role, target_tensor=param.tensor_name, target_range=param.value_range().range))
        return diff


_FAILED = Comparison(False, np.inf, np.inf, 1.0, np.inf, [], (float("nan"), float("nan")))


def _sampled(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance, axis: int) -> Comparison:
    """A comparison of the probed elements only: enough to rank failed candidates."""
    index = np.unravel_index(_sample_indices(expected.size), expected.shape)
    result = compare(actual.reshape(expected.shape)[index], expected[index], tolerance)
    return Comparison(False, result.max_abs_err, result.max_rel_err, max(result.bad_fraction, 1 / PROBE_SIZE),
                      result.violation, [], result.expected_range)


def _release(layer: Layer) -> None:
    """Drop a finished target layer's values (their ranges stay): an ONNX file's tensors
    are copies out of the protobuf, so keeping them all would hold the model twice."""
    for param in layer.params.values():
        param.release()


def _range(array: np.ndarray) -> tuple[float, float]:
    finite = array[np.isfinite(array)]
    return (float(finite.min()), float(finite.max())) if finite.size else (float("nan"), float("nan"))


def _has_weights(layer: Layer) -> bool:
    """Whether a source layer holds anything an export would need (not just counters)."""
    return any(param.name != "num_batches_tracked" for param in layer.params.values())

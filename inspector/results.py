"""The result types of a diff and the words for statuses and verdicts (pure data).

:class:`DiffResult` is what :func:`inspector.diff.diff_models` returns and what check
plugins and :mod:`inspector.report` read; it holds one :class:`LayerDiff` per target
layer, each with a :class:`ParamDiff` per parameter. Nothing here computes anything
beyond counting; this module imports nothing from the rest of the core at run time.

Statuses of a layer or parameter: :data:`OK` (re-computed within tolerance),
:data:`MISMATCH` (traced to its source, values differ), :data:`UNMATCHED` (traced to
nothing). Verdicts of a whole diff: :data:`FAITHFUL`, :data:`DIFFERS`,
:data:`INCOMPLETE` (see :attr:`DiffResult.verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inspector.ir import Model
    from inspector.records import Finding

OK = "ok"
MISMATCH = "mismatch"
UNMATCHED = "unmatched"

FAITHFUL = "faithful"
DIFFERS = "differs"
INCOMPLETE = "incomplete"

EXPLAINED = "explained"
CONSTANT = "constant"
UNEXPLAINED = "unexplained"
BUCKETS = (EXPLAINED, CONSTANT, UNEXPLAINED)
"""Where every floating-point number stored in the target falls (see :class:`Coverage`)."""


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Elementwise closeness: ``|target - expected| <= atol + rtol * |expected|`` (see
    :func:`inspector.compare.compare` for the floor and the scale). With
    ``atol_follows_scale`` (the per-dtype defaults), ``atol`` shrinks with a tensor whose
    values are all below 1, so tiny values are judged against their own size; an
    ``atol`` the user gave applies as given."""

    rtol: float
    atol: float
    atol_follows_scale: bool = True


@dataclass(slots=True)
class ParamDiff:
    """One target parameter against its re-computation.

    ``max_abs_err`` is ``max|t - e|``; ``max_rel_err`` is ``max|t - e| / max|e|``, the
    error relative to the tensor's scale (0 when both are 0). ``bad_channels`` lists the
    output channels (along the reproduction's channel axis) holding an element outside
    tolerance. Ranges are (min, max) over finite values; ``None`` where there is nothing
    to show (no source for an unmatched layer).
    """

    name: str
    target_tensor: str
    source_tensor: str | None = None
    source_range: tuple[float, float] | None = None
    target_range: tuple[float, float] | None = None
    reproduced_range: tuple[float, float] | None = None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    status: str = UNMATCHED
    bad_channels: list[int] = field(default_factory=list)
    bad_channel_count: int = 0
    channel_axis: int = 0
    tolerance: Tolerance | None = None
    channel_errors: list[float] | None = None
    """Per output channel, ``max|t - e| / max|e|`` over the channel; only for a
    parameter that differs (see :func:`inspector.compare.channel_errors`)."""


@dataclass(slots=True)
class LayerDiff:
    """One target layer: where it came from, how, and whether the numbers agree.

    ``sources`` are PyTorch module paths; ``transform`` the name of the transform that
    explains it (None when unmatched); ``matched_by`` how the source was found ("name",
    "scope", "alignment", "search"); ``note`` a short fact from the transform and
    ``facts`` the same as values (:attr:`~inspector.transforms.Reproduction.facts`);
    ``reasons`` why candidates were rejected, for an unmatched layer.
    """

    target: str
    op: str
    kind: str
    sources: list[str] = field(default_factory=list)
    transform: str | None = None
    status: str = UNMATCHED
    params: list[ParamDiff] = field(default_factory=list)
    matched_by: str | None = None
    note: str = ""
    variant: str = ""
    reasons: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Tally:
    """A count of stored numbers: elements and the bytes they take in the file."""

    elements: int = 0
    bytes: int = 0

    def add(self, elements: int, nbytes: int) -> None:
        self.elements += elements
        self.bytes += nbytes


@dataclass(slots=True)
class Coverage:
    """Every floating-point number stored in the target, in exactly one bucket:

    - :data:`EXPLAINED`: re-computed from named source parameters by a transform and
      compared (within tolerance or not: a mismatch is explained, and wrong);
    - :data:`CONSTANT`: shown not to come from a parameter (each listed in
      :attr:`DiffResult.constants` with its reason: a scalar, a shape or scale input,
      a value computed at export that no source parameter can produce);
    - :data:`UNEXPLAINED`: what is left, parameter-derived as far as anyone can tell.

    ``totals`` maps each bucket to its :class:`Tally`; ``by_op`` maps the op type that
    holds the numbers (the layer that explains them, else the first that reads them)
    to the same.
    """

    totals: dict[str, Tally] = field(default_factory=lambda: {bucket: Tally() for bucket in BUCKETS})
    by_op: dict[str, dict[str, Tally]] = field(default_factory=dict)

    def add(self, bucket: str, op: str, elements: int, nbytes: int) -> None:
        self.totals[bucket].add(elements, nbytes)
        self.by_op.setdefault(op, {name: Tally() for name in BUCKETS})[bucket].add(elements, nbytes)

    @property
    def unexplained(self) -> int:
        return self.totals[UNEXPLAINED].elements


@dataclass(frozen=True, slots=True)
class ConstantTensor:
    """A stored tensor shown not to come from a parameter: ``tensor`` (its name in the
    file), the ``op`` and ``layer`` that read it, its ``elements``, and ``reason``."""

    tensor: str
    op: str
    layer: str | None
    elements: int
    reason: str


@dataclass(slots=True)
class DiffResult:
    """Everything a diff found, in target execution order.

    Verdict: :data:`DIFFERS` when a layer's values are not re-computed within tolerance;
    else :data:`INCOMPLETE` when a target layer is traced to nothing or some stored
    number is unexplained (:class:`Coverage`); else :data:`FAITHFUL`.
    """

    source: "Model"
    target: "Model"
    layers: list[LayerDiff] = field(default_factory=list)
    unmatched_source: list[str] = field(default_factory=list)
    findings: "list[Finding]" = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)
    constants: list[ConstantTensor] = field(default_factory=list)
    transform_phrases: dict[str, str] = field(default_factory=dict)
    """Transform name -> its ``phrase`` (see :class:`~inspector.transforms.Transform`)."""
    transform_explains: dict[str, str] = field(default_factory=dict)
    """Transform name -> its ``explains`` sentence part; absent when it changes no value."""

    def count(self, status: str) -> int:
        return sum(1 for layer in self.layers if layer.status == status)

    @property
    def verdict(self) -> str:
        if self.count(MISMATCH):
            return DIFFERS
        if self.count(UNMATCHED) or self.coverage.unexplained:
            return INCOMPLETE
        return FAITHFUL

    def by_transform(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            if layer.status == OK and layer.transform:
                counts[layer.transform] = counts.get(layer.transform, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

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


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Elementwise closeness: ``|target - expected| <= atol + rtol * |expected|``."""

    rtol: float
    atol: float


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
class DiffResult:
    """Everything a diff found, in target execution order."""

    source: "Model"
    target: "Model"
    layers: list[LayerDiff] = field(default_factory=list)
    unmatched_source: list[str] = field(default_factory=list)
    findings: "list[Finding]" = field(default_factory=list)
    untraced_constants: list[str] = field(default_factory=list)
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
        if self.count(UNMATCHED):
            return INCOMPLETE
        return FAITHFUL

    def by_transform(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for layer in self.layers:
            if layer.status == OK and layer.transform:
                counts[layer.transform] = counts.get(layer.transform, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

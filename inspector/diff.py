"""load -> match -> explain -> :class:`DiffResult` (pure data, no formatting).

:func:`diff_models` matches every parameter-carrying target (ONNX) layer to the source
(PyTorch) layers it came from and re-computes it (:mod:`inspector.match`), then runs the
check plugins for findings. :mod:`inspector.report` turns the result into the versioned
JSON document every reporter renders.

Verdict: "differs" when any target layer's parameters were not re-computed within
tolerance ("mismatch"); else "incomplete" when a target layer could not be traced to
the source at all ("unmatched"); else "faithful". PyTorch layers the export does not use
are listed and reported as findings but do not change the verdict: models carry
training-only modules (auxiliary heads, denoising embeddings) that no export needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inspector.ir import Model
from inspector.records import Finding

if TYPE_CHECKING:
    from inspector.manager import Plugins

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
    "scope", "alignment", "search"); ``note`` a short fact from the transform; ``reasons``
    why candidates were rejected, for an unmatched layer.
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


@dataclass(slots=True)
class DiffResult:
    """Everything a diff found, in target execution order."""

    source: Model
    target: Model
    layers: list[LayerDiff] = field(default_factory=list)
    unmatched_source: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    untraced_constants: list[str] = field(default_factory=list)

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


def diff_models(
    plugins: "Plugins",
    source: Model,
    target: Model,
    rtol: float | None = None,
    atol: float | None = None,
) -> DiffResult:
    """Match and explain ``target`` (usually ONNX) against ``source`` (usually PyTorch).

    ``rtol``/``atol`` override the per-dtype defaults of :func:`inspector.compare.default_tolerance`.
    """
    from inspector.match import Matcher

    matcher = Matcher(plugins.transforms(), source, target, rtol=rtol, atol=atol)
    result = matcher.run()
    for check in plugins.checks():
        result.findings.extend(check.run(result))
    return result

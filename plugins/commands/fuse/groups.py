"""A group of source layers fused into one layer: its values and the name it gets.

Which groups a model has is :mod:`plugins.commands.fuse.policy`'s business (what the
model's framework fuses). ``Transform.reproduce(None, candidate)`` gives the fused
parameters in the PyTorch layout, in float64. A :class:`FusedGroup` holds them with the
name the fused layer has in the framework's fused model (:func:`fused_name`, unless the
policy names it) and the layer whose weight the fused weight replaces (its ranges are
the "before" of the report).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from inspector.ir import Layer, Param
from inspector.transforms import Candidate, Reproduction, Transform

FUSED_ROLES = ("weight", "bias")
"""The parameters of a fused layer, in the order they are reported and written."""


@dataclass(slots=True)
class FusedGroup:
    """One group of source layers and the single layer an exporter makes of them.

    ``conv`` is the source layer whose weight the fused weight replaces (for a merged
    block, its widest branch); ``params`` the fused values, role -> float64 array in
    the PyTorch layout.
    """

    transform: str
    candidate: Candidate
    fused_name: str
    conv: Layer
    params: dict[str, np.ndarray]
    note: str

    @property
    def sources(self) -> list[str]:
        return self.candidate.names

    def consumed_tensors(self) -> list[str]:
        """The state_dict keys the fused layer replaces: every tensor of every source layer."""
        return [param.tensor_name for layer in self.candidate.sources for param in layer.params.values()]

    def fused_tensors(self) -> dict[str, np.ndarray]:
        """``<fused_name>.weight`` and ``.bias`` in float32, as an exporter folds them."""
        return {
            f"{self.fused_name}.{role}": self.params[role].astype(np.float32)
            for role in FUSED_ROLES
            if role in self.params
        }

    def before(self, role: str) -> Param | None:
        """The conv's own tensor for ``role`` (None for a conv without bias)."""
        return self.conv.params.get(role)

    def matches(self, globs: list[str]) -> bool:
        """Whether the fused name or any source module matches one of ``globs``."""
        names = [self.fused_name, *self.sources]
        return any(fnmatch.fnmatchcase(name, glob) for glob in globs for name in names)


def fused_name(transform: Transform, candidate: Candidate) -> str:
    """The module path an exporter gives the fused layer.

    A transform may say it itself with a ``fused_name(candidate)`` method. Otherwise: a
    block merged by ``merge_branches`` becomes ``<block>.conv`` (Ultralytics'
    ``RepConv.fuse_convs`` adds that child and deletes the branches); anything else
    keeps the path of its first source layer (the conv a BatchNorm is folded into).
    """
    named = getattr(transform, "fused_name", None)
    if callable(named):
        return str(named(candidate))
    if candidate.transform == "merge_branches":
        block = str(candidate.get("module") or "")
        return f"{block}.conv" if block else "conv"
    return candidate.sources[0].name


def fuse_group(transform: Transform, candidate: Candidate, name: str | None = None, note: str = "") -> FusedGroup:
    """Reproduce one group's fused parameters (float64, PyTorch layout); ``name``: where
    the fused layer goes when not where :func:`fused_name` puts it; ``note``: added."""
    reproduction = transform.reproduce(None, candidate)
    params = {
        role: np.asarray(reproduction.params[role], dtype=np.float64)
        for role in FUSED_ROLES
        if reproduction.params.get(role) is not None
    }
    return FusedGroup(
        transform=transform.name,
        candidate=candidate,
        fused_name=name or fused_name(transform, candidate),
        conv=_replaced_conv(candidate, reproduction),
        params=params,
        note=f"{reproduction.note}; {note}" if note else reproduction.note,
    )


def _replaced_conv(candidate: Candidate, reproduction: Reproduction) -> Layer:
    """The source layer owning the param the fused weight chiefly comes from."""
    origin = reproduction.origins.get("weight")
    for layer in candidate.sources:
        if origin is not None and any(param is origin for param in layer.params.values()):
            return layer
    return candidate.sources[0]


def value_range(array: np.ndarray) -> tuple[float, float] | None:
    """(min, max) over the finite values; None when there are none."""
    finite = array[np.isfinite(array)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def abs_max_ratio(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    """max|after| / max|before|: how much fusion scaled the tensor (None without a before)."""
    if before is None or after is None:
        return None
    scale = max(abs(before[0]), abs(before[1]))
    return max(abs(after[0]), abs(after[1])) / scale if scale > 0 else None

"""The ``view`` transform: a constant that is a broadcast or a slice of one parameter.

Exporters fold what ``forward`` does to a parameter when its shape is static::

    broadcast:  T = broadcast_to(P, T.shape)        (a class token expanded to the batch,
                                                     a per-channel scale to (C, 1, 1) x N)
    slice:      T = P[..., start:start + n, ...]     (a position table cut to a smaller input)

For a constant that is not a weight layer's and a parameter of the anchor's module with
fewer elements: a broadcast when the parameter's shape (size-1 axes dropped) is the
target's with some axes repeated, else a slice along one axis from its start or its end.
Of the slices that fit, the one nearest the target's values is the reproduction (a
position, never a value, choice). Everything is re-computed in float64.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.targets import WEIGHT_KINDS
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import closest, float64
from plugins.transforms.identity import MATRIX_KINDS


def _floats(layer: Layer):
    return [(role, p) for role, p in layer.params.items() if p.dtype.startswith(("float", "bfloat")) and p.numel > 1]


def broadcasts(source: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether ``source`` broadcasts to ``target`` axis by axis (same number of axes, a
    size-1 axis where the target is larger: a class token (1, 1, D) to (B, 1, D)). A
    vector against a table's last axis is not enough: every norm weight would fit."""
    return (
        len(source) == len(target)
        and tuple(source) != tuple(target)
        and all(s in (1, t) for s, t in zip(source, target))
    )


def slices(source: tuple[int, ...], target: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(axis, start, stop) of the prefix and suffix slices of ``source`` shaped ``target``.

    Only tables (two axes or more beside size-1 ones): a vector of some size is a prefix
    of every longer vector, which would make any short constant look like a parameter."""
    if len(source) != len(target) or sum(1 for d in source if d != 1) < 2:
        return []
    differing = [axis for axis, (s, t) in enumerate(zip(source, target)) if s != t]
    if len(differing) != 1 or target[differing[0]] > source[differing[0]]:
        return []
    axis = differing[0]
    size, length = source[axis], target[axis]
    return [(axis, 0, length), (axis, size - length, size)]


class View(Transform):
    """T = broadcast_to(P) or a slice of P (see above)."""

    name = "view"
    description = "A constant that is a parameter broadcast to a larger shape, or a slice of one."
    order = 48
    phrase = "parameters broadcast or sliced"
    explains = "some parameters were stored broadcast or sliced to the shape the graph uses"
    proves_origin = False  # a table's rows are a slice of it whatever the constant is

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        floats = _floats(target)
        if target.kind in WEIGHT_KINDS or len(floats) != 1:
            return
        ((_, wanted),) = floats
        layer = source.layer(anchor)
        for module in [layer] if layer is not None else source.under(anchor, depth=2):
            for role, param in _floats(module):
                if role == "weight" and module.kind in MATRIX_KINDS:
                    continue
                if broadcasts(param.shape, wanted.shape):
                    yield self.candidate(
                        module, variant=f"{role} broadcast", role=role, how="broadcast", uses=((module.name, role),)
                    )
                elif slices(param.shape, wanted.shape):
                    yield self.candidate(
                        module, variant=f"{role} sliced", role=role, how="slice", uses=((module.name, role),)
                    )

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        (module,) = candidate.sources
        param = module.params[str(candidate.get("role"))]
        values = float64(param)
        if target is None:
            return Reproduction({param.name: values}, {param.name: param})
        ((role, stored),) = _floats(target)
        if candidate.get("how") == "broadcast":
            expected = np.broadcast_to(values, stored.shape)
            note = f"{param.tensor_name} {list(param.shape)} broadcast to {list(stored.shape)}"
        else:
            actual = np.asarray(stored.array(), dtype=np.float64)
            options = [
                np.take(values, range(start, stop), axis=axis)
                for axis, start, stop in slices(values.shape, stored.shape)
            ]
            expected = closest(options, actual)
            note = f"{param.tensor_name} {list(param.shape)} sliced to {list(stored.shape)}"
        return Reproduction({role: np.array(expected)}, {role: param}, note=note)


@hookimpl
def graphinspect_transforms():
    yield View()

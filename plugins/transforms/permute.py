"""The ``permute`` transform: a constant stored with its axes in another order.

Exporters store some parameters transposed for the op that reads them: dynamo writes
LeViT's ``attention_biases`` (heads, points) as the (points, heads) data of a GatherND;
layer scales and tokens may lose or gain size-1 axes. For a constant that is not a weight
layer's, with a source parameter of as many elements::

    T = transpose(squeeze(P), permutation)      (then reshaped to T's size-1 axes)

Of the permutations whose shape fits, the one nearest the target's values is the
reproduction (a layout choice, never a value one). A mere reshape is ``identity``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.targets import WEIGHT_KINDS
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import arrangements, closest, float64
from plugins.transforms.identity import MATRIX_KINDS


def _float_params(layer: Layer):
    return [(role, p) for role, p in layer.params.items() if p.dtype.startswith(("float", "bfloat"))]


def _squeezed(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


class Permute(Transform):
    """T = P with its axes permuted (see above)."""

    name = "permute"
    description = "A constant stored with its axes in another order than the PyTorch parameter."
    order = 45
    phrase = "constants with their axes permuted"
    explains = "some constants are stored with their axes in another order"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        floats = _float_params(target)
        if target.kind in WEIGHT_KINDS or len(floats) != 1:
            return
        ((_, wanted),) = floats
        layer = source.layer(anchor)
        for module in [layer] if layer is not None else source.under(anchor, depth=2):
            for role, param in _float_params(module):
                if role == "weight" and module.kind in MATRIX_KINDS:
                    continue
                if param.numel == wanted.numel and _squeezed(param.shape) != _squeezed(wanted.shape):
                    yield self.candidate(module, variant=role, role=role, uses=((module.name, role),))

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        (module,) = candidate.sources
        ((_, stored),) = _float_params(target)
        source = module.params[str(candidate.get("role"))]
        if sorted(_squeezed(source.shape)) != sorted(_squeezed(stored.shape)):
            return f"no permutation of {list(source.shape)} gives {list(stored.shape)}"
        return None

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        (module,) = candidate.sources
        source = module.params[str(candidate.get("role"))]
        if target is None:
            return Reproduction({source.name: float64(source)}, {source.name: source})
        ((role, stored),) = _float_params(target)
        actual = np.asarray(stored.array(), dtype=np.float64)
        options = list(arrangements(float64(source), stored.shape))
        return Reproduction(
            {role: closest(options, actual)},
            {role: source},
            note=f"{source.tensor_name} {list(source.shape)} stored as {list(stored.shape)}",
        )


@hookimpl
def graphinspect_transforms():
    yield Permute()

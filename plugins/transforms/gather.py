"""The ``gather`` transform: a table indexed by an index buffer, folded at export.

Attention biases are stored as a small table and an integer index buffer of the same
module, and looked up in ``forward``; an exporter that folds constants stores the
looked-up result instead::

    Swin (torchvision):  T = permute(table[index].view(n, n, heads), (2, 0, 1))[None]
    LeViT (timm):        T = attention_biases[:, attention_bias_idxs]        (heads, n, n)

Given a module with a float table ``P`` and an integer buffer ``I``, the candidates are
``P[I]`` (rows) and ``P[:, I]`` (columns). A flat index of n*n entries is read as (n, n),
and the result's axes are arranged to the target's shape (size-1 axes dropped): of the
arrangements whose shape fits, the one closest to the target's values is the
reproduction, so a changed element is still a difference (the arrangement is a layout,
never a value, choice). Everything is re-computed in float64.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np

from inspector.hookspecs import hookimpl
from inspector.ir import Layer
from inspector.targets import WEIGHT_KINDS
from inspector.transforms import Candidate, Reproduction, SourceIndex, Transform
from plugins.transforms._layouts import arrangements, closest, float64

MAX_TABLE = 1 << 24
"""Tables larger than this many elements are not gathered (a bias table is small)."""


def _floats(layer: Layer):
    return [(role, p) for role, p in layer.params.items() if p.dtype.startswith(("float", "bfloat")) and p.numel > 1]


def _indices(layer: Layer):
    return [(role, p) for role, p in layer.params.items() if p.dtype.startswith(("int", "uint")) and p.numel > 1]


def gathered(table: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """``table`` indexed by ``index`` along ``axis``; a flat n*n index becomes (n, n)."""
    index = np.asarray(index, dtype=np.int64)
    if index.ndim == 1 and math.isqrt(index.size) ** 2 == index.size and index.size > 1:
        index = index.reshape(math.isqrt(index.size), -1)
    return np.take(table, index, axis=axis)


class Gather(Transform):
    """T = arrange(P[I]) or arrange(P[:, I]) for a table P and an index buffer I (see above).

    Without an index buffer (a state_dict does not keep LeViT's non-persistent
    ``attention_bias_idxs``), the variant "looked up by value" checks what can still be
    checked: every value of T, per head, is an entry of that head's row of P (each is
    re-computed as the nearest entry, so a changed value is a difference; which entry
    went where is not verified).
    """

    name = "gather"
    description = "A bias table looked up by an index buffer of its module, folded into a constant at export."
    order = 50
    phrase = "tables looked up by index buffers"
    explains = "bias tables were looked up by their index buffers at export"

    def propose(self, target: Layer, anchor: str, source: SourceIndex) -> Iterable[Candidate]:
        if target.kind in WEIGHT_KINDS or len(_floats(target)) != 1:
            return
        layer = source.layer(anchor)
        for module in [layer] if layer is not None else source.under(anchor, depth=2):
            tables = [(role, table) for role, table in _floats(module) if table.numel <= MAX_TABLE]
            indices = _indices(module)
            for (table_role, table), (index_role, _) in itertools.product(tables, indices):
                for axis in range(min(len(table.shape), 2)):
                    yield self.candidate(
                        module,
                        variant=f"{table_role}[{index_role}] axis {axis}",
                        table=table_role,
                        index=index_role,
                        axis=axis,
                        uses=((module.name, table_role), (module.name, index_role)),
                    )
            if not indices:
                for table_role, table in tables:
                    if len(table.shape) == 2:
                        yield self.candidate(
                            module,
                            variant=f"{table_role} looked up by value",
                            table=table_role,
                            uses=((module.name, table_role),),
                            weak=True,
                        )

    def check(self, target: Layer, candidate: Candidate) -> str | None:
        (module,) = candidate.sources
        ((_, stored),) = _floats(target)
        table = module.params[str(candidate.get("table"))]
        if candidate.get("index") is None:
            if not set(table.shape) & set(stored.shape):
                return (
                    f"no axis of {candidate.variant} ({list(table.shape)}) is an axis of the target "
                    f"{list(stored.shape)}"
                )
            if stored.numel <= table.numel:
                return "the target is no larger than the table: not a lookup"
            return None
        index = module.params[str(candidate.get("index"))]
        axis = int(candidate.get("axis"))
        size = index.numel * table.numel // table.shape[axis]
        if size != stored.numel:
            return f"{candidate.variant} has {size} elements, the target {stored.numel}"
        return None

    def reproduce(self, target: Layer | None, candidate: Candidate) -> Reproduction:
        (module,) = candidate.sources
        table = module.params[str(candidate.get("table"))]
        if target is None:
            return Reproduction({"weight": float64(table)}, {"weight": table})
        ((role, stored),) = _floats(target)
        actual = np.asarray(stored.array(), dtype=np.float64)
        if candidate.get("index") is None:
            expected = looked_up_by_value(float64(table), actual)
            return Reproduction(
                {role: expected},
                {role: table},
                note=f"every value an entry of {table.tensor_name}, per head (the index buffer is not in the file)",
            )
        index = module.params[str(candidate.get("index"))]
        values = gathered(float64(table), index.array(), int(candidate.get("axis")))
        options = list(arrangements(values, stored.shape)) or [values.reshape(stored.shape)]
        return Reproduction(
            {role: closest(options, actual)},
            {role: table},
            note=f"{table.tensor_name} looked up by {index.tensor_name}",
        )


def looked_up_by_value(table: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Each value of ``actual`` replaced by the nearest entry of its head's row of the
    2-D ``table``; the head axis is an axis both share (the arrangement nearest wins)."""
    options = []
    for table_axis in range(2):
        rows = np.moveaxis(table, table_axis, 0)  # (heads, entries)
        for axis in [a for a, size in enumerate(actual.shape) if size == rows.shape[0]]:
            moved = np.moveaxis(actual, axis, 0).reshape(rows.shape[0], -1)
            nearest = np.empty_like(moved)
            for head in range(rows.shape[0]):
                entries = np.sort(rows[head])
                position = np.clip(np.searchsorted(entries, moved[head]), 1, len(entries) - 1)
                lower, upper = entries[position - 1], entries[position]
                nearest[head] = np.where(np.abs(moved[head] - lower) <= np.abs(upper - moved[head]), lower, upper)
            shaped = nearest.reshape(np.moveaxis(actual, axis, 0).shape)
            options.append(np.moveaxis(shaped, 0, axis))
    return closest(options, actual) if options else np.full(actual.shape, np.nan)


@hookimpl
def graphinspect_transforms():
    yield Gather()

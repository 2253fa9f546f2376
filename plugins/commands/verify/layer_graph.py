"""What the ONNX graph says about the compared layers: what feeds them, what reorders them.

Two forward passes over the nodes in graph order (a topological order), each giving every
tensor a small set:

- :func:`reorderings`: the data-dependent reorderings upstream of each tensor (TopK,
  NonZero, NonMaxSuppression, Unique): after one of them, a row's position depends on
  the data, and two equal models may hold the same rows in another order (TopK over tied
  scores), so such a layer is compared as a set of rows;
- :func:`upstream`: for each compared layer, the *nearest* compared layers it reads
  from (through any number of nodes that are not compared), and the "suspects" on the
  way: layers that were not compared and whose weights the diff did not confirm (a
  difference there would show up first in the next compared layer).

Both are sets of names, unions over a node's inputs; a compared layer's own output
starts a fresh set, so each tensor holds only its nearest compared sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inspector.ir import Layer
    from plugins.commands.verify.per_layer import LayerComparison

REORDERING_OPS = frozenset({"TopK", "NonZero", "NonMaxSuppression", "Unique"})
"""ONNX ops whose outputs are in a data-dependent order (sorting is a TopK in ONNX)."""

EMPTY: frozenset[str] = frozenset()


def reorderings(layers: list["Layer"]) -> dict[str, frozenset[str]]:
    """tensor -> the reordering nodes upstream of it (only tensors that have some)."""
    found: dict[str, frozenset[str]] = {}
    for layer in layers:
        upstream = frozenset().union(*(found.get(name, EMPTY) for name in layer.inputs))
        if layer.op_type in REORDERING_OPS:
            upstream = upstream | {f"{layer.op_type} {layer.name}"}
        if upstream:
            for name in layer.outputs:
                found[name] = upstream
    return found


@dataclass(slots=True)
class Upstream:
    """The nearest compared layers a layer reads from, and the suspects on the way."""

    compared: list[str] = field(default_factory=list)
    suspects: list[str] = field(default_factory=list)


def upstream(layers: list["Layer"], plans: list["LayerComparison"]) -> dict[str, Upstream]:
    """ONNX node -> :class:`Upstream`, for every plan with a tensor.

    A plan whose activation was compared is a boundary: what is above it is its business.
    A plan that was not compared is transparent when the diff confirmed its weights
    (``diff_status`` ok), and a suspect (a boundary too) otherwise.
    """
    by_tensor: dict[str, "LayerComparison"] = {plan.tensor: plan for plan in plans if plan.tensor}
    by_node = {plan.target: plan for plan in plans}
    compared: dict[str, frozenset[str]] = {}
    suspects: dict[str, frozenset[str]] = {}
    result: dict[str, Upstream] = {}
    for layer in layers:
        above = frozenset().union(*(compared.get(name, EMPTY) for name in layer.inputs))
        doubtful = frozenset().union(*(suspects.get(name, EMPTY) for name in layer.inputs))
        plan = by_node.get(layer.name)
        if plan is not None:
            result[plan.target] = Upstream(sorted(above), sorted(doubtful))
        for name in layer.outputs:
            owner = by_tensor.get(name)
            if owner is not None and owner.max_rel_err is not None:
                compared[name], suspects[name] = frozenset({owner.target}), EMPTY
            elif owner is not None and owner.diff_status != "ok":
                compared[name], suspects[name] = EMPTY, frozenset({owner.target})
            else:
                compared[name], suspects[name] = above, doubtful
    return result

"""The fused groups checked against an export: each looked up in a diff of the two models.

:func:`against_entry` reads a :func:`inspector.diff.diff_models` result and, for each
fused group, finds the ONNX layer whose sources are exactly that group's layers,
explained by the group's transform. The group is "ok" when that layer was re-computed
within tolerance, "mismatch" when it was not, and "not_found" when no ONNX layer comes
from those layers by that transform (the export fused them differently, or not at all),
and "not_exported" when the export uses none of its layers at all while every ONNX layer
was traced to the model (a training-only branch such as YOLOv10's one-to-one head, which
the exported model does not run; not a failure).

A bare state_dict does not record BatchNorm eps, so ``fuse`` guesses one (1e-5) while
the diff tries the common values (1e-5, 1e-3). When the export fits another value,
:func:`adopt_export_eps` re-fuses the group with it (the export settles what the file
left open, and the note says so); should that fail, the group is a "mismatch" whose
note says which eps fits, since the weights ``fuse`` computed are not the export's.
"""

from __future__ import annotations

from typing import Any

from inspector.ir import Model
from inspector.results import MISMATCH, OK, UNMATCHED, DiffResult, LayerDiff
from inspector.transforms import SourceIndex, Transform
from plugins.commands.fuse.groups import FusedGroup, fuse_group

NOT_FOUND = "not_found"
NOT_EXPORTED = "not_exported"


def export_layer(result: DiffResult, group: FusedGroup) -> LayerDiff | None:
    """The diff's layer made of exactly ``group``'s source layers by its transform."""
    wanted = set(group.sources)
    for layer in result.layers:
        if layer.transform == group.transform and set(layer.sources) == wanted:
            return layer
    return None


def adopt_export_eps(
    groups: list[FusedGroup], result: DiffResult, target: Model, source: SourceIndex, transforms: list[Transform]
) -> list[FusedGroup]:
    """``groups`` with each guessed eps the export contradicts replaced by the one it fits."""
    by_name = {transform.name: transform for transform in transforms}
    adopted = []
    for group in groups:
        layer = export_layer(result, group)
        guessed = group.candidate.variant
        transform = by_name.get(group.transform)
        if layer is None or layer.status != OK or not guessed or layer.variant in ("", guessed) or transform is None:
            adopted.append(group)
            continue
        # The transform proposes every eps variant around a layer of the group.
        proposals = transform.propose(target.layer(layer.target), group.sources[0], source)
        fitting = next(
            (
                candidate
                for candidate in proposals
                if candidate.names == group.candidate.names and candidate.variant == layer.variant
            ),
            None,
        )
        if fitting is None:
            adopted.append(group)
            continue
        refitted = fuse_group(transform, fitting, name=group.fused_name)
        refitted.note = f"{refitted.note}; the export fits it, not {guessed}"
        adopted.append(refitted)
    return adopted


def against_entry(result: DiffResult, groups: list[FusedGroup]) -> dict[str, Any]:
    """The ``against`` entry of the fuse document (see :mod:`plugins.commands.fuse`)."""
    # Layers the export does not use are a training-only branch only when every ONNX
    # layer was traced to this model (an unrelated export uses none of them either).
    traced = bool(result.layers) and result.count(UNMATCHED) == 0
    unused = set(result.unmatched_source) if traced else set()
    layers = [_group_entry(group, export_layer(result, group), unused) for group in groups]
    return {
        "path": result.target.path,
        "verdict": result.verdict,
        "checked": len(layers),
        "mismatched": sum(1 for layer in layers if layer["status"] == MISMATCH),
        "not_found": sum(1 for layer in layers if layer["status"] == NOT_FOUND),
        "not_exported": sum(1 for layer in layers if layer["status"] == NOT_EXPORTED),
        "layers": layers,
    }


def all_ok(against: dict[str, Any]) -> bool:
    """Every group found and re-computed (a group the export does not use at all cannot
    contradict it: a training-only branch)."""
    return all(layer["status"] in (OK, NOT_EXPORTED) for layer in against["layers"])


def _group_entry(group: FusedGroup, layer: LayerDiff | None, unused: set[str]) -> dict[str, Any]:
    if layer is None:
        if unused.issuperset(group.sources):
            note = "the export uses none of its layers (a branch the exported model does not run)"
            return {
                "fused_name": group.fused_name,
                "target": None,
                "status": NOT_EXPORTED,
                "max_rel_err": None,
                "note": note,
            }
        return {"fused_name": group.fused_name, "target": None, "status": NOT_FOUND, "max_rel_err": None, "note": ""}
    errors = [param.max_rel_err for param in layer.params if param.max_rel_err is not None]
    status, note = layer.status, ""
    max_rel_err = max(errors) if errors else None
    guessed = group.candidate.variant
    if status == OK and guessed and layer.variant and layer.variant != guessed:
        # The diff's error is that of the other eps: it says nothing about fuse's values.
        status, max_rel_err = MISMATCH, None
        note = f"the export fits {layer.variant}, not the guessed {guessed} (the file does not record eps)"
    return {
        "fused_name": group.fused_name,
        "target": layer.target,
        "status": status,
        "max_rel_err": max_rel_err,
        "note": note,
    }

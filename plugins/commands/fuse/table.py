"""The ``table`` reporter of the ``graphinspect/fuse@1`` document (rich, plain without colour).

One table row per fused parameter (weight, bias), with the group's source modules one
per row beside them; then the file written, if any; then the check against an export,
if any, ending with one sentence that names the groups that were not found or differ.
It shows only what the document holds.
"""

from __future__ import annotations

from typing import Any

from inspector.output import fmt_float, fmt_range, make_console

STATUS_LABELS = {"ok": "ok", "mismatch": "MISMATCH", "not_found": "not found", "not_exported": "not exported"}
STATUS_STYLES = {"ok": "green", "mismatch": "bold red", "not_found": "yellow", "not_exported": "dim"}
UNFUSED_SHOWN = 8
"""Unfused groups shown one per line; more are counted by reason."""

LEGEND = (
    "Before: the conv's own tensor (none: it has no bias). After: the fused tensor, "
    "re-computed in float64. abs-max ratio: max|after| / max|before|."
)


def _table():
    """A table in the diff table's style: a rule under the header, no frame."""
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))


def render_table(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    groups = document["groups"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    source = document["source"]
    facts.add_row("Model", Text(f"{source['path']} ({source['format']})"))
    if document.get("fusion"):
        facts.add_row("As", Text(document["fusion"]))
    facts.add_row("Fused", Text(_groups_text(groups)))
    console.print(facts)
    console.print()

    if groups:
        table = _table()
        for header, justify in (
            ("Fused module", "left"),
            ("Transform", "left"),
            ("Source modules", "left"),
            ("Param", "left"),
            ("Before", "right"),
            ("After", "right"),
            ("abs-max ratio", "right"),
            ("Note", "left"),
        ):
            table.add_column(header, justify=justify, overflow="fold")
        for position, group in enumerate(groups):
            rows = max(len(group["sources"]), len(group["params"]))
            for row in range(rows):
                first = row == 0
                param = group["params"][row] if row < len(group["params"]) else None
                table.add_row(
                    Text(group["fused_name"]) if first else "",
                    group["transform"] if first else "",
                    Text(group["sources"][row]) if row < len(group["sources"]) else "",
                    *(_param_cells(param) if param else ("", "", "", "")),
                    Text(group["note"]) if first else "",
                )
            if position < len(groups) - 1:
                table.add_row()
        console.print(table)
        console.print(Text(LEGEND), style="dim")

    _render_left(console, document.get("unfused") or [], document.get("dropped") or [])

    written = document.get("written")
    if written:
        console.print()
        console.print(
            Text(
                f"Wrote {written['path']}: {written['tensors']} tensors ({written['format']}; "
                "fused weights and biases in float32, the other tensors as stored)."
            )
        )

    against = document.get("against")
    if against:
        _render_against(console, against)


def _render_left(console, unfused: list[dict[str, Any]], dropped: list[dict[str, Any]]) -> None:
    """What was not fused (with why) and what the fusion removes, compactly."""
    from rich.text import Text

    if unfused:
        console.print()
        console.print(Text(f"Not fused: {len(unfused)} group{'s' if len(unfused) != 1 else ''}", style="bold"))
        if len(unfused) <= UNFUSED_SHOWN:
            for entry in unfused:
                console.print(Text(f"  {_unfused_name(entry)}: {entry['reason']}"))
        else:
            by_reason: dict[str, list[str]] = {}
            for entry in unfused:
                by_reason.setdefault(entry["reason"], []).append(_unfused_name(entry))
            for reason, names in by_reason.items():
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                console.print(Text(f"  {len(names)} ({shown}): {reason}"))
    if dropped:
        console.print()
        for entry in dropped:
            console.print(Text(f"Removed {entry['module']} ({entry['tensors']} tensors): {entry['reason']}"))


def _unfused_name(entry: dict[str, Any]) -> str:
    return entry.get("module") or " + ".join(entry["sources"])


def _groups_text(groups: list[dict[str, Any]]) -> str:
    if not groups:
        return "nothing to fuse (no Conv+BatchNorm pair or re-parameterised block)"
    counts: dict[str, int] = {}
    for group in groups:
        counts[group["transform"]] = counts.get(group["transform"], 0) + 1
    by_transform = ", ".join(f"{name} {count}" for name, count in counts.items())
    return f"{len(groups)} group{'s' if len(groups) != 1 else ''}: {by_transform}"


def _param_cells(param: dict[str, Any]) -> tuple[str, str, str, str]:
    before = param["before_range"]
    ratio = param["abs_max_ratio"]
    return (
        param["name"],
        "none" if before is None else fmt_range(*before),
        fmt_range(*param["after_range"]) if param["after_range"] else "-",
        "-" if ratio is None else f"{fmt_float(ratio)}x",
    )


def _render_against(console, against: dict[str, Any]) -> None:
    from rich.text import Text

    console.print()
    console.print(Text(f"Against {against['path']} (diff verdict: {against['verdict']})"))
    layers = against["layers"]
    if layers:
        with_notes = any(layer.get("note") for layer in layers)
        table = _table()
        for header, justify in (
            ("Fused module", "left"),
            ("ONNX node", "left"),
            ("Status", "left"),
            ("max rel err", "right"),
            *((("Note", "left"),) if with_notes else ()),
        ):
            table.add_column(header, justify=justify, overflow="fold")
        for layer in layers:
            status = layer["status"]
            cells = [
                Text(layer["fused_name"]),
                Text(layer["target"] or "-"),
                Text(STATUS_LABELS.get(status, status), style=STATUS_STYLES.get(status, "")),
                fmt_float(layer["max_rel_err"]),
            ]
            table.add_row(*cells, *((Text(layer.get("note") or ""),) if with_notes else ()))
        console.print(table)
    console.print(Text(against_sentence(against)))


def against_sentence(against: dict[str, Any]) -> str:
    """The check in one sentence, naming the groups that were not found or differ."""
    layers = against["layers"]
    if not layers:
        return "No fused group to check."
    missing = [layer["fused_name"] for layer in layers if layer["status"] == "not_found"]
    unused = [layer["fused_name"] for layer in layers if layer["status"] == "not_exported"]
    differing = [layer["fused_name"] for layer in layers if layer["status"] not in ("ok", "not_found", "not_exported")]
    sentences = []
    if unused:
        shown = ", ".join(unused[:3]) + (", ..." if len(unused) > 3 else "")
        sentences.append(
            f"{len(unused)} of {len(layers)} fused groups are not in the export at all (it uses none of their "
            f"layers): {shown}."
        )
    if not missing and not differing:
        checked = len(layers) - len(unused)
        found = "The fused group was" if checked == 1 else f"All {checked} fused groups were"
        if unused:
            found = "The other fused group was" if checked == 1 else f"The other {checked} fused groups were"
        return " ".join([*sentences, f"{found} found in the export and re-computed within tolerance."])
    if missing:
        sentences.append(f"{len(missing)} of {len(layers)} fused groups not found in the export: {', '.join(missing)}.")
    if differing:
        sentences.append(
            f"{len(differing)} of {len(layers)} fused groups differ from the export: {', '.join(differing)}."
        )
    return " ".join(sentences)

"""The ``table`` reporter of the ``graphinspect/fuse@1`` document (plain without colour).

Each fused group is a heading line (the fused module, its transform, its source modules,
its note) over one row per fused parameter (weight, bias): the range before, after, and
the abs-max ratio. A note several groups share is said once below ("[1] eps 0.001 from
the module (5 groups)"). Then the file written, if any; then the check against an
export, if any, ending with one sentence that names the groups that were not found or
differ. Groups left unfused (with why) and modules the fusion removes come after the
groups. Nothing is cropped at any width: headings wrap between words and rows are
formatted by :mod:`plugins.reports._columns`; names are shown
:func:`~inspector.output.visible`, never read as markup. It shows only what the document
holds.
"""

from __future__ import annotations

from typing import Any

from inspector.output import fmt_float, fmt_range, make_console, visible

STATUS_LABELS = {"ok": "ok", "mismatch": "MISMATCH", "not_found": "not found", "not_exported": "not exported"}
STATUS_STYLES = {"ok": "green", "mismatch": "bold red", "not_found": "yellow", "not_exported": "dim"}
UNFUSED_SHOWN = 8
"""Groups left unfused shown one per line; more are counted by reason."""

LEGEND = (
    "Before: the conv's own tensor (none: it has no bias). After: the fused tensor, "
    "re-computed in float64. abs-max ratio: max|after| / max|before|."
)


def render_table(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    from plugins.reports._columns import Column, Painter, dropped_text, fit, header_lines, measure, row_line, wrap
    from plugins.reports._wording import note_counts, shared_notes

    console = make_console(stream, color=options.get("color"), width=options.get("width"))
    paint = Painter(console)
    width = console.width
    groups = document["groups"]
    source = document["source"]
    out: list[str] = []
    out += wrap([("Model  ", "bold"), visible(f"{source['path']} ({source['format']})")], width, 7, paint)
    if document.get("fusion"):
        out += wrap([("As     ", "bold"), visible(document["fusion"])], width, 7, paint)
    out += wrap([("Fused  ", "bold"), visible(_groups_text(groups))], width, 7, paint)

    if groups:
        columns = [Column("Param"), Column("Before"), Column("After"), Column("abs-max ratio", right=True, drop=1)]
        notes = shared_notes(groups)
        rows = {
            id(group): [["  " + visible(p["name"]), *_param_cells(p)[1:]] for p in group["params"]] for group in groups
        }
        widths = measure(columns, [row for group_rows in rows.values() for row in group_rows])
        kept = fit(columns, widths, width)
        out.append("")
        if len(kept) < len(columns):
            out.append(paint(f"(not shown at {width} columns: {dropped_text(columns, kept)})", "dim"))
        out.append(paint("Fused module  via Transform  from Source modules", "bold"))
        out += header_lines(columns, widths, kept, paint)
        for group in groups:
            heading = [(visible(group["fused_name"]), "bold"), "  via " + visible(group["transform"])]
            heading.append("  from " + " + ".join(visible(name) for name in group["sources"]))
            note = group.get("note")
            if note:
                heading.append(f"  [{notes[note]}]" if note in notes else ("  (" + visible(note) + ")", "dim"))
            out += wrap(heading, width, 2, paint)
            out += [row_line(columns, widths, kept, row, paint) for row in rows[id(group)]]
        if notes:
            counts = note_counts(groups)
            for note, number in notes.items():
                out += wrap([f"[{number}] {visible(note)}", (f" ({counts[note]} groups)", "dim")], width, 4, paint)
        out += wrap([(LEGEND, "dim")], width, 0, paint)

    out += _render_left(document.get("unfused") or [], document.get("dropped") or [], width, paint)

    written = document.get("written")
    if written:
        out.append("")
        out += wrap(
            [
                visible(f"Wrote {written['path']}: {written['tensors']} tensors ({written['format']}; ")
                + "fused weights and biases in float32, the other tensors as stored)."
            ],
            width,
            0,
            paint,
        )

    against = document.get("against")
    if against:
        out += _render_against(against, width, paint)
    stream.write("\n".join(out) + "\n")


def _render_left(unfused: list[dict[str, Any]], dropped: list[dict[str, Any]], width: int, paint) -> list[str]:
    """What was not fused (and why) and what the fusion removes, compactly: one line per
    group up to :data:`UNFUSED_SHOWN`, else one per reason with a count."""
    from plugins.reports._columns import wrap

    out: list[str] = []
    if unfused:
        out += ["", paint(f"Not fused: {len(unfused)} group{'s' if len(unfused) != 1 else ''}", "bold")]
        if len(unfused) <= UNFUSED_SHOWN:
            for entry in unfused:
                out += wrap([(visible(_unfused_name(entry)), "bold"), ": " + visible(entry["reason"])], width, 4, paint)
        else:
            by_reason: dict[str, list[str]] = {}
            for entry in unfused:
                by_reason.setdefault(entry["reason"], []).append(_unfused_name(entry))
            for reason, names in by_reason.items():
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                out += wrap([(f"{len(names)} ({visible(shown)})", "bold"), ": " + visible(reason)], width, 4, paint)
    if dropped:
        out.append("")
        for entry in dropped:
            text = f"Removed {entry['module']} ({entry['tensors']} tensors): {entry['reason']}"
            out += wrap([visible(text)], width, 4, paint)
    return out


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


def _render_against(against: dict[str, Any], width: int, paint) -> list[str]:
    """The check against an export: a row per group when it fits, else the group's
    name on a line and its ONNX node, status and error under it; then one sentence."""
    from plugins.reports._columns import Column, header_lines, measure, row_line, wrap

    out = ["", *wrap([visible(f"Against {against['path']} (diff verdict: {against['verdict']})")], width, 2, paint)]
    layers = against["layers"]
    if layers:
        with_notes = any(layer.get("note") for layer in layers)
        columns = [Column("Fused module"), Column("ONNX node"), Column("Status"), Column("max rel err", right=True)]
        if with_notes:
            columns.append(Column("Note"))
        rows = []
        for layer in layers:
            status = layer["status"]
            row = [
                (visible(layer["fused_name"]), "bold"),
                visible(layer["target"] or "-"),
                (STATUS_LABELS.get(status, visible(status)), STATUS_STYLES.get(status, "")),
                fmt_float(layer["max_rel_err"]),
            ]
            rows.append(row + ([visible(layer.get("note") or "")] if with_notes else []))
        widths = measure(columns, rows)
        kept = list(range(len(columns)))
        if sum(widths) + 2 * (len(widths) - 1) <= width:
            out += header_lines(columns, widths, kept, paint)
            out += [row_line(columns, widths, kept, row, paint) for row in rows]
        else:
            for row in rows:
                out += wrap([row[0], "  ->  " + row[1]], width, 4, paint)
                tail = [("    ", ""), row[2], f"  max rel err {row[3]}"]
                if with_notes and row[4]:
                    tail.append(("  " + row[4], "dim"))
                out += wrap(tail, width, 4, paint)
    out += wrap([visible(against_sentence(against))], width, 0, paint)
    return out


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

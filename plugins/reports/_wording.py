"""How the diff document is put into words, shared by the table, Markdown and HTML
reporters so the three formats order, label, count and round things the same way.

Not a plugin (it implements no hook); the reporters import it. Everything here reads a
``graphinspect/diff@1`` document (see :mod:`inspector.report`) and computes nothing the
document does not hold. Every format tells the same story in the same order: the
verdict line, the summary, the problems (layers that differ or are unmatched, and the
findings of severity error and warning), then the layers that are fine, the notes they
share, and the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from inspector.output import fmt_count, fmt_float, fmt_range

SCHEMA = "graphinspect/diff@1"

STATUS_LABELS = {"ok": "ok", "mismatch": "MISMATCH", "unmatched": "unmatched"}
STATUS_STYLES = {"ok": "green", "mismatch": "bold red", "unmatched": "bold yellow"}
VERDICT_LABELS = {"faithful": "FAITHFUL", "differs": "DIFFERS", "incomplete": "INCOMPLETE"}
VERDICT_STYLES = {"faithful": "bold green", "differs": "bold red", "incomplete": "bold yellow"}
SEVERITIES = ("error", "warning", "info")
SEVERITY_TITLES = {"error": "Errors", "warning": "Warnings", "info": "Info"}
SEVERITY_STYLES = {"error": "red", "warning": "yellow", "info": "cyan"}
PROBLEM_SEVERITIES = ("error", "warning")
"""Findings of these severities are problems, shown with the problem layers."""

PARAM_HEADERS = ("Param", "max rel err", "max abs err", "PyTorch range", "ONNX range", "Re-computed range")
"""A parameter row's columns, the errors before the ranges, in every format."""

LAYER_HEADERS = ("Status", "ONNX node", "Op", *PARAM_HEADERS, "PyTorch module(s)", "Transform")
"""The layer table's columns, in order, where a format shows one row per parameter."""

LISTED_CHANNELS = 2
"""Bad channels named in a table cell; the rest are counted ("ch 3,17 (+4)")."""

SUMMARY_WIDTH = 120
"""The summary paragraph wraps at this width even on a wider console, to stay readable."""

TABLE_UNMATCHED_SOURCE = 20
"""PyTorch layers listed on a terminal; files (Markdown, HTML) list them all, collapsed."""

UNMATCHED_REASON = "traced to no PyTorch layer"
"""An unmatched layer's reason when the document holds no finding that gives one."""


# ----------------------------------------------------------------- shared wording


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def verdict_label(verdict: str) -> str:
    return VERDICT_LABELS.get(verdict, verdict.upper())


def verdict_line(document: dict[str, Any]) -> str:
    """The whole result in one line, the first line of every format and what ``--quiet``
    prints: "Verdict: DIFFERS (1 mismatched, 0 unmatched of 233 ONNX layers; 27.43M of
    27.43M parameter elements re-computed)"."""
    summary = document["summary"]
    total = summary["matched"] + summary["mismatched"] + summary["unmatched_target"]
    parts = []
    if summary["verdict"] == "faithful" and not summary["mismatched"] and not summary["unmatched_target"]:
        parts.append(f"{total} of {total} ONNX layers re-computed within tolerance")
    else:
        parts.append(
            f"{summary['mismatched']} mismatched, {summary['unmatched_target']} unmatched of {total} ONNX layers"
        )
    coverage = summary.get("coverage") or {}
    if coverage.get("explained") and coverage.get("unexplained"):
        explained = coverage["explained"]["elements"]
        stored = explained + coverage["unexplained"]["elements"]
        if stored:
            parts.append(f"{fmt_count(explained)} of {fmt_count(stored)} parameter elements re-computed")
    return f"Verdict: {verdict_label(summary['verdict'])} ({'; '.join(parts)})"


def verdict_and_style(document: dict[str, Any]) -> tuple[str, str]:
    """(:func:`verdict_line`, its rich style): what the terminal gets beside a diff report
    written with ``-o``."""
    return verdict_line(document), VERDICT_STYLES.get(document["summary"]["verdict"], "bold")


def channels_text(param: dict[str, Any]) -> str:
    """The bad output channels of a mismatched parameter, compactly: "ch 17",
    "ch 3,17 (+4)"; "" when it has none (or the document lists none)."""
    count = param.get("bad_channel_count") or 0
    listed = list(param.get("bad_channels") or [])[:LISTED_CHANNELS]
    if not count or not listed:
        return ""
    more = count - len(listed)
    return "ch " + ",".join(str(channel) for channel in listed) + (f" (+{more})" if more > 0 else "")


def range_text(value: list[float] | None) -> str:
    return "-" if value is None else fmt_range(value[0], value[1])


def param_cells(param: dict[str, Any]) -> list[str]:
    """The cells of :data:`PARAM_HEADERS` for one parameter: name, errors, ranges."""
    return [
        param["name"],
        fmt_float(param.get("max_rel_err")),
        fmt_float(param.get("max_abs_err")),
        range_text(param.get("source_range")),
        range_text(param.get("target_range")),
        range_text(param.get("reproduced_range")),
    ]


def layer_param_rows(layer: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
    """Each parameter of ``layer`` in turn; one None for a layer without parameters,
    so that every layer gets at least one row."""
    if not layer["params"]:
        yield None
    yield from layer["params"]


def is_problem(layer: dict[str, Any]) -> bool:
    """A layer that differs or is unmatched (every status but "ok")."""
    return layer["status"] != "ok"


def hidden_layers_text(document: dict[str, Any]) -> str:
    """ "3 of 8 layers not shown" when the command narrowed the document's layers (its
    ``--only-problems``/``--layer``) below the summary's counts; else ""."""
    summary = document["summary"]
    total = summary["matched"] + summary["mismatched"] + summary["unmatched_target"]
    hidden = total - len(document["layers"])
    return f"{hidden} of {total} layers not shown" if hidden > 0 else ""


def shown_path(path: str, cwd: str | None = None) -> str:
    """A model path for a report file that others read: an absolute path relative to
    the working directory (``cwd``, else the process's), so it names no home folder;
    a relative path as given."""
    if not os.path.isabs(path):
        return path
    try:
        return os.path.relpath(path, cwd or os.getcwd())
    except ValueError:  # another drive (Windows): nothing relative to say
        return os.path.basename(path)


def model_facts(model: dict[str, Any]) -> str:
    """ "(onnx, 57 layers, 3.2M parameters)": a model entry without its path."""
    return f"({model['format']}, {model['layers']} layers, {fmt_count(model['parameters'])} parameters)"


def model_text(model: dict[str, Any]) -> str:
    """ "model.onnx (onnx, 57 layers, 3.2M parameters)"."""
    return f"{model['path']} {model_facts(model)}"


def counts_text(summary: dict[str, Any]) -> str:
    text = (
        f"{summary['matched']} matched, {summary['mismatched']} mismatched, "
        f"{summary['unmatched_target']} unmatched target, {summary['unmatched_source']} unmatched source"
    )
    if summary["by_transform"]:
        text += "; by transform: " + ", ".join(f"{name} {count}" for name, count in summary["by_transform"].items())
    return text


def tolerance_text(document: dict[str, Any]) -> str:
    """The tolerance the parameters were compared with, and the largest relative error."""
    tolerance = document.get("tolerance") or {}
    rtol, atol = tolerance.get("rtol"), tolerance.get("atol")
    if rtol is None and atol is None:
        text = "tolerance: per-dtype default"
    else:
        text = f"tolerance: rtol {fmt_float(rtol)}, atol {fmt_float(atol)}"
    largest = document["summary"].get("max_rel_err")
    if largest is not None:
        text += f"; largest relative error {fmt_float(largest)}"
    return text


# ----------------------------------------------------------------- problems, notes, findings


def layer_findings(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The findings about each problem layer of the document (by its ONNX name): they
    are said beside the layer, not again in the lists by severity."""
    problems = {layer["target"] for layer in document["layers"] if is_problem(layer)}
    found: dict[str, list[dict[str, Any]]] = {}
    for finding in document["findings"]:
        if finding.get("layer") in problems:
            found.setdefault(finding["layer"], []).append(finding)
    return found


def layer_reasons(layer: dict[str, Any], findings: list[dict[str, Any]]) -> list[str]:
    """What to say under a problem layer: its findings' messages, except the mismatch
    sentence its row already shows in numbers; an unmatched layer always gets a reason."""
    reasons = [f["message"] for f in findings if f["code"] != "mismatch"]
    if layer["status"] == "unmatched" and not reasons:
        reasons.append(UNMATCHED_REASON)
    return reasons


def findings_by_severity(
    document: dict[str, Any], severities: tuple[str, ...] | None = None, skip_layer_findings: bool = False
) -> list[tuple[str, list[dict[str, Any]]]]:
    """(severity, findings) for each severity that has any, errors first; a severity
    outside the contract's three is kept, after them. ``severities`` keeps only those;
    ``skip_layer_findings`` leaves out what :func:`layer_findings` puts beside a layer."""
    beside = {id(f) for found in layer_findings(document).values() for f in found} if skip_layer_findings else set()
    groups: dict[str, list[dict[str, Any]]] = {}
    for finding in document["findings"]:
        if id(finding) not in beside:
            groups.setdefault(finding["severity"], []).append(finding)
    order = [s for s in SEVERITIES if s in groups] + [s for s in groups if s not in SEVERITIES]
    if severities is not None:
        order = [s for s in order if s in severities]
    return [(severity, groups[severity]) for severity in order]


def other_severities(document: dict[str, Any]) -> tuple[str, ...]:
    """The severities of the document's findings that are not problems ("info", and
    any a plugin made up), in order."""
    return tuple(severity for severity, _ in findings_by_severity(document) if severity not in PROBLEM_SEVERITIES)


def shared_notes(layers: list[dict[str, Any]]) -> dict[str, int]:
    """Notes that several of ``layers`` carry ("eps 0.001 from the module" on 98 folded
    convs), numbered from 1 in order of first use: said once, in a list of notes, and
    referred to as "[1]" beside each layer. A note only one layer has stays with it."""
    counts: dict[str, int] = {}
    for layer in layers:
        if layer.get("note"):
            counts[layer["note"]] = counts.get(layer["note"], 0) + 1
    shared = [note for note, count in counts.items() if count > 1]
    return {note: number for number, note in enumerate(shared, start=1)}


def note_counts(layers: list[dict[str, Any]]) -> dict[str, int]:
    """How many of ``layers`` carry each note."""
    counts: dict[str, int] = {}
    for layer in layers:
        if layer.get("note"):
            counts[layer["note"]] = counts.get(layer["note"], 0) + 1
    return counts


def transform_text(layer: dict[str, Any], notes: dict[str, int]) -> str:
    """ "fold_batchnorm [1]" for a shared note, "merge_branches (2 branches of m)" for
    a note of its own, "-" for no transform."""
    text = layer["transform"] or "-"
    note = layer.get("note")
    if note:
        text += f" [{notes[note]}]" if note in notes else f" ({note})"
    return text


def sources_text(layer: dict[str, Any]) -> str:
    return " + ".join(name or "the root module" for name in layer["sources"]) or "-"

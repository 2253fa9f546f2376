"""How the diff document is put into words, shared by the table, Markdown and HTML
reporters so the three formats label, count and round things the same way.

Not a plugin (it implements no hook); the reporters import it. Everything here reads a
``graphinspect/diff@1`` document (see :mod:`inspector.report`) and computes nothing the
document does not hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from inspector.output import fmt_count, fmt_float, fmt_range

SCHEMA = "graphinspect/diff@1"

STATUS_LABELS = {"ok": "ok", "mismatch": "MISMATCH", "unmatched": "unmatched"}
STATUS_STYLES = {"ok": "green", "mismatch": "bold red", "unmatched": "yellow"}
VERDICT_LABELS = {"faithful": "FAITHFUL", "differs": "DIFFERS", "incomplete": "INCOMPLETE"}
VERDICT_STYLES = {"faithful": "bold green", "differs": "bold red", "incomplete": "bold yellow"}
SEVERITIES = ("error", "warning", "info")
SEVERITY_TITLES = {"error": "Errors", "warning": "Warnings", "info": "Info"}
SEVERITY_STYLES = {"error": "red", "warning": "yellow", "info": "cyan"}

LAYER_HEADERS = (
    "Status",
    "ONNX node",
    "Op",
    "PyTorch module(s)",
    "Transform",
    "Param",
    "PyTorch range",
    "ONNX range",
    "Re-computed range",
    "max abs err",
    "max rel err",
)
"""The layer table's columns, in order, in every format."""

LISTED_CHANNELS = 2
"""Bad channels named in a table cell; the rest are counted ("ch 3,17 (+4)")."""

SUMMARY_WIDTH = 120
"""The summary paragraph wraps at this width even on a wider console, to stay readable."""

TABLE_UNMATCHED_SOURCE = 20
"""PyTorch layers listed on a terminal; files (Markdown, HTML) list them all, collapsed."""


# ----------------------------------------------------------------- shared wording


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def verdict_label(verdict: str) -> str:
    return VERDICT_LABELS.get(verdict, verdict.upper())


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
    """The parameter columns of a layer row: name, the three ranges, the two errors."""
    return [
        param["name"],
        range_text(param.get("source_range")),
        range_text(param.get("target_range")),
        range_text(param.get("reproduced_range")),
        fmt_float(param.get("max_abs_err")),
        fmt_float(param.get("max_rel_err")),
    ]


def layer_param_rows(layer: dict[str, Any]) -> Iterator[dict[str, Any] | None]:
    """Each parameter of ``layer`` in turn; one None for a layer without parameters,
    so that every layer gets at least one row."""
    if not layer["params"]:
        yield None
    yield from layer["params"]


def hidden_layers_text(document: dict[str, Any]) -> str:
    """ "3 of 8 layers not shown" when the command narrowed the document's layers (its
    ``--only-problems``/``--layer``) below the summary's counts; else ""."""
    summary = document["summary"]
    total = summary["matched"] + summary["mismatched"] + summary["unmatched_target"]
    hidden = total - len(document["layers"])
    return f"{hidden} of {total} layers not shown" if hidden > 0 else ""


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


def findings_by_severity(document: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(severity, findings) for each severity that has any, errors first; a severity
    outside the contract's three is kept, after them."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for finding in document["findings"]:
        groups.setdefault(finding["severity"], []).append(finding)
    order = [s for s in SEVERITIES if s in groups] + [s for s in groups if s not in SEVERITIES]
    return [(severity, groups[severity]) for severity in order]

"""DiffResult -> the versioned diff document, the one source every reporter renders.

The document (``"schema": "graphinspect/diff@1"``; a contract: fields are only ever
added, never renamed or removed, within a major version)::

    {
      "schema": "graphinspect/diff@1",
      "tool": {"name": "graphinspect", "version": "0.1.0"},
      "source": {"path", "format", "layers", "parameters"},
      "target": {"path", "format", "layers", "parameters"},
      "tolerance": {"rtol": float | null, "atol": float | null},   # null: per-dtype default
      "summary": {
        "verdict": "faithful" | "differs" | "incomplete",
        "matched", "mismatched", "unmatched_target", "unmatched_source",
        "by_transform": {"fold_batchnorm": 53, "identity": 12, ...},
        "max_rel_err": float | null,        # over every parameter compared (ok or mismatch)
        "text": "one paragraph in words",
        "coverage": {                        # every float the target stores, in one bucket
          "explained": {"elements", "bytes"},     # re-computed from PyTorch parameters, compared
          "constant": {"elements", "bytes"},      # shown not to be a parameter (see "constants")
          "unexplained": {"elements", "bytes"},   # nothing explains it: never "faithful"
          "by_op": {"Conv": {"explained": {...}, "constant": {...}, "unexplained": {...}}, ...}
        }
      },
      "layers": [                            # every parameter-carrying target layer, in order
        {"target": "<ONNX node name>", "op": "Conv",
         "sources": ["model.0.conv", "model.0.bn"],   # PyTorch module paths
         "transform": "fold_batchnorm" | null,
         "status": "ok" | "mismatch" | "unmatched",
         "matched_by": "name" | "scope" | "alignment" | "search" | null,
         "note": "",
         "params": [{"name": "weight", "target_tensor": "<initializer name>",
                     "source_tensor": "<state_dict key>" | null,
                     "source_range": [lo, hi] | null, "target_range": [lo, hi],
                     "reproduced_range": [lo, hi] | null,
                     "max_abs_err": float | null, "max_rel_err": float | null,
                     "status": "ok" | "mismatch" | "unmatched",
                     "bad_channels": [int, ...], "bad_channel_count": int,
                     "channel_errors": null | {"channels": int, "per_entry": int,
                                               "max_rel_err": [float | null, ...]}}]}
      ],
      "unmatched_source": ["<module path>", ...],
      "constants": [{"tensor", "op", "layer", "elements", "reason"}],   # no parameters, and why
      "findings": [{"severity": "error" | "warning" | "info", "code", "message",
                    "layer": str | null}]
    }

``max_rel_err`` is ``max|t - e| / max|e|`` (error relative to the tensor's scale);
``bad_channels`` holds at most :data:`MAX_LISTED_CHANNELS` channel indices,
``bad_channel_count`` all of them. ``channel_errors`` (a parameter that differs only,
else null) is each output channel's largest error relative to the tensor's scale, in
channel order: entry ``i`` covers channels ``i * per_entry`` to ``(i + 1) * per_entry - 1``
(``per_entry`` is 1 up to :data:`MAX_CHANNEL_ERRORS` channels; beyond, neighbouring
channels share an entry holding their largest error, so the list stays that short).
Non-finite floats are written as null.
"""

from __future__ import annotations

from typing import Any

from inspector.ir import Model
from inspector.output import document_header, fmt_count
from inspector.results import (
    CONSTANT,
    DIFFERS,
    EXPLAINED,
    FAITHFUL,
    MISMATCH,
    OK,
    UNEXPLAINED,
    UNMATCHED,
    DiffResult,
    LayerDiff,
    ParamDiff,
)

SCHEMA = "graphinspect/diff@1"
MAX_LISTED_CHANNELS = 20
MAX_CHANNEL_ERRORS = 1024


def build_document(result: DiffResult, rtol: float | None = None, atol: float | None = None) -> dict[str, Any]:
    """The diff document of ``result`` (see the module docstring for the contract)."""
    document = document_header(SCHEMA)
    document["source"] = _model_entry(result.source)
    document["target"] = _model_entry(result.target)
    document["tolerance"] = {"rtol": rtol, "atol": atol}
    errors = [
        p.max_rel_err
        for layer in result.layers
        if layer.status != UNMATCHED
        for p in layer.params
        if p.max_rel_err is not None
    ]
    document["summary"] = {
        "verdict": result.verdict,
        "matched": result.count(OK),
        "mismatched": result.count(MISMATCH),
        "unmatched_target": result.count(UNMATCHED),
        "unmatched_source": len(result.unmatched_source),
        "by_transform": result.by_transform(),
        "max_rel_err": max(errors) if errors else None,
        "text": summary_text(result),
        "coverage": _coverage_entry(result),
    }
    document["layers"] = [layer_entry(layer) for layer in result.layers]
    document["unmatched_source"] = list(result.unmatched_source)
    document["constants"] = [
        {"tensor": c.tensor, "op": c.op, "layer": c.layer, "elements": c.elements, "reason": c.reason}
        for c in result.constants
    ]
    document["findings"] = [
        {"severity": f.severity, "code": f.code, "message": f.message, "layer": f.layer} for f in result.findings
    ]
    return document


def _coverage_entry(result: DiffResult) -> dict[str, Any]:
    coverage = result.coverage

    def tallies(buckets) -> dict[str, dict[str, int]]:
        return {name: {"elements": tally.elements, "bytes": tally.bytes} for name, tally in buckets.items()}

    return {**tallies(coverage.totals), "by_op": {op: tallies(buckets) for op, buckets in coverage.by_op.items()}}


def _model_entry(model: Model) -> dict[str, Any]:
    return {
        "path": model.path,
        "format": model.format,
        "layers": len(model.param_layers()),
        "parameters": model.num_parameters,
    }


def layer_entry(layer: LayerDiff) -> dict[str, Any]:
    """One entry of the document's ``layers`` (see the module docstring)."""
    return {
        "target": layer.target,
        "op": layer.op,
        "sources": list(layer.sources),
        "transform": layer.transform,
        "status": layer.status,
        "matched_by": layer.matched_by,
        "note": layer.note,
        "params": [_param_entry(param) for param in layer.params],
    }


def _param_entry(param: ParamDiff) -> dict[str, Any]:
    return {
        "name": param.name,
        "target_tensor": param.target_tensor,
        "source_tensor": param.source_tensor,
        "source_range": _pair(param.source_range),
        "target_range": _pair(param.target_range),
        "reproduced_range": _pair(param.reproduced_range),
        "max_abs_err": param.max_abs_err,
        "max_rel_err": param.max_rel_err,
        "status": param.status,
        "bad_channels": list(param.bad_channels[:MAX_LISTED_CHANNELS]),
        "bad_channel_count": param.bad_channel_count,
        "channel_errors": channel_errors_entry(param.channel_errors),
    }


def channel_errors_entry(errors: list[float] | None) -> dict[str, Any] | None:
    """Per-channel errors, at most :data:`MAX_CHANNEL_ERRORS` entries (see the module docstring)."""
    if errors is None:
        return None
    per_entry = max(1, -(-len(errors) // MAX_CHANNEL_ERRORS))
    entries = [max(errors[start : start + per_entry]) for start in range(0, len(errors), per_entry)]
    return {"channels": len(errors), "per_entry": per_entry, "max_rel_err": entries}


def _pair(value: tuple[float, float] | None) -> list[float] | None:
    return None if value is None else [float(value[0]), float(value[1])]


# ----------------------------------------------------------------------------- in words


def summary_text(result: DiffResult) -> str:
    """The verdict in words: what was matched and how, what was not, and where."""
    sentences = []
    by_op: dict[str, dict[str, int]] = {}
    for layer in result.layers:
        if layer.status == OK and layer.transform:
            counts = by_op.setdefault(layer.op, {})
            counts[layer.transform] = counts.get(layer.transform, 0) + 1
    for op, counts in by_op.items():
        total = sum(counts.values())
        parts = [
            f"{count} {result.transform_phrases.get(name, name)}"
            for name, count in sorted(counts.items(), key=lambda item: -item[1])
        ]
        sentences.append(f"{total} {op} layer{'s' if total != 1 else ''}: {', '.join(parts)}.")
    errors = [
        p.max_rel_err
        for layer in result.layers
        if layer.status == OK
        for p in layer.params
        if p.max_rel_err is not None
    ]
    if errors:
        sentences.append(f"Every matched parameter re-computed within {max(errors):.1e} relative to its scale.")
    mismatched = [layer for layer in result.layers if layer.status == MISMATCH]
    for layer in mismatched[:5]:
        sentences.append(describe_mismatch(layer_entry(layer)) + ".")
    if len(mismatched) > 5:
        sentences.append(f"... and {len(mismatched) - 5} more layers differ.")
    unmatched = [layer for layer in result.layers if layer.status == UNMATCHED]
    if unmatched:
        names = ", ".join(layer.target for layer in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        sentences.append(
            f"{len(unmatched)} ONNX layer{'s' if len(unmatched) != 1 else ''} could not be traced to the "
            f"PyTorch model: {names}{more}."
        )
    if result.unmatched_source:
        sentences.append(
            f"{len(result.unmatched_source)} PyTorch "
            f"layer{'s are' if len(result.unmatched_source) != 1 else ' is'} not used by the export."
        )
    sentences.append(_verdict_sentence(result))
    return " ".join(sentences)


LISTED_IN_WORDS = 5
"""Bad output channels named in a mismatch sentence; the rest are counted."""


def describe_mismatch(layer: dict[str, Any]) -> str:
    """One mismatched layer of the document in words (no final full stop), the one
    wording every report and finding uses::

        /model.1/conv/Conv (Conv, from model.1.conv + model.1.bn via fold_batchnorm):
        weight differs by up to 0.00195 (0.86% of its scale) in output channel 17
    """
    parts = []
    for param in layer["params"]:
        if param.get("status") != MISMATCH:
            continue
        where = ""
        count = param.get("bad_channel_count") or 0
        if count:
            shown = ", ".join(str(c) for c in list(param.get("bad_channels") or [])[:LISTED_IN_WORDS])
            more = f" and {count - LISTED_IN_WORDS} more" if count > LISTED_IN_WORDS else ""
            where = f" in output channel{'s' if count != 1 else ''} {shown}{more}"
        relative = param.get("max_rel_err")
        if relative is None or relative != relative or relative == float("inf"):
            scale = (
                "where the re-computed values are all zero"
                if param.get("reproduced_range") == [0.0, 0.0]
                else "of an unknown scale"
            )
            parts.append(f"{param['name']} differs by up to {_number(param.get('max_abs_err'))} {scale}{where}")
        else:
            parts.append(
                f"{param['name']} differs by up to {_number(param.get('max_abs_err'))} "
                f"({_percent(relative)} of its scale){where}"
            )
    sources = " + ".join(name or "the root module" for name in layer["sources"]) or "?"
    return f"{layer['target']} ({layer['op']}, from {sources} via {layer['transform']}): {'; '.join(parts)}"


def _number(value: float | None) -> str:
    return "an unknown amount" if value is None else f"{value:.3g}"


def _percent(value: float | None) -> str:
    if value is None or value != value or value == float("inf"):
        return "all"
    return f"{value:.2%}"


def _verdict_sentence(result: DiffResult) -> str:
    """How much was verified, why the ranges differ (whatever the verdict: a user
    chasing one bad layer still needs to know the others were folded), and the verdict."""
    sentences = []
    coverage = result.coverage.totals
    explained, unexplained = coverage[EXPLAINED].elements, coverage[UNEXPLAINED].elements
    if explained or unexplained:
        constant = coverage[CONSTANT].elements
        tail = f"; {fmt_count(constant)} more are constants computed at export" if constant else ""
        sentences.append(
            f"{fmt_count(explained)} of {fmt_count(explained + unexplained)} parameter elements re-computed{tail}."
        )
    reasons = [result.transform_explains[name] for name in result.by_transform() if name in result.transform_explains]
    reasons = list(dict.fromkeys(reasons))
    if reasons:
        sentences.append(f"The value ranges differ from the PyTorch model's because {', '.join(reasons)}.")
    verdict = result.verdict
    if verdict == FAITHFUL:
        sentences.append("The export is faithful.")
    elif verdict == DIFFERS:
        sentences.append(
            "The export differs from the PyTorch model: the layers above hold values no known transform explains."
        )
    else:
        sentences.append("The diff is incomplete: some ONNX parameters could not be explained.")
    return " ".join(sentences)

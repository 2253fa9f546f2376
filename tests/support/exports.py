"""Helpers of the diff tests (test_diff_transforms.py, test_diff_models.py).

Models are exported with both torch exporters, loaded with the real loaders and diffed
with :func:`inspector.diff.diff_models`; the assertions below check the whole result,
not a sample of it. Nothing here is a test itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import warnings
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

EXPORTERS = ("legacy", "dynamo")


def export(model, args: tuple, path: Path, exporter: str, **kwargs) -> Path:
    """Export ``model`` with the legacy (TorchScript) or the dynamo exporter, quietly."""
    import torch

    model.eval()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                torch.onnx.export(model, args, str(path), dynamo=True, external_data=False, verbose=False, **kwargs)
            elif exporter == "legacy":
                torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, **kwargs)
            else:
                raise ValueError(exporter)
    finally:
        logger.setLevel(level)
    return Path(path)


@lru_cache(maxsize=1)
def plugins():
    """The built-in plugins only (no third-party entry points)."""
    from inspector.manager import get_plugin_manager

    return get_plugin_manager(autoload=False)


def load(path):
    return plugins().load_model(path)


def diff(source, target, rtol: float | None = None, atol: float | None = None):
    """Load both files (paths or loaded models) and diff them."""
    from inspector.diff import diff_models

    source = load(source) if isinstance(source, (str, Path)) else source
    target = load(target) if isinstance(target, (str, Path)) else target
    return diff_models(plugins(), source, target, rtol=rtol, atol=atol)


def describe(result) -> str:
    """The result as lines, for assertion messages."""
    lines = [f"verdict {result.verdict}"]
    for layer in result.layers:
        errors = ", ".join(f"{p.name} {p.max_rel_err}" for p in layer.params)
        lines.append(
            f"  {layer.status:9} {layer.op:20} {layer.target:45} {layer.transform} {layer.sources} "
            f"[{layer.matched_by}] {layer.note!r} ({errors}) {layer.reasons[:2]}"
        )
    lines += [f"  finding {f.severity} {f.code}: {f.message}" for f in result.findings]
    lines.append(
        f"  unmatched source {result.unmatched_source}, constants "
        f"{[(c.layer, c.reason[:30]) for c in result.constants]}"
    )
    lines.append(f"  coverage { {bucket: tally.elements for bucket, tally in result.coverage.totals.items()} }")
    return "\n".join(lines)


def constant_layers(result) -> set[str]:
    """Target layers reading a tensor the diff showed to be a constant, not a parameter."""
    return {constant.layer for constant in result.constants}


def outline(result) -> list[tuple[str, str | None, list[str]]]:
    """(op, transform, sources) of every listed layer, in target order."""
    return [(layer.op, layer.transform, list(layer.sources)) for layer in result.layers]


def assert_outline(result, expected: list[tuple[str, str | None, list[str]]]) -> None:
    assert outline(result) == expected, describe(result)


def assert_faithful(result, max_rel_err: float = 1e-6, untraced: Iterable[str] | None = ()) -> None:
    """Verdict faithful; every parameter-carrying target layer explained, status ok,
    every error tiny; no PyTorch layer left over; no findings of severity error.

    ``untraced``: the target layers allowed to read constants computed at export
    (None: any); every other float the target stores must be explained.
    """
    text = describe(result)
    assert result.verdict == "faithful", text
    assert result.coverage.unexplained == 0, text
    assert_every_weight_layer_listed(result, untraced)
    for layer in result.layers:
        assert layer.status == "ok" and layer.transform and layer.sources, text
        for param in layer.params:
            assert param.status == "ok", text
            assert param.max_rel_err is not None and param.max_rel_err <= max_rel_err, (layer.target, param.name, text)
            assert param.bad_channels == [] and param.bad_channel_count == 0, text
    assert result.unmatched_source == [], text
    assert not [f for f in result.findings if f.severity == "error"], text


def assert_every_weight_layer_listed(result, untraced: Iterable[str] | None = ()) -> None:
    """Every target layer with params is in ``result.layers``, or is the bias Add joined
    to a listed MatMul, or (when allowed) an untraced constant."""
    listed = {layer.target: layer for layer in result.layers}
    assert len(listed) == len(result.layers), "a target layer is listed twice"
    joined_biases = {
        param.target_tensor
        for layer in result.layers
        if layer.op == "MatMul"
        for param in layer.params
        if param.name == "bias"
    }
    allowed = None if untraced is None else set(untraced)
    for layer in result.target.layers:
        if not layer.params or layer.name in listed:
            continue
        if layer.op_type == "Add" and {p.tensor_name for p in layer.params.values()} <= joined_biases:
            continue
        assert layer.name in constant_layers(result), (
            f"{layer.name} ({layer.op_type}) is not reported\n{describe(result)}"
        )
        if allowed is not None:
            assert layer.name in allowed, f"{layer.name} ({layer.op_type}) is left untraced\n{describe(result)}"
    # In target execution order.
    order = [result.target.layer(layer.target).index for layer in result.layers]
    assert order == sorted(order)


def layer_for(result, *sources: str, occurrence: int = 0):
    """The listed layer explained by exactly these sources (the n-th, for a module called twice)."""
    found = [layer for layer in result.layers if layer.sources == list(sources)]
    assert len(found) > occurrence, f"nothing explained by {sources}\n{describe(result)}"
    return found[occurrence]


def param(layer, name: str):
    (found,) = [p for p in layer.params if p.name == name]
    return found


def reproduction(result, layer):
    """Re-run the transform that explained ``layer`` (a LayerDiff): its Reproduction."""
    from inspector.transforms import SourceIndex

    transform = next(t for t in plugins().transforms() if t.name == layer.transform)
    index = SourceIndex(result.source)
    target = result.target.layer(layer.target)
    anchors = list(layer.sources) + [index.parent(name) for name in layer.sources]
    for anchor in anchors:
        for candidate in transform.propose(target, anchor, index):
            if candidate.names == layer.sources and candidate.variant == layer.variant:
                return transform.reproduce(target, candidate)
    raise AssertionError(f"{layer.transform} proposes no {layer.sources} for {layer.target}")


def stored(result, layer, name: str) -> np.ndarray:
    """The values the ONNX file stores for one param of a listed layer (a LayerDiff)."""
    tensor_name = param(layer, name).target_tensor
    for _, candidate in result.target.params():
        if candidate.tensor_name == tensor_name:
            return np.asarray(candidate.array())
    raise AssertionError(f"no target tensor {tensor_name}")


def relative_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64).reshape(actual.shape)
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


# ----------------------------------------------------------------------------- the JSON contract

_STATUS = {"ok", "mismatch", "unmatched"}
_VERDICTS = {"faithful", "differs", "incomplete"}
_MATCHED_BY = {"name", "scope", "alignment", "search", None, "reconciled", "values"}
_SEVERITIES = {"error", "warning", "info"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _pair_or_none(value: Any) -> bool:
    return value is None or (
        isinstance(value, list) and len(value) == 2 and all(_number(v) or v is None for v in value)
    )


def _keys(where: str, entry: Any, keys: set[str]) -> None:
    assert isinstance(entry, dict), f"{where} is not an object"
    assert set(entry) == keys, f"{where}: keys {sorted(entry)} != documented {sorted(keys)}"


def parse_json(text: str) -> dict:
    """Standard JSON only: NaN, Infinity and -Infinity are refused."""

    def refuse(constant: str):
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


LAYER_FIELDS = {"target", "op", "sources", "transform", "status", "matched_by", "note", "params"}
"""The keys of a ``layers[]`` entry of a diff@1 document (inspector/report.py)."""
PARAM_FIELDS = {
    "name",
    "target_tensor",
    "source_tensor",
    "source_range",
    "target_range",
    "reproduced_range",
    "max_abs_err",
    "max_rel_err",
    "status",
    "bad_channels",
    "bad_channel_count",
    "channel_errors",
}
"""The keys of a ``params[]`` entry of a layer."""


def validate_diff_document(document: dict, target_order: list[str] | None = None) -> None:
    """Check ``document`` against the graphinspect/diff@1 contract of inspector/report.py:
    every documented key at every level, no undocumented one, types and value sets."""
    _keys(
        "document",
        document,
        {
            "schema",
            "tool",
            "source",
            "target",
            "tolerance",
            "summary",
            "layers",
            "unmatched_source",
            "constants",
            "findings",
        },
    )
    assert document["schema"] == "graphinspect/diff@1"
    _keys("tool", document["tool"], {"name", "version"})
    assert document["tool"]["name"] == "graphinspect" and isinstance(document["tool"]["version"], str)
    for side in ("source", "target"):
        entry = document[side]
        _keys(side, entry, {"path", "format", "layers", "parameters"})
        assert isinstance(entry["path"], str) and isinstance(entry["format"], str)
        assert _count(entry["layers"]) and _count(entry["parameters"])
    _keys("tolerance", document["tolerance"], {"rtol", "atol"})
    for key in ("rtol", "atol"):
        assert document["tolerance"][key] is None or _number(document["tolerance"][key])
    summary = document["summary"]
    _keys(
        "summary",
        summary,
        {
            "verdict",
            "matched",
            "mismatched",
            "unmatched_target",
            "unmatched_source",
            "by_transform",
            "max_rel_err",
            "text",
            "coverage",
        },
    )
    assert summary["verdict"] in _VERDICTS
    for key in ("matched", "mismatched", "unmatched_target", "unmatched_source"):
        assert _count(summary[key]), key
    assert isinstance(summary["by_transform"], dict)
    assert all(isinstance(k, str) and _count(v) and v > 0 for k, v in summary["by_transform"].items())
    assert summary["max_rel_err"] is None or _number(summary["max_rel_err"])
    assert isinstance(summary["text"], str) and summary["text"]
    coverage = summary["coverage"]
    _keys("coverage", coverage, {"explained", "constant", "unexplained", "by_op"})
    for bucket in ("explained", "constant", "unexplained"):
        _keys(f"coverage.{bucket}", coverage[bucket], {"elements", "bytes"})
        assert _count(coverage[bucket]["elements"]) and _count(coverage[bucket]["bytes"])
        assert sum(per_op[bucket]["elements"] for per_op in coverage["by_op"].values()) == coverage[bucket]["elements"]
    assert summary["verdict"] != "faithful" or coverage["unexplained"]["elements"] == 0
    for position, constant in enumerate(document["constants"]):
        _keys(f"constants[{position}]", constant, {"tensor", "op", "layer", "elements", "reason"})
        assert isinstance(constant["reason"], str) and constant["reason"] and _count(constant["elements"])
    assert isinstance(document["layers"], list)
    for position, layer in enumerate(document["layers"]):
        where = f"layers[{position}]"
        _keys(where, layer, LAYER_FIELDS)
        assert isinstance(layer["target"], str) and layer["target"], where
        assert isinstance(layer["op"], str) and layer["op"], where
        assert isinstance(layer["sources"], list) and all(isinstance(s, str) for s in layer["sources"]), where
        assert layer["status"] in _STATUS, where
        assert layer["matched_by"] in _MATCHED_BY, where
        assert isinstance(layer["note"], str), where
        if layer["status"] == "unmatched":
            assert layer["transform"] is None and layer["sources"] == [] and layer["matched_by"] is None, where
        else:
            assert isinstance(layer["transform"], str) and layer["sources"] and layer["matched_by"] is not None, where
        assert isinstance(layer["params"], list) and layer["params"], where
        for index, entry in enumerate(layer["params"]):
            at = f"{where}.params[{index}]"
            _keys(at, entry, PARAM_FIELDS)
            assert isinstance(entry["name"], str) and isinstance(entry["target_tensor"], str), at
            assert entry["source_tensor"] is None or isinstance(entry["source_tensor"], str), at
            for key in ("source_range", "target_range", "reproduced_range"):
                assert _pair_or_none(entry[key]), f"{at}.{key}"
            assert entry["target_range"] is not None, at
            for key in ("max_abs_err", "max_rel_err"):
                assert entry[key] is None or (_number(entry[key]) and entry[key] >= 0), f"{at}.{key}"
            assert entry["status"] in _STATUS, at
            assert isinstance(entry["bad_channels"], list) and all(_count(c) for c in entry["bad_channels"]), at
            assert len(entry["bad_channels"]) <= 20 and _count(entry["bad_channel_count"]), at
            assert entry["bad_channel_count"] >= len(entry["bad_channels"]), at
            errors = entry["channel_errors"]
            assert errors is None or entry["status"] == "mismatch", at  # only a parameter that differs
            if errors is not None:
                _keys(f"{at}.channel_errors", errors, {"channels", "per_entry", "max_rel_err"})
                values = errors["max_rel_err"]
                assert _count(errors["channels"]) and _count(errors["per_entry"]) and errors["per_entry"] >= 1, at
                assert len(values) <= 1024 and len(values) == -(-errors["channels"] // errors["per_entry"]), at
                assert all(v is None or (_number(v) and v >= 0) for v in values), at
                if entry["max_rel_err"] is not None and None not in values:
                    assert max(values) == entry["max_rel_err"], at
            if layer["status"] == "unmatched":
                assert entry["status"] == "unmatched" and entry["max_abs_err"] is None, at
            else:
                assert entry["status"] in ("ok", "mismatch"), at
                assert (entry["status"] == "ok") == (entry["bad_channel_count"] == 0), at
        if layer["status"] == "ok":
            assert all(entry["status"] == "ok" for entry in layer["params"]), where
        if layer["status"] == "mismatch":
            assert any(entry["status"] == "mismatch" for entry in layer["params"]), where
    assert isinstance(document["unmatched_source"], list)
    assert all(isinstance(name, str) for name in document["unmatched_source"])
    assert isinstance(document["findings"], list)
    for index, finding in enumerate(document["findings"]):
        _keys(f"findings[{index}]", finding, {"severity", "code", "message", "layer"})
        assert finding["severity"] in _SEVERITIES
        assert isinstance(finding["code"], str) and finding["code"] and isinstance(finding["message"], str)
        assert finding["layer"] is None or isinstance(finding["layer"], str)
    if target_order is not None:
        positions = [target_order.index(layer["target"]) for layer in document["layers"]]
        assert positions == sorted(positions), "layers are not in target execution order"

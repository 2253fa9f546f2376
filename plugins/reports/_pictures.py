"""The pictures of the HTML report, as geometry: numbers in, pixels out.

Each function reads part of a ``graphinspect/diff@1`` document and returns the shapes
of one inline SVG picture (positions, sizes, classes, the text of its labels and
tooltips) for the page template of :mod:`._html_page` to draw; nothing here writes
markup. Errors are drawn on a log axis from 1e-10 (exact zero sits on the floor) to 1.

- :func:`strip`: one bar per layer in graph order, its height the layer's largest
  relative error, the tolerance line across; mismatched and unmatched layers get a band
  behind their bar and their names above the strip;
- :func:`channel_bars`: a mismatched parameter's error per output channel (its
  ``channel_errors``), the bad channels red and the worst named;
- :func:`ranges`: a parameter's PyTorch, ONNX and re-computed ranges on one axis, one
  bar under the other, zero marked.
"""

from __future__ import annotations

import math
from typing import Any

from inspector.output import fmt_float, visible
from plugins.reports._wording import channels_text, range_text, status_label

LOG_FLOOR, LOG_CEILING = -10, 0
"""The error axes run from 1e-10 (and exact zero) to 1 (and beyond, clamped)."""

MAX_STRIP_BARS = 1200
"""Beyond this many layers, neighbours share a bar of the strip (the worst of them)."""

MAX_BAR_WIDTH = 14
"""A strip of few layers keeps thin bars (its meaning is the pattern, not the width)."""

MAX_STRIP_LABELS = 4
"""Problem layers named above the strip."""

STATUS_RANK = {"mismatch": 2, "unmatched": 1, "ok": 0}


# ----------------------------------------------------------------- numbers to pixels


def log_position(value: float | None, bottom: float, top: float, ceiling: int = LOG_CEILING) -> float:
    """The y of an error on a log axis from 1e-10 (bottom; exact zero too) to 10**ceiling."""
    if value is None or value <= 0:
        exponent = LOG_FLOOR
    elif not math.isfinite(value):
        exponent = ceiling
    else:
        exponent = min(max(math.log10(value), LOG_FLOOR), ceiling)
    return round(bottom - (exponent - LOG_FLOOR) / (ceiling - LOG_FLOOR) * (bottom - top), 1)


def log_ticks(bottom: float, top: float, ceiling: int = LOG_CEILING) -> list[dict[str, Any]]:
    return [
        {"y": log_position(10.0**exponent, bottom, top, ceiling), "label": _power(exponent)}
        for exponent in range(LOG_FLOOR, ceiling + 1, 2)
    ]


def _power(exponent: int) -> str:
    return {0: "1", -1: "0.1", -2: "0.01"}.get(exponent, f"1e{exponent}")


def layer_error(layer: dict[str, Any], key: str = "max_rel_err") -> float | None:
    """The largest error of a layer's parameters; inf when one is non-finite (null)."""
    values = [p.get(key) for p in layer["params"] if p.get("status") != "unmatched"]
    if not values:
        return None
    if any(value is None for value in values):
        return math.inf
    return max(values)


def short_name(name: str, limit: int = 48) -> str:
    """A long node name cut in its middle, for a label in a picture (the full name is
    in the card and the table)."""
    return name if len(name) <= limit else name[: limit // 2 - 1] + "\u2026" + name[-(limit // 2 - 1) :]


# ----------------------------------------------------------------- the strip


def strip(layers: list[dict[str, Any]], anchors: dict[int, str], tolerance: tuple[float, str]) -> dict[str, Any]:
    """Geometry of the error strip (see the module docstring)."""
    width, height, left, right, top, bottom = 1320, 190, 48, 1312, 40, 170
    per_bar = max(1, math.ceil(len(layers) / MAX_STRIP_BARS))
    groups = [layers[start : start + per_bar] for start in range(0, len(layers), per_bar)]
    step = (right - left) / len(groups)
    bar_width = min(max(step - (1 if step > 3 else 0), 0.6), MAX_BAR_WIDTH)
    bars, bands, labelled = [], [], []
    for position, group in enumerate(groups):
        worst = max(group, key=lambda layer: (STATUS_RANK.get(layer["status"], 0), layer_error(layer) or 0))
        status = worst["status"] if worst["status"] in STATUS_RANK else "ok"
        error = layer_error(worst)
        x = left + position * step + (step - bar_width) / 2  # a thin bar in the middle of its slot
        y = top if status == "unmatched" else log_position(error, bottom, top)
        name = visible(worst["target"])
        what = "unmatched" if status == "unmatched" else f"max rel err {fmt_float(error)}"
        title = f"{name}: {status_label(status)}, {what}"
        if status == "ok" and not error:
            status, y = "exact", bottom - 3  # re-computed to the last bit: a stub, not a bar
        if per_bar > 1:
            title = f"layers {position * per_bar}-{position * per_bar + len(group) - 1}, worst {title}"
        bars.append(
            {
                "x": round(x, 2),
                "y": y,
                "w": round(bar_width, 2),
                "h": round(max(bottom - y, 1.5), 1),
                "status": status,
                "title": title,
                "anchor": anchors[id(worst)],
            }
        )
        if status in ("mismatch", "unmatched"):
            band = max(bar_width + 4, 7.0)
            middle = x + bar_width / 2
            bands.append({"x": round(middle - band / 2, 2), "w": round(band, 2), "status": status})
            labelled.append((middle, worst, status))
    labels = []
    for number, (x, layer, status) in enumerate(labelled[:MAX_STRIP_LABELS]):
        where = ""
        if status == "mismatch":
            channels = [channels_text(p) for p in layer["params"] if p.get("status") == "mismatch" and channels_text(p)]
            where = f" {channels[0]}" if channels else ""
        anchor = "start" if x < (left + right) / 2 else "end"
        labels.append(
            {
                "x": round(x, 1),
                "y": 12 + 12 * (number % 2),
                "anchor": anchor,
                "text": short_name(visible(layer["target"])) + visible(where),
                "status": status,
            }
        )
    if len(labelled) > MAX_STRIP_LABELS:
        labels.append(
            {
                "x": right,
                "y": 14,
                "anchor": "end",
                "text": f"+{len(labelled) - MAX_STRIP_LABELS} more problems",
                "status": "mismatch",
            }
        )
    rtol, label = tolerance
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "top": top,
        "plot_height": bottom - top,
        "ticks": log_ticks(bottom, top),
        "bars": bars,
        "bands": bands,
        "labels": labels,
        "tolerance": {"y": log_position(rtol, bottom, top), "label": label},
        "first": "first layer",
        "last": f"last layer ({len(layers)})" + (f"; {per_bar} layers a bar" if per_bar > 1 else ""),
        "label": "largest relative error of each layer, in graph order, log scale",
    }


def channel_bars(param: dict[str, Any], rtol: float) -> dict[str, Any]:
    """Geometry of a mismatched parameter's per-channel error bars."""
    errors = param["channel_errors"]
    values = [math.inf if value is None else value for value in errors["max_rel_err"]]
    per, channels = errors["per_entry"], errors["channels"]
    largest = max((v for v in values if math.isfinite(v)), default=0.0)
    ceiling = max(LOG_CEILING, math.ceil(math.log10(largest))) if largest > 0 else LOG_CEILING
    width, height, left, right, top, bottom = 600, 150, 44, 594, 18, 132
    step = (right - left) / max(len(values), 1)
    listed = set(param.get("bad_channels") or [])
    everything_listed = (param.get("bad_channel_count") or 0) <= len(listed)
    bars = []
    for index, value in enumerate(values):
        first, last = index * per, min((index + 1) * per, channels) - 1
        in_list = any(channel in listed for channel in range(first, last + 1))
        bad = in_list or not math.isfinite(value) or (not everything_listed and value > rtol)
        y = log_position(value, bottom, top, ceiling)
        where = f"channel {first}" if per == 1 else f"channels {first}-{last}"
        bars.append(
            {
                "x": round(left + index * step, 2),
                "y": y,
                "w": round(max(step * 0.85, 0.5), 2),
                "h": round(max(bottom - y, 1.0), 1),
                "status": "bad" if bad else "ok",
                "title": f"{where}: max rel err {fmt_float(value)}",
                "value": value,
                "where": where,
            }
        )
    worst = sorted((bar for bar in bars if bar["status"] == "bad"), key=lambda bar: -bar["value"])[:3]
    labels = [
        {
            "x": round(bar["x"] + bar["w"] / 2, 1),
            "y": max(bar["y"] - 3, 11),
            "text": bar["where"].replace("channel", "ch"),
        }
        for bar in worst
    ]
    shared = f", {per} channels a bar" if per > 1 else ""
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "ticks": log_ticks(bottom, top, ceiling),
        "bars": bars,
        "labels": labels,
        "tolerance": {"y": log_position(rtol, bottom, top, ceiling)},
        "last": f"channel {channels - 1}",
        "caption": visible(
            f"{param['name']}: largest relative error of each of its {channels} output channels{shared} "
            f"(log scale; dashed: the tolerance)"
        ),
    }


def ranges(param: dict[str, Any], width: int, bar: int, gap: int, labels: bool) -> dict[str, Any] | None:
    """Geometry of a parameter's PyTorch, ONNX and re-computed ranges on one axis (with
    zero marked), one bar under the other; ``labels`` writes the numbers beside them."""
    picture = range_bars(param, width, bar, gap, text_width=190 if labels else 0)
    if picture is None:
        return None
    for one in picture["bars"]:
        text = f"{one['label']} {range_text(one['pair'])}"
        one["title"] = text
        one["text"] = text if labels else ""
    picture["label"] = visible(f"{param['name']}: " + "; ".join(one["title"] for one in picture["bars"]))
    picture["caption"] = visible(f"{param['name']}: the ranges side by side (zero marked)")
    return picture


def range_bars(param: dict[str, Any], width: int, bar: int, gap: int, text_width: int = 0) -> dict[str, Any] | None:
    """The geometry alone of :func:`ranges` (no titles or text): a table row's picture,
    drawn for every parameter of the page, needs nothing more."""
    kinds = [
        ("source", "PyTorch", param.get("source_range")),
        ("target", "ONNX", param.get("target_range")),
        ("reproduced", "re-computed", param.get("reproduced_range")),
    ]
    ends = [v for _, _, pair in kinds if pair for v in pair if v is not None and math.isfinite(v)]
    if not ends:
        return None
    lo, hi = min(ends + [0.0]), max(ends + [0.0])
    if hi <= lo:
        hi = lo + 1.0
    plot = width - text_width - 4

    def x_of(value: float) -> float:
        return round(2 + (value - lo) / (hi - lo) * plot, 2)

    bars = []
    for row, (kind, label, pair) in enumerate(kinds):
        if not pair or pair[0] is None or pair[1] is None or not all(math.isfinite(v) for v in pair):
            continue
        x0, x1 = x_of(pair[0]), x_of(pair[1])
        bars.append(
            {
                "kind": kind,
                "label": label,
                "pair": pair,
                "x": x0,
                "y": 1 + row * (bar + gap),
                "w": round(max(x1 - x0, 1.0), 2),
                "h": bar,
                "text_x": plot + 8,
            }
        )
    return {"width": width, "height": 3 * bar + 2 * gap + 2, "zero": x_of(0.0), "bars": bars}

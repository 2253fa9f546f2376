"""inspector.report: the graphinspect/diff@1 document and the one mismatch wording.

The document is a contract (fields only ever added within a major version): every field
named in the module docstring is checked here, with values re-computed from the arrays
the models were built from.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import inspector
from inspector.ir import BATCHNORM, CONV, IN_OUT, LINEAR, WEIGHT_LAYOUT
from inspector.output import dump_json, json_safe
from inspector.report import (
    MAX_CHANNEL_ERRORS,
    MAX_LISTED_CHANNELS,
    SCHEMA,
    build_document,
    channel_errors_entry,
    describe_mismatch,
    layer_entry,
    summary_text,
)
from tests.support.exports import LAYER_FIELDS, PARAM_FIELDS
from tests.support.layers import bn_stats, diff, layer, per_channel, randn, rng, source, tampered, target


@pytest.fixture(scope="module")
def case():
    """A fold that is right, a transposed Linear with one output channel off by 2%, a conv
    traced to nothing and a source conv the export does not use."""
    r = rng(0)
    w, bn = randn(r, 8, 3, 3, 3), bn_stats(r, 8)
    s = bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + 1e-3)
    fused_w = w * per_channel(s, 4)
    fused_b = bn["bias"] - bn["running_mean"] * s
    fc_w, fc_b = randn(r, 6, 8), randn(r, 6)
    stored_fc = tampered(fc_w.T, 2, axis=1)
    stray = randn(r, 5, 5, 1, 1)
    src = source(
        layer("blk.conv", CONV, "Conv2d", weight=w),
        layer("blk.bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-3}, **bn),
        layer("fc", LINEAR, "Linear", weight=fc_w, bias=fc_b),
        layer("aux.conv", CONV, "Conv2d", weight=randn(r, 2, 8, 1, 1)),
    )
    tgt = target(
        layer(
            "/blk/conv/Conv",
            CONV,
            "Conv",
            hints=("blk.conv",),
            weight=fused_w.astype(np.float32),
            bias=fused_b.astype(np.float32),
        ),
        layer("/fc/MatMul", LINEAR, "MatMul", {WEIGHT_LAYOUT: IN_OUT}, hints=("fc",), weight=stored_fc, bias=fc_b),
        layer("Conv_9", CONV, "Conv", weight=stray),
    )
    result = diff(src, tgt)
    arrays = dict(w=w, fused_w=fused_w, fused_b=fused_b, fc_w=fc_w, fc_b=fc_b, stored_fc=stored_fc, stray=stray, bn=bn)
    return result, build_document(result), arrays


def _range(array):
    return [float(np.min(array)), float(np.max(array))]


def test_header_and_models(case):
    result, document, arrays = case
    assert document["schema"] == SCHEMA == "graphinspect/diff@1"
    assert document["tool"] == {"name": "graphinspect", "version": inspector.__version__}
    source_numel = 8 * 3 * 3 * 3 + 4 * 8 + 6 * 8 + 6 + 2 * 8
    target_numel = 8 * 3 * 3 * 3 + 8 + 6 * 8 + 6 + 5 * 5
    assert document["source"] == {
        "path": "<pytorch-module>",
        "format": "pytorch-module",
        "layers": 4,
        "parameters": source_numel,
    }
    assert document["target"] == {"path": "<onnx>", "format": "onnx", "layers": 3, "parameters": target_numel}
    assert document["tolerance"] == {"rtol": None, "atol": None}
    assert build_document(result, rtol=1e-3, atol=0.0)["tolerance"] == {"rtol": 1e-3, "atol": 0.0}


def test_summary(case):
    _, document, arrays = case
    summary = document["summary"]
    # The worst compared error is the tampered channel: 2% of it, relative to W's scale.
    expected_rel = (
        np.abs(arrays["stored_fc"].astype(np.float64) - arrays["fc_w"].T).max() / np.abs(arrays["fc_w"]).max()
    )
    # The unmatched Conv's 25 numbers are unexplained; everything else was compared.
    assert summary["coverage"]["unexplained"] == {"elements": 25, "bytes": 100}
    assert summary["coverage"]["explained"]["elements"] == 8 * 3 * 3 * 3 + 8 + 6 * 8 + 6
    assert {key: summary[key] for key in summary if key not in ("text", "coverage")} == {
        "verdict": "differs",
        "matched": 1,
        "mismatched": 1,
        "unmatched_target": 1,
        "unmatched_source": 1,
        "by_transform": {"fold_batchnorm": 1},
        "max_rel_err": pytest.approx(expected_rel),
    }


def test_summary_text(case):
    result, document, _ = case
    text = document["summary"]["text"]
    mismatch = describe_mismatch(document["layers"][1])
    assert text.startswith(
        "1 Conv layer: 1 Conv/Linear + BatchNorm folded. Every matched parameter re-computed within "
    )
    assert (
        f" relative to its scale. {mismatch}. 1 ONNX layer could not be traced to the PyTorch model: Conv_9. "
        "1 PyTorch layer is not used by the export. 278 of 303 parameter elements re-computed. "
        "The value ranges differ from the PyTorch model's because BatchNorm was folded into the layers before it. "
        "The export differs from the PyTorch model: the layers above hold values no known transform explains." in text
    )
    assert summary_text(result) == text


def test_layers(case):
    _, document, arrays = case
    layers = document["layers"]
    assert [(e["target"], e["op"], e["sources"], e["transform"], e["status"], e["matched_by"]) for e in layers] == [
        ("/blk/conv/Conv", "Conv", ["blk.conv", "blk.bn"], "fold_batchnorm", "ok", "scope"),
        ("/fc/MatMul", "MatMul", ["fc"], "transpose", "mismatch", "scope"),
        ("Conv_9", "Conv", [], None, "unmatched", None),
    ]
    assert all(set(entry) == LAYER_FIELDS for entry in layers)
    assert all(set(param) == PARAM_FIELDS for entry in layers for param in entry["params"])
    assert layers[0]["note"] == "eps 0.001 from the module"


def test_parameter_entries_carry_ranges_and_errors(case):
    _, document, arrays = case
    weight, bias = document["layers"][0]["params"]
    assert (weight["name"], weight["target_tensor"], weight["source_tensor"]) == (
        "weight",
        "/blk/conv/Conv.weight",
        "blk.conv.weight",
    )
    assert weight["source_range"] == _range(arrays["w"])
    assert weight["target_range"] == _range(arrays["fused_w"].astype(np.float32))
    assert weight["reproduced_range"] == pytest.approx(_range(arrays["fused_w"]), rel=1e-12)
    stored = arrays["fused_w"].astype(np.float32).astype(np.float64)
    assert weight["max_abs_err"] == pytest.approx(np.abs(stored - arrays["fused_w"]).max(), rel=1e-6)
    assert weight["max_rel_err"] == pytest.approx(
        np.abs(stored - arrays["fused_w"]).max() / np.abs(arrays["fused_w"]).max(), rel=1e-6
    )
    assert (weight["status"], weight["bad_channels"], weight["bad_channel_count"]) == ("ok", [], 0)
    # The conv had no bias: the new bias's source range is the BatchNorm's beta.
    assert (bias["source_tensor"], bias["source_range"]) == ("blk.bn.bias", _range(arrays["bn"]["bias"]))

    fc_weight, fc_bias = document["layers"][1]["params"]
    assert (fc_weight["status"], fc_weight["bad_channels"], fc_weight["bad_channel_count"]) == ("mismatch", [2], 1)
    # Per output channel (axis 1 of the stored (in, out) weight), the largest error over
    # the channel relative to the whole tensor's scale: channel 2 holds max_rel_err.
    per_channel_err = np.abs(arrays["stored_fc"].astype(np.float64) - arrays["fc_w"].T).max(axis=0)
    errors = fc_weight["channel_errors"]
    assert (errors["channels"], errors["per_entry"]) == (6, 1)
    assert errors["max_rel_err"] == pytest.approx(list(per_channel_err / np.abs(arrays["fc_w"]).max()), rel=1e-9)
    assert int(np.argmax(errors["max_rel_err"])) == 2 and max(errors["max_rel_err"]) == fc_weight["max_rel_err"]
    assert fc_bias["status"] == "ok" and fc_bias["channel_errors"] is None
    assert weight["channel_errors"] is None  # only a parameter that differs has them

    (stray,) = document["layers"][2]["params"]
    assert stray == {
        "name": "weight",
        "target_tensor": "Conv_9.weight",
        "source_tensor": None,
        "source_range": None,
        "target_range": _range(arrays["stray"]),
        "reproduced_range": None,
        "max_abs_err": None,
        "max_rel_err": None,
        "status": "unmatched",
        "bad_channels": [],
        "bad_channel_count": 0,
        "channel_errors": None,
    }


def test_channel_errors_stay_short_for_wide_layers():
    """Up to MAX_CHANNEL_ERRORS channels one entry each; beyond, neighbours share an
    entry holding their largest error, and the list never grows past the limit."""
    assert channel_errors_entry(None) is None
    small = [0.1, 0.5, 0.2]
    assert channel_errors_entry(small) == {"channels": 3, "per_entry": 1, "max_rel_err": small}
    wide = [float(i % 7) for i in range(3 * MAX_CHANNEL_ERRORS + 1)]
    entry = channel_errors_entry(wide)
    per = entry["per_entry"]
    assert per == 4 and entry["channels"] == len(wide) and len(entry["max_rel_err"]) <= MAX_CHANNEL_ERRORS
    assert entry["max_rel_err"] == [max(wide[i : i + per]) for i in range(0, len(wide), per)]


def test_unused_sources_and_findings(case):
    result, document, _ = case
    assert document["unmatched_source"] == ["aux.conv"]
    assert document["findings"] == [
        {"severity": f.severity, "code": f.code, "message": f.message, "layer": f.layer} for f in result.findings
    ]
    assert [f["code"] for f in document["findings"]] == ["mismatch", "unmatched_target", "unused_at_inference"]


def test_the_document_is_standard_json(case):
    _, document, _ = case
    assert json.loads(json.dumps(json_safe(document), allow_nan=False)) == json.loads(json.dumps(document))


def test_a_long_report_is_written_in_pieces_that_join_to_the_document():
    """Entries are written as they are encoded, a thousand lines or so at a time, never
    as one string; the text is the document, one entry per line, NaN written as null."""
    document = {
        "schema": "x",
        "layers": [{"name": f"n{i}", "err": float(i) / 7, "nested": {"a": [i, None]}} for i in range(3000)],
        "findings": [{"code": "nan", "value": float("nan")}],
        "empty": [],
        "plain": [1, 2.5, "three"],
    }
    writes: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            writes.append(text)

    dump_json(document, Stream())
    text = "".join(writes)
    assert len(writes) >= 3 and max(map(len, writes)) < len(text) / 2
    assert json.loads(text) == json_safe(document)
    lines = text.splitlines()
    assert lines[3] == '    {"name": "n0", "err": 0.0, "nested": {"a": [0, null]}},' and len(lines) == 3000 + 10


def test_bad_channels_are_listed_up_to_a_limit_and_counted_in_full():
    r = rng(1)
    w = randn(r, 32, 4, 1, 1)
    src = source(layer("c", CONV, "Conv2d", weight=w))
    result = diff(src, target(layer("n", CONV, "Conv", hints=("c",), weight=w * 1.02)))
    (entry,) = build_document(result)["layers"]
    (weight,) = entry["params"]
    assert weight["bad_channels"] == list(range(MAX_LISTED_CHANNELS)) and weight["bad_channel_count"] == 32
    assert describe_mismatch(entry).endswith("in output channels 0, 1, 2, 3, 4 and 27 more")


def test_an_infinite_error_is_null_in_json():
    # A NaN where a number is expected is infinitely far off; JSON cannot carry inf.
    r = rng(2)
    w = randn(r, 4, 4, 1, 1)
    broken = w.copy()
    broken[1, 2, 0, 0] = np.nan
    src = source(layer("c", CONV, "Conv2d", weight=w))
    result = diff(src, target(layer("n", CONV, "Conv", hints=("c.weight",), weight=broken)))
    assert result.layers[0].params[0].max_abs_err == float("inf")
    document = json.loads(json.dumps(json_safe(build_document(result)), allow_nan=False))
    (weight,) = document["layers"][0]["params"]
    assert (weight["status"], weight["max_abs_err"], weight["max_rel_err"], weight["bad_channels"]) == (
        "mismatch",
        None,
        None,
        [1],
    )


# ----------------------------------------------------------------------------- wording


def _entry(*params, sources=("model.1.conv", "model.1.bn"), transform="fold_batchnorm"):
    return {
        "target": "/model.1/conv/Conv",
        "op": "Conv",
        "sources": list(sources),
        "transform": transform,
        "status": "mismatch",
        "params": list(params),
    }


def _param(name="weight", status="mismatch", abs_err=0.00195, rel_err=0.0086, channels=(17,), count=None):
    return {
        "name": name,
        "status": status,
        "max_abs_err": abs_err,
        "max_rel_err": rel_err,
        "bad_channels": list(channels),
        "bad_channel_count": len(channels) if count is None else count,
    }


def test_describe_mismatch_reads_as_documented():
    assert describe_mismatch(_entry(_param())) == (
        "/model.1/conv/Conv (Conv, from model.1.conv + model.1.bn via fold_batchnorm): "
        "weight differs by up to 0.00195 (0.86% of its scale) in output channel 17"
    )


@pytest.mark.parametrize(
    "channels, count, where",
    [
        ((3, 5), 2, " in output channels 3, 5"),
        ((0, 1, 2, 3, 4), 5, " in output channels 0, 1, 2, 3, 4"),
        ((0, 1, 2, 3, 4, 5, 6), 7, " in output channels 0, 1, 2, 3, 4 and 2 more"),
        ((), 0, ""),
        (tuple(range(20)), 300, " in output channels 0, 1, 2, 3, 4 and 295 more"),
    ],
)
def test_describe_mismatch_names_at_most_five_channels(channels, count, where):
    text = describe_mismatch(_entry(_param(channels=channels, count=count)))
    assert text.endswith(f"weight differs by up to 0.00195 (0.86% of its scale){where}")


def test_describe_mismatch_lists_only_the_parameters_that_differ():
    text = describe_mismatch(_entry(_param(status="ok"), _param("bias", abs_err=0.5, rel_err=0.25, channels=(1,))))
    assert text.endswith("via fold_batchnorm): bias differs by up to 0.5 (25.00% of its scale) in output channel 1")
    both = describe_mismatch(_entry(_param(), _param("bias", abs_err=0.5, rel_err=0.25, channels=(1,))))
    assert both.endswith("output channel 17; bias differs by up to 0.5 (25.00% of its scale) in output channel 1")


def test_describe_mismatch_without_numbers_or_sources():
    text = describe_mismatch(_entry(_param(abs_err=None, rel_err=None, channels=()), sources=()))
    assert (
        text == "/model.1/conv/Conv (Conv, from ? via fold_batchnorm): weight differs by up to an unknown amount "
        "of an unknown scale"
    )
    zero = _param(rel_err=float("inf"))
    zero["reproduced_range"] = [0.0, 0.0]  # a bias the source does not have: re-computed as zeros
    assert "where the re-computed values are all zero" in describe_mismatch(_entry(zero))
    assert "inf" not in describe_mismatch(_entry(zero)) and "%" not in describe_mismatch(_entry(zero)).split(":")[1]
    assert "of an unknown scale" in describe_mismatch(_entry(_param(rel_err=float("nan"))))


def test_layer_entry_is_what_describe_mismatch_reads(case):
    result, document, _ = case
    assert [layer_entry(entry) for entry in result.layers] == document["layers"]


@pytest.mark.parametrize(
    "with_fold, sentence",
    [
        (
            True,
            "12 of 12 parameter elements re-computed. The value ranges differ from the PyTorch model's because "
            "BatchNorm was folded into the layers before it. The export is faithful.",
        ),
        (False, "8 of 8 parameter elements re-computed. The export is faithful."),  # identity changes nothing
    ],
)
def test_the_faithful_sentence_says_why_ranges_differ(with_fold, sentence):
    r = rng(3)
    w, bn = randn(r, 4, 2, 1, 1), bn_stats(r, 4)
    if with_fold:
        s = bn["weight"].astype(np.float64) / np.sqrt(bn["running_var"].astype(np.float64) + 1e-5)
        stored = dict(
            weight=(w * per_channel(s, 4)).astype(np.float32),
            bias=(bn["bias"] - bn["running_mean"] * s).astype(np.float32),
        )
        src = source(layer("c", CONV, "Conv2d", weight=w), layer("bn", BATCHNORM, "BatchNorm2d", {"eps": 1e-5}, **bn))
    else:
        stored = dict(weight=w)
        src = source(layer("c", CONV, "Conv2d", weight=w))
    result = diff(src, target(layer("n", CONV, "Conv", hints=("c",), **stored)))
    assert result.verdict == "faithful"
    assert summary_text(result).endswith(sentence)


def test_the_incomplete_sentence():
    r = rng(4)
    result = diff(source(), target(layer("n", CONV, "Conv", weight=randn(r, 2, 2, 1, 1))))
    assert summary_text(result) == (
        "1 ONNX layer could not be traced to the PyTorch model: n. "
        "0 of 4 parameter elements re-computed. "
        "The diff is incomplete: some ONNX parameters could not be explained."
    )


def test_channel_errors_per_output_channel():
    """Each channel's largest error over the tensor's scale, channels counted the way
    bad channels are (a grouped ConvTranspose's along axis 1 across its groups)."""
    from inspector.compare import bad_channels, channel_errors

    r = rng(3)
    expected = randn(r, 4, 3, 2, 2).astype(np.float64)
    actual = expected.copy()
    actual[2, 1, 0, 0] += 0.5
    scale = np.abs(expected).max()
    errors = channel_errors(actual, expected, 0)
    assert errors == pytest.approx([0.0, 0.0, 0.5 / scale, 0.0], abs=1e-12)

    # groups=2, weight (in=4, out/groups=3, kh, kw): element (3, 1) is output channel 1*3 + 1.
    assert channel_errors(expected.copy(), expected, 1, 2) == [0.0] * 6
    moved = expected.copy()
    moved[3, 1, 1, 0] -= 0.25
    grouped = channel_errors(moved, expected, 1, 2)
    assert len(grouped) == 6 and grouped[4] == pytest.approx(0.25 / scale)
    assert [i for i, value in enumerate(grouped) if value > 0] == bad_channels(moved != expected, 1, 2) == [4]

    # NaN against NaN is no error, NaN against a number is an infinite one; no source: zeros.
    nan_expected = np.array([1.0, np.nan, 2.0])
    assert channel_errors(np.array([1.0, np.nan, np.nan]), nan_expected) == [0.0, 0.0, np.inf]
    assert channel_errors(None, np.array([0.0, 2.0])) == pytest.approx([0.0, 1.0])
    assert channel_errors(np.zeros(3), np.zeros(4)) is None

"""``graphinspect verify`` on the zoo: the verdict matches the truth.

- every family's first honest pair (the pickled module, run with ``--trust-pickle``: the
  zoo venv has the model packages) is "same", exit 0;
- RT-DETR-L with its TopKs returning their rows reversed (what ties may do on another
  runtime: zoo_variants.reverse_topk) is "same (rows reordered)", with and without
  ``--per-layer``; the decoder layers after the TopK are compared as sets of rows, none
  blamed;
- a tampered twin (one channel x1.02) is found per layer at the tampered node, also
  after a TopK; a stronger change (x1.5) makes the outputs differ too;
- an export with NMS built in (Ultralytics ``nms=True``) cannot be paired: "incomplete",
  exit 1, with the reason;
- an image divided by 225 is flagged, dark or bright; divided by 255 it is not.

In-process runs (the ``cli`` fixture), as in test_zoo_fuse.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.zoo.zoo_matrix import BY_NAME, FAMILIES

pytest.importorskip("torch")

PER_LAYER = ("yolov8n", "resnet18", "mobileone_s0", "convnext_tiny", "lstm_bi2")
"""Families whose honest pair is also compared layer by layer (RT-DETR-L's is, with its
rows reordered, in test_rtdetr_rows_in_another_order_are_the_same)."""

TWINS = (
    "rtdetr-l/checkpoint/ultralytics/none/linear_weight",  # after the decoder's TopK
    "yolov8n/checkpoint/ultralytics/none/conv_weight",
    "resnet18/module/legacy/none/conv_weight",
    "repvgg_a0/module/legacy-reparam/none/merged_branch_conv",
)


def _verify(cli, *args: str) -> tuple[int, dict, str]:
    code, out, err = cli("verify", *args, "--format", "json")
    assert code in (0, 1), f"exit {code}: {err}"
    return code, json.loads(out), err


def _pickled(family) -> str:
    return "checkpoint" if family.source == "ultralytics" else "module"


@pytest.fixture
def zoo_path(monkeypatch):
    """The hand-built models were pickled as ``zoo_models.*``: importable while a test runs."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def rtdetr_reversed(zoo, tmp_path_factory) -> Path:
    from tests.zoo.zoo_variants import reverse_topk

    target = tmp_path_factory.mktemp("rtdetr") / "reversed.onnx"
    assert len(reverse_topk(zoo.family("rtdetr-l").onnx("ultralytics/none"), target)) == 2
    return target


@pytest.mark.parametrize("name", [family.name for family in FAMILIES])
def test_faithful_pair_is_same(zoo, cli, zoo_path, name):
    family = BY_NAME[name]
    pair = next(pair for pair in family.honest if pair.pt == _pickled(family))
    manifest = zoo.family(name)
    args = [str(manifest.pt(pair.pt)), str(manifest.onnx(pair.onnx_key)), "--trust-pickle"]
    if name in PER_LAYER:
        args.append("--per-layer")
    code, document, err = _verify(cli, *args)
    assert document["verdict"] == "same" and code == 0, document["outputs"]
    if name in PER_LAYER:
        assert document["first_divergent"] is None
        assert not [layer["target"] for layer in document["layers"] if layer["status"] == "differs"]
        assert any(layer["status"] == "same" for layer in document["layers"])


@pytest.mark.parametrize("per_layer", [False, True], ids=["outputs", "per-layer"])
def test_rtdetr_rows_in_another_order_are_the_same(zoo, cli, rtdetr_reversed, per_layer):
    manifest = zoo.family("rtdetr-l")
    args = [str(manifest.pt("checkpoint")), str(rtdetr_reversed), "--trust-pickle"]
    code, document, err = _verify(cli, *args, *(["--per-layer"] if per_layer else []))
    (output,) = document["outputs"]
    assert code == 0 and document["verdict"] == "same"
    assert output["status"] == "same" and output["sorted_rows"] is True
    if per_layer:
        layers = document["layers"]
        assert document["first_divergent"] is None
        assert not [layer["target"] for layer in layers if layer["status"] == "differs"]
        after = [layer for layer in layers if layer["reordered_by"]]
        assert any(layer["rows_reordered"] and layer["status"] == "same" for layer in after)
        assert all("TopK /model.28/TopK" in " ".join(layer["reordered_by"]) for layer in after)
    assert "same (rows reordered)" in _table(document)


def _table(document: dict) -> str:
    """The table a user sees, rendered from the document (no second run)."""
    import io

    from plugins.commands.verify.report import render_table

    stream = io.StringIO()
    render_table(document, stream, {"color": False, "width": 100})
    return stream.getvalue()


@pytest.mark.parametrize("twin_id", TWINS)
def test_tampered_twin_is_found_at_its_layer(zoo, cli, twin_id):
    family = BY_NAME[twin_id.split("/")[0]]
    twin = next(twin for twin in family.twins if twin.id == twin_id)
    manifest = zoo.family(family.name)
    tampering = manifest["twins"][twin_id]
    code, document, _ = _verify(
        cli, str(manifest.pt(twin.pair.pt)), str(manifest.folder / tampering["path"]), "--trust-pickle", "--per-layer"
    )
    assert document["first_divergent"] == tampering["node"], document.get("divergence_reason")
    layer = next(layer for layer in document["layers"] if layer["target"] == tampering["node"])
    assert layer["status"] == "differs" and layer["diff_status"] == "mismatch"
    if tampering["axis"] == 0 and layer["worst_channel"] is not None:
        assert layer["worst_channel"] == tampering["index"][0]


def test_tampered_after_reordered_rows_is_still_found(zoo, cli, tmp_path):
    """The twin's change after the decoder's TopK, with the TopK reversing its rows too."""
    from tests.zoo.zoo_variants import reverse_topk

    manifest = zoo.family("rtdetr-l")
    twin_id = "rtdetr-l/checkpoint/ultralytics/none/linear_weight"
    tampering = manifest["twins"][twin_id]
    reverse_topk(manifest.folder / tampering["path"], tmp_path / "both.onnx")
    code, document, _ = _verify(
        cli, str(manifest.pt("checkpoint")), str(tmp_path / "both.onnx"), "--trust-pickle", "--per-layer"
    )
    assert document["first_divergent"] == tampering["node"], document.get("divergence_reason")
    names = [layer["target"] for layer in document["layers"]]
    before = document["layers"][: names.index(tampering["node"])]
    assert all(layer["status"] != "differs" for layer in before)


def test_a_changed_channel_makes_the_outputs_differ(zoo, cli, tmp_path):
    from tests.zoo.zoo_variants import scale_channel

    manifest = zoo.family("resnet18")
    node = manifest["twins"]["resnet18/module/legacy/none/conv_weight"]["node"]
    scale_channel(manifest.onnx("legacy/none"), tmp_path / "x15.onnx", node, channel=5, factor=1.5)
    code, document, _ = _verify(
        cli, str(manifest.pt("module")), str(tmp_path / "x15.onnx"), "--trust-pickle", "--per-layer"
    )
    assert code == 1 and document["verdict"] == "differs"
    assert document["first_divergent"] == node
    layer = next(layer for layer in document["layers"] if layer["target"] == node)
    assert layer["worst_channel"] == 5 and layer["growth"] > 100


def test_an_export_with_nms_cannot_be_paired(zoo, cli, tmp_path):
    pytest.importorskip("ultralytics")
    from tests.zoo.zoo_build import IMGSZ
    from tests.zoo.zoo_variants import ultralytics_nms_export

    manifest = zoo.family("yolov8n")
    try:
        exported = ultralytics_nms_export(manifest.pt("checkpoint"), tmp_path, IMGSZ)
    except Exception as exc:  # an Ultralytics that cannot do it offline: say so
        pytest.skip(f"Ultralytics cannot export with nms=True here: {type(exc).__name__}: {exc}")
    code, document, _ = _verify(cli, str(manifest.pt("checkpoint")), str(exported), "--trust-pickle")
    (output,) = document["outputs"]
    assert code == 1 and document["verdict"] == "incomplete"
    assert output["status"] == "incomplete" and output["max_abs_err"] is None
    assert "no PyTorch output of its size" in output["reason"] and output["reason"] in document["verdict_reason"]
    assert "INCOMPLETE: output0: no PyTorch output of its size" in " ".join(_table(document).split())


@pytest.mark.parametrize("brightest", [180, 230], ids=["dark", "bright"])
def test_images_divided_by_225_are_flagged(zoo, cli, tmp_path, brightest):
    manifest = zoo.family("mobilenet_v3_small")
    generator = np.random.default_rng(brightest)
    pixels = generator.integers(0, brightest + 1, (1, 3, 32, 32)).astype(np.float32)
    for divisor, flagged in ((225, True), (255, False)):
        path = tmp_path / f"x{divisor}.npy"
        np.save(path, pixels / np.float32(divisor))
        code, document, _ = _verify(
            cli, str(manifest.pt("module")), str(manifest.onnx("legacy/none")), "--trust-pickle", "--input", str(path)
        )
        codes = [lint["code"] for lint in document["lint"]]
        assert ("scaled_by_225" in codes) is flagged, (divisor, document["lint"])

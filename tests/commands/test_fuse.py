"""``graphinspect fuse``: fused weights re-computed, written under the exporter's names,
and checked against an export. Tiny models with random weights, built here."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from samples import lookalikes
from tests.support import SAMPLES, run_cli

IMAGE = (1, 3, 16, 16)


def _stem() -> lookalikes.DetectionModel:
    """Ultralytics-style Conv blocks (no conv bias, BN eps 1e-3) and a Linear head."""
    torch.manual_seed(0)
    return lookalikes.randomise_batchnorm(lookalikes.rtdetr_stem(8), seed=1).eval()


def _repconv() -> lookalikes.DetectionModel:
    """A Conv block, then a RepConv with the identity branch."""
    torch.manual_seed(2)
    model = lookalikes.DetectionModel([lookalikes.Conv(3, 8, 3), lookalikes.RepConv(8, 8, identity=True)])
    return lookalikes.randomise_batchnorm(model, seed=3).eval()


def _export(model: nn.Module, path: Path) -> Path:
    """The Ultralytics way: fuse in fp32 first, then the legacy exporter."""
    fused = lookalikes.ultralytics_fuse(copy.deepcopy(model).float().eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fused, (torch.rand(*IMAGE),), str(path), dynamo=False, opset_version=17)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fuse")
    stem, rep = _stem(), _repconv()
    torch.save(stem, folder / "stem.pt")
    torch.save(stem.state_dict(), folder / "stem_state_dict.pt")
    torch.save(rep, folder / "rep.pt")
    biased = lookalikes.randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4)), seed=4)
    torch.save(biased.eval(), folder / "biased.pt")
    onnx_path = _export(stem, folder / "stem.onnx")

    import onnx
    from onnx import numpy_helper

    # One output channel of model.1's fused weight scaled: an export that differs.
    proto = onnx.load(str(onnx_path))
    node = next(node for node in proto.graph.node if node.name == "/model/model.1/conv/Conv")
    initializer = next(init for init in proto.graph.initializer if init.name == node.input[1])
    weight = numpy_helper.to_array(initializer).copy()
    weight[3] *= 1.5
    initializer.CopyFrom(numpy_helper.from_array(weight, initializer.name))
    onnx.save(proto, str(folder / "stem_tampered.onnx"))
    return {
        "stem": folder / "stem.pt",
        "state_dict": folder / "stem_state_dict.pt",
        "rep": folder / "rep.pt",
        "biased": folder / "biased.pt",
        "onnx": onnx_path,
        "tampered": folder / "stem_tampered.onnx",
    }


def _json(cli, *args: str) -> tuple[int, dict]:
    code, out, err = cli("fuse", *args, "--format", "json")
    assert code in (0, 1), err
    return code, json.loads(out)


# ----------------------------------------------------------------------------- ranges


def test_table_shows_ranges_before_and_after(cli, files):
    code, out, err = cli("fuse", str(files["stem"]))
    assert code == 0, err
    assert "5 groups: fold_batchnorm 5" in out
    assert "model.0.conv" in out and "model.0.bn" in out
    assert "none" in out  # the Ultralytics conv has no bias before folding
    assert "eps 0.001 from the module" in out


def test_json_document(cli, files):
    _, document = _json(cli, str(files["stem"]))
    assert document["schema"] == "graphinspect/fuse@1"
    assert document["source"]["format"] == "pytorch-module"
    assert document["written"] is None and document["against"] is None
    group = document["groups"][0]
    assert group["transform"] == "fold_batchnorm"
    assert group["sources"] == ["model.0.conv", "model.0.bn"]
    assert group["fused_name"] == "model.0.conv"
    weight, bias = group["params"]
    stem = _stem()
    conv, bn = stem.model[0].conv, stem.model[0].bn
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
    assert weight["name"] == "weight" and weight["source_tensor"] == "model.0.conv.weight"
    assert weight["before_range"] == pytest.approx([conv.weight.min().item(), conv.weight.max().item()])
    assert weight["after_range"] == pytest.approx([fused.weight.min().item(), fused.weight.max().item()], rel=1e-6)
    assert weight["abs_max_ratio"] == pytest.approx(
        fused.weight.abs().max().item() / conv.weight.abs().max().item(), rel=1e-6
    )
    assert bias["before_range"] is None and bias["source_tensor"] is None and bias["abs_max_ratio"] is None
    assert bias["after_range"] == pytest.approx([fused.bias.min().item(), fused.bias.max().item()], rel=1e-6)


def test_conv_with_bias_has_a_before_range(cli, files):
    _, document = _json(cli, str(files["biased"]))
    (group,) = document["groups"]
    assert group["sources"] == ["0", "1"] and group["fused_name"] == "0"
    bias = group["params"][1]
    assert bias["source_tensor"] == "0.bias"
    assert bias["before_range"] is not None and bias["abs_max_ratio"] is not None


def test_layer_glob_narrows_the_groups(cli, files):
    _, document = _json(cli, str(files["stem"]), "--layer", "model.1.*", "--layer", "model.3.bn")
    assert [group["fused_name"] for group in document["groups"]] == ["model.1.conv", "model.3.conv"]
    code, out, err = cli("fuse", str(files["stem"]), "--layer", "nothing*")
    assert code == 0 and "matches none of the 5" in err


# ----------------------------------------------------------------------------- --weights


def test_fused_pt_matches_torch_and_loads_into_the_fused_model(cli, files, tmp_path):
    output = tmp_path / "fused.pt"
    _, document = _json(cli, str(files["stem"]), "--weights", str(output))
    state = torch.load(output, weights_only=True)
    assert document["written"] == {"path": str(output), "format": "pytorch-state-dict", "tensors": len(state)}
    assert not [key for key in state if ".bn." in key]

    stem = _stem()
    for index in range(5):
        block = stem.model[index]
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(block.conv, block.bn)
        torch.testing.assert_close(state[f"model.{index}.conv.weight"], fused.weight.detach(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(state[f"model.{index}.conv.bias"], fused.bias.detach(), rtol=1e-6, atol=1e-6)
        assert state[f"model.{index}.conv.weight"].dtype == torch.float32
    for key in ("model.5.score.weight", "model.5.score.bias", "model.5.box.weight"):
        assert torch.equal(state[key], stem.state_dict()[key])

    # The names are the exporter's: they load, strictly, into an Ultralytics-fused copy.
    fused_model = lookalikes.ultralytics_fuse(copy.deepcopy(stem))
    with torch.no_grad():
        for parameter in fused_model.parameters():
            parameter.zero_()
    fused_model.load_state_dict(state, strict=True)
    images = torch.rand(*IMAGE)
    with torch.no_grad():
        torch.testing.assert_close(fused_model(images), stem(images), rtol=1e-5, atol=1e-5)


def test_fused_safetensors_is_readable_by_safetensors(cli, files, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    code, _, err = cli("fuse", str(files["stem"]), "--weights", str(tmp_path / "fused.pt"))
    assert code == 0, err
    code, _, err = cli("fuse", str(files["stem"]), "--weights", str(tmp_path / "fused.safetensors"))
    assert code == 0, err
    expected = torch.load(tmp_path / "fused.pt", weights_only=True)
    loaded = safetensors_numpy.load_file(str(tmp_path / "fused.safetensors"))
    assert list(loaded) == list(expected)
    for key, values in loaded.items():
        assert values.dtype == expected[key].numpy().dtype
        np.testing.assert_array_equal(values, expected[key].numpy())
    from safetensors import safe_open

    with safe_open(str(tmp_path / "fused.safetensors"), "np") as handle:
        assert handle.metadata() == {"format": "pt", "producer": "graphinspect fuse"}


def test_repconv_is_one_merged_group(cli, files, tmp_path):
    output = tmp_path / "rep.pt"
    _, document = _json(cli, str(files["rep"]), "--weights", str(output))
    merged = [group for group in document["groups"] if group["transform"] == "merge_branches"]
    assert len(merged) == 1
    assert merged[0]["fused_name"] == "model.1.conv"
    assert set(merged[0]["sources"]) == {
        "model.1.conv1.conv",
        "model.1.conv1.bn",
        "model.1.conv2.conv",
        "model.1.conv2.bn",
        "model.1.bn",
    }
    assert [group["fused_name"] for group in document["groups"]] == ["model.0.conv", "model.1.conv"]
    state = torch.load(output, weights_only=True)
    expected = lookalikes.ultralytics_fuse(copy.deepcopy(_repconv())).state_dict()
    assert sorted(state) == sorted(expected)
    for key, values in expected.items():
        torch.testing.assert_close(state[key], values, rtol=1e-6, atol=1e-6)


def test_bare_state_dict_guesses_eps(cli, files):
    _, document = _json(cli, str(files["state_dict"]))
    assert document["source"]["format"] == "pytorch-state-dict"
    assert len(document["groups"]) == 5
    assert all("guessed" in group["note"] for group in document["groups"])


def test_groups_of_the_samples(cli):
    # A ResNet BasicBlock's conv1/bn1 -> conv2/bn2 is sequential, not a re-parameterised block.
    _, document = _json(cli, str(SAMPLES / "resnet_block.pt"))
    assert {group["transform"] for group in document["groups"]} == {"fold_batchnorm"}
    # RepC3 holds cv1/cv2 beside its RepConvs: the RepConvs are the blocks.
    _, document = _json(cli, str(SAMPLES / "rtdetr_like.pt"))
    merged = [group["fused_name"] for group in document["groups"] if group["transform"] == "merge_branches"]
    assert merged == ["model.2.m.0.conv", "model.2.m.1.conv", "model.4.conv"]


# ----------------------------------------------------------------------------- --against


def test_against_a_faithful_export(cli, files):
    code, document = _json(cli, str(files["stem"]), "--against", str(files["onnx"]))
    against = document["against"]
    assert code == 0
    assert against["verdict"] == "faithful"
    assert against["checked"] == 5 and against["mismatched"] == 0 and against["not_found"] == 0
    assert [layer["fused_name"] for layer in against["layers"]] == [f"model.{i}.conv" for i in range(5)]
    assert all(layer["status"] == "ok" and layer["max_rel_err"] < 1e-5 for layer in against["layers"])
    assert against["layers"][1]["target"] == "/model/model.1/conv/Conv"


def test_against_a_tampered_export(cli, files):
    code, out, _ = cli("fuse", str(files["stem"]), "--against", str(files["tampered"]))
    assert code == 1
    assert "1 of 5 fused groups differ from the export: model.1.conv." in out
    _, document = _json(cli, str(files["stem"]), "--against", str(files["tampered"]))
    statuses = {layer["fused_name"]: layer["status"] for layer in document["against"]["layers"]}
    assert statuses.pop("model.1.conv") == "mismatch"
    assert set(statuses.values()) == {"ok"}


def test_against_takes_the_eps_the_export_fits(cli, files):
    # The state_dict does not record the Ultralytics eps (1e-3); the export settles it.
    code, document = _json(cli, str(files["state_dict"]), "--against", str(files["onnx"]), "--layer", "model.0.*")
    assert code == 0
    (group,) = document["groups"]
    assert "eps 0.001" in group["note"] and "the export fits it" in group["note"]
    assert document["against"]["layers"][0]["status"] == "ok"


def test_against_an_export_without_the_group(cli, files):
    code, document = _json(cli, str(files["rep"]), "--against", str(files["onnx"]))
    assert code == 1
    assert {layer["status"] for layer in document["against"]["layers"]} == {"not_found"}
    assert document["against"]["not_found"] == 2


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}"], "no such file"),
        (["{stem}", "--weights", "{out}/fused.bin"], "unknown weights suffix '.bin'"),
        (["{stem}", "--weights", "{stem}"], "refusing to overwrite an input"),
        (["{stem}", "--weights", "{out}/no/such/folder/fused.pt"], "does not exist"),
        (
            ["{stem}", "--weights", "{out}/fused.pt", "-o", "{out}/fused.pt"],
            "-o is the report; write the fused weights with --weights",
        ),
        (["{stem}", "-o", "{stem}"], "refusing to overwrite an input"),
        (["{stem}", "--against", "{stem}", "--weights", "{out}/fused.pt"], "is not an ONNX model"),
        (["{onnx}", "--weights", "{out}/fused.pt"], "is an ONNX model"),
        (["{stem}", "--format", "nope", "--weights", "{out}/fused.pt"], "unknown --format 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, files, tmp_path, args, message):
    before = files["stem"].read_bytes()
    values = {
        "missing": str(tmp_path / "missing.pt"),
        "stem": str(files["stem"]),
        "onnx": str(files["onnx"]),
        "out": str(tmp_path / "out"),
    }
    (tmp_path / "out").mkdir()
    code, out, err = cli("fuse", *(arg.format(**values) for arg in args))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    assert list((tmp_path / "out").iterdir()) == []
    assert files["stem"].read_bytes() == before


def test_report_file_and_a_fresh_process(files, tmp_path):
    report = tmp_path / "report.json"
    result = run_cli(
        "fuse",
        str(SAMPLES / "rtdetr_stem.pt"),
        "--weights",
        str(tmp_path / "fused.pt"),
        "-o",
        str(report),
        "--against",
        str(SAMPLES / "rtdetr_stem.onnx"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    document = json.loads(report.read_text())
    assert document["schema"] == "graphinspect/fuse@1"
    assert document["written"]["tensors"] == len(torch.load(tmp_path / "fused.pt", weights_only=True))
    assert document["against"]["checked"] == 5 and document["against"]["mismatched"] == 0

"""Whole models through `graphinspect diff`: a ResNet-18, an RT-DETR/YOLO-style detector
exported the Ultralytics way (with and without onnxslim), tampered exports, mismatched
architectures; the JSON document checked against its contract and a golden file; the
command line's exit codes, filters, output file and bad inputs.

Look-alike architectures from samples.lookalikes at small widths (random weights,
randomised BatchNorm statistics), exported once per module.
"""

from __future__ import annotations

import collections
import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from samples import lookalikes
from samples.make_samples import export_ultralytics_style, save_as_ultralytics, ultralytics_checkpoint
from tests.support import check_golden, run_cli
from tests.support.exports import (
    EXPORTERS,
    assert_faithful,
    assert_outline,
    describe,
    diff,
    export,
    layer_for,
    outline,
    param,
    parse_json,
    validate_diff_document,
)

FOLD = "fold_batchnorm"
MERGE = "merge_branches"


def diff_json(cli, *args: str) -> tuple[int, dict, str]:
    """``graphinspect diff ARGS --format json`` in-process: exit code, validated document, stderr."""
    code, out, err = cli("diff", *args, "--format", "json")
    assert code in (0, 1), err
    document = parse_json(out)
    validate_diff_document(document)
    return code, document, err


def target_order(path: Path) -> list[str]:
    from tests.support.exports import load

    return [layer.name for layer in load(path).layers]


# =============================================================================== ResNet-18


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resnet")
    torch.manual_seed(10)
    model = lookalikes.randomise_batchnorm(lookalikes.resnet18(16, 10), seed=11).eval()
    torch.save(model, folder / "resnet18.pt")
    files = {"model": model, "pt": folder / "resnet18.pt"}
    for exporter in EXPORTERS:
        files[exporter] = export(model, (torch.rand(1, 3, 64, 64),), folder / f"resnet18_{exporter}.onnx", exporter)
    return files


def _resnet_expected() -> collections.Counter:
    expected = [("Conv", FOLD, ("conv1", "bn1"))]
    for stage in range(1, 5):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            expected += [
                ("Conv", FOLD, (f"{prefix}.conv1", f"{prefix}.bn1")),
                ("Conv", FOLD, (f"{prefix}.conv2", f"{prefix}.bn2")),
            ]
            if stage > 1 and block == 0:
                expected.append(("Conv", FOLD, (f"{prefix}.downsample.0", f"{prefix}.downsample.1")))
    expected.append(("Gemm", "identity", ("fc",)))
    return collections.Counter(expected)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_resnet18_faithful(resnet, exporter, cli):
    result = diff(resnet["pt"], resnet[exporter])
    assert collections.Counter((e.op, e.transform, tuple(e.sources)) for e in result.layers) == _resnet_expected()
    assert len(result.layers) == 21
    assert_faithful(result, untraced=[])
    assert result.findings == []
    assert all(layer.note == "eps 1e-05 from the module" for layer in result.layers[:-1])

    code, document, err = diff_json(cli, str(resnet["pt"]), str(resnet[exporter]))
    assert code == 0 and err == ""
    validate_diff_document(document, target_order(resnet[exporter]))
    assert document["summary"]["verdict"] == "faithful"
    assert document["summary"]["by_transform"] == {FOLD: 20, "identity": 1}
    assert (
        document["summary"]["matched"],
        document["summary"]["mismatched"],
        document["summary"]["unmatched_target"],
        document["summary"]["unmatched_source"],
    ) == (21, 0, 0, 0)
    assert document["target"]["layers"] == 21 and document["source"]["format"] == "pytorch-module"


def test_resnet18_exporters_name_things_differently(resnet):
    """Legacy: nodes named by scope, fused initializers anonymous; dynamo: generic node
    names, the scope in metadata, torch names kept on the fused tensors."""
    legacy = diff(resnet["pt"], resnet["legacy"])
    dynamo = diff(resnet["pt"], resnet["dynamo"])
    first_legacy = layer_for(legacy, "conv1", "bn1")
    first_dynamo = layer_for(dynamo, "conv1", "bn1")
    assert first_legacy.target == "/conv1/Conv"
    assert param(first_legacy, "weight").target_tensor.startswith("onnx::Conv_")
    assert param(first_dynamo, "weight").target_tensor == "conv1.weight"
    assert param(first_dynamo, "bias").target_tensor == "conv1.weight_bias"
    assert "pkg.torch.onnx.name_scopes" in dynamo.target.layer(first_dynamo.target).metadata
    # Folds are found by scope (the legacy node name; dynamo's name_scopes, which name
    # the BatchNorm); the fc also by its initializer's name, "fc.weight".
    for result in (legacy, dynamo):
        assert {(layer.transform, layer.matched_by) for layer in result.layers} == {
            (FOLD, "scope"),
            ("identity", "name"),
        }


# =============================================================================== RT-DETR, the Ultralytics way


def _rtdetr_model() -> lookalikes.DetectionModel:
    torch.manual_seed(12)
    model = lookalikes.randomise_batchnorm(lookalikes.rtdetr_like(16), seed=13).eval()
    with torch.no_grad():  # give the defaults (zero biases, unit LayerNorms) some values
        for module in model.modules():
            if isinstance(module, nn.MultiheadAttention):
                module.in_proj_bias.normal_(0, 0.1)
                module.out_proj.bias.normal_(0, 0.1)
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def rtdetr(tmp_path_factory):
    """An fp16 Ultralytics checkpoint dict whose classes claim to live in `ultralytics`
    (not installed), and its exports: fused in fp32, legacy exporter, then onnxslim."""
    folder = tmp_path_factory.mktemp("rtdetr")
    model = _rtdetr_model()
    save_as_ultralytics(ultralytics_checkpoint(model), folder / "rtdetr.pt")
    exported = copy.deepcopy(model).half().float()  # what Ultralytics exports from an fp16 checkpoint
    export_ultralytics_style(exported, folder / "rtdetr.onnx", slim=False)
    export_ultralytics_style(exported, folder / "rtdetr_slim.onnx", slim=True)
    return {
        "model": model,
        "pt": folder / "rtdetr.pt",
        "legacy": folder / "rtdetr.onnx",
        "slim": folder / "rtdetr_slim.onnx",
        "folder": folder,
    }


RTDETR_CONVS = [
    ("Conv", FOLD, ["model.0.conv", "model.0.bn"]),
    ("Conv", FOLD, ["model.1.conv", "model.1.bn"]),
    ("Conv", FOLD, ["model.2.cv1.conv", "model.2.cv1.bn"]),
    (
        "Conv",
        MERGE,
        ["model.2.m.0.conv1.conv", "model.2.m.0.conv1.bn", "model.2.m.0.conv2.conv", "model.2.m.0.conv2.bn"],
    ),
    (
        "Conv",
        MERGE,
        ["model.2.m.1.conv1.conv", "model.2.m.1.conv1.bn", "model.2.m.1.conv2.conv", "model.2.m.1.conv2.bn"],
    ),
    ("Conv", FOLD, ["model.2.cv2.conv", "model.2.cv2.bn"]),
    ("Conv", FOLD, ["model.3.conv", "model.3.bn"]),
    ("Conv", MERGE, ["model.4.conv1.conv", "model.4.conv1.bn", "model.4.conv2.conv", "model.4.conv2.bn", "model.4.bn"]),
]
RTDETR_HEAD = [
    ("Conv", FOLD, ["model.6.conv", "model.6.bn"]),
    ("Gemm", "cast", ["model.7.score"]),
    ("Gemm", "cast", ["model.7.box"]),
]
RTDETR_OUTLINE = {
    # The legacy exporter: q/k/v and the MLP as MatMul (+ Add) with transposed weights.
    "legacy": RTDETR_CONVS
    + [
        ("MatMul", "split_qkv", ["model.5.ma"]),
        ("MatMul", "split_qkv", ["model.5.ma"]),
        ("MatMul", "split_qkv", ["model.5.ma"]),
        ("Gemm", "cast", ["model.5.ma.out_proj"]),
        ("LayerNormalization", "cast", ["model.5.norm1"]),
        ("MatMul", "transpose", ["model.5.fc1"]),
        ("MatMul", "transpose", ["model.5.fc2"]),
        ("LayerNormalization", "cast", ["model.5.norm2"]),
    ]
    + RTDETR_HEAD,
    # onnxslim: MatMul + Add become Gemm(transB=1) with a new "<node output>_weight"
    # initializer holding W itself, and the nodes are renamed after their outputs.
    "slim": RTDETR_CONVS
    + [
        ("Gemm", "split_qkv", ["model.5.ma"]),
        ("Gemm", "split_qkv", ["model.5.ma"]),
        ("Gemm", "split_qkv", ["model.5.ma"]),
        ("Gemm", "cast", ["model.5.ma.out_proj"]),
        ("LayerNormalization", "cast", ["model.5.norm1"]),
        ("Gemm", "cast", ["model.5.fc1"]),
        ("Gemm", "cast", ["model.5.fc2"]),
        ("LayerNormalization", "cast", ["model.5.norm2"]),
    ]
    + RTDETR_HEAD,
}


@pytest.mark.parametrize("variant", ["legacy", "slim"])
def test_rtdetr_ultralytics_way_faithful(rtdetr, variant, cli):
    assert importlib.util.find_spec("ultralytics") is None  # the checkpoint's classes are not importable
    result = diff(rtdetr["pt"], rtdetr[variant])
    assert result.source.format == "pytorch-module"
    assert result.source.modules["model.4"] == "ultralytics.nn.modules.conv.RepConv"
    assert result.source.layer("model.0.conv").params["weight"].dtype == "float16"
    if variant == "legacy":
        assert_outline(result, RTDETR_OUTLINE[variant])
    else:  # onnxslim re-sorts the graph (model.2.cv2 before the RepConvs; v, q, k)
        assert sorted(outline(result)) == sorted(RTDETR_OUTLINE[variant]), describe(result)
    # The sine-cosine position table is computed at export: untraced constants of AIFI.
    assert_faithful(result, untraced=None)
    computed = [c.layer for c in result.constants if c.reason.startswith("computed at export")]
    assert computed and all(name.startswith("/model/model.5/") for name in computed), describe(result)
    assert sorted(layer.variant for layer in result.layers if layer.transform == "split_qkv") == ["k", "q", "v"]
    for layer in result.layers:
        if layer.transform == FOLD:
            assert layer.note == "eps 0.001 from the module"  # Ultralytics' BatchNorm eps
        # Every layer is found by its name or scope, including a RepConv's fused "conv"
        # child that the checkpoint does not have.
        assert layer.matched_by in ("scope", "name"), describe(result)
    if variant == "slim":
        fc1 = layer_for(result, "model.5.fc1")
        assert param(fc1, "weight").target_tensor.endswith("_weight")
        assert result.target.layer(fc1.target).attrs.get("transB") == 1

    code, document, err = diff_json(cli, str(rtdetr["pt"]), str(rtdetr[variant]))
    assert code == 0, document["summary"]
    validate_diff_document(document, target_order(rtdetr[variant]))
    assert document["summary"]["verdict"] == "faithful"
    assert document["summary"]["by_transform"] == (
        {"cast": 5, FOLD: 6, MERGE: 3, "split_qkv": 3, "transpose": 2}
        if variant == "legacy"
        else {"cast": 7, FOLD: 6, MERGE: 3, "split_qkv": 3}
    )


# =============================================================================== tampered exports


def _tamper(source: Path, target: Path, node_name: str, input_index: int, change) -> str:
    """Copy ``source`` with one initializer of one node changed in place; returns its name."""
    model = onnx.load(str(source))
    node = next(node for node in model.graph.node if node.name == node_name)
    name = node.input[input_index]
    tensor = next(tensor for tensor in model.graph.initializer if tensor.name == name)
    values = numpy_helper.to_array(tensor).copy()
    change(values)
    tensor.CopyFrom(numpy_helper.from_array(values, name))
    onnx.save(model, str(target))
    return name


@pytest.fixture(scope="module")
def tampered(rtdetr):
    folder = rtdetr["folder"]

    def scale_channel(values):
        values[5] *= 1.02

    def shift_channel(values):
        values[7] += 0.05

    weight = folder / "weight_tampered.onnx"
    bias = folder / "bias_tampered.onnx"
    _tamper(rtdetr["legacy"], weight, "/model/model.3/conv/Conv", 1, scale_channel)
    _tamper(rtdetr["legacy"], bias, "/model/model.6/conv/Conv", 2, shift_channel)
    return {
        "weight": (weight, "/model/model.3/conv/Conv", ["model.3.conv", "model.3.bn"], 5),
        "bias": (bias, "/model/model.6/conv/Conv", ["model.6.conv", "model.6.bn"], 7),
    }


@pytest.mark.parametrize("which", ["weight", "bias"])
def test_tampered_channel_is_flagged_there_only(rtdetr, tampered, which, cli):
    path, node, sources, channel = tampered[which]
    result = diff(rtdetr["pt"], path)
    assert result.verdict == "differs"
    mismatched = [layer for layer in result.layers if layer.status != "ok"]
    assert [layer.target for layer in mismatched] == [node], describe(result)
    (layer,) = mismatched
    assert (layer.status, layer.transform, layer.sources) == ("mismatch", FOLD, sources)
    other = "bias" if which == "weight" else "weight"
    assert param(layer, which).status == "mismatch" and param(layer, other).status == "ok"
    assert param(layer, which).bad_channels == [channel] and param(layer, which).bad_channel_count == 1
    # Everything else is still explained.
    assert len(result.layers) == len(RTDETR_OUTLINE["legacy"])
    errors = [f for f in result.findings if f.severity == "error"]
    assert [(f.code, f.layer) for f in errors] == [("mismatch", node)]
    assert errors[0].message.startswith(node) and f"{which} differs by up to" in errors[0].message
    assert f"output channel {channel}" in errors[0].message

    code, document, _ = diff_json(cli, str(rtdetr["pt"]), str(path))
    assert code == 1
    validate_diff_document(document, target_order(path))
    assert document["summary"]["verdict"] == "differs" and document["summary"]["mismatched"] == 1
    (entry,) = [entry for entry in document["layers"] if entry["status"] != "ok"]
    (bad,) = [p for p in entry["params"] if p["status"] == "mismatch"]
    assert entry["target"] == node and bad["name"] == which and bad["bad_channels"] == [channel]
    assert f"output channel {channel}" in document["summary"]["text"]


# =============================================================================== different architectures


@pytest.mark.parametrize("pair", [("resnet", "rtdetr"), ("rtdetr", "resnet")])
def test_different_architectures(resnet, rtdetr, pair, cli):
    """A ResNet checkpoint against a detector's export (and back): no crash, not faithful,
    every ONNX layer listed, findings say why."""
    files = {"resnet": (resnet["pt"], resnet["legacy"]), "rtdetr": (rtdetr["pt"], rtdetr["slim"])}
    source, target = files[pair[0]][0], files[pair[1]][1]
    code, document, err = diff_json(cli, str(source), str(target))
    assert code == 1 and err == ""
    validate_diff_document(document, target_order(target))
    summary = document["summary"]
    assert summary["verdict"] in ("incomplete", "differs")
    assert summary["unmatched_target"] + summary["mismatched"] >= len(document["layers"]) - summary["matched"] > 0
    assert summary["unmatched_source"] > 0
    codes = {finding["code"] for finding in document["findings"]}
    assert "unmatched_target" in codes or "mismatch" in codes
    assert "unmatched_source" in codes
    for entry in document["layers"]:
        if entry["status"] == "unmatched":
            assert entry["transform"] is None and entry["sources"] == []


# =============================================================================== the JSON document, golden


def _tiny_source() -> nn.Module:
    """Every value from arange/linspace: a Conv + BN (eps 1e-3), a Linear, a LayerNorm, a
    head Linear, and an auxiliary head the export does not use."""
    root = nn.Module()
    root.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    root.bn = nn.BatchNorm2d(3, eps=1e-3)
    root.fc = nn.Linear(3, 4)
    root.ln = nn.LayerNorm(4)
    root.head = nn.Linear(4, 2)
    root.aux_head = nn.Linear(4, 5)
    values = {
        "conv.weight": np.linspace(-1, 1, 54).reshape(3, 2, 3, 3),
        "bn.weight": [1.5, 0.5, 1.0],
        "bn.bias": [0.1, 0.2, -0.3],
        "bn.running_mean": [0.1, -0.2, 0.3],
        "bn.running_var": [0.5, 1.0, 2.0],
        "fc.weight": np.arange(12).reshape(4, 3) / 10 - 0.5,
        "fc.bias": np.linspace(-0.2, 0.2, 4),
        "ln.weight": np.linspace(0.5, 1.5, 4),
        "ln.bias": np.linspace(-0.1, 0.1, 4),
        "head.weight": np.arange(8).reshape(2, 4) / 8 - 0.4,
        "head.bias": [0.05, -0.05],
        "aux_head.weight": np.arange(20).reshape(5, 4) / 20,
        "aux_head.bias": np.zeros(5),
    }
    state = {key: torch.tensor(np.asarray(value), dtype=torch.float32) for key, value in values.items()}
    state["bn.num_batches_tracked"] = torch.tensor(0)
    root.load_state_dict(state)
    return root.eval()


def _tiny_target(source: nn.Module, path: Path) -> None:
    """The export, built by hand so no exporter version can change it: the BN folded into
    the conv (legacy naming, anonymous initializers), the fc as Gemm(transB=1), the
    LayerNorm kept, the head as MatMul + Add with output channel 1 scaled by 1.02, and a
    Mul by a constant that is no PyTorch parameter."""
    state = {key: value.double().numpy() for key, value in source.state_dict().items()}
    scale = state["bn.weight"] / np.sqrt(state["bn.running_var"] + 1e-3)
    conv_weight = state["conv.weight"] * scale.reshape(-1, 1, 1, 1)
    conv_bias = (0 - state["bn.running_mean"]) * scale + state["bn.bias"]
    head = state["head.weight"].T.copy()
    head[:, 1] *= 1.02
    f32 = lambda array: np.asarray(array, dtype=np.float32)  # noqa: E731
    initializers = [
        numpy_helper.from_array(f32(conv_weight), "onnx::Conv_21"),
        numpy_helper.from_array(f32(conv_bias), "onnx::Conv_22"),
        numpy_helper.from_array(f32(state["fc.weight"]), "fc.weight"),
        numpy_helper.from_array(f32(state["fc.bias"]), "fc.bias"),
        numpy_helper.from_array(f32(state["ln.weight"]), "ln.weight"),
        numpy_helper.from_array(f32(state["ln.bias"]), "ln.bias"),
        numpy_helper.from_array(f32(head), "onnx::MatMul_23"),
        numpy_helper.from_array(f32(state["head.bias"]), "head.bias"),
        numpy_helper.from_array(f32([2.0, 0.5]), "onnx::Mul_24"),
    ]
    nodes = [
        helper.make_node(
            "Conv",
            ["images", "onnx::Conv_21", "onnx::Conv_22"],
            ["/conv/Conv_output_0"],
            name="/conv/Conv",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["/conv/Conv_output_0"], ["/act/Relu_output_0"], name="/act/Relu"),
        helper.make_node(
            "GlobalAveragePool",
            ["/act/Relu_output_0"],
            ["/pool/GlobalAveragePool_output_0"],
            name="/pool/GlobalAveragePool",
        ),
        helper.make_node("Flatten", ["/pool/GlobalAveragePool_output_0"], ["/Flatten_output_0"], name="/Flatten"),
        helper.make_node(
            "Gemm", ["/Flatten_output_0", "fc.weight", "fc.bias"], ["/fc/Gemm_output_0"], name="/fc/Gemm", transB=1
        ),
        helper.make_node(
            "LayerNormalization",
            ["/fc/Gemm_output_0", "ln.weight", "ln.bias"],
            ["/ln/LayerNormalization_output_0"],
            name="/ln/LayerNormalization",
            axis=-1,
            epsilon=1e-5,
        ),
        helper.make_node(
            "MatMul",
            ["/ln/LayerNormalization_output_0", "onnx::MatMul_23"],
            ["/head/MatMul_output_0"],
            name="/head/MatMul",
        ),
        helper.make_node("Add", ["head.bias", "/head/MatMul_output_0"], ["/head/Add_output_0"], name="/head/Add"),
        helper.make_node("Mul", ["/head/Add_output_0", "onnx::Mul_24"], ["output0"], name="/Mul"),
    ]
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 2])],
        initializers,
    )
    model = helper.make_model(
        graph, producer_name="pytorch", producer_version="2.13.0", opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    source = _tiny_source()
    torch.save(source, folder / "tiny.pt")
    _tiny_target(source, folder / "tiny.onnx")
    return folder


def _normalised(document: dict) -> str:
    document = copy.deepcopy(document)
    document["tool"]["version"] = "<version>"
    return json.dumps(document, indent=2) + "\n"


def test_json_golden(tiny, cli, monkeypatch):
    """The whole document of a deterministic pair, from a fixed relative path, against
    tests/golden/diff_tiny.json (GRAPHINSPECT_UPDATE_GOLDEN=1 rewrites it)."""
    monkeypatch.chdir(tiny)
    code, out, err = cli("diff", "tiny.pt", "tiny.onnx", "--format", "json")
    assert code == 1, err
    document = parse_json(out)
    validate_diff_document(document, target_order(tiny / "tiny.onnx"))
    check_golden("diff_tiny.json", _normalised(document))


def test_json_tiny_facts(tiny):
    """What the golden file must say, independently of its text."""
    result = diff(tiny / "tiny.pt", tiny / "tiny.onnx")
    assert_outline(
        result,
        [
            ("Conv", FOLD, ["conv", "bn"]),
            ("Gemm", "identity", ["fc"]),
            ("LayerNormalization", "identity", ["ln"]),
            ("MatMul", "transpose", ["head"]),
        ],
    )
    assert [layer.status for layer in result.layers] == ["ok", "ok", "ok", "mismatch"]
    head = result.layers[-1]
    assert param(head, "weight").bad_channels == [1] and param(head, "bias").status == "ok"
    assert param(head, "weight").max_rel_err == pytest.approx(0.02, rel=1e-5)  # 2% of column 1, the largest
    assert result.unmatched_source == ["aux_head"]
    assert [c.layer for c in result.constants if c.reason.startswith("computed at export")] == ["/Mul"]
    assert [(f.severity, f.code) for f in result.findings] == [
        ("error", "mismatch"),
        ("info", "unused_at_inference"),
        ("info", "export_constant"),
    ]


# =============================================================================== the command line


def test_exit_codes_through_a_process(resnet, tampered, rtdetr):
    """As a user runs it: 0 faithful, 1 differs, 2 trouble (here a usage error)."""
    assert run_cli("diff", str(resnet["pt"]), str(resnet["legacy"])).returncode == 0
    differs = run_cli("diff", str(rtdetr["pt"]), str(tampered["weight"][0]))
    assert differs.returncode == 1 and "/model/model.3/conv/Conv" in differs.stdout
    bad = run_cli("diff", str(resnet["pt"]))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_only_problems_and_layer_narrow_the_list_not_the_summary(rtdetr, tampered, cli):
    path = str(tampered["weight"][0])
    _, full, _ = diff_json(cli, str(rtdetr["pt"]), path)
    code, problems, _ = diff_json(cli, str(rtdetr["pt"]), path, "--only-problems")
    assert code == 1
    assert [entry["target"] for entry in problems["layers"]] == ["/model/model.3/conv/Conv"]
    assert problems["summary"] == full["summary"] and problems["findings"] == full["findings"]

    code, selected, _ = diff_json(cli, str(rtdetr["pt"]), path, "--layer", "*model.5*")
    assert code == 1
    assert selected["summary"] == full["summary"]
    assert len(selected["layers"]) == 8 and all("model.5" in entry["target"] for entry in selected["layers"])
    # A glob matches the ONNX name or a PyTorch source; several globs add up.
    _, by_source, _ = diff_json(cli, str(rtdetr["pt"]), path, "--layer", "model.4.bn", "--layer", "model.7.*")
    assert [entry["sources"][-1] for entry in by_source["layers"]] == ["model.4.bn", "model.7.score", "model.7.box"]
    _, nothing, _ = diff_json(cli, str(rtdetr["pt"]), path, "--only-problems", "--layer", "*model.6*")
    assert nothing["layers"] == [] and nothing["summary"] == full["summary"]


def test_arguments_in_the_other_order(resnet, cli):
    """ONNX first, PyTorch second: compared the right way round, with a note."""
    code, out, err = cli("diff", str(resnet["legacy"]), str(resnet["pt"]), "--format", "json")
    assert code == 0
    document = parse_json(out)
    validate_diff_document(document)
    assert document["source"]["path"] == str(resnet["pt"]) and document["target"]["path"] == str(resnet["legacy"])
    assert err.splitlines() == [f"graphinspect: note: {resnet['legacy']} is the ONNX file; comparing it as the target"]


def test_output_file(resnet, tmp_path, cli):
    report = tmp_path / "report.json"
    code, out, err = cli("diff", str(resnet["pt"]), str(resnet["dynamo"]), "-o", str(report))
    assert code == 0 and out == ""
    # The verdict line still reaches the terminal, on stderr (stdout stays empty for scripts).
    assert err.startswith("Verdict: FAITHFUL (") and err.endswith(f"; report written to {report}\n")
    assert len(err.splitlines()) == 1
    document = parse_json(report.read_text())  # json chosen by the suffix
    validate_diff_document(document)
    assert document["summary"]["verdict"] == "faithful"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


@pytest.mark.parametrize("problem", ["missing", "empty", "directory", "truncated"])
@pytest.mark.parametrize("side", ["source", "target"])
def test_bad_input_is_one_line_and_writes_nothing(resnet, tmp_path, cli, problem, side):
    bad = tmp_path / f"bad_{problem}.{'pt' if side == 'source' else 'onnx'}"
    if problem == "empty":
        bad.write_bytes(b"")
    elif problem == "directory":
        bad.mkdir()
    elif problem == "truncated":
        original = resnet["pt"] if side == "source" else resnet["legacy"]
        data = original.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    source, target = (bad, resnet["legacy"]) if side == "source" else (resnet["pt"], bad)
    report = tmp_path / "report.json"
    report.write_text("previous report\n")
    code, out, err = cli("diff", str(source), str(target), "--format", "json", "-o", str(report))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"graphinspect: error: {bad}"), err
    assert "internal error" not in err
    if problem == "truncated" and side == "target":
        assert "truncated" in err  # not "unknown model format"
    assert report.read_text() == "previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_tolerance_overrides(rtdetr, tmp_path, cli):
    """--rtol/--atol replace the per-dtype defaults (and the document says so)."""
    # An fp32 model against its export rounded to fp16: faithful only thanks to the
    # fp16 tolerance; a tight --rtol turns it into "differs".
    torch.manual_seed(14)
    model = lookalikes.randomise_batchnorm(lookalikes.rtdetr_stem(8), seed=15).eval()
    torch.save(model, tmp_path / "stem.pt")
    fp32 = export(model, (torch.rand(1, 3, 32, 32),), tmp_path / "stem.onnx", "legacy")
    proto = onnx.load(str(fp32))
    for tensor in proto.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name))
    onnx.save(proto, str(tmp_path / "stem_fp16.onnx"))
    args = (str(tmp_path / "stem.pt"), str(tmp_path / "stem_fp16.onnx"))
    code, document, _ = diff_json(cli, *args)
    assert code == 0 and document["tolerance"] == {"rtol": None, "atol": None}
    code, tight, _ = diff_json(cli, *args, "--rtol", "1e-12")
    assert code == 1 and tight["summary"]["verdict"] == "differs"
    assert tight["tolerance"] == {"rtol": 1e-12, "atol": None}
    assert tight["summary"]["mismatched"] == len(tight["layers"])

    # The fp16 Ultralytics checkpoint: its folds agree to ~1e-7 (fp32 rounding), which
    # the default fp16 tolerance and a tight relative one with no absolute slack tell apart.
    code, _, _ = diff_json(cli, str(rtdetr["pt"]), str(rtdetr["slim"]))
    assert code == 0
    code, strict, _ = diff_json(cli, str(rtdetr["pt"]), str(rtdetr["slim"]), "--rtol", "1e-12", "--atol", "0")
    assert code == 1 and strict["summary"]["verdict"] == "differs"
    assert {entry["transform"] for entry in strict["layers"] if entry["status"] == "mismatch"} == {FOLD, MERGE}
    assert all(entry["status"] == "ok" for entry in strict["layers"] if entry["transform"] in ("cast", "split_qkv"))
    code, loose, _ = diff_json(cli, *args, "--rtol", "0.5", "--atol", "1")
    assert code == 0 and loose["tolerance"] == {"rtol": 0.5, "atol": 1.0}

    for bad in ("-1", "nan", "x"):
        code, out, err = cli("diff", *args, "--rtol", bad)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


def test_a_transform_that_raises_is_reported_and_skipped(monkeypatch):
    """A broken (third-party) transform costs its own candidates, not the whole diff."""
    from inspector.diff import diff_models
    from inspector.manager import get_plugin_manager
    from inspector.transforms import Transform
    from tests.support import SAMPLES

    class Broken(Transform):
        name = "broken"
        order = 0

        def propose(self, target, anchor, source):
            raise RuntimeError("plugin bug")

    plugins = get_plugin_manager(autoload=False)
    plugins.pm.register(
        type("BrokenPlugin", (), {"graphinspect_transforms": _hookimpl(lambda: [Broken()])})(), "broken"
    )
    source = plugins.load_model(SAMPLES / "rtdetr_stem.pt")
    target = plugins.load_model(SAMPLES / "rtdetr_stem.onnx")
    result = diff_models(plugins, source, target)
    assert result.verdict == "faithful"
    (finding,) = [f for f in result.findings if f.code == "transform_error"]
    assert "broken" in finding.message and "RuntimeError: plugin bug" in finding.message


def _hookimpl(function):
    from inspector.hookspecs import hookimpl

    return staticmethod(hookimpl(function))

"""Exports optimised offline by ONNX Runtime, as users save them: Conv+Mul/Add fused into
the conv (basic), FusedConv, FusedGemm and FusedMatMul with a fused scalar multiply
(extended), and the CPU-specific NCHWc layout (all), which is reported as not comparable,
never as faithful or as a difference."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from tests.support.exports import describe, diff, export


class Fusable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.shift = nn.Parameter(torch.rand(8, 1, 1))
        self.fc = nn.Linear(8, 16)
        self.proj = nn.Linear(16, 16, bias=False)
        self.q = nn.Linear(16, 16)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        y = self.conv2(y) * self.scale + self.shift  # ConvMulFusion, ConvAddFusion
        y = torch.relu(self.fc(y.mean((2, 3))))  # FusedGemm
        z = torch.matmul(y, self.proj.weight.t()) * 0.25  # FusedMatMul, alpha 0.25
        return self.q(z.unsqueeze(1)).squeeze(1)


LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ort")
    torch.manual_seed(5)
    model = Fusable().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    torch.save(model, folder / "module.pt")
    torch.save(model.state_dict(), folder / "state_dict.pt")
    found = {
        "module": folder / "module.pt",
        "state_dict": folder / "state_dict.pt",
        "legacy": export(model, (torch.rand(1, 3, 8, 8),), folder / "legacy.onnx", "legacy"),
    }
    for name, level in LEVELS.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(folder / f"{name}.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(found["legacy"]), options, providers=["CPUExecutionProvider"])
        found[name] = folder / f"{name}.onnx"
    return found


@pytest.mark.parametrize("kind", ["module", "state_dict"])
@pytest.mark.parametrize("level", ["basic", "extended"])
def test_optimised_exports_are_faithful(files, kind, level):
    result = diff(files[kind], files[level])
    assert result.verdict == "faithful" and result.coverage.unexplained == 0, describe(result)
    ops = {entry.op: entry.transform for entry in result.layers}
    if level == "extended":
        assert ops["com.microsoft.FusedConv"] == "fold_batchnorm"
        assert ops["com.microsoft.FusedGemm"] == "identity"
        assert ops["com.microsoft.FusedMatMul"] == "transpose"
    fused = next(entry for entry in result.layers if entry.sources[:1] == ["conv2"])
    assert fused.transform == "fold_scale" and fused.variant == ".scale + shift", describe(result)


@pytest.mark.parametrize(
    "level, node_op, source",
    [
        ("basic", "Conv", "conv2"),
        ("extended", "com.microsoft.FusedGemm", "fc"),
        ("extended", "com.microsoft.FusedMatMul", "proj"),
    ],
)
def test_a_changed_channel_of_a_fused_layer_is_a_mismatch_there(files, tmp_path, level, node_op, source):
    proto = onnx.load(str(files[level]))
    result = diff(files["module"], files[level])
    node_name = next(e.target for e in result.layers if e.op == node_op and e.sources[0] == source)
    node = next(n for n in proto.graph.node if n.name == node_name)
    initializer = next(t for t in proto.graph.initializer if t.name == node.input[1])
    values = numpy_helper.to_array(initializer).copy()
    values.reshape(-1)[3] *= 1.02
    initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
    onnx.save(proto, str(tmp_path / "changed.onnx"))
    changed = diff(files["module"], tmp_path / "changed.onnx")
    assert changed.verdict == "differs", describe(changed)
    assert [e.target for e in changed.layers if e.status != "ok"] == [node_name], describe(changed)


def test_the_nchwc_layout_is_incomplete_with_its_reason(files):
    result = diff(files["module"], files["all"])
    assert result.verdict == "incomplete", describe(result)
    unsupported = [e for e in result.layers if e.op == "com.microsoft.nchwc.Conv"]
    assert unsupported and all(e.status == "unmatched" for e in unsupported)
    messages = [f.message for f in result.findings if f.code == "unmatched_target"]
    assert messages and all("NCHWc" in message and "ORT_ENABLE_EXTENDED" in message for message in messages)

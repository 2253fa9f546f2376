"""LSTM and GRU exported by both torch exporters: faithful from the state_dict and from the
pickled module, and a weight changed in one gate row of the ONNX file is caught there."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from tests.support.exports import EXPORTERS, describe, diff, export


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(32, 12, num_layers=2)

    def forward(self, x):
        y, _ = self.lstm(x)
        z, _ = self.gru(y)
        return z


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recurrent")
    torch.manual_seed(3)
    model = Recurrent().eval()
    torch.save(model.state_dict(), folder / "state_dict.pt")
    torch.save(model, folder / "module.pt")
    found = {"state_dict": folder / "state_dict.pt", "module": folder / "module.pt"}
    for exporter in EXPORTERS:
        found[exporter] = export(model, (torch.rand(1, 5, 8),), folder / f"{exporter}.onnx", exporter)
    return found


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("kind", ["state_dict", "module"])
def test_faithful_and_every_recurrent_number_explained(files, exporter, kind):
    result = diff(files[kind], files[exporter])
    assert result.verdict == "faithful", describe(result)
    assert [(e.op, e.transform, e.sources, e.variant) for e in result.layers] == [
        ("LSTM", "recurrent", ["lstm"], "layer 0"),
        ("LSTM", "recurrent", ["lstm"], "layer 1"),
        ("GRU", "recurrent", ["gru"], "layer 0"),
        ("GRU", "recurrent", ["gru"], "layer 1"),
    ], describe(result)
    assert result.coverage.unexplained == 0
    recurrent = result.coverage.by_op["LSTM"]["explained"].elements + result.coverage.by_op["GRU"]["explained"].elements
    weights = sum(p.numel() for p in Recurrent().parameters())
    assert recurrent >= weights  # every weight and bias, plus the zero initial states


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_a_changed_gate_row_is_a_mismatch_there(files, exporter, tmp_path):
    proto = onnx.load(str(files[exporter]))
    node = [n for n in proto.graph.node if n.op_type == "LSTM"][1]
    initializer = next(t for t in proto.graph.initializer if t.name == node.input[2])  # R
    values = numpy_helper.to_array(initializer).copy()
    values[1, 20] *= 1.5
    initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
    onnx.save(proto, str(tmp_path / "changed.onnx"))
    result = diff(files["state_dict"], tmp_path / "changed.onnx")
    assert result.verdict == "differs", describe(result)
    (bad,) = [e for e in result.layers if e.status != "ok"]
    assert (bad.target, bad.variant, bad.status) == (node.name, "layer 1", "mismatch")
    (param,) = [p for p in bad.params if p.status == "mismatch"]
    assert param.name == "weight_hh" and param.bad_channels == [20]

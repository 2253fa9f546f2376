"""TorchScript and torch.export archives as the PyTorch side of a diff: their class names
differ from a pickled module's (a LayerNorm subclass over channels, as torchvision's
LayerNorm2d, is known by its own name there), and the diff settles the kind by the export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support.exports import EXPORTERS, describe, diff, export


class LayerNorm2d(nn.LayerNorm):
    """torchvision's: a LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), LayerNorm2d(8), nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archives")
    torch.manual_seed(9)
    model = Stem().eval()
    with torch.no_grad():
        model.features[1].weight.uniform_(0.5, 1.5)
        model.features[1].bias.normal_(0, 0.3)
    example = (torch.rand(1, 3, 16, 16),)
    torch.jit.save(torch.jit.trace(model, example), folder / "traced.pt")
    torch.export.save(torch.export.export(model, example), folder / "program.pt2")
    found = {"traced": folder / "traced.pt", "program": folder / "program.pt2"}
    for exporter in EXPORTERS:
        found[exporter] = export(model, example, folder / f"{exporter}.onnx", exporter)
    return found


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("archive", ["traced", "program"])
def test_an_archive_with_a_layer_norm_subclass_is_faithful(files, archive, exporter):
    result = diff(files[archive], files[exporter])
    assert result.verdict == "faithful" and result.coverage.unexplained == 0, describe(result)
    norms = [entry for entry in result.layers if entry.op == "LayerNormalization"]
    assert [(entry.transform, entry.sources) for entry in norms] == [("identity", ["features.1"])], describe(result)

"""The zoo's architectures, built from their configs with random weights (never downloaded).

Each ``build_<family>()`` returns a :class:`TorchFamily`: the eval-mode module that is
saved as the PyTorch side, an example input, and the modules each export variant is
taken from (``"model"``: the saved module itself; ``"reparam"``: a re-parameterised copy,
as a user deploying a RepVGG/MobileOne/FastViT model exports it). Ultralytics models are
built in :mod:`zoo_build` through Ultralytics' own API and randomised with
:func:`randomise` here.

Random init alone hides what an exporter does: a fresh BatchNorm has mean 0, var 1,
weight 1, bias 0, so folding it changes nothing, and zero class tokens or layer scales of
1e-6 make a tampered copy indistinguishable. :func:`randomise` gives every such tensor
real values (fixed seed), so every transform the exporter applies is visible.

The hand-built modules are defined here on purpose: a pickled module of them refers to
``zoo_models.*``, a package graphinspect does not import, as a user's own code would.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

SEED = 20240617


@dataclass
class TorchFamily:
    """What a builder gives: the saved module, the example input, the export variants."""

    model: nn.Module
    inputs: tuple[Any, ...]
    variants: dict[str, nn.Module] = field(default_factory=dict)

    def variant(self, name: str) -> nn.Module:
        return self.model if name == "model" else self.variants[name]


# ----------------------------------------------------------------------------- randomise

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


@torch.no_grad()
def randomise(model: nn.Module, seed: int = SEED) -> nn.Module:
    """Give every normalisation and every constant-initialised tensor real values.

    - BatchNorm: running_mean ~ N(0, 0.5), running_var ~ U(0.5, 2), weight ~ U(0.5, 1.5),
      bias ~ N(0, 0.2);
    - LayerNorm/GroupNorm/InstanceNorm affines: weight ~ U(0.5, 1.5), bias ~ N(0, 0.2);
    - every other floating-point parameter whose elements are all equal (zero biases,
      class tokens, position tables, attention biases, layer scales of 1e-6, ...):
      U(0.5, 1.5) times its value (at least 0.1 in magnitude, as trained layer scales
      are) when that is non-zero, N(0, 0.1) when it is zero;
    - every parameter that is all but zero (largest magnitude below 1e-4, such as
      timm's class tokens drawn with std 1e-6): N(0, 0.1). At that scale a 2% change
      is below any absolute tolerance, so a tampered copy could not be told apart.

    Returns ``model`` in eval mode. Deterministic for a given ``seed`` and architecture.
    """
    generator = torch.Generator().manual_seed(seed)

    def uniform(tensor, lo, hi):
        tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=torch.float64).mul(hi - lo).add(lo))

    def normal(tensor, std):
        tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=torch.float64).mul(std))

    done: set[int] = set()
    for module in model.modules():
        if isinstance(module, _NORMS):
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                normal(module.running_mean, 0.5)
                uniform(module.running_var, 0.5, 2.0)
            if getattr(module, "weight", None) is not None:
                uniform(module.weight, 0.5, 1.5)
                done.add(id(module.weight))
            if getattr(module, "bias", None) is not None:
                normal(module.bias, 0.2)
                done.add(id(module.bias))
    for _, param in model.named_parameters():
        if id(param) in done or not param.is_floating_point() or param.numel() < 2:
            continue
        flat = param.detach().reshape(-1)
        if float(flat.abs().max()) < 1e-4:
            normal(param, 0.1)
        elif bool((flat == flat[0]).all()):
            value = float(flat[0])
            if value != 0.0:
                scale = torch.empty(param.shape)
                uniform(scale, 0.5, 1.5)
                magnitude = max(abs(value), 0.1)
                param.copy_(scale * (magnitude if value > 0 else -magnitude))
            else:
                normal(param, 0.1)
        done.add(id(param))
    return model.eval()


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(SEED)
    return randomise(build())


def _reparameterised(model: nn.Module) -> nn.Module:
    """A re-parameterised copy, the way timm deploys RepVGG/MobileOne/FastViT."""
    from timm.utils.model import reparameterize_model

    return reparameterize_model(copy.deepcopy(model)).eval()


# ----------------------------------------------------------------------------- torchvision


def build_resnet18() -> TorchFamily:
    import torchvision

    return TorchFamily(_seeded(lambda: torchvision.models.resnet18(num_classes=10)), (torch.rand(1, 3, 64, 64),))


def build_mobilenet_v3_small() -> TorchFamily:
    import torchvision

    return TorchFamily(
        _seeded(lambda: torchvision.models.mobilenet_v3_small(num_classes=10)), (torch.rand(1, 3, 32, 32),)
    )


def build_efficientnet_b0() -> TorchFamily:
    import torchvision

    return TorchFamily(_seeded(lambda: torchvision.models.efficientnet_b0(num_classes=10)), (torch.rand(1, 3, 32, 32),))


def build_convnext_tiny() -> TorchFamily:
    import torchvision

    return TorchFamily(_seeded(lambda: torchvision.models.convnext_tiny(num_classes=10)), (torch.rand(1, 3, 32, 32),))


def build_vit() -> TorchFamily:
    """torchvision's VisionTransformer at a small config (vit_b_16's 86M parameters are
    the same code at width 768 and depth 12)."""
    from torchvision.models import VisionTransformer

    return TorchFamily(
        _seeded(
            lambda: VisionTransformer(
                image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
            )
        ),
        (torch.rand(1, 3, 32, 32),),
    )


def build_swin() -> TorchFamily:
    """torchvision's SwinTransformer (swin_t's code) at a small config: shifted windows,
    relative position bias tables gathered by an index buffer, patch merging."""
    from torchvision.models import SwinTransformer

    return TorchFamily(
        _seeded(
            lambda: SwinTransformer(
                patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4], num_classes=10
            )
        ),
        (torch.rand(1, 3, 32, 32),),
    )


def build_regnet_y_400mf() -> TorchFamily:
    import torchvision

    return TorchFamily(_seeded(lambda: torchvision.models.regnet_y_400mf(num_classes=10)), (torch.rand(1, 3, 32, 32),))


def build_densenet121() -> TorchFamily:
    import torchvision

    return TorchFamily(_seeded(lambda: torchvision.models.densenet121(num_classes=10)), (torch.rand(1, 3, 32, 32),))


# ----------------------------------------------------------------------------- timm


def _timm(name: str, **kwargs) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)


def build_resnet18d() -> TorchFamily:
    return TorchFamily(_seeded(lambda: _timm("resnet18d")), (torch.rand(1, 3, 64, 64),))


def _reparam_family(name: str) -> TorchFamily:
    model = _seeded(lambda: _timm(name))
    return TorchFamily(model, (torch.rand(1, 3, 64, 64),), {"reparam": _reparameterised(model)})


def build_repvgg_a0() -> TorchFamily:
    return _reparam_family("repvgg_a0")


def build_mobileone_s0() -> TorchFamily:
    return _reparam_family("mobileone_s0")


def build_fastvit_t8() -> TorchFamily:
    return _reparam_family("fastvit_t8")


def build_deit_tiny() -> TorchFamily:
    return TorchFamily(_seeded(lambda: _timm("deit_tiny_patch16_224", img_size=64)), (torch.rand(1, 3, 64, 64),))


def build_levit_128s() -> TorchFamily:
    return TorchFamily(_seeded(lambda: _timm("levit_128s", img_size=64)), (torch.rand(1, 3, 64, 64),))


# ----------------------------------------------------------------------------- hand-built


class Conv1dBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(16)
        self.conv2 = nn.Conv1d(16, 8, 5, padding=2)
        self.bn2 = nn.BatchNorm1d(8, eps=1e-3)

    def forward(self, x):
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


class Conv3dBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(8)
        self.conv2 = nn.Conv3d(8, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.bn2 = nn.BatchNorm3d(8)

    def forward(self, x):
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


class ConvTranspose2dBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.up1 = nn.ConvTranspose2d(8, 16, 4, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.up2 = nn.ConvTranspose2d(16, 4, 3, stride=1, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn2(self.up2(torch.relu(self.bn1(self.up1(x)))))


class LinearBN1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 8, bias=False)
        self.bn2 = nn.BatchNorm1d(8)

    def forward(self, x):
        return self.bn2(self.fc2(torch.relu(self.bn1(self.fc1(x)))))


class BiLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out)


class GRU2(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out)


class TiedLM(nn.Module):
    """An embedding and an output projection sharing one Parameter (weight tying)."""

    def __init__(self, vocab: int = 50, dim: int = 24):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab, bias=True)
        self.out.weight = self.embed.weight

    def forward(self, tokens):
        return self.out(torch.tanh(self.mix(self.norm(self.embed(tokens)))))


def build_conv1d_bn() -> TorchFamily:
    return TorchFamily(_seeded(Conv1dBN), (torch.rand(1, 4, 32),))


def build_conv3d_bn() -> TorchFamily:
    return TorchFamily(_seeded(Conv3dBN), (torch.rand(1, 3, 4, 16, 16),))


def build_convtranspose2d_bn() -> TorchFamily:
    return TorchFamily(_seeded(ConvTranspose2dBN), (torch.rand(1, 8, 8, 8),))


def build_linear_bn1d() -> TorchFamily:
    return TorchFamily(_seeded(LinearBN1d), (torch.rand(4, 16),))


def build_lstm_bi2() -> TorchFamily:
    return TorchFamily(_seeded(BiLSTM), (torch.rand(1, 5, 8),))


def build_gru2() -> TorchFamily:
    return TorchFamily(_seeded(GRU2), (torch.rand(1, 5, 8),))


def build_tied_embedding() -> TorchFamily:
    return TorchFamily(_seeded(TiedLM), (torch.randint(0, 50, (1, 7)),))

"""Plain-torch look-alikes of the models people export: Ultralytics RT-DETR/YOLO blocks,
a ResNet, RepVGG branches, attention.

No weights can be downloaded here, so the samples and the tests build these with random
weights and call :func:`randomise_batchnorm`: with the default statistics (mean 0,
var 1, weight 1, bias 0) BatchNorm folding changes nothing visible.

The module paths mirror the real libraries where it matters for matching: an
Ultralytics ``Conv`` holds ``conv``/``bn``/``act``, a ``RepConv`` holds ``conv1``/``conv2``
(each a ``Conv`` without activation) and an optional identity ``bn``, and a detection
model keeps its layers in ``model.0``, ``model.1``, ...
"""

from __future__ import annotations

import torch
from torch import nn


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, in place."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.25)
                if module.affine:
                    module.weight.copy_(torch.rand(n, generator=generator) * 1.5 + 0.25)
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model


# --------------------------------------------------------------- Ultralytics-style blocks


class Conv(nn.Module):
    """Ultralytics ``Conv``: Conv2d (no bias) + BatchNorm2d(eps=1e-3) + SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | nn.Module = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU() if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class RepConv(nn.Module):
    """Ultralytics/RepVGG ``RepConv``: 3x3 conv+BN + 1x1 conv+BN (+ identity BN), summed."""

    def __init__(self, c1: int, c2: int, s: int = 1, identity: bool = False):
        super().__init__()
        self.act = nn.SiLU()
        self.bn = nn.BatchNorm2d(c1) if identity and c1 == c2 and s == 1 else None
        self.conv1 = Conv(c1, c2, 3, s, act=False)
        self.conv2 = Conv(c1, c2, 1, s, act=False)

    def forward(self, x):
        identity = 0 if self.bn is None else self.bn(x)
        return self.act(self.conv1(x) + self.conv2(x) + identity)


class RepC3(nn.Module):
    """Ultralytics ``RepC3``: two 1x1 Convs around a chain of RepConvs."""

    def __init__(self, c1: int, c2: int, n: int = 2):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1)
        self.cv2 = Conv(c1, c2, 1)
        self.m = nn.Sequential(*(RepConv(c2, c2) for _ in range(n)))

    def forward(self, x):
        return self.m(self.cv1(x)) + self.cv2(x)


class AIFI(nn.Module):
    """RT-DETR's ``AIFI``: one transformer encoder layer over the flattened feature map."""

    def __init__(self, c: int, heads: int = 4, hidden: int = 64):
        super().__init__()
        self.ma = nn.MultiheadAttention(c, heads, batch_first=True)
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, c)
        self.norm1 = nn.LayerNorm(c)
        self.norm2 = nn.LayerNorm(c)
        self.act = nn.GELU()

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.flatten(2).permute(0, 2, 1)
        # As in RT-DETR, queries and keys carry the position embedding and values do not,
        # so exporters cut in_proj_weight into separate q/k/v projections.
        q = k = t + sincos_position_embedding(w, h, c).to(t.dtype)
        t = self.norm1(t + self.ma(q, k, value=t, need_weights=False)[0])
        t = self.norm2(t + self.fc2(self.act(self.fc1(t))))
        return t.permute(0, 2, 1).reshape(b, c, h, w)


def sincos_position_embedding(w: int, h: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """RT-DETR's fixed 2-D sine-cosine position embedding, shape (1, h*w, dim)."""
    grid_w = torch.arange(w, dtype=torch.float32)
    grid_h = torch.arange(h, dtype=torch.float32)
    grid_w, grid_h = torch.meshgrid(grid_w, grid_h, indexing="ij")
    pos_dim = dim // 4
    omega = 1.0 / temperature ** (torch.arange(pos_dim, dtype=torch.float32) / pos_dim)
    out_w = grid_w.flatten()[..., None] @ omega[None]
    out_h = grid_h.flatten()[..., None] @ omega[None]
    return torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], 1)[None]


class Head(nn.Module):
    """A detection-style head: pooled features -> class scores and boxes (Linear layers)."""

    def __init__(self, c: int, classes: int = 10):
        super().__init__()
        self.score = nn.Linear(c, classes)
        self.box = nn.Linear(c, 4)

    def forward(self, x):
        pooled = x.mean((2, 3))
        return torch.cat([self.score(pooled), self.box(pooled).sigmoid()], 1)


class DetectionModel(nn.Module):
    """An RT-DETR/YOLO-shaped detector: ``model`` is a Sequential, as in Ultralytics."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.model = nn.Sequential(*layers)
        self.names = {i: f"class{i}" for i in range(10)}
        self.stride = torch.tensor([8.0, 16.0, 32.0])

    def forward(self, x):
        return self.model(x)


def rtdetr_stem(width: int = 16) -> DetectionModel:
    """The RT-DETR-like stem: a 7x7 stride-2 Conv+BN+ReLU, then Conv+BN+SiLU blocks."""
    return DetectionModel(
        [
            Conv(3, width, 7, 2, act=nn.ReLU()),
            Conv(width, width * 2, 3, 2),
            Conv(width * 2, width * 2, 3, 1),
            Conv(width * 2, width * 4, 3, 2),
            Conv(width * 4, width * 4, 1, 1),
            Head(width * 4),
        ]
    )


def rtdetr_like(width: int = 16, repeats: int = 2) -> DetectionModel:
    """A small RT-DETR/YOLO-style detector: Conv blocks, RepC3 (RepConv) blocks, AIFI attention."""
    return DetectionModel(
        [
            Conv(3, width, 7, 2, act=nn.ReLU()),
            Conv(width, width * 2, 3, 2),
            RepC3(width * 2, width * 2, repeats),
            Conv(width * 2, width * 4, 3, 2),
            RepConv(width * 4, width * 4, identity=True),
            AIFI(width * 4, heads=4, hidden=width * 8),
            Conv(width * 4, width * 4, 1, 1),
            Head(width * 4),
        ]
    )


# --------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock``."""

    def __init__(self, c1: int, c2: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c1, c2, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c2)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c2, c2, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.downsample = None
        if stride != 1 or c1 != c2:
            self.downsample = nn.Sequential(nn.Conv2d(c1, c2, 1, stride, bias=False), nn.BatchNorm2d(c2))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """torchvision's ResNet layout (conv1/bn1/layer1..4/fc) with BasicBlocks."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), width: int = 64, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = width
        self.stages = [f"layer{index + 1}" for index in range(len(blocks))]
        for index, count in enumerate(blocks):
            out = width * 2**index
            layers = [BasicBlock(channels, out, 1 if index == 0 else 2)]
            layers += [BasicBlock(out, out) for _ in range(count - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
            channels = out
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = getattr(self, stage)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(width: int = 64, classes: int = 1000) -> ResNet:
    """ResNet-18's shape (11.7M parameters at width 64); smaller widths for quick tests."""
    return ResNet((2, 2, 2, 2), width, classes)


def resnet_block(width: int = 16, classes: int = 10) -> ResNet:
    """The small ResNet-style sample: a stem and one stage of two BasicBlocks."""
    return ResNet((2,), width, classes)


# --------------------------------------------------------------- exporter-style fusion


def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d computing conv then bn, as Ultralytics' ``fuse_conv_and_bn`` builds it."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    ).requires_grad_(False)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def ultralytics_fuse(model: nn.Module) -> nn.Module:
    """Fuse in place the way the Ultralytics exporter does before export.

    Each ``Conv`` gets its BatchNorm folded into ``conv`` and loses ``bn``; each
    ``RepConv`` gets a single ``conv`` holding the summed, padded branches and loses
    ``conv1``/``conv2``/``bn``.
    """
    with torch.no_grad():
        for module in list(model.modules()):
            if isinstance(module, RepConv):
                _fuse_repconv(module)
        for module in list(model.modules()):
            if isinstance(module, Conv) and hasattr(module, "bn"):
                module.conv = fuse_conv_and_bn(module.conv, module.bn)
                del module.bn
                module.forward = module._forward_fused
    return model


def _conv_forward_fused(self, x):
    return self.act(self.conv(x))


Conv._forward_fused = _conv_forward_fused


def _fuse_repconv(module: RepConv) -> None:
    k3 = fuse_conv_and_bn(module.conv1.conv, module.conv1.bn)
    k1 = fuse_conv_and_bn(module.conv2.conv, module.conv2.bn)
    weight = k3.weight + nn.functional.pad(k1.weight, [1, 1, 1, 1])
    bias = k3.bias + k1.bias
    if module.bn is not None:
        bn = module.bn
        channels = bn.num_features
        eye = torch.zeros(channels, channels, 3, 3)
        eye[torch.arange(channels), torch.arange(channels), 1, 1] = 1
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = weight + eye * scale.reshape(-1, 1, 1, 1)
        bias = bias + bn.bias - bn.running_mean * scale
    conv = nn.Conv2d(k3.in_channels, k3.out_channels, 3, k3.stride, 1, groups=k3.groups, bias=True).requires_grad_(
        False
    )
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    del module.conv1, module.conv2
    module.bn = None
    module.conv = conv
    module.forward = lambda x: module.act(module.conv(x))

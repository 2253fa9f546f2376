"""The fused model each framework makes of a zoo model, built by the framework itself.

``graphinspect fuse --weights`` promises the state_dict of the model its framework fuses,
no more and no less. The references here are made the way users make them, with no
graphinspect code involved:

- Ultralytics: ``model.fuse()`` of the checkpoint's module (Conv+BN folds, RepConv and
  RepVGGDW merges, the unused detection branch removed);
- timm: ``timm.utils.reparameterize_model`` (RepVGG/MobileOne/FastViT blocks merged,
  LeViT's ConvNorm/LinearNorm/NormLinear fused; nothing else);
- anything else (torchvision, hand-built): ``torch.nn.utils.fusion`` on every
  Conv/ConvTranspose/Linear whose output feeds only a BatchNorm, found by tracing the
  forward with ``torch.fx`` (the data flow, not names), the BatchNorm replaced by
  ``nn.Identity`` as ``torch.ao.quantization.fuse_modules`` does (also what
  ``--fold-all`` adds to timm's fusion: :func:`fuse_traced_pairs` of its result).

Loading a pickled module runs code from the zoo's own files (trusted: the zoo made them).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

TIMM_FUSED = ("repvgg_a0", "mobileone_s0", "fastvit_t8", "levit_128s", "resnet18d", "deit_tiny")
"""timm families: their framework's fusion is ``reparameterize_model`` (a no-op on some)."""


def load_module(path: Path) -> nn.Module:
    """A pickled zoo module (or the model of an Ultralytics checkpoint), float32, eval.
    The hand-built modules were pickled as ``zoo_models.*`` (a user's own package), so
    this folder goes on the import path while they load."""
    import sys

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.append(here)
    saved = torch.load(str(path), map_location="cpu", weights_only=False)
    if isinstance(saved, dict):
        saved = saved.get("model") or saved.get("ema")
    return saved.float().eval()


def framework_fused(family, path: Path) -> nn.Module:
    """The model of ``path`` fused by its own framework (see the module docstring)."""
    model = load_module(path)
    if family.source == "ultralytics":
        return model.fuse(verbose=False)
    if family.name in TIMM_FUSED:
        from timm.utils.model import reparameterize_model

        return reparameterize_model(model).eval()
    return fuse_traced_pairs(model)


def traced_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer, BatchNorm) module paths where the BatchNorm is applied to the layer's output
    and nothing else reads that output, from a ``torch.fx`` trace of the forward."""
    import torch.fx

    class BatchNormLeaves(torch.fx.Tracer):
        # timm's BatchNormAct2d (a BatchNorm2d subclass) would be traced into otherwise.
        def is_leaf_module(self, module, name):
            return isinstance(module, nn.modules.batchnorm._BatchNorm) or super().is_leaf_module(module, name)

    modules = dict(model.named_modules())
    graph = BatchNormLeaves().trace(model)
    foldable = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.modules.batchnorm._BatchNorm):
            continue
        before = node.args[0] if node.args else None
        if (
            isinstance(before, torch.fx.Node)
            and before.op == "call_module"
            and isinstance(modules.get(before.target), foldable)
            and len(before.users) == 1
        ):
            pairs.append((before.target, node.target))
    return pairs


def fuse_traced_pairs(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every :func:`traced_pairs` pair fused by torch."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    pairs = traced_pairs(model)
    model = copy.deepcopy(model)
    for layer_name, bn_name in pairs:
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        transposed = isinstance(layer, nn.modules.conv._ConvTransposeNd)
        if isinstance(layer, nn.Linear):
            fused = fuse_linear_bn_eval(layer, bn)
        elif transposed and layer.groups > 1:
            # torch's fuse_conv_bn_eval cannot fold a grouped ConvTranspose (it raises): the
            # fused layer's shape only, its values NaN (checked through the outputs instead).
            fused = copy.deepcopy(layer)
            fused.weight = nn.Parameter(torch.full_like(layer.weight, float("nan")))
            fused.bias = nn.Parameter(torch.full((bn.num_features,), float("nan")))
        else:
            fused = fuse_conv_bn_eval(layer, bn, transpose=transposed)
        _replace(model, layer_name, fused)
        _replace(model, bn_name, nn.Identity())
    return model.eval()


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)

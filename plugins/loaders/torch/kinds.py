"""Normalised layer kinds for PyTorch module classes.

:func:`kind_of_class` maps a module class name ("Conv2d", "SyncBatchNorm") to a kind of
:mod:`inspector.ir`; a class it does not know is recognised by the attributes torch's own
base classes give every subclass (``transposed`` for ``_ConvNd``, ``in_features`` for
``Linear``, ...), so ``timm``'s ``Conv2dSame`` is a conv too. Anything else keeps its
class name, lower-cased, as its kind.

No torch import: this module works on names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspector import ir

RMSNORM = "rmsnorm"
"""RMSNorm is not a LayerNorm (no mean, no bias), so it gets its own kind."""

_KIND_BY_CLASS: dict[str, str] = {
    **{name: ir.CONV for name in ("Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d")},
    **{
        name: ir.CONV_TRANSPOSE
        for name in (
            "ConvTranspose1d",
            "ConvTranspose2d",
            "ConvTranspose3d",
            "LazyConvTranspose1d",
            "LazyConvTranspose2d",
            "LazyConvTranspose3d",
        )
    },
    **{name: ir.LINEAR for name in ("Linear", "LazyLinear", "NonDynamicallyQuantizableLinear")},
    **{
        name: ir.BATCHNORM
        for name in (
            "BatchNorm1d",
            "BatchNorm2d",
            "BatchNorm3d",
            "SyncBatchNorm",
            "LazyBatchNorm1d",
            "LazyBatchNorm2d",
            "LazyBatchNorm3d",
        )
    },
    "LayerNorm": ir.LAYERNORM,
    "RMSNorm": RMSNORM,
    "GroupNorm": ir.GROUPNORM,
    **{
        name: ir.INSTANCENORM
        for name in (
            "InstanceNorm1d",
            "InstanceNorm2d",
            "InstanceNorm3d",
            "LazyInstanceNorm1d",
            "LazyInstanceNorm2d",
            "LazyInstanceNorm3d",
        )
    },
    "Embedding": ir.EMBEDDING,
    "EmbeddingBag": ir.EMBEDDING,
    "MultiheadAttention": ir.ATTENTION,
    "LSTM": ir.RECURRENT,
    "GRU": ir.RECURRENT,
    "RNN": ir.RECURRENT,
}


def kind_of_class(class_name: str, attrs: Mapping[str, Any] | None = None, roles: tuple[str, ...] = ()) -> str:
    """The normalised kind of a module whose class is ``class_name`` (last name component).

    ``attrs`` (the module's plain attributes) and ``roles`` (its param/buffer names)
    recognise subclasses of torch's layers under other names.
    """
    kind = _KIND_BY_CLASS.get(class_name)
    if kind is not None:
        return kind
    attrs = attrs or {}
    if "transposed" in attrs and "kernel_size" in attrs:
        return ir.CONV_TRANSPOSE if attrs["transposed"] else ir.CONV
    if "in_features" in attrs and "out_features" in attrs and "weight" in roles:
        return ir.LINEAR
    if "running_mean" in roles and "running_var" in roles:
        return ir.BATCHNORM
    if "normalized_shape" in attrs and "elementwise_affine" in attrs:
        return RMSNORM if "bias" not in roles and "RMS" in class_name.upper() else ir.LAYERNORM
    if "num_embeddings" in attrs and "embedding_dim" in attrs:
        return ir.EMBEDDING
    return class_name.lower() or ir.OTHER


def short_class_name(qualified: str) -> str:
    """ "torch.nn.modules.conv.Conv2d" -> "Conv2d"."""
    return qualified.rpartition(".")[2]

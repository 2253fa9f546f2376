"""Layers inferred from state_dict key names and tensor shapes.

A bare state_dict (torch.save, safetensors, a torch.export program's weights) has no
module classes, so the layers are guessed:

- keys are grouped by module prefix (everything before the last dot; a key without a
  dot belongs to the root, ""), groups in order of first appearance, params in file order;
- a group with ``running_mean`` and ``running_var`` is a BatchNorm (attrs: num_features;
  eps is not stored, so it is left out and matching tries candidates);
- ``in_proj_weight`` makes a MultiheadAttention (attrs: embed_dim);
- a 3/4/5-D ``weight`` is a Conv1d/2d/3d (ConvTranspose when the name says ``deconv`` or
  ``transpose``; attrs: out_channels, in_channels_per_group, kernel_size — the weight's
  second dimension is the input channels divided by the unknown groups);
- a 2-D ``weight`` is a Linear (attrs: out_features, in_features), or an Embedding when
  the name mentions "embed" and there is no bias (attrs: num_embeddings, embedding_dim);
- a 1-D ``weight`` (with or without bias) is a norm: LayerNorm when the last name
  component says ln/norm, GroupNorm for gn/groupnorm, RMSNorm for rms; else kind "norm";
- anything else is kind "other".

Inferred op types end in "?" ("Conv2d?", "BatchNorm?", "?"), so a report never passes a
guess off as a class read from the file. ``Model.modules`` stays empty for these models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from inspector import ir
from inspector.ir import Layer, Param
from plugins.loaders.torch.kinds import RMSNORM

INFERRED_SUFFIX = "?"
NORM = ir.NORM

_LAYERNORM_NAME = re.compile(r"^ln(_?\d+)?$|norm", re.IGNORECASE)
_GROUPNORM_NAME = re.compile(r"^gn_?\d*$|group_?norm", re.IGNORECASE)
_RMSNORM_NAME = re.compile(r"rms", re.IGNORECASE)
_TRANSPOSE_NAME = re.compile(r"deconv|transpose", re.IGNORECASE)


def group_by_module(params: Iterable[tuple[str, Param]]) -> dict[str, dict[str, Param]]:
    """state_dict key -> param, grouped as module prefix -> {role: param}, in key order."""
    groups: dict[str, dict[str, Param]] = {}
    for key, param in params:
        prefix, _, role = key.rpartition(".")
        groups.setdefault(prefix, {})[role] = param
    return groups


def infer_layers(params: Iterable[tuple[str, Param]]) -> list[Layer]:
    """One inferred :class:`Layer` per module prefix of a flat state_dict."""
    return [infer_layer(prefix, group) for prefix, group in group_by_module(params).items()]


def infer_layer(prefix: str, group: dict[str, Param]) -> Layer:
    """The layer a module with these params probably is (see the module docstring)."""
    kind, op_type, attrs = _guess(prefix, group)
    return Layer(
        prefix, kind, op_type + INFERRED_SUFFIX, attrs={**attrs, ir.GUESSED_KIND: True}, params=group, hints=(prefix,)
    )


def _guess(prefix: str, group: dict[str, Param]) -> tuple[str, str, dict]:
    last_name = prefix.rpartition(".")[2]
    weight = group.get("weight")
    shape = weight.shape if weight is not None else ()
    if "running_mean" in group and "running_var" in group:
        running_mean = group["running_mean"].shape
        return ir.BATCHNORM, "BatchNorm", {"num_features": running_mean[0] if running_mean else 0}
    if "in_proj_weight" in group:
        return ir.ATTENTION, "MultiheadAttention", {"embed_dim": group["in_proj_weight"].shape[-1]}
    if "weight_ih_l0" in group and "weight_hh_l0" in group:
        # (gates * hidden, input) and (gates * hidden, hidden): 4 gates LSTM, 3 GRU, 1 RNN.
        rows, hidden = group["weight_hh_l0"].shape[:2] if len(group["weight_hh_l0"].shape) == 2 else (0, 1)
        op = {4: "LSTM", 3: "GRU", 1: "RNN"}.get(rows // max(hidden, 1), "RNN")
        return ir.RECURRENT, op, {"hidden_size": hidden}
    if len(shape) in (3, 4, 5):
        spatial = len(shape) - 2
        if _TRANSPOSE_NAME.search(last_name):
            # ConvTranspose weights are (in, out/groups, k...).
            attrs = {"in_channels": shape[0], "out_channels_per_group": shape[1], "kernel_size": tuple(shape[2:])}
            return ir.CONV_TRANSPOSE, f"ConvTranspose{spatial}d", attrs
        attrs = {"out_channels": shape[0], "in_channels_per_group": shape[1], "kernel_size": tuple(shape[2:])}
        return ir.CONV, f"Conv{spatial}d", attrs
    if len(shape) == 2:
        if "embed" in prefix.lower() and "bias" not in group:
            return ir.EMBEDDING, "Embedding", {"num_embeddings": shape[0], "embedding_dim": shape[1]}
        return ir.LINEAR, "Linear", {"out_features": shape[0], "in_features": shape[1]}
    if len(shape) == 1:
        attrs = {"normalized_shape": tuple(shape)}
        if _RMSNORM_NAME.search(last_name) and "bias" not in group:
            return RMSNORM, "RMSNorm", attrs
        if _GROUPNORM_NAME.search(last_name):
            return ir.GROUPNORM, "GroupNorm", {"num_channels": shape[0]}
        if _LAYERNORM_NAME.search(last_name):
            return ir.LAYERNORM, "LayerNorm", attrs
        return NORM, "Norm", attrs
    return ir.OTHER, "", {}


_ROLE_ORDER = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked", "in_proj_weight", "in_proj_bias")
_NUMBER = re.compile(r"(\d+)")


def natural_order(keys: Iterable[str]) -> list[str]:
    """Keys of a file without a meaningful order (safetensors) in module order, roughly.

    Module prefixes sort with numbers compared as numbers ("layers.2" before
    "layers.10"); within a module, parameters before buffers in torch's usual order.
    """

    def sort_key(key: str) -> tuple:
        prefix, _, role = key.rpartition(".")
        parts = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _NUMBER.split(prefix) if part)
        rank = _ROLE_ORDER.index(role) if role in _ROLE_ORDER else len(_ROLE_ORDER)
        return parts, rank, role

    return sorted(keys, key=sort_key)

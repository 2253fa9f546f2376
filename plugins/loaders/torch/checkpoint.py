"""What a torch.save file holds, as a :class:`~inspector.ir.Model`.

The unpickled object is one of:

- a pickled ``nn.Module`` (``torch.save(model)``) -> format "pytorch-module";
- a state_dict, a dict whose values are all tensors -> "pytorch-state-dict";
- a checkpoint dict holding either under a usual key (:data:`WRAPPER_KEYS`, in that
  order, ``None`` values skipped: Ultralytics' best.pt has the module under "model" and
  ``ema=None``, its last.pt may have ``model=None`` and the module under "ema"; Lightning
  uses "state_dict"), one level of nesting allowed ("model" -> "state_dict"); failing
  that, the one module or tensor dict among its values, or its own tensors.

For a checkpoint, the other keys with plain values become ``Model.metadata`` (strings,
containers as JSON, each cut at 4000 characters): Ultralytics' version, date, epoch,
best_fitness, train_args. From the module come ``names``, ``stride``, ``yaml``, ``task``,
``nc`` and ``args`` when plain, and ``imgsz`` is lifted out of train_args (or the module's
args) because ``verify`` needs it. ``Model.details`` holds ``wrapper_key`` (None for a
bare object), ``checkpoint_keys``, the dominant ``dtype`` and ``skipped_keys`` (values of
a state_dict that are not tensors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inspector.errors import InputError
from inspector.ir import Layer, Model
from plugins.loaders.torch.modules import class_name_of, module_tree
from plugins.loaders.torch.state_dict import infer_layers
from plugins.loaders.torch.tensors import TensorReader, is_tensor, tensor_param, through_torch
from plugins.loaders.torch.unpickle import StandIn, is_module
from plugins.loaders.torch.values import NotPlain, metadata_text, to_plain

WRAPPER_KEYS: tuple[str, ...] = (
    "model",
    "ema",
    "model_ema",
    "state_dict_ema",
    "state_dict",
    "model_state_dict",
    "module",
    "net",
    "network",
    "weights",
)

MODULE_METADATA_ATTRS: tuple[str, ...] = ("names", "stride", "yaml", "task", "nc", "args")
"""Attributes of the root module copied into metadata (Ultralytics sets all of them)."""

_NOT_A_MODEL_KEYS = frozenset(
    {
        "optimizer",
        "optimizer_state_dict",
        "optimizer_states",
        "lr_scheduler",
        "lr_schedulers",
        "scheduler",
        "scaler",
        "callbacks",
        "loops",
    }
)
"""Checkpoint entries that are training state: never the model, never metadata."""


def model_from_object(path: Path, obj: Any, producer: str, reader: TensorReader = through_torch) -> Model:
    """The Model of the object a torch.save file holds; InputError when it holds none.
    Its params' values are read with ``reader``."""
    found = _find_model(obj, depth=0)
    if found is None:
        raise InputError(path, f"holds no model: {_describe(obj)}")
    wrapper_key, value = found
    checkpoint = obj if isinstance(obj, dict) and value is not obj else None
    details: dict[str, Any] = {"wrapper_key": wrapper_key}
    if isinstance(obj, dict):
        details["checkpoint_keys"] = [str(key) for key in obj]
    metadata = _checkpoint_metadata(checkpoint) if checkpoint is not None else {}
    if is_module(value):
        modules, layers = module_tree(value, reader)
        metadata.update(_module_metadata(value, metadata))
        model_format = "pytorch-module"
    else:
        skipped = [str(key) for key, item in value.items() if not is_tensor(item)]
        if skipped:
            details["skipped_keys"] = skipped[:50]
        modules, layers = {}, state_dict_layers(value, reader)
        model_format = "pytorch-state-dict"
    if not any(layer.params for layer in layers):
        raise InputError(path, f"holds no model: the {model_format.replace('pytorch-', '')} has no tensors")
    details["dtype"] = dominant_dtype(layers)
    imgsz = _imgsz(checkpoint, value)
    if imgsz is not None:
        metadata["imgsz"] = imgsz
    return Model(
        format=model_format,
        path=str(path),
        layers=layers,
        modules=modules,
        metadata=metadata,
        producer=_producer(producer, checkpoint, modules),
        details=details,
    )


def state_dict_layers(state_dict: dict, reader: TensorReader = through_torch) -> list[Layer]:
    """Inferred layers of a dict of tensors (non-tensor values are left out)."""
    params = []
    for key, value in state_dict.items():
        if is_tensor(value):
            name = str(key)
            params.append((name, tensor_param(name.rpartition(".")[2], value, name, reader)))
    return infer_layers(params)


def dominant_dtype(layers: list[Layer]) -> str | None:
    """The dtype holding the most elements (fp16 for Ultralytics checkpoints)."""
    counts: dict[str, int] = {}
    for layer in layers:
        for param in layer.params.values():
            counts[param.dtype] = counts.get(param.dtype, 0) + param.numel
    return max(counts, key=counts.__getitem__) if counts else None


def _is_tensor_dict(value: Any, strict: bool) -> bool:
    if not isinstance(value, dict) or not value:
        return False
    tensors = [is_tensor(item) for item in value.values()]
    return all(tensors) if strict else any(tensors)


def _find_model(obj: Any, depth: int) -> tuple[str | None, Any] | None:
    if is_module(obj) or _is_tensor_dict(obj, strict=True):
        return None, obj
    if not isinstance(obj, dict) or not obj:
        return None
    for key in WRAPPER_KEYS:
        value = obj.get(key)
        if value is None:
            continue
        if is_module(value) or _is_tensor_dict(value, strict=False):
            return key, value
        if depth == 0:
            nested = _find_model(value, depth + 1)
            if nested is not None:
                return (f"{key}.{nested[0]}" if nested[0] else key), nested[1]
    if depth > 0:
        return None
    candidates = [
        (str(key), value)
        for key, value in obj.items()
        if key not in _NOT_A_MODEL_KEYS and (is_module(value) or _is_tensor_dict(value, strict=False))
    ]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates and _is_tensor_dict(obj, strict=False):
        return None, obj
    return None


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        if not obj:
            return "the checkpoint is an empty dict"
        keys = [str(key) for key in obj][:20]
        more = ", ..." if len(obj) > 20 else ""
        return f"keys are {', '.join(keys)}{more}"
    if isinstance(obj, StandIn):
        return f"it is an object of class {class_name_of(obj)}"
    if is_tensor(obj):
        return f"it is a single tensor of shape {list(obj.shape)}"
    return f"it is a {type(obj).__name__}"


def _checkpoint_metadata(checkpoint: dict) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for key, value in checkpoint.items():
        if key in WRAPPER_KEYS or key in _NOT_A_MODEL_KEYS or is_module(value):
            continue
        try:
            metadata[str(key)] = metadata_text(value)
        except NotPlain:
            continue
    return metadata


def _module_metadata(root: StandIn, existing: dict[str, str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for name in MODULE_METADATA_ATTRS:
        if name in existing or name not in root.__dict__:
            continue
        try:
            metadata[name] = metadata_text(root.__dict__[name])
        except NotPlain:
            continue
    return metadata


def _imgsz(checkpoint: dict | None, value: Any) -> str | None:
    sources = []
    if checkpoint is not None:
        sources.append(checkpoint.get("train_args"))
    if is_module(value):
        sources.append(value.__dict__.get("args"))
    for source in sources:
        try:
            plain = to_plain(source)
        except NotPlain:
            continue
        if isinstance(plain, dict) and plain.get("imgsz") is not None:
            imgsz = plain["imgsz"]
            return imgsz if isinstance(imgsz, str) else json.dumps(imgsz)
    return None


def _producer(base: str, checkpoint: dict | None, modules: dict[str, str]) -> str:
    parts = [base]
    if checkpoint is not None:
        lightning = checkpoint.get("pytorch-lightning_version")
        if isinstance(lightning, str):
            parts.append(f"pytorch-lightning {lightning}")
        version = checkpoint.get("version")
        if isinstance(version, str) and modules.get("", "").startswith("ultralytics."):
            parts.append(f"ultralytics {version}")
    return ", ".join(parts)

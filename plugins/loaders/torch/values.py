"""Plain values: which module attributes a layer reports, and metadata as short strings.

Checkpoints and pickled modules hold anything; reports hold plain data. These helpers
keep ints, floats, bools, strings, None and containers of them, turn small tensors,
numpy scalars and data stand-ins (a pickled ``SimpleNamespace`` of training arguments)
into those, and refuse the rest (modules, large tensors) with :class:`NotPlain`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from plugins.loaders.torch.tensors import MappedTensor, is_tensor
from plugins.loaders.torch.unpickle import FunctionReference, StandIn, is_module

METADATA_VALUE_LIMIT = 4000
"""Longest metadata string kept; longer values are cut and marked."""

SMALL_TENSOR = 64
"""Tensors and numpy arrays with at most this many elements become lists (Ultralytics' stride)."""

_PLAIN_SCALARS = (bool, int, float, str, type(None))


class NotPlain(Exception):
    """The value cannot be shown as plain data."""


def is_plain(value: Any, depth: int = 0) -> bool:
    """True for ints, floats, bools, strings, None, and tuples/lists of those (nested)."""
    if isinstance(value, _PLAIN_SCALARS):
        return True
    if isinstance(value, (tuple, list)) and depth < 3 and len(value) <= 64:
        for item in value:  # scalars (kernel sizes, strides) without a call each
            if not isinstance(item, _PLAIN_SCALARS) and not is_plain(item, depth + 1):
                return False
        return True
    return False


def plain_attrs(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The module attributes a layer reports: plain public values, ``training`` left out."""
    attrs: dict[str, Any] = {}
    for name, value in namespace.items():
        if name.startswith("_") or name == "training":
            continue
        if is_plain(value):
            attrs[name] = value
    return attrs


def to_plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-compatible data, or :class:`NotPlain`."""
    if depth > 8:
        raise NotPlain("nested too deeply")
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        if len(value) > 4096:
            raise NotPlain("too long")
        return [to_plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        if len(value) > 4096:
            raise NotPlain("too long")
        return {str(key): to_plain(item, depth + 1) for key, item in value.items()}
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        if getattr(value, "size", 1) > SMALL_TENSOR:
            raise NotPlain("a large array")
        return value.tolist()
    if is_tensor(value):
        if value.numel() > SMALL_TENSOR:
            raise NotPlain("a large tensor")
        if type(value) is MappedTensor:
            values = value.values()
            return (values if values.dtype.kind in "biufc" else values.astype(float)).tolist()
        return value.detach().cpu().tolist()
    if isinstance(value, FunctionReference):
        return value.global_name
    if isinstance(value, StandIn) and not is_module(value):
        state = {key: item for key, item in value.__dict__.items() if not key.startswith("_")}
        if state:
            return to_plain(state, depth + 1)
        args = value.__dict__.get("_standin_args", ())
        if args and all(isinstance(arg, str) for arg in args) and "Path" in type(value).__name__:
            return "/".join(args).replace("//", "/")
        return to_plain(list(args), depth + 1)
    raise NotPlain(type(value).__name__)


def metadata_text(value: Any) -> str:
    """One metadata value as a string: strings as they are, the rest as JSON; cut if long."""
    plain = to_plain(value)
    text = plain if isinstance(plain, str) else json.dumps(plain, default=str)
    if len(text) > METADATA_VALUE_LIMIT:
        text = text[: METADATA_VALUE_LIMIT - 15] + " ...(truncated)"
    return text

"""Every name an ONNX file gives is text, or the file is refused.

ONNX's protobuf schema is proto2, whose ``string`` fields are not checked when parsed:
one that is not UTF-8 reads as ``bytes`` (a fuzzed op type ``b'\\xf7onv'``), and would
reach the matcher and every report as something that is not a name (an internal error in
each). The ONNX spec asks for UTF-8 (its checker refuses such a file, ONNX Runtime too),
so the loader refuses it as well, saying which name is not text:

- every name of a node (its op type, once per op type; its name, inputs, outputs,
  attribute names and metadata) raises :class:`NotText` where the loader reads it: the
  node is in the cache then, where a pass over 100k layers afterwards costs 20 ms each
  for the memory it touches;
- the model's own names (graph inputs and outputs, metadata, stored tensor names, the
  details) are looked at once, at the end of the load (:func:`untextual`).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

from inspector.ir import Model


class NotText(ValueError):
    """A node's name is not text; ``str()`` says which (``"node 3's inputs"``)."""


def untextual(model: Model) -> str | None:
    """What of ``model``'s own names is not text (``"the model's metadata"``), or None
    when all of it is; its layers' names were checked as they were read (:class:`NotText`)."""
    for what, values in (
        ("graph input names", _names(model.inputs)),
        ("graph output names", _names(model.outputs)),
        ("metadata", keys_and_values(model.metadata)),
        ("producer", (model.producer,)),
        ("stored tensor names", (stored.param.tensor_name for stored in model.stored)),
        ("details (graph name, doc string or opset domains)", _strings(model.details)),
    ):
        if not all_text(values):
            return f"the model's {what}"
    return None


def all_text(values: Iterable[Any]) -> bool:
    """Whether every value is a str (one C loop)."""
    return set(map(type, values)) <= _TEXT


_TEXT = {str}


def keys_and_values(mapping: dict) -> Iterable[Any]:
    """A mapping's keys, then its values (a metadata dict's names)."""
    return chain(mapping, mapping.values())


def _names(infos) -> list[str]:
    names = []
    for info in infos:
        names.append(info.name)
        names.extend(dim for dim in info.shape or () if not isinstance(dim, int) and dim is not None)
    return names


def _strings(value: Any) -> list:
    """The keys and string-like leaves of a plain nested value (``Model.details``)."""
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in (key, *_strings(inner))]
    if isinstance(value, (list, tuple)):
        return [item for inner in value for item in _strings(inner)]
    return [value] if isinstance(value, (str, bytes)) else []

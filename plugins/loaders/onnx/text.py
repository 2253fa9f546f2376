"""Every name an ONNX file gives is text, or the file is refused.

ONNX's protobuf schema is proto2, whose ``string`` fields are not checked when parsed:
one that is not UTF-8 reads as ``bytes`` (a fuzzed op type ``b'\\xf7onv'``), and would
reach the matcher and every report as something that is not a name (an internal error in
each). The ONNX spec asks for UTF-8 (its checker refuses such a file, ONNX Runtime too),
so the loader refuses it as well, saying which name is not text:

- the names the loader works with while it builds the layers (op types, once per op
  type; each node's name and outputs, from which its hints are made) raise
  :class:`NotText` where they are read;
- everything else a :class:`~inspector.ir.Model` holds is looked at once, at the end of
  the load (:func:`untextual`).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from operator import attrgetter
from typing import Any

from inspector.ir import Model


class NotText(ValueError):
    """A name the loader needs as text before the model is made is not (a node's name
    and outputs, which its hints are worked out from); ``str()`` says which."""


def untextual(model: Model) -> str | None:
    """What in ``model`` is not text (``"node 3's inputs"``), or None when all of it is.

    Every string's type is first taken in a few C loops over all layers (50 ms at 100k
    nodes); only a model that fails that is looked at layer by layer, to say where."""
    layers = model.layers
    every = chain(
        map(attrgetter("name"), layers),
        map(attrgetter("op_type"), layers),
        map(attrgetter("kind"), layers),
        chain.from_iterable(map(attrgetter("inputs"), layers)),
        chain.from_iterable(map(attrgetter("outputs"), layers)),
        chain.from_iterable(map(attrgetter("attrs"), layers)),
        chain.from_iterable(_items(layer.metadata) for layer in layers if layer.metadata),
    )  # a param's tensor name is a stored tensor's (_model_untextual), its name a role
    if _all_text(every):
        return _model_untextual(model)
    for position, layer in enumerate(layers):
        for what, values in (
            ("name", (layer.name,)),
            ("op_type", (layer.op_type, layer.kind)),
            ("inputs", layer.inputs),
            ("outputs", layer.outputs),
            ("attribute names", layer.attrs),
            ("metadata", _items(layer.metadata)),
        ):
            if not _all_text(values):
                return f"node {position}'s {what}"
        for param in layer.params.values():
            if not _all_text((param.name, param.tensor_name)):
                return f"node {position}'s input tensor names"
    return _model_untextual(model)


def _model_untextual(model: Model) -> str | None:
    for what, values in (
        ("graph input names", _names(model.inputs)),
        ("graph output names", _names(model.outputs)),
        ("metadata", _items(model.metadata)),
        ("producer", (model.producer,)),
        ("stored tensor names", (stored.param.tensor_name for stored in model.stored)),
    ):
        if not _all_text(values):
            return f"the model's {what}"
    if not _all_text(_strings(model.details)):
        return "the model's details (graph name, doc string or opset domains)"
    return None


def _all_text(values: Iterable[Any]) -> bool:
    """Whether every value is a str, in a C loop that makes nothing as large as the
    values (a joined string of 100k names would be)."""
    return set(map(type, values)) <= _TEXT


_TEXT = {str}


def _items(mapping: dict) -> list:
    return [*mapping.keys(), *mapping.values()] if mapping else []


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

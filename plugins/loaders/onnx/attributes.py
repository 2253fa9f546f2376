"""ONNX node attributes as plain Python values, and the tensors inside subgraph bodies.

Numbers, strings and lists of them become Python values (float attributes as the
shortest decimal that round-trips through float32, the value the exporter was given);
tensors, graphs and sparse tensors become one-line summaries ("tensor int64[2] = [1, -1]",
"graph 'then' (3 nodes)"). The attribute types are numbered as the ONNX specification
numbers ``AttributeProto.AttributeType``, so that reading one needs no onnx import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .tensors import dtype_name, summarize_tensor

if TYPE_CHECKING:
    from onnx import AttributeProto, GraphProto, NodeProto, TensorProto

FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS, STRINGS, TENSORS, GRAPHS, SPARSE_TENSOR = range(1, 12)
BODIES = (GRAPH, GRAPHS)
"""The attribute types that hold If/Loop/Scan bodies."""


def plain_attribute(attr: "AttributeProto") -> Any:
    """An attribute's value as plain Python; tensors and graphs as one-line summaries."""
    return attribute_value(attr, attr.type)


def attribute_value(attr: "AttributeProto", kind: int) -> Any:
    """:func:`plain_attribute` of ``attr``, whose type ``kind`` the caller has read."""
    plain = _PLAIN_VALUES.get(kind)  # numbers and strings, nearly every attribute
    if plain is not None:
        return plain(attr)
    if kind == TENSOR:
        return summarize_tensor(attr.t)
    if kind == TENSORS:
        return [summarize_tensor(tensor) for tensor in attr.tensors]
    if kind == GRAPH:
        return _summarize_graph(attr.g)
    if kind == GRAPHS:
        return [_summarize_graph(graph) for graph in attr.graphs]
    if kind == SPARSE_TENSOR:
        return f"sparse tensor {dtype_name(attr.sparse_tensor.values.data_type)}{list(attr.sparse_tensor.dims)}"
    from onnx import AttributeProto

    return f"<{AttributeProto.AttributeType.Name(kind).lower()} attribute>"


def body_tensors(nodes: "list[NodeProto]") -> "Iterator[TensorProto]":
    """Initializers and Constant values inside the If/Loop/Scan bodies of ``nodes``, at any depth."""
    stack = [nodes]
    while stack:
        for node in stack.pop():
            for attr in node.attribute[:]:
                bodies = [attr.g] if attr.type == GRAPH else attr.graphs[:] if attr.type == GRAPHS else []
                for body in bodies:
                    yield from body.initializer[:]
                    for inner in body.node[:]:
                        if inner.op_type == "Constant":
                            yield from (a.t for a in inner.attribute[:] if a.name == "value")
                    stack.append(body.node[:])


def _float32_value(value: float) -> float:
    # Attributes are float32: 1e-5 is stored as 9.99999974737875e-06. The shortest
    # decimal that round-trips through float32 is what the exporter was given.
    return float(str(np.float32(value)))


def _summarize_graph(graph: "GraphProto") -> str:
    return f"graph {graph.name!r} ({len(graph.node)} nodes)"


_PLAIN_VALUES: dict[int, Callable[[Any], Any]] = {
    INTS: lambda attr: attr.ints[:],  # a list of Python ints
    INT: lambda attr: attr.i,
    FLOAT: lambda attr: _float32_value(attr.f),
    FLOATS: lambda attr: [_float32_value(value) for value in attr.floats],
    STRING: lambda attr: attr.s.decode("utf-8", "replace"),
    STRINGS: lambda attr: [value.decode("utf-8", "replace") for value in attr.strings],
}

"""ONNX graph nodes -> :class:`inspector.ir.Layer`, with their params and hints.

One layer per top-level node, in graph order. Structure (which tensor each input is,
which nodes produce it) is read from the proto nodes themselves (:class:`GraphIndex`),
in one pass: a 100k-node graph takes a fraction of a second.

Layer names are the node names, made unique by appending "#2", "#3"... only to repeats;
unnamed nodes are called "<op_type>_<position>".

A constant input is one whose tensor is an initializer, the output of a Constant node,
or either of those through a chain of Identity nodes. Each distinct tensor becomes one
:class:`~inspector.ir.Param` shared by every layer using it, so ``Model.params()``
counts it once; the Param's ``name`` is its role in the first layer that uses it, its
``tensor_name`` the initializer's (or Constant output's) name. Identity and Constant
layers themselves carry no params (their tensor belongs to the layers consuming it).
Which constant inputs are params, and under which role, is in :mod:`.kinds`; a tensor
of strings is never one (it holds no numbers to compare).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.errors import InputError
from inspector.ir import LINEAR, WEIGHT_LAYOUT, Layer, Param, StoredTensor, Use

from . import hints, kinds, linear
from .tensors import ExternalSlice, dtype_name, summarize_tensor, tensor_reader

if TYPE_CHECKING:
    from onnx import AttributeProto, GraphProto, NodeProto

MAX_IDENTITY_CHAIN = 64
"""Identity nodes followed back from an input before giving up (a guard, not a limit seen)."""


@dataclass(frozen=True, slots=True)
class _Constant:
    """A constant tensor an input resolves to: its names along the chain and its values."""

    names: tuple[str, ...]  # the name the node uses first, the stored tensor's name last
    dtype: str
    shape: tuple[int, ...]
    read: Callable[[], np.ndarray]

    @property
    def tensor_name(self) -> str:
        return self.names[-1]


class GraphIndex:
    """The nodes of a graph and, for each tensor name, the nodes producing it.

    ONNX asks for single assignment; a crafted graph may break it, so each name maps to
    every producer and a constant is followed only through a name with exactly one.
    """

    def __init__(self, graph_proto: "GraphProto") -> None:
        self.nodes = list(graph_proto.node)
        self.producers: dict[str, list["NodeProto"]] = {}
        for node in self.nodes:
            for name in node.output:
                if name:
                    self.producers.setdefault(name, []).append(node)


class LayerBuilder:
    """Builds the layers of one graph; holds the shared Param objects while it does."""

    def __init__(
        self,
        model_path: Path,
        graph_proto: "GraphProto",
        external: dict[str, ExternalSlice],
    ) -> None:
        self.model_path = model_path
        self.graph_proto = graph_proto
        self.graph = GraphIndex(graph_proto)
        self.external = external
        self.initializers = {tensor.name: tensor for tensor in graph_proto.initializer}
        self._params: dict[str, Param] = {}
        # stored tensor name -> (its proto, dtype, shape, reader): read once however often used
        self._stored_facts: dict[str, tuple[Any, str, tuple[int, ...], Callable[[], np.ndarray]]] = {}
        self._uses: dict[str, list[Use]] = {}
        self._pending_uses: list[tuple[str, int, str | None]] = []  # of the layer being built

    def build(self) -> list[Layer]:
        layers = []
        names = _UniqueNames()
        for position, node in enumerate(self.graph.nodes):
            layer = self._layer(position, node)
            layer.name = names.unique(layer.name)
            for use in self._pending_uses:
                self._uses.setdefault(use[0], []).append(Use(layer.name, layer.op_type, use[1], use[2]))
            self._pending_uses = []
            layers.append(layer)
        return layers

    def stored(self) -> list[StoredTensor]:
        """Every initializer and Constant value of the graph, with the layers reading it
        (call after :meth:`build`). Tensors in subgraph bodies are listed, not read."""
        found: list[StoredTensor] = []
        for name, tensor in self.initializers.items():
            constant = self._stored_constant([name], tensor, f"initializer {name!r}")
            found.append(StoredTensor(self._param_for(constant), self._uses.get(name, []), "initializer"))
        for node in self.graph_proto.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
                constant = self._constant_node_value([node.output[0]], node)
                if constant is not None:
                    found.append(
                        StoredTensor(self._param_for(constant), self._uses.get(node.output[0], []), "Constant")
                    )
        for tensor in _subgraph_tensors(self.graph_proto):
            found.append(
                StoredTensor(
                    Param(
                        tensor.name,
                        tuple(tensor.dims),
                        dtype_name(tensor.data_type),
                        _not_read(tensor.name),
                        tensor.name,
                    ),
                    [],
                    "subgraph",
                )
            )
        return found

    def _layer(self, position: int, node: "NodeProto") -> Layer:
        op_type = kinds.qualified_op_type(node.op_type, node.domain)
        inputs = list(node.input)
        outputs = list(node.output)
        metadata = {entry.key: entry.value for entry in node.metadata_props}
        attrs = {attr.name: plain_attribute(attr) for attr in node.attribute}
        params, param_names, positions = self._params_of(op_type, inputs)
        name = node.name or f"{node.op_type}_{position}"
        first_output = outputs[0] if outputs else ""
        kind = kinds.layer_kind(op_type, set(params))
        if kind == LINEAR:
            attrs[WEIGHT_LAYOUT] = linear.weight_layout(op_type, attrs, positions.get("weight", 1))
        return Layer(
            name=name,
            kind=kind,
            op_type=op_type,
            attrs=attrs,
            params=params,
            inputs=inputs,
            outputs=outputs,
            hints=hints.layer_hints(node.name, first_output, metadata, param_names),
            metadata=metadata,
        )

    # ----------------------------------------------------------------- params

    def _params_of(self, op_type: str, inputs: list[str]) -> tuple[dict[str, Param], list[str], dict[str, int]]:
        """The node's params by role, the tensor names they go by (for hints), and the
        input position of each role."""
        if op_type in ("Identity", "Constant"):
            return {}, [], {}  # pass-throughs: their tensor is a param of the consumers
        constants = {
            position: constant
            for position, tensor in enumerate(inputs)
            if (constant := self._resolve(tensor)) is not None and constant.dtype != "string"
        }
        shapes = {position: (constant.dtype, math.prod(constant.shape)) for position, constant in constants.items()}
        params: dict[str, Param] = {}
        names: list[str] = []
        positions: dict[str, int] = {}
        roles = kinds.param_roles(op_type, shapes)
        for position, role in roles.items():
            params[role] = self._param(role, constants[position])
            names.extend(constants[position].names)
            positions[role] = position
        for position, constant in constants.items():
            self._pending_uses.append((constant.tensor_name, position, roles.get(position)))
        return params, names, positions

    def _param(self, role: str, constant: _Constant) -> Param:
        param = self._params.get(constant.tensor_name)
        if param is None:
            param = Param(role, constant.shape, constant.dtype, constant.read, tensor_name=constant.tensor_name)
            self._params[constant.tensor_name] = param
        return param

    def _param_for(self, constant: _Constant) -> Param:
        """The Param of a stored tensor: a layer's when one uses it as a param."""
        return self._params.get(constant.tensor_name) or Param(
            constant.tensor_name, constant.shape, constant.dtype, constant.read, tensor_name=constant.tensor_name
        )

    def _resolve(self, tensor: str) -> _Constant | None:
        """The constant behind an input tensor, following Identity chains; None if not constant."""
        names: list[str] = []
        for _ in range(MAX_IDENTITY_CHAIN):
            if not tensor:
                return None  # an omitted optional input
            names.append(tensor)
            initializer = self.initializers.get(tensor)
            if initializer is not None:
                return self._stored_constant(names, initializer, f"initializer {tensor!r}")
            producers = self.graph.producers.get(tensor, ())
            if len(producers) != 1:
                return None
            producer = producers[0]
            if producer.domain not in ("", "ai.onnx"):
                return None
            if producer.op_type == "Constant":
                return self._constant_node_value(names, producer)
            if producer.op_type != "Identity" or not producer.input:
                return None
            tensor = producer.input[0]
        return None

    def _stored_constant(self, names: list[str], tensor: Any, needed_by: str) -> _Constant:
        facts = self._stored_facts.get(names[-1])
        if facts is None or facts[0] is not tensor:
            read = tensor_reader(tensor, self.external.get(names[-1]), self.model_path, needed_by)
            facts = (tensor, dtype_name(tensor.data_type), tuple(int(d) for d in tensor.dims), read)
            self._stored_facts[names[-1]] = facts
        return _Constant(tuple(names), facts[1], facts[2], facts[3])

    def _constant_node_value(self, names: list[str], proto: "NodeProto") -> _Constant | None:
        for attr in proto.attribute:
            if attr.name == "value":
                return self._stored_constant(names, attr.t, f"constant {names[-1]!r}")
            literal = _CONSTANT_LITERALS.get(attr.name)
            if literal is not None:
                dtype, field = literal
                array = np.asarray(getattr(attr, field), dtype=dtype)
                if attr.name in ("value_float", "value_int"):
                    array = array.reshape(())
                else:
                    array = array.reshape(-1)
                return _Constant(tuple(names), array.dtype.name, array.shape, lambda array=array: array)
        return None  # strings and sparse values are not params


_CONSTANT_LITERALS = {
    "value_float": (np.float32, "f"),
    "value_floats": (np.float32, "floats"),
    "value_int": (np.int64, "i"),
    "value_ints": (np.int64, "ints"),
}


def plain_attribute(attr: "AttributeProto") -> Any:
    """An attribute's value as plain Python; tensors and graphs as one-line summaries."""
    from onnx import AttributeProto

    kind = attr.type
    if kind == AttributeProto.FLOAT:
        return _float32_value(attr.f)
    if kind == AttributeProto.INT:
        return int(attr.i)
    if kind == AttributeProto.STRING:
        return attr.s.decode("utf-8", "replace")
    if kind == AttributeProto.FLOATS:
        return [_float32_value(value) for value in attr.floats]
    if kind == AttributeProto.INTS:
        return [int(value) for value in attr.ints]
    if kind == AttributeProto.STRINGS:
        return [value.decode("utf-8", "replace") for value in attr.strings]
    if kind == AttributeProto.TENSOR:
        return summarize_tensor(attr.t)
    if kind == AttributeProto.TENSORS:
        return [summarize_tensor(tensor) for tensor in attr.tensors]
    if kind == AttributeProto.GRAPH:
        return _summarize_graph(attr.g)
    if kind == AttributeProto.GRAPHS:
        return [_summarize_graph(graph) for graph in attr.graphs]
    if kind == AttributeProto.SPARSE_TENSOR:
        return f"sparse tensor {dtype_name(attr.sparse_tensor.values.data_type)}{list(attr.sparse_tensor.dims)}"
    return f"<{AttributeProto.AttributeType.Name(kind).lower()} attribute>"


def _float32_value(value: float) -> float:
    # Attributes are float32: 1e-5 is stored as 9.99999974737875e-06. The shortest
    # decimal that round-trips through float32 is what the exporter was given.
    return float(str(np.float32(value)))


def _summarize_graph(graph: "GraphProto") -> str:
    return f"graph {graph.name!r} ({len(graph.node)} nodes)"


class _UniqueNames:
    """Hands out ``name``, then ``name#2``, ``name#3``... for repeats, in constant time
    per name (a graph may repeat one name over 100k nodes)."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._next: dict[str, int] = {}

    def unique(self, name: str) -> str:
        unique = name
        count = self._next.get(name, 1)
        while unique in self._used:
            count += 1
            unique = f"{name}#{count}"
        self._next[name] = count
        self._used.add(unique)
        return unique


def _subgraph_tensors(graph: "GraphProto"):
    """Initializers and Constant values inside If/Loop/Scan bodies, at any depth."""
    from onnx import AttributeProto

    stack = [graph]
    while stack:
        current = stack.pop()
        for node in current.node:
            for attr in node.attribute:
                bodies = (
                    [attr.g]
                    if attr.type == AttributeProto.GRAPH
                    else list(attr.graphs)
                    if attr.type == AttributeProto.GRAPHS
                    else []
                )
                for body in bodies:
                    yield from body.initializer
                    for inner in body.node:
                        if inner.op_type == "Constant":
                            yield from (a.t for a in inner.attribute if a.name == "value")
                    stack.append(body)


def _not_read(name: str):
    def read():
        raise InputError(name, "is stored inside a subgraph (If/Loop/Scan body), which graphinspect does not read")

    return read

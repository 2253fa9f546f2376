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

Repeated protobuf fields are read as ``field[:]`` throughout the loader: the slice is
one call that copies the items into a list, while iterating the field (``for``,
``tuple()``, ``list()``) ends in an IndexError raised and caught inside protobuf, which
costs more than a short field's items (a tenth of a 10k-block model's load).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from inspector.errors import InputError
from inspector.ir import LINEAR, WEIGHT_LAYOUT, Layer, Param, StoredTensor, Use

from . import hints, kinds, linear
from .attributes import BODIES, INT, INTS, TENSOR, attribute_value, body_tensors
from .in_file_data import InFileSlices
from .tensors import SMALL_TENSOR_VALUES, ExternalSlice, dtype_name, summarize_tensor, tensor_reader

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto

MAX_IDENTITY_CHAIN = 64
"""Identity nodes followed back from an input before giving up (a guard, not a limit seen)."""


class _Constant(NamedTuple):
    """A constant tensor an input resolves to: its names along the chain and its values.
    (A named tuple: one is made per constant input, and a tuple is the cheapest to make.)"""

    names: tuple[str, ...]  # the name the node uses first, the stored tensor's name last
    dtype: str
    shape: tuple[int, ...]
    numel: int
    read: Callable[[], np.ndarray]

    @property
    def tensor_name(self) -> str:
        return self.names[-1]


class GraphIndex:
    """The nodes of a graph and, for each tensor name, the nodes producing it.

    ONNX asks for single assignment; a crafted graph may break it, so a name may have
    several producers (:meth:`producers`), and a constant is followed only through a
    name with exactly one (:attr:`single_producer`). ``constant_nodes`` are the Constant
    nodes (default domain, with an output), in graph order; ``passed_on`` the names a
    Constant or Identity node of the default domain produces: with the initializers,
    the only names an input can be a constant through.
    """

    def __init__(self, graph_proto: "GraphProto") -> None:
        self.nodes = graph_proto.node[:]
        # Read once per node here (a protobuf field costs a wrapper object a read); the
        # layers keep these very tuples and strings.
        self.op_types: list[str] = []
        """Each node's op type, qualified by its domain (:func:`.kinds.qualified_op_type`)."""
        self.outputs: list[tuple[str, ...]] = []
        """Each node's outputs."""
        self.single_producer: dict[str, "NodeProto"] = {}
        """Name -> its producer, for names with exactly one (nearly all: no list each)."""
        self._several: dict[str, list["NodeProto"]] = {}  # name -> its producers, for names with more
        self.constant_nodes: list["NodeProto"] = []
        self.passed_on: set[str] = set()
        single, several = self.single_producer, self._several
        for node in self.nodes:
            outputs = tuple(node.output[:])
            op_type = kinds.qualified_op_type(node.op_type, node.domain)
            self.outputs.append(outputs)
            self.op_types.append(op_type)
            for name in outputs:
                if not name:
                    continue
                if name in single:
                    several[name] = [single.pop(name), node]
                elif name in several:
                    several[name].append(node)
                else:
                    single[name] = node
            if op_type in _PASS_THROUGH and outputs:
                self.passed_on.update(outputs)
                if op_type == "Constant":
                    self.constant_nodes.append(node)
        self.passed_on.discard("")

    def producers(self, name: str) -> list["NodeProto"]:
        """Every node producing ``name``, in graph order."""
        several = self._several.get(name)
        if several is not None:
            return list(several)
        single = self.single_producer.get(name)
        return [single] if single is not None else []


_PASS_THROUGH = ("Identity", "Constant")
_DEFAULT_DOMAINS = ("", "ai.onnx")


class LayerBuilder:
    """Builds the layers of one graph; holds the shared Param objects while it does.

    Per node it does only what the node needs: a node none of whose inputs can be a
    constant (:attr:`GraphIndex.passed_on`, the initializers) is not resolved input by
    input, and what its names say (:func:`.hints.layer_hints`) is worked out once per
    name folder.
    """

    def __init__(
        self,
        model_path: Path,
        graph_proto: "GraphProto",
        external: dict[str, ExternalSlice],
        in_file: InFileSlices | None = None,
        index: GraphIndex | None = None,
    ) -> None:
        self.model_path = model_path
        self.graph_proto = graph_proto
        self.graph = index if index is not None else GraphIndex(graph_proto)
        self.external = external
        self.in_file = in_file
        self.initializers = {tensor.name: tensor for tensor in graph_proto.initializer[:]}
        self._maybe_constant = self.graph.passed_on.union(self.initializers)
        self._maybe_constant.discard("")
        self._params: dict[str, Param] = {}
        # stored tensor name -> (its proto, dtype, shape, numel, reader): read once however often used
        self._stored_facts: dict[str, tuple[Any, str, tuple[int, ...], int, Callable[[], np.ndarray]]] = {}
        self._uses: dict[str, list[Use]] = {}
        self._pending_uses: list[tuple[str, int, str | None]] = []  # of the layer being built
        self._summaries: dict[bytes, str] = {}  # small tensor attributes, by their serialized bytes
        self.with_subgraphs: list["NodeProto"] = []
        """The top-level nodes with an If/Loop/Scan body (a GRAPH or GRAPHS attribute), found by :meth:`build`."""

    def build(self) -> list[Layer]:
        layers = []
        unique = _UniqueNames().unique
        uses = self._uses
        graph = self.graph
        for position, node in enumerate(graph.nodes):
            layer = self._layer(position, node, graph.op_types[position], graph.outputs[position])
            layer.name = unique(layer.name)
            if self._pending_uses:
                for tensor_name, input_position, role in self._pending_uses:
                    use = Use(layer.name, layer.op_type, input_position, role)
                    if tensor_name in uses:
                        uses[tensor_name].append(use)
                    else:
                        uses[tensor_name] = [use]
                self._pending_uses = []
            layers.append(layer)
        return layers

    def stored(self) -> list[StoredTensor]:
        """Every initializer and Constant value of the graph, with the layers reading it
        (call after :meth:`build`). Tensors in subgraph bodies are listed, not read."""
        found: list[StoredTensor] = []
        for name, tensor in self.initializers.items():
            param = self._params.get(name)
            if param is None:
                param = self._param_for(self._stored_constant((name,), tensor, "initializer"))
            found.append(StoredTensor(param, self._uses.get(name, []), "initializer"))
        for node in self.graph.constant_nodes:
            constant = self._constant_node_value((node.output[0],), node)
            if constant is not None:
                found.append(StoredTensor(self._param_for(constant), self._uses.get(node.output[0], []), "Constant"))
        for tensor in body_tensors(self.with_subgraphs):
            found.append(
                StoredTensor(
                    Param(
                        tensor.name,
                        tuple(tensor.dims[:]),
                        dtype_name(tensor.data_type),
                        _not_read(tensor.name),
                        tensor.name,
                    ),
                    [],
                    "subgraph",
                )
            )
        return found

    def _layer(self, position: int, node: "NodeProto", op_type: str, outputs: tuple[str, ...]) -> Layer:
        inputs = node.input[:]
        entries = node.metadata_props
        metadata = {entry.key: entry.value for entry in entries[:]} if entries else {}
        attrs = {}
        has_body = False
        for attr in node.attribute[:]:
            kind = attr.type
            # Lists of ints (kernel shapes, strides, pads) and ints are nearly all of them.
            if kind == INTS:
                attrs[attr.name] = attr.ints[:]
            elif kind == INT:
                attrs[attr.name] = attr.i
            elif kind == TENSOR:
                attrs[attr.name] = self._summary(attr.t)
            else:
                attrs[attr.name] = attribute_value(attr, kind)
            has_body = has_body or kind in BODIES
        if has_body:
            self.with_subgraphs.append(node)
        if op_type in _PASS_THROUGH or self._maybe_constant.isdisjoint(inputs):
            params: dict[str, Param] = {}
            param_names: list[str] = []
            weight_position = 1
        else:
            params, param_names, weight_position = self._params_of(op_type, inputs)
        node_name = node.name
        kind = kinds.layer_kind(op_type, params.keys())
        if kind == LINEAR:
            attrs[WEIGHT_LAYOUT] = linear.weight_layout(op_type, attrs, weight_position)
        return Layer(
            node_name or f"{node.op_type}_{position}",
            kind,
            op_type,
            attrs,
            params,
            inputs,
            outputs,
            hints.layer_hints(node_name, outputs[0] if outputs else "", metadata, param_names),
            metadata,
        )

    def _summary(self, tensor: "TensorProto") -> str:
        """:func:`.tensors.summarize_tensor`, made once per distinct small tensor: a graph
        repeats its Constant values (shapes, axes, scalars) many times, and reading one
        costs more than the serialized bytes that say which it is."""
        if math.prod(tensor.dims[:]) > SMALL_TENSOR_VALUES:
            return summarize_tensor(tensor)  # no values shown: cheap
        key = tensor.SerializeToString()
        summary = self._summaries.get(key)
        if summary is None:
            summary = self._summaries[key] = summarize_tensor(tensor)
        return summary

    # ----------------------------------------------------------------- params

    def _params_of(self, op_type: str, inputs: list[str]) -> tuple[dict[str, Param], list[str], int]:
        """The node's params by role, the tensor names they go by (for hints), and the
        input position of its "weight" (1 if it has none)."""
        constants: dict[int, _Constant] = {}
        sizes: dict[int, tuple[str, int]] = {}
        for position, tensor in enumerate(inputs):
            if tensor in self._maybe_constant:
                constant = self._resolve(tensor)
                if constant is not None and constant.dtype != "string":
                    constants[position] = constant
                    sizes[position] = (constant.dtype, constant.numel)
        params: dict[str, Param] = {}
        names: list[str] = []
        weight_position = 1
        if not constants:
            return params, names, weight_position
        roles = kinds.param_roles(op_type, sizes)
        for position, role in roles.items():
            params[role] = self._param(role, constants[position])
            names.extend(constants[position].names)
            if role == "weight":
                weight_position = position
        for position, constant in constants.items():
            self._pending_uses.append((constant.tensor_name, position, roles.get(position)))
        return params, names, weight_position

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
        names: tuple[str, ...] = ()
        for _ in range(MAX_IDENTITY_CHAIN):
            if not tensor:
                return None  # an omitted optional input
            names += (tensor,)
            initializer = self.initializers.get(tensor)
            if initializer is not None:
                return self._stored_constant(names, initializer, "initializer")
            producer = self.graph.single_producer.get(tensor)
            if producer is None:
                return None  # a graph input, or a name several nodes produce
            if producer.domain not in _DEFAULT_DOMAINS:
                return None
            if producer.op_type == "Constant":
                return self._constant_node_value(names, producer)
            if producer.op_type != "Identity" or not producer.input:
                return None
            tensor = producer.input[0]
        return None

    def _stored_constant(self, names: tuple[str, ...], tensor: Any, origin: str) -> _Constant:
        """The constant of a stored tensor (an ``origin``: "initializer" or "constant")
        reached through ``names``; its facts and reader are made once."""
        name = names[-1]
        facts = self._stored_facts.get(name)
        if facts is None or facts[0] is not tensor:
            shape = tuple(tensor.dims[:])
            read = tensor_reader(tensor, self._where(name), self.model_path, f"{origin} {name!r}", shape)
            facts = (tensor, dtype_name(tensor.data_type), shape, math.prod(shape), read)
            self._stored_facts[name] = facts
        return _Constant(names, facts[1], facts[2], facts[3], facts[4])

    def _where(self, name: str) -> ExternalSlice | None:
        """Where the bytes of the stored tensor ``name`` are when not in the proto: its
        external data, or its raw_data left in the model file (:mod:`.in_file_data`)."""
        where = self.external.get(name)
        if where is None and self.in_file is not None:
            span = self.in_file.slices.get(name)
            if span is not None:
                path = self.model_path
                where = ExternalSlice(path, path.name, span[0], span[1], True, self.in_file.file)
        return where

    def _constant_node_value(self, names: tuple[str, ...], proto: "NodeProto") -> _Constant | None:
        for attr in proto.attribute[:]:
            if attr.name == "value":
                return self._stored_constant(names, attr.t, "constant")
            literal = _CONSTANT_LITERALS.get(attr.name)
            if literal is not None:
                dtype, field = literal
                array = np.asarray(getattr(attr, field), dtype=dtype)
                if attr.name in ("value_float", "value_int"):
                    array = array.reshape(())
                else:
                    array = array.reshape(-1)
                return _Constant(names, array.dtype.name, array.shape, array.size, lambda array=array: array)
        return None  # strings and sparse values are not params


_CONSTANT_LITERALS = {
    "value_float": (np.float32, "f"),
    "value_floats": (np.float32, "floats"),
    "value_int": (np.int64, "i"),
    "value_ints": (np.int64, "ints"),
}


class _UniqueNames:
    """Hands out ``name``, then ``name#2``, ``name#3``... for repeats, in constant time
    per name (a graph may repeat one name over 100k nodes)."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._next: dict[str, int] = {}

    def unique(self, name: str) -> str:
        if name not in self._used:  # the first of its name (so not in _next either)
            self._used.add(name)
            return name
        unique = name
        count = self._next.get(name, 1)
        while unique in self._used:
            count += 1
            unique = f"{name}#{count}"
        self._next[name] = count
        self._used.add(unique)
        return unique


def _not_read(name: str):
    def read():
        raise InputError(name, "is stored inside a subgraph (If/Loop/Scan body), which graphinspect does not read")

    return read

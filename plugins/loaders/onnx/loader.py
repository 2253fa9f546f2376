"""Reading an ONNX file into a :class:`inspector.ir.Model`.

``onnx.load(path, load_external_data=False)`` parses the protobuf (a file over 1 MiB is
parsed without its initializers' bytes and its nodes, which are read from the file when
asked: :mod:`.in_file_data`); external data files are checked (present, inside the
model's directory, long enough) but not read; :class:`~.layers.LayerBuilder` makes the
layers from the graph's nodes.

Anything wrong with the file ends in :class:`~inspector.errors.InputError` with a
one-line problem: not protobuf / truncated, no graph, missing or short external data,
a graph whose fields are not what ONNX defines.

Repeated protobuf fields are read as ``field[:]``, one call, not iterated (see :mod:`.layers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector import resources
from inspector.errors import InputError
from inspector.ir import Model, TensorInfo

from .in_file_data import InFileSlices, parse_leaving_data_in_file
from .layers import GraphIndex, LayerBuilder
from .linear import normalise_linears
from .nodes import GraphNodes
from .tensors import ExternalFiles, ExternalSlice, dtype_name, uses_external_data
from .text import NotText, untextual

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, ValueInfoProto

FORMAT = "onnx"
DOC_STRING_CHARS = 200
"""The model doc_string is cut to this many characters in ``Model.details``."""
LAYER_BYTES = 2048
"""About what a node costs once its layer is made, for the budget checked before the
graph is read (:func:`_check_node_budget`). Measured: 1.1 KiB a node of an exporter's
100k-node graph, 2.4 KiB a node of a crafted graph of nameless one-output nodes."""


def load_onnx(path: Path) -> Model:
    """Load an ONNX model; raises :class:`InputError` for anything wrong with the file."""
    path = Path(path)
    model_proto, in_file = _parse(path)
    try:
        return _checked_model(path, model_proto, in_file)
    except BaseException:
        if in_file is not None:
            in_file.file.close()  # at once: the Model that would have owned it is not made
        raise


def _checked_model(path: Path, model_proto: "ModelProto", in_file: InFileSlices | None) -> Model:
    if not model_proto.HasField("graph"):
        raise InputError(path, "is not a valid ONNX model (it has no graph)")
    from google.protobuf.message import DecodeError

    try:
        return _model(path, model_proto, in_file)
    except InputError:
        raise
    except NotText as exc:
        raise InputError(path, _not_text(str(exc))) from exc
    except DecodeError as exc:  # a node left in the file (see _parse) is parsed only now
        raise InputError(path, _corrupted(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - a corrupt file parses into odd protos (bytes names, bad types)
        raise InputError(path, f"is not a usable ONNX graph ({_one_line(exc)})") from exc


def _model(path: Path, model_proto: "ModelProto", in_file: InFileSlices | None) -> Model:
    graph = model_proto.graph
    nodes = in_file.nodes if in_file is not None else GraphNodes.of_graph(graph)
    _check_node_budget(path, len(nodes))
    index = GraphIndex(nodes)
    external = _check_external_data(path, graph, index)
    # Initializer bytes left in the model file are read the way external data is, from
    # the descriptor the file was parsed with.
    builder = LayerBuilder(path, graph, external, in_file, index)
    layers = normalise_linears(builder.build())
    data_files = sorted({str(piece.file) for piece in external.values()})
    initializer_names = builder.initializers
    model = Model(
        format=FORMAT,
        path=str(path),
        layers=layers,
        inputs=[_tensor_info(value) for value in graph.input if value.name not in initializer_names],
        outputs=[_tensor_info(value) for value in graph.output],
        metadata={entry.key: entry.value for entry in model_proto.metadata_props},
        producer=f"{model_proto.producer_name} {model_proto.producer_version}".strip(),
        details=_details(model_proto, bool(external), len(builder.with_subgraphs)),
        files=data_files,
        stored=builder.stored(),
    )
    problem = untextual(model)
    if problem:
        raise InputError(path, _not_text(problem))
    return model


def _check_node_budget(path: Path, count: int) -> None:
    """Refuse a graph whose layers would not fit in the memory available.

    A node costs a few bytes of the file and about :data:`LAYER_BYTES` as a layer: a
    crafted file of 13 MB holds a million nodes and would take 2.5 GB, and nothing in a
    node's bytes says it is not real. So the count is checked against the machine, not the
    file, before anything is made of the nodes (a large file's nodes are still bytes here:
    :mod:`.in_file_data`)."""
    problem = resources.shortfall(count * LAYER_BYTES)
    if problem:
        raise InputError(
            path,
            f"has {count:,} nodes, whose layers would take {problem} (a crafted graph of tiny nodes?); "
            "nothing was built",
        )


def _parse(path: Path) -> "tuple[ModelProto, InFileSlices | None]":
    """The model, without its initializers' bytes where they can stay in the file
    (:mod:`.in_file_data`); onnx.load's own parse otherwise, and for every error."""
    import onnx

    try:
        stripped = parse_leaving_data_in_file(path)
        if stripped is not None:
            return stripped
        return onnx.load(str(path), load_external_data=False), None
    except OSError as exc:
        raise InputError(path, f"cannot be read: {exc.strerror or exc}") from exc
    except Exception as exc:  # noqa: BLE001 - DecodeError, ValueError, RuntimeWarning...: all mean "corrupt"
        raise InputError(path, _corrupted(exc)) from exc


def _not_text(what: str) -> str:
    return f"is not a valid ONNX model (not UTF-8 text: {what})"


def _corrupted(exc: BaseException) -> str:
    return f"is not a valid ONNX model (truncated or corrupted: {_one_line(exc)})"


def _check_external_data(path: Path, graph: "GraphProto", index: GraphIndex) -> dict[str | int, ExternalSlice]:
    """Initializer name, or Constant node position -> its checked external slice, for
    initializers and the values of the graph's Constant nodes
    (:attr:`.layers.GraphIndex.external_constants`). A Constant is known by its position:
    a crafted graph may give its output an initializer's name.

    Only top-level tensors are checked; subgraphs (If/Loop/Scan bodies) are not read.
    """
    files = ExternalFiles(path)
    slices: dict[str | int, ExternalSlice] = {}
    for tensor in graph.initializer[:]:
        if uses_external_data(tensor):
            slices[tensor.name] = files.slice(tensor, f"initializer {tensor.name!r}")
    for position in index.external_constants:
        node = index.nodes.node(position)
        for attr in node.attribute[:]:
            if attr.name == "value" and uses_external_data(attr.t):
                slices[position] = files.slice(attr.t, f"constant {node.output[0]!r}")
    return slices


def _tensor_info(value: "ValueInfoProto") -> TensorInfo:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return TensorInfo(value.name, None, kind or "undefined")
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return TensorInfo(value.name, None, dtype_name(tensor_type.elem_type))
    shape: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            shape.append(dim.dim_param)
        else:
            shape.append(None)
    return TensorInfo(value.name, tuple(shape), dtype_name(tensor_type.elem_type))


def _details(model_proto: "ModelProto", external_data: bool, subgraphs: int) -> dict[str, Any]:
    """Facts for the summary; ``subgraphs`` counts the top-level nodes with a body (If/Loop/Scan)."""
    doc_string = model_proto.doc_string.strip()
    if len(doc_string) > DOC_STRING_CHARS:
        doc_string = doc_string[: DOC_STRING_CHARS - 1] + "…"
    return {
        "ir_version": int(model_proto.ir_version),
        "opset": {(entry.domain or "ai.onnx"): int(entry.version) for entry in model_proto.opset_import},
        "graph_name": model_proto.graph.name,
        "doc_string": doc_string,
        "external_data": external_data,
        "subgraphs": subgraphs,
        "functions": len(model_proto.functions),
    }


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

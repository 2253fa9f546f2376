"""An ONNX file parsed without its initializers' bytes, which stay in the file.

``onnx.load`` reads the whole file into memory and parses it into a protobuf message
that holds its own copy of every initializer's ``raw_data``; reading a weight then
copies it once more into a numpy array. A model of 100 MB of weights costs 300 MB at
the peak and 200 MB for as long as it is loaded. :func:`parse_leaving_data_in_file`
walks the protobuf wire format of the memory-mapped file instead (only the ModelProto,
its graph and the graph's initializers are opened; everything else is copied as it is),
records where each initializer's ``raw_data`` lies in the file, and parses a copy of the
file with those bytes left out: the message holds the structure, and each weight is
read into memory later, when asked, from a descriptor of the same file
(:class:`InFileSlices`, :class:`~.tensors.DataFile`). The graph's nodes are left out of
the message too and kept as their bytes, parsed a chunk at a time when the loader reads
them (:class:`~.nodes.GraphNodes`): parsed whole, they cost six times their size.

Wire format (protobuf encoding): a field is a varint tag ``number << 3 | wire type``
followed by a varint (type 0), 8 bytes (1), a varint length and that many bytes (2) or
4 bytes (5). ModelProto.graph is field 7, GraphProto.node field 1, GraphProto.initializer
field 5, TensorProto.name 8, raw_data 9 and data_location 14.

Anything unexpected (a group, a length past its message, a varint too long, two
initializers of one name, a tensor whose data is external) leaves the file to
``onnx.load``: this returns None, or leaves that tensor as it is.
"""

from __future__ import annotations

import mmap
import os
from array import array
from pathlib import Path
from typing import TYPE_CHECKING

from .nodes import GraphNodes
from .tensors import DataFile

if TYPE_CHECKING:
    from onnx import ModelProto

MODEL_GRAPH = 7
GRAPH_NODE = 1
GRAPH_INITIALIZER = 5
TENSOR_NAME = 8
TENSOR_RAW_DATA = 9
TENSOR_DATA_LOCATION = 14
LENGTH_DELIMITED = 2
_TENSOR_FIELDS = frozenset((TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_DATA_LOCATION))
MIN_BYTES = 1 << 20
"""Smaller files are parsed whole: there is nothing worth leaving in the file."""
DROP_BYTES = 16 << 20
"""The walk gives back the map's resident pages each time it has gone this far. Reading
each initializer's header touches a page of it, so a file of small tensors would
otherwise be resident in full (all of it counted in the process's memory) until the walk
ends; nothing keeps a view of the map, and what the walk copied out is bytes of its own."""


class _Malformed(Exception):
    pass


def _varint(data, position: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= end or shift > 63:
            raise _Malformed
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def _drop_pages(data) -> None:
    """Give back the resident pages of the file's map (see :data:`DROP_BYTES`)."""
    if isinstance(data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        data.madvise(mmap.MADV_DONTNEED)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(data, start: int, end: int, wanted: frozenset[int]) -> list[tuple[int, int, int, int, int]]:
    """(number, wire type, field start, value start, value end) of each field of data[start:end]
    whose number is in ``wanted``; every other field is checked and skipped.

    One loop over the message, with one-byte tags, lengths and varints (nearly all of
    them) read inline: a graph of 30k nodes and 20k initializers is about 200k fields."""
    found = []
    position = start
    dropped_at = start
    while position < end:
        if position - dropped_at >= DROP_BYTES:
            _drop_pages(data)
            dropped_at = position
        field_start = position
        tag = data[position]
        if tag < 0x80:
            position += 1
        else:
            tag, position = _varint(data, position, end)
        wire = tag & 7
        if wire == LENGTH_DELIMITED:
            if position < end and data[position] < 0x80:
                value_start = position + 1
                position = value_start + data[position]
            else:
                length, value_start = _varint(data, position, end)
                position = value_start + length
        elif wire == 0:
            value_start = position
            if position < end and data[position] < 0x80:
                position += 1
            else:
                _, position = _varint(data, position, end)
        elif wire == 1:
            value_start, position = position, position + 8
        elif wire == 5:
            value_start, position = position, position + 4
        else:
            raise _Malformed  # groups: not in ONNX
        if position > end or tag < 8:  # a field number of 0
            raise _Malformed
        if tag >> 3 in wanted:
            found.append((tag >> 3, wire, field_start, value_start, position))
    return found


class InFileSlices:
    """Initializer name -> (offset, length) of its ``raw_data`` in the file at ``path``;
    ``file``, the open descriptor of the file that was parsed, to read them from (the
    caller owns it: see :class:`~.tensors.DataFile`); ``nodes``, the graph's nodes the
    parsed message was left without."""

    def __init__(self, path: Path, slices: dict[str, tuple[int, int]], file: DataFile, nodes: GraphNodes) -> None:
        self.path = path
        self.slices = slices
        self.file = file
        self.nodes = nodes


def parse_leaving_data_in_file(path: Path) -> "tuple[ModelProto, InFileSlices] | None":
    """The ModelProto of ``path`` without its initializers' raw_data and its graph's nodes,
    and where that data is and the nodes; None when the file is small or not one this
    reads (see the module docstring)."""
    from onnx import ModelProto

    with open(path, "rb") as stream:
        size = stream.seek(0, 2)
        if size < MIN_BYTES:
            return None
        try:
            data = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None  # a file system without mmap: onnx.load reads it
        with data:
            try:
                pieces, slices, nodes = _strip(data, size)
            except _Malformed:
                return None
            if not slices and not len(nodes):
                return None  # nothing to leave in the file: onnx.load reads it
        file = DataFile(path, os.dup(stream.fileno()))
    try:
        proto = ModelProto()
        proto.ParseFromString(b"".join(pieces))
    except BaseException:
        file.close()
        raise
    return proto, InFileSlices(path, slices, file, nodes)


def _strip(data, size: int) -> tuple[list[bytes], dict[str, tuple[int, int]], GraphNodes]:
    slices: dict[str, tuple[int, int]] = {}
    # The top-level graph's node fields, as they are, one after the other (a bytearray
    # grown a run of adjacent fields at a time: a writer puts the nodes together), and
    # where each ends in it.
    encoded = bytearray()
    ends = array("Q")
    run = [0, 0]  # the adjacent node fields not yet copied: data[run[0]:run[1]]

    def graph(_: int, start: int, end: int) -> _Pieces | None:
        return _rewrite_fields(data, start, end, {GRAPH_INITIALIZER: tensor, GRAPH_NODE: node})

    dropped_at = 0

    def tensor(_: int, start: int, end: int) -> _Pieces | None:
        nonlocal dropped_at
        if start - dropped_at >= DROP_BYTES:
            _drop_pages(data)
            dropped_at = start
        return _strip_tensor(data, start, end, slices)

    def node(field_start: int, _: int, end: int) -> _Pieces:
        if field_start != run[1]:
            encoded.extend(data[run[0] : run[1]])
            run[0] = field_start
        run[1] = end
        ends.append(len(encoded) + end - run[0])
        return _LEFT_OUT

    model = _rewrite_fields(data, 0, size, {MODEL_GRAPH: graph})
    encoded.extend(data[run[0] : run[1]])
    return (model[0] if model is not None else [data[:size]]), slices, GraphNodes.encoded(encoded, ends)


_Pieces = tuple[list[bytes], int]
"""A rewritten message as byte strings to join, and their total length: joined once, for
the whole model, instead of once per message level."""

_LEFT_OUT: _Pieces = ([], -1)
"""What a rewrite returns for a field to leave out of the message altogether."""


def _rewrite_fields(data, start: int, end: int, rewrites) -> _Pieces | None:
    """The message in data[start:end] with each length-delimited field whose number is
    in ``rewrites`` replaced by ``rewrites[number](field_start, value_start, value_end)``
    (None keeps the field as it is, :data:`_LEFT_OUT` leaves it out), or None when no
    field changed."""
    pieces: list[bytes] = []
    total = 0
    kept_from = start
    tags = {number: _encode_varint(number << 3 | LENGTH_DELIMITED) for number in rewrites}
    for number, wire, field_start, value_start, value_end in _fields(data, start, end, frozenset(rewrites)):
        if wire != LENGTH_DELIMITED:
            continue
        value = rewrites[number](field_start, value_start, value_end)
        if value is None:
            continue
        if kept_from < field_start:
            pieces.append(data[kept_from:field_start])
            total += field_start - kept_from
        kept_from = value_end
        if value is _LEFT_OUT:
            continue
        value_pieces, length = value
        header = tags[number] + (bytes((length,)) if length < 0x80 else _encode_varint(length))
        pieces.append(header)
        pieces += value_pieces
        total += len(header) + length
    if kept_from == start:
        return None
    pieces.append(data[kept_from:end])
    return pieces, total + end - kept_from


def _strip_tensor(data, start: int, end: int, slices: dict[str, tuple[int, int]]) -> _Pieces | None:
    """The TensorProto without its raw_data (recorded in ``slices``), or None to keep it."""
    name = None
    raw = None
    external = False
    for number, wire, field_start, value_start, value_end in _fields(data, start, end, _TENSOR_FIELDS):
        if number == TENSOR_NAME and wire == LENGTH_DELIMITED:
            name = data[value_start:value_end].decode("utf-8", "replace")
        elif number == TENSOR_RAW_DATA and wire == LENGTH_DELIMITED:
            if raw is not None:
                return None  # raw_data twice: protobuf keeps the last; leave it to protobuf
            raw = (field_start, value_start, value_end)
        elif number == TENSOR_DATA_LOCATION and wire == 0:
            external = _varint(data, value_start, value_end)[0] != 0
    if name is not None and name in slices:
        raise _Malformed  # two initializers of one name: let onnx.load and the loader decide
    if name is None or raw is None or external:
        return None
    field_start, value_start, value_end = raw
    slices[name] = (value_start, value_end - value_start)
    head = data[start:field_start]
    if value_end == end:  # raw_data is the last field, as ONNX writes it
        return [head], field_start - start
    return [head, data[value_end:end]], (field_start - start) + (end - value_end)

"""The top-level nodes of a graph, parsed a chunk at a time.

A parsed protobuf message takes about six times its serialized size, and any part of it
keeps all of it in memory: the nodes of a 100k-node graph are 10 MB in the file, 56 MiB
parsed, and 23 MiB more for a Python object per node. The loader reads the nodes twice
(:class:`.layers.GraphIndex`, then :class:`.layers.LayerBuilder`) and keeps nothing of
them, so a large file's nodes are left out of the parsed model (:mod:`.in_file_data`)
and kept as their serialized bytes, parsed :data:`CHUNK_BYTES` at a time, and a node on
its own when it is looked up again (a Constant an input resolves to).

A small file's graph is parsed whole, as before: :meth:`GraphNodes.of_graph`.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto

CHUNK_BYTES = 1 << 19
"""Serialized node bytes parsed at once (about 3 MiB parsed)."""


class GraphNodes:
    """The nodes of a graph, in order: iterate them (each is a parsed NodeProto, alive as
    long as it is referenced) or look one up by position with :meth:`node`.

    ``encoded`` is a run of GraphProto ``node`` fields (tag, length, NodeProto bytes);
    ``ends[i]`` is where field ``i`` ends in it.
    """

    def __init__(self, parsed: "list[NodeProto] | None" = None, encoded: bytes = b"", ends: array | None = None):
        self._parsed = parsed
        self._encoded = memoryview(encoded)
        self._ends = ends if ends is not None else array("Q")

    @classmethod
    def of_graph(cls, graph: "GraphProto") -> "GraphNodes":
        """The nodes of a graph parsed whole."""
        return cls(parsed=graph.node[:])

    @classmethod
    def encoded(cls, encoded: bytes, ends: array) -> "GraphNodes":
        """Nodes serialized as GraphProto ``node`` fields (see the class docstring)."""
        return cls(encoded=encoded, ends=ends)

    def __len__(self) -> int:
        return len(self._parsed) if self._parsed is not None else len(self._ends)

    def __iter__(self) -> Iterator["NodeProto"]:
        if self._parsed is not None:
            yield from self._parsed
            return
        ends = self._ends
        start = first = 0
        while first < len(ends):
            last = max(first, bisect_right(ends, start + CHUNK_BYTES) - 1)  # at least one node
            yield from _parse_fields(self._encoded[start : ends[last]])
            start = ends[last]
            first = last + 1

    def node(self, position: int) -> "NodeProto":
        """The node at ``position`` (parsed on its own when the nodes are encoded)."""
        if self._parsed is not None:
            return self._parsed[position]
        start = self._ends[position - 1] if position else 0
        return _parse_fields(self._encoded[start : self._ends[position]])[0]


def _parse_fields(fields: memoryview) -> "list[NodeProto]":
    from onnx import GraphProto

    return GraphProto.FromString(fields).node[:]

"""Loading an ONNX graph is linear in its nodes, measured by counting, not timing.

Every line of graphinspect's own code that runs while a graph loads is counted (a
trace function that follows only frames of ``inspector/`` and ``plugins/``); doubling
the graph must not more than double the count. The graphs are the worst cases seen in
hostile files: every node with the same name (name de-duplication was quadratic), no
names at all, and names that collide with the "#n" suffixes the de-duplication hands
out. ``benchmarks/`` has the wall-clock runs on 100k nodes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OWN_CODE = (str(ROOT / "inspector"), str(ROOT / "plugins"))


def chain(path: Path, count: int, naming: str) -> Path:
    """``count`` Add nodes in a chain, each with its own one-element initializer."""
    nodes, initializers, previous = [], [], "x"
    for index in range(count):
        name = {
            "same": "node",
            "none": "",
            "suffix clash": "node" if index % 2 else f"node#{index // 2 + 2}",
        }[naming]
        initializers.append(numpy_helper.from_array(np.array([1.0], np.float32), f"w{index}"))
        nodes.append(helper.make_node("Add", [previous, f"w{index}"], [f"t{index}"], name=name))
        previous = f"t{index}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1])],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def lines_run(function, *args) -> int:
    """How many lines of graphinspect's own code run during ``function(*args)``."""
    count = 0

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(OWN_CODE) else None

    previous = sys.gettrace()
    sys.settrace(calls)
    try:
        function(*args)
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize("naming", ["same", "none", "suffix clash"])
def test_loading_grows_linearly_with_the_nodes(tmp_path, naming):
    from plugins.loaders.onnx import load_onnx

    small = chain(tmp_path / "small.onnx", 1000, naming)
    large = chain(tmp_path / "large.onnx", 2000, naming)
    names = [layer.name for layer in load_onnx(large).layers]
    assert len(set(names)) == len(names) == 2000  # every layer has its own name
    ratio = lines_run(load_onnx, large) / lines_run(load_onnx, small)
    assert ratio < 2.1, f"twice the nodes ran {ratio:.2f}x the lines"

"""Variants of zoo exports that ``verify`` must judge, made from the cached files in a test's
own folder (they do not change the zoo's cache key, and take a second each).

- :func:`reverse_topk`: every TopK of an export returns its rows reversed. That is what
  a TopK over tied scores may do on another runtime: the same rows, selected the same
  way, in another order. Everything after it (RT-DETR's decoder queries, the final
  detections) then holds the same rows in another order: a faithful export that an
  elementwise comparison calls different.
- :func:`ultralytics_nms_export`: Ultralytics' own export with ``nms=True``, whose output
  (the kept detections) has no counterpart among the PyTorch model's outputs.
- :func:`scale_channel`: one output channel of one initializer x1.02, the tampering of
  :mod:`zoo_tamper`, applied to a named node.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def reverse_topk(source: Path, target: Path) -> list[str]:
    """Copy ``source`` to ``target`` with a Slice(step -1) on both outputs of every TopK
    (along its axis), read by every consumer instead; returns the TopK node names."""
    import onnx
    from onnx import helper

    model = onnx.load(str(source))
    graph = model.graph
    reversed_nodes, nodes, added = [], [], []
    renames: dict[str, str] = {}
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "TopK":
            continue
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
        reversed_nodes.append(node.name)
        for position, output in enumerate(node.output):
            if not output:
                continue
            if any(item.name == output for item in graph.output):
                raise ValueError(f"a TopK output is a graph output ({output}): not supported")
            names = []
            for key, value in (("starts", -1), ("ends", -(2**63)), ("axes", axis), ("steps", -1)):
                name = f"{output}__reverse_{key}"
                constant = helper.make_node(
                    "Constant", [], [name], value=helper.make_tensor(name, onnx.TensorProto.INT64, [1], [value])
                )
                nodes.append(constant)
                added.append(constant)
                names.append(name)
            renames[output] = f"{output}__reversed"
            reverse = helper.make_node(
                "Slice", [output, *names], [renames[output]], name=f"{node.name}_reverse{position}"
            )
            nodes.append(reverse)
            added.append(reverse)
    for node in nodes:
        if any(node is new for new in added):
            continue
        for index, name in enumerate(node.input):
            if name in renames:
                node.input[index] = renames[name]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(target))
    return reversed_nodes


def ultralytics_nms_export(checkpoint: Path, folder: Path, imgsz: int) -> Path:
    """``YOLO(checkpoint).export(format="onnx", nms=True)`` into ``folder`` (Ultralytics
    writes the export beside the checkpoint: a copy in ``folder`` keeps the cache clean)."""
    from ultralytics import YOLO

    copy = folder / checkpoint.name
    shutil.copyfile(checkpoint, copy)
    written = Path(YOLO(str(copy)).export(format="onnx", imgsz=imgsz, nms=True))
    target = folder / "nms.onnx"
    shutil.move(str(written), str(target))
    return target


def scale_channel(source: Path, target: Path, node_name: str, channel: int, factor: float = 1.02) -> str:
    """Copy ``source`` to ``target`` with output channel ``channel`` of ``node_name``'s
    weight (its input 1) multiplied by ``factor``; returns the initializer's name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    node = next(node for node in model.graph.node if node.name == node_name)
    initializer = next(tensor for tensor in model.graph.initializer if tensor.name == node.input[1])
    values = numpy_helper.to_array(initializer).copy()
    values[channel] *= factor
    initializer.CopyFrom(numpy_helper.from_array(values, initializer.name))
    onnx.save(model, str(target))
    return initializer.name

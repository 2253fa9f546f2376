"""The models the scale benchmark builds for itself (random weights, nothing downloaded).

Each builder writes a PyTorch file (or two: a state_dict and a pickled module) and the
ONNX export into a folder and returns a :class:`Pair`, with the code of the *floor*: a
plain reading of both files in one interpreter (``torch.load`` with the model's classes
importable, ``onnx.load`` with its external data).

The Conv+BN chains and the 100k-node graph are written with ``onnx.helper`` in exactly
the form the legacy exporter gives a chain of Ultralytics ``Conv`` blocks (checked
against a real export: node names ``/0/conv/Conv``, ``/0/act/Sigmoid``, ``/0/act/Mul``;
BatchNorm folded by the exporter into anonymous ``onnx::Conv_N`` initializers, in
float32 as torch folds them): the exporter itself needs 16 s for 1k blocks and grows
faster than linearly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

CHANNELS = 16
"""Channels of a chain block: a 16x16x3x3 weight (2,304 elements, under the 4,096 of a probe)."""


@dataclass
class Pair:
    """A built model pair: the PyTorch files by variant ("state_dict", "module") and the export."""

    name: str
    description: str
    sources: dict[str, Path]
    onnx: Path
    files: list[Path] = field(default_factory=list)
    floor_imports: str = ""
    """Code the floor runs first so that ``torch.load`` finds the pickled classes."""

    def weight_bytes(self, variant: str) -> int:
        """Bytes of both files (the ONNX with its external data) for ``variant``'s source."""
        extra = [f for f in self.files if f != self.onnx and f not in self.sources.values()]
        return sum(p.stat().st_size for p in [self.sources[variant], self.onnx, *extra])

    def floor_code(self, variant: str) -> str:
        return (
            f"{self.floor_imports}\nimport torch, onnx\n"
            f"torch.load({str(self.sources[variant])!r}, weights_only=False)\n"
            f"onnx.load({str(self.onnx)!r})\n"
        )


# ----------------------------------------------------------------------------- detector


ULTRALYTICS_IMPORTS = (
    "import sys, types\n"
    "from samples import lookalikes\nfrom samples.make_samples import ULTRALYTICS_MODULES as M\n"
    "for n, m in M.items():\n"
    "    parts = m.split('.')\n"
    "    [sys.modules.setdefault('.'.join(parts[:d]), types.ModuleType('.'.join(parts[:d]))) "
    "for d in range(1, len(parts) + 1)]\n"
    "    setattr(sys.modules[m], n, getattr(lookalikes, n))\n"
)


def detector(folder: Path, width: int = 88) -> Pair:
    """An RT-DETR-like detector (``benchmarks/diff_vs_load.py``'s; width 88: 33.2M
    parameters): an Ultralytics fp16 checkpoint and its fused fp32 legacy export."""
    from diff_vs_load import build_pair

    checkpoint, export = folder / "model.pt", folder / "model.onnx"
    if not (checkpoint.exists() and export.exists()):
        checkpoint, export, _ = build_pair(folder, width)
    return Pair(
        "detector",
        f"RT-DETR-like detector, width {width}",
        {"module": checkpoint},
        export,
        [checkpoint, export],
        ULTRALYTICS_IMPORTS,
    )


# ----------------------------------------------------------------------------- chains


def _chain_model(blocks: int):
    import torch
    from torch import nn

    from samples import lookalikes as L

    torch.manual_seed(0)
    model = nn.Sequential(*[L.Conv(CHANNELS, CHANNELS, 3) for _ in range(blocks)])
    return L.randomise_batchnorm(model, seed=1).eval()


def _folded(block) -> tuple:
    """(weight, bias) of a Conv block with its BatchNorm folded, in float32 as torch's exporter does."""
    import torch

    with torch.no_grad():
        bn = block.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = block.conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
    return weight.numpy(), bias.numpy()


def _conv_nodes(index: int, x: str, names: tuple[str, str]) -> tuple[list, str]:
    from onnx import helper

    prefix = f"/{index}"
    conv = helper.make_node(
        "Conv",
        [x, *names],
        [f"{prefix}/conv/Conv_output_0"],
        name=f"{prefix}/conv/Conv",
        dilations=[1, 1],
        group=1,
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
        strides=[1, 1],
    )
    sigmoid = helper.make_node(
        "Sigmoid", [conv.output[0]], [f"{prefix}/act/Sigmoid_output_0"], name=f"{prefix}/act/Sigmoid"
    )
    mul = helper.make_node(
        "Mul", [conv.output[0], sigmoid.output[0]], [f"{prefix}/act/Mul_output_0"], name=f"{prefix}/act/Mul"
    )
    return [conv, sigmoid, mul], mul.output[0]


def _save_graph(path: Path, nodes: list, initializers: list, x_in: str, x_out: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    shape = [1, CHANNELS, 8, 8]
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [helper.make_tensor_value_info(x_in, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x_out, TensorProto.FLOAT, shape)],
        initializers,
    )
    model = helper.make_model(graph, producer_name="pytorch", producer_version="2.13.0")
    model.ir_version = 8
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 17))
    onnx.save(model, str(path))


def chain(folder: Path, blocks: int) -> Pair:
    """``blocks`` Ultralytics Conv blocks (Conv2d 16->16 3x3 + BatchNorm + SiLU) in a
    Sequential: its state_dict, the pickled module, and the legacy-style export."""
    from onnx import numpy_helper

    state_dict, module, export = folder / "state_dict.pt", folder / "module.pt", folder / "model.onnx"
    if not all(p.exists() for p in (state_dict, module, export)):
        import torch

        model = _chain_model(blocks)
        torch.save(model.state_dict(), state_dict)
        torch.save(model, module)
        nodes, initializers, x = [], [], "input.1"
        counter = 3 * blocks + 2  # the exporter numbers anonymous tensors after the graph's values
        for index, block in enumerate(model):
            weight, bias = _folded(block)
            names = (f"onnx::Conv_{counter}", f"onnx::Conv_{counter + 1}")
            counter += 3
            initializers += [numpy_helper.from_array(weight, names[0]), numpy_helper.from_array(bias, names[1])]
            block_nodes, x = _conv_nodes(index, x, names)
            nodes += block_nodes
        nodes[-1].output[0] = "output"
        _save_graph(export, nodes, initializers, "input.1", "output")
    return Pair(
        f"chain-{blocks}",
        f"{blocks:,} Conv+BN+SiLU blocks, 16 channels",
        {"state_dict": state_dict, "module": module},
        export,
        [state_dict, module, export],
    )


# ----------------------------------------------------------------------------- 100k nodes


GRAPH_BLOCKS = 2000
GRAPH_NODES_PER_BLOCK = 50


def many_nodes(folder: Path) -> Pair:
    """A 100k-node graph: 2,000 Conv blocks (Conv, Sigmoid, Mul), each followed by 47
    nodes without parameters: 15 x (a scalar Constant, Add, Relu), a Reshape by one shared
    shape initializer, an Identity. The source is the blocks' state_dict."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    state_dict, export = folder / "state_dict.pt", folder / "model.onnx"
    if not (state_dict.exists() and export.exists()):
        import torch

        model = _chain_model(GRAPH_BLOCKS)
        torch.save(model.state_dict(), state_dict)
        shape_name = "/Constant_output_0"
        initializers = [numpy_helper.from_array(np.array([1, CHANNELS, 8, 8], dtype=np.int64), shape_name)]
        nodes, x = [], "input.1"
        counter = GRAPH_BLOCKS * GRAPH_NODES_PER_BLOCK + 2
        for index, block in enumerate(model):
            weight, bias = _folded(block)
            names = (f"onnx::Conv_{counter}", f"onnx::Conv_{counter + 1}")
            counter += 3
            initializers += [numpy_helper.from_array(weight, names[0]), numpy_helper.from_array(bias, names[1])]
            block_nodes, x = _conv_nodes(index, x, names)
            nodes += block_nodes
            prefix = f"/post.{index}"
            for step in range(15):
                value = helper.make_tensor("value", TensorProto.FLOAT, [], [0.01 * (step + 1)])
                name = f"{prefix}/Constant_{step}"
                constant = helper.make_node("Constant", [], [f"{name}_output_0"], name=name, value=value)
                add = helper.make_node(
                    "Add", [x, constant.output[0]], [f"{prefix}/Add_{step}_output_0"], name=f"{prefix}/Add_{step}"
                )
                relu = helper.make_node(
                    "Relu", [add.output[0]], [f"{prefix}/Relu_{step}_output_0"], name=f"{prefix}/Relu_{step}"
                )
                nodes += [constant, add, relu]
                x = relu.output[0]
            reshape = helper.make_node(
                "Reshape", [x, shape_name], [f"{prefix}/Reshape_output_0"], name=f"{prefix}/Reshape"
            )
            identity = helper.make_node(
                "Identity", [reshape.output[0]], [f"{prefix}/Identity_output_0"], name=f"{prefix}/Identity"
            )
            nodes += [reshape, identity]
            x = identity.output[0]
        nodes[-1].output[0] = "output"
        _save_graph(export, nodes, initializers, "input.1", "output")
    return Pair(
        "graph-100k",
        f"{GRAPH_BLOCKS * GRAPH_NODES_PER_BLOCK:,} nodes ({GRAPH_BLOCKS:,} Conv blocks)",
        {"state_dict": state_dict},
        export,
        [state_dict, export],
    )


# ----------------------------------------------------------------------------- > 2 GiB


BIG_FEATURES = 8192
BIG_BLOCKS = 9
"""9 Linear(8192, 8192) layers: 2.25 GiB of float32 per file."""


def big_external(folder: Path) -> Pair:
    """A model over 2 GiB: 9 x (Linear 8192->8192, LayerNorm) as a state_dict, and its
    legacy-style export (Gemm with transB, LayerNormalization) whose tensors are in one
    external data file, written tensor by tensor (the builder never holds the proto's
    copy of 2 GiB)."""
    data_name = "model.onnx.data"
    state_dict, export, data = folder / "state_dict.pt", folder / "model.onnx", folder / data_name
    if not all(p.exists() for p in (state_dict, export, data)):
        import onnx
        import torch
        from onnx import TensorProto, helper

        torch.manual_seed(0)
        weights: dict[str, torch.Tensor] = {}
        for block in range(BIG_BLOCKS):
            weights[f"{2 * block}.weight"] = torch.randn(BIG_FEATURES, BIG_FEATURES) * 0.01
            weights[f"{2 * block}.bias"] = torch.randn(BIG_FEATURES) * 0.01
            weights[f"{2 * block + 1}.weight"] = torch.rand(BIG_FEATURES) + 0.5
            weights[f"{2 * block + 1}.bias"] = torch.randn(BIG_FEATURES) * 0.1
        torch.save(weights, state_dict)
        initializers, nodes, x = [], [], "onnx::Gemm_0"
        with data.open("wb") as stream:
            for name, tensor in weights.items():
                array = tensor.numpy()
                offset = stream.tell()
                stream.write(memoryview(array).cast("B"))
                proto = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(array.shape))
                proto.data_location = TensorProto.EXTERNAL
                for key, value in (("location", data_name), ("offset", offset), ("length", array.nbytes)):
                    entry = proto.external_data.add()
                    entry.key, entry.value = key, str(value)
                initializers.append(proto)
        del weights
        for block in range(BIG_BLOCKS):
            linear, norm = 2 * block, 2 * block + 1
            gemm = helper.make_node(
                "Gemm",
                [x, f"{linear}.weight", f"{linear}.bias"],
                [f"/{linear}/Gemm_output_0"],
                name=f"/{linear}/Gemm",
                alpha=1.0,
                beta=1.0,
                transB=1,
            )
            layer_norm = helper.make_node(
                "LayerNormalization",
                [gemm.output[0], f"{norm}.weight", f"{norm}.bias"],
                [f"/{norm}/LayerNormalization_output_0"],
                name=f"/{norm}/LayerNormalization",
                axis=-1,
                epsilon=1e-5,
            )
            nodes += [gemm, layer_norm]
            x = layer_norm.output[0]
        nodes[-1].output[0] = "output"
        graph = helper.make_graph(
            nodes,
            "main_graph",
            [helper.make_tensor_value_info("onnx::Gemm_0", TensorProto.FLOAT, [1, BIG_FEATURES])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, BIG_FEATURES])],
            initializers,
        )
        model = helper.make_model(graph, producer_name="pytorch", producer_version="2.13.0")
        model.ir_version = 8
        del model.opset_import[:]
        model.opset_import.append(helper.make_opsetid("", 17))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx.save(model, str(export))
    return Pair(
        "external-2.25GiB",
        f"{BIG_BLOCKS} x (Linear {BIG_FEATURES}x{BIG_FEATURES} + LayerNorm), external data",
        {"state_dict": state_dict},
        export,
        [state_dict, export, data],
    )


BUILDERS = {
    "detector": lambda folder: detector(folder),
    "chain-1k": lambda folder: chain(folder, 1_000),
    "chain-10k": lambda folder: chain(folder, 10_000),
    "chain-30k": lambda folder: chain(folder, 30_000),
    "graph-100k": many_nodes,
    "external": big_external,
}
"""Benchmark name -> builder(folder) -> Pair."""

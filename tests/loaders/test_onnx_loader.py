"""The ONNX loader: sniffing, layers, params, hints, lazy external data, bad files.

Models are built here: small torch modules exported with both exporters (once per
module), and hand-made graphs from onnx.helper for the cases exporters do not make on
demand (Constant/Identity chains, fp16/bf16 initializers, external data).
"""

from __future__ import annotations

import gc
import os
import pickle
import warnings
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inspector import ir
from inspector.errors import InputError
from plugins.loaders.onnx import graphinspect_loaders, in_file_data, load_onnx, looks_like_onnx
from plugins.loaders.onnx.hints import legacy_scope

torch = pytest.importorskip("torch")
nn = torch.nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Net(nn.Module):
    """Conv+BN+ReLU (folded by both exporters), a BN that cannot be folded, a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.norm(self.block(x)).mean((2, 3)))


def _net() -> Net:
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        for bn in (net.block.bn, net.norm):
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
            bn.running_mean.uniform_(-1.0, 1.0)
            bn.running_var.uniform_(0.5, 2.0)
    return net


def _export(path: Path, dynamo: bool, module=None, shape=(1, 3, 8, 8)) -> Path:
    module = module if module is not None else _net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(*shape),), str(path), dynamo=dynamo, verbose=False)
    return path


def _with_model_metadata(path: Path, props: dict[str, str]) -> None:
    model = onnx.load(str(path))
    helper.set_model_props(model, props)
    onnx.save_model(model, str(path))


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exports")
    legacy = _export(folder / "legacy.onnx", dynamo=False)
    _with_model_metadata(legacy, {"imgsz": "[8, 8]", "task": "classify"})
    dynamo = _export(folder / "dynamo.onnx", dynamo=True)
    return {"legacy": legacy, "dynamo": dynamo}


def _initializers(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _check_values(model: ir.Model, path: Path) -> None:
    expected = _initializers(path)
    for _, param in model.params():
        array = param.array()
        assert array.dtype == expected[param.tensor_name].dtype
        assert array.shape == param.shape
        np.testing.assert_array_equal(array, expected[param.tensor_name])


# --------------------------------------------------------------------------- real exports


def test_legacy_export_layers_params_and_hints(exports):
    model = load_onnx(exports["legacy"])
    assert model.format == "onnx" and model.producer.startswith("pytorch ")
    assert model.metadata == {"imgsz": "[8, 8]", "task": "classify"}
    assert model.details["opset"]["ai.onnx"] >= 17 and model.details["external_data"] is False
    assert [(i.name, i.shape, i.dtype) for i in model.inputs] == [("input.1", (1, 3, 8, 8), "float32")]

    layers = model.param_layers()
    assert [(layer.op_type, layer.kind) for layer in layers] == [
        ("Conv", ir.CONV), ("BatchNormalization", ir.BATCHNORM), ("Gemm", ir.LINEAR)
    ]  # fmt: skip
    conv, norm, fc = layers
    assert conv.name == "/block/conv/Conv" and conv.index < norm.index < fc.index
    assert {role: p.shape for role, p in conv.params.items()} == {"weight": (4, 3, 3, 3), "bias": (4,)}
    assert conv.params["weight"].tensor_name.startswith("onnx::Conv_")  # the folded, anonymous tensor
    assert conv.hints == ("block.conv",)  # anonymous initializer names are not hints
    assert conv.attrs["pads"] == [1, 1, 1, 1] and conv.attrs["group"] == 1
    assert list(norm.params) == ["weight", "bias", "running_mean", "running_var"]
    assert norm.hints[0] == "norm" and "norm.running_var" in norm.hints
    assert norm.attrs["epsilon"] == 1e-05  # the float32 attribute, shown as given
    assert list(fc.params) == ["weight", "bias"] and fc.params["weight"].shape == (5, 4)
    assert fc.hints[:2] == ("fc", "fc.weight") and fc.attrs["transB"] == 1
    assert all(p.dtype == "float32" for _, p in model.params())
    _check_values(model, exports["legacy"])


def test_dynamo_export_layers_params_hints_and_metadata(exports):
    model = load_onnx(exports["dynamo"])
    layers = model.param_layers()
    assert [layer.kind for layer in layers] == [ir.CONV, ir.BATCHNORM, ir.LINEAR]
    conv, norm, fc = layers
    # The rewriter folded the BatchNorm into the Conv: the scope is the BatchNorm's, the
    # initializers keep the conv's torch names.
    assert conv.metadata["pkg.onnxscript.rewriter.rule_name"].startswith("FuseBatchNormIntoConv")
    assert "pkg.torch.onnx.class_hierarchy" in conv.metadata
    assert conv.hints[:2] == ("block.bn", "block.conv")
    assert conv.params["weight"].tensor_name == "block.conv.weight"
    assert conv.params["bias"].tensor_name == "block.conv.weight_bias"
    assert norm.hints[0] == "norm" and norm.params["running_var"].tensor_name == "norm.running_var"
    assert fc.hints[0] == "fc" and fc.params["bias"].tensor_name == "fc.bias"
    _check_values(model, exports["dynamo"])


def test_onnxslim_keeps_module_paths_in_hints(tmp_path):
    onnxslim = pytest.importorskip("onnxslim")

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 6)

        def forward(self, x):
            return self.proj(x)

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
            self.head = Head()

        def forward(self, x):
            return self.head(self.body(x).flatten(2).transpose(1, 2))

    exported = _export(tmp_path / "plain.onnx", dynamo=False, module=Model().eval(), shape=(1, 3, 4, 4))
    slimmed = tmp_path / "slim.onnx"
    onnxslim.slim(str(exported), str(slimmed))
    model = load_onnx(slimmed)
    conv, linear = model.param_layers()
    assert conv.hints[0] == "body.0"
    # onnxslim fused MatMul+Add into a Gemm named after its output, with a new weight.
    assert linear.op_type == "Gemm" and linear.name.endswith("_output_0")
    assert linear.hints[0] == "head.proj"
    assert linear.params["weight"].tensor_name.startswith("/head/proj/")
    _check_values(model, slimmed)


@pytest.mark.parametrize(
    ("name", "scope"),
    [
        ("/model.0/stem1/conv/Conv", "model.0.stem1.conv"),
        ("/m/model/model.0/conv/Conv", "m.model.0.conv"),
        ("/model.22/cv2.0/cv2.0.0/conv/Conv", "model.22.cv2.0.0.conv"),
        ("/model.2/conv_1/Conv", "model.2.conv_1"),
        ("/model.0/conv/Conv_output_0", "model.0.conv"),
        ("/fc/Gemm", "fc"),
        ("/Constant", None),
        ("node_Conv_76", None),
    ],
)
def test_legacy_scope_paths(name, scope):
    assert legacy_scope(name) == scope


# --------------------------------------------------------------------------- hand-made graphs


def _save(tmp_path: Path, nodes, initializers, name="model.onnx", inputs=None, outputs=None, **save) -> Path:
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])]
    outputs = outputs or [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    onnx.save_model(model, str(path), **save)
    return path


def test_constant_and_identity_chains_and_shared_initializer(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((2, 3, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(2).astype(np.float32)
    shared = rng.standard_normal((4, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Identity", ["w"], ["w_1"], name="id_a"),
        helper.make_node("Identity", ["w_1"], ["w_2"], name="id_b"),
        helper.make_node("Constant", [], ["b_const"], value=numpy_helper.from_array(bias)),
        helper.make_node("Conv", ["x", "w_2", "b_const"], ["y"], name="conv"),
        helper.make_node("MatMul", ["y", "m"], ["z1"], name="mm"),
        helper.make_node("MatMul", ["z1", "m"], ["z2"], name="mm"),
        helper.make_node("Constant", [], ["shape"], value_ints=[1, -1]),
        helper.make_node("Reshape", ["z2", "shape"], ["out"]),
    ]
    path = _save(tmp_path, nodes, [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(shared, "m")])
    model = load_onnx(path)
    names = [layer.name for layer in model.layers]
    assert names == ["id_a", "id_b", "Constant_2", "conv", "mm", "mm#2", "Constant_6", "Reshape_7"]
    conv = model.layer("conv")
    assert conv.params["weight"].tensor_name == "w"  # through two Identity nodes
    assert conv.params["bias"].tensor_name == "b_const"  # a Constant node's output
    np.testing.assert_array_equal(conv.params["weight"].array(), weight)
    np.testing.assert_array_equal(conv.params["bias"].array(), bias)
    assert model.layer("id_a").params == {} and model.layer("Constant_2").kind == ir.CONSTANT
    first, second = model.layer("mm"), model.layer("mm#2")
    assert first.kind == second.kind == ir.LINEAR
    assert first.params["weight"] is second.params["weight"]
    assert sum(1 for _ in model.params()) == 3 and model.num_parameters == weight.size + bias.size + shared.size
    assert model.layer("Reshape_7").params == {}  # shape constants are not params
    assert model.inputs[0].shape == ("batch", 3, 4, 4) and model.outputs[0].shape is None


def test_kinds_roles_and_domains(tmp_path):
    def init(name, *shape, dtype=np.float32):
        return numpy_helper.from_array(np.ones(shape, dtype), name)

    nodes = [
        helper.make_node(
            "FusedConv", ["x", "fw", "fb"], ["c"], name="fused", domain="com.microsoft", activation="Relu"
        ),
        helper.make_node("PRelu", ["c", "slope"], ["p"], name="prelu"),
        helper.make_node("Mul", ["p", "half"], ["h"], name="mul_scalar"),
        helper.make_node("Add", ["h", "channel_bias"], ["a"], name="add_vector"),
        helper.make_node("Reshape", ["a", "shape"], ["r"], name="reshape"),
        helper.make_node("LayerNormalization", ["r", "ln.weight", "ln.bias"], ["n"], name="ln", epsilon=1e-5),
        helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
        helper.make_node("MatMul", ["n", "e"], ["out"], name="matmul_activations"),
    ]
    initializers = [
        init("fw", 2, 3, 1, 1), init("fb", 2), init("slope", 2, 1, 1), init("half"), init("channel_bias", 2, 1, 1),
        init("shape", 2, dtype=np.int64), init("ln.weight", 32), init("ln.bias", 32), init("table", 10, 32),
        init("ids", 3, dtype=np.int64),
    ]  # fmt: skip
    model = load_onnx(_save(tmp_path, nodes, initializers))
    summary = {layer.name: (layer.op_type, layer.kind, list(layer.params)) for layer in model.layers}
    assert summary == {
        "fused": ("com.microsoft.FusedConv", ir.CONV, ["weight", "bias"]),
        "prelu": ("PRelu", ir.ACTIVATION, ["weight"]),
        "mul_scalar": ("Mul", ir.ELEMENTWISE, []),  # a scalar: not a param
        "add_vector": ("Add", ir.ELEMENTWISE, ["bias"]),
        "reshape": ("Reshape", "reshape", []),  # a shape: not a param
        "ln": ("LayerNormalization", ir.LAYERNORM, ["weight", "bias"]),
        "embed": ("Gather", ir.EMBEDDING, ["weight"]),  # small int indices are not params
        "matmul_activations": ("MatMul", "matmul", []),
    }
    assert model.layer("fused").attrs == {"activation": "Relu"}
    assert model.layer("ln").hints == ("ln", "ln.weight", "ln.bias")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("external", [False, True])
def test_half_precision_initializers(tmp_path, dtype, external):
    weight = np.linspace(-2, 2, 24, dtype=np.float32).reshape(2, 3, 2, 2).astype(getattr(ml_dtypes, dtype, dtype))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    save = dict(save_as_external_data=True, location="weights.bin", size_threshold=0) if external else {}
    path = _save(tmp_path, nodes, [numpy_helper.from_array(weight, "w")], **save)
    param = load_onnx(path).layer("conv").params["weight"]
    assert param.dtype == dtype and param.shape == (2, 3, 2, 2)
    array = param.array()
    assert array.dtype == weight.dtype
    np.testing.assert_array_equal(array, weight)


# --------------------------------------------------------------------------- external data


def _external_model(tmp_path: Path) -> tuple[Path, np.ndarray]:
    weight = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["y"], name="/conv/Conv"),
        helper.make_node("Relu", ["y"], ["z"], name="/act/Relu"),
    ]
    initializers = [
        numpy_helper.from_array(weight, "conv.weight"),
        numpy_helper.from_array(np.ones(2, np.float32), "conv.bias"),
    ]
    path = _save(
        tmp_path, nodes, initializers,
        save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0,
    )  # fmt: skip
    return path, weight


def test_external_data_is_read_lazily(tmp_path):
    path, weight = _external_model(tmp_path)
    model = load_onnx(path)
    assert model.details["external_data"] is True
    conv = model.layer("/conv/Conv")
    assert conv.hints == ("conv", "conv.weight", "conv.bias")
    assert all(param._array is None for param in conv.params.values())
    np.testing.assert_array_equal(conv.params["weight"].array(), weight)
    assert conv.params["bias"]._array is None  # reading one param reads nothing else
    np.testing.assert_array_equal(conv.params["bias"].array(), np.ones(2, np.float32))


def test_missing_external_data_file(tmp_path):
    path, _ = _external_model(tmp_path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(InputError) as caught:
        load_onnx(path)
    message = str(caught.value)
    assert "'weights.bin'" in message and "not found" in message and "conv.weight" in message
    assert "\n" not in message


def test_truncated_external_data_file(tmp_path):
    path, _ = _external_model(tmp_path)
    data = tmp_path / "weights.bin"
    data.write_bytes(data.read_bytes()[:50])
    with pytest.raises(InputError, match="weights.bin.*too short"):
        load_onnx(path)


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_constant_with_external_data_is_checked_and_read(tmp_path, size):
    """A Constant node's value may be external data too: checked like an initializer's
    when the model loads (inside the model's folder, long enough), read when asked; in a
    large file, whose nodes stay bytes until read, as in a small one."""
    values = np.arange(6, dtype=np.float32)
    (tmp_path / "constant.bin").write_bytes(bytes(8) + values.tobytes())
    value = TensorProto(name="c_value", data_type=TensorProto.FLOAT, dims=[6])
    value.data_location = TensorProto.EXTERNAL
    for key, entry in (("location", "constant.bin"), ("offset", "8"), ("length", str(values.nbytes))):
        value.external_data.add(key=key, value=entry)
    rows = 600 if size == "large" else 2  # past MIN_BYTES: the initializer's bytes and the nodes stay in the file
    weight = np.ones((rows, 600), dtype=np.float32)
    nodes = [
        helper.make_node("Constant", [], ["c"], value=value, name="const"),
        helper.make_node("Add", ["x", "c"], ["y"], name="add"),
        helper.make_node("MatMul", ["y", "w"], ["z"], name="mm"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])]
    path = _save(tmp_path, nodes, [numpy_helper.from_array(weight, "w")], inputs=inputs)
    model = load_onnx(path)
    np.testing.assert_array_equal(model.layer("add").params["bias"].array(), values)
    assert model.details["external_data"] is True and str(tmp_path / "constant.bin") in model.files

    value.external_data[0].value = "../constant.bin"
    nodes[0] = helper.make_node("Constant", [], ["c"], value=value, name="const")
    path = _save(tmp_path, nodes, [numpy_helper.from_array(weight, "w")], inputs=inputs)
    with pytest.raises(InputError, match=r"external data file '../constant.bin' \(constant 'c'\) is outside"):
        load_onnx(path)


@pytest.mark.parametrize("size", ["small", "large"])
def test_a_constant_named_like_an_initializer_reads_only_its_own_bytes(tmp_path, size):
    """A crafted graph whose Constant node outputs an initializer's name, with its value
    in external data: the initializer reads its own bytes (in the proto, or left in the
    large file), and the Constant reads its external data; neither reads the other's."""
    rows = 300 if size == "large" else 2  # past MIN_BYTES: the initializer's bytes stay in the file
    honest = np.arange(rows * 4, dtype=np.float32).reshape(rows, 1, 2, 2)
    other = np.full_like(honest, 7.0)
    (tmp_path / "other.bin").write_bytes(other.tobytes())
    value = TensorProto(name="value", data_type=TensorProto.FLOAT, dims=list(other.shape))
    value.data_location = TensorProto.EXTERNAL
    for key, entry in (("location", "other.bin"), ("offset", "0"), ("length", str(other.nbytes))):
        value.external_data.add(key=key, value=entry)
    padding = np.zeros((300, 1000), np.float32) if size == "large" else np.zeros(1, np.float32)
    nodes = [
        helper.make_node("Constant", [], ["W"], value=value, name="const"),
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("Add", ["y", "pad"], ["z"], name="add"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])]
    initializers = [numpy_helper.from_array(honest, "W"), numpy_helper.from_array(padding, "pad")]
    path = _save(tmp_path, nodes, initializers, inputs=inputs)
    assert (path.stat().st_size > in_file_data.MIN_BYTES) == (size == "large")
    model = load_onnx(path)
    np.testing.assert_array_equal(model.layer("conv").params["weight"].array(), honest)
    by_origin = {stored.origin: stored.param for stored in model.stored if stored.param.tensor_name == "W"}
    np.testing.assert_array_equal(by_origin["initializer"].array(), honest)
    np.testing.assert_array_equal(by_origin["Constant"].array(), other)


# --------------------------------------------------------------------------- sniffing and bad files


def _head(path: Path) -> bytes:
    return path.read_bytes()[:4096]


def test_sniff_accepts_onnx_under_any_name(exports, tmp_path):
    for path in exports.values():
        assert looks_like_onnx(path, _head(path))
    disguised = tmp_path / "model.pt"
    disguised.write_bytes(exports["legacy"].read_bytes())
    assert looks_like_onnx(disguised, _head(disguised))
    tiny, _ = _external_model(tmp_path)
    assert looks_like_onnx(tiny, _head(tiny))


def test_sniff_rejects_other_files(tmp_path):
    checkpoint = tmp_path / "model.onnx"
    torch.save({"weight": torch.zeros(3)}, checkpoint)  # a zip
    pickled = tmp_path / "legacy.pt"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    text = tmp_path / "notes.onnx"
    text.write_text('"rated": 5 stars (see: "README") with notes\n' * 40)
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(np.random.default_rng(1).bytes(8192))
    for path in (checkpoint, pickled, text, noise):
        assert not looks_like_onnx(path, _head(path)), path.name
    for seed in range(200):
        data = np.random.default_rng(seed).bytes(2048)
        noise.write_bytes(data)
        assert not looks_like_onnx(noise, data)


def test_truncated_and_garbage_files_are_input_errors(exports, tmp_path):
    truncated = tmp_path / "half.onnx"
    data = exports["legacy"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not a model \x00" * 30)
    for path in (truncated, garbage):
        with pytest.raises(InputError) as caught:
            load_onnx(path)
        assert str(caught.value).startswith(str(path)) and "not a valid ONNX model" in str(caught.value)
        assert "\n" not in str(caught.value)


def test_model_without_graph_is_an_input_error(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(onnx.ModelProto(ir_version=8).SerializeToString())
    with pytest.raises(InputError, match="no graph"):
        load_onnx(path)


def test_hook_contributes_the_loader():
    (loader,) = list(graphinspect_loaders())
    assert loader.name == "onnx" and loader.formats == ("onnx",)
    assert loader.load is load_onnx and loader.sniff is looks_like_onnx


def test_graph_structure_agrees_with_onnx_graphsurgeon(exports, tmp_path):
    """The loader reads producers from the nodes itself (graphsurgeon's import_onnx took
    1.9 s of a 10k-block diff); graphsurgeon, a test tool now, is the oracle: the same
    nodes in the same order, each input produced by the same nodes."""
    gs = pytest.importorskip("onnx_graphsurgeon")
    from plugins.loaders.onnx.layers import GraphIndex
    from plugins.loaders.onnx.nodes import GraphNodes

    repeated = _save(
        tmp_path,
        [
            helper.make_node("Identity", ["x"], ["a"], name="first"),
            helper.make_node("Identity", ["x"], ["a"], name="again"),  # a second producer of "a"
            helper.make_node("Resize", ["a", "", "", "sizes"], ["out"], name="resize"),  # omitted inputs
        ],
        [numpy_helper.from_array(np.array([1, 3, 8, 8], dtype=np.int64), "sizes")],
    )
    for path in (*exports.values(), repeated):
        proto = onnx.load(str(path))
        imported = gs.import_onnx(proto)
        # Both ways the loader has the nodes: parsed with the graph, and as their bytes.
        for nodes in (GraphNodes.of_graph(proto.graph), _encoded_nodes(proto.graph)):
            index = GraphIndex(nodes)
            ours = list(index.nodes)
            assert [(node.name, node.op_type) for node in ours] == [(node.name, node.op) for node in imported.nodes]
            for node, gs_node in zip(ours, imported.nodes):
                assert list(node.input) == [tensor.name for tensor in gs_node.inputs]
                for name, tensor in zip(node.input, gs_node.inputs):
                    producers = [index.nodes.node(position).name for position in index.producers(name)] if name else []
                    assert producers == [producer.name for producer in tensor.inputs], (path.name, name)
    layers = load_onnx(repeated).layers
    assert [layer.name for layer in layers] == ["first", "again", "resize"]
    assert list(layers[2].inputs) == ["a", "", "", "sizes"]


def _encoded_nodes(graph):
    """The graph's nodes as :mod:`.in_file_data` keeps a large file's: GraphProto node fields."""
    from array import array

    from plugins.loaders.onnx.nodes import GraphNodes

    encoded, ends = b"", array("Q")
    for node in graph.node:
        encoded += onnx.GraphProto(node=[node]).SerializeToString()
        ends.append(len(encoded))
    return GraphNodes.encoded(encoded, ends)


def test_initializer_bytes_stay_in_a_large_file(tmp_path):
    """Past 1 MiB, the model is parsed without its initializers' raw_data, which is read
    from the file when asked: the same structure, the same values, nothing else lost."""
    from plugins.loaders.onnx.in_file_data import MIN_BYTES, parse_leaving_data_in_file

    rng = np.random.default_rng(1)
    big = rng.standard_normal((600, 600)).astype(np.float32)
    half = rng.standard_normal((600, 4)).astype(np.float16)
    listed = helper.make_tensor("listed", TensorProto.FLOAT, [3], [1.5, -2.0, 0.25])  # float_data, not raw
    nodes = [
        helper.make_node("MatMul", ["x", "big"], ["h"], name="mm"),
        helper.make_node("Cast", ["half"], ["half32"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("MatMul", ["h", "half32"], ["y"], name="mm2"),
        helper.make_node("Add", ["y", "listed"], ["out"], name="add"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 600])]
    path = _save(
        tmp_path,
        nodes,
        [numpy_helper.from_array(big, "big"), numpy_helper.from_array(half, "half"), listed],
        inputs=inputs,
    )
    assert path.stat().st_size > MIN_BYTES
    stripped, in_file = parse_leaving_data_in_file(path)
    full = onnx.load(str(path))
    assert set(in_file.slices) == {"big", "half"}
    with path.open("rb") as stream:
        raw = stream.read()
    for tensor in full.graph.initializer:
        if tensor.name in in_file.slices:
            offset, length = in_file.slices[tensor.name]
            assert raw[offset : offset + length] == tensor.raw_data
            tensor.ClearField("raw_data")
    # The nodes are kept apart, as their bytes: parsed back, the same nodes.
    serialized = [node.SerializeToString() for node in full.graph.node]
    assert [node.SerializeToString() for node in in_file.nodes] == serialized
    assert in_file.nodes.node(2) == full.graph.node[2]
    stripped.graph.node.extend(in_file.nodes)
    assert stripped == full  # everything else, byte for byte the same message
    model = load_onnx(path)
    np.testing.assert_array_equal(model.layer("mm").params["weight"].array(), big)
    assert model.layer("mm").params["weight"].array().dtype == np.float32
    np.testing.assert_array_equal(model.layer("add").params["bias"].array(), [1.5, -2.0, 0.25])
    stored = {tensor.param.tensor_name: tensor.param for tensor in model.stored}
    np.testing.assert_array_equal(stored["half"].array(), half)

    # Cut short: the same one-line error as onnx.load gives.
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputError, match="is not a valid ONNX model \\(truncated or corrupted"):
        load_onnx(cut)


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
def test_parsing_a_large_file_keeps_little_of_it_resident(tmp_path, monkeypatch):
    """Walking the file touches a page of every initializer; the walk gives the map's
    pages back as it goes, so at most about DROP_BYTES of the file is resident at once,
    and the parse is the same."""
    from plugins.loaders.onnx import in_file_data
    from tests.loaders.test_restricted_unpickler import resident_bytes

    drop_bytes = 2**20
    monkeypatch.setattr(in_file_data, "DROP_BYTES", drop_bytes)
    rng = np.random.default_rng(2)
    count = 4000
    weights = [rng.standard_normal((16, 64)).astype(np.float32) for _ in range(count)]  # 16 MiB, 4 KiB each
    inputs = ["x", *(f"h{i}" for i in range(count - 1))]
    nodes = [helper.make_node("Add", [inputs[i], f"w{i}"], [f"h{i}"], name=f"add{i}") for i in range(count)]
    path = _save(tmp_path, nodes, [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)])
    peaks = []
    real_drop = in_file_data._drop_pages

    def measured(data):
        peaks.append(resident_bytes(path))
        real_drop(data)

    monkeypatch.setattr(in_file_data, "_drop_pages", measured)
    stripped, in_file = in_file_data.parse_leaving_data_in_file(path)
    assert len(peaks) >= 2 * (path.stat().st_size // drop_bytes) - 2  # the graph's walk, then the tensors'
    # A fault may map more than its page: up to a 2 MiB folio of the page cache at each end.
    assert max(peaks) <= drop_bytes + 4 * 2**20 < path.stat().st_size // 3
    assert len(in_file.slices) == count and len(stripped.graph.initializer) == count
    model = load_onnx(path)
    np.testing.assert_array_equal(model.layer(f"add{count - 1}").params["bias"].array(), weights[-1])


@pytest.mark.parametrize("size", ["inline", "in_file"])
def test_a_loaded_model_keeps_no_part_of_the_parsed_file(tmp_path, size):
    """Any part of a parsed protobuf keeps the whole parse in memory; once loaded, the
    model holds none (initializers in the file or inline, Constant values, shapes), and
    every value still reads as onnx reads it."""
    rng = np.random.default_rng(3)
    rows = 1500 if size == "in_file" else 8  # past 1 MiB, the initializers' bytes stay in the file
    weights = [rng.standard_normal((rows, 64)).astype(np.float32) for _ in range(3)]
    nodes = []
    for i in range(3):
        nodes.append(
            helper.make_node(
                "Constant",
                [],
                [f"shape{i}"],
                name=f"shape{i}",
                value=numpy_helper.from_array(np.array([-1, 64], np.int64)),
            )
        )
        nodes.append(
            helper.make_node("Reshape", ["x" if i == 0 else f"r{i - 1}", f"shape{i}"], [f"s{i}"], name=f"reshape{i}")
        )
        nodes.append(helper.make_node("Gemm", [f"s{i}", f"w{i}"], [f"r{i}"], name=f"gemm{i}", transB=1))
    path = _save(tmp_path, nodes, [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)])

    from google.protobuf.message import Message

    def protos() -> int:
        return sum(issubclass(type(item), Message) for item in gc.get_objects())

    load_onnx(path)  # modules imported on first use may make messages of their own
    gc.collect()
    before = protos()
    model = load_onnx(path)
    gc.collect()
    assert protos() == before
    from plugins.loaders.onnx.nodes import GraphNodes

    assert not any(type(item) is GraphNodes for item in gc.get_objects())  # nor the nodes' bytes
    for i, weight in enumerate(weights):
        np.testing.assert_array_equal(model.layer(f"gemm{i}").params["weight"].array(), weight)
    stored = {tensor.param.tensor_name: tensor.param for tensor in model.stored}
    np.testing.assert_array_equal(stored["shape1"].array(), [-1, 64])


def test_nodes_left_in_a_large_file_load_as_nodes_parsed_whole(tmp_path, monkeypatch):
    """A large file's nodes are parsed a chunk at a time, and a Constant again on its own
    when an input resolves to it: the model is the one the whole parse gives, for every
    way a node can be a constant, a repeat or odd, with chunks of a few nodes and nodes
    larger than a chunk."""
    from plugins.loaders.onnx import in_file_data, nodes
    from tests.loaders.test_restricted_unpickler import assert_same_model

    rng = np.random.default_rng(4)
    big = rng.standard_normal((600, 600)).astype(np.float32)  # past MIN_BYTES, left in the file
    small = rng.standard_normal((4, 4)).astype(np.float32)
    inline = rng.standard_normal((70, 300)).astype(np.float32)  # a Constant larger than a chunk
    then_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(small, "inner"))],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [4, 4])],
        initializer=[numpy_helper.from_array(small, "body_init")],
    )
    graph_nodes = [
        helper.make_node("Identity", ["big"], ["big_1"], name="id_a"),
        helper.make_node("Identity", ["big_1"], ["big_2"], name="id_b"),
        helper.make_node("MatMul", ["x", "big_2"], ["h"], name="mm"),
        helper.make_node("Constant", [], ["c_inline"], value=numpy_helper.from_array(inline)),
        helper.make_node("Constant", [], ["c_floats"], value_floats=[1.0, 2.0, 3.0]),
        helper.make_node("Constant", [], ["c_int"], value_int=7, name="same"),
        helper.make_node("Constant", [], ["small"], value=numpy_helper.from_array(2 * small), name="same"),
        helper.make_node("Identity", ["c_inline"], ["c_inline_1"], name="id_c", domain="custom"),
        helper.make_node("MatMul", ["h", "small"], ["h2"], name="mm_small"),  # the initializer, not the Constant
        helper.make_node("MatMul", ["h2", "c_inline"], ["h3"], name="mm_inline"),
        helper.make_node("Add", ["h3", "c_floats"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["twice"]),
        helper.make_node("Relu", ["a"], ["twice"]),  # a second producer of "twice"
        helper.make_node("Add", ["twice", "c_inline_1"], ["b"], name="add_custom_identity"),
        helper.make_node("If", ["cond"], ["branch"], then_branch=then_branch, else_branch=then_branch, name="if"),
        *(helper.make_node("Relu", [f"r{i}" if i else "b"], [f"r{i + 1}"]) for i in range(50)),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 600])]
    path = _save(
        tmp_path,
        graph_nodes,
        [numpy_helper.from_array(big, "big"), numpy_helper.from_array(small, "small")],
        inputs=inputs,
    )
    monkeypatch.setattr(nodes, "CHUNK_BYTES", 64)
    in_parts = load_onnx(path)
    monkeypatch.setattr(in_file_data, "MIN_BYTES", 2**40)
    whole = load_onnx(path)
    assert_same_model(in_parts, whole, "nodes in chunks")
    assert [layer.inputs for layer in in_parts.layers] == [layer.inputs for layer in whole.layers]
    assert [layer.outputs for layer in in_parts.layers] == [layer.outputs for layer in whole.layers]

    def stored(model):
        read = [tensor.origin != "subgraph" for tensor in model.stored]  # a body's tensors are not read
        return [
            (tensor.param.tensor_name, tensor.origin, tensor.uses, tensor.param.array() if readable else None)
            for tensor, readable in zip(model.stored, read)
        ]

    for ours, theirs in zip(stored(in_parts), stored(whole), strict=True):
        assert ours[:3] == theirs[:3]
        np.testing.assert_array_equal(ours[3], theirs[3])
    assert [tensor.origin for tensor in in_parts.stored].count("subgraph") == 4  # both branches' two
    np.testing.assert_array_equal(in_parts.layer("mm").params["weight"].array(), big)
    np.testing.assert_array_equal(in_parts.layer("mm_small").params["weight"].array(), small)
    np.testing.assert_array_equal(in_parts.layer("mm_inline").params["weight"].array(), inline)
    assert "weight" not in in_parts.layer("add_custom_identity").params  # not followed through a custom domain
    assert in_parts.details["subgraphs"] == 1


def test_an_edge_is_one_string_and_a_folder_one_tuple(tmp_path):
    """Memory per node (a 100k-node graph keeps 100k layers): a consumer's input is the
    very string its producer's output is, and layers of one name folder share the tuple
    of hints worked out for it."""
    nodes = [
        helper.make_node("Relu", ["x"], ["/m/a/Relu_output_0"], name="/m/a/Relu"),
        helper.make_node("Relu", ["/m/a/Relu_output_0"], ["/m/a/Relu_1_output_0"], name="/m/a/Relu_1"),
    ]
    first, second = load_onnx(_save(tmp_path, nodes, [])).layers
    assert second.inputs == first.outputs and second.inputs[0] is first.outputs[0]
    assert first.hints == ("m.a",) and second.hints is first.hints


def test_nodes_apart_from_each_other_in_the_file(tmp_path):
    """A writer may put other graph fields between nodes (protobuf merges repeated
    fields in order): the nodes kept as bytes are still the graph's, in its order."""
    from plugins.loaders.onnx.in_file_data import _encode_varint, parse_leaving_data_in_file

    weight = np.arange(600 * 600, dtype=np.float32).reshape(600, 600)
    first = helper.make_node("MatMul", ["x", "w"], ["h"], name="mm")
    second = helper.make_node("Relu", ["h"], ["y"], name="relu")
    pieces = [
        onnx.GraphProto(node=[first]),
        onnx.GraphProto(initializer=[numpy_helper.from_array(weight, "w")]),
        onnx.GraphProto(
            name="g", node=[second], input=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 600])]
        ),
        onnx.GraphProto(output=[helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
    ]
    graph = b"".join(piece.SerializeToString() for piece in pieces)
    head = helper.make_model(onnx.GraphProto(), opset_imports=[helper.make_opsetid("", 17)])
    head.ClearField("graph")
    path = tmp_path / "apart.onnx"
    path.write_bytes(head.SerializeToString() + b"\x3a" + _encode_varint(len(graph)) + graph)  # field 7, the graph
    expected = onnx.load(str(path))
    assert [node.name for node in expected.graph.node] == ["mm", "relu"]
    _, in_file = parse_leaving_data_in_file(path)
    assert [node.SerializeToString() for node in in_file.nodes] == [
        first.SerializeToString(),
        second.SerializeToString(),
    ]
    model = load_onnx(path)
    assert [layer.name for layer in model.layers] == ["mm", "relu"]
    np.testing.assert_array_equal(model.layer("mm").params["weight"].array(), weight)


def test_a_corrupt_node_left_in_a_large_file_is_one_line(tmp_path):
    """A node left in the file is parsed only when the loader reads it: a broken one gives
    the same one-line error as a broken file."""
    weight = np.ones((600, 600), dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm_node")]
    path = _save(tmp_path, nodes, [numpy_helper.from_array(weight, "w")])
    raw = path.read_bytes()
    name = raw.index(b"mm_node")
    # The node's name field (tag 0x1A, length 7) becomes a varint field of a name's number:
    # the graph's framing holds, the node does not parse.
    assert raw[name - 2 : name] == b"\x1a\x07"
    path.write_bytes(raw[: name - 2] + b"\x18\xff" + raw[name:])
    with pytest.raises(InputError, match=r"model.onnx: is not a valid ONNX model \(truncated or corrupted"):
        load_onnx(path)


def test_two_initializers_of_one_name_leave_the_file_to_onnx(tmp_path):
    from plugins.loaders.onnx.in_file_data import parse_leaving_data_in_file

    weight = np.ones((600, 600), dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    path = _save(tmp_path, nodes, [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(2 * weight, "w")])
    assert parse_leaving_data_in_file(path) is None


# --------------------------------------------------------------------------- one descriptor per model file


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _large_chain(tmp_path: Path, count: int = 12) -> tuple[Path, list[np.ndarray]]:
    """``count`` MatMuls, each with its own 300x300 weight: a file past MIN_BYTES whose
    weights stay in the file."""
    rng = np.random.default_rng(2)
    weights = [rng.standard_normal((300, 300)).astype(np.float32) for _ in range(count)]
    nodes = [
        helper.make_node(
            "MatMul", ["x" if index == 0 else f"h{index - 1}", f"w{index}"], [f"h{index}"], name=f"mm{index}"
        )
        for index in range(count)
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 300])]
    initializers = [numpy_helper.from_array(weight, f"w{index}") for index, weight in enumerate(weights)]
    return _save(tmp_path, nodes, initializers, inputs=inputs), weights


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
def test_in_file_weights_are_read_from_one_descriptor_closed_with_the_model(tmp_path, monkeypatch):
    """Every weight left in the file is read with pread from the one descriptor the file
    was parsed with (no open per read), and that descriptor goes with the model: when
    the last reference to it is dropped, without waiting for the cycle collector."""
    path, weights = _large_chain(tmp_path)
    before = _open_descriptors()
    model = load_onnx(path)
    assert _open_descriptors() == before + 1

    opened = []
    real_open, real_os_open = open, os.open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a) or real_os_open(*a, **k))
    for index, weight in enumerate(weights):
        np.testing.assert_array_equal(model.layer(f"mm{index}").params["weight"].array(), weight)
    monkeypatch.undo()
    assert opened == []
    assert _open_descriptors() == before + 1

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        del model
        assert _open_descriptors() == before
    finally:
        if was_enabled:
            gc.enable()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")
def test_a_failed_load_closes_the_descriptor_at_once(tmp_path):
    path, _ = _large_chain(tmp_path)
    proto = onnx.load(str(path))
    missing = helper.make_tensor("far", TensorProto.FLOAT, [2], [0.0, 0.0])
    missing.data_location = TensorProto.EXTERNAL
    missing.external_data.add(key="location", value="nowhere.bin")
    proto.graph.initializer.append(missing)
    onnx.save(proto, str(path))
    before = _open_descriptors()
    with pytest.raises(InputError, match="nowhere.bin"):
        load_onnx(path)
    assert _open_descriptors() == before  # while the exception and its frames still live


def test_in_file_weights_come_from_the_parsed_file_and_refuse_a_truncated_one(tmp_path):
    path, weights = _large_chain(tmp_path)
    model = load_onnx(path)
    # Another file put in its place is not read: the bytes come from the file that was parsed.
    replacement = tmp_path / "other.onnx"
    replacement.write_bytes(b"\0" * path.stat().st_size)
    os.replace(replacement, path)
    np.testing.assert_array_equal(model.layer("mm0").params["weight"].array(), weights[0])

    (tmp_path / "again").mkdir()
    path, weights = _large_chain(tmp_path / "again")
    model = load_onnx(path)
    with open(path, "r+b") as stream:
        stream.truncate(stream.seek(0, 2) // 2)  # after the load: its late weights are gone
    last = model.layer(f"mm{len(weights) - 1}").params["weight"]
    with pytest.raises(
        InputError, match=r"initializer 'w11' cannot be read \(ValueError: the file ends \d+ bytes early"
    ):
        last.array()


def test_a_closed_data_file_refuses_to_read(tmp_path):
    from plugins.loaders.onnx.tensors import DataFile

    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(16)))
    file = DataFile(data, os.open(data, os.O_RDONLY))
    assert file.read(4, 3) == bytes([4, 5, 6])
    with pytest.raises(ValueError, match="ends 4 bytes early"):
        file.read(12, 8)
    file.close()
    file.close()
    assert file.closed
    with pytest.raises(ValueError, match="was closed"):
        file.read(0, 1)


def test_subgraph_bodies_are_counted_and_their_tensors_listed_unread(tmp_path):
    """If/Loop/Scan bodies are not loaded: their top-level nodes are counted in
    ``details["subgraphs"]``, and their initializers and Constant values, at any depth,
    are listed as stored tensors that refuse to be read."""

    def const(name, value):
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(f"{name}_t", TensorProto.FLOAT, [1], [value])
        )

    def body(name, nodes, initializers):
        out = nodes[-1].output[0]
        return helper.make_graph(
            nodes, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1])], initializers
        )

    inner = body(
        "inner",
        [const("i_c", 3.0), helper.make_node("Identity", ["i_w"], ["i_out"])],
        [helper.make_tensor("i_w", TensorProto.FLOAT, [1], [4.0])],
    )
    else_branch = body(
        "else",
        [helper.make_node("If", ["cond"], ["e_out"], then_branch=inner, else_branch=inner)],
        [helper.make_tensor("e_w", TensorProto.FLOAT, [1], [2.0])],
    )
    then_branch = body("then", [const("t_c", 1.0)], [])
    nodes = [
        helper.make_node("Relu", ["x"], ["cond_f"], name="relu"),
        helper.make_node("Cast", ["cond_f"], ["cond"], to=TensorProto.BOOL, name="cast"),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_branch, else_branch=else_branch),
    ]
    path = _save(tmp_path, nodes, [], inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])])
    model = load_onnx(path)
    assert model.details["subgraphs"] == 1
    assert model.layer("if").attrs == {"else_branch": "graph 'else' (1 nodes)", "then_branch": "graph 'then' (1 nodes)"}
    listed = [stored.param.tensor_name for stored in model.stored]
    assert {stored.origin for stored in model.stored} == {"subgraph"}
    # The top node's bodies first (attributes in file order: else, then), then deeper
    # bodies; the inner body is listed once per attribute naming it.
    assert listed == ["e_w", "t_c_t", "i_w", "i_c_t", "i_w", "i_c_t"]
    with pytest.raises(InputError, match="inside a subgraph"):
        model.stored[0].param.array()


def test_attribute_types_are_numbered_as_onnx_numbers_them():
    """The loader reads attribute types by number, without importing onnx's enum."""
    from plugins.loaders.onnx import attributes

    kinds = ("FLOAT", "INT", "STRING", "TENSOR", "GRAPH", "FLOATS", "INTS", "STRINGS", "TENSORS", "GRAPHS")
    for kind in (*kinds, "SPARSE_TENSOR"):
        assert getattr(attributes, kind) == getattr(onnx.AttributeProto, kind), kind

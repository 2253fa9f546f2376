"""The PyTorch loaders: every format, content sniffing, safety refusals, laziness.

Every model is built here with random weights in tmp_path. The Ultralytics-like
checkpoint's classes live in a package written to tmp_path and made unimportable before
loading, as on a machine without ultralytics.
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pluggy
import pytest
import torch
import torch.nn as nn

import plugins.loaders.torch as torch_loader
from inspector import PROJECT_NAME, hookspecs, ir
from inspector.errors import InputError
from inspector.manager import Plugins
from plugins.loaders.torch import (
    load,
    load_safetensors,
    load_torch_export,
    load_torch_save,
    load_torchscript,
    sniff_torch_export,
    sniff_torch_save,
    sniff_torchscript,
)
from plugins.loaders.torch.safetensors import sniff_safetensors
from tests.support import REPO
from tests.support.packages import temporary_package


class Net(nn.Module):
    """Conv + BN + ReLU + Linear, with non-default conv and BN attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(8, eps=1e-3, momentum=0.05)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


def trained_net() -> Net:
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    net.bn.num_batches_tracked.fill_(7)
    return net


def assert_values_equal(model: ir.Model, state_dict: dict) -> None:
    by_key = {param.tensor_name: param for _, param in model.params()}
    assert set(by_key) == set(state_dict)
    for key, tensor in state_dict.items():
        param = by_key[key]
        assert param.shape == tuple(tensor.shape)
        expected = tensor.detach().float().numpy() if tensor.dtype == torch.bfloat16 else tensor.detach().numpy()
        np.testing.assert_array_equal(np.asarray(param.array(), dtype=expected.dtype), expected)


# --------------------------------------------------------------------------- torch.save


def test_state_dict_layers_kinds_shapes_and_values(tmp_path):
    net = trained_net()
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)

    model = load_torch_save(path)

    assert model.format == "pytorch-state-dict"
    assert model.producer.startswith("torch.save (zip)")
    assert model.modules == {}
    assert [(layer.name, layer.kind, layer.op_type) for layer in model.layers] == [
        ("conv", ir.CONV, "Conv2d?"),
        ("bn", ir.BATCHNORM, "BatchNorm?"),
        ("fc", ir.LINEAR, "Linear?"),
    ]
    conv = model.layer("conv")
    assert conv.attrs == {"out_channels": 8, "in_channels_per_group": 2, "kernel_size": (3, 3), "guessed_kind": True}
    assert list(model.layer("bn").params) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert "eps" not in model.layer("bn").attrs
    assert model.layer("bn").params["num_batches_tracked"].dtype == "int64"
    assert conv.params["weight"].dtype == "float32"
    assert conv.hints == ("conv",)
    assert_values_equal(model, net.state_dict())


def test_pickled_module_tree_attrs_buffers_and_values(tmp_path):
    net = trained_net()
    path = tmp_path / "net.pt"
    torch.save(net, path)

    model = load_torch_save(path)

    assert model.format == "pytorch-module"
    assert list(model.modules) == ["", "conv", "bn", "relu", "fc"]
    assert model.modules["conv"] == "torch.nn.modules.conv.Conv2d"
    assert model.modules[""].endswith(".Net")
    assert [layer.name for layer in model.layers] == ["conv", "bn", "fc"]
    conv, bn, fc = model.layers
    assert (conv.kind, conv.op_type) == (ir.CONV, "Conv2d")
    assert conv.attrs["stride"] == (2, 2) and conv.attrs["padding"] == (1, 1)
    assert conv.attrs["groups"] == 2 and conv.attrs["dilation"] == (1, 1)
    assert "training" not in conv.attrs and not any(name.startswith("_") for name in conv.attrs)
    assert (bn.kind, bn.op_type) == (ir.BATCHNORM, "BatchNorm2d")
    assert bn.attrs["eps"] == 1e-3 and bn.attrs["momentum"] == 0.05
    assert list(bn.params) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert bn.params["running_var"].tensor_name == "bn.running_var"
    assert (fc.kind, fc.attrs["in_features"], fc.attrs["out_features"]) == (ir.LINEAR, 8, 5)
    assert bn.hints == ("bn",)
    assert_values_equal(model, net.state_dict())


class Tied(nn.Module):
    """An embedding and an output head sharing one weight."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight


def test_tied_weights_appear_in_both_layers(tmp_path):
    path = tmp_path / "tied.pt"
    torch.save(Tied(), path)

    model = load_torch_save(path)

    assert model.layer("embed").kind == ir.EMBEDDING
    assert model.layer("embed").params["weight"].tensor_name == "embed.weight"
    assert model.layer("head").params["weight"].tensor_name == "head.weight"
    head, embed = model.layer("head").params["weight"], model.layer("embed").params["weight"]
    np.testing.assert_array_equal(head.array(), embed.array())


def test_torch_function_kept_as_attribute_is_an_inert_reference(tmp_path):
    path = tmp_path / "encoder.pt"
    torch.save(nn.TransformerEncoderLayer(16, 2, 32, activation="gelu").eval(), path)

    model = load_torch_save(path)

    assert model.layer("self_attn").kind == ir.ATTENTION
    assert list(model.layer("self_attn").params) == ["in_proj_weight", "in_proj_bias"]
    assert model.layer("self_attn.out_proj").kind == ir.LINEAR
    assert model.layer("norm1").kind == ir.LAYERNORM and model.layer("norm1").attrs["eps"] == 1e-5


def test_legacy_format_state_dict(tmp_path):
    net = trained_net()
    path = tmp_path / "legacy.pt"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)

    assert sniff_torch_save(path, path.read_bytes()[:4096])
    model = load_torch_save(path)

    assert model.format == "pytorch-state-dict"
    assert model.producer == "torch.save (legacy format)"
    assert_values_equal(model, net.state_dict())


# --------------------------------------------------------------------------- checkpoints


ULTRA_SOURCE = textwrap.dedent(
    """
    import torch
    import torch.nn as nn

    class Conv(nn.Module):
        default_act = nn.SiLU()
        def __init__(self, c1, c2, k=1, s=1):
            super().__init__()
            self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
            self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
            self.act = self.default_act

    class Detect(nn.Module):
        def __init__(self, nc, c):
            super().__init__()
            self.nc, self.nl = nc, 1
            self.stride = torch.zeros(1)
            self.cv2 = nn.ModuleList([nn.Sequential(Conv(c, c, 3), nn.Conv2d(c, 4 * 16, 1))])

    class DetectionModel(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [Conv(3, 8, 3, 2), Conv(8, 16, 3, 2), Detect(2, 16)]
            for i, layer in enumerate(layers):
                layer.i, layer.f, layer.type = i, -1, type(layer).__name__
            self.model = nn.Sequential(*layers)
            self.names = {0: "person", 1: "car"}
            self.stride = torch.tensor([8.0, 16.0, 32.0])
            self.yaml = {"nc": 2, "backbone": [[-1, 1, "Conv", [64, 3, 2]]]}
            self.task = "detect"
    """
)


@pytest.fixture
def ultralytics_model(tmp_path):
    """An fp16 DetectionModel whose package is importable only while this fixture builds it."""
    with temporary_package(tmp_path, "fakeultra", "tasks", ULTRA_SOURCE) as (package, tasks):
        torch.manual_seed(0)
        yield tasks.DetectionModel().half().eval(), package


@pytest.mark.parametrize("holder", ["model", "ema"])
def test_ultralytics_like_checkpoint(tmp_path, ultralytics_model, holder):
    module, package = ultralytics_model
    state_dict = module.state_dict()
    checkpoint = {
        "date": "2025-01-01T00:00:00",
        "version": "8.3.0",
        "epoch": -1,
        "best_fitness": 0.5,
        "model": module if holder == "model" else None,
        "ema": module if holder == "ema" else None,
        "optimizer": None,
        "train_args": {"imgsz": 640, "epochs": 3, "model": "yolov8n.yaml"},
    }
    path = tmp_path / "best.pt"
    torch.save(checkpoint, path)
    # The loading side: the package is gone, so only stand-ins can read it.
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name.split(".")[0] == package]:
        del sys.modules[name]
    with pytest.raises(ImportError):
        importlib.import_module(f"{package}.tasks")

    model = load_torch_save(path)

    assert model.format == "pytorch-module"
    assert model.details["wrapper_key"] == holder
    assert model.details["checkpoint_keys"] == list(checkpoint)
    assert model.details["dtype"] == "float16"
    assert model.modules[""] == f"{package}.tasks.DetectionModel"
    assert model.modules["model.0"] == f"{package}.tasks.Conv"
    expected_convs = [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    expected_bns = [name for name, m in module.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert [layer.name for layer in model.layers if layer.op_type == "Conv2d"] == expected_convs
    assert [layer.name for layer in model.layers if layer.op_type == "BatchNorm2d"] == expected_bns
    for layer in model.layers:
        assert all(p.dtype == "float16" for role, p in layer.params.items() if role != "num_batches_tracked")
        if layer.kind == ir.BATCHNORM:
            assert layer.attrs["eps"] == 1e-3 and layer.attrs["momentum"] == 0.03
    assert "model.2.stride" not in {p.tensor_name for _, p in model.params()}  # an attribute, not a buffer
    assert model.metadata["version"] == "8.3.0" and model.metadata["date"] == "2025-01-01T00:00:00"
    assert model.metadata["best_fitness"] == "0.5" and model.metadata["epoch"] == "-1"
    assert json.loads(model.metadata["train_args"])["imgsz"] == 640
    assert model.metadata["imgsz"] == "640"
    assert json.loads(model.metadata["names"]) == {"0": "person", "1": "car"}
    assert json.loads(model.metadata["stride"]) == [8.0, 16.0, 32.0]
    assert json.loads(model.metadata["yaml"])["nc"] == 2
    assert model.metadata["task"] == "detect"
    assert_values_equal(model, state_dict)


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict"])
def test_lightning_like_checkpoints(tmp_path, key):
    net = trained_net()
    path = tmp_path / "last.ckpt"
    checkpoint = {
        "epoch": 4,
        "global_step": 100,
        "pytorch-lightning_version": "2.2.0",
        key: net.state_dict(),
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}],
    }
    torch.save(checkpoint, path)

    model = load_torch_save(path)

    assert model.format == "pytorch-state-dict"
    assert model.details["wrapper_key"] == key
    assert model.metadata["epoch"] == "4" and model.metadata["global_step"] == "100"
    assert "optimizer_states" not in model.metadata
    assert "pytorch-lightning 2.2.0" in model.producer
    assert [layer.name for layer in model.layers] == ["conv", "bn", "fc"]
    assert_values_equal(model, net.state_dict())


def test_checkpoint_with_numpy_values_and_data_objects(tmp_path):
    import pathlib
    import types

    net = trained_net()
    path = tmp_path / "old_style.pt"
    torch.save(
        {
            "model": net.state_dict(),
            "best_fitness": np.float64(0.25),
            "anchors": np.arange(6).reshape(2, 3),
            "train_args": types.SimpleNamespace(imgsz=320, epochs=2),
            "save_dir": pathlib.PurePosixPath("runs/train"),
        },
        path,
    )

    model = load_torch_save(path)

    assert model.details["wrapper_key"] == "model"
    assert model.metadata["best_fitness"] == "0.25"
    assert json.loads(model.metadata["anchors"]) == [[0, 1, 2], [3, 4, 5]]
    assert json.loads(model.metadata["train_args"]) == {"imgsz": 320, "epochs": 2}
    assert model.metadata["imgsz"] == "320"
    assert model.metadata["save_dir"] == "runs/train"
    assert_values_equal(model, net.state_dict())


# --------------------------------------------------------------------------- archives


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(tmp_path, how):
    net = trained_net()
    example = torch.randn(1, 4, 8, 8)
    scripted = torch.jit.script(net) if how == "script" else torch.jit.trace(net, example)
    path = tmp_path / "net.ts"
    torch.jit.save(scripted, path)

    assert sniff_torchscript(path, path.read_bytes()[:4096]) and not sniff_torch_save(path, path.read_bytes()[:4096])
    model = load(path)

    assert model.format == "torchscript"
    assert model.modules["conv"] == "torch.nn.modules.conv.Conv2d"
    assert [(layer.name, layer.kind, layer.op_type) for layer in model.layers] == [
        ("conv", ir.CONV, "Conv2d"),
        ("bn", ir.BATCHNORM, "BatchNorm2d"),
        ("fc", ir.LINEAR, "Linear"),
    ]
    conv, bn = model.layer("conv"), model.layer("bn")
    assert conv.attrs["stride"] == (2, 2) and conv.attrs["padding"] == (1, 1) and conv.attrs["groups"] == 2
    assert bn.attrs["eps"] == pytest.approx(1e-3)
    assert_values_equal(model, net.state_dict())


def test_torch_export_program(tmp_path):
    net = trained_net()
    program = torch.export.export(net, (torch.randn(1, 4, 8, 8),))
    path = tmp_path / "net.pt2"
    torch.export.save(program, path)

    head = path.read_bytes()[:4096]
    assert sniff_torch_export(path, head) and not sniff_torch_save(path, head) and not sniff_torchscript(path, head)
    model = load(path)

    assert model.format == "torch-export"
    assert model.producer.startswith("torch.export.save (torch 2.")
    assert model.modules["bn"] == "torch.nn.modules.batchnorm.BatchNorm2d"
    assert [(layer.name, layer.kind, layer.op_type) for layer in model.layers] == [
        ("conv", ir.CONV, "Conv2d"),
        ("bn", ir.BATCHNORM, "BatchNorm2d"),
        ("fc", ir.LINEAR, "Linear"),
    ]
    conv = model.layer("conv")
    assert [conv.attrs[name] for name in ("stride", "padding", "dilation", "groups")] == [(2, 2), (1, 1), (1, 1), 2]
    assert model.layer("bn").attrs["eps"] == pytest.approx(1e-3)
    assert [(t.name, t.shape) for t in model.inputs] == [("x", (1, 4, 8, 8))]
    assert_values_equal(model, net.state_dict())


def test_safetensors_without_torch_including_bf16_and_metadata(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    tensors = {
        "encoder.layers.10.proj.weight": torch.randn(6, 4),
        "encoder.layers.2.proj.weight": torch.randn(6, 4),
        "encoder.layers.2.proj.bias": torch.randn(6),
        "encoder.layers.2.norm.weight": torch.randn(6).to(torch.bfloat16),
        "stem.conv.weight": torch.randn(8, 3, 3, 3).half(),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "note": "made in a test"})

    model = load_safetensors(path)

    assert model.format == "safetensors"
    assert model.metadata == {"format": "pt", "note": "made in a test"}
    assert [layer.name for layer in model.layers] == [
        "encoder.layers.2.norm",
        "encoder.layers.2.proj",
        "encoder.layers.10.proj",
        "stem.conv",
    ]
    assert model.layer("stem.conv").op_type == "Conv2d?"
    assert model.layer("stem.conv").params["weight"].dtype == "float16"
    assert model.layer("encoder.layers.2.norm").kind == ir.LAYERNORM
    assert model.layer("encoder.layers.2.norm").params["weight"].dtype == "bfloat16"
    assert list(model.layer("encoder.layers.2.proj").params) == ["weight", "bias"]
    assert_values_equal(model, tensors)
    # The reader itself needs neither torch nor the safetensors package.
    code = (
        "import sys; from plugins.loaders.torch import load_safetensors; "
        f"m = load_safetensors({str(path)!r}); [p.array() for _, p in m.params()]; "
        "assert 'torch' not in sys.modules and 'safetensors' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_import_does_not_import_torch():
    code = "import sys, plugins.loaders.torch; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --------------------------------------------------------------------------- sniffing


def test_content_not_extension_decides(tmp_path):
    net = trained_net()
    path = tmp_path / "actually_pytorch.onnx"
    torch.save(net.state_dict(), path)

    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(torch_loader)
    model = Plugins(pm).load_model(path)

    assert model.format == "pytorch-state-dict"


def test_onnx_file_is_not_claimed(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    path = tmp_path / "model.pt"
    onnx.save(helper.make_model(graph), path)
    head = path.read_bytes()[:4096]

    assert not any(loader.sniff(path, head) for loader in torch_loader.graphinspect_loaders())
    with pytest.raises(InputError, match="not a PyTorch file"):
        load(path)


# --------------------------------------------------------------------------- safety


class _Payload:
    """An object whose unpickling calls ``function(*args)``."""

    def __init__(self, function, args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _touch(path):  # a foreign function: refused because calling it would run code
    Path(path).touch()


MALICIOUS = {
    "os.system": lambda marker: (os.system, (f"touch {marker}",)),
    "subprocess.Popen": lambda marker: (subprocess.Popen, (["touch", str(marker)],)),
    "builtins.eval": lambda marker: (builtins.eval, (f"open({str(marker)!r}, 'w')",)),
    "builtins.exec": lambda marker: (builtins.exec, (f"open({str(marker)!r}, 'w')",)),
    "foreign function": lambda marker: (_touch, (str(marker),)),
    "torch function": lambda marker: (torch.nn.functional.relu, (torch.ones(2),)),
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("attack", list(MALICIOUS))
def test_malicious_pickles_are_refused_before_running(tmp_path, attack, legacy):
    marker = tmp_path / "pwned"
    function, args = MALICIOUS[attack](marker)
    path = tmp_path / "evil.pt"
    torch.save(
        {"model": trained_net().state_dict(), "payload": _Payload(function, args)},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    global_name = f"{function.__module__}.{function.__qualname__}"

    with pytest.raises(InputError) as caught:
        load_torch_save(path)

    message = str(caught.value)
    assert "\n" not in message
    if legacy and attack == "torch function":
        assert global_name in message  # the legacy format has no stand-ins; it names what it needs
    else:
        assert f"refused to unpickle: it calls {global_name}" in message
    assert not marker.exists()


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save(trained_net(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(InputError, match="is truncated or corrupted") as caught:
        load(path)
    assert "\n" not in str(caught.value)


def test_garbage_and_empty_dict(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(1000))
    with pytest.raises(InputError, match="not a torch.save file"):
        load_torch_save(garbage)
    with pytest.raises(InputError, match="not a PyTorch file"):
        load(garbage)

    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    with pytest.raises(InputError, match="holds no model: the checkpoint is an empty dict"):
        load(empty)

    no_model = tmp_path / "no_model.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, no_model)
    with pytest.raises(InputError, match="holds no model: keys are epoch, optimizer"):
        load(no_model)


def test_bad_safetensors_headers(tmp_path):
    def write(name: str, header: bytes, data: bytes = b"") -> Path:
        path = tmp_path / name
        path.write_bytes(len(header).to_bytes(8, "little") + header + data)
        return path

    def header(shape: list[int], offsets: list[int]) -> bytes:
        return json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}}).encode()

    past_end = write("past.safetensors", header([4], [0, 16]), b"\0" * 8)
    assert sniff_safetensors(past_end, past_end.read_bytes()[:4096])
    with pytest.raises(InputError, match="points past the end of the file"):
        load(past_end)
    malformed = write("bad.safetensors", b"{not json}")
    with pytest.raises(InputError, match="malformed safetensors header"):
        load_safetensors(malformed)
    wrong_size = write("size.safetensors", header([3], [0, 8]), b"\0" * 8)
    with pytest.raises(InputError, match="malformed safetensors header: tensor 'w' spans 8 bytes"):
        load_safetensors(wrong_size)


def test_broadcast_buffer_of_an_exported_program_is_read_as_what_it_stores(tmp_path):
    class WithBroadcast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.register_buffer("scale", torch.arange(3.0).reshape(3, 1).expand(3, 1000))

        def forward(self, x):
            return self.fc(x) * self.scale[0, :4]

    net = WithBroadcast()
    path = tmp_path / "broadcast.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the expanded buffer is "not complete"
        torch.export.save(torch.export.export(net, (torch.zeros(2, 4),)), path)
    model = load(path)
    params = {param.tensor_name: param for _, param in model.params()}
    scale = params["scale"]
    assert scale.shape == (3, 1000) and scale.stored_shape == (3, 1) and scale.stored_numel == 3
    np.testing.assert_array_equal(scale.array(), net.scale.numpy())
    assert params["fc.weight"].stored_shape is None
    assert model.nbytes == 4 * (16 + 4 + 3000)
    assert model.stored_nbytes == 4 * (16 + 4 + 3)


def test_truncated_torch_export(tmp_path):
    path = tmp_path / "broken.pt2"
    torch.export.save(torch.export.export(trained_net(), (torch.randn(1, 4, 8, 8),)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(InputError, match="truncated or corrupted"):
        load_torch_export(path)


def test_torchscript_with_setstate_is_refused(tmp_path):
    class WithState(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.ones(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

        @torch.jit.export
        def __getstate__(self) -> tuple[torch.Tensor, bool]:
            return (self.scale, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
            self.scale = state[0]
            self.training = state[1]

    path = tmp_path / "stateful.pt"
    torch.jit.save(torch.jit.script(WithState()), path)
    with pytest.raises(InputError, match="defines __setstate__"):
        load_torchscript(path)


# --------------------------------------------------------------------------- laziness


def test_params_are_read_lazily_and_share_memory(tmp_path):
    net = trained_net()
    path = tmp_path / "net.pt"
    torch.save(net, path)

    model = load_torch_save(path)
    weight = model.layer("conv").params["weight"]

    assert weight._array is None
    assert (weight.shape, weight.dtype) == ((8, 2, 3, 3), "float32")
    values = weight.array()
    assert not values.flags.owndata  # a view of the memory-mapped tensor, not a copy
    np.testing.assert_array_equal(values, net.conv.weight.detach().numpy())
    assert model.layer("fc").params["bias"]._array is None


# ----------------------------------------------------------------------------- references, not calls

REFERENCE_SOURCE = textwrap.dedent(
    """
    import functools
    import torch
    from torch import nn


    def box_area(boxes):  # a function a model keeps as an attribute (torchvision's box ops)
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


    class v10Detect(nn.Module):  # a class whose name starts with a lower-case letter
        def __init__(self):
            super().__init__()
            self.cv = nn.Conv2d(4, 4, 1)


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm_layer = functools.partial(nn.LayerNorm, eps=1e-6)  # torchvision ViT keeps its factory
            self.box_op = box_area
            self.stem = nn.Conv2d(3, 4, 3)
            self.norm = self.norm_layer(4)
            self.head = v10Detect()
    """
)


@pytest.fixture
def reference_model(tmp_path):
    with temporary_package(tmp_path, "refpkg", "nets", REFERENCE_SOURCE) as (package, nets):
        model = nets.Net().eval()
        path = tmp_path / "net.pt"
        torch.save(model, path)
    return path, package, model


def test_function_references_partials_and_lower_case_classes_are_read_inertly(reference_model):
    """Referenced, not called: a functools.partial, a foreign function kept as an
    attribute and a class named v10Detect load as stand-ins, nothing of them runs."""
    path, package, original = reference_model
    model = load_torch_save(path)
    assert model.format == "pytorch-module"
    assert model.modules["head"] == f"{package}.nets.v10Detect"
    assert [layer.name for layer in model.layers] == ["stem", "norm", "head.cv"]
    np.testing.assert_array_equal(model.layer("norm").params["weight"].array(), original.norm.weight.detach().numpy())
    assert model.layer("norm").attrs.get("eps") == 1e-6


def test_a_referenced_function_that_is_called_later_is_refused(tmp_path):
    """The pickler stores a global once and fetches it from the memo for its second use:
    a function first kept as a value and then called is still a call."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"ref": _touch, "payload": _Payload(_touch, (str(marker),))}, path)
    with pytest.raises(InputError, match=f"refused to unpickle: it calls {__name__}._touch"):
        load_torch_save(path)
    assert not marker.exists()


def test_a_partial_of_a_blocked_function_is_refused(tmp_path):
    import functools

    path = tmp_path / "evil.pt"
    torch.save({"model": trained_net().state_dict(), "p": functools.partial(os.system, "true")}, path)
    with pytest.raises(InputError, match="refused to unpickle: it calls posix.system"):
        load_torch_save(path)

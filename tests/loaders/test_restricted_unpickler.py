"""The restricted C unpickler reads what the careful path reads, the same way, or hands
the file over; it refuses what copies past its budget, before memory runs out."""

from __future__ import annotations

import gc
import math
import types
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inspector.errors import InputError
from inspector.manager import get_plugin_manager
from plugins.loaders.torch import restricted_unpickler, unpickle, zips
from plugins.loaders.torch.unpickle import FunctionReference, StandIn
from tests.security import corpus
from tests.support.packages import temporary_package


def fast(path: Path):
    with zips.open_archive(path) as archive:
        return restricted_unpickler.load(path, archive)[0]


def careful(path: Path, monkeypatch):
    def unsure(path, archive, records=False):
        raise restricted_unpickler.Unsure("the test asks for the careful path")

    with monkeypatch.context() as patch:
        patch.setattr(restricted_unpickler, "load", unsure)
        return unpickle.load_torch_save(path, is_zip=True)[0]


def assert_same(fast_value, careful_value, where: str = "") -> None:
    """Equal structure, types, tensor views and values; storages shared alike."""
    if isinstance(careful_value, torch.Tensor):
        assert type(fast_value) is type(careful_value), where
        assert fast_value.dtype == careful_value.dtype, where
        assert fast_value.shape == careful_value.shape and fast_value.stride() == careful_value.stride(), where
        assert fast_value.storage_offset() == careful_value.storage_offset(), where
        assert fast_value.requires_grad == careful_value.requires_grad, where
        assert fast_value.untyped_storage().nbytes() == careful_value.untyped_storage().nbytes(), where
        assert torch.equal(fast_value.detach(), careful_value.detach()), where
    elif isinstance(careful_value, StandIn):
        assert isinstance(fast_value, StandIn), where
        assert type(fast_value)._standin_global == type(careful_value)._standin_global, where
        assert fast_value.__dict__.keys() == careful_value.__dict__.keys(), where
        for key in careful_value.__dict__:
            assert_same(fast_value.__dict__[key], careful_value.__dict__[key], f"{where}.{key}")
    elif isinstance(careful_value, dict):
        assert isinstance(fast_value, dict) and list(fast_value) == list(careful_value), where
        assert isinstance(fast_value, OrderedDict) == isinstance(careful_value, OrderedDict), where
        assert getattr(fast_value, "__dict__", {}).keys() == getattr(careful_value, "__dict__", {}).keys(), where
        for key in careful_value:
            assert_same(fast_value[key], careful_value[key], f"{where}[{key!r}]")
    elif isinstance(careful_value, (list, tuple)):
        assert type(fast_value) is type(careful_value) and len(fast_value) == len(careful_value), where
        for index, (one, other) in enumerate(zip(fast_value, careful_value)):
            assert_same(one, other, f"{where}[{index}]")
    elif isinstance(careful_value, FunctionReference):
        assert isinstance(fast_value, FunctionReference) and fast_value.global_name == careful_value.global_name
    else:
        assert type(fast_value) is type(careful_value) and fast_value == careful_value, where


def storage_sharing(tensors: dict) -> list[tuple[str, str]]:
    """Pairs of keys whose tensors share one storage."""
    names = sorted(tensors)
    pointers = {name: tensors[name].untyped_storage().data_ptr() for name in names}
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if pointers[a] == pointers[b]]


def randomised_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.SiLU(), nn.Conv2d(8, 4, 1))
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.uniform_(0.5, 1.5)
    return net.eval()


SOURCE = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = torch.nn.functional.relu
        self.names = {0: "person", 1: "car"}
        self.stride = torch.tensor([8.0, 16.0])
        self.shape = torch.Size([1, 3])
        self.device_seen = torch.device("cpu")
        self.dtype_seen = torch.float16
"""


def test_files_read_fast_equal_the_careful_path(tmp_path, monkeypatch):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    files = {
        "state_dict": randomised_net().state_dict(),
        "module": randomised_net(),
        "checkpoint": {
            "model": randomised_net().half(),
            "ema": None,
            "epoch": 3,
            "train_args": {"imgsz": 640, "data": "coco.yaml"},
            "extras": types.SimpleNamespace(lr=0.01),
        },
        "views_and_dtypes": {
            "base": base,
            "row": base[1],
            "column": base[:, 2],
            "transposed": base.t(),
            "empty": torch.empty(0, 3),
            "flags": torch.tensor([True, False, True]),
            "counts": torch.arange(5, dtype=torch.int64),
            "brain": torch.randn(3, 2).to(torch.bfloat16),
            "parameter": nn.Parameter(torch.randn(2, 2)),
            "frozen": nn.Parameter(torch.randn(2), requires_grad=False),
            "scalar": torch.tensor(2.5),
        },
    }
    with temporary_package(tmp_path, "fastpkg", "blocks", SOURCE) as (package, blocks):
        torch.save(blocks.Block(), tmp_path / "custom.pt")
    for name, value in files.items():
        torch.save(value, tmp_path / f"{name}.pt")

    for name in [*files, "custom"]:
        path = tmp_path / f"{name}.pt"
        read_fast, read_carefully = fast(path), careful(path, monkeypatch)
        assert_same(read_fast, read_carefully, name)
    views = fast(tmp_path / "views_and_dtypes.pt")
    assert storage_sharing(views) == storage_sharing(careful(tmp_path / "views_and_dtypes.pt", monkeypatch))
    assert ("base", "row") in storage_sharing(views)
    custom = fast(tmp_path / "custom.pt")
    assert type(custom)._standin_global == f"{package}.blocks.Block"
    assert isinstance(custom.act, FunctionReference)  # kept, never looked up

    # The loader reads tensors as records of where they lie, not torch tensors: the same
    # model, metadata and values as from the careful path's tensors.
    from plugins.loaders.torch.checkpoint import model_from_object

    for name in [*files, "custom"]:
        path = tmp_path / f"{name}.pt"
        from_records = get_plugin_manager().load_model(path)
        from_tensors = model_from_object(path, careful(path, monkeypatch), "torch.save (zip)")
        assert_same_model(from_records, from_tensors, name)


def assert_same_model(model, expected, where: str) -> None:
    assert (model.format, model.modules, model.metadata, model.details) == (
        expected.format,
        expected.modules,
        expected.metadata,
        expected.details,
    ), where
    assert len(model.layers) == len(expected.layers), where
    for layer, other in zip(model.layers, expected.layers, strict=True):
        facts = (layer.name, layer.kind, layer.op_type, layer.attrs, layer.hints, layer.metadata, list(layer.params))
        assert facts == (
            other.name,
            other.kind,
            other.op_type,
            other.attrs,
            other.hints,
            other.metadata,
            list(other.params),
        )
        for role, param in layer.params.items():
            expected_param = other.params[role]
            assert (param.tensor_name, param.shape, param.dtype) == (
                expected_param.tensor_name,
                expected_param.shape,
                expected_param.dtype,
            ), (where, layer.name, role)
            np.testing.assert_array_equal(param.array(), expected_param.array(), err_msg=f"{where} {layer.name}.{role}")


def test_tensors_are_mapped_from_the_file_copy_on_write(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.ones(1000)}, path)
    before = path.read_bytes()
    weights = fast(path)
    weights["w"].add_(1)  # a private mapping: the file never changes
    assert path.read_bytes() == before
    assert fast(path)["w"].sum().item() == 1000.0


def resident_bytes(path: Path) -> int:
    """How much of the file at ``path`` this process's maps of it hold resident (Linux)."""
    resident, mapping = 0, None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                mapping = fields[5] if len(fields) > 5 else None
            elif fields[0] == "Rss:" and mapping == str(path):
                resident += int(fields[1]) * 1024
    return resident


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's /proc/self/smaps")
@pytest.mark.parametrize("trim_bytes", [2**20, 2**40])
def test_a_mapped_checkpoint_gives_its_pages_back_as_it_is_read(tmp_path, monkeypatch, trim_bytes):
    """Loading touches none of the weights' pages; reading them all keeps about
    ``TRIM_BYTES`` of them resident, not the file; the values are the file's, read-only."""
    from plugins.loaders.torch.tensors import MappedFile

    monkeypatch.setattr(MappedFile, "TRIM_BYTES", trim_bytes)
    generator = torch.Generator().manual_seed(5)
    state = {f"block{i}.weight": torch.randn(64, 256, generator=generator) for i in range(256)}  # 16 MiB
    path = tmp_path / "big.pt"
    torch.save(state, path)
    model = get_plugin_manager().load_model(path)
    assert resident_bytes(path) < 64 * 1024  # the local headers were read past the map
    for layer in model.layers:
        values = layer.params["weight"].array()
        np.testing.assert_array_equal(values, state[f"{layer.name}.weight"].numpy())
        with pytest.raises(ValueError, match="read-only"):
            values[0, 0] = 1.0
    full = sum(tensor.nbytes for tensor in state.values())
    if trim_bytes < full:
        # A fault may map more than its page: up to a 2 MiB folio of the page cache at each end.
        assert resident_bytes(path) <= trim_bytes + 4 * 2**20 < full // 3
    else:
        assert resident_bytes(path) >= full  # what the trimming saves: the test can tell


def test_params_of_a_mapped_checkpoint_read_the_file_without_keeping_tensors(tmp_path):
    """A Param keeps where its values lie in the map, not a torch tensor; every dtype and
    view reads as torch.load reads it."""
    generator = torch.Generator().manual_seed(6)
    base = torch.randn(6, 8, generator=generator)
    state = {
        "a.weight": base,
        "a.bias": base[2],  # a view at an offset of a shared storage
        "b.weight": base.t(),  # strided
        "b.bias": torch.randn(8, generator=generator).to(torch.bfloat16),
        "c.weight": torch.randn(3, 4, generator=generator).half(),
        "c.num_batches_tracked": torch.tensor(7),
        "d.weight": torch.zeros(1).expand(5),  # stride 0
        "e.weight": torch.empty(0, 3),
        "g.weight": torch.tensor([True, False]),
    }
    path = tmp_path / "mixed.pt"
    torch.save(state, path)

    def live_tensors() -> int:
        return sum(issubclass(type(item), torch.Tensor) for item in gc.get_objects())

    gc.collect()
    before = live_tensors()
    model = get_plugin_manager().load_model(path)
    gc.collect()
    assert live_tensors() == before
    params = {param.tensor_name: param for _, param in model.params()}
    assert {name for name, param in params.items() if param.stored_shape is not None} == {"d.weight"}
    assert params["d.weight"].stored_shape == (1,)
    for name, tensor in state.items():
        values = params[name].array()
        assert not values.flags.writeable, name
        if tensor.dtype == torch.bfloat16:
            expected = tensor.float().numpy()
            values = values.astype(np.float32)
        else:
            expected = tensor.numpy()
        assert values.shape == expected.shape and values.dtype == expected.dtype, name
        np.testing.assert_array_equal(values, expected, err_msg=name)


def test_real_files_the_fast_path_hands_over_still_load(tmp_path, monkeypatch):
    """Files outside what it reads are handed to the careful path, which reads them."""
    net = randomised_net()
    protocol_4 = tmp_path / "protocol4.pt"
    torch.save(net.state_dict(), protocol_4, pickle_protocol=4)
    deflated = tmp_path / "deflated.pt"
    torch.save(net.state_dict(), tmp_path / "stored.pt")
    with zipfile.ZipFile(tmp_path / "stored.pt") as source, zipfile.ZipFile(deflated, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info), compress_type=zipfile.ZIP_DEFLATED)
    numpy_values = tmp_path / "numpy.pt"
    torch.save({"model": net.state_dict(), "best_fitness": np.float64(0.5)}, numpy_values)
    for path in (protocol_4, deflated, numpy_values):
        with pytest.raises(restricted_unpickler.Unsure):
            fast(path)
    for path in (deflated, numpy_values):
        loaded, _ = unpickle.load_torch_save(path, is_zip=True)
        state = loaded.get("model", loaded)
        assert torch.equal(state["0.weight"], net.state_dict()["0.weight"])


def test_a_load_leaves_only_its_tensors_behind(tmp_path):
    """One tensor a parameter: no flat storage tensor kept as a view's base, and nothing
    of the unpickler's left for a later garbage collection."""
    path = tmp_path / "net.pt"
    torch.save(randomised_net().state_dict(), path)

    def live_tensors() -> int:
        return sum(issubclass(type(item), torch.Tensor) for item in gc.get_objects())

    gc.collect()
    gc.disable()
    try:
        before = live_tensors()
        loaded = fast(path)
        after = live_tensors()
    finally:
        gc.enable()
    assert len(loaded) == 8 and all(isinstance(value, torch.Tensor) for value in loaded.values())
    assert after - before == len(loaded)


def test_a_view_a_pickle_sets_after_the_rebuild_is_still_checked(tmp_path):
    """BUILD on a rebuilt tensor calls torch's ``Tensor.__setstate__``, which ``set_``s the
    view the pickle gives: after the rebuilder's check. The layer builder checks every
    tensor again, so the re-reading view is refused, not read a thousand times over."""

    def storage(numel: int) -> bytes:
        items = [corpus.pickle_str("storage"), b"ctorch\nFloatStorage\n", corpus.pickle_str("0")]
        return b"(" + b"".join(items) + corpus.pickle_str("cpu") + corpus.pickle_int(numel) + b"tQ"

    def ints(*values: int) -> bytes:
        return b"(" + b"".join(corpus.pickle_int(value) for value in values) + b"t"

    def tensor(numel: int) -> bytes:  # _rebuild_tensor_v2 of the whole record, flat
        arguments = storage(2000) + corpus.pickle_int(0) + ints(numel) + ints(1) + b"\x89ccollections\nOrderedDict\n)R"
        return b"ctorch._utils\n_rebuild_tensor_v2\n(" + arguments + b"tR"

    # {"w": tensor(16)}, then BUILD on it with (tensor(2000), 0, (1000, 1000), (1, 1)):
    # torch then calls w.set_(that tensor's storage, 0, (1000, 1000), (1, 1)).
    data_pkl = b"\x80\x02}" + corpus.pickle_str("w") + tensor(16)
    data_pkl += b"(" + tensor(2000) + corpus.pickle_int(0) + ints(1000, 1000) + ints(1, 1) + b"tbs."
    path = corpus.torch_zip(tmp_path / "rebuilt.pt", data_pkl, {"0": bytes(8000)})
    assert fast(path)["w"].shape == (1000, 1000)  # the rebuilder saw a 16-element view
    with zips.open_archive(path) as archive, pytest.raises(restricted_unpickler.Unsure):
        restricted_unpickler.load(path, archive, records=True)  # a record takes no BUILD: handed over
    with pytest.raises(InputError, match=r"tensor 'w' reads its storage more than once .*1,000,000 elements"):
        get_plugin_manager().load_model(path)


def test_a_storage_saved_as_a_value_is_no_tensor_on_either_path(tmp_path, monkeypatch):
    """torch.load gives a pickled storage back as a TypedStorage; both readers leave it out
    of the parameters alike (it used to become a flat tensor on the fast path only)."""
    path = tmp_path / "mixed.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated
        torch.save({"w": torch.ones(3), "s": torch.ones(2).storage()}, path)
    for loaded in (fast(path), careful(path, monkeypatch)):
        assert isinstance(loaded["w"], torch.Tensor) and not isinstance(loaded["s"], torch.Tensor)
        assert type(loaded["s"]).__name__ == "TypedStorage"
    model = get_plugin_manager().load_model(path)
    assert model.details["skipped_keys"] == ["s"] and list(model.layers[0].params) == ["w"]


def ordered_dict_bomb(entries: int, copies: int) -> bytes:
    """data.pkl: one dict of ``entries`` items, BUILT into ``copies`` OrderedDicts."""
    body = b"\x80\x02}q\x00(" + b"".join(b"M" + index.to_bytes(2, "little") + b"N" for index in range(entries)) + b"u"
    body += b"ccollections\nOrderedDict\nq\x01]("
    body += (b"h\x01)Rh\x00b") * copies
    return body + b"e."


def set_of_expanded_tensor() -> bytes:
    """data.pkl: ``set(w)`` for ``w`` a 2**33-element tensor expanded from one float."""
    tensor = corpus.tensor_pickle(1, 0, [2**33], [0])[len(b"\x80\x02}") + len(corpus.pickle_str("w")) : -len(b"s.")]
    return b"\x80\x02c__builtin__\nset\n(" + tensor + b"tR."


@pytest.mark.parametrize(
    "data_pkl, records",
    [(ordered_dict_bomb(30_000, 200), {}), (set_of_expanded_tensor(), {"0": b"\x00\x00\x80\x3f"})],
    ids=["one dict built into many", "a set of an expanded tensor"],
)
def test_copying_past_the_budget_is_refused_on_both_paths(tmp_path, monkeypatch, data_pkl, records):
    path = corpus.torch_zip(tmp_path / "crafted.pt", data_pkl, records)
    with pytest.raises(InputError, match=r"is refused: unpickling it would copy (more than )?[\d,]+ items"):
        unpickle.load_torch_save(path, is_zip=True)
    with pytest.raises(InputError, match=r"is refused: unpickling it would copy [\d,]+ items"):
        careful(path, monkeypatch)


def test_within_the_budget_the_same_pickle_loads(tmp_path):
    path = corpus.torch_zip(tmp_path / "fine.pt", ordered_dict_bomb(100, 3), {})
    loaded = fast(path)
    assert len(loaded) == 3 and all(len(copy.__dict__) == 100 for copy in loaded)


@pytest.mark.parametrize(
    "target",
    [b"ccollections\nOrderedDict\n", b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n"],
    ids=["a callable", "a rebuilder", "a storage type"],
)
def test_the_objects_it_hands_out_cannot_be_rebuilt_by_the_pickle(tmp_path, target):
    """BUILD with a (None, slots) state would set their slots: the fast path stops, and
    the careful path (whose torch unpickler builds only tensors and allowed classes) refuses."""
    data_pkl = b"\x80\x02" + target + b"N}" + corpus.pickle_str("function") + b"K\x01s\x86b."
    path = corpus.torch_zip(tmp_path / "crafted.pt", data_pkl, {})
    with pytest.raises(restricted_unpickler.Unsure, match="BUILD on"):
        fast(path)
    with pytest.raises(InputError):
        unpickle.load_torch_save(path, is_zip=True)


@pytest.mark.parametrize(
    "shape, strides, offset, numel, expected",
    [
        ((4, 3), (3, 1), 0, 12, None),  # contiguous, the whole storage
        ((4, 3), (3, 1), 2, 14, None),  # contiguous, from an offset
        ((4, 3), (3, 1), 3, 14, "points past the end of its storage (element 14 of 14)"),
        ((3, 4), (1, 3), 0, 12, None),  # transposed: the general check
        ((3, 4), (1, 3), 1, 12, "points past the end of its storage (element 12 of 12)"),
        ((4, 3), (3, 1), -1, 12, "has a negative storage offset -1"),
        ((2, 2), (1, 1), 0, 3, "reads its storage more than once"),
        ((0, 3), (3, 1), 5, 0, None),  # empty
    ],
)
def test_view_bounds_over_the_whole_view(shape, strides, offset, numel, expected):
    """Contiguous views are decided at once, others element by element: the same answer."""
    from plugins.loaders.torch.tensors import view_problem

    problem = view_problem(shape, strides, offset, numel)
    assert (problem is None) == (expected is None), problem
    if expected is not None:
        assert problem.startswith(expected)
    if problem is None and 0 not in shape:  # what torch itself allows
        storage = torch.zeros(numel)
        assert storage.as_strided(shape, strides, offset).numel() == math.prod(shape)


@pytest.mark.parametrize("tensors", [10, 200])
def test_a_load_leaves_no_cycles_holding_what_it_read(tmp_path, tensors):
    # A command collects old objects almost never (inspector.cli.rare_collections): what
    # a load leaves in reference cycles would stay in memory. Only a few objects of the
    # load's own classes may (a class is always in a cycle), however many tensors.
    path = tmp_path / "sd.pt"
    torch.save(OrderedDict((f"t{i}", torch.randn(3, 4)) for i in range(tensors)), path)
    gc.collect()
    gc.disable()
    try:
        loaded = fast(path)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert len(loaded) == tensors
    assert not any(isinstance(item, (torch.Tensor, OrderedDict)) for item in garbage)
    assert len(garbage) < 100

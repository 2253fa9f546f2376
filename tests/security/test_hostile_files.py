"""The malicious-file corpus: no code from a file runs, memory stays bounded, every bad
file ends in one line naming it and exit 2.

Every file is crafted here (tests/security/corpus.py). A payload that ran would create
``marker``; each test checks it did not (or, where the user consented, that it did).
"""

from __future__ import annotations

import json
import os
import sys
import zipfile

import numpy as np
import pytest

from inspector.errors import InputError
from tests.security import corpus

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return corpus.export_pair(tmp_path_factory.mktemp("pair"))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD_RAN"


def one_line_error(code: int, err: str, path, *needles: str) -> str:
    """Assert exit 2 and one line on stderr naming ``path`` and saying each of ``needles``."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"graphinspect: error: {path}"), err
    for needle in needles:
        assert needle in lines[0], err
    assert "internal error" not in lines[0] and "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- .pt2: verify runs nothing unchecked


def test_pt2_sample_inputs_payload_is_refused_by_verify_and_never_unpickled(cli, pair, tmp_path, marker):
    evil = corpus.rewrite_zip(
        pair["pt2"], tmp_path / "evil.pt2", replace={"data/sample_inputs/model.pt": corpus.payload_torch_save(marker)}
    )
    code, _, err = cli("verify", str(evil), str(pair["onnx"]))
    one_line_error(code, err, evil, "refused to run", "sample inputs", "posix.system", "--trust-pickle")
    assert not marker.exists()
    # inspect reads only the weights: it works, and runs nothing either.
    code, out, _ = cli("inspect", str(evil), "--format", "json")
    assert code == 0 and json.loads(out)["model"]["format"] == "torch-export"
    assert not marker.exists()


def test_pt2_extra_program_is_checked_too(cli, pair, tmp_path, marker):
    parts = corpus.entries(pair["pt2"])
    folder = next(iter(parts)).partition("/")[0]
    evil = corpus.rewrite_zip(
        pair["pt2"],
        tmp_path / "extra.pt2",
        add={
            "models/second.json": parts[f"{folder}/models/model.json"],
            "data/sample_inputs/second.pt": corpus.payload_torch_save(marker),
        },
    )
    code, _, err = cli("verify", str(evil), str(pair["onnx"]))
    one_line_error(code, err, evil, "program 'second'", "posix.system")
    assert not marker.exists()


def test_pt2_opaque_and_custom_objects_need_consent(cli, pair, tmp_path, marker):
    def with_opaque(data: bytes) -> bytes:
        config = json.loads(data)
        config["config"]["evil"] = {"path_name": "opaque_obj_0", "use_pickle": True}
        return json.dumps(config).encode()

    evil = corpus.rewrite_zip(
        pair["pt2"],
        tmp_path / "opaque.pt2",
        replace={"data/constants/model_constants_config.json": with_opaque},
        add={"data/constants/opaque_obj_0": corpus.payload_pickle(marker)},
    )
    code, _, err = cli("verify", str(evil), str(pair["onnx"]))
    one_line_error(code, err, evil, "opaque Python object")
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="torch.os.system"), "'torch.os.system'"),
        (
            lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="torch.ops.aten.from_file.default"),
            "from_file",
        ),
        (lambda p: p.update(guards_code=["__import__('os').system('true')"]), "guards code"),
        (lambda p: p["range_constraints"].update({"__import__('os').system('true')": {}}), "shape expression"),
    ],
    ids=["os.system target", "file op", "guards code", "sympy eval"],
)
def test_pt2_program_that_would_run_code_is_refused(cli, pair, tmp_path, change, needle):
    evil = corpus.edit_program(pair["pt2"], tmp_path / "program.pt2", change)
    code, _, err = cli("verify", str(evil), str(pair["onnx"]))
    one_line_error(code, err, evil, "refused to run", needle)


def test_pt2_aotinductor_library_is_refused(cli, pair, tmp_path):
    evil = corpus.rewrite_zip(pair["pt2"], tmp_path / "aoti.pt2", add={"data/aotinductor/model/model.so": b"\x7fELF"})
    code, _, err = cli("verify", str(evil), str(pair["onnx"]))
    one_line_error(code, err, evil, "AOTInductor")


def test_clean_pt2_still_runs(cli, pair):
    code, out, err = cli("verify", str(pair["pt2"]), str(pair["onnx"]), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["verdict"] == "same"


# ----------------------------------------------------------------------------- .pt2: views and sizes


@pytest.mark.parametrize(
    "meta, needle",
    [
        ({"strides": [-27, 9, 3, 1]}, "negative stride"),
        ({"storage_offset": -8}, "negative storage offset"),
        ({"sizes": [-4, 3, 3, 3]}, "negative size"),
        ({"strides": [1, 1, 1, 1], "sizes": [4, 3, 3, 300]}, "past the end"),
        ({"sizes": [2**40, 3, 3, 3], "strides": [0, 9, 3, 1]}, None),  # broadcast: allowed, read once
        ({"sizes": [0, 2**62, 2**62, 1]}, "impossible shape"),
    ],
    ids=["negative stride", "negative offset", "negative size", "past the end", "broadcast", "huge empty"],
)
def test_pt2_views_are_checked_over_the_whole_tensor(cli, pair, tmp_path, meta, needle):
    crafted = corpus.edit_weight_meta(pair["pt2"], tmp_path / "view.pt2", **meta)
    code, out, err = cli("inspect", str(crafted), "--format", "json")
    if needle is None:
        assert code == 0, err
        weight = json.loads(out)["layers"][0]["params"][0]
        assert weight["shape"][0] == 2**40
        stored = corpus.tiny_net()[0].weight.detach().numpy()[0]  # the broadcast row is weight[0]
        assert weight["min"] == pytest.approx(float(stored.min()), rel=1e-6)
        assert weight["max"] == pytest.approx(float(stored.max()), rel=1e-6)
        return
    one_line_error(code, err, crafted, needle)


def test_pt2_json_larger_than_its_archive_is_refused(cli, pair, tmp_path):
    padded = corpus.edit_program(
        pair["pt2"], tmp_path / "padded.pt2", lambda program: program.update(padding=" " * (8 * 2**20))
    )
    bomb = corpus.rewrite_zip(padded, tmp_path / "json_bomb.pt2", deflate={"models/model.json"})
    code, _, err = cli("inspect", str(bomb))
    one_line_error(code, err, bomb, "more than the whole file")


# ----------------------------------------------------------------------------- TorchScript


@pytest.fixture(scope="module")
def setstate_ts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ts")
    marker = folder / "PAYLOAD_RAN"
    return corpus.scripted(folder, corpus.SETSTATE_SOURCE, marker, "setstate"), marker


@pytest.mark.parametrize(
    "rename",
    [
        lambda name: name,
        lambda name: name.replace("code/__torch__.py", "code/__torch__.PY"),
        lambda name: name.replace("/code/", "/CODE/"),
    ],
    ids=["as saved", ".PY", "CODE/"],
)
@pytest.mark.parametrize("command", ["inspect", "diff", "verify"])
def test_scripted_setstate_is_refused_whatever_the_case_of_its_name(cli, setstate_ts, pair, tmp_path, rename, command):
    source, marker = setstate_ts
    renamed = corpus.rewrite_zip(source, tmp_path / "renamed.pt", rename=rename)
    args = [str(renamed)] + ([str(pair["onnx"])] if command != "inspect" else [])
    code, _, err = cli(command, *args)
    one_line_error(code, err, renamed, "__setstate__")
    assert not marker.exists()


def test_case_only_duplicate_entries_are_refused(cli, setstate_ts, tmp_path):
    source, _ = setstate_ts
    code_entry = next(name for name in corpus.entries(source) if name.endswith("code/__torch__.py"))
    twin = corpus.rewrite_zip(source, tmp_path / "twin.pt", add={code_entry.partition("/")[2].upper(): b"x = 1\n"})
    code, _, err = cli("inspect", str(twin))
    one_line_error(code, err, twin, "ignoring case")


def test_torchscript_that_writes_files_runs_only_with_consent(cli, pair, tmp_path):
    marker = tmp_path / "WROTE"
    writer = corpus.scripted(tmp_path, corpus.FILE_OPS_SOURCE, marker, "writer")
    code, _, err = cli("inspect", str(writer))
    assert code == 0, err  # inspecting it runs nothing
    code, _, err = cli("verify", str(writer), str(pair["onnx"]))
    one_line_error(code, err, writer, "torch.save", "--trust-pickle")
    assert not marker.exists()
    code, out, err = cli("verify", str(writer), str(pair["onnx"]), "--trust-pickle", "--format", "json")
    assert marker.exists(), err  # the user consented: it ran, as they asked
    assert any("--trust-pickle" in lint["message"] for lint in json.loads(out)["lint"])


# ----------------------------------------------------------------------------- torch.save: memory budgets


def test_expanded_tensor_is_read_as_what_it_stores(cli, tmp_path):
    path = corpus.torch_zip(
        tmp_path / "expand.pt", corpus.tensor_pickle(1, 0, [2**33], [0]), {"0": b"\x00\x00\x80\x3f"}
    )
    code, out, err = cli("inspect", str(path), "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    weight = document["layers"][0]["params"][0]
    assert weight["shape"] == [2**33] and weight["stored_shape"] == [1]
    assert weight["min"] == weight["max"] == weight["mean"] == 1.0 and weight["std"] == 0.0
    # Counted as what it is: 2**33 elements as PyTorch counts them, 4 bytes in the file.
    assert (document["model"]["parameters"], document["model"]["bytes"]) == (2**33, 4 * 2**33)
    assert document["model"]["stored_bytes"] == 4
    code, out, err = cli("inspect", str(path))
    assert code == 0, err
    assert "32.0 GiB); the file stores 4 B: broadcast tensors repeat their values" in out
    assert f"{2**33} (stores 1)" in out


def test_torchscript_with_an_expanded_buffer_is_read_as_what_it_stores(cli, tmp_path):
    class Expanded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("big", torch.full((1,), 2.5).expand(2**30))

        def forward(self, x):
            return x + self.big[:1]

    path = tmp_path / "expanded_ts.pt"
    torch.jit.trace(Expanded(), torch.zeros(1)).save(str(path))
    assert path.stat().st_size < 64 * 1024
    code, out, err = cli("inspect", str(path), "--format", "json")
    assert code == 0, err
    big = json.loads(out)["layers"][0]["params"][0]
    assert big["shape"] == [2**30] and big["stored_shape"] == [1]
    assert big["min"] == big["max"] == 2.5 and big["std"] == 0.0


@pytest.mark.parametrize(
    "data_pkl, records, needle",
    [
        (corpus.tensor_pickle(2**31, 0, [4], [1]), {"0": b"\0" * 16}, "declares 8,589,934,592 bytes"),
        (corpus.tensor_pickle(2**21, 0, [2**20, 2**20], [1, 1]), {"0": b"\0" * 2**23}, "more than once"),
        (corpus.tensor_pickle(4, 0, [4], [-1]), {"0": b"\0" * 16}, ""),
        (corpus.frozenset_range_pickle(10**11), {}, "would copy 100,000,000,000 items"),
    ],
    ids=["storage larger than its record", "self-overlapping view", "negative stride", "frozenset(range(1e11))"],
)
def test_crafted_torch_save_is_refused_before_allocating(cli, tmp_path, data_pkl, records, needle):
    path = corpus.torch_zip(tmp_path / "crafted.pt", data_pkl, records)
    code, _, err = cli("inspect", str(path))
    one_line_error(code, err, path, needle)


def test_a_pickle_whose_objects_would_not_fit_in_memory_is_refused(cli, tmp_path, monkeypatch):
    """A tensor is about 25 bytes of a crafted pickle and 1.5 KiB loaded: the objects a
    pickle's calls make are counted against the memory available, by the restricted
    unpickler as it goes and by the scan before the careful path lets torch run."""
    from inspector import resources
    from plugins.loaders.torch import pickle_budget, restricted_unpickler

    base = torch.arange(300.0)
    path = tmp_path / "many.pt"
    torch.save({f"t{index}": base[index : index + 1] for index in range(300)}, path)
    calls = pickle_budget.check_archive(path).calls
    assert calls == 2 * 300  # a rebuild and an empty hooks OrderedDict each (the dict is no call)
    monkeypatch.setattr(restricted_unpickler, "OBJECTS_CHECKED", 64)  # as it goes: every 64 objects
    monkeypatch.setattr(resources, "available_memory", lambda: 100 * pickle_budget.OBJECT_BYTES)
    code, out, err = cli("inspect", str(path))
    line = one_line_error(code, err, path, "is refused: its pickle makes 128 objects", "more than the")
    assert out == "" and "(a crafted file?)" in line
    with pytest.raises(InputError, match=f"its pickle makes {calls:,} objects"):
        pickle_budget.check_archive(path)  # the careful path's scan
    monkeypatch.setattr(resources, "available_memory", lambda: calls * pickle_budget.OBJECT_BYTES)
    assert pickle_budget.check_archive(path).calls == calls
    code, out, err = cli("inspect", str(path), "--format", "json")
    assert code == 0, err
    assert len(json.loads(out)["layers"][0]["params"]) == 300


def test_legacy_format_storage_sizes_must_fit_the_file(cli, tmp_path):
    import io
    import pickle
    import struct

    def legacy(numel: int) -> bytes:
        out = io.BytesIO()
        sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
        for header in (0x1950A86A20F9469CFC6C, 1001, sys_info):
            pickle.dump(header, out, protocol=2)
        storage = corpus.pickle_str("storage") + b"ctorch\nFloatStorage\n" + corpus.pickle_str("0")
        storage += corpus.pickle_str("cpu") + corpus.pickle_int(numel) + b"N"
        out.write(
            b"\x80\x02}" + corpus.pickle_str("w") + b"ctorch._utils\n_rebuild_tensor_v2\n((" + storage + b"tQK\x00"
            b"(K\x04t(K\x01t\x89ccollections\nOrderedDict\n)RtRs."
        )
        pickle.dump(["0"], out, protocol=2)
        out.write(struct.pack("<q", 4) + b"\0" * 16)
        return out.getvalue()

    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    good.write_bytes(legacy(4))
    bad.write_bytes(legacy(2**31))
    code, out, err = cli("inspect", str(good), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["layers"][0]["params"][0]["shape"] == [4]
    code, _, err = cli("inspect", str(bad))
    one_line_error(code, err, bad, "declare 8,589,934,592 bytes")


BOMB = 80 * 2**20  # deflates to ~80 KB: past 16x the file plus 64 MiB


def test_zip_bombs_are_refused_before_decompressing(cli, pair, tmp_path):
    torch_save = corpus.zip_bomb_entry(
        tmp_path / "bomb.pt", {"archive/byteorder": b"little", "archive/version": b"3\n"}, "archive/data.pkl", BOMB
    )
    ts_entries = corpus.entries(pair["ts"])
    folder = next(iter(ts_entries)).partition("/")[0]
    torchscript = corpus.zip_bomb_entry(tmp_path / "bomb_ts.pt", ts_entries, f"{folder}/code/__torch__/x.py", BOMB)
    pt2_entries = corpus.entries(pair["pt2"])
    folder = next(iter(pt2_entries)).partition("/")[0]
    weights = dict(pt2_entries)
    del weights[f"{folder}/data/weights/weight_0"]
    pt2 = corpus.zip_bomb_entry(tmp_path / "bomb.pt2", weights, f"{folder}/data/weights/weight_0", BOMB)
    for path in (torch_save, torchscript, pt2):
        assert path.stat().st_size < 2**20
        code, _, err = cli("inspect", str(path))
        one_line_error(code, err, path, "zip bomb")


# ----------------------------------------------------------------------------- safetensors and ONNX


@pytest.mark.parametrize(
    "entry, needle",
    [
        ({"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}, "no valid shape"),
        ({"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [0, 0]}, "impossible shape"),
        ({"dtype": "F32", "shape": [2**40], "data_offsets": [0, 16]}, "spans 16 bytes"),
    ],
    ids=["bool size", "huge empty", "short data"],
)
def test_malformed_safetensors_shapes(cli, tmp_path, entry, needle):
    path = corpus.safetensors_file(tmp_path / "bad.safetensors", {"w": entry}, b"\0" * 16)
    code, _, err = cli("inspect", str(path))
    one_line_error(code, err, path, needle)


def test_string_typed_onnx_weight_is_not_a_parameter(cli, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.STRING, [2], [b"a", b"b"])
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    path = tmp_path / "strings.onnx"
    onnx.save(helper.make_model(graph), str(path))
    code, out, err = cli("inspect", str(path), "--format", "json", "--all")
    assert code == 0, err
    document = json.loads(out)
    assert document["layers"][0]["name"] == "conv" and document["layers"][0]["params"] == []
    assert document["model"]["parameters"] == 0


@pytest.mark.parametrize("count", [20_000, 120_000], ids=["parsed whole", "nodes left as bytes"])
def test_a_graph_whose_layers_would_not_fit_in_memory_is_refused_before_they_are_built(
    cli, tmp_path, monkeypatch, count
):
    """A node costs a few bytes of the file and a couple of KiB as a layer: a crafted
    graph of tiny nodes is checked against the memory available before anything is built
    from them, on both of the ONNX loader's paths (a file over 1 MiB keeps its nodes as
    bytes until then; none here has an initializer)."""
    import onnx
    from onnx import helper

    from inspector import resources
    from plugins.loaders.onnx import in_file_data, loader

    path = tmp_path / "tiny_nodes.onnx"
    nodes = [helper.make_node("A", [], [f"{index:x}"]) for index in range(count)]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [], [])), str(path))
    assert (path.stat().st_size >= in_file_data.MIN_BYTES) == (count > 100_000)
    needed = count * loader.LAYER_BYTES
    monkeypatch.setattr(resources, "available_memory", lambda: needed - 1)
    code, out, err = cli("inspect", str(path), "--all", "--format", "json")
    line = one_line_error(code, err, path, f"has {count:,} nodes", "more than the", "nothing was built")
    assert out == ""
    assert f"about {needed / 2**30:.1f} GiB" in line
    monkeypatch.setattr(resources, "available_memory", lambda: needed)
    code, out, err = cli("inspect", str(path), "--all", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["model"]["layers"] == count


def test_available_memory_is_what_the_machine_says(tmp_path, monkeypatch):
    from inspector import resources

    available = resources.available_memory()
    if sys.platform.startswith("linux"):
        assert available is not None and 0 < available <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    meminfo, cgroup = tmp_path / "meminfo", tmp_path / "cgroup"
    meminfo.write_text("MemTotal:       4000000 kB\nMemFree:         100000 kB\nMemAvailable:   2000000 kB\n")
    cgroup.mkdir()
    monkeypatch.setattr(resources, "_MEMINFO", meminfo)
    monkeypatch.setattr(resources, "_CGROUP", cgroup)
    assert resources.available_memory() == 2_048_000_000  # no cgroup limit to read
    (cgroup / "memory.max").write_text("1073741824\n")
    (cgroup / "memory.current").write_text("73741824\n")
    assert resources.available_memory() == 10**9  # the cgroup leaves less
    (cgroup / "memory.max").write_text("max\n")
    assert resources.available_memory() == 2_048_000_000
    meminfo.unlink()
    assert resources.available_memory() is None  # the platform does not say


@pytest.mark.parametrize(
    "marker, where",
    [
        ("OPTYPEMK", "node 0's op_type"),  # of the default domain, as the fuzz found it
        ("DOMAINMK", "node 0's op_type"),
        ("NODENAME", "node 0's name"),
        ("INPUTNAM", "node 1's inputs"),
        ("OUTPUTNM", "node 0's outputs"),
        ("ATTRNAME", "node 0's attribute names"),
        ("METAVALU", "the model's metadata"),
        ("GRAPHINP", "node 0's inputs"),  # the first place it is read
        ("INITNAME", "node 1's inputs"),
        ("METAKEYS", "the model's metadata"),
    ],
)
def test_onnx_names_that_are_not_utf8_are_refused(cli, tmp_path, marker, where):
    """ONNX is proto2: a string field that is not UTF-8 parses, as bytes (a fuzzed op type
    b'\\xf7onv' ended in an internal error in every report). Each kind of name, made not
    UTF-8 in the file's bytes, is refused in one line saying which."""
    from onnx import TensorProto, helper, numpy_helper

    names = {
        name: (marker if marker == name else name.lower())
        for name in (
            "OPTYPEMK",
            "NODENAME",
            "INPUTNAM",
            "OUTPUTNM",
            "ATTRNAME",
            "METAVALU",
            "GRAPHINP",
            "INITNAME",
            "METAKEYS",
        )
    }
    domain = marker if marker == "DOMAINMK" else ""
    first = helper.make_node(
        names["OPTYPEMK"], [names["GRAPHINP"]], [names["OUTPUTNM"]], name=names["NODENAME"], domain=domain
    )
    first.attribute.append(helper.make_attribute(names["ATTRNAME"], 1))
    second = helper.make_node("Add", [names["OUTPUTNM"], names["INITNAME"]], ["y"], name="add")
    if marker == "INPUTNAM":
        second.input[1] = marker  # an input nothing produces and no initializer holds
    graph = helper.make_graph(
        [first, second],
        "g",
        [helper.make_tensor_value_info(names["GRAPHINP"], TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.ones(1, np.float32), names["INITNAME"])],
    )
    model = helper.make_model(graph)
    helper.set_model_props(model, {names["METAKEYS"]: names["METAVALU"]})
    data = model.SerializeToString()
    assert marker.encode() in data
    path = tmp_path / "not_utf8.onnx"
    path.write_bytes(data.replace(marker.encode(), b"\xf7" + marker[1:].encode()))
    code, out, err = cli("inspect", str(path), "--all", "--format", "json")
    one_line_error(code, err, path, f"is not a valid ONNX model (not UTF-8 text: {where})")
    assert out == ""


def test_zip_entry_in_unknown_compression_is_refused(cli, pair, tmp_path):
    lzma = tmp_path / "lzma.pt"
    with zipfile.ZipFile(pair["sd"]) as old, zipfile.ZipFile(lzma, "w") as new:
        for info in old.infolist():
            method = zipfile.ZIP_LZMA if info.filename.endswith("data.pkl") else zipfile.ZIP_STORED
            new.writestr(info.filename, old.read(info), compress_type=method)
    code, _, err = cli("inspect", str(lzma))
    one_line_error(code, err, lzma, "compression method 14")


def test_a_dynamic_shape_program_has_nothing_to_refuse(tmp_path):
    from plugins.loaders.torch.pt2_safety import is_plain_expression, run_concerns

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = corpus.tiny_net()

        def forward(self, x):
            return self.net(x).flatten(1).sum(1) * x.shape[0]

    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Flat(), (torch.rand(2, 3, 8, 8),), dynamic_shapes={"x": {0: batch}})
    path = tmp_path / "dynamic.pt2"
    torch.export.save(program, str(path))
    assert run_concerns(path) == []
    assert is_plain_expression("Mul(Integer(32), Symbol('s77', positive=True, integer=True))")
    for hostile in ("2**10**10", "Pow(2, 10)", "LShift(1, 99)", "s0.__class__", "lambdify(s0, 1)", "Symbol('a')[0]"):
        assert not is_plain_expression(hostile), hostile

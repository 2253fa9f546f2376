"""Hostile and malformed model files, crafted in code (nothing binary is committed).

Each builder writes one file into the folder it is given and returns its path. The
payloads are harmless but observable: a pickle or TorchScript that would run writes the
file ``marker`` (a path in the test's own tmp folder), so a test can tell whether code
from the file ran. Bytes are assembled the way the real writers lay them out:

- ``tensor_pickle``: a torch.save data.pkl holding ``{"w": tensor}``, with the storage
  size, offset, sizes and strides given;
- ``torch_zip``: a torch.save zip archive (``archive/data.pkl``, ``archive/data/<key>``);
- ``rewrite_zip``: a copy of an archive with entries renamed, replaced, added or
  recompressed (a .pt2 with a payload in its sample inputs, TorchScript with its code
  folder called ``CODE/``).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

# ----------------------------------------------------------------------------- pickles


def pickle_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def pickle_str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def tensor_pickle(numel: int, offset: int, size: list[int], stride: list[int], storage: str = "FloatStorage") -> bytes:
    """data.pkl of ``{"w": _rebuild_tensor_v2(storage '0' of numel, offset, size, stride)}``."""
    body = b"\x80\x02}" + pickle_str("w") + b"ctorch._utils\n_rebuild_tensor_v2\n("
    body += _tuple([pickle_str("storage"), f"ctorch\n{storage}\n".encode(), pickle_str("0"), pickle_str("cpu")])[:-1]
    body += pickle_int(numel) + b"tQ"
    body += pickle_int(offset) + _tuple([pickle_int(s) for s in size]) + _tuple([pickle_int(s) for s in stride])
    return body + b"\x89ccollections\nOrderedDict\n)RtRs."


def frozenset_range_pickle(count: int) -> bytes:
    """data.pkl of ``{"w": frozenset(range(count))}`` through two allowed builtins."""
    return (
        b"\x80\x02}"
        + pickle_str("w")
        + b"c__builtin__\nfrozenset\nc__builtin__\nrange\nK\x00"
        + pickle_int(count)
        + b"\x86R\x85Rs."
    )


class _RunsCommand:
    """Unpickling this calls ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def payload_torch_save(marker: Path) -> bytes:
    """A torch.save archive (as bytes) whose unpickling runs ``touch marker``."""
    import torch

    buffer = io.BytesIO()
    torch.save({"x": _RunsCommand(marker)}, buffer)
    return buffer.getvalue()


def payload_pickle(marker: Path) -> bytes:
    return pickle.dumps(_RunsCommand(marker), protocol=2)


# ----------------------------------------------------------------------------- zips


def torch_zip(
    path: Path, data_pkl: bytes, records: dict[str, bytes], compress: int = zipfile.ZIP_STORED, folder: str = "archive"
) -> Path:
    """A torch.save zip archive with the given data.pkl and storage records."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{folder}/data.pkl", data_pkl, compress_type=compress)
        archive.writestr(f"{folder}/byteorder", "little")
        for key, data in records.items():
            archive.writestr(f"{folder}/data/{key}", data)
        archive.writestr(f"{folder}/version", "3\n")
    return path


def rewrite_zip(
    source: Path,
    target: Path,
    rename: Callable[[str], str] = lambda name: name,
    replace: dict[str, bytes | Callable[[bytes], bytes]] | None = None,
    add: dict[str, bytes] | None = None,
    deflate: set[str] | None = None,
) -> Path:
    """A copy of the zip ``source``: names through ``rename``; ``replace`` maps an entry
    name (the part after the top folder) to new bytes or a function of the old ones;
    ``add`` adds entries (names after the top folder); ``deflate`` compresses entries."""
    replace, add, deflate = replace or {}, add or {}, deflate or set()
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        folder = old.infolist()[0].filename.partition("/")[0]
        for info in old.infolist():
            inner = info.filename.partition("/")[2]
            data = old.read(info)
            if inner in replace:
                change = replace[inner]
                data = change(data) if callable(change) else change
            method = zipfile.ZIP_DEFLATED if inner in deflate else zipfile.ZIP_STORED
            new.writestr(rename(info.filename), data, compress_type=method)
        for inner, data in add.items():
            new.writestr(f"{folder}/{inner}", data)
    return target


def zip_bomb_entry(path: Path, folder_entries: dict[str, bytes], bomb_name: str, bomb_bytes: int) -> Path:
    """A zip with the given entries plus ``bomb_name``: ``bomb_bytes`` zeros, deflated
    (a thousand times smaller), written in pieces."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in folder_entries.items():
            archive.writestr(name, data)
        info = zipfile.ZipInfo(bomb_name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as stream:
            chunk = b"\0" * 2**20
            for _ in range(bomb_bytes // len(chunk)):
                stream.write(chunk)
    return path


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


# ----------------------------------------------------------------------------- models


def tiny_net():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).eval()
    with torch.no_grad():
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].running_mean.uniform_(-1.0, 1.0)
    return net


EXAMPLE_SHAPE = (1, 3, 8, 8)


def export_pair(folder: Path) -> dict[str, Path]:
    """The tiny net as .pt2, TorchScript, state_dict and its ONNX export."""
    import warnings

    import torch

    net = tiny_net()
    example = torch.rand(*EXAMPLE_SHAPE)
    paths = {
        "pt2": folder / "net.pt2",
        "ts": folder / "net_ts.pt",
        "sd": folder / "net_sd.pt",
        "onnx": folder / "net.onnx",
    }
    torch.export.save(torch.export.export(net, (example,)), str(paths["pt2"]))
    torch.jit.trace(net, example).save(str(paths["ts"]))
    torch.save(net.state_dict(), paths["sd"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(paths["onnx"]), dynamo=False, opset_version=17, input_names=["x"])
    return paths


SETSTATE_SOURCE = """
import sys
from typing import Tuple

import torch


class Payload(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.ones(2)

    def forward(self, x):
        return x * self.w.sum()

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.w, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
        self.w = state[0]
        self.training = state[1]
        torch.save(state[0], MARKER)


torch.jit.script(Payload()).save(sys.argv[1])
"""

FILE_OPS_SOURCE = """
import sys

import torch


class Writer(torch.nn.Module):
    def forward(self, x):
        torch.save(x, MARKER)
        return x * 2


torch.jit.script(Writer()).save(sys.argv[1])
"""


def scripted(folder: Path, source: str, marker: Path, name: str) -> Path:
    """A TorchScript file made by a script (torch.jit.script needs the source on disk)."""
    import subprocess
    import sys

    script = folder / f"make_{name}.py"
    script.write_text(source.replace("MARKER", repr(str(marker))))
    path = folder / f"{name}.pt"
    subprocess.run([sys.executable, str(script), str(path)], check=True, capture_output=True)
    return path


def edit_program(path: Path, target: Path, change: Callable[[dict], None], name: str = "models/model.json") -> Path:
    """A copy of a .pt2 whose program JSON ``change`` edits in place."""

    def edited(data: bytes) -> bytes:
        program = json.loads(data)
        change(program)
        return json.dumps(program).encode()

    return rewrite_zip(path, target, replace={name: edited})


def edit_weight_meta(path: Path, target: Path, **meta) -> Path:
    """A copy of a .pt2 whose first weight has other sizes/strides/storage_offset."""

    def edited(data: bytes) -> bytes:
        config = json.loads(data)
        first = next(iter(config["config"].values()))
        for key, values in meta.items():
            if key == "storage_offset":
                first["tensor_meta"]["storage_offset"] = {"as_int": values}
            else:
                first["tensor_meta"][key] = [{"as_int": value} for value in values]
        return json.dumps(config).encode()

    return rewrite_zip(path, target, replace={"data/weights/model_weights_config.json": edited})


def safetensors_file(path: Path, header: dict, data: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path

"""Zip archives as torch writes them: which kind an archive is, and its entries as memory.

torch.save, torch.jit.save and torch.export.save all write a zip whose entries sit under
one top folder ("archive/data.pkl", "m/models/model.json"); what the entries are called
tells the three apart. Entries are stored uncompressed, so a tensor's bytes can be
memory-mapped straight from the file (:func:`entry_array`).
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"

TORCH_SAVE = "torch.save"
TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch.export"
TORCH_EXPORT_LEGACY = "torch.export (legacy)"


def open_archive(path: Path | BinaryIO) -> zipfile.ZipFile:
    """Open a zip torch wrote (a path or a binary file); BadZipFile when its directory is
    missing or not its own.

    torch writes the first entry at offset 0. When the end of a file is cut off, zipfile
    may find the directory of a zip stored *inside* it (a .pt2 holds a torch.save
    archive of its example inputs) and read that one instead; an archive whose first
    entry is not at offset 0 is therefore treated as damaged.
    """
    archive = zipfile.ZipFile(path)
    entries = archive.infolist()
    if entries and min(info.header_offset for info in entries) != 0:
        archive.close()
        raise zipfile.BadZipFile("the zip directory found is not the file's own (the file is cut short?)")
    return archive


def zip_names(path: Path) -> list[str] | None:
    """The entry names of the zip at ``path``, or None when its directory cannot be read.

    Each of the three torch sniffers and then the loader ask for them; the directory of
    a large state_dict (three entries per tensor) is parsed once, not four times. A
    parse is reused only for the same file (device, inode, size, modification time)
    whose directory bytes are unchanged (their CRC), so a file rewritten in place is
    read again.
    """
    try:
        with open(path, "rb") as stream:
            status = os.fstat(stream.fileno())
            key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
            known = _DIRECTORIES.get(key)
            if known is not None and _crc_from(stream, known[0]) == known[1]:
                return list(known[2])
            with open_archive(stream) as archive:
                names = archive.namelist()
                start = archive.start_dir
            _DIRECTORIES[key] = (start, _crc_from(stream, start), tuple(names))
            while len(_DIRECTORIES) > 4:
                del _DIRECTORIES[next(iter(_DIRECTORIES))]
            return names
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return None


_DIRECTORIES: dict[tuple[int, int, int, int], tuple[int, int, tuple[str, ...]]] = {}
"""(device, inode, size, mtime) -> (directory offset, CRC of the bytes from there, names)."""


def _crc_from(stream, offset: int) -> int:
    """CRC-32 of the bytes from ``offset`` to the end: the directory, its end record and comment."""
    stream.seek(offset)
    crc = 0
    while chunk := stream.read(1 << 20):
        crc = zlib.crc32(chunk, crc)
    return crc


def kind_of_entry(name: str) -> str | None:
    """The writer a single entry name points to, for an archive whose directory is lost."""
    _, _, rest = name.partition("/")
    if rest.startswith(("data/weights/", "models/", "data/constants/")):
        return TORCH_EXPORT
    if rest == "data.pkl" or rest.startswith(("data/", ".data/", "code/")) or rest in ("byteorder", "version"):
        return TORCH_SAVE
    return None


def archive_kind(names: list[str]) -> str | None:
    """Which torch writer made an archive with these entries, or None."""
    basenames = {name.split("/", 1)[-1] for name in names}
    has_models = any(name.startswith("models/") for name in basenames)
    has_weights = any(name.startswith("data/weights/") for name in basenames)
    if "archive_format" in basenames or (has_models and has_weights):
        return TORCH_EXPORT
    if "serialized_exported_program.json" in basenames:
        return TORCH_EXPORT_LEGACY
    if "constants.pkl" in basenames or any(name.startswith("code/") for name in basenames):
        return TORCHSCRIPT
    if "data.pkl" in basenames:
        return TORCH_SAVE
    return None


def first_entry_name(head: bytes) -> str:
    """The name in the first local file header (readable even when the zip is cut short)."""
    if len(head) < 30 or not head.startswith(ZIP_MAGIC):
        return ""
    name_length = struct.unpack_from("<H", head, 26)[0]
    return head[30 : 30 + name_length].decode("utf-8", "replace")


def top_folder(names: list[str], marker: str) -> str | None:
    """The folder prefix ("m/") of the entry whose name after the folder is ``marker``."""
    for name in names:
        folder, _, rest = name.partition("/")
        if rest == marker:
            return folder + "/"
    return None


def entry_array(path: Path, archive: zipfile.ZipFile, name: str, dtype: np.dtype) -> np.ndarray:
    """A 1-D array over the bytes of entry ``name``: memory-mapped when stored, else read.

    Raises ValueError when the entry points past the end of the file or its size is not a
    multiple of the dtype's size.
    """
    info = archive.getinfo(name)
    if info.file_size % dtype.itemsize:
        raise ValueError(f"entry {name} holds {info.file_size} bytes, not a whole number of {dtype.name} values")
    count = info.file_size // dtype.itemsize
    if count == 0:
        return np.zeros(0, dtype=dtype)
    if info.compress_type != zipfile.ZIP_STORED:
        return np.frombuffer(archive.read(name), dtype=dtype)
    with open(path, "rb") as stream:
        stream.seek(info.header_offset)
        header = stream.read(30)
    if len(header) < 30 or not header.startswith(ZIP_MAGIC):
        raise ValueError(f"entry {name} has no local header")
    name_length, extra_length = struct.unpack_from("<HH", header, 26)
    offset = info.header_offset + 30 + name_length + extra_length
    if offset + info.file_size > path.stat().st_size:
        raise ValueError(f"entry {name} points past the end of the file")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))

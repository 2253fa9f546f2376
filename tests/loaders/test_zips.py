"""The zip directory of a torch file is parsed once per command, and never reused stale."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.manager import get_plugin_manager
from plugins.loaders.torch import zip_directory, zips
from plugins.loaders.torch.zip_directory import read_central_directory


def test_sniffers_loader_and_archive_share_one_parse(tmp_path, monkeypatch):
    path = tmp_path / "weights.pt"
    torch.save({f"layer{index}.weight": torch.full((2,), float(index)) for index in range(50)}, path)
    zips._DIRECTORIES.clear()
    parses = []
    real = zips.read_central_directory

    def counted(stream):
        parses.append(stream)
        return real(stream)

    def zipfile_parse(self):
        raise AssertionError("zipfile parses the directory again")

    monkeypatch.setattr(zips, "read_central_directory", counted)
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", zipfile_parse)
    model = get_plugin_manager().load_model(path)
    assert len(model.layers) == 50 and model.layer("layer7").params["weight"].array().tolist() == [7.0, 7.0]
    assert len(parses) == 1
    assert zips._DIRECTORIES == {}  # a parse is not kept past the load that needed it
    get_plugin_manager().load_model(path)
    assert len(parses) == 2  # loaded again, parsed again


def test_a_file_rewritten_in_place_is_parsed_again(tmp_path):
    """Same inode, size and modification time, other bytes: the directory's CRC tells."""
    path = tmp_path / "weights.pt"
    torch.save({"a": torch.ones(3)}, path)
    before = os.stat(path)
    with zips.open_archive(path) as archive:
        assert b"a" in archive.read(archive.find("weights/data.pkl"))
    torch.save({"b": torch.ones(3)}, path)  # torch.save truncates and rewrites the same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    with zips.open_archive(path) as archive:
        data = archive.read(archive.find("weights/data.pkl"))  # a stale entry would fail its CRC check
    assert b"X\x01\x00\x00\x00b" in data and b"X\x01\x00\x00\x00a" not in data


# ----------------------------------------------------------------------------- the directory as zipfile reads it

ENTRY_FIELDS = zip_directory.Entry.__slots__
"""What an entry offers, each compared with the ZipInfo attribute of that name."""


def zipfile_reading(path: Path):
    """What zipfile makes of the directory: (start, entries as tuples), or the exception."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.start_dir, [
                tuple(getattr(info, name) for name in ENTRY_FIELDS) for info in archive.infolist()
            ]
    except Exception as exc:  # noqa: BLE001 - compared below
        return type(exc), str(exc)


def lean_reading(path: Path):
    try:
        with open(path, "rb") as stream:
            start, entries = read_central_directory(stream)
        return start, [tuple(getattr(entry, name) for name in ENTRY_FIELDS) for entry in entries]
    except Exception as exc:  # noqa: BLE001 - compared below
        return type(exc), str(exc)


def zip64_entry(path: Path, target: Path) -> Path:
    """The one-entry zip at ``path`` with its directory record's sizes and offset moved
    into a zip64 extra field, as a writer does for entries past 4 GiB."""
    data = bytearray(path.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    start = struct.unpack_from("<L", data, end + 16)[0]
    record = data[start:end]
    name_length, extra_length, comment_length = struct.unpack_from("<3H", record, 28)
    compress_size, file_size = struct.unpack_from("<2L", record, 20)
    offset = struct.unpack_from("<L", record, 42)[0]
    extra = struct.pack("<HHQQQ", 1, 24, file_size, compress_size, offset)
    head = bytearray(record[:46])
    struct.pack_into("<2L", head, 20, 0xFFFFFFFF, 0xFFFFFFFF)
    struct.pack_into("<L", head, 42, 0xFFFFFFFF)
    struct.pack_into("<H", head, 30, extra_length + len(extra))
    name = record[46 : 46 + name_length]
    rest = record[46 + name_length : 46 + name_length + extra_length + comment_length]
    directory = bytes(head) + bytes(name) + extra + bytes(rest)
    tail = bytearray(data[end:])
    struct.pack_into("<L", tail, 12, len(directory))
    target.write_bytes(bytes(data[:start]) + directory + bytes(tail))
    return target


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    """Zips that exercise every branch of reading a directory."""
    folder = tmp_path_factory.mktemp("zips")
    made = {}
    made["torch.save"] = folder / "weights.pt"
    torch.save({f"layer{index}.weight": torch.full((3,), float(index)) for index in range(20)}, made["torch.save"])
    made["comment"] = folder / "comment.zip"
    with zipfile.ZipFile(made["comment"], "w") as archive:
        archive.writestr("a/data.pkl", b"x" * 100)
        archive.writestr("a/b", b"y", compress_type=zipfile.ZIP_DEFLATED)
        archive.comment = b"a comment " + b"z" * 300
    made["end record in the comment"] = folder / "fake.zip"
    with zipfile.ZipFile(made["end record in the comment"], "w") as archive:
        archive.writestr("a/data.pkl", b"x" * 100)
        archive.comment = b"PK\x05\x06 looks like an end record" + b"z" * 30
    made["names"] = folder / "names.zip"
    with zipfile.ZipFile(made["names"], "w") as archive:
        archive.writestr("archive/\u00e9t\u00e9.bin", b"utf-8")  # flag bit 11
        archive.writestr(zipfile.ZipInfo("archive/nul\0.py"), b"nul")
        archive.writestr("archive\\back\\slash", b"back")
    made["prefixed"] = folder / "prefixed.zip"
    made["prefixed"].write_bytes(b"#!/bin/sh stub\n" * 10 + made["comment"].read_bytes())
    made["many (zip64 end record)"] = folder / "many.zip"
    with zipfile.ZipFile(made["many (zip64 end record)"], "w") as archive:
        for index in range(65_600):  # past 65,535: the counts need the zip64 record
            archive.writestr(f"m/data/{index}", b"")
    one = folder / "one.zip"
    with zipfile.ZipFile(one, "w") as archive:
        archive.writestr("o/data.pkl", b"0123456789" * 7)
    made["zip64 extra field"] = zip64_entry(one, folder / "zip64.zip")
    return made


@pytest.mark.parametrize(
    "name", ["torch.save", "comment", "names", "prefixed", "many (zip64 end record)", "zip64 extra field"]
)
def test_the_directory_is_read_as_zipfile_reads_it(archives, name):
    path = archives[name]
    expected = zipfile_reading(path)
    assert len(expected[1]) >= 1
    assert isinstance(expected[1], list), expected  # zipfile reads it
    assert lean_reading(path) == expected
    if name == "prefixed":  # torch writes its first entry at offset 0: another zip's directory is refused
        with pytest.raises(zipfile.BadZipFile, match="not the file's own"):
            zips.open_archive(path)
        return
    with zips.open_archive(path) as archive, zipfile.ZipFile(path) as reference:
        for info in reference.infolist()[:100]:  # each entry's data, read through zipfile
            assert archive.read(archive.getinfo(info.filename)) == reference.read(info)


def test_an_end_record_in_the_comment_misleads_both_alike(archives):
    expected = zipfile_reading(archives["end record in the comment"])
    assert expected == (zipfile.BadZipFile, "Bad offset for central directory")
    assert lean_reading(archives["end record in the comment"]) == expected


@pytest.mark.parametrize("name", ["torch.save", "comment", "prefixed", "zip64 extra field"])
def test_a_damaged_directory_fails_as_in_zipfile(archives, name, tmp_path):
    """Cut short anywhere in its last 2 KB, or one byte of its directory changed: the same
    entries, or the same exception with the same message."""
    data = archives[name].read_bytes()
    start = zipfile.ZipFile(archives[name]).start_dir
    random = np.random.default_rng(12)
    variants = [data[:cut] for cut in range(max(len(data) - 2048, 0), len(data), 7)]
    for position in random.integers(start, len(data), 150):
        changed = bytearray(data)
        changed[position] = int(random.integers(0, 256))
        variants.append(bytes(changed))
    damaged = tmp_path / "damaged.zip"
    outcomes = set()
    for variant in variants:
        damaged.write_bytes(variant)
        expected = zipfile_reading(damaged)
        assert lean_reading(damaged) == expected
        outcomes.add(expected[0] if isinstance(expected[0], type) else "read")
    assert zipfile.BadZipFile in outcomes and "read" in outcomes  # both kinds were tried

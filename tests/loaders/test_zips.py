"""The zip directory of a torch file is parsed once per command, and never reused stale."""

from __future__ import annotations

import os
import zipfile

import torch

from inspector.manager import get_plugin_manager
from plugins.loaders.torch import zips


def test_sniffers_loader_and_archive_share_one_parse(tmp_path, monkeypatch):
    path = tmp_path / "weights.pt"
    torch.save({f"layer{index}.weight": torch.full((2,), float(index)) for index in range(50)}, path)
    zips._DIRECTORIES.clear()
    parses = []
    real = zipfile.ZipFile._RealGetContents

    def counted(self):
        parses.append(self)
        return real(self)

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", counted)
    model = get_plugin_manager().load_model(path)
    assert len(model.layers) == 50 and model.layer("layer7").params["weight"].array().tolist() == [7.0, 7.0]
    assert len(parses) == 1


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

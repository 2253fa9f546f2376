"""Zip archives as torch writes them: which kind an archive is, its entries checked and read.

torch.save, torch.jit.save and torch.export.save all write a zip whose entries sit under
one top folder ("archive/data.pkl", "m/models/model.json"); what the entries are called
tells the three apart. Entries are stored uncompressed, so a tensor's bytes can be
memory-mapped straight from the file (:func:`entry_array`).

An archive is untrusted input, so :func:`open_archive` checks it before anything in it is
read or decompressed:

- names: torch's zip reader (miniz) finds entries ignoring case, so every lookup here
  does too (:meth:`Archive.find`), names are compared normalised (:func:`normalise`:
  lower case, "\\" as "/"), and an archive holding two entries of the same normalised
  name is refused: which of the two a reader picks would decide what runs;
- sizes: an entry is stored or deflated (nothing else torch reads), a stored entry's data
  lies inside the file, and the entries' declared sizes together stay within
  :data:`MAX_EXPANSION` times the file's size plus :data:`EXPANSION_SLACK` bytes. Readers
  (Python's zipfile, miniz) never produce more than an entry's declared size, so this
  bounds what a zip bomb can make anyone allocate.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"

TORCH_SAVE = "torch.save"
TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch.export"
TORCH_EXPORT_LEGACY = "torch.export (legacy)"

MAX_EXPANSION = 16
"""The entries of an archive may declare at most this many times the file's size ..."""
EXPANSION_SLACK = 64 * 2**20
"""... plus this many bytes (torch stores entries uncompressed: a real archive is 1x)."""
READ_CHUNK = 2**20
_READABLE = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


class ArchiveError(ValueError):
    """An archive refused before anything in it is read; ``str()`` is the problem, worded
    to follow the file name in an :class:`~inspector.errors.InputError`."""


def normalise(name: str) -> str:
    """An entry name as torch's zip reader compares it: case folded, "\\" as "/"."""
    return name.replace("\\", "/").lower()


class Archive:
    """A checked zip archive (see the module docstring); entries are found ignoring case.

    It offers what the loaders used of :class:`zipfile.ZipFile` (``namelist``,
    ``infolist``, ``getinfo``, ``read``, a context manager), with every lookup by
    normalised name.
    """

    def __init__(self, path: Path, archive: zipfile.ZipFile, stream=None) -> None:
        self.path = Path(path)
        self.zip = archive
        self._stream = stream  # the file the ZipFile reads, closed with it
        self.infos = archive.infolist()
        self._by_name = {normalise(info.filename): info for info in self.infos}

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self.zip.close()
        if self._stream is not None:
            self._stream.close()

    def namelist(self) -> list[str]:
        return [info.filename for info in self.infos]

    def infolist(self) -> list[zipfile.ZipInfo]:
        return list(self.infos)

    def find(self, name: str) -> zipfile.ZipInfo | None:
        """The entry called ``name``, ignoring case (as torch finds it), or None."""
        return self._by_name.get(normalise(name))

    def getinfo(self, name: str) -> zipfile.ZipInfo:
        info = self.find(name)
        if info is None:
            raise KeyError(f"there is no entry {name!r} in the archive")
        return info

    def read(self, name: "str | zipfile.ZipInfo") -> bytes:
        """The whole entry (its size is within the archive's checked budget)."""
        return self.zip.read(name if isinstance(name, zipfile.ZipInfo) else self.getinfo(name))

    def chunks(self, info: zipfile.ZipInfo, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The entry's bytes in pieces of at most ``size``, never all of it at once."""
        with self.zip.open(info) as stream:
            while chunk := stream.read(size):
                yield chunk


def open_archive(path: Path) -> Archive:
    """Open and check a zip torch wrote.

    Raises BadZipFile when its directory is missing or not its own, and
    :class:`ArchiveError` when it breaks a rule of the module docstring. torch writes the
    first entry at offset 0. When the end of a file is cut off, zipfile may find the
    directory of a zip stored *inside* it (a .pt2 holds a torch.save archive of its
    example inputs) and read that one instead; an archive whose first entry is not at
    offset 0 is therefore treated as damaged.
    """
    stream = open(path, "rb")  # noqa: SIM115 - the Archive closes it
    try:
        archive = _ZipFileOfParsedDirectory(stream, _parsed_directory(stream))
    except BaseException:
        stream.close()
        raise
    try:
        entries = archive.infolist()
        if entries and min(info.header_offset for info in entries) != 0:
            raise zipfile.BadZipFile("the zip directory found is not the file's own (the file is cut short?)")
        check_entries(entries, Path(path).stat().st_size)
    except BaseException:
        archive.close()
        stream.close()
        raise
    return Archive(path, archive, stream)


def check_entries(entries: list[zipfile.ZipInfo], file_size: int) -> None:
    """Raise :class:`ArchiveError` for duplicate names, unreadable compression, stored
    data outside the file, or declared sizes beyond the budget (module docstring)."""
    seen: dict[str, str] = {}
    total = 0
    for info in entries:
        key = normalise(info.filename)
        if key in seen:
            raise ArchiveError(
                f"holds two entries named {seen[key]!r} and {info.filename!r} (names are compared ignoring case, "
                "as torch does); which one a reader takes is ambiguous, so the archive is refused"
            )
        seen[key] = info.filename
        if info.compress_type not in _READABLE:
            raise ArchiveError(
                f"entry {info.filename!r} uses zip compression method {info.compress_type}, which torch does not read"
            )
        if info.compress_type == zipfile.ZIP_STORED and (
            info.compress_size != info.file_size or info.header_offset + info.compress_size > file_size
        ):
            raise ArchiveError(f"is truncated or corrupted: entry {info.filename!r} points past the end of the file")
        total += info.file_size
    budget = MAX_EXPANSION * file_size + EXPANSION_SLACK
    if total > budget:
        raise ArchiveError(
            f"is refused: its entries would expand to {total:,} bytes from a {file_size:,}-byte file (a zip bomb?); "
            f"graphinspect reads at most {MAX_EXPANSION}x the file's size plus {EXPANSION_SLACK // 2**20} MiB"
        )


def zip_names(path: Path) -> list[str] | None:
    """The entry names of the zip at ``path``, or None when its directory cannot be read.

    Each of the three torch sniffers, then the loader and :func:`open_archive` ask for
    the directory; a large state_dict's (one entry per tensor) is parsed once, not five
    times (:func:`_parsed_directory`).
    """
    try:
        with open(path, "rb") as stream:
            entries = _parsed_directory(stream)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return None
    if entries and min(info.header_offset for info in entries) != 0:
        return None  # not the file's own directory (see open_archive)
    return [info.filename for info in entries]


def _parsed_directory(stream) -> tuple[zipfile.ZipInfo, ...]:
    """The entries of the zip open as ``stream``, as zipfile parses them.

    A parse is reused only for the same file (device, inode, size, modification time)
    whose directory bytes are unchanged (their CRC), so a file rewritten in place is
    read again. Raises what zipfile raises for a zip it cannot read.
    """
    status = os.fstat(stream.fileno())
    key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    known = _DIRECTORIES.get(key)
    if known is not None and _crc_from(stream, known[0]) == known[1]:
        return known[2]
    with zipfile.ZipFile(stream) as archive:
        entries = tuple(archive.infolist())
        start = archive.start_dir
    _DIRECTORIES[key] = (start, _crc_from(stream, start), entries)
    while len(_DIRECTORIES) > 4:
        del _DIRECTORIES[next(iter(_DIRECTORIES))]
    return entries


class _ZipFileOfParsedDirectory(zipfile.ZipFile):
    """A read-only ZipFile over entries parsed before (:func:`_parsed_directory`):
    zipfile's constructor reads the directory with ``_RealGetContents``, which this
    replaces by the known entries. (Were that private name ever gone, zipfile would
    simply parse the directory again.)"""

    def __init__(self, stream, entries: tuple[zipfile.ZipInfo, ...]) -> None:
        self._parsed_entries = entries
        super().__init__(stream)

    def _RealGetContents(self) -> None:  # noqa: N802 - zipfile's name
        for info in self._parsed_entries:
            self.filelist.append(info)
            self.NameToInfo[info.filename] = info


_DIRECTORIES: dict[tuple[int, int, int, int], tuple[int, int, tuple[zipfile.ZipInfo, ...]]] = {}
"""(device, inode, size, mtime) -> (directory offset, CRC of the bytes from there, entries)."""


def _crc_from(stream, offset: int) -> int:
    """CRC-32 of the bytes from ``offset`` to the end: the directory, its end record and comment."""
    stream.seek(offset)
    crc = 0
    while chunk := stream.read(1 << 20):
        crc = zlib.crc32(chunk, crc)
    return crc


def kind_of_entry(name: str) -> str | None:
    """The writer a single entry name points to, for an archive whose directory is lost."""
    _, _, rest = normalise(name).partition("/")
    if rest.startswith(("data/weights/", "models/", "data/constants/")):
        return TORCH_EXPORT
    if rest == "data.pkl" or rest.startswith(("data/", ".data/", "code/")) or rest in ("byteorder", "version"):
        return TORCH_SAVE
    return None


def archive_kind(names: list[str]) -> str | None:
    """Which torch writer made an archive with these entries (names compared as torch's
    reader compares them, :func:`normalise`), or None."""
    basenames = {normalise(name).split("/", 1)[-1] for name in names}
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
    """The folder prefix ("m/") of the entry whose name after the folder is ``marker``
    (compared normalised)."""
    for name in names:
        folder, _, rest = name.replace("\\", "/").partition("/")
        if normalise(rest) == marker:
            return folder + "/"
    return None


LOCAL_HEADER_BYTES = 30
"""The fixed part of a zip entry's local header; its name and extra field follow."""


def data_offset(info: zipfile.ZipInfo, header: bytes) -> int | None:
    """Where the data of entry ``info`` starts in the file, given the
    :data:`LOCAL_HEADER_BYTES` bytes at its ``header_offset`` (None: no local header
    there). The local header's own name and extra lengths count, not the directory's:
    torch pads the extra field so that tensors start aligned."""
    if len(header) < LOCAL_HEADER_BYTES or not header.startswith(ZIP_MAGIC):
        return None
    name_length, extra_length = struct.unpack_from("<HH", header, 26)
    return info.header_offset + LOCAL_HEADER_BYTES + name_length + extra_length


def entry_array(path: Path, archive: Archive, name: str, dtype: np.dtype) -> np.ndarray:
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
        offset = data_offset(info, stream.read(LOCAL_HEADER_BYTES))
    if offset is None:
        raise ValueError(f"entry {name} has no local header")
    if offset + info.file_size > path.stat().st_size:
        raise ValueError(f"entry {name} points past the end of the file")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count,))

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

from plugins.loaders.torch.zip_directory import Entry, read_central_directory

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
    normalised name. Its entries are :class:`~.zip_directory.Entry` records, which have
    the attributes of :class:`zipfile.ZipInfo` the loaders read.
    """

    def __init__(self, path: Path, archive: zipfile.ZipFile, stream, directory: "Directory") -> None:
        self.path = Path(path)
        self.zip = archive  # reads an entry's data, given its ZipInfo
        self._stream = stream  # the file the ZipFile reads, closed with it
        self.infos = directory.entries
        self._by_name = directory.by_name()  # shared with the Directory: read only

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

    def infolist(self) -> list[Entry]:
        return list(self.infos)

    def by_name(self) -> dict[str, Entry]:
        """Normalised name -> entry, for a reader that looks up many (read only)."""
        return self._by_name

    def find(self, name: str) -> Entry | None:
        """The entry called ``name``, ignoring case (as torch finds it), or None."""
        return self._by_name.get(normalise(name))

    def getinfo(self, name: str) -> Entry:
        info = self.find(name)
        if info is None:
            raise KeyError(f"there is no entry {name!r} in the archive")
        return info

    def read(self, name: "str | Entry") -> bytes:
        """The whole entry (its size is within the archive's checked budget)."""
        entry = name if isinstance(name, Entry) else self.getinfo(name)
        return self.zip.read(entry.zipinfo())

    def chunks(self, info: Entry, size: int = READ_CHUNK) -> Iterator[bytes]:
        """The entry's bytes in pieces of at most ``size``, never all of it at once."""
        with self.zip.open(info.zipinfo()) as stream:
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
        directory = _parsed_directory(stream)
        archive = _EntryReader(stream)
    except BaseException:
        stream.close()
        raise
    try:
        if not directory.own:
            raise zipfile.BadZipFile("the zip directory found is not the file's own (the file is cut short?)")
        check_entries(directory.entries, Path(path).stat().st_size, directory.keys)
    except BaseException:
        archive.close()
        stream.close()
        raise
    return Archive(path, archive, stream, directory)


def check_entries(
    entries: "list[zipfile.ZipInfo] | tuple[Entry, ...]",
    file_size: int,
    keys: "tuple[str, ...] | None" = None,
) -> None:
    """Raise :class:`ArchiveError` for duplicate names, unreadable compression, stored
    data outside the file, or declared sizes beyond the budget (module docstring).
    ``keys`` are the entries' normalised names when the caller has them already."""
    if keys is None:
        keys = tuple(normalise(info.filename) for info in entries)
    seen: dict[str, str] = {}
    total = 0
    for info, key in zip(entries, keys):
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


def read_directory(path: Path) -> "Directory | None":
    """The directory of the zip at ``path``, or None when it cannot be read or is not the
    file's own (see :func:`open_archive`).

    Each of the three torch sniffers, then the loader and :func:`open_archive` ask for
    it; a large state_dict's (one entry per tensor) is parsed, and its kind derived, once
    rather than five times (:func:`_parsed_directory`).
    """
    try:
        with open(path, "rb") as stream:
            directory = _parsed_directory(stream)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError):
        return None
    return directory if directory.own else None


class Directory:
    """The entries of one zip file (:func:`~.zip_directory.read_central_directory`), and
    what is derived from them alone, each computed once: every entry's normalised name
    (:attr:`keys`), the lookup by normalised name (:meth:`by_name`) and the writer the
    names point to (:attr:`kind`).

    It is immutable once made and lives as long as its file's parse is reused
    (:func:`_parsed_directory`); readers must not change what it hands out.
    """

    __slots__ = ("entries", "keys", "own", "_by_name", "_kind")

    def __init__(self, entries: tuple[Entry, ...]) -> None:
        self.entries = entries
        self.keys = tuple(normalise(info.filename) for info in entries)
        # torch writes its first entry at offset 0; a directory whose entries all start
        # later is another zip's, found in a file cut short (see open_archive).
        self.own = not entries or min(info.header_offset for info in entries) == 0
        self._by_name: dict[str, Entry] | None = None
        self._kind: str | None | bool = False  # False: not derived yet

    @property
    def kind(self) -> str | None:
        """Which torch writer made the archive (:func:`archive_kind`), or None."""
        if self._kind is False:
            self._kind = _kind_of_keys(self.keys)
        return self._kind

    def by_name(self) -> dict[str, Entry]:
        """Normalised name -> entry (with duplicate names, the last one: check the entries
        with :func:`check_entries` before reading any)."""
        if self._by_name is None:
            self._by_name = dict(zip(self.keys, self.entries))
        return self._by_name


def _parsed_directory(stream) -> Directory:
    """The directory of the zip open as ``stream``.

    A parse is reused only for the same file (device, inode, size, modification time)
    whose directory bytes are unchanged (their CRC), so a file rewritten in place is
    read again. Raises what :func:`~.zip_directory.read_central_directory` raises for a
    zip it cannot read (as zipfile would).
    """
    status = os.fstat(stream.fileno())
    key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    known = _DIRECTORIES.get(key)
    if known is not None and _crc_from(stream, known[0]) == known[1]:
        return known[2]
    start, entries = read_central_directory(stream)
    directory = Directory(entries)
    _DIRECTORIES[key] = (start, _crc_from(stream, start), directory)
    while len(_DIRECTORIES) > 4:
        del _DIRECTORIES[next(iter(_DIRECTORIES))]
    return directory


class _EntryReader(zipfile.ZipFile):
    """A read-only ZipFile that opens entries given as ZipInfo (:meth:`Entry.zipinfo`):
    the directory is read by :func:`_parsed_directory`, so zipfile's own reading of it
    (``_RealGetContents``) is skipped. (Were that private name ever gone, zipfile would
    simply parse the directory again.)"""

    def _RealGetContents(self) -> None:  # noqa: N802 - zipfile's name
        pass


_DIRECTORIES: dict[tuple[int, int, int, int], tuple[int, int, Directory]] = {}
"""(device, inode, size, mtime) -> (directory offset, CRC of the bytes from there, the
parsed directory): the last four files, until :func:`forget_directories`."""


def forget_directories() -> None:
    """Drop every kept directory parse. A loader calls it once its file is read: the parse
    serves the sniffers and that one load, and a large state_dict's (an entry object and
    two names per tensor) would otherwise stay for the rest of the command."""
    _DIRECTORIES.clear()


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
    return _kind_of_keys([normalise(name) for name in names])


_KIND_PREFIXES = ("models/", "data/weights/", "code/")


def _kind_of_keys(keys: "list[str] | tuple[str, ...]") -> str | None:
    """:func:`archive_kind` of names normalised already."""
    basenames = {key.split("/", 1)[-1] for key in keys}
    marked = [name for name in basenames if name.startswith(_KIND_PREFIXES)]  # none in a torch.save file
    has_models = any(name.startswith("models/") for name in marked)
    has_weights = any(name.startswith("data/weights/") for name in marked)
    if "archive_format" in basenames or (has_models and has_weights):
        return TORCH_EXPORT
    if "serialized_exported_program.json" in basenames:
        return TORCH_EXPORT_LEGACY
    if "constants.pkl" in basenames or any(name.startswith("code/") for name in marked):
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


def data_offset(info: Entry, header: bytes) -> int | None:
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

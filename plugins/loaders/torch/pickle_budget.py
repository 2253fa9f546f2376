"""Budgets of a torch.save pickle, checked before torch allocates anything.

A pickle declares what unpickling it will allocate, and a crafted one declares more
than the file holds. Read without running anything (:func:`~.pickle_uses.scan_pickle`):

- every storage (``("storage", torch.FloatStorage, key, location, numel)``) must be
  exactly as large as its record in the archive (torch's mmap load would otherwise map
  the bytes after it; the legacy format allocates every storage at its declared size
  before reading it, so there they must all fit in the file);
- the items the pickle's calls and BUILDs would copy out of containers (``set(items)``,
  ``OrderedDict(pairs)``, ``frozenset(range(n))``) stay within :data:`COPY_FACTOR` per
  byte of pickle plus :data:`COPY_SLACK`;
- the objects its calls make (tensors, modules' stand-ins, containers) fit in the memory
  available at about :data:`OBJECT_BYTES` each (:func:`objects_problem`): a tensor costs
  about 25 bytes of a crafted pickle and a kilobyte and a half once the loader has made
  its layer, so the pickle's size alone bounds nothing useful;
- a torch.save archive held inside another file (a .pt2's sample inputs, a pickled
  weight) is unpickled only when it names nothing but the globals torch's weights-only
  unpickler allows by default (:func:`check_pickled_part`).
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import Any

from inspector.errors import InputError
from plugins.loaders.torch.pickle_uses import PickleFacts, scan_pickle

COPY_FACTOR = 4
"""Unpickling may copy at most this many items per byte of pickle ..."""
COPY_SLACK = 2**20
"""... plus this many (a real checkpoint copies a few per module)."""
OBJECT_BYTES = 768
"""About what an object a pickle's call makes costs once loaded (measured: 1.6 KiB a
tensor of a state_dict of 300,000 tensors, its Param and layer included; a tensor is two
calls, its rebuild and the empty OrderedDict of its hooks)."""
OBJECTS_CHECKED = 1 << 16
"""The restricted unpickler checks :func:`objects_problem` each time it has made this
many more objects."""


def objects_problem(objects: int) -> str | None:
    """Why making ``objects`` objects would not fit in the memory available, or None."""
    from inspector import resources

    problem = resources.shortfall(objects * OBJECT_BYTES)
    if problem is None:
        return None
    return f"is refused: its pickle makes {objects:,} objects, which would take {problem} (a crafted file?)"


def check_archive(path: Path) -> PickleFacts | None:
    """Check the archive and its data.pkl (budgets of the module docstring); the scan's
    facts, or None when the pickle is not one the scan reads (torch then judges it)."""
    from plugins.loaders.torch import zips

    with zips.open_archive(path) as archive:
        infos = archive.infolist()
        # torch reads the records of the folder its first entry is in.
        folder = zips.normalise(infos[0].filename).partition("/")[0] if infos else ""
        entry = archive.find(f"{folder}/data.pkl")
        if entry is None:
            return None
        try:
            facts = scan_pickle(archive.read(entry))
        except ValueError:
            return None  # malformed: torch's own scan and loader report it
        problem = _budget_problem(facts, entry.file_size, lambda key: archive.find(f"{folder}/data/{key}"))
    if problem:
        raise InputError(path, problem)
    return facts


def check_pickled_part(data: bytes) -> str | None:
    """Why a torch.save archive held in another file (a .pt2's sample inputs, a weight
    saved pickled) must not be unpickled, or None when it is safe to.

    Safe: a sound archive within the zip budget whose data.pkl passes the budgets above
    and names only globals that torch's weights-only unpickler allows by default (tensor
    rebuilders, containers), so that even ``torch.load(weights_only=False)``, which
    ``torch.export.load`` uses, calls nothing else.
    """
    import io

    import torch

    from plugins.loaders.torch import zips

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            infos = inner.infolist()
            zips.check_entries(infos, len(data))
            folder = zips.normalise(infos[0].filename).partition("/")[0] if infos else ""
            by_name = {zips.normalise(info.filename): info for info in infos}
            entry = by_name.get(f"{folder}/data.pkl")
            if entry is None:
                return "is not a torch.save archive (it has no data.pkl)"
            facts = scan_pickle(inner.read(entry))
    except zips.ArchiveError as exc:
        return str(exc)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as exc:
        return f"cannot be scanned ({_one_line(exc) or type(exc).__name__})"
    from plugins.loaders.torch.unpickle import python3_name

    allowed = torch._weights_only_unpickler._get_allowed_globals()
    unknown = sorted(name for name in facts.uses if name not in allowed and python3_name(name) not in allowed)
    if unknown:
        return f"would call {', '.join(unknown)} when unpickled, which runs code"
    return _budget_problem(facts, entry.file_size, lambda key: by_name.get(f"{folder}/data/{key}"))


def _budget_problem(facts: PickleFacts, pickle_bytes: int, record) -> str | None:
    """The copy budget, the objects' memory, and each declared storage against its
    record (``record(key)`` gives the record's entry, or None when it is missing: torch
    then refuses)."""
    allowed = COPY_FACTOR * pickle_bytes + COPY_SLACK
    if facts.copied > allowed:
        return (
            f"is refused: unpickling it would copy {facts.copied:,} items from a {pickle_bytes:,}-byte pickle "
            f"(a crafted file?); graphinspect allows {allowed:,}"
        )
    problem = objects_problem(facts.calls)
    if problem:
        return problem
    for key, nbytes in _declared_storages(facts).items():
        if nbytes is None:
            return f"is corrupted or crafted: storage {key!r} declares an impossible size"
        info = record(key)
        if info is not None and info.file_size != nbytes:
            return (
                f"is corrupted or crafted: storage {key!r} declares {nbytes:,} bytes but its record holds "
                f"{info.file_size:,}"
            )
    return None


def check_legacy(path: Path) -> None:
    """The legacy format allocates every storage at the size its pickle declares before
    reading it: together they must fit in the file."""
    import pickletools

    size = path.stat().st_size
    with path.open("rb") as stream:
        try:
            for _ in range(3):  # magic number, protocol version, system info
                for _opcode in pickletools.genops(stream):
                    pass
            start = stream.tell()
            facts = scan_pickle(stream)
        except ValueError as exc:
            raise InputError(path, f"is truncated or corrupted: its pickle cannot be read ({_one_line(exc)})") from exc
        problem = _budget_problem(facts, stream.tell() - start, lambda key: None)
    if problem:
        raise InputError(path, problem)
    declared = sum(_declared_storages(facts).values())
    if declared > size:
        raise InputError(
            path, f"is corrupted or crafted: its storages declare {declared:,} bytes, more than the file's {size:,}"
        )


def _declared_storages(facts: PickleFacts) -> dict[str, int | None]:
    """Storage key -> the bytes the pickle declares for it (None: not a size)."""
    storages: dict[str, int | None] = {}
    for saved in facts.persistent_ids:
        if len(saved) < 5 or saved[0] != "storage":
            continue
        _, type_name, key, _, numel = saved[:5]
        itemsize = _storage_itemsize(type_name)
        if itemsize is None:
            continue  # not a storage class torch knows: its loader refuses it
        valid = isinstance(numel, int) and not isinstance(numel, bool) and numel >= 0
        storages[str(key)] = numel * itemsize if valid else None
    return storages


def _storage_itemsize(type_name: object) -> int | None:
    """Bytes per element of a pickled storage class ("torch.HalfStorage" -> 2)."""
    if type_name == "torch.UntypedStorage":
        return 1
    dtype = storage_dtype(type_name)
    if dtype is None:
        return None
    import torch

    return int(torch._utils._element_size(dtype))


def storage_dtype(type_name: object) -> "Any":
    """The dtype of a typed storage class named as a pickle names it
    ("torch.HalfStorage" -> torch.float16), or None for any other name."""
    if not isinstance(type_name, str):
        return None
    module, _, name = type_name.rpartition(".")
    if module != "torch" or not name.endswith("Storage") or name == "UntypedStorage":
        return None
    import torch

    storage_class = getattr(torch, name, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated; its dtype is what we need
        dtype = getattr(storage_class, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else None


def _one_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""

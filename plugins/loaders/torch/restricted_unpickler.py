"""The common torch.save file, read by Python's C unpickler restricted to known globals.

:mod:`.unpickle` reads any torch.save file safely, but slowly: a Python scan of every
opcode, torch's scan for unsafe globals, then torch's weights-only unpickler (written in
Python). On a 60,000-tensor state_dict that is 8 s, where plain ``torch.load`` takes 3 s.
This module reads the files that need none of that care in about 1.3 s, and hands every
other file back (:class:`Unsure`) to the careful path, which then reads it, or refuses
it with the same one-line message, exactly as before.

Why it is as safe. The C unpickler resolves every global through :meth:`find_class`,
which returns only:

- this module's rebuilders for torch's tensors and parameters
  (``torch._utils._rebuild_tensor_v2``, ``_rebuild_parameter``), storage types (markers
  for :meth:`persistent_load`), ``OrderedDict``, ``set``, ``torch.Size``,
  ``torch.device`` and torch dtypes;
- what :func:`~.unpickle.plan_globals` gives the careful path for that name when it is a
  stand-in class (here one that counts what it copies) or an inert torch function
  reference (calling one stops the load, and the careful path refuses the file);

and raises :class:`Unsure` for every other global (numpy's reconstructors, ``range``,
torch's quantized and sparse rebuilders, a lower-case name the careful path judges by
how the pickle uses it), so nothing else can be called or built. Callables are wrapped
in objects without ``__dict__`` or ``__setstate__``, so a BUILD cannot change them.

Budgets, as the careful path has them (:mod:`.pickle_budget`), counted as the unpickler
goes instead of by a scan before it:

- each storage must be exactly as large as its record, which must be stored
  uncompressed (it is memory-mapped, copy-on-write, never read into memory); what the
  pickle gets for it is a sealed :class:`TypedStorage` record, good for nothing but
  rebuilding tensors, and each tensor is made over the record's bytes directly (not as
  a view of another tensor, which would keep that one alive too);
- every tensor view lies inside its storage over its whole extent
  (:func:`.tensors.view_problem`);
- the items copied by calls, NEWOBJs and BUILDs (``set(items)``, an ``OrderedDict``'s
  state, a stand-in's ``__dict__``, the arguments themselves, a tensor iterated by
  ``set``) stay within :data:`~.pickle_budget.COPY_FACTOR` per byte of pickle plus
  :data:`~.pickle_budget.COPY_SLACK`, counted on the real objects. Past it, the file is
  refused here (:class:`~inspector.errors.InputError`), not handed on;
- the objects its calls make fit in the memory available
  (:func:`~.pickle_budget.objects_problem`, checked every
  :data:`~.pickle_budget.OBJECTS_CHECKED` objects).

Anything else unexpected (another protocol, a big-endian archive, a tensor with
metadata or hooks, a storage read twice differently) raises :class:`Unsure`.
"""

from __future__ import annotations

import io
import mmap
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspector.errors import InputError
from plugins.loaders.torch import zips
from plugins.loaders.torch.pickle_budget import (
    COPY_FACTOR,
    COPY_SLACK,
    OBJECTS_CHECKED,
    objects_problem,
    storage_dtype,
)
from plugins.loaders.torch.tensors import MappedFile, MappedTensor, TensorReader, numpy_dtype_of, view_problem
from plugins.loaders.torch.unpickle import FunctionReference, StandIn, plan_globals, python3_name

PROTOCOL_2 = b"\x80\x02"
"""torch.save's pickles start with PROTO 2; others go the careful way (which refuses
opcodes torch's weights-only unpickler does not read)."""


class Unsure(Exception):
    """This file is not one the restricted unpickler reads; the careful path decides."""


class CopyBudgetExceeded(Exception):
    """The pickle copies more than its budget: a crafted file, refused (not handed to the
    careful path, whose scan counts the same things before it lets torch run them)."""


class _Budget:
    """Items copied so far, against the allowance for a pickle of ``pickle_bytes``, and
    objects made so far, against the memory available."""

    __slots__ = ("copied", "allowed", "pickle_bytes", "objects", "objects_checked_at")

    def __init__(self, pickle_bytes: int) -> None:
        self.copied = 0
        self.pickle_bytes = pickle_bytes
        self.allowed = COPY_FACTOR * pickle_bytes + COPY_SLACK
        self.objects = 0
        self.objects_checked_at = OBJECTS_CHECKED

    def made(self) -> None:
        """Count one object a call made; every :data:`~.pickle_budget.OBJECTS_CHECKED`,
        check them against the memory available."""
        self.objects += 1
        if self.objects >= self.objects_checked_at:
            self.objects_checked_at += OBJECTS_CHECKED
            problem = objects_problem(self.objects)
            if problem:
                raise CopyBudgetExceeded(problem)

    def charge(self, count: int) -> None:
        self.copied += count
        if self.copied > self.allowed:
            raise CopyBudgetExceeded(
                f"is refused: unpickling it would copy more than {self.allowed:,} items from a "
                f"{self.pickle_bytes:,}-byte pickle (a crafted file?); graphinspect allows {self.allowed:,}"
            )


def _weight(value: Any, depth: int = 0) -> int:
    """Items a call may copy out of ``value``: the length of anything sized (containers,
    strings, a tensor iterated along its first axis); for a tuple (the arguments), its
    length plus what its items hold, to a depth of 8."""
    if type(value) is tuple:
        total = len(value)
        if depth < 8:
            for item in value:
                total += _weight(item, depth + 1)
        return total
    if hasattr(type(value), "__len__"):
        try:
            return len(value)
        except TypeError:  # a 0-d tensor
            return 0
    return 0


class _Sealed:
    """An object of this module the pickle is handed: BUILD on it (which would set its
    slots from the pickle's state) stops the load."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise Unsure(f"BUILD on {type(self).__name__}")


class _Call(_Sealed):
    """A global the pickle may call: the function, charged for what it copies."""

    __slots__ = ("function", "budget")

    def __init__(self, function: Callable[..., Any], budget: _Budget) -> None:
        self.function = function
        self.budget = budget

    def __call__(self, *args: Any) -> Any:
        self.budget.made()
        if args:
            self.budget.charge(_weight(args))
        return self.function(*args)


class _Rebuilder(_Sealed):
    """One of this module's tensor rebuilders, as the pickle calls it (they charge the
    budget themselves: a storage argument is not copied)."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


class _StorageType(_Sealed):
    """What ``torch.FloatStorage`` stands for in a persistent id: its dtype."""

    __slots__ = ("dtype", "itemsize")

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype
        self.itemsize = dtype.itemsize


class TypedStorage(_Sealed):
    """A storage record as the pickle sees it (torch.load gives it a ``TypedStorage``,
    hence the name, which error messages show): its dtype, its element count and where
    its bytes start in the file, all checked when the persistent id is read. Only the
    tensor rebuilders use it; it has no behaviour a pickle could use otherwise."""

    __slots__ = ("dtype", "numel", "start")

    def __init__(self, dtype: Any, numel: int, start: int) -> None:
        self.dtype = dtype
        self.numel = numel
        self.start = start


class _CountedStandIn(StandIn):
    """A stand-in whose construction and state are charged to the load's budget."""

    _standin_budget: _Budget

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        cls._standin_budget.made()
        if args:
            cls._standin_budget.charge(_weight(args))
        instance = object.__new__(cls)
        instance.__dict__["_standin_args"] = args
        return instance

    def __setstate__(self, state: Any) -> None:
        if type(state) is dict:  # the usual case, as StandIn.__setstate__ does it
            self._standin_budget.charge(len(state))
            self.__dict__.update(state)
            return
        self._standin_budget.charge(_weight(state))
        super().__setstate__(state)


class _OrderedDict(OrderedDict):
    """``collections.OrderedDict`` whose BUILD (a state_dict's ``_metadata``) is charged;
    it pickles as a plain OrderedDict."""

    _budget: _Budget

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise Unsure("OrderedDict state")
        self._budget.charge(len(state))
        self.__dict__.update(state)

    def __reduce__(self):
        return (OrderedDict, (), dict(self.__dict__) or None, None, iter(self.items()))


def load(path: Path, archive: zips.Archive, records: bool = False) -> tuple[Any, TensorReader]:
    """The object the torch.save archive at ``path`` holds, and the reader of its tensors'
    values (a :class:`~.tensors.MappedFile`'s); or :class:`Unsure`.

    With ``records``, its tensors are :class:`~.tensors.MappedTensor` records where numpy
    has their dtype (for the layer representation), not torch tensors."""
    import torch

    infos = archive.infolist()
    folder = zips.normalise(infos[0].filename).partition("/")[0] if infos else ""
    entry = archive.find(f"{folder}/data.pkl")
    if entry is None:
        raise Unsure("no data.pkl")
    byteorder = archive.find(f"{folder}/byteorder")
    if byteorder is not None and archive.read(byteorder) != b"little":
        raise Unsure("byte order")
    data = archive.read(entry)
    if not data.startswith(PROTOCOL_2):
        raise Unsure("protocol")
    try:
        with Path(path).open("rb") as stream:
            mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError) as exc:
        raise Unsure("cannot map the file") from exc
    mapped_file = MappedFile(mapped)
    unpickler = _Unpickler(io.BytesIO(data), _Budget(len(data)), archive, folder, mapped_file, torch, records)
    try:
        value = unpickler.load()
        mapped_file.trim()
        return value, mapped_file.reader
    except CopyBudgetExceeded as exc:
        raise InputError(path, str(exc)) from None
    except MemoryError:
        raise
    except Unsure:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever it is, the careful path says it properly
        raise Unsure(f"{type(exc).__name__}: {exc}") from exc
    finally:
        unpickler.release()


class _Unpickler(pickle.Unpickler):
    def __init__(
        self,
        stream,
        budget: _Budget,
        archive: zips.Archive,
        folder: str,
        mapped_file: MappedFile,
        torch,
        make_records: bool = False,
    ) -> None:
        super().__init__(stream)
        self.budget = budget
        self.archive = archive
        self.folder = folder
        self.mapped_file = mapped_file
        self.mapped = mapped_file.mapped
        self.headers_read = 0
        self.torch = torch
        self.make_records = make_records
        """Whether tensors numpy can view are made :class:`MappedTensor` records (see :func:`load`)."""
        self.storages: dict[str, TypedStorage] = {}
        self.globals: dict[tuple[str, str], Any] = {}
        self.file_size = len(self.mapped)
        self.records = archive.by_name()  # normalised entry name -> entry
        self.record_prefix = f"{folder}/data/"
        ordered_dict = type("OrderedDict", (_OrderedDict,), {"_budget": budget})
        self.known: dict[str, Any] = {
            "torch._utils._rebuild_tensor_v2": _Rebuilder(self.rebuild_tensor),
            "torch._utils._rebuild_parameter": _Rebuilder(self.rebuild_parameter),
            "collections.OrderedDict": _Call(ordered_dict, budget),
            "builtins.set": _Call(set, budget),
            "torch.Size": _Call(torch.Size, budget),
            "torch.device": _Call(torch.device, budget),
        }

    def release(self) -> None:
        """Drop what the load made, once it is over. The memo holds the rebuilders, which
        hold this unpickler: without this, everything the memo refers to (the argument
        tuples of every tensor, 60,000 on a large state_dict) would stay until a full
        garbage collection, which a command runs almost never
        (:func:`inspector.cli.rare_collections`)."""
        self.memo.clear()
        self.known.clear()
        self.globals.clear()
        self.storages.clear()

    # ----------------------------------------------------------------- globals

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        found = self.globals.get(key)
        if found is None:
            found = self.globals[key] = self._resolve(module, name)
        return found

    def _resolve(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        meaning = python3_name(full)
        if meaning in self.known:
            return self.known[meaning]
        if meaning in _torch_allowed():
            return self._torch_global(meaning)
        plan = plan_globals([full])
        value = next((value for value, given in plan.safe_globals if given == full), None)
        if plan.refused or value is None:
            raise Unsure(f"global {full}")
        if isinstance(value, FunctionReference):
            return value  # calling it raises: the careful path then refuses the file
        if isinstance(value, type) and issubclass(value, StandIn):
            return type(
                value.__name__,
                (_CountedStandIn,),
                {
                    "__module__": value.__module__,
                    "__qualname__": value.__qualname__,
                    "_standin_global": value._standin_global,
                    "_standin_budget": self.budget,
                },
            )
        raise Unsure(f"global {full}")  # numpy's reconstructors, range, ...: the careful path's scan judges them

    def _torch_global(self, meaning: str) -> Any:
        """A global torch allows by default: a storage type or a dtype; the rest of
        torch's list (quantized, sparse, nested tensors...) goes the careful way."""
        torch = self.torch
        name = meaning.rpartition(".")[2]
        if meaning.startswith("torch.") and "." not in meaning[6:]:
            if name.endswith("Storage") and not name.startswith(("QInt", "QUInt")):  # quantized: careful way
                dtype = storage_dtype(meaning)
                if dtype is not None:
                    return _StorageType(dtype)
            value = getattr(torch, name, None)
            if isinstance(value, torch.dtype):
                return value
        raise Unsure(f"global {meaning}")

    # ----------------------------------------------------------------- storages

    def persistent_load(self, saved_id: Any) -> TypedStorage:
        if not (isinstance(saved_id, tuple) and len(saved_id) == 5 and saved_id[0] == "storage"):
            raise Unsure("persistent id")
        _, storage_type, key, _location, numel = saved_id
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise Unsure("storage")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise Unsure("storage size")
        cached = self.storages.get(key)
        if cached is not None:
            if cached.dtype != storage_type.dtype or cached.numel != numel:
                raise Unsure("storage read twice differently")
            return cached
        storage = self.storages[key] = self._storage(key, storage_type, numel)
        return storage

    def _storage(self, key: str, storage_type: _StorageType, numel: int) -> TypedStorage:
        """The record ``data/<key>``, checked: stored, exactly ``numel`` elements, inside the file."""
        info = self.records.get(self.record_prefix + zips.normalise(key))  # as Archive.find finds it
        nbytes = numel * storage_type.itemsize
        if info is None or info.compress_type != zipfile.ZIP_STORED or info.file_size != nbytes:
            raise Unsure("storage record")
        if nbytes == 0:
            return TypedStorage(storage_type.dtype, 0, 0)
        header = self.mapped[info.header_offset : info.header_offset + zips.LOCAL_HEADER_BYTES]
        self.headers_read += 1
        if self.headers_read % HEADERS_PER_TRIM == 0:
            self.mapped_file.trim()  # each header read makes its page resident
        start = zips.data_offset(info, header)
        if start is None:
            raise Unsure("local header")
        if start + nbytes > self.file_size:
            raise Unsure("record past the end")
        return TypedStorage(storage_type.dtype, numel, start)

    # ----------------------------------------------------------------- tensors

    def rebuild_tensor(
        self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any, hooks: Any, metadata: Any = None
    ) -> Any:
        """The tensor ``storage`` holds at ``offset`` with ``size`` and ``stride``: a flat
        tensor over the record's bytes, then given that view in place (``as_strided_``),
        so it is no view of another tensor (one tensor a parameter, not two)."""
        torch = self.torch
        if type(storage) is not TypedStorage:
            raise Unsure("tensor storage")
        if not isinstance(size, tuple) or not isinstance(stride, tuple) or not isinstance(requires_grad, bool):
            raise Unsure("tensor arguments")
        if metadata or not _no_hooks(hooks):
            raise Unsure("tensor metadata or hooks")
        self.budget.made()
        self.budget.charge(len(size) + len(stride))
        numel = storage.numel
        if view_problem(size, stride, offset, numel) is not None:
            raise Unsure("tensor view")
        if self.make_records:  # a record has no gradient to ask for
            dtype = numpy_dtype_of(storage.dtype)
            if dtype is not None:
                return self.mapped_file.record(dtype, tuple(size), tuple(stride), offset, (numel, storage.start))
        if numel == 0 or 0 in size:
            tensor = torch.empty(size, dtype=storage.dtype)
        else:
            tensor = torch.frombuffer(self.mapped, dtype=storage.dtype, count=numel, offset=storage.start)
            tensor.as_strided_(size, stride, offset)
        if requires_grad:
            tensor.requires_grad_(True)
        return tensor

    def rebuild_parameter(self, data: Any, requires_grad: Any, hooks: Any) -> Any:
        torch = self.torch
        if not isinstance(data, (torch.Tensor, MappedTensor)) or not isinstance(requires_grad, bool):
            raise Unsure("parameter arguments")
        if not _no_hooks(hooks):
            raise Unsure("parameter hooks")
        if type(data) is MappedTensor:
            return data  # a parameter's values are all a record keeps
        return torch.nn.Parameter(data, requires_grad)


HEADERS_PER_TRIM = 4096
"""Records whose local headers are read through the map before its pages are given back
(about 8 MiB of a state_dict of small tensors)."""


def _no_hooks(hooks: Any) -> bool:
    """Whether a pickled tensor's backward hooks are none (torch.save writes an empty
    OrderedDict); hooks are code, so a file with some goes the careful way."""
    return hooks is None or (isinstance(hooks, dict) and not hooks)


_ALLOWED: set[str] | None = None


def _torch_allowed() -> set[str]:
    """The globals torch's weights-only unpickler reads by default."""
    global _ALLOWED
    if _ALLOWED is None:
        import torch

        _ALLOWED = set(torch._weights_only_unpickler._get_allowed_globals())
    return _ALLOWED

"""Reading torch.save files without running code from them.

A torch.save file is a pickle, and unpickling normally imports and calls whatever the
file names. Here it never does:

1. Before anything is unpickled, :func:`plan_globals` looks at every global the pickle
   names that torch's weights-only unpickler does not allow by default
   (``torch.serialization.get_unsafe_globals_in_checkpoint``, a static scan).
2. Each one is either refused, replaced by an inert stand-in, or (a short list of numpy
   data reconstructors) allowed as itself:

   - refused: anything from a module whose members run code or touch the system
     (:data:`BLOCKED_MODULES`: builtins, os, posix, subprocess, sys, importlib, pickle,
     ctypes, functools, operator, io, torch.hub, torch.jit, torch.load, ...), and any
     other function — a global whose last name starts with a lower-case letter — outside
     :data:`REAL_DATA_GLOBALS` and :data:`DATA_CLASSES`; the load fails with
     ``InputError(path, "refused to unpickle: it calls posix.system, which would run
     code; ...")``;
   - functions of torch's own namespace (``torch.nn.functional.relu`` kept as a
     module's ``activation``) become inert references: harmless as an attribute, and
     the load is refused the same way if the pickle tries to call one;
   - every class, torch.nn classes included, becomes a :class:`StandIn` subclass of the
     same ``__module__``/``__qualname__``: it records its constructor arguments, has no
     ``__setstate__``, so the unpickler only does ``instance.__dict__.update(state)``.
     No module code runs, and the model's package need not be installed.

3. Budgets, checked by the same scan before torch allocates anything: every storage the
   pickle declares (``("storage", torch.FloatStorage, key, location, numel)``) must be
   exactly as large as its record in the archive (the legacy format: all of them
   together no larger than the file), and the items the pickle's calls would copy out of
   containers (``set(items)``, ``frozenset(range(n))``) stay within a few times the
   pickle's size (:mod:`.pickle_budget`). The archive
   itself is checked by :func:`~plugins.loaders.torch.zips.open_archive` (zip bombs,
   entries whose names differ only in case).

4. ``torch.load(weights_only=True)`` then reads the file inside
   ``torch.serialization.safe_globals`` holding exactly those stand-ins. Its unpickler
   only resolves globals it was given (a global the static scan missed is an error, not
   an import), so what the pickle can call is: torch's tensor rebuilders, the stand-ins,
   the references (which refuse) and the numpy reconstructors.

A pickled ``nn.Module`` comes back as a tree of stand-ins whose ``__dict__`` holds
``_modules``, ``_parameters``, ``_buffers``, ``_non_persistent_buffers_set`` and the
module's attributes (stride, eps, ...), with real tensors memory-mapped from the file.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector.errors import InputError
from plugins.loaders.torch.pickle_budget import check_archive, check_legacy
from plugins.loaders.torch.pickle_uses import CALLED, INSTANTIATED
from plugins.loaders.torch.tensors import TensorReader, through_torch

BLOCKED_MODULES: tuple[str, ...] = (
    "builtins",
    "__builtin__",
    "os",
    "posix",
    "nt",
    "posixpath",
    "ntpath",
    "sys",
    "subprocess",
    "_posixsubprocess",
    "shutil",
    "socket",
    "importlib",
    "runpy",
    "pickle",
    "_pickle",
    "cPickle",
    "marshal",
    "code",
    "codeop",
    "ctypes",
    "_ctypes",
    "pty",
    "webbrowser",
    "multiprocessing",
    "threading",
    "_thread",
    "signal",
    "types",
    "functools",
    "_functools",
    "operator",
    "_operator",
    "io",
    "_io",
    "tempfile",
    "pdb",
    "bdb",
    "inspect",
    "timeit",
    "trace",
    "profile",
    "cProfile",
    "dill",
    "cloudpickle",
    "joblib",
    "commands",
    "thread",
    "copy_reg",
    "exceptions",
    "numpy.load",
    "numpy.lib",
    "numpy.testing",
    "numpy.distutils",
    "torch.hub",
    "torch.jit",
    "torch.load",
    "torch.save",
    "torch.serialization",
    "torch.package",
    "torch.utils.cpp_extension",
    "torch._dynamo",
    "torch.compile",
    "torch.export",
    "torch.fx",
    "torch.ops",
    "torch._ops",
    "torch.classes",
    "torch.library",
    "torch._C._jit",
)
"""Modules (and torch entry points) whose members are refused outright, whatever their case."""

DATA_CLASSES: frozenset[str] = frozenset(
    {
        "types.SimpleNamespace",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "collections.deque",
        "functools.partial",
    }
)
"""Plain data classes with lower-case names or in a blocked module: stood in like classes."""

REAL_DATA_GLOBALS: tuple[str, ...] = (
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
    "builtins.slice",
    "builtins.frozenset",
    "builtins.range",
)
"""Data reconstructors seen in real checkpoints, allowed as themselves: they build arrays,
scalars and containers from bytes and already-unpickled values, and call nothing else."""

_NUMPY_DTYPE_CLASS = re.compile(r"^numpy\.dtypes\.[A-Za-z0-9]+DType$")


class StandIn:
    """An inert placeholder for a class a pickle names.

    Constructing one records the arguments (in ``_standin_args``) and nothing else.
    Its ``__setstate__`` stores the pickled state and runs nothing: a dict (or the dict
    of a (dict, slots) pair) fills ``__dict__``, anything else (``functools.partial``
    pickles a tuple) is kept in ``_standin_state``.
    Subclasses are made per global by :func:`make_standin`; ``_standin_global`` holds the
    full name ("ultralytics.nn.modules.conv.Conv").
    """

    _standin_global = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
        instance = object.__new__(cls)
        instance.__dict__["_standin_args"] = args
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if (
            isinstance(state, tuple)
            and len(state) == 2
            and (state[0] is None or isinstance(state[0], dict))
            and (state[1] is None or isinstance(state[1], dict))
        ):
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_standin_state"] = state

    def __repr__(self) -> str:
        return f"<stand-in {self._standin_global}>"


def make_standin(global_name: str) -> type:
    """A :class:`StandIn` subclass that looks like ``global_name`` ("pkg.mod.Class")."""
    module, _, name = global_name.rpartition(".")
    return type(name, (StandIn,), {"__module__": module, "__qualname__": name, "_standin_global": global_name})


class _RefusedCall(Exception):
    pass


class FunctionReference:
    """An inert reference to a torch function kept as a value (a module's ``activation``).

    Calling it — which is what a pickle does to build an object with a function — records
    the name and stops the load; the real function is never looked up.
    """

    def __init__(self, global_name: str, called: list[str]) -> None:
        self.global_name = global_name
        self._called = called

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._called.append(self.global_name)
        raise _RefusedCall(self.global_name)

    def __setstate__(self, state: Any) -> None:
        raise TypeError(f"the function reference {self.global_name} is not built from the pickle's state")

    def __repr__(self) -> str:
        return f"<function reference {self.global_name}>"


@dataclass
class GlobalsPlan:
    """What to give the weights-only unpickler for one file."""

    safe_globals: list[tuple[Any, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    called: list[str] = field(default_factory=list)


def _in_module(global_name: str, module: str) -> bool:
    return global_name == module or global_name.startswith(module + ".")


def _is_function_name(global_name: str) -> bool:
    last = global_name.rpartition(".")[2].lstrip("_")
    return not last or last[0].islower()


def _real_data_global(global_name: str) -> Any | None:
    if global_name not in REAL_DATA_GLOBALS and not _NUMPY_DTYPE_CLASS.match(global_name):
        return None
    import builtins

    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    known = {
        "_reconstruct": multiarray._reconstruct,
        "scalar": multiarray.scalar,
        "ndarray": np.ndarray,
        "dtype": np.dtype,
        "slice": builtins.slice,
        "frozenset": builtins.frozenset,
        "range": builtins.range,
    }
    last = global_name.rpartition(".")[2]
    if last in known:
        return known[last]
    dtype_class = getattr(getattr(np, "dtypes", None), last, None)
    if isinstance(dtype_class, type) and issubclass(dtype_class, np.dtype):
        return dtype_class
    return None


def _numpy_dtype_classes() -> list[tuple[type, str]]:
    """numpy >= 1.25 gives each dtype its own class, which the unpickler must be allowed to
    BUILD though the pickle never names it (it names only ``numpy.dtype``)."""
    import numpy as np

    dtypes = getattr(np, "dtypes", None)
    classes = []
    for name in dir(dtypes) if dtypes is not None else ():
        value = getattr(dtypes, name)
        if isinstance(value, type) and issubclass(value, np.dtype):
            classes.append((value, f"numpy.dtypes.{name}"))
    return classes


def python3_name(global_name: str) -> str:
    """The Python 3 name of a global pickled under its Python 2 name ("commands.Popen").

    Protocol 2 pickles (torch.save's default) write ``subprocess.Popen`` as
    ``commands.Popen``; the policy judges what the name means, not how it is spelled.
    """
    import _compat_pickle

    module, _, name = global_name.rpartition(".")
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}" if module else name


def plan_globals(global_names: list[str], uses: dict[str, set[str]] | None = None) -> GlobalsPlan:
    """Decide, for each global the default weights-only unpickler refuses, what to do.

    ``uses`` says how the pickle uses each global (:mod:`.pickle_uses`); without it, a
    global is judged by its name alone (a lower-case last name is a function). With it:
    a global only instantiated (NEWOBJ, how every ``nn.Module`` is pickled) is a class,
    whatever its case (``v10Detect``); a function only kept as a value becomes an inert
    reference; a function the pickle would call is refused.
    """
    plan = GlobalsPlan()
    for name in sorted(set(global_names)):
        how = uses.get(name) if uses is not None else None
        meaning = python3_name(name)
        shown = meaning if meaning == name else f"{meaning} (pickled as {name})"
        real = _real_data_global(meaning)
        if real is not None:
            plan.safe_globals.append((real, name))
            if meaning == "numpy.dtype":
                plan.safe_globals.extend(_numpy_dtype_classes())
        elif meaning in DATA_CLASSES:
            plan.safe_globals.append((make_standin(name), name))
        elif any(_in_module(meaning, module) or _in_module(name, module) for module in BLOCKED_MODULES):
            plan.refused.append(shown)
        elif how is not None and CALLED not in how:
            if INSTANTIATED in how or not _is_function_name(meaning):
                plan.safe_globals.append((make_standin(name), name))
            else:
                plan.safe_globals.append((FunctionReference(name, plan.called), name))
        elif _is_function_name(meaning):
            if _in_module(meaning, "torch"):
                plan.safe_globals.append((FunctionReference(name, plan.called), name))
            else:
                plan.refused.append(shown)
        else:
            plan.safe_globals.append((make_standin(name), name))
    return plan


def refusal(path: Path, names: list[str]) -> InputError:
    listed = ", ".join(sorted(set(names)))
    return InputError(
        path,
        f"refused to unpickle: it calls {listed}, which would run code; graphinspect never runs code from a model file",
    )


def load_torch_save(path: Path, is_zip: bool, records: bool = False) -> tuple[Any, TensorReader]:
    """The object a torch.save file holds, read without running code from it (see above),
    and the reader of its tensors' values for :func:`~.tensors.tensor_param`. With
    ``records``, tensors read by the restricted unpickler may be
    :class:`~.tensors.MappedTensor` records rather than torch tensors.

    Tensors are memory-mapped where the format allows (zip). Raises :class:`InputError`
    for a refused pickle and for a file torch cannot read, and
    :class:`~plugins.loaders.torch.zips.ArchiveError` for a refused archive.
    """
    import torch

    if not is_zip:
        # The legacy format predates get_unsafe_globals_in_checkpoint: only what the
        # default weights-only unpickler allows (tensors, dicts) can be read from it.
        check_legacy(path)
        return _torch_load(path, GlobalsPlan(), mmap=False), through_torch
    from plugins.loaders.torch import restricted_unpickler, zips

    with zips.open_archive(path) as archive:
        # torch maps records as they lie in the file: a deflated one would read as noise.
        mappable = all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        try:
            return restricted_unpickler.load(path, archive, records)
        except restricted_unpickler.Unsure:
            pass  # not a plain file: the careful path below reads it, and says why it does not
    facts = check_archive(path)
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (EOFError, zipfile.BadZipFile) as exc:
        raise InputError(path, f"is truncated or corrupted: {_one_line(exc) or 'the pickle ends early'}") from exc
    except Exception as exc:  # noqa: BLE001 - the scan reports a bad pickle many ways
        opcode = re.search(r"Unsupported operand (\d+)", str(exc))
        if opcode:
            raise InputError(
                path,
                f"cannot be read safely: its pickle uses opcode {opcode.group(1)}, which torch's weights-only "
                "unpickler does not read (saved with pickle_protocol above 2, or corrupted)",
            ) from exc
        raise InputError(path, f"is truncated or corrupted: its pickle cannot be scanned ({_one_line(exc)})") from exc
    plan = plan_globals(unsafe, facts.uses if facts is not None else None)
    if plan.refused:
        raise refusal(path, plan.refused)
    # torch maps the file itself here: its pages stay resident as they are read.
    return _torch_load(path, plan, mmap=mappable), through_torch


def _torch_load(path: Path, plan: GlobalsPlan, mmap: bool) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.serialization.safe_globals(plan.safe_globals):
            try:
                try:
                    return torch.load(path, weights_only=True, mmap=mmap, map_location="cpu")
                except RuntimeError as exc:
                    if not mmap or "mmap" not in str(exc):
                        raise
                    # A file system without mmap support: read the file into memory.
                    return torch.load(path, weights_only=True, map_location="cpu")
            except Exception as exc:  # noqa: BLE001 - every failure becomes one InputError
                if plan.called:
                    raise refusal(path, plan.called) from exc
                raise _load_error(path, exc) from exc


def _load_error(path: Path, exc: BaseException) -> InputError:
    message = str(exc)
    unsupported = re.search(r"GLOBAL (\S+)", message)
    if unsupported:
        name = unsupported.group(1)
        # torch's message drops the "builtins." of builtins ("GLOBAL eval").
        name = name if "." in name else f"builtins.{name}"
        refused = plan_globals([name]).refused
        if refused:
            return refusal(path, refused)
        return InputError(path, f"cannot be read safely: it needs {name}, which weights-only loading does not allow")
    # torch wraps the unpickler's reason in paragraphs of advice; keep the reason.
    reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", message)
    detail = reason.group(1).strip()[:300] if reason else _one_line(exc) or type(exc).__name__
    damaged = re.search(r"truncat|central directory|unexpected end|EOF|invalid load key", message, re.I)
    if isinstance(exc, EOFError) or damaged:
        return InputError(path, f"is truncated or corrupted: {detail}")
    if reason:
        return InputError(path, f"cannot be read safely: {detail}")
    return InputError(path, f"cannot be read: {detail}")


def _one_line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line[:300]
    return ""


def is_module(value: Any) -> bool:
    """True for a stand-in of a pickled ``nn.Module`` (it has ``_modules`` and ``_parameters``)."""
    if not isinstance(value, StandIn):
        return False
    state = value.__dict__
    return isinstance(state.get("_modules"), dict) and isinstance(state.get("_parameters"), dict)

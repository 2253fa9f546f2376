"""The PyTorch loaders: torch.save files, TorchScript, torch.export programs, safetensors.

Files are recognised by content, never by extension, and read without running any code
from them and without the model's own package installed (see :mod:`.unpickle` for the
pickle policy, :mod:`.torchscript` and :mod:`.torch_export` for the archives).

``Model.format`` is one of:

- ``"pytorch-module"``: a pickled ``nn.Module`` (``torch.save(model)``), bare or inside a
  checkpoint dict (Ultralytics' ``{"model": ..., "ema": ...}``). ``Model.modules`` holds
  the module tree, layers have real class names and attributes.
- ``"pytorch-state-dict"``: a state_dict (bare, or inside a checkpoint under
  "state_dict", "model_state_dict", ...). Layers are inferred from key names and shapes
  and their op types end in "?" (:mod:`.state_dict`); ``Model.modules`` is empty.
- ``"torchscript"``: a torch.jit.save archive (scripted or traced).
- ``"torch-export"``: a torch.export.save program (.pt2).
- ``"safetensors"``: a safetensors file (inferred layers, ``__metadata__`` as metadata).

A checkpoint dict is not a format of its own: ``Model.details["wrapper_key"]`` says
under which key the model was found (None for a bare object), ``details
["checkpoint_keys"]`` lists the dict's keys and the other plain entries are in
``Model.metadata`` (:mod:`.checkpoint`). ``producer`` says which writer made the file
("torch.save (zip)", "torch.save (legacy format)", "torch.jit.save (TorchScript, archive
version 3)", "torch.export.save (torch 2.13.0)").

The package's public API, for other plugins: :func:`load` (any of these files, by
content), :func:`read_state_dict` (the tensors of a torch.save file), and the loader
functions and sniffers below. Its submodules are private.

Every problem with a file is an :class:`~inspector.errors.InputError` with a one-line
message (:func:`input_error`); no other exception escapes a loader for a bad file.
Hostile files are budgeted before anything is allocated (:mod:`.zips` for archives,
:mod:`.unpickle` for pickles, :func:`.tensors.view_problem` for every tensor view), and
:mod:`.pt2_safety` says what must hold before ``verify`` lets torch itself load a .pt2. torch is imported only
inside functions, and the safetensors and torch.export readers do not need it at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from inspector.errors import InputError
from inspector.hookspecs import hookimpl
from inspector.ir import Model
from inspector.records import ModelLoader
from plugins.loaders.torch import zips
from plugins.loaders.torch.safetensors import sniff_safetensors
from plugins.loaders.torch.tensors import TensorProblem

LEGACY_MAGIC = b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
"""torch's legacy magic number 0x1950a86a20f9469cfc6c as pickled first by torch.save."""


def _guarded(load: Callable[[Path], Model]) -> Callable[[Path], Model]:
    """Make every failure of ``load`` an InputError naming the file."""

    @functools.wraps(load)
    def guarded(path: Path) -> Model:
        path = Path(path)
        try:
            return load(path)
        except Exception as exc:  # noqa: BLE001 - a bad file must end in one line, not a traceback
            raise input_error(path, exc) from exc
        finally:
            zips.forget_directories()

    return guarded


def input_error(path: Path, exc: BaseException) -> InputError:
    """The one-line :class:`InputError` for any failure reading ``path``."""
    if isinstance(exc, InputError):
        return exc
    if isinstance(exc, zips.ArchiveError):
        return InputError(path, str(exc))
    if isinstance(exc, TensorProblem):
        return InputError(path, f"is corrupted or crafted: {exc}")
    if isinstance(exc, MemoryError):
        return InputError(path, "cannot be read: it needs more memory than there is (a crafted file?)")
    if isinstance(exc, RecursionError):
        return InputError(path, "cannot be read: it is nested too deeply (a crafted file?)")
    if isinstance(exc, OSError):
        return InputError(path, f"cannot be read: {exc.strerror or exc}")
    first_line = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    detail = f"{type(exc).__name__}: {first_line[:300]}" if first_line else type(exc).__name__
    return InputError(path, f"cannot be read: {detail}")


def _read_head(path: Path) -> bytes:
    with Path(path).open("rb") as stream:
        return stream.read(4096)


def is_legacy_torch_save(head: bytes) -> bool:
    """A pickle (protocol 2+) whose first object is torch's magic number."""
    return head[:1] == b"\x80" and head[2 : 2 + len(LEGACY_MAGIC)] == LEGACY_MAGIC


def _zip_kind(path: Path, head: bytes) -> str | None:
    if not head.startswith(zips.ZIP_MAGIC):
        return None
    directory = zips.read_directory(path)
    if directory is None:
        # Cut short: no directory, but the first entry's name still says who wrote it,
        # and the loader can then say what is wrong instead of "unknown format".
        return zips.kind_of_entry(zips.first_entry_name(head))
    return directory.kind


# ----------------------------------------------------------------------------- sniffers


def sniff_torch_save(path: Path, head: bytes) -> bool:
    """torch.save output: a zip holding <folder>/data.pkl, or the legacy pickle format."""
    return is_legacy_torch_save(head) or _zip_kind(path, head) == zips.TORCH_SAVE


def sniff_torchscript(path: Path, head: bytes) -> bool:
    return _zip_kind(path, head) == zips.TORCHSCRIPT


def sniff_torch_export(path: Path, head: bytes) -> bool:
    return _zip_kind(path, head) in (zips.TORCH_EXPORT, zips.TORCH_EXPORT_LEGACY)


# ----------------------------------------------------------------------------- loaders


@_guarded
def load_torch_save(path: Path) -> Model:
    """A torch.save file: a pickled module, a state_dict or a checkpoint dict holding one."""
    from plugins.loaders.torch.checkpoint import model_from_object
    from plugins.loaders.torch.unpickle import load_torch_save as unpickle_torch_save

    head = _read_head(path)
    is_zip = head.startswith(zips.ZIP_MAGIC)
    if is_zip:
        directory = zips.read_directory(path)
        if directory is None:
            raise InputError(path, "is truncated or corrupted: its zip directory is missing or unreadable")
        if directory.kind != zips.TORCH_SAVE:
            raise InputError(path, "is a zip archive but not a torch.save file (it has no data.pkl)")
    elif not is_legacy_torch_save(head):
        raise InputError(path, "is not a torch.save file (neither a zip archive nor a legacy torch pickle)")
    obj, reader = unpickle_torch_save(path, is_zip, records=True)
    return model_from_object(path, obj, "torch.save (zip)" if is_zip else "torch.save (legacy format)", reader)


@_guarded
def load_torchscript(path: Path) -> Model:
    """A torch.jit.save archive (see :mod:`.torchscript`)."""
    from plugins.loaders.torch.torchscript import load_torchscript as load

    return load(path)


@_guarded
def load_torch_export(path: Path) -> Model:
    """A torch.export.save program (see :mod:`.torch_export`)."""
    from plugins.loaders.torch.torch_export import load_torch_export as load

    return load(path)


@_guarded
def load_safetensors(path: Path) -> Model:
    """A safetensors file (see :mod:`.safetensors`)."""
    from plugins.loaders.torch.safetensors import load_safetensors as load

    return load(path)


LOADERS: tuple[ModelLoader, ...] = (
    ModelLoader("torchscript", ("torchscript",), sniff_torchscript, load_torchscript, priority=30),
    ModelLoader("torch-export", ("torch-export",), sniff_torch_export, load_torch_export, priority=30),
    ModelLoader("torch-save", ("pytorch-module", "pytorch-state-dict"), sniff_torch_save, load_torch_save, priority=20),
    ModelLoader("safetensors", ("safetensors",), sniff_safetensors, load_safetensors, priority=20),
)


def load(path: str | Path) -> Model:
    """Load any file these loaders read, chosen by content; InputError when none does."""
    from inspector.manager import load_with

    return load_with(path, LOADERS, "is not a PyTorch file (torch.save, TorchScript, torch.export) nor safetensors")


def read_state_dict(path: str | Path, wrapper_key: str | None = None) -> dict:
    """The state_dict of a torch.save file, without running code from it (see :mod:`.weights`)."""
    from plugins.loaders.torch.weights import read_state_dict as read

    try:
        return read(Path(path), wrapper_key)
    except Exception as exc:  # noqa: BLE001 - one line naming the file
        raise input_error(Path(path), exc) from exc


@hookimpl
def graphinspect_loaders():
    """The PyTorch loaders; TorchScript and torch.export outrank torch.save (all are zips)."""
    return LOADERS

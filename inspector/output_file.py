"""Where a command's output goes, checked before any work and written the way Unix tools do.

Every file a command writes (reports, ``fuse``'s weights) goes through
:class:`OutputFile`, so every command and every reporter plugin behaves alike:

- ``-`` is standard output; ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` and
  ``/proc/self/fd/N`` (also behind symlinks) are written through the open descriptor,
  in place, as a shell redirection expects.
- A character device (``/dev/null``), a FIFO or a Unix socket is written into; nothing
  is created, renamed or removed.
- A symlink is followed: the file it points at is written (created when the link
  dangles) and the link stays a link.
- A regular file, new or existing, is written atomically: the bytes go to an anonymous
  file in the same folder (``O_TMPFILE``, so a ``kill -9`` leaves nothing behind), which
  is then given a short temporary name and renamed over the destination; a failure
  leaves the old file as it was. A new file gets the mode ``open(path, "w")`` would give
  it (0666 minus the umask); a replaced file keeps its mode, and its owner where the
  process may set it.
- Refused before anything is read or written, one line each: a directory, a missing or
  unwritable folder, a read-only file, a block device, a name too long, and an output
  that is one of the command's input files (the same device and inode: through a
  symlink, a hard link, or ``./x`` for ``x``).

Commands call :meth:`OutputFile.prepare` first (before loading anything), add the files
their loaders read with :meth:`OutputFile.protect` (an ONNX model's external data), and
write with :meth:`OutputFile.write`, which checks again.
"""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import socket
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from inspector.errors import UsageError

STDOUT = "-"
MAX_SYMLINK_HOPS = 40
_PROC_FD_FOLDER = re.compile(r"/proc/(?:self|thread-self|(\d+)(?:/task/\d+)?)/fd")


class OutputError(UsageError):
    """An output path that cannot (or must not) be written; ``str()`` names the option
    and the path: ``"-o report.json: folder out/ does not exist"``."""


@dataclass(frozen=True, slots=True)
class _Resolved:
    kind: str  # "stdout", "descriptor", "special", "file"
    path: Path | None = None  # the file written ("file": symlinks followed) or opened ("special")
    descriptor: int | None = None


@dataclass(slots=True)
class OutputFile:
    """An output destination named on the command line (``-o FILE``, ``--weights FILE``).

    ``given`` is the path as typed; ``option`` the option that named it, for messages.
    """

    given: str
    option: str = "-o"
    inputs: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- checks

    @classmethod
    def prepare(
        cls, given: str | os.PathLike, option: str = "-o", inputs: Iterable[str | os.PathLike | None] = ()
    ) -> "OutputFile":
        """Check ``given`` as an output before any work; raises :class:`OutputError`."""
        output = cls(os.fspath(given), option)
        output.protect(inputs)
        output.check()
        return output

    def protect(self, inputs: Iterable[str | os.PathLike | None]) -> "OutputFile":
        """Add input files the output must never be (checked now and before writing)."""
        for path in inputs:
            if path:
                self.inputs.append(os.fspath(path))
        return self

    @property
    def is_stdout(self) -> bool:
        return self.given == STDOUT

    def check(self) -> _Resolved:
        """Where the bytes would go, or :class:`OutputError` saying why they cannot."""
        resolved = self._resolve()
        if resolved.kind == "file":
            self._check_file(resolved.path)
        return resolved

    def _fail(self, problem: str) -> OutputError:
        return OutputError(f"{self.option} {_shown(self.given)}: {problem}")

    def _resolve(self) -> _Resolved:
        if self.given == STDOUT:
            return _Resolved("stdout")
        if not self.given:
            raise self._fail("empty file name")
        if "\0" in self.given:
            raise self._fail("file name contains a NUL byte")
        try:
            real, descriptor = _follow(self.given)
        except OSError as exc:
            raise self._fail(_reason(exc)) from None
        if descriptor is not None:
            return _Resolved("descriptor", descriptor=descriptor)
        try:
            info = os.stat(real)
        except FileNotFoundError:
            return _Resolved("file", real)
        except OSError as exc:
            raise self._fail(_reason(exc)) from None
        if stat.S_ISDIR(info.st_mode):
            raise self._fail("is a directory")
        if stat.S_ISBLK(info.st_mode):
            raise self._fail("is a block device; refusing to write a report onto a disk")
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):
            return _Resolved("special", real)
        return _Resolved("file", real)

    def _check_file(self, path: Path) -> None:
        folder = path.parent
        name_max = _name_max(folder)
        if len(os.fsencode(path.name)) > name_max:
            raise self._fail(f"file name too long ({len(os.fsencode(path.name))} bytes; this folder allows {name_max})")
        if not folder.exists():
            raise self._fail(f"folder {_shown(str(folder))} does not exist")
        if not folder.is_dir():
            raise self._fail(f"{_shown(str(folder))} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise self._fail(f"cannot write into folder {_shown(str(folder))}: permission denied")
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._fail(_reason(exc)) from None
        if not os.access(path, os.W_OK):
            raise self._fail("is read-only")
        for given in self.inputs:
            try:
                other = os.stat(given)
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
                raise self._fail(f"is the input {_shown(given)}; refusing to overwrite an input file")

    @property
    def suffix(self) -> str:
        """The file ending that chooses a format: the given name's, else (through a
        symlink) the real file's; "" for none."""
        suffix = Path(self.given).suffix.lower()
        if suffix or self.is_stdout:
            return suffix
        resolved = self._resolve()
        return resolved.path.suffix.lower() if resolved.kind == "file" else ""

    @property
    def is_stream(self) -> bool:
        """Whether the bytes go into a stream (stdout, a descriptor, a device, a FIFO or a
        socket) rather than a regular file."""
        return self._resolve().kind != "file"

    def same_destination(self, other: "OutputFile") -> bool:
        """Whether both name the same regular file (existing or not) after symlinks."""
        mine, theirs = self._resolve(), other._resolve()
        return mine.kind == theirs.kind == "file" and _same_path(mine.path, theirs.path)

    # ----------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` to the destination (see the module docstring for how)."""
        resolved = self.check()
        with self._failing_in_one_line():
            if resolved.kind == "stdout":
                sys.stdout.flush()
                _write_all(sys.stdout.buffer.fileno(), data)
            elif resolved.kind == "descriptor":
                if resolved.descriptor in (1, 2):
                    (sys.stdout if resolved.descriptor == 1 else sys.stderr).flush()
                _write_all(resolved.descriptor, data)
            elif resolved.kind == "special":
                _write_special(resolved.path, data)
            else:
                _write_atomically(resolved.path, data)

    def write_text(self, text: str) -> None:
        self.write(text.encode("utf-8"))

    @contextmanager
    def open_text(self) -> Iterator[TextIO]:
        """A text stream whose whole content is this output's, in UTF-8, written as
        :meth:`write_text` writes it: a regular file gets the text as it comes (a report
        of 60 MB is not held in memory three times over: the text, then its bytes) and is
        replaced only when the block ends without an exception; any other destination
        gets the text once the block has ended."""
        resolved = self.check()
        if resolved.kind != "file":
            buffer = io.StringIO()
            yield buffer
            self.write_text(buffer.getvalue())
            return
        with self._failing_in_one_line(), _replacing(resolved.path) as descriptor:
            with open(descriptor, "w", encoding="utf-8", newline="", closefd=False) as stream:
                yield stream

    @contextmanager
    def _failing_in_one_line(self) -> Iterator[None]:
        """An OSError while writing (a full disk, a read-only folder) as this output's
        one-line error; a reader gone (BrokenPipeError) as it is."""
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._fail(f"cannot write: {_reason(exc)}") from None


# ----------------------------------------------------------------------------- helpers


def _follow(given: str) -> tuple[Path, int | None]:
    """(the real path after every symlink, or the open descriptor the path names).

    Unlike ``os.path.realpath``, this notices the magic links of ``/proc/self/fd``
    (``/dev/stdout`` -> ``/proc/self/fd/1``), whose targets are not paths to write, and
    follows a dangling link to the file it would create.
    """
    path = os.path.abspath(given)
    for _ in range(MAX_SYMLINK_HOPS):
        folder = os.path.realpath(os.path.dirname(path))
        name = os.path.basename(path)
        fd_folder = _PROC_FD_FOLDER.fullmatch(folder)
        if fd_folder and name.isdigit() and fd_folder.group(1) in (None, str(os.getpid())):
            return Path(folder, name), int(name)
        path = os.path.join(folder, name)
        if not os.path.islink(path):
            return Path(path), None
        path = os.path.normpath(os.path.join(folder, os.readlink(path)))
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))


def _same_path(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return first == second


def _write_all(descriptor: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _write_special(path: Path, data) -> None:
    """Write into a character device, FIFO or socket, creating nothing."""
    if stat.S_ISSOCK(os.stat(path).st_mode):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(str(path))
            connection.sendall(data)
        return
    # No O_CREAT: if the device or FIFO went away, this fails instead of making a file.
    descriptor = os.open(path, os.O_WRONLY | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    try:
        _write_all(descriptor, data)
    finally:
        os.close(descriptor)


def _write_atomically(path: Path, data) -> None:
    """Replace (or create) the regular file ``path`` with ``data``, all or nothing."""
    with _replacing(path) as descriptor:
        _write_all(descriptor, data)


@contextmanager
def _replacing(path: Path) -> Iterator[int]:
    """A descriptor open for writing whose bytes replace (or create) the regular file
    ``path`` when the block ends without an exception; otherwise nothing changes."""
    folder = path.parent
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        existing = None
    mode = stat.S_IMODE(existing.st_mode) if existing is not None else 0o666 & ~_umask()
    descriptor, temporary = _anonymous_file(folder)
    try:
        yield descriptor
        os.fchmod(descriptor, mode)
        if existing is not None and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.fchown(descriptor, existing.st_uid, existing.st_gid)
            except PermissionError:
                pass  # as cp does: the new file is ours when we may not give it away
        os.fsync(descriptor)
        if temporary is None:
            temporary = _link_anonymous(descriptor, folder)
        os.replace(temporary, path)
        temporary = None
    finally:
        os.close(descriptor)
        if temporary is not None:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass


def _anonymous_file(folder: Path) -> tuple[int, Path | None]:
    """An open file in ``folder`` for writing: anonymous (``O_TMPFILE``, no name until it
    is complete) where the system has it, else a new file with a short temporary name."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(folder, flags | os.O_TMPFILE, 0o600), None
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
    for _ in range(100):
        temporary = folder / _temporary_name()
        try:
            return os.open(temporary, flags | os.O_CREAT | os.O_EXCL, 0o600), temporary
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "cannot find a free temporary name")


def _link_anonymous(descriptor: int, folder: Path) -> Path:
    """Give the anonymous file a short temporary name in ``folder`` (linkat through /proc)."""
    # linkat(AT_SYMLINK_FOLLOW) on the /proc magic link; os.link only calls linkat when
    # given a directory descriptor, and plain link() would try to link the symlink itself.
    proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(100):
            temporary = folder / _temporary_name()
            try:
                os.link(str(descriptor), temporary, src_dir_fd=proc_fds, follow_symlinks=True)
                return temporary
            except FileExistsError:
                continue
    finally:
        os.close(proc_fds)
    raise OSError(errno.EEXIST, "cannot find a free temporary name")


def _temporary_name() -> str:
    # Short and fixed in length, so that a destination name near the limit still fits.
    return f".graphinspect-{secrets.token_hex(6)}.tmp"


def _umask() -> int:
    """The process umask, read without changing it where /proc tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _name_max(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower() if exc.errno else str(exc)


def _shown(text: str) -> str:
    """A path as one printable line: control characters escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)

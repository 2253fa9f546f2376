"""A crash in native code while reading a file becomes one line naming the file, exit 2.

graphinspect reads untrusted files with native code: torch's zip, pickle and TorchScript
readers, protobuf, numpy on memory-mapped bytes, ONNX Runtime. A crafted file can crash
one of them (a segmentation fault inside ``torch.jit.load``), and no ``except`` catches
that: the process is gone. So the command line runs under :func:`supervise`: it forks
once, before anything heavy is imported (about a millisecond, measured in
``benchmarks/isolation.py``); the child does the work with the same standard streams,
the parent only waits. When the child dies by a signal, the parent prints one line and
exits 2. Steps that hand a file to native code announce it with :func:`reading`, so that
the line names the file and the step::

    graphinspect: error: evil.pt: crashed the process (SIGSEGV) while loading it with
    torch.jit.load; the file is damaged or crafted

The announcement is a few bytes in a shared anonymous mapping, written by the child and
read by the parent only after the child is gone; without :func:`supervise` (the tests'
in-process runs, a system without ``fork``) :func:`reading` does nothing.

Nothing here isolates *code execution*: that is prevented by never running code from a
file (see the loaders); this turns the crash of a native library into trouble reported
like any other bad input.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator

NO_SUPERVISOR_ENV = "GRAPHINSPECT_NO_SUPERVISOR"
SLOT_BYTES = 4096
"""Bytes of the shared announcement buffer."""
_slot = None  # the shared mapping, in the supervised child
_QUIET_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGPIPE: 141}


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str = "reading it") -> Iterator[None]:
    """Announce that native code is working on ``path`` (``what``: "loading it with
    torch.jit.load"); the announcement before is restored on exit."""
    previous = _read_slot()
    _write_slot(f"{os.fspath(path)}\0{what}")
    try:
        yield
    finally:
        _write_slot(previous)


def announce_into(slot) -> None:
    """Make :func:`reading` write its announcements into ``slot``, a buffer of
    :data:`SLOT_BYTES` shared with a supervising process that is not :func:`supervise`
    (an ``mmap``, a ``multiprocessing`` ``RawArray('c', SLOT_BYTES)``: the worker
    processes of ``diff --pairs``). The supervisor reads it with :func:`announced` after
    the worker died and passes it to :func:`crash_message`."""
    global _slot
    _slot = slot


def announced(slot) -> str:
    """What the process writing into ``slot`` last announced ("path\\0what", or "")."""
    return _read(slot)


_kept: list | None = None
"""In the supervised child, which ends by ``os._exit``: what :func:`keep_until_exit` keeps."""


def ends_by_exit() -> bool:
    """Whether this process ends by ``os._exit`` once its command returns (the supervised
    child): nothing it holds then needs freeing or collecting."""
    return _kept is not None


def keep_until_exit(*objects: object) -> None:
    """Keep ``objects`` alive until the process ends, when it ends without freeing them
    (the supervised child leaves by ``os._exit``): a command's models, once its output
    is written, would otherwise be freed object by object as it returns, 0.7 s of a
    30,000-block diff spent on memory the exit gives back at once. Anywhere else (tests,
    the Python API, an unsupervised run) nothing is kept."""
    if _kept is not None:
        _kept.extend(objects)


def supervise(run: Callable[[], int]) -> int:
    """Run ``run`` in a forked child and return its exit status; when the child dies by
    a signal, print the one-line error and return 2 (see the module docstring).

    The parent returns the child's status. The child, once ``run`` returns, flushes its
    streams and leaves with ``os._exit`` (what a forked child should do): tearing down
    the millions of objects of a large diff one by one took 0.8 s at 10,000 Conv+BN
    blocks, and nothing is left to clean up (outputs are written and closed by then,
    worker processes joined, temporary folders removed by their ``with`` blocks); what a
    command hands to :func:`keep_until_exit` is not freed either. Should
    flushing fail (a reader gone), or ``run`` raise, the child returns or raises as
    usual.
    """
    global _slot, _kept
    if not hasattr(os, "fork") or os.environ.get(NO_SUPERVISOR_ENV):
        return run()
    import mmap

    _slot = mmap.mmap(-1, SLOT_BYTES)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _die_with_parent()
        _kept = []
        status = run()
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            return status
        os._exit(status)
    _slot_parent = _slot
    _slot = None
    return _wait(pid, _slot_parent)


def _wait(pid: int, slot) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal sends it to the child too
    for forwarded in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(forwarded, lambda number, frame: os.kill(pid, number))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    number = os.WTERMSIG(status)
    if number in _QUIET_SIGNALS:
        return _QUIET_SIGNALS[number]
    print(crash_message(number, _read(slot)), file=sys.stderr)
    return 2


def crash_message(number: int, announced: str) -> str:
    """The one line for a child that died by signal ``number`` while ``announced``
    ("path\\0what", or "")."""
    from inspector.cli import error_line

    name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
    path, _, what = announced.partition("\0")
    if number == signal.SIGKILL:
        event = f"the process was killed ({name}; out of memory?)"
    else:
        event = f"crashed the process ({name})"
    if path:
        return error_line(f"{path}: {event} while {what}; the file is damaged or crafted")
    return error_line(f"internal error: {event}")


def _die_with_parent() -> None:
    """Ask Linux to kill the child when the parent dies (a ``kill -9`` of graphinspect)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _write_slot(text: str) -> None:
    if _slot is None:
        return
    data = text.encode("utf-8", "surrogateescape")[: SLOT_BYTES - 4]
    _slot[4 : 4 + len(data)] = data
    _slot[0:4] = len(data).to_bytes(4, "little")


def _read_slot() -> str:
    return _read(_slot)


def _read(slot) -> str:
    if slot is None:
        return ""
    length = min(int.from_bytes(slot[0:4], "little"), SLOT_BYTES - 4)
    return slot[4 : 4 + length].decode("utf-8", "surrogateescape")

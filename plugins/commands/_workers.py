"""Run a function over many tasks in worker processes, where a crash costs only its task.

A private helper of ``diff --pairs`` (:mod:`._batch`), generic so that it can be tested
with any task. Why not :mod:`concurrent.futures` or ``multiprocessing.Pool``: when a
worker of a ``ProcessPoolExecutor`` dies, the pool breaks and every pending task fails
with it; ``Pool`` waits forever for the task of a worker that died. Here the parent
hands one task at a time to each idle worker over a pipe and waits on both the pipes
and the processes' sentinels, so it sees at once which worker died and with which task;
that task becomes a one-line problem and a new worker takes the remaining ones. The
same wait ends at the first running task's deadline when there is a time limit: a task
past it has its worker killed, and is a one-line problem too.

Workers are started with ``spawn`` (a fresh interpreter: nothing of the parent's
threads, locks or imported native libraries is copied), ignore SIGINT (the parent owns
Ctrl-C and terminates them), and serve tasks until the parent closes their pipe. Each
worker announces the file its native code is reading (:func:`inspector.isolation.reading`)
into a buffer shared with the parent, so that a crash is reported like a single
command's crash: ``model.pt: crashed the process (SIGSEGV) while reading it (torch
loader); the file is damaged or crafted``.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from typing import Any

from inspector import isolation
from inspector.cli import escape

CONTEXT = "spawn"
ERROR_PREFIX = "graphinspect: error: "


def run_in_workers(
    work: Callable[..., Any],
    tasks: Sequence[tuple],
    jobs: int,
    done: Callable[[int, Any], None],
    failed: Callable[[float, str], Any],
    timeout: float | None = None,
) -> None:
    """Call ``work(*task)`` for every task in at most ``jobs`` worker processes.

    ``work`` must be a module-level function (it is pickled by name) and its result
    picklable. As each task ends, in the parent and in the order they end,
    ``done(position, result)`` is called; a task whose worker died or whose ``work``
    raised gives ``done(position, failed(seconds, problem))``, ``problem`` one line.
    A task still running ``timeout`` seconds after it started has its worker killed
    (SIGKILL: a hung native reader ignores anything gentler) and fails the same way;
    a new worker takes the remaining tasks. Returns when every task is done; on an
    exception in the parent (Ctrl-C) the workers are terminated.
    """
    context = multiprocessing.get_context(CONTEXT)
    pending = deque(range(len(tasks)))
    workers: list[_Worker] = []
    try:
        while pending or any(worker.position is not None for worker in workers):
            workers = [worker for worker in workers if worker.position is not None or worker.process.is_alive()]
            for worker in workers:
                if worker.position is None and pending:
                    worker.assign(pending.popleft(), tasks)
            while len(workers) < jobs and pending:
                workers.append(_Worker(context, work))
                workers[-1].assign(pending.popleft(), tasks)
            busy = [worker for worker in workers if worker.position is not None]
            handles = [handle for worker in busy for handle in (worker.connection, worker.process.sentinel)]
            wait_for = None  # seconds until the first busy worker's deadline
            if timeout is not None:
                wait_for = max(0.0, min(worker.started for worker in busy) + timeout - time.perf_counter())
            ready = set(wait(handles, wait_for))
            for worker in busy:
                if worker.connection not in ready and worker.process.sentinel not in ready:
                    seconds = time.perf_counter() - worker.started
                    if timeout is not None and seconds >= timeout:
                        position = worker.position
                        worker.kill()
                        workers.remove(worker)
                        done(position, failed(seconds, f"did not finish within {timeout:g} s (--timeout): stopped"))
                    continue
                position, seconds = worker.position, time.perf_counter() - worker.started
                worker.position = None
                try:
                    kind, value = worker.connection.recv()
                except (EOFError, OSError):
                    workers.remove(worker)
                    done(position, failed(seconds, worker.death()))
                    continue
                done(position, value if kind == "ok" else failed(seconds, value))
    finally:
        for worker in workers:
            worker.stop()


class _Worker:
    """One worker process, its pipe, its announcement buffer and the task it runs."""

    def __init__(self, context, work: Callable[..., Any]) -> None:
        self.slot = context.RawArray("c", isolation.SLOT_BYTES)
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_end, self.slot, work), daemon=True)
        self.process.start()
        child_end.close()
        self.position: int | None = None
        self.started = 0.0

    def assign(self, position: int, tasks: Sequence[tuple]) -> None:
        self.position, self.started = position, time.perf_counter()
        self.connection.send(tasks[position])

    def death(self) -> str:
        """Why the worker is gone, as a single command would say it (one line)."""
        self.process.join()
        self.connection.close()
        code = self.process.exitcode
        if code is not None and code < 0:
            return isolation.crash_message(-code, isolation.announced(self.slot)).removeprefix(ERROR_PREFIX)
        return f"internal error: the worker process exited with status {code} without a result"

    def kill(self) -> None:
        """End the worker now, whatever it is doing; it takes no task again."""
        self.position = None
        self.process.kill()
        self.process.join()
        self.connection.close()

    def stop(self) -> None:
        try:
            self.connection.close()  # the worker's recv() ends: it exits when idle
        except OSError:
            pass
        self.process.join(timeout=0.5 if self.position is None else 0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


def _serve(connection, slot, work: Callable[..., Any]) -> None:
    """A worker's life: run tasks from ``connection`` until the parent closes it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    isolation.announce_into(slot)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", work(*task))
        except BaseException as exc:  # noqa: BLE001 - any failure is this task's one line
            message = str(exc).splitlines()[0] if str(exc) else ""
            reply = ("failed", escape(f"internal error: {type(exc).__name__}: {message}".rstrip(": ")))
        try:
            connection.send(reply)
        except (BrokenPipeError, OSError):
            return

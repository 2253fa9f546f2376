"""Progress on stderr for the steps of a command that take more than a moment.

Two halves, so that library code can say what it is doing without knowing who watches:

- a command opens the display once, around its work, and closes it before it writes
  its report::

      with progress.shown(enabled=not args.quiet):
          with progress.step(f"Loading {path}"):
              model = plugins.load_model(path)
          result = diff_models(plugins, source, target)   # declares its own steps

- code anywhere declares a step, with a total when it knows one::

      with progress.step("Matching layers", total=len(targets)) as step:
          for layer in targets:
              ...
              step.advance()

Outside :func:`shown` (the Python API, tests, a reporter), or when the display is off,
:func:`step` returns a do-nothing step: declaring progress costs a function call.

The display is rich's own ``Progress`` on stderr, and only when stderr is a terminal:
never in files, pipes or CI logs. It appears only after :data:`DELAY` seconds, so a
quick command prints nothing extra, and it is transient: it erases itself when the
command's display closes. Writes to stderr meanwhile (a warning) are shown above it;
stdout is left alone, so a report piped from stdout is never mixed with it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DELAY = 0.5
"""Seconds a command runs before its progress appears."""


class Step:
    """One step of the current display: :meth:`advance` it by work done."""

    __slots__ = ("_display", "_task")

    def __init__(self, display: "_Display | None" = None, task: Any = None) -> None:
        self._display = display
        self._task = task

    def advance(self, amount: float = 1) -> None:
        if self._display is not None:
            self._display.progress.advance(self._task, amount)


_NO_STEP = Step()


class _Display:
    """rich's Progress, started by a timer after :data:`DELAY` seconds."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        from inspector.output import make_console

        console = make_console(sys.stderr)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,  # stdout may carry the report; leave it alone
            redirect_stderr=True,
        )
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._timer = threading.Timer(DELAY, self._start)
        self._timer.daemon = True
        self._timer.start()

    def _start(self) -> None:
        with self._lock:
            if not self._closed:
                self.progress.start()
                self._started = True

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._started:
                self.progress.stop()


_current: _Display | None = None


def _stderr_is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def shown(enabled: bool = True) -> Iterator[None]:
    """Show the steps declared inside (see the module docstring); nested calls and a
    stderr that is no terminal show nothing new."""
    global _current
    if not enabled or _current is not None or not _stderr_is_terminal():
        yield
        return
    display = _Display()
    _current = display
    try:
        yield
    finally:
        _current = None
        display.close()


@contextmanager
def step(description: str, total: float | None = None) -> Iterator[Step]:
    """A step of the current display, removed when it ends; ``total`` None shows a
    spinner and the time only. ``description`` is shown as it is (no markup)."""
    display = _current
    if display is None:
        yield _NO_STEP
        return
    from inspector.output import visible

    task = display.progress.add_task(visible(description), total=total)
    try:
        yield Step(display, task)
    finally:
        display.progress.remove_task(task)

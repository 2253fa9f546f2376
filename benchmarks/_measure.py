"""Measuring whole commands: wall time, CPU time and peak RSS of a fresh process.

Every command runs in its own interpreter (imports included), the way a user runs it.
:func:`measure` waits for the child with ``os.wait4``, which gives the child's own CPU time
(user + system) and peak resident set size (``ru_maxrss``), not the benchmark's.
:func:`alternate` runs several commands in turn, ``repeat`` rounds, so a machine that
slows down during the run slows all of them alike, and keeps the median of each.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


@dataclass(frozen=True)
class Run:
    """One finished command: seconds of wall and CPU time, peak RSS in bytes."""

    wall: float
    cpu: float
    rss: int


SPAWN = """
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_utime + usage.ru_stime,
      usage.ru_maxrss * 1024, file=sys.stderr)
"""
"""Runs a command and prints its exit status, wall, CPU and peak RSS on stderr's last line.

The measured command is started by this small interpreter, not by the benchmark: a
child's ``ru_maxrss`` starts from its parent's peak at the fork, and the benchmark has
imported torch."""


def measure(command: list[str], ok_codes=(0,), cwd: Path = ROOT) -> Run:
    """Run ``command`` once in a fresh process; SystemExit when its exit status is not in ``ok_codes``."""
    spawn = [sys.executable, "-I", "-S", "-c", SPAWN]
    completed = subprocess.run([*spawn, *command], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = completed.stderr.decode(errors="replace").strip().splitlines()
    code, wall, cpu, rss = lines[-1].split() if lines else ("-1", "0", "0", "0")
    if int(code) not in ok_codes:
        tail = "\n".join(lines[:-1])[-800:]
        raise SystemExit(f"command failed ({code}): {' '.join(command)}\n{tail}")
    return Run(float(wall), float(cpu), int(rss))


def alternate(commands: dict[str, tuple[list[str], tuple[int, ...]]], repeat: int, warmup: bool = True) -> dict:
    """name -> the median :class:`Run` of ``repeat`` alternated rounds of every command.

    ``commands`` maps a name to (command, accepted exit codes). A first, unmeasured
    round warms the page cache when ``warmup``.
    """
    if warmup:
        for command, codes in commands.values():
            measure(command, codes)
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, (command, codes) in commands.items():
            runs[name].append(measure(command, codes))
    return {
        name: Run(
            statistics.median(r.wall for r in found),
            statistics.median(r.cpu for r in found),
            int(statistics.median(r.rss for r in found)),
        )
        for name, found in runs.items()
    }


def python_command(code: str) -> list[str]:
    """A fresh interpreter running ``code`` with the repository first on sys.path."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}"]


def graphinspect_command(*args: str) -> list[str]:
    """``python -m inspector ARGS`` run from the repository root (this checkout's code)."""
    return [sys.executable, "-m", "inspector", *args]


INTERPRETER_CODE = "import numpy, torch, onnx, rich"
"""What any diff imports before reading a byte: its peak RSS is the interpreter baseline."""


def interpreter_rss(repeat: int = 3) -> int:
    """Peak RSS of a fresh interpreter that imported what a diff imports (median)."""
    return int(statistics.median(measure(python_command(INTERPRETER_CODE)).rss for _ in range(repeat)))


def machine() -> dict[str, str]:
    """The facts RESULTS.md records about the machine and the libraries."""
    import numpy
    import onnx
    import torch

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": memory,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "numpy": numpy.__version__,
        "commit": commit,
    }


def mib(count: int) -> str:
    return f"{count / MIB:,.0f}"

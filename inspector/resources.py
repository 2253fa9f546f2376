"""What the machine can give a command: memory, for budgets a loader checks before it
builds something whose size a file decides.

A file declares sizes that cost memory in proportion (a graph's node count: one layer
each). Where that cost cannot be bounded by the file's size alone, a loader compares its
estimate with :func:`available_memory` and refuses, in one line, what would not fit,
before it is built: swapping or the kernel's OOM killer is no answer to a crafted file.
"""

from __future__ import annotations

from pathlib import Path

_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def available_memory() -> int | None:
    """Bytes of memory a new allocation can have without swapping: Linux's MemAvailable,
    less where a cgroup (v2) limit leaves less; None where the platform does not say."""
    found: list[int] = []
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            found.append(max(0, int(limit) - int((_CGROUP / "memory.current").read_text())))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def shortfall(needed: int) -> str | None:
    """Why ``needed`` bytes would not fit in the memory available, as the end of a
    loader's one-line refusal (``"about 1.9 GiB: more than the 1.0 GiB of memory
    available"``), or None when they fit (or the platform does not say)."""
    available = available_memory()
    if available is None or needed <= available:
        return None
    return f"about {needed / 2**30:.1f} GiB: more than the {available / 2**30:.1f} GiB of memory available"

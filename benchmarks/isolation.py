"""What the crash supervisor (inspector/isolation.py) costs: the same commands run with it
and without it (GRAPHINSPECT_NO_SUPERVISOR=1), alternated, medians of wall time.

    python benchmarks/isolation.py [--runs 7]

The supervisor forks once at start, before torch or onnx is imported, and the parent
only waits; the other way to isolate a crash, a subprocess per untrusted step, would pay
a second interpreter and torch import per step, shown as "subprocess torch import".
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"

COMMANDS = {
    "--version": ["--version"],
    "inspect .pt": ["inspect", str(SAMPLES / "rtdetr_stem.pt"), "--format", "json"],
    "diff .pt .onnx": ["diff", str(SAMPLES / "rtdetr_stem.pt"), str(SAMPLES / "rtdetr_stem.onnx"), "--format", "json"],
}


def wall(args: list[str], supervised: bool) -> float:
    env = {**os.environ, "GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)}
    if not supervised:
        env["GRAPHINSPECT_NO_SUPERVISOR"] = "1"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "inspector", *args], env=env, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {runs} alternated runs, medians")
    print(f"{'command':<16} {'supervised':>11} {'bare':>9} {'ratio':>7} {'difference':>11}")
    for name, args in COMMANDS.items():
        supervised, bare = [], []
        for _ in range(runs):
            supervised.append(wall(args, True))
            bare.append(wall(args, False))
        s, b = statistics.median(supervised), statistics.median(bare)
        print(f"{name:<16} {s:>10.3f}s {b:>8.3f}s {s / b:>7.3f} {1000 * (s - b):>+9.1f}ms")
    imports = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        imports.append(time.perf_counter() - start)
    print(f"{'subprocess torch import':<28} {statistics.median(imports):.3f}s (per isolated step, the alternative)")


if __name__ == "__main__":
    main()

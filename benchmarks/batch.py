"""What ``diff --pairs`` gains over one ``graphinspect diff`` process per pair.

    python benchmarks/batch.py [--pairs 8] [--runs 3]

N copies of a sample pair (the RT-DETR-like detector with RepConv, attention and
LayerNorm, slimmed export), audited three ways, alternated, medians of wall time:

- ``sequential``: N ``graphinspect diff SOURCE TARGET --format json -o FILE`` processes,
  one after another (what a shell loop does; each imports torch and onnx again);
- ``--pairs --jobs 1``: one batch, one worker process (imports paid once);
- ``--pairs --jobs 2``: one batch, two worker processes.

Printed: each wall time, the ratio to ``sequential`` and the machine. Only wall time is
compared: the batch's CPU is spent in its workers, which a parent's rusage does not
count. No asserts: a reproducible measurement, not a test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import ROOT, graphinspect_command, machine, measure  # noqa: E402

SAMPLES = ROOT / "samples"
PAIR = ("rtdetr_like.pt", "rtdetr_like.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="copies of the sample pair (default 8)")
    parser.add_argument("--runs", type=int, default=3, help="alternated rounds (default 3)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="graphinspect-batch-") as temporary:
        folder = Path(temporary)
        lines = []
        for index in range(options.pairs):
            copy = folder / f"copy{index}"
            copy.mkdir()
            for name in PAIR:
                shutil.copy(SAMPLES / name, copy / name)
            lines.append(f"copy{index}/{PAIR[0]} copy{index}/{PAIR[1]}")
        manifest = folder / "pairs.txt"
        manifest.write_text("\n".join(lines) + "\n")

        def sequential() -> float:
            started = time.perf_counter()
            for index in range(options.pairs):
                copy = folder / f"copy{index}"
                command = graphinspect_command(
                    "diff", str(copy / PAIR[0]), str(copy / PAIR[1]), "--format", "json", "-o", str(copy / "r.json")
                )
                measure(command)
            return time.perf_counter() - started

        def batch(jobs: int) -> float:
            out = folder / f"out{jobs}"
            return measure(
                graphinspect_command("diff", "--pairs", str(manifest), "--jobs", str(jobs), "--out-dir", str(out))
            ).wall

        ways = {"sequential": sequential, "--pairs --jobs 1": lambda: batch(1), "--pairs --jobs 2": lambda: batch(2)}
        for way in ways.values():  # warm the page cache and the interpreter's bytecode cache
            way()
        walls: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(options.runs):
            for name, way in ways.items():
                walls[name].append(way())
    medians = {name: statistics.median(found) for name, found in walls.items()}
    print(f"{options.pairs} pairs of samples/{PAIR[0]} + {PAIR[1]}, median of {options.runs} alternated rounds")
    print(f"{'way':<20}{'wall s':>9}{'ratio':>9}")
    for name, wall in medians.items():
        print(f"{name:<20}{wall:>9.2f}{wall / medians['sequential']:>8.2f}x")
    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine().items()))


if __name__ == "__main__":
    main()

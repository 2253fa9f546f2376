"""Loading an ONNX file, and reading its weights, against ``onnx.load``.

    python benchmarks/onnx_load.py [--only chain-10k,graph-100k] [--repeat 5] [--keep DIR]
                                   [--against OTHER_CHECKOUT]

For each model (built by :mod:`_models`; with ``--keep``, under that folder and reused),
in fresh interpreters run in alternation (``--repeat`` rounds after a warm-up, medians):

- floor: ``onnx.load(path)``, the protobuf parse, weights included;
- load: graphinspect's ONNX loader (``load_onnx``) of this checkout;
- read: then the values of every tensor the file stores (what a diff reads, one by one);
- with ``--against``, load and read with another checkout's code (a base commit), so that
  a change is compared with its base in the same minutes of a shared machine.

Each interpreter times only its own work, after its imports (wall and CPU seconds; the
CPU time is the steadier on a busy machine). The table gives the medians and the ratio
of each CPU time to the floor's and, with ``--against``, to the other checkout's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _models import BUILDERS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TIMED = """
import sys, time, gc
sys.path.insert(0, {root!r})
import numpy, onnx
from plugins.loaders.onnx import load_onnx
gc.freeze()
gc.set_threshold(100_000, *gc.get_threshold()[1:])  # as the command line runs
wall, cpu = time.perf_counter(), time.process_time()
{body}
print(time.perf_counter() - wall, time.process_time() - cpu)
"""
BODIES = {
    "floor": "onnx.load({path!r})",
    "load": "model = load_onnx({path!r})",
    "read": "model = load_onnx({path!r})\nfor stored in model.stored:\n    stored.param.array()",
}


def timed(root: Path, body: str, path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``body`` in a fresh interpreter with ``root``'s code first on sys.path."""
    code = TIMED.format(root=str(root), body=body.format(path=str(path)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {body} on {path}\n{done.stderr[-800:]}")
    wall, cpu = done.stdout.split()[-2:]
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="chain-10k,graph-100k", help="comma-separated models of _models.BUILDERS")
    parser.add_argument("--repeat", type=int, default=5, help="alternated rounds (medians are kept)")
    parser.add_argument("--keep", type=Path, help="build the models under this folder and keep them (reused next time)")
    parser.add_argument("--against", type=Path, help="another checkout to time load and read with (a base commit)")
    args = parser.parse_args()
    names = args.only.split(",")
    unknown = [name for name in names if name not in BUILDERS]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")
    base = args.keep or Path(tempfile.mkdtemp(prefix="graphinspect-onnx-load-"))

    runs = {"floor": (ROOT, BODIES["floor"]), "load": (ROOT, BODIES["load"]), "read": (ROOT, BODIES["read"])}
    if args.against:
        runs["other load"] = (args.against.resolve(), BODIES["load"])
        runs["other read"] = (args.against.resolve(), BODIES["read"])
    print("| model | run | wall s | CPU s | CPU / floor | CPU / other |")
    print("|---|---|---:|---:|---:|---:|")
    for name in names:
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        path = BUILDERS[name](folder).onnx
        for root, body in runs.values():
            timed(root, body, path)  # warm-up: the page cache, the .pyc files
        found: dict[str, list[tuple[float, float]]] = {run: [] for run in runs}
        for _ in range(args.repeat):
            for run, (root, body) in runs.items():
                found[run].append(timed(root, body, path))
        medians = {run: tuple(statistics.median(column) for column in zip(*times)) for run, times in found.items()}
        for run, (wall, cpu) in medians.items():
            versus_floor = "" if run == "floor" else f"{cpu / medians['floor'][1]:.2f}x"
            other = f"other {run}"
            versus_other = f"{cpu / medians[other][1]:.2f}x" if other in medians else ""
            print(f"| {name} | {run} | {wall:.3f} | {cpu:.3f} | {versus_floor} | {versus_other} |", flush=True)


if __name__ == "__main__":
    main()

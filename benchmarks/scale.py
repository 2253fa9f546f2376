"""``graphinspect diff`` at scale, against the floor of merely reading both files.

    python benchmarks/scale.py [--only detector,chain-10k] [--repeat 3] [--formats json,table]
                               [--keep DIR]

Builds its own models (:mod:`_models`: a 33M-parameter RT-DETR-like detector, Conv+BN
chains of 1k/10k/30k blocks as a state_dict and as a pickled module, a 100k-node graph,
a 2.25 GiB model with external data) and, for each source file, runs in alternation
(``--repeat`` rounds after a warm-up, medians):

- the *floor*: a fresh interpreter that imports torch and onnx and reads both files
  plainly (``torch.load`` with the model's classes importable, ``onnx.load`` with its
  external data);
- ``graphinspect diff SOURCE model.onnx --format F -o report`` for each format F.

It prints wall and CPU time, peak RSS and the ratios: wall / floor, and peak RSS against
the allowance ``1.2 x weight bytes + interpreter`` (weight bytes: both files, external
data included; interpreter: the peak RSS of a fresh process importing numpy, torch,
onnx and rich). The results are kept in ``benchmarks/RESULTS.md``.

Disk: the 2.25 GiB model takes 4.5 GiB in the folder (deleted afterwards unless
``--keep``); its floor holds both files in memory (about 5 GiB).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _measure import alternate, graphinspect_command, interpreter_rss, machine, mib, python_command  # noqa: E402
from _models import BUILDERS  # noqa: E402

SUFFIXES = {"json": ".json", "table": ".txt", "markdown": ".md", "html": ".html"}
EXTERNAL_FREE_BYTES = 6 * 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated benchmarks (default: all of {', '.join(BUILDERS)})")
    parser.add_argument("--repeat", type=int, default=3, help="alternated rounds (medians are kept)")
    parser.add_argument("--formats", default="json,table", help="diff formats to time: json,table,markdown,html")
    parser.add_argument("--variants", help="source variants to run (state_dict,module; default: all)")
    parser.add_argument("--keep", type=Path, help="build the models under this folder and keep them (reused next time)")
    args = parser.parse_args()

    names = args.only.split(",") if args.only else list(BUILDERS)
    unknown = [name for name in names if name not in BUILDERS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    formats = args.formats.split(",")
    base = args.keep or Path(tempfile.mkdtemp(prefix="graphinspect-scale-"))
    base.mkdir(parents=True, exist_ok=True)

    facts = machine()
    print("machine: " + ", ".join(f"{key} {value}" for key, value in facts.items()))
    interpreter = interpreter_rss()
    print(f"interpreter baseline: {mib(interpreter)} MiB peak RSS (numpy, torch, onnx, rich)")
    print()
    print("| model | source | run | wall s | CPU s | peak RSS MiB | wall / floor | RSS / allowed |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    try:
        for name in names:
            folder = base / name
            folder.mkdir(exist_ok=True)
            if name == "external" and shutil.disk_usage(folder).free < EXTERNAL_FREE_BYTES:
                print(f"| {name} | skipped: less than {EXTERNAL_FREE_BYTES / 2**30:.0f} GiB free in {folder} |")
                continue
            pair = BUILDERS[name](folder)
            for variant in pair.sources:
                if args.variants and variant not in args.variants.split(","):
                    continue
                commands = {"floor": (python_command(pair.floor_code(variant)), (0,))}
                for fmt in formats:
                    report = folder / f"report-{variant}{SUFFIXES.get(fmt, '.out')}"
                    diff = graphinspect_command(
                        "diff", str(pair.sources[variant]), str(pair.onnx), "--format", fmt, "-o", str(report)
                    )
                    commands[f"diff {fmt}"] = (diff, (0,))
                results = alternate(commands, args.repeat)
                floor = results["floor"]
                allowed = 1.2 * pair.weight_bytes(variant) + interpreter
                for run_name, run in results.items():
                    ratio = "" if run_name == "floor" else f"{run.wall / floor.wall:.2f}x"
                    print(
                        f"| {pair.name} | {variant} | {run_name} | {run.wall:.2f} | {run.cpu:.2f} | {mib(run.rss)} "
                        f"| {ratio} | {run.rss / allowed:.2f} of {mib(allowed)} |",
                        flush=True,
                    )
            if args.keep is None:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

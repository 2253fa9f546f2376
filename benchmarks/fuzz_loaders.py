"""The long fuzz run of every loader (the main suite runs a few examples of the same:
tests/security/test_fuzz.py; tests/security/fuzzing.py says what is mutated and judged).

    python benchmarks/fuzz_loaders.py [--examples 300] [--formats pt2,onnx] [--record]

For each format it prints how many fuzzed files loaded, ended in one error line, or
crashed a native reader (allowed only for TorchScript, whose structure torch's native
code parses; the supervisor reports those in one line), and every file that broke the
property, saved under --keep for replay (``graphinspect inspect FILE``). --record
writes the table to benchmarks/FUZZ.md.
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fuzz_one(fmt: str, seed: bytes, args, folder: Path, failures: list) -> collections.Counter:
    """Run ``args.examples`` mutations of ``seed``; count the outcomes, keep the failures."""
    from hypothesis import HealthCheck, given, settings

    from tests.security import fuzzing

    counts: collections.Counter[str] = collections.Counter()

    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(fuzzing.mutated(seed))
    def run(data):
        outcome = fuzzing.run_inspect(data, folder)
        problem = outcome.problem(fmt)
        if problem is not None:
            counts["PROBLEM"] += 1
            args.keep.mkdir(parents=True, exist_ok=True)
            kept = args.keep / f"{fmt.replace(' ', '_')}-{len(failures)}.bin"
            kept.write_bytes(data)
            failures.append((fmt, kept, problem))
        elif outcome.signal is not None:
            counts["native crash"] += 1
        elif outcome.status == 0:
            counts["loaded"] += 1
        else:
            counts["one error line"] += 1

    run()
    return counts


def main() -> int:
    from tests.security import fuzzing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="fuzzed files per format")
    parser.add_argument("--formats", help="comma-separated subset of the formats")
    parser.add_argument("--keep", type=Path, default=Path("fuzz-failures"), help="where failing files are saved")
    parser.add_argument("--record", action="store_true", help="write the result to benchmarks/FUZZ.md")
    args = parser.parse_args()
    rows, failures = [], []
    started = time.time()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        seeds = fuzzing.make_seeds(folder)
        wanted = args.formats.split(",") if args.formats else list(seeds)
        for fmt in wanted:
            begin = time.time()
            counts = fuzz_one(fmt, seeds[fmt].read_bytes(), args, folder, failures)
            rows.append((fmt, sum(counts.values()), counts, time.time() - begin))
            print(f"{fmt:<15} {dict(counts)} in {time.time() - begin:.0f}s", flush=True)
    table = [
        "| format | files | loaded | one error line | native crash (supervised) | broke the property | time |",
        "|---|---|---|---|---|---|---|",
    ]
    for fmt, total, counts, seconds in rows:
        table.append(
            f"| {fmt} | {total} | {counts['loaded']} | {counts['one error line']} | {counts['native crash']} "
            f"| {counts['PROBLEM']} | {seconds:.0f} s |"
        )
    print("\n".join(table))
    for fmt, kept, problem in failures:
        print(f"{fmt}: {kept}: {problem}")
    if args.record:
        import torch

        text = [
            "# Fuzzing the loaders: last recorded run",
            "",
            f"`python benchmarks/fuzz_loaders.py --examples {args.examples} --record`, "
            f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.system()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}, {time.time() - started:.0f} s in all.",
            "",
            "The property (tests/security/fuzzing.py): `inspect` on the fuzzed file exits 0, or exits 2 with one",
            "error line that is not an internal error; a crash is allowed only inside torch's own TorchScript",
            "reader, which the command line's supervisor reports in one line naming the file.",
            "",
            *table,
            "",
            *(f"- {fmt}: {problem}" for fmt, _, problem in failures),
        ]
        (ROOT / "benchmarks" / "FUZZ.md").write_text("\n".join(text).rstrip() + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

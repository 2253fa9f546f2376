"""How long the command line takes before it does any work: ``graphinspect --help``.

    python benchmarks/startup.py [--repeat 21]

Runs in alternation (medians, after a warm-up round), each in a fresh interpreter:

- ``python -c pass``: the interpreter alone, the floor;
- ``python -c "import numpy"``: what the overview used to pay on top (it registered every
  built-in plugin, and the loaders import numpy);
- ``graphinspect --help``, ``--version``: the overview (built-in commands only);
- ``graphinspect diff --help``: a command's help (every plugin registered).

It prints the wall time of each and its ratio to the floor. The target (issue 12) is
``--help`` under 0.15 s without importing numpy; tests/core/test_core_imports.py checks
the "without numpy" part, this script the time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import alternate, graphinspect_command, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="alternated rounds (medians are kept)")
    args = parser.parse_args()
    commands = {
        "python -c pass (floor)": ([sys.executable, "-c", "pass"], (0,)),
        "python -c 'import numpy'": ([sys.executable, "-c", "import numpy"], (0,)),
        "graphinspect --help": (graphinspect_command("--help"), (0,)),
        "graphinspect --version": (graphinspect_command("--version"), (0,)),
        "graphinspect diff --help": (graphinspect_command("diff", "--help"), (0,)),
    }
    results = alternate(commands, args.repeat)
    floor = results["python -c pass (floor)"].wall
    print(", ".join(f"{key}: {value}" for key, value in machine().items()))
    print(f"{'command':32} {'wall':>9} {'x floor':>8}")
    for name, run in results.items():
        print(f"{name:32} {run.wall * 1000:7.0f}ms {run.wall / floor:8.2f}")


if __name__ == "__main__":
    main()

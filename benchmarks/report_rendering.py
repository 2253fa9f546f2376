"""How long the reporters take on a big diff document, against JSON in the same run.

    python benchmarks/report_rendering.py [--layers 10000] [--repeat 5] [--before COMMIT]

Builds a synthetic ``graphinspect/diff@1`` document of ``--layers`` conv layers (two
parameters each, long Ultralytics-style names, the note "eps 0.001 from the module" on
every layer, a few mismatches with per-channel errors over 256 channels, a few unmatched
layers), then renders it, in this one process, best of ``--repeat``:

- baseline: the ``json`` reporter (what the machine-readable output costs);
- the ``table`` reporter as the terminal gets it by default (ok layers collapsed to a
  screenful), with ``--all`` (every layer), and into a file (every layer, like ``-o``);
- the ``markdown`` and ``html`` reporters;
- before: the ``table`` reporter of ``--before`` (default: the commit before the
  reporters were rewritten), read from git and rendered on the same document, when git
  has it; it drew every row with rich's Table.

It prints each time, the time per layer and the ratio to JSON. Issue 12 measured the
old table at 1.7 ms per row (17 s at 10,000 layers).

Last run (2 shared cores under a load average of 4.5, so the ratios are what to read;
best of 3, 10,000 layers):

    json (baseline)                      1.749 s     1.0x json
    table, default (collapsed)           0.017 s     0.01x
    table, --all                         1.559 s     0.9x
    table, -o file                       1.668 s     1.0x
    markdown                             0.943 s     0.5x
    html                                 7.159 s     4.1x
    table before (a2164f8, rich Table)  60.392 s    34.5x

On the real RT-DETR-L document (233 layers, in-process, best of 5): json 43 ms, table
1.5 ms (--all 38 ms), markdown 20 ms, html 113 ms; the old table 1,157 ms.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BEFORE = "a2164f8"
"""The last commit with the rich-Table reporter."""


def synthetic_document(count: int) -> dict:
    """A diff document of ``count`` folded convs; every 2,500th mismatched, every 4,000th unmatched."""
    layers = []
    for index in range(count):
        stage, block = divmod(index, 12)
        name = f"/model.{stage}/m.{block}/cv1/conv/Conv"
        sources = [f"model.{stage}.m.{block}.cv1.conv", f"model.{stage}.m.{block}.cv1.bn"]
        status = "mismatch" if index % 2500 == 1234 else ("unmatched" if index % 4000 == 3999 else "ok")
        params = []
        for role, scale in (("weight", 0.3), ("bias", 1.5)):
            rel = 1.0e-7 + 1.0e-9 * (index % 97)
            param = {
                "name": role,
                "target_tensor": f"{sources[0]}.{role}",
                "source_tensor": f"{sources[0]}.{role}",
                "source_range": [-scale / 3, scale / 3],
                "target_range": [-scale, scale * 1.1],
                "reproduced_range": [-scale, scale * 1.1],
                "max_abs_err": rel * scale,
                "max_rel_err": rel,
                "status": "ok",
                "bad_channels": [],
                "bad_channel_count": 0,
                "channel_errors": None,
            }
            if status == "mismatch" and role == "weight":
                errors = [1.0e-7] * 256
                errors[54] = 0.02
                param.update(
                    status="mismatch",
                    max_rel_err=0.02,
                    max_abs_err=0.006,
                    bad_channels=[54],
                    bad_channel_count=1,
                    channel_errors={"channels": 256, "per_entry": 1, "max_rel_err": errors},
                )
            if status == "unmatched":
                param.update(source_tensor=None, source_range=None, reproduced_range=None, status="unmatched")
                param.update(max_abs_err=None, max_rel_err=None)
            params.append(param)
        layers.append(
            {
                "target": name,
                "op": "Conv",
                "sources": [] if status == "unmatched" else sources,
                "transform": None if status == "unmatched" else "fold_batchnorm",
                "status": status,
                "matched_by": None if status == "unmatched" else "scope",
                "note": "" if status == "unmatched" else "eps 0.001 from the module",
                "params": params,
            }
        )
    statuses = [layer["status"] for layer in layers]
    findings = [
        {
            "severity": "error",
            "code": "mismatch",
            "message": f"{layer['target']} (Conv, ...): weight differs by up to 0.006 (2.00% of its scale) in "
            "output channel 54",
            "layer": layer["target"],
        }
        for layer in layers
        if layer["status"] == "mismatch"
    ]
    findings += [
        {
            "severity": "error",
            "code": "unmatched_target",
            "message": f"Conv {layer['target']} is not traced to the PyTorch model",
            "layer": layer["target"],
        }
        for layer in layers
        if layer["status"] == "unmatched"
    ]
    elements = count * 2 * 1000
    return {
        "schema": "graphinspect/diff@1",
        "tool": {"name": "graphinspect", "version": "bench"},
        "source": {"path": "model.pt", "format": "pytorch-module", "layers": count * 2, "parameters": elements},
        "target": {"path": "model.onnx", "format": "onnx", "layers": count, "parameters": elements},
        "tolerance": {"rtol": None, "atol": None},
        "summary": {
            "verdict": "differs",
            "matched": statuses.count("ok"),
            "mismatched": statuses.count("mismatch"),
            "unmatched_target": statuses.count("unmatched"),
            "unmatched_source": 0,
            "by_transform": {"fold_batchnorm": statuses.count("ok") + statuses.count("mismatch")},
            "max_rel_err": 0.02,
            "text": f"{count} Conv layers: Conv/Linear + BatchNorm folded. The export differs.",
            "coverage": {
                "explained": {"elements": elements, "bytes": 4 * elements},
                "constant": {"elements": 0, "bytes": 0},
                "unexplained": {"elements": 0, "bytes": 0},
                "by_op": {},
            },
        },
        "layers": layers,
        "unmatched_source": [],
        "constants": [],
        "findings": findings,
    }


def old_table_module(commit: str):
    """The table reporter of ``commit``, loaded from git under another name (its
    _wording from the same commit), or None when git does not have it."""
    try:
        table = subprocess.run(
            ["git", "show", f"{commit}:plugins/reports/table.py"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        wording = subprocess.run(
            ["git", "show", f"{commit}:plugins/reports/_wording.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = Path(tempfile.mkdtemp(prefix="old_reporters_"))
    (folder / "old_wording.py").write_text(wording)
    (folder / "old_table.py").write_text(table.replace("plugins.reports._wording", "old_wording"))
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("old_table", folder / "old_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_of(repeat: int, render, document: dict, options: dict) -> float:
    times = []
    for _ in range(repeat):
        stream = io.StringIO()
        start = time.perf_counter()
        render(document, stream, options)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), len(stream.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", default=BEFORE, help="the commit whose table reporter is 'before'")
    args = parser.parse_args()

    from plugins.reports import html, json, markdown, table

    document = synthetic_document(args.layers)
    plain = {"color": False, "width": 160, "height": 50}
    runs = [
        ("json (baseline)", json.render, {}),
        ("table, default (collapsed)", table.render, plain),
        ("table, --all", table.render, {**plain, "all": True}),
        ("table, -o file", table.render, {**plain, "to_file": True}),
        ("table, --all, colour", table.render, {**plain, "all": True, "color": True}),
        ("markdown", markdown.render, {}),
        ("html", html.render, {}),
    ]
    old = old_table_module(args.before)
    if old is not None:
        runs.append((f"table before ({args.before}, rich Table)", old.render, plain))
    print(f"{args.layers} layers ({2 * args.layers} parameter rows), best and median of {args.repeat}")
    baseline = None
    for name, render, options in runs:
        repeat = 1 if "before" in name else args.repeat
        best, median, size = best_of(repeat, render, document, options)
        baseline = baseline or best
        print(
            f"  {name:42s} {best:8.3f} s (median {median:.3f})  {1e3 * best / args.layers:7.3f} ms/layer  "
            f"{best / baseline:7.1f}x json  {size / 1e6:6.2f} MB"
        )
    if old is None:
        print(f"  (no 'before': git has no {args.before})")


if __name__ == "__main__":
    main()

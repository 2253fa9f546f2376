"""Run ``graphinspect diff`` as a user would, and say what it answered in a few lines.

Only the command line and its JSON document (``graphinspect/diff@1``) are used: the
product's modules are being moved around, and the zoo checks what users see.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DiffRun:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    seconds: float
    document: dict | None

    @property
    def command(self) -> str:
        return " ".join(["python", "-m", "inspector", *self.args])


def run_diff(source: Path, target: Path, record: str | None = None) -> DiffRun:
    """``python -m inspector diff SOURCE TARGET --format json`` in a fresh process, with
    third-party plugin autoloading off. ``record``: a name under which the run is written
    to ``$GRAPHINSPECT_ZOO_RECORD`` (a folder) when that is set."""
    args = ["diff", str(source), str(target), "--format", "json"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("GRAPHINSPECT_")}
    env.update({"GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD": "1", "NO_COLOR": "1", "COLUMNS": "200"})
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "inspector", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=900
    )
    seconds = time.perf_counter() - started
    document = None
    if completed.stdout.strip():
        try:
            document = json.loads(completed.stdout)
        except json.JSONDecodeError:
            document = None
    run = DiffRun(args, completed.returncode, completed.stdout, completed.stderr, seconds, document)
    folder = os.environ.get("GRAPHINSPECT_ZOO_RECORD")
    if folder and record:
        path = Path(folder) / (re.sub(r"[^A-Za-z0-9_.-]+", "__", record) + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "id": record,
                    "command": run.command,
                    "code": run.code,
                    "stderr": run.stderr[-4000:],
                    "seconds": round(seconds, 2),
                    "document": document,
                },
                indent=1,
            )
        )
    return run


def _range(values) -> str:
    return "-" if values is None else f"[{values[0]:.4g}, {values[1]:.4g}]"


def describe(run: DiffRun, limit: int = 25) -> str:
    """The answer in lines fit for an assertion message: the exit code and verdict, every
    layer that is not ok (op, sources, transform, note or reasons, the params that failed),
    findings of severity error or warning, and stderr when there is no document."""
    lines = [f"$ {run.command}", f"exit {run.code} after {run.seconds:.1f}s"]
    document = run.document
    if document is None:
        lines.append("no JSON document on stdout; stderr:")
        lines += ["  " + line for line in run.stderr.strip().splitlines()[-15:]]
        return "\n".join(lines)
    summary = document.get("summary", {})
    counts = {k: summary.get(k) for k in ("matched", "mismatched", "unmatched_target", "unmatched_source")}
    lines.append(
        f"verdict {summary.get('verdict')!r} {counts} by_transform {summary.get('by_transform')} "
        f"coverage "
        f"{json.dumps(summary.get('coverage', {}).get('unexplained')) if summary.get('coverage') else 'missing'}"
    )
    bad = [layer for layer in document.get("layers", []) if layer.get("status") != "ok"]
    for layer in bad[:limit]:
        why = layer.get("reasons") or layer.get("note") or ""
        lines.append(
            f"  {layer.get('status')} {layer.get('op')} {layer.get('target')} <- "
            f"{'+'.join(layer.get('sources') or []) or '?'}"
            f" via {layer.get('transform')} [{layer.get('matched_by')}] {why!s:.300}"
        )
        for param in layer.get("params", []):
            if param.get("status") != "ok":
                lines.append(
                    f"      {param.get('status')} {param.get('name')} {param.get('target_tensor')} "
                    f"rel {param.get('max_rel_err')} ch "
                    f"{param.get('bad_channels')[:5] if param.get('bad_channels') else []}"
                    f" src {_range(param.get('source_range'))} tgt {_range(param.get('target_range'))}"
                )
    if len(bad) > limit:
        lines.append(f"  ... {len(bad) - limit} more layers not ok")
    findings = [f for f in document.get("findings", []) if f.get("severity") in ("error", "warning")]
    for finding in findings[:10]:
        lines.append(f"  finding {finding.get('severity')} {finding.get('code')}: {str(finding.get('message'))[:300]}")
    if len(findings) > 10:
        lines.append(f"  ... {len(findings) - 10} more findings")
    unmatched = document.get("unmatched_source") or []
    if unmatched:
        lines.append(
            f"  unmatched source ({len(unmatched)}): {', '.join(unmatched[:8])}{' ...' if len(unmatched) > 8 else ''}"
        )
    if run.stderr.strip():
        lines.append("stderr: " + run.stderr.strip().splitlines()[-1][:300])
    return "\n".join(lines)


def tampered_names(tensor: str) -> re.Pattern:
    """A pattern for the tampered initializer as a report names it: itself or a view of
    it, ``name[0:64]`` (the tampered-twin criterion of test_zoo.py)."""
    return re.compile(re.escape(tensor) + r"(\[.*\])?$")

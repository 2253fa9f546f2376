"""What the tests share: paths, running the command line as a user would, golden files.

Imported as ``tests.support`` (pytest runs with ``--import-mode=importlib`` and the
repository root on ``sys.path``); fixtures live in ``tests/conftest.py``.

Two helper modules beside it: :mod:`tests.support.layers` builds tiny numpy-only models
(``param``, ``layer``, ``model``) and runs the matcher on them, for the fast tests of the
core and of each transform; :mod:`tests.support.exports` exports real torch models with
both exporters, for the slower end-to-end tests.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
GOLDEN = REPO / "tests" / "golden"
FAKE_SITE = REPO / "tests" / "core" / "data" / "site"
UPDATE_GOLDEN = os.environ.get("GRAPHINSPECT_UPDATE_GOLDEN") == "1"
"""``GRAPHINSPECT_UPDATE_GOLDEN=1 python -m pytest`` rewrites the golden files."""


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m inspector ARGS`` in a fresh process; third-party autoload off by default."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("GRAPHINSPECT_")}
    full_env.setdefault("GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD", "1")
    full_env["NO_COLOR"] = "1"
    full_env["COLUMNS"] = "200"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "inspector", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or REPO,
        timeout=300,
    )


def check_golden(name: str, text: str) -> None:
    """Compare ``text`` with tests/golden/NAME, byte for byte; rewrite it when updating."""
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        GOLDEN.mkdir(exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; create it with GRAPHINSPECT_UPDATE_GOLDEN=1", pytrace=False)
    with open(path, encoding="utf-8", newline="") as stream:
        expected = stream.read()
    if text != expected:
        delta = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True), text.splitlines(keepends=True), f"golden/{name}", "actual"
            )
        )
        pytest.fail(
            f"{name} differs from its golden file (GRAPHINSPECT_UPDATE_GOLDEN=1 rewrites it):\n{delta}", pytrace=False
        )

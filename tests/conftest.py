"""Shared test helpers: run the command line as a user would, in-process or as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
FAKE_SITE = Path(__file__).resolve().parent / "plugins" / "data" / "site"

if str(REPO) not in sys.path:
    # samples.lookalikes holds the look-alike architectures the tests build.
    sys.path.insert(0, str(REPO))


ZOO = Path(__file__).resolve().parent / "zoo"


def pytest_ignore_collect(collection_path, config):
    """Leave the conformance zoo (tests/zoo, its own venv: .ci/zoo) out of the main suite
    unless it is asked for by path (``python -m pytest tests/zoo``) or GRAPHINSPECT_ZOO=1."""
    if Path(collection_path) != ZOO or os.environ.get("GRAPHINSPECT_ZOO") == "1":
        return None
    invocation = Path(config.invocation_params.dir)
    for arg in config.args:
        asked = (invocation / str(arg).split("::")[0]).resolve()
        if asked == ZOO or ZOO in asked.parents:
            return None
    return True


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


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the command line in-process: ``code, out, err = cli("inspect", path)``."""
    monkeypatch.setenv("GRAPHINSPECT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")

    from inspector.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's --help/--version/usage errors
            code = exc.code if isinstance(exc.code, int) else 2
        out, err = capsys.readouterr()
        return code, out, err

    return invoke

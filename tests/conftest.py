"""Fixtures shared by every test module (helpers are in :mod:`tests.support`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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

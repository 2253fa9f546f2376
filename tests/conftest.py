"""Fixtures shared by every test module (helpers are in :mod:`tests.support`)."""

from __future__ import annotations

import pytest


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

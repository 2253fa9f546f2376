"""graphinspect's pytest plugin: the fixture ``export_faithful``.

Installed with graphinspect (entry point ``pytest11``), so every pytest session of a
project that has graphinspect installed can use it without importing anything::

    def test_export(export_faithful, tmp_path):
        ...
        export_faithful(model, tmp_path / "model.onnx")

The fixture is :func:`inspector.testing.assert_export_faithful` with the tolerances of
the pytest configuration as defaults (``graphinspect_rtol`` and ``graphinspect_atol``
in ``pytest.ini`` or ``[tool.pytest.ini_options]``; unset: the per-dtype defaults);
keyword arguments given in a call win. ``pytest -p no:graphinspect`` turns it off; without
the entry point (a checkout not installed), ``-p inspector.pytest_plugin`` loads it.

This module imports graphinspect's API only when the fixture is used, so a pytest
session that does not use it pays nothing.
"""

from __future__ import annotations

import functools

import pytest

TOLERANCES = ("rtol", "atol")


def pytest_addoption(parser: pytest.Parser) -> None:
    for name in TOLERANCES:
        parser.addini(
            f"graphinspect_{name}",
            f"default {name} of the export_faithful fixture (graphinspect; empty: per-dtype default)",
            default="",
        )


@pytest.fixture
def export_faithful(pytestconfig: pytest.Config):
    """``export_faithful(pt_path_or_module, onnx_path, rtol=..., atol=...)``: fail the test
    with graphinspect's problems table unless the ONNX file is a faithful export."""
    from inspector.testing import assert_export_faithful

    defaults = {}
    for name in TOLERANCES:
        value = str(pytestconfig.getini(f"graphinspect_{name}") or "").strip()
        if value:
            try:
                defaults[name] = float(value)
            except ValueError:
                raise pytest.UsageError(f"graphinspect_{name} = {value!r} is not a number") from None
    return functools.partial(assert_export_faithful, **defaults)

"""Checks: findings about a finished diff (errors, warnings, information).

Each module implements ``graphinspect_checks`` and returns
:class:`~inspector.records.Check` records whose ``run(result)`` yields
:class:`~inspector.records.Finding`. A new check goes into :mod:`.findings` or a new
module here, listed below.
"""

PLUGINS = ("plugins.checks.findings",)

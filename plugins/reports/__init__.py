"""Reporters: render a versioned document (``graphinspect/diff@1``, ...) in one format.

One module per format (``table``, ``json``, ``markdown``, ``html``, and for CI and
graph viewers ``junit``, ``sarif``, ``github``, ``model-explorer``); each implements
``graphinspect_reporters`` and returns :class:`~inspector.records.Reporter` records.
Wording shared by several formats is the private :mod:`._wording` (the CI
formats share :mod:`._problems`). A reporter renders
only what the document holds. A new format is a new module here, listed below; a
command's own table lives with the command.
"""

PLUGINS = (
    "plugins.reports.json",
    "plugins.reports.table",
    "plugins.reports.markdown",
    "plugins.reports.html",
    "plugins.reports.verify_html",
    "plugins.reports.junit",
    "plugins.reports.sarif",
    "plugins.reports.github",
    "plugins.reports.model_explorer",
)

"""load -> match -> explain -> :class:`DiffResult` (pure data, no formatting).

:func:`diff_models` matches every parameter-carrying target (ONNX) layer to the source
(PyTorch) layers it came from and re-computes it (:mod:`inspector.match`), then runs the
check plugins for findings. :mod:`inspector.report` turns the result into the versioned
JSON document every reporter renders. The result types are in :mod:`inspector.results`.

Verdict: "differs" when any target layer's parameters were not re-computed within
tolerance ("mismatch"); else "incomplete" when a target layer could not be traced to
the source at all ("unmatched"); else "faithful". PyTorch layers the export does not use
are listed and reported as findings but do not change the verdict: models carry
training-only modules (auxiliary heads, denoising embeddings) that no export needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector.ir import Model
from inspector.match import Matcher
from inspector.records import Finding
from inspector.results import DiffResult

if TYPE_CHECKING:
    from inspector.manager import Plugins


def diff_models(
    plugins: "Plugins",
    source: Model,
    target: Model,
    rtol: float | None = None,
    atol: float | None = None,
) -> DiffResult:
    """Match and explain ``target`` (usually ONNX) against ``source`` (usually PyTorch).

    ``rtol``/``atol`` override the per-dtype defaults of :func:`inspector.compare.default_tolerance`.
    """
    matcher = Matcher(plugins.transforms(), source, target, rtol=rtol, atol=atol)
    result = matcher.run()
    for check in plugins.checks():
        try:
            result.findings.extend(check.run(result))
        except Exception as exc:  # noqa: BLE001 - one broken check must not end the diff
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            result.findings.append(
                Finding("warning", "check_error", f"the check {check.name!r} raised {error}; its findings are missing")
            )
    return result

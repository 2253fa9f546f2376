"""The problems of a diff or verify document, in one wording for the CI reporters.

Not a plugin: the ``junit``, ``sarif``, ``github`` and ``model-explorer`` reporters import
it. Everything here reads a document (``graphinspect/diff@1``, see
:mod:`inspector.report`; ``graphinspect/verify@2``, see :mod:`plugins.commands.verify`)
and computes nothing it does not hold.

A problem is what makes the verdict other than "faithful" (diff) or "same" (verify):

- diff: a mismatched layer (its sentence is :func:`inspector.report.describe_mismatch`,
  the one every report uses), an unmatched layer (the reason its ``unmatched_target``
  finding gives), stored floats nothing explains (``summary.coverage``), and the error
  and warning findings that concern no layer already named;
- verify: an output that differs, a layer whose activation differs, and the error and
  warning lint;
- either: a verdict other than the good one that none of the above explains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from inspector.output import fmt_count
from inspector.report import describe_mismatch
from plugins.commands.verify.words import weights_words

DIFF_SCHEMA = "graphinspect/diff@1"
VERIFY_SCHEMA = "graphinspect/verify@2"
SCHEMAS = (DIFF_SCHEMA, VERIFY_SCHEMA)
"""The documents the CI reporters render."""

MISMATCH = "mismatch"
UNMATCHED = "unmatched"
UNEXPLAINED = "unexplained"
OUTPUT_DIFFERS = "output_differs"
LAYER_DIFFERS = "layer_differs"
VERDICT = "verdict"

RULES = {
    MISMATCH: "An ONNX layer's parameters differ from the PyTorch parameters re-computed through its transform.",
    UNMATCHED: "An ONNX layer with parameters could not be traced to the PyTorch model.",
    UNEXPLAINED: "Floats stored in the ONNX file that no transform explains and no rule shows to be constants.",
    OUTPUT_DIFFERS: "An ONNX output differs from the PyTorch output beyond tolerance.",
    LAYER_DIFFERS: "A layer's ONNX activation differs from the PyTorch activation beyond tolerance.",
    VERDICT: "The verdict is not the good one (faithful, same), and no layer or output says why.",
}
"""What each problem kind of ours means (findings and lint bring their own codes)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong: ``kind`` (a key of :data:`RULES`, or a finding's or lint's code),
    ``level`` ("error" or "warning"), the ONNX node it concerns (``layer``, None for the
    model as a whole), a short ``title`` and the ``message`` in words."""

    kind: str
    level: str
    layer: str | None
    title: str
    message: str


def problems(document: dict[str, Any]) -> list[Problem]:
    """The problems of a diff or verify document, in document order; a verdict other
    than the good one with no error to show for it is a problem of its own."""
    found = _verify_problems(document) if document["schema"] == VERIFY_SCHEMA else _diff_problems(document)
    if not passed(document) and not any(problem.level == "error" for problem in found):
        found.append(verdict_problem(document))
    return found


def verdict_problem(document: dict[str, Any]) -> Problem:
    """The verdict as a problem, for a verdict no layer or output explains (a word a newer
    command may add, such as verify's "incomplete")."""
    word = verdict(document)
    return Problem(VERDICT, "error", None, f"verdict {word}", f"the verdict is {word!r}, not the good one")


def unmatched_sentence(layer: dict[str, Any], findings: list[dict[str, Any]]) -> str:
    """Why an unmatched layer is unmatched: its ``unmatched_target`` finding (which names
    the closest candidate), else the plain fact."""
    for finding in findings:
        if finding.get("code") == "unmatched_target" and finding.get("layer") == layer["target"]:
            return finding["message"]
    return f"{layer['op']} {layer['target']} is not traced to the PyTorch model"


def _diff_problems(document: dict[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    findings = document.get("findings", [])
    named: set[str] = set()
    for layer in document["layers"]:
        if layer["status"] == MISMATCH:
            found.append(
                Problem(MISMATCH, "error", layer["target"], f"{layer['op']} differs", describe_mismatch(layer))
            )
        elif layer["status"] == UNMATCHED:
            found.append(
                Problem(
                    UNMATCHED,
                    "error",
                    layer["target"],
                    f"{layer['op']} not traced",
                    unmatched_sentence(layer, findings),
                )
            )
        else:
            continue
        named.add(layer["target"])
    unexplained = unexplained_problem(document)
    if unexplained is not None:
        found.append(unexplained)
    for finding in findings:
        if finding["severity"] not in ("error", "warning"):
            continue
        if finding.get("layer") in named and finding["code"] in ("mismatch", "unmatched_target"):
            continue  # said above, with the layer
        found.append(
            Problem(finding["code"], finding["severity"], finding.get("layer"), finding["code"], finding["message"])
        )
    return found


def unexplained_problem(document: dict[str, Any]) -> Problem | None:
    """The floats of a diff document nothing explains (``summary.coverage``), if any."""
    unexplained = document["summary"].get("coverage", {}).get("unexplained", {}).get("elements", 0)
    if not unexplained:
        return None
    return Problem(
        UNEXPLAINED,
        "error",
        None,
        "floats not explained",
        f"{fmt_count(unexplained)} floats stored in the ONNX file are neither re-computed from a PyTorch "
        "parameter nor shown to be constants",
    )


def _verify_problems(document: dict[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    for output in document["outputs"]:
        if output["status"] == "same":
            continue
        found.append(
            Problem(OUTPUT_DIFFERS, "error", None, f"output {output['name']} differs", output_sentence(output))
        )
    for layer in document.get("layers") or []:
        if layer["status"] != "differs":
            continue
        found.append(Problem(LAYER_DIFFERS, "error", layer["target"], f"{layer['op']} differs", layer_sentence(layer)))
    for lint in document["lint"]:
        if lint["severity"] in ("error", "warning"):
            found.append(Problem(lint["code"], lint["severity"], None, lint["code"], lint["message"]))
    return found


def output_sentence(output: dict[str, Any]) -> str:
    """A verify output in words."""
    if output["max_abs_err"] is None:
        return f"ONNX output {output['name']} could not be compared with a PyTorch output"
    return (
        f"ONNX output {output['name']} differs from the PyTorch output by up to {_number(output['max_abs_err'])} "
        f"({_percent(output['max_rel_err'])} of its scale)"
    )


def layer_sentence(layer: dict[str, Any]) -> str:
    """A verify layer comparison in words (the activation, not the weights)."""
    sources = " + ".join(layer["sources"]) or "?"
    weights = weights_words(layer["diff_status"])
    return (
        f"{layer['target']} ({layer['op']}, from {sources} via {layer['transform']}): the activation differs by up "
        f"to {_number(layer['max_abs_err'])} ({_percent(layer['max_rel_err'])} of its scale); {weights}"
    )


def onnx_path(document: dict[str, Any]) -> str:
    """The ONNX file a problem is located in, relative to the working directory when it is
    inside it (CI tools want repository-relative paths), with forward slashes."""
    path = document["target"]["path"]
    if os.path.isabs(path):
        relative = os.path.relpath(path)
        if not relative.startswith(".."):
            path = relative
    return path.replace(os.sep, "/")


def verdict(document: dict[str, Any]) -> str:
    """The document's verdict word (diff: in the summary; verify: at the top)."""
    return document["verdict"] if document["schema"] == VERIFY_SCHEMA else document["summary"]["verdict"]


def passed(document: dict[str, Any]) -> bool:
    """Whether the verdict is the good one (diff "faithful", verify "same")."""
    return verdict(document) in ("faithful", "same")


def _number(value: float | None) -> str:
    return "an unknown amount" if value is None else f"{value:.3g}"


def _percent(value: float | None) -> str:
    return "an unknown part" if value is None else f"{value:.2%}"

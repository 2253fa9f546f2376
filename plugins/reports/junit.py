"""The ``junit`` reporter: a diff or verify document as JUnit XML, for CI test views.

``graphinspect diff A.pt B.onnx --format junit -o graphinspect.xml`` writes what Jenkins'
JUnit plugin, GitLab, Azure Pipelines and the GitHub test-report actions read::

    <testsuites name="graphinspect" tests= failures= errors="0" skipped= time="0">
      <testsuite name="graphinspect diff A.pt B.onnx" tests= failures= errors="0" skipped= time="0">
        <properties><property name="verdict" value="differs"/> ...</properties>
        <testcase classname="graphinspect.diff.B" name="<ONNX node>" time="0">
          <failure type="mismatch" message="<the mismatch sentence>">details</failure>
        </testcase>
        ...
        <system-out>the summary in words, the findings</system-out>
      </testsuite>
    </testsuites>

diff: one test case per ONNX layer of the document (all parameter-carrying layers, or
those ``--only-problems``/``--layer`` kept), failing for a mismatched layer (the sentence
every report uses, then one line per parameter) and an unmatched one (why); plus one
``coverage`` case that fails when floats stored in the file are unexplained, so that the
suite passes exactly when the verdict is "faithful". verify: one case per output and, with
``--per-layer``, one per layer (``not_comparable`` layers are skipped, with the reason).
A verdict other than the good one that no case explains adds a failing ``verdict`` case.

``classname`` is ``graphinspect.<command>.<ONNX file stem>`` (dots in the stem become
``_``: Jenkins reads dots as packages); characters XML 1.0 cannot carry are replaced by
U+FFFD.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from pathlib import PurePath
from typing import Any

from inspector.hookspecs import hookimpl
from inspector.output import fmt_float
from inspector.records import Reporter
from inspector.report import describe_mismatch
from plugins.reports._problems import (
    SCHEMAS,
    VERIFY_SCHEMA,
    layer_sentence,
    output_sentence,
    passed,
    unexplained_problem,
    unmatched_sentence,
    verdict,
    verdict_problem,
)

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
COVERAGE_CASE = "coverage: every stored float explained"


def render(document: dict[str, Any], stream, options: dict[str, Any]) -> None:
    """Write the document as one JUnit XML file (see the module docstring)."""
    command = "verify" if document["schema"] == VERIFY_SCHEMA else "diff"
    classname = f"graphinspect.{command}.{_stem(document['target']['path'])}"
    cases = _verify_cases(document, classname) if command == "verify" else _diff_cases(document, classname)
    if not passed(document) and not any(case.find("failure") is not None for case in cases):
        # A verdict no case explains (a word the command may add): the suite must fail.
        case = _case(classname, "verdict")
        problem = verdict_problem(document)
        _fail(case, problem.kind, problem.message, problem.message)
        cases.append(case)

    suites = ElementTree.Element("testsuites", name="graphinspect")
    suite = ElementTree.SubElement(
        suites,
        "testsuite",
        name=_xml(f"graphinspect {command} {document['source']['path']} {document['target']['path']}"),
    )
    properties = ElementTree.SubElement(suite, "properties")
    for name, value in (
        ("verdict", verdict(document)),
        ("source", document["source"]["path"]),
        ("target", document["target"]["path"]),
        ("schema", document["schema"]),
        ("graphinspect", document["tool"]["version"]),
    ):
        ElementTree.SubElement(properties, "property", name=name, value=_xml(str(value)))
    suite.extend(cases)
    out = ElementTree.SubElement(suite, "system-out")
    out.text = _xml(_system_out(document))

    counts = {
        "tests": str(len(cases)),
        "failures": str(sum(1 for case in cases if case.find("failure") is not None)),
        "errors": "0",
        "skipped": str(sum(1 for case in cases if case.find("skipped") is not None)),
        "time": "0",
    }
    for element in (suites, suite):
        for key, value in counts.items():
            element.set(key, value)
    ElementTree.indent(suites, space="  ")
    stream.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    stream.write(ElementTree.tostring(suites, encoding="unicode"))
    stream.write("\n")


def _diff_cases(document: dict[str, Any], classname: str) -> list[ElementTree.Element]:
    cases = []
    findings = document.get("findings", [])
    for layer in document["layers"]:
        case = _case(classname, layer["target"])
        if layer["status"] == "mismatch":
            sentence = describe_mismatch(layer)
            _fail(case, "mismatch", sentence, "\n".join([sentence, *_param_lines(layer)]))
        elif layer["status"] == "unmatched":
            sentence = unmatched_sentence(layer, findings)
            _fail(case, "unmatched", sentence, sentence)
        cases.append(case)
    coverage = document["summary"].get("coverage")
    if coverage is not None:
        case = _case(classname, COVERAGE_CASE)
        unexplained = unexplained_problem(document)
        if unexplained is not None:
            _fail(case, "unexplained", unexplained.message, unexplained.message)
        cases.append(case)
    return cases


def _verify_cases(document: dict[str, Any], classname: str) -> list[ElementTree.Element]:
    cases = []
    for output in document["outputs"]:
        case = _case(f"{classname}.outputs", output["name"])
        if output["status"] != "same":
            sentence = output_sentence(output)
            _fail(case, "output_differs", sentence, sentence)
        cases.append(case)
    for layer in document.get("layers") or []:
        case = _case(f"{classname}.layers", layer["target"])
        if layer["status"] == "differs":
            sentence = layer_sentence(layer)
            _fail(case, "layer_differs", sentence, sentence)
        elif layer["status"] == "not_comparable":
            ElementTree.SubElement(case, "skipped", message=_xml(layer["reason"] or "not comparable"))
        cases.append(case)
    return cases


def _case(classname: str, name: str) -> ElementTree.Element:
    return ElementTree.Element("testcase", classname=_xml(classname), name=_xml(name), time="0")


def _fail(case: ElementTree.Element, kind: str, message: str, details: str) -> None:
    failure = ElementTree.SubElement(case, "failure", type=kind, message=_xml(message))
    failure.text = _xml(details)


def _param_lines(layer: dict[str, Any]) -> list[str]:
    lines = []
    for param in layer["params"]:
        channels = ""
        if param.get("bad_channel_count"):
            shown = ", ".join(str(channel) for channel in param["bad_channels"])
            more = param["bad_channel_count"] - len(param["bad_channels"])
            channels = f", output channels {shown}" + (f" and {more} more" if more > 0 else "")
        lines.append(
            f"{param['name']} ({param['target_tensor']}): {param['status']}, max abs err "
            f"{fmt_float(param['max_abs_err'])}, max rel err {fmt_float(param['max_rel_err'])}{channels}"
        )
    return lines


def _system_out(document: dict[str, Any]) -> str:
    if document["schema"] == VERIFY_SCHEMA:
        lines = [f"verdict: {document['verdict']}"]
        lines += [f"{lint['severity']} [{lint['code']}] {lint['message']}" for lint in document["lint"]]
        return "\n".join(lines)
    lines = [document["summary"]["text"]]
    lines += [
        f"{finding['severity']} [{finding['code']}] {finding['message']}" for finding in document.get("findings", [])
    ]
    return "\n".join(lines)


def _stem(path: str) -> str:
    stem = PurePath(path.replace("\\", "/")).stem or "model"
    return stem.replace(".", "_")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


@hookimpl
def graphinspect_reporters():
    yield Reporter(
        "junit",
        "JUnit XML: one test case per ONNX layer (verify: per output and layer), for CI test views.",
        SCHEMAS,
        render,
        suffixes=(".xml",),
    )

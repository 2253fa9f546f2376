"""The CI reporters (junit, sarif, github) on real documents, parsed back as CI tools do.

The documents are real runs on the samples: a faithful diff, a diff of an export with one
output channel tampered (differs), a diff against an unrelated export (incomplete: every
layer unmatched), and verify --per-layer on the tampered export. Each format is parsed
the way its consumer reads it (XML for JUnit, JSON checked against SARIF 2.1.0's required
properties and GitHub code scanning's rules, workflow commands for GitHub) and compared
with what the document says, re-derived here.
"""

from __future__ import annotations

import copy
import io
import json
import re
import xml.etree.ElementTree as ElementTree

import jsonschema
import pytest

from inspector.manager import get_plugin_manager
from inspector.report import describe_mismatch
from tests.support import REPO, SAMPLES
from tests.support.runs import (
    STEM_FACTORY,
    STEM_ONNX,
    STEM_PT,
    STEM_STATE_DICT,
    TAMPERED_CHANNEL,
    TAMPERED_NODE,
    run_all,
    tamper,
)


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("ci")
    tampered = tamper(folder / "tampered.onnx")
    runs = {
        "faithful": ("diff", str(STEM_PT), str(STEM_ONNX)),
        "tampered": ("diff", str(STEM_PT), str(tampered)),
        "unrelated": ("diff", str(SAMPLES / "resnet_block.pt"), str(STEM_ONNX)),
        "verify": ("verify", str(STEM_STATE_DICT), str(tampered), "--model", STEM_FACTORY, "--per-layer"),
    }
    return {name: document for name, (_, document) in run_all(folder, runs).items()}


def render(fmt: str, document: dict) -> str:
    plugins = get_plugin_manager(autoload=False)
    stream = io.StringIO()
    plugins.reporter(fmt, document["schema"]).render(document, stream, {"color": False, "to_file": True})
    return stream.getvalue()


def problem_layers(document: dict) -> list[dict]:
    return [layer for layer in document["layers"] if layer["status"] != "ok"]


# =============================================================================== junit

# What Jenkins' JUnit plugin and GitHub's test-report actions read (the surefire/Jenkins
# JUnit XSD): element -> (required attributes, allowed children).
JUNIT_STRUCTURE = {
    "testsuites": ({"tests", "failures", "errors"}, {"testsuite"}),
    "testsuite": ({"name", "tests", "failures", "errors", "skipped"}, {"properties", "testcase", "system-out"}),
    "properties": (set(), {"property"}),
    "property": ({"name", "value"}, set()),
    "testcase": ({"name", "classname"}, {"failure", "skipped"}),
    "failure": ({"message", "type"}, set()),
    "skipped": (set(), set()),
    "system-out": (set(), set()),
}


def parse_junit(text: str) -> ElementTree.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ElementTree.fromstring(text.encode("utf-8"))
    for element in root.iter():
        required, children = JUNIT_STRUCTURE[element.tag]
        assert required <= set(element.attrib), (element.tag, element.attrib)
        assert {child.tag for child in element} <= children, element.tag
    for suite in [root, *root.iter("testsuite")]:
        cases = list(suite.iter("testcase"))
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for case in cases if case.find("failure") is not None)
        assert int(suite.get("errors")) == 0
        if suite.get("skipped") is not None:
            assert int(suite.get("skipped")) == sum(1 for case in cases if case.find("skipped") is not None)
    return root


def test_junit_one_case_per_layer_and_the_mismatch_sentence(documents):
    document = documents["tampered"]
    root = parse_junit(render("junit", document))
    cases = list(root.iter("testcase"))
    assert [case.get("name") for case in cases] == [layer["target"] for layer in document["layers"]] + [
        "coverage: every stored float explained"
    ]
    assert {case.get("classname") for case in cases} == {"graphinspect.diff.tampered"}
    failed = [case for case in cases if case.find("failure") is not None]
    assert [case.get("name") for case in failed] == [TAMPERED_NODE]
    failure = failed[0].find("failure")
    layer = next(layer for layer in document["layers"] if layer["target"] == TAMPERED_NODE)
    assert failure.get("type") == "mismatch"
    assert failure.get("message") == describe_mismatch(layer)
    assert f"in output channel {TAMPERED_CHANNEL}" in failure.get("message")
    assert failure.text.splitlines()[1].startswith("weight (") and "mismatch" in failure.text.splitlines()[1]
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert properties["verdict"] == "differs" and properties["schema"] == "graphinspect/diff@1"


def test_junit_faithful_passes_and_unmatched_layers_fail_with_their_reason(documents):
    faithful = parse_junit(render("junit", documents["faithful"]))
    assert faithful.get("failures") == "0" and int(faithful.get("tests")) == len(documents["faithful"]["layers"]) + 1

    document = documents["unrelated"]
    root = parse_junit(render("junit", document))
    reasons = {f["layer"]: f["message"] for f in document["findings"] if f["code"] == "unmatched_target"}
    failures = {
        case.get("name"): case.find("failure") for case in root.iter("testcase") if case.find("failure") is not None
    }
    unmatched = [layer["target"] for layer in document["layers"] if layer["status"] == "unmatched"]
    assert unmatched and set(unmatched) <= set(failures)
    for name in unmatched:
        assert failures[name].get("type") == "unmatched"
        assert failures[name].get("message") == reasons[name]


def test_junit_verify_cases_per_output_and_layer(documents):
    document = documents["verify"]
    root = parse_junit(render("junit", document))
    cases = list(root.iter("testcase"))
    outputs = [case for case in cases if case.get("classname").endswith(".outputs")]
    layers = [case for case in cases if case.get("classname").endswith(".layers")]
    assert [case.get("name") for case in outputs] == [output["name"] for output in document["outputs"]]
    assert [case.get("name") for case in layers] == [layer["target"] for layer in document["layers"]]
    differing = {layer["target"] for layer in document["layers"] if layer["status"] == "differs"}
    assert TAMPERED_NODE in differing
    assert {case.get("name") for case in layers if case.find("failure") is not None} == differing
    assert root.get("failures") == str(len(differing) + sum(o["status"] != "same" for o in document["outputs"]))


def test_junit_survives_names_xml_cannot_carry(documents):
    document = copy.deepcopy(documents["tampered"])
    odd = "/model/\x01odd<&>\"'\U0001f600/Conv"
    for layer in document["layers"]:
        if layer["target"] == TAMPERED_NODE:
            layer["target"] = odd
    root = parse_junit(render("junit", document))
    names = [case.get("name") for case in root.iter("testcase")]
    assert "/model/\ufffdodd<&>\"'\U0001f600/Conv" in names


# =============================================================================== sarif

# SARIF 2.1.0's required properties and enumerations (OASIS sarif-schema-2.1.0.json) for
# the objects graphinspect writes.
SARIF_REQUIRED = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {"type": "array", "items": {"$ref": "#/$defs/run"}},
    },
    "$defs": {
        "message": {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}]},
        "run": {
            "type": "object",
            "required": ["tool"],
            "properties": {
                "tool": {
                    "type": "object",
                    "required": ["driver"],
                    "properties": {"driver": {"$ref": "#/$defs/toolComponent"}},
                },
                "results": {"type": "array", "items": {"$ref": "#/$defs/result"}},
                "artifacts": {"type": "array", "items": {"type": "object"}},
                "automationDetails": {"type": "object", "properties": {"id": {"type": "string"}}},
            },
        },
        "toolComponent": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "rules": {"type": "array", "items": {"$ref": "#/$defs/reportingDescriptor"}},
            },
        },
        "reportingDescriptor": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "string"},
                "shortDescription": {"$ref": "#/$defs/message"},
                "fullDescription": {"$ref": "#/$defs/message"},
                "defaultConfiguration": {
                    "type": "object",
                    "properties": {"level": {"enum": ["none", "note", "warning", "error"]}},
                },
            },
        },
        "result": {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": {"$ref": "#/$defs/message"},
                "ruleId": {"type": "string"},
                "ruleIndex": {"type": "integer", "minimum": -1},
                "level": {"enum": ["none", "note", "warning", "error"]},
                "locations": {"type": "array", "items": {"$ref": "#/$defs/location"}},
                "partialFingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "location": {
            "type": "object",
            "properties": {
                "physicalLocation": {
                    "type": "object",
                    "anyOf": [{"required": ["address"]}, {"required": ["artifactLocation"]}],
                    "properties": {
                        "artifactLocation": {"type": "object", "properties": {"uri": {"type": "string"}}},
                        "region": {"type": "object", "properties": {"startLine": {"type": "integer", "minimum": 1}}},
                    },
                },
                "logicalLocations": {"type": "array", "items": {"type": "object"}},
            },
        },
    },
}


def check_sarif(text: str) -> dict:
    log = json.loads(text)
    jsonschema.validate(log, SARIF_REQUIRED)
    # GitHub code scanning: one run here, and every result located in a file on a line,
    # with a rule the driver describes.
    (run_,) = log["runs"]
    rules = run_["tool"]["driver"]["rules"]
    for result in run_["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert 1 <= len(result["locations"]) <= 10
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uri"] and physical["region"]["startLine"] >= 1
        assert result["partialFingerprints"]
    return log


def test_sarif_results_for_the_problems_located_in_the_onnx_file(documents):
    document = documents["tampered"]
    log = check_sarif(render("sarif", document))
    (run_,) = log["runs"]
    assert run_["automationDetails"]["id"] == "graphinspect/diff/"
    (result,) = run_["results"]  # the mismatch; its error finding is the same problem
    layer = problem_layers(document)[0]
    assert result["ruleId"] == "graphinspect/mismatch" and result["level"] == "error"
    assert result["message"]["text"] == describe_mismatch(layer)
    location = result["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == document["target"]["path"]
    assert location["logicalLocations"][0]["fullyQualifiedName"] == TAMPERED_NODE


def test_sarif_faithful_has_no_results_and_unmatched_layers_are_results(documents):
    assert check_sarif(render("sarif", documents["faithful"]))["runs"][0]["results"] == []
    document = documents["unrelated"]
    results = check_sarif(render("sarif", document))["runs"][0]["results"]
    unmatched = [layer["target"] for layer in problem_layers(document)]
    located = [
        r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
        for r in results
        if r["ruleId"] == "graphinspect/unmatched"
    ]
    assert located == unmatched
    # Findings that name those layers are not repeated; the others are results of their own.
    assert not [r for r in results if r["ruleId"] == "graphinspect/unmatched_target"]


def test_sarif_fingerprints_follow_the_layer_not_the_numbers(documents):
    document = documents["tampered"]
    before = check_sarif(render("sarif", document))["runs"][0]["results"][0]
    changed = copy.deepcopy(document)
    for layer in changed["layers"]:
        for param in layer["params"]:
            if param["max_abs_err"] is not None:
                param["max_abs_err"] *= 2
    after = check_sarif(render("sarif", changed))["runs"][0]["results"][0]
    assert after["message"]["text"] != before["message"]["text"]
    assert after["partialFingerprints"] == before["partialFingerprints"]


def test_sarif_uri_is_relative_to_the_working_directory(documents, monkeypatch):
    document = copy.deepcopy(documents["tampered"])
    document["target"]["path"] = str(REPO / "models" / "b.onnx")
    monkeypatch.chdir(REPO)
    log = check_sarif(render("sarif", document))
    assert (
        log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/b.onnx"
    )


def test_sarif_of_verify(documents):
    document = documents["verify"]
    log = check_sarif(render("sarif", document))
    results = log["runs"][0]["results"]
    assert log["runs"][0]["automationDetails"]["id"] == "graphinspect/verify/"
    layer_results = [r for r in results if r["ruleId"] == "graphinspect/layer_differs"]
    assert layer_results[0]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == document["first_divergent"]


# =============================================================================== github

COMMAND = re.compile(r"^::(?P<level>error|warning|notice) (?P<properties>[^:]*)::(?P<message>.*)$")


def unescape(text: str) -> str:
    return text.replace("%0A", "\n").replace("%0D", "\r").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def parse_commands(text: str) -> list[dict]:
    commands = []
    for line in text.splitlines():
        match = COMMAND.match(line)
        assert match, f"not a workflow command: {line!r}"
        properties = dict(item.split("=", 1) for item in match["properties"].split(","))
        commands.append(
            {
                "level": match["level"],
                **{key: unescape(value) for key, value in properties.items()},
                "message": unescape(match["message"]),
            }
        )
    return commands


def test_github_annotations_per_problem_then_the_verdict(documents, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    document = documents["tampered"]
    commands = parse_commands(render("github", document))
    layer = problem_layers(document)[0]
    assert commands[0] == {
        "level": "error",
        "file": document["target"]["path"],
        "title": f"graphinspect: Conv differs ({TAMPERED_NODE})",
        "message": describe_mismatch(layer),
    }
    assert commands[-1]["level"] == "error" and commands[-1]["title"] == "graphinspect: DIFFERS"
    assert commands[-1]["message"] == document["summary"]["text"]
    assert len(commands) == 2

    faithful = parse_commands(render("github", documents["faithful"]))
    assert [c["level"] for c in faithful] == ["notice"] and faithful[0]["title"] == "graphinspect: FAITHFUL"


def test_github_escapes_what_could_start_another_command(documents, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    document = copy.deepcopy(documents["tampered"])
    evil = "/m/Conv\n::set-env name=X::1,%0A:"
    for layer in document["layers"]:
        if layer["target"] == TAMPERED_NODE:
            layer["target"] = evil
    document["target"]["path"] = "dir,with:odd/b.onnx"
    text = render("github", document)
    assert not any(line.startswith("::set-env") for line in text.splitlines())
    commands = parse_commands(text)
    assert commands[0]["title"] == f"graphinspect: Conv differs ({evil})"
    assert commands[0]["file"] == "dir,with:odd/b.onnx"
    assert commands[0]["message"].startswith(evil + " (Conv")


def expected_problems(document: dict) -> dict[str, int]:
    """Problems by level, counted from the document: problem layers, unexplained floats,
    and error/warning findings other than those that name a problem layer."""
    layers = {layer["target"] for layer in problem_layers(document)}
    counts = {
        "error": len(problem_layers(document)) + (document["summary"]["coverage"]["unexplained"]["elements"] > 0),
        "warning": 0,
    }
    for finding in document["findings"]:
        said = finding["layer"] in layers and finding["code"] in ("mismatch", "unmatched_target")
        if finding["severity"] in counts and not said:
            counts[finding["severity"]] += 1
    return counts


def test_github_shows_at_most_ten_per_level(documents, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    document = documents["unrelated"]
    expected = expected_problems(document)
    assert expected["error"] == 8  # 7 layers traced to nothing, and their floats unexplained
    commands = parse_commands(render("github", document))
    assert sum(c["level"] == "error" for c in commands) == expected["error"] + 1  # + the verdict
    assert sum(c["level"] == "warning" for c in commands) == expected["warning"]

    document = copy.deepcopy(document)
    document["layers"] = document["layers"] * 3
    expected = expected_problems(document)
    commands = parse_commands(render("github", document))
    shown = [c for c in commands if c["title"] not in ("graphinspect: INCOMPLETE", "graphinspect: more problems")]
    assert sum(c["level"] == "error" for c in shown) == 10
    assert sum(c["level"] == "warning" for c in shown) == min(expected["warning"], 10)
    left_out = max(expected["error"] - 10, 0) + max(expected["warning"] - 10, 0)
    (more,) = [c for c in commands if c["title"] == "graphinspect: more problems"]
    assert more["message"].startswith(f"{left_out} more problems not annotated")


def test_github_adds_the_markdown_report_to_the_step_summary(documents, monkeypatch, tmp_path):
    summary = tmp_path / "step_summary.md"
    summary.write_text("## an earlier step's note\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    document = documents["tampered"]
    out = render("github", document)
    assert out.startswith("::error ")
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## an earlier step's note\n\n")
    assert text.endswith(render("markdown", document))
    render("github", documents["verify"])
    text = summary.read_text(encoding="utf-8")
    assert text.count("# graphinspect diff: DIFFERS") == 1
    verify_part = text.split("## graphinspect verify: DIFFERS")[1]
    for output in documents["verify"]["outputs"]:
        assert f"`{output['name']}`" in verify_part
    assert f"First divergent layer: `{TAMPERED_NODE}`" in verify_part


def test_github_without_a_step_summary_writes_no_file(documents, monkeypatch, tmp_path):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)
    render("github", documents["tampered"])
    assert list(tmp_path.iterdir()) == []


def test_a_bad_verdict_nothing_explains_still_fails_every_format(documents, monkeypatch):
    """verify may add verdict words ("incomplete"); a document whose outputs all pass but
    whose verdict is not "same" must not look green anywhere."""
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    document = copy.deepcopy(documents["verify"])
    document["verdict"] = "incomplete"
    for output in document["outputs"]:
        output["status"] = "same"
    for layer in document["layers"]:
        layer["status"] = "same"
    root = parse_junit(render("junit", document))
    assert root.get("failures") == "1"
    (failed,) = [case for case in root.iter("testcase") if case.find("failure") is not None]
    assert failed.get("name") == "verdict" and "incomplete" in failed.find("failure").get("message")
    results = check_sarif(render("sarif", document))["runs"][0]["results"]
    assert [result["ruleId"] for result in results] == ["graphinspect/verdict"]
    commands = parse_commands(render("github", document))
    assert [c["level"] for c in commands] == ["error", "error"]
    assert commands[-1]["title"] == "graphinspect: INCOMPLETE"

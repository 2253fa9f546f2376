"""The table, Markdown and HTML reporters of the diff document: what they share.

Each reporter renders the hand-built document of :mod:`tests.support.documents` (it
follows the contract in :mod:`inspector.report`) and is compared with a golden file in
tests/golden/. After an intended change of the output, regenerate the golden files with

    GRAPHINSPECT_UPDATE_GOLDEN=1 python -m pytest tests/reports/test_reporters.py

and read the diff before committing them. What each format does on its own is tested
beside it (test_table.py, test_markdown.py, test_html.py); names from hostile models in
test_injection.py.
"""

from __future__ import annotations

import pytest

from plugins.reports import html as html_report
from plugins.reports import markdown as markdown_report
from plugins.reports import table as table_report
from tests.support import check_golden
from tests.support.documents import SCHEMA, make_document, render

TABLE_OPTIONS = {"color": False, "width": 120, "height": 40}
MODULES = [table_report, markdown_report, html_report]


# ----------------------------------------------------------------- the fixture itself


def test_fixture_has_the_fields_build_document_writes():
    """The hand-built document keeps in step with :func:`inspector.report.build_document`."""
    from inspector.ir import Model
    from inspector.records import Finding
    from inspector.report import build_document
    from inspector.results import DiffResult, LayerDiff, ParamDiff

    result = DiffResult(
        Model("pytorch-module", "a.pt"),
        Model("onnx", "a.onnx"),
        layers=[
            LayerDiff(
                "/c/Conv",
                "Conv",
                "conv",
                ["c"],
                "identity",
                "ok",
                [ParamDiff("weight", "c.weight", "c.weight", (0.0, 1.0), (0.0, 1.0), (0.0, 1.0), 0.0, 0.0, "ok")],
            )
        ],
        unmatched_source=["x"],
        findings=[Finding("info", "unused_source", "x is unused", None)],
    )
    built = build_document(result)
    document = make_document()
    assert document.keys() == built.keys()
    for key in ("tool", "source", "target", "tolerance", "summary"):
        assert document[key].keys() == built[key].keys(), key
    for layer in document["layers"]:
        assert layer.keys() == built["layers"][0].keys()
        assert layer["status"] in ("ok", "mismatch", "unmatched")
        for param in layer["params"]:
            assert param.keys() == built["layers"][0]["params"][0].keys()
    for finding in document["findings"]:
        assert finding.keys() == built["findings"][0].keys()
        assert finding["severity"] in ("error", "warning", "info")


# ----------------------------------------------------------------- golden files


def test_table_matches_golden():
    check_golden("diff_table.txt", render(table_report, make_document(), TABLE_OPTIONS))


def test_table_at_80_columns_matches_golden():
    check_golden("diff_table_80.txt", render(table_report, make_document(), {**TABLE_OPTIONS, "width": 80}))


def test_markdown_matches_golden():
    check_golden("diff_report.md", render(markdown_report, make_document()))


def test_html_matches_golden():
    check_golden("diff_report.html", render(html_report, make_document()))


# ----------------------------------------------------------------- every format


@pytest.mark.parametrize("module", MODULES)
def test_every_format_starts_with_the_verdict_line(module):
    rendered = render(module, make_document(), TABLE_OPTIONS)
    line = (
        "Verdict: DIFFERS (1 mismatched, 1 unmatched of 5 ONNX layers; 12.2K of 12.3K parameter elements re-computed)"
    )
    assert line in rendered
    # ... before anything else the document says: the first layer, the summary, a finding.
    first = rendered.index(line)
    for later in ("/model.0/conv/Conv", "2 Conv layers:", "no PyTorch layer re-computes this Conv"):
        assert rendered.index(later) > first, later


@pytest.mark.parametrize("module", MODULES)
def test_every_format_puts_problems_before_the_layers_that_are_fine(module):
    rendered = render(module, make_document(), TABLE_OPTIONS)
    assert "ch 17" in rendered
    problems = [rendered.index("/model.2/conv/Conv"), rendered.index("/extra/Conv")]
    # The first ok layer's row comes after both problem rows (the summary names only problems).
    fine = rendered.index("/head/fc/Gemm")
    assert max(problems) < fine
    assert "aux_head.conv" in rendered and "no PyTorch layer re-computes this Conv" in rendered


@pytest.mark.parametrize("module", MODULES)
def test_every_format_says_a_shared_note_once(module):
    rendered = render(module, make_document(), TABLE_OPTIONS)
    if module is html_report:  # also in a tooltip (title="...") on each reference
        rendered = rendered.split("<h3>Notes</h3>", 1)[1]
    assert rendered.count("eps 0.001 from the module") == 1
    assert "2 layers" in rendered


@pytest.mark.parametrize("verdict, word", [("faithful", "FAITHFUL"), ("incomplete", "INCOMPLETE")])
@pytest.mark.parametrize("module", MODULES)
def test_a_document_without_findings_or_unused_layers_renders(module, verdict, word):
    document = make_document()
    document["summary"].update(verdict=verdict, unmatched_source=0, text="In words.")
    document["findings"] = []
    document["unmatched_source"] = []
    rendered = render(module, document, TABLE_OPTIONS)
    assert word in rendered
    for heading in ("Errors (", "Warnings (", "Info (", "not used by the export"):
        assert heading not in rendered


@pytest.mark.parametrize("module", MODULES)
def test_an_unmatched_layer_always_has_a_reason(module):
    document = make_document()
    document["findings"] = [f for f in document["findings"] if f["code"] != "unmatched_target"]
    rendered = render(module, document, {**TABLE_OPTIONS, "to_file": True})
    assert "traced to no PyTorch layer" in rendered
    rendered = render(module, make_document(), TABLE_OPTIONS)
    # The finding's message (the fixture's one warning) is said beside the layer, not
    # again in a list by severity.
    assert "no PyTorch layer re-computes this Conv" in rendered and "Warnings (" not in rendered


def test_narrowed_document_says_how_many_layers_are_not_shown():
    document = make_document()
    document["layers"] = [layer for layer in document["layers"] if layer["status"] != "ok"]
    for module in MODULES:
        assert "3 of 5 layers not shown" in render(module, document, TABLE_OPTIONS)
    assert "not shown" not in render(table_report, make_document(), TABLE_OPTIONS)


@pytest.mark.parametrize("module", MODULES)
def test_a_document_with_no_layers_left_renders(module):
    document = make_document()
    document["layers"] = []
    rendered = render(module, document, TABLE_OPTIONS)
    assert "No layers to show." in rendered and "5 of 5 layers not shown" in rendered


@pytest.mark.parametrize(
    "channels, count, expected",
    [([17], 1, "ch 17"), ([3, 17, 20, 21, 40, 41], 6, "ch 3,17 (+4)"), ([], 0, ""), ([], 3, "")],
)
def test_channels_text(channels, count, expected):
    from plugins.reports._wording import channels_text

    assert channels_text({"bad_channels": channels, "bad_channel_count": count}) == expected


def test_verdict_line_of_a_faithful_export():
    from plugins.reports._wording import verdict_line

    document = make_document()
    document["summary"].update(verdict="faithful", matched=5, mismatched=0, unmatched_target=0)
    document["summary"]["coverage"]["unexplained"] = {"elements": 0, "bytes": 0}
    assert verdict_line(document) == (
        "Verdict: FAITHFUL (5 of 5 ONNX layers re-computed within tolerance; "
        "12.2K of 12.2K parameter elements re-computed)"
    )


# ----------------------------------------------------------------- selection


def test_reporters_are_chosen_by_output_suffix():
    from inspector.manager import get_plugin_manager
    from inspector.output import choose_format

    plugins = get_plugin_manager(autoload=False)
    expected = {
        "out.md": "markdown",
        "out.markdown": "markdown",
        "OUT.HTML": "html",
        "out.htm": "html",
        "out.txt": "table",
        "out.json": "json",
        "out.csv": "table",
        None: "table",
    }
    for output, name in expected.items():
        assert choose_format(None, output, plugins, SCHEMA, "table") == name, output
    for name in ("table", "markdown", "html"):
        module = {"table": table_report, "markdown": markdown_report, "html": html_report}[name]
        assert plugins.reporter(name, SCHEMA).render is module.render

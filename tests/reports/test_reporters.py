"""The table, Markdown and HTML reporters of the diff document.

Each reporter renders a hand-built ``graphinspect/diff@1`` document (below; it follows
the contract in :mod:`inspector.report`) and is compared with a golden file in
tests/golden/. After an intended change of the output, regenerate the golden files with

    GRAPHINSPECT_UPDATE_GOLDEN=1 python -m pytest tests/reports/test_reporters.py

and read the diff before committing them.
"""

from __future__ import annotations

import copy
import html.parser
import io
import re

import pytest

from plugins.reports import html as html_report
from plugins.reports import markdown as markdown_report
from plugins.reports import table as table_report
from tests.support import check_golden

SCHEMA = "graphinspect/diff@1"
ODD_NAME = "/model.1/m[0]|cv1/conv/Conv"


def _param(
    name,
    target_tensor,
    source_tensor,
    source_range,
    target_range,
    reproduced_range,
    abs_err,
    rel_err,
    status="ok",
    bad_channels=(),
    bad_channel_count=0,
):
    return {
        "name": name,
        "target_tensor": target_tensor,
        "source_tensor": source_tensor,
        "source_range": source_range,
        "target_range": target_range,
        "reproduced_range": reproduced_range,
        "max_abs_err": abs_err,
        "max_rel_err": rel_err,
        "status": status,
        "bad_channels": list(bad_channels),
        "bad_channel_count": bad_channel_count,
    }


def _layer(target, op, sources, transform, status, matched_by, params, note=""):
    return {
        "target": target,
        "op": op,
        "sources": sources,
        "transform": transform,
        "status": status,
        "matched_by": matched_by,
        "note": note,
        "params": params,
    }


SUMMARY_TEXT = (
    "2 Conv layers: 2 Conv/Linear + BatchNorm folded. 1 Gemm layer: 1 kept as they are. "
    "Every matched parameter re-computed within 2.4e-07 relative to its scale. "
    "/model.2/conv/Conv (Conv, from model.2.conv + model.2.bn via fold_batchnorm): weight differs by up to "
    "0.5 (3.10% of its scale) in output channel 17. 1 ONNX layer could not be traced to the PyTorch model: "
    "/extra/Conv. 2 PyTorch layers are not used by the export. The export differs from the PyTorch model: "
    "the layers above hold values no known transform explains."
)


def make_document() -> dict:
    """A small diff document with every status, a folded and an identity match, a name
    holding "[0]" and "|", findings of each severity and unused PyTorch layers."""
    return {
        "schema": SCHEMA,
        "tool": {"name": "graphinspect", "version": "0.1.0"},
        "source": {"path": "samples/tiny/model.pt", "format": "pytorch-module", "layers": 9, "parameters": 12960},
        "target": {"path": "samples/tiny/model.onnx", "format": "onnx", "layers": 5, "parameters": 12640},
        "tolerance": {"rtol": None, "atol": None},
        "summary": {
            "verdict": "differs",
            "matched": 3,
            "mismatched": 1,
            "unmatched_target": 1,
            "unmatched_source": 2,
            "by_transform": {"fold_batchnorm": 2, "identity": 1},
            "max_rel_err": 0.031,
            "text": SUMMARY_TEXT,
            "coverage": {
                "explained": {"elements": 12200, "bytes": 48800},
                "constant": {"elements": 300, "bytes": 1200},
                "unexplained": {"elements": 140, "bytes": 560},
                "by_op": {
                    "Conv": {
                        "explained": {"elements": 12200, "bytes": 48800},
                        "constant": {"elements": 0, "bytes": 0},
                        "unexplained": {"elements": 140, "bytes": 560},
                    },
                    "Add": {
                        "explained": {"elements": 0, "bytes": 0},
                        "constant": {"elements": 300, "bytes": 1200},
                        "unexplained": {"elements": 0, "bytes": 0},
                    },
                },
            },
        },
        "layers": [
            _layer(
                "/model.0/conv/Conv",
                "Conv",
                ["model.0.conv", "model.0.bn"],
                "fold_batchnorm",
                "ok",
                "scope",
                [
                    _param(
                        "weight",
                        "model.0.conv.weight",
                        "model.0.conv.weight",
                        [-0.306, 0.345],
                        [-2.926, 3.297],
                        [-2.926, 3.297],
                        2.4e-07,
                        7.3e-08,
                    ),
                    _param(
                        "bias",
                        "model.0.conv.weight_bias",
                        "model.0.bn.bias",
                        [-0.5, 0.8],
                        [-1.2, 2.1],
                        [-1.2, 2.1],
                        1.2e-07,
                        5.7e-08,
                    ),
                ],
                note="eps 0.001 from the module",
            ),
            _layer(
                ODD_NAME,
                "Conv",
                ["model.1.m.0.cv1.conv", "model.1.m.0.cv1.bn"],
                "fold_batchnorm",
                "ok",
                "name",
                [
                    _param(
                        "weight",
                        "onnx::Conv_25",
                        "model.1.m.0.cv1.conv.weight",
                        [-0.12, 0.11],
                        [-1.07, 0.98],
                        [-1.07, 0.98],
                        1.1e-07,
                        1.0e-07,
                    ),
                    _param(
                        "bias",
                        "onnx::Conv_26",
                        "model.1.m.0.cv1.bn.bias",
                        [-0.03, 0.04],
                        [-0.44, 0.61],
                        [-0.44, 0.61],
                        5.9e-08,
                        9.7e-08,
                    ),
                ],
            ),
            _layer(
                "/head/fc/Gemm",
                "Gemm",
                ["head.fc"],
                "identity",
                "ok",
                "alignment",
                [
                    _param(
                        "weight",
                        "head.fc.weight",
                        "head.fc.weight",
                        [-0.08, 0.08],
                        [-0.08, 0.08],
                        [-0.08, 0.08],
                        0.0,
                        0.0,
                    ),
                    _param(
                        "bias", "head.fc.bias", "head.fc.bias", [-0.01, 0.02], [-0.01, 0.02], [-0.01, 0.02], 0.0, 0.0
                    ),
                ],
            ),
            _layer(
                "/model.2/conv/Conv",
                "Conv",
                ["model.2.conv", "model.2.bn"],
                "fold_batchnorm",
                "mismatch",
                "scope",
                [
                    _param(
                        "weight",
                        "model.2.conv.weight",
                        "model.2.conv.weight",
                        [-0.21, 0.19],
                        [-16.1, 15.7],
                        [-15.6, 15.7],
                        0.5,
                        0.031,
                        status="mismatch",
                        bad_channels=[17],
                        bad_channel_count=1,
                    ),
                    _param(
                        "bias",
                        "model.2.conv.weight_bias",
                        "model.2.bn.bias",
                        [-0.2, 0.3],
                        [-0.9, 1.4],
                        [-0.9, 1.4],
                        6.0e-08,
                        4.3e-08,
                    ),
                ],
            ),
            _layer(
                "/extra/Conv",
                "Conv",
                [],
                None,
                "unmatched",
                None,
                [
                    _param("weight", "extra.weight", None, None, [-1.0, 1.0], None, None, None, status="unmatched"),
                ],
            ),
        ],
        "unmatched_source": ["aux_head.conv", "denoising.embed"],
        "constants": [
            {
                "tensor": "anchors",
                "op": "Add",
                "layer": "/decoder/Add",
                "elements": 300,
                "reason": "computed at export: no PyTorch tensor holds these values",
            }
        ],
        "findings": [
            {
                "severity": "info",
                "code": "unused_source",
                "message": "2 PyTorch layers are not used by the export: aux_head.conv, denoising.embed",
                "layer": None,
            },
            {
                "severity": "error",
                "code": "mismatch",
                "message": "weight differs by up to 0.5 (3.10% of its scale) in output channel 17",
                "layer": "/model.2/conv/Conv",
            },
            {
                "severity": "warning",
                "code": "unmatched_target",
                "message": "no PyTorch layer re-computes this Conv",
                "layer": "/extra/Conv",
            },
        ],
    }


def render(module, document, options=None) -> str:
    (reporter,) = list(module.graphinspect_reporters())
    stream = io.StringIO()
    reporter.render(document, stream, options or {})
    return stream.getvalue()


TABLE_OPTIONS = {"color": False, "width": 120}


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


def test_markdown_matches_golden():
    check_golden("diff_report.md", render(markdown_report, make_document()))


def test_html_matches_golden():
    check_golden("diff_report.html", render(html_report, make_document()))


# ----------------------------------------------------------------- behaviour


@pytest.mark.parametrize("module", [table_report, markdown_report, html_report])
def test_every_format_shows_the_verdict_and_the_bad_channel(module):
    rendered = render(module, make_document(), TABLE_OPTIONS)
    assert "DIFFERS" in rendered
    assert "ch 17" in rendered
    assert "aux_head.conv" in rendered and "no PyTorch layer re-computes this Conv" in rendered


@pytest.mark.parametrize("verdict, word", [("faithful", "FAITHFUL"), ("incomplete", "INCOMPLETE")])
@pytest.mark.parametrize("module", [table_report, markdown_report, html_report])
def test_a_document_without_findings_or_unused_layers_renders(module, verdict, word):
    document = make_document()
    document["summary"].update(verdict=verdict, unmatched_source=0, text="In words.")
    document["findings"] = []
    document["unmatched_source"] = []
    rendered = render(module, document, TABLE_OPTIONS)
    assert word in rendered
    for heading in ("Errors (", "Warnings (", "Info (", "not used by the export"):
        assert heading not in rendered


def test_table_has_no_ansi_escapes_without_color_and_fits_its_width():
    for width in (120, 200):
        rendered = render(table_report, make_document(), {"color": False, "width": width})
        assert "\x1b" not in rendered
        assert max(len(line) for line in rendered.splitlines()) <= width
    assert "\x1b[" in render(table_report, make_document(), {"color": True, "width": 120})


def test_table_shows_names_with_brackets_as_they_are():
    for width in (120, 200):
        assert ODD_NAME in render(table_report, make_document(), {"color": False, "width": width})


def _cells(row: str) -> list[str]:
    # A table row's cells, split at "|" not escaped as "\|".
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def test_markdown_layer_table_has_one_row_per_param_and_even_cells():
    document = make_document()
    markdown = render(markdown_report, document)
    section = markdown.split("## Layers\n\n", 1)[1]
    table = section.split("\n\n", 1)[0].splitlines()
    header, rule, rows = table[0], table[1], table[2:]
    assert len(rows) == sum(len(layer["params"]) for layer in document["layers"])
    widths = {len(_cells(line)) for line in (header, rule, *rows)}
    assert widths == {len(table_report.LAYER_HEADERS)}
    odd_row = next(row for row in rows if "m[0]" in row)
    assert _cells(odd_row)[1].strip() == "`" + ODD_NAME.replace("|", "\\|") + "`"


class StrictParser(html.parser.HTMLParser):
    """Fails on an end tag that closes nothing open; remembers what it saw."""

    VOID = {"meta", "br", "input", "link", "hr", "img"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.open_tags: list[str] = []
        self.declarations: list[str] = []
        self.start_tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_decl(self, decl):
        self.declarations.append(decl)

    def handle_starttag(self, tag, attrs):
        self.start_tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.open_tags.append(tag)

    def handle_endtag(self, tag):
        assert self.open_tags and self.open_tags[-1] == tag, f"</{tag}> closes {self.open_tags[-1:]}"
        self.open_tags.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse_html(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.open_tags == [], f"unclosed: {parser.open_tags}"
    return parser


def test_html_is_a_well_formed_html5_page():
    parser = parse_html(render(html_report, make_document()))
    assert parser.declarations == ["DOCTYPE html"]
    tags = dict(parser.start_tags)
    assert tags["html"] == {"lang": "en"}
    assert ("meta", {"charset": "utf-8"}) in parser.start_tags
    assert not any(tag in ("script", "link", "img") for tag, _ in parser.start_tags)
    assert ODD_NAME in "".join(parser.text)
    bodies = [
        attrs["class"] for tag, attrs in parser.start_tags if tag == "tbody" and "status-" in attrs.get("class", "")
    ]
    assert bodies == ["status-ok", "status-ok", "status-ok", "status-mismatch", "status-unmatched"]


def test_names_never_become_markup():
    document = copy.deepcopy(make_document())
    evil = "<script>alert(1)</script>[bold]x[/bold]"
    document["layers"][0]["target"] = evil
    document["layers"][0]["sources"] = [evil]
    document["findings"][0]["message"] = f"see {evil}"
    document["unmatched_source"] = [evil]

    page = render(html_report, document)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;[bold]x[/bold]" in page
    assert evil in "".join(parse_html(page).text)

    markdown = render(markdown_report, document)
    outside_code = re.sub(r"`[^`]*`", "", markdown)
    assert re.search(r"(?<!\\)<script", outside_code) is None  # "\<script" renders as text
    assert f"`{evil}`" in markdown

    table = render(table_report, document, {"color": False, "width": 200})
    assert evil in table


def test_narrowed_document_says_how_many_layers_are_not_shown():
    document = make_document()
    document["layers"] = [layer for layer in document["layers"] if layer["status"] != "ok"]
    for module in (table_report, markdown_report, html_report):
        assert "3 of 5 layers not shown" in render(module, document, TABLE_OPTIONS)
    assert "not shown" not in render(table_report, make_document(), TABLE_OPTIONS)


@pytest.mark.parametrize(
    "channels, count, expected",
    [([17], 1, "ch 17"), ([3, 17, 20, 21, 40, 41], 6, "ch 3,17 (+4)"), ([], 0, ""), ([], 3, "")],
)
def test_channels_text(channels, count, expected):
    assert table_report.channels_text({"bad_channels": channels, "bad_channel_count": count}) == expected


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


@pytest.mark.parametrize("module", [table_report, markdown_report, html_report])
def test_a_document_with_no_layers_left_renders(module):
    document = make_document()
    document["layers"] = []
    rendered = render(module, document, TABLE_OPTIONS)
    assert "No layers to show." in rendered and "5 of 5 layers not shown" in rendered


def test_table_is_one_wide_table_when_it_fits_and_stacked_when_not():
    wide = render(table_report, make_document(), {"color": False, "width": 200}).splitlines()
    assert any("ONNX node" in line and "Re-computed range" in line for line in wide)
    assert any(
        line.startswith("MISMATCH") and "/model.2/conv/Conv" in line and "[-16.1, 15.7]" in line for line in wide
    )

    stacked = render(table_report, make_document(), TABLE_OPTIONS).splitlines()
    assert "Status     ONNX node  Op  from PyTorch module(s)  via Transform" in stacked
    heading = stacked.index("MISMATCH   /model.2/conv/Conv  Conv  from model.2.conv + model.2.bn  via fold_batchnorm")
    assert stacked[heading + 1].startswith("ch 17      weight  [-0.21, 0.19]")

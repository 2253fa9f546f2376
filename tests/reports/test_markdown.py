"""The ``markdown`` reporter: a pull-request comment that GitHub accepts and that no
model can break out of.

The Markdown is parsed back with markdown-it-py (CommonMark with GitHub's tables, the
parser rich itself depends on) to check what a reader would see: the tables' cells, the
code spans, and that nothing from a model became a heading, a link or HTML.
"""

from __future__ import annotations

import os

import pytest
from markdown_it import MarkdownIt

from inspector.output import visible
from plugins.reports import markdown as markdown_report
from plugins.reports._wording import LAYER_HEADERS
from tests.support.documents import ODD_NAME, make_document, many_layers, render

PARSER = MarkdownIt("commonmark").enable("table")
OUR_HTML = {"<details>", "</details>", "<br>"}


def parse(text: str):
    return PARSER.parse(text)


def inline_tokens(tokens):
    for token in tokens:
        yield token
        yield from token.children or []


def cells_of(tokens) -> list[list[list[str]]]:
    """Each table as rows of cells, an empty cell as ""."""
    found, rows, row, content = [], [], [], None
    for token in tokens:
        if token.type == "table_open":
            rows = []
        elif token.type == "table_close":
            found.append(rows)
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            rows.append(row)
        elif token.type in ("td_open", "th_open"):
            content = ""
        elif token.type == "inline" and content is not None:
            content = token.content
        elif token.type in ("td_close", "th_close"):
            row.append(content)
            content = None
    return found


def test_problems_table_and_ok_layers_folded():
    document = make_document()
    text = render(markdown_report, document)
    tokens = parse(text)
    problems, fine = cells_of(tokens)
    assert problems[0] == list(LAYER_HEADERS) == fine[0]
    # One row per parameter: the mismatched conv's two, the unmatched conv's one.
    assert [row[1] for row in problems[1:]] == ["`/model.2/conv/Conv`", "", "`/extra/Conv`"]
    assert problems[1][0] == "**MISMATCH** ch 17"
    assert "no PyTorch layer re-computes this Conv" in problems[3][-1]  # the reason, in its row
    assert [row[1] for row in fine[1:] if row[1]] == ["`/model.0/conv/Conv`", f"`{ODD_NAME}`", "`/head/fc/Gemm`"]
    assert text.index("<details>") < text.index("/head/fc/Gemm")
    assert text.index("### Problems (2 layers)") < text.index("<details>")


@pytest.mark.parametrize("count", [300, 10_000])
def test_never_longer_than_a_github_comment(count):
    document = many_layers(count, {5: "mismatch", count - 3: "unmatched"})
    text = render(markdown_report, document)
    assert len(text) <= markdown_report.MAX_CHARS
    problems, fine = cells_of(parse(text))
    assert [row[1] for row in problems[1:] if row[1]] == ["`/model.5/conv/Conv`", f"`/model.{count - 3}/conv/Conv`"]
    listed = len([row for row in fine[1:] if row[1]])
    ok_layers = count - 2
    if listed < ok_layers:
        more = ok_layers - listed
        assert f"{more} more layer{'s' if more != 1 else ''} not shown here, to stay under 65,536 characters" in text
    else:
        assert "not shown here" not in text
    assert text.rstrip().endswith("(`graphinspect/diff@1`).")  # the end is never cut off


def test_absolute_paths_are_written_relative_to_the_working_directory(tmp_path):
    document = make_document()
    document["source"]["path"] = str(tmp_path / "models" / "model.pt")
    document["target"]["path"] = "relative/model.onnx"
    text = render(markdown_report, document, {"cwd": str(tmp_path)})
    assert f"`{os.path.join('models', 'model.pt')}`" in text and "`relative/model.onnx`" in text
    assert str(tmp_path) not in text


HOSTILE = [
    "a`b``c",
    "pipe|in|name",
    "cr\r# FAITHFUL\rx",
    "nl\n\n# Verdict: FAITHFUL\n",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "ctrl\x1b[2K\x07\x00end",
    "`",
    " lead and trail ",
    "back\\slash|",
]


def test_hostile_names_stay_inside_their_code_spans_and_cells():
    document = make_document()
    for layer, name in zip(document["layers"], HOSTILE):
        layer["target"] = name
        layer["sources"] = [name] if layer["sources"] else []
    document["findings"].append({"severity": "warning", "code": "x", "message": HOSTILE[3] + HOSTILE[6], "layer": None})
    document["unmatched_source"] = HOSTILE
    document["summary"]["text"] = " ".join(HOSTILE)
    text = render(markdown_report, document)
    tokens = list(inline_tokens(parse(text)))

    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    # Ours only (the findings no longer name a layer of the document, so they are listed).
    assert headings == ["graphinspect diff: DIFFERS", "Problems (2 layers)", "Errors (1)", "Warnings (2)"]
    assert not [t for t in tokens if t.type in ("link_open", "image")]
    html = [t.content.strip() for t in tokens if t.type in ("html_inline", "html_block")]
    for line in (line for block in html for line in block.splitlines()):
        # Only our own tags, and <summary> lines of our own words.
        assert line in OUR_HTML or (line.startswith("<summary>") and "<" not in line[9:-10]), line

    spans = [t.content for t in tokens if t.type == "code_inline"]
    for name in HOSTILE[: len(document["layers"])]:
        shown = visible(name)
        assert shown in spans or shown.strip() in spans, name
    for table in cells_of(parse(text)):
        assert {len(row) for row in table} == {len(LAYER_HEADERS)}
    assert "\r" not in text and "\x1b" not in text and "\x00" not in text


def test_an_empty_name_is_said_to_be_empty():
    assert markdown_report.code("") == "(empty)"
    assert markdown_report.code("x`y") == "`` x`y ``"  # one space each side is not content
    assert markdown_report.code("`x") == "`` `x ``"

"""The ``html`` reporter: one offline page, its pictures and its table, parsed back.

The page is parsed with the standard library's html.parser into a small tree, strictly
(an end tag must close the element open), to check its structure, that it loads
nothing from outside, that the pictures say what the document says, and that names
from a model are text, never markup.
"""

from __future__ import annotations

import math
import re

import pytest

from plugins.reports import html as html_report
from plugins.reports._pictures import MAX_STRIP_BARS
from tests.support.documents import CHANNEL_ERRORS, ODD_NAME, make_document, many_layers, render
from tests.support.html_tree import Node, parse


@pytest.fixture(scope="module")
def page() -> str:
    return render(html_report, make_document())


@pytest.fixture(scope="module")
def tree(page) -> Node:
    return parse(page).root


def by_id(tree: Node, name: str) -> Node:
    (node,) = [node for node in tree.iter() if node.attrs.get("id") == name]
    return node


# ----------------------------------------------------------------- a page that stands alone


def test_a_well_formed_html5_page(page, tree):
    parser = parse(page)
    assert parser.declarations == ["DOCTYPE html"]
    (root,) = tree.children
    assert root.tag == "html" and root.attrs == {"lang": "en"}
    assert any(node.tag == "meta" and node.attrs.get("charset") == "utf-8" for node in tree.iter())


def test_it_loads_nothing_from_outside(page, tree):
    for node in tree.iter():
        assert node.tag not in ("link", "img", "iframe", "object", "embed", "base", "source"), node.tag
        assert "src" not in node.attrs, node.tag  # no script, image or frame from anywhere
        for name, value in node.attrs.items():
            if name in ("href", "xlink:href", "action", "formaction"):
                assert value.startswith("#"), (node.tag, name, value)  # links inside the page only
    assert not re.search(r"url\s*\(", page), "no CSS url()"
    assert not re.search(r"https?://|//[a-z]", page.replace("http://www.w3.org/2000/svg", ""))
    assert "@import" not in page
    scripts = list(tree.iter("script"))
    assert len(scripts) == 1 and scripts[0].attrs == {}


# ----------------------------------------------------------------- top of the page


def test_verdict_and_summary_come_first(tree):
    body = next(tree.iter("body"))
    header = body.children[0]
    assert header.tag == "header" and header.classes() == {"verdict", "differs"}
    assert "graphinspect diff: DIFFERS" in header.text
    assert "Verdict: DIFFERS (1 mismatched, 1 unmatched of 5 ONNX layers;" in header.text
    main = body.children[1]
    assert main.children[0].classes() == {"summary"} and main.children[0].text.startswith("2 Conv layers:")


def test_the_error_strip_has_a_bar_per_layer_at_its_error(tree):
    strip = by_id(tree, "strip")
    (svg,) = strip.iter("svg")
    bars = [node for node in svg.iter("rect") if any(c.startswith("b-") for c in node.classes())]
    document = make_document()
    assert len(bars) == len(document["layers"])
    statuses = [next(c for c in bar.classes() if c.startswith("b-")) for bar in bars]
    assert statuses == ["b-ok", "b-ok", "b-exact", "b-mismatch", "b-unmatched"]
    # Bars link to their rows, and a higher error is a taller bar (a smaller y).
    links = [node.attrs["href"] for node in svg.iter("a")]
    assert links == ["#L0", "#L1", "#L2", "#L3", "#L4"]
    y = [float(bar.attrs["y"]) for bar in bars]
    assert y[3] < y[1] < y[0]  # 0.031 above 1.0e-07 above 7.3e-08 (the layers' largest errors)
    assert y[4] == min(y)  # unmatched: full height
    # The problems stand out: a band behind each, and their names above the strip.
    bands = [node for node in svg.iter("rect") if {"band-mismatch", "band-unmatched"} & node.classes()]
    assert len(bands) == 2
    labels = [node.text for node in svg.iter("text") if {"label-mismatch", "label-unmatched"} & node.classes()]
    assert labels == ["/model.2/conv/Conv ch 17", "/extra/Conv"]
    (tolerance,) = [node for node in svg.iter("line") if "tol" in node.classes()]
    assert "rtol 1e-4" in svg.text
    # The tolerance line sits at 1e-4 on the same log axis as the bars.
    assert y[1] > float(tolerance.attrs["y1"]) > y[3]


def test_a_card_per_problem_with_its_channels_and_ranges(tree):
    problems = by_id(tree, "problems")
    cards = [node for node in problems.iter("div") if "card" in node.classes()]
    assert [sorted(card.classes()) for card in cards] == [["card", "mismatch"], ["card", "unmatched"]]
    mismatch, unmatched = cards
    assert "/model.2/conv/Conv" in mismatch.text and "weight differs by up to 0.5" in mismatch.text
    assert "no PyTorch layer re-computes this Conv" in unmatched.text

    channels, ranges = [svg for svg in mismatch.iter("svg")]
    bars = [node for node in channels.iter("rect")]
    assert len(bars) == CHANNEL_ERRORS["channels"] == 24
    bad = [i for i, bar in enumerate(bars) if "b-bad" in bar.classes()]
    assert bad == [17]
    tallest = min(range(len(bars)), key=lambda i: float(bars[i].attrs["y"]))
    assert tallest == 17 and "channel 17: max rel err 0.031" in bars[17].text
    assert [node.text for node in channels.iter("text") if "label-mismatch" in node.classes()] == ["ch 17"]

    # PyTorch [-0.21, 0.19], ONNX [-16.1, 15.7], re-computed [-15.6, 15.7] on one axis.
    source, target, reproduced = [node for node in ranges.iter("rect")]
    assert [next(iter(node.classes())) for node in (source, target, reproduced)] == [
        "r-source",
        "r-target",
        "r-reproduced",
    ]
    widths = [float(node.attrs["width"]) for node in (source, target, reproduced)]
    assert widths[0] < widths[2] < widths[1]
    assert widths[1] / widths[0] == pytest.approx((15.7 + 16.1) / (0.19 + 0.21), rel=0.02)
    assert "PyTorch [-0.21, 0.19]" in ranges.text and "re-computed [-15.6, 15.7]" in ranges.text


def test_pictures_and_cards_come_before_the_table(page):
    assert page.index('id="strip"') < page.index('id="problems"') < page.index('id="layers"')


# ----------------------------------------------------------------- the table


def test_the_table_has_a_body_per_layer_errors_before_ranges(tree):
    table = by_id(tree, "layers")
    headers = [th.text for th in table.iter("th")]
    assert headers.index("max rel err") < headers.index("PyTorch / ONNX / re-computed range")
    bodies = [node for node in table.iter("tbody")]
    assert [body.attrs["class"] for body in bodies] == [
        "status-ok",
        "status-ok",
        "status-ok",
        "status-mismatch",
        "status-unmatched",
    ]
    assert [body.attrs["id"] for body in bodies] == ["L0", "L1", "L2", "L3", "L4"]
    assert bodies[1].attrs["data-name"] == ODD_NAME and ODD_NAME in bodies[1].text
    # Sort keys: the layer's largest relative error; an unmatched layer sorts as the worst.
    assert float(bodies[3].attrs["data-rel"]) == 0.031
    assert math.isinf(float(bodies[4].attrs["data-rel"]))
    assert "no PyTorch layer re-computes this Conv" in bodies[4].text  # the reason, in its row
    assert [len(list(body.iter("tr"))) for body in bodies] == [2, 2, 2, 2, 1]
    sortable = [th.attrs["data-sort"] for th in table.iter("th") if "data-sort" in th.attrs]
    assert sortable == ["index", "status", "name", "op", "rel", "abs"]


def test_a_large_model_shares_strip_bars_and_keeps_its_problem_visible():
    document = many_layers(2500, {2321: "mismatch"})
    tree = parse(render(html_report, document)).root
    svg = next(by_id(tree, "strip").iter("svg"))
    bars = [node for node in svg.iter("rect") if any(c.startswith("b-") for c in node.classes())]
    assert len(bars) <= MAX_STRIP_BARS
    (worst,) = [bar for bar in bars if "b-mismatch" in bar.classes()]
    assert "/model.2321/conv/Conv" in worst.text
    (band,) = [node for node in svg.iter("rect") if "band-mismatch" in node.classes()]
    assert float(band.attrs["width"]) >= 7  # wide enough to see, however many layers


def test_a_large_page_is_written_in_pieces_as_it_is_made():
    """The page of thousands of layers is written a thousand template pieces or so at a
    time (never held whole), and is the same well-formed page, a body per layer."""
    document = many_layers(3000, {17: "mismatch"})
    writes: list[str] = []

    class Stream:
        def write(self, text: str) -> None:
            writes.append(text)

    (reporter,) = list(html_report.graphinspect_reporters())
    reporter.render(document, Stream(), {})
    page = "".join(writes)
    assert len(writes) >= 3 and max(map(len, writes)) < len(page) / 2
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert page == render(html_report, document)
    table = by_id(parse(page).root, "layers")
    assert len(list(table.iter("tbody"))) == 3000


# ----------------------------------------------------------------- names are text


def test_names_never_become_markup():
    document = make_document()
    evil = '<script>alert(1)</script>"onload=x [bold]x[/bold] \x1b[2K'
    document["layers"][0]["target"] = evil
    document["layers"][0]["sources"] = [evil]
    document["findings"][0]["message"] = f"see {evil}"
    document["unmatched_source"] = [evil]
    page = render(html_report, document)
    assert "<script>alert" not in page and "\x1b" not in page
    tree = parse(page).root
    shown = '<script>alert(1)</script>"onload=x [bold]x[/bold] \\x1b[2K'
    assert shown in tree.text
    assert all(node.tag != "script" or node.attrs == {} for node in tree.iter())
    assert len(list(tree.iter("script"))) == 1

"""The ``table`` reporter: what a terminal shows, in what order, at what width."""

from __future__ import annotations

import re

import pytest

from plugins.reports import table as table_report
from plugins.reports._wording import param_cells, verdict_line
from tests.support.documents import ODD_NAME, make_document, many_layers, render

OPTIONS = {"color": False, "width": 120, "height": 40}
SGR = re.compile(r"\x1b\[[0-9;]*m")


def lines_of(document, **options) -> list[str]:
    return render(table_report, document, {**OPTIONS, **options}).splitlines()


def test_the_verdict_line_comes_first_and_quiet_prints_only_it():
    lines = lines_of(make_document())
    assert lines[0].startswith("Verdict: DIFFERS (1 mismatched, 1 unmatched of 5 ONNX layers;")
    quiet = render(table_report, make_document(), {**OPTIONS, "quiet": True, "width": 40})
    assert quiet == verdict_line(make_document()) + "\n"  # one line, never wrapped


def test_sections_come_in_the_order_a_reader_needs():
    text = "\n".join(lines_of(make_document()))
    order = ["Verdict:", "Source ", "2 Conv layers:", "Problems: 2 layers", "OK: 3 layers", "Notes", "Info (1)"]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert text.index("PyTorch layers not used by the export (2)") > text.index("Info (1)")


def test_each_layer_is_a_heading_over_its_parameter_rows():
    lines = lines_of(make_document())
    heading = next(i for i, line in enumerate(lines) if line.startswith("MISMATCH   /model.2/conv/Conv"))
    assert lines[heading] == ("MISMATCH   /model.2/conv/Conv  Conv  from model.2.conv + model.2.bn  via fold_batchnorm")
    weight, bias = lines[heading + 1], lines[heading + 2]
    assert weight.split() == [
        "ch",
        "17",
        "weight",
        "0.031",
        "0.5",
        "[-0.21,",
        "0.19]",
        "[-16.1,",
        "15.7]",
        "[-15.6,",
        "15.7]",
    ]
    assert bias.split()[0] == "bias"
    # The shared note is a reference on each layer, said once below.
    assert any(
        line.startswith("ok         /model.0/conv/Conv") and line.endswith("via fold_batchnorm [1]") for line in lines
    )
    assert "  [1] eps 0.001 from the module (2 layers)" in lines
    # An unmatched layer's reason is under it.
    unmatched = next(i for i, line in enumerate(lines) if line.startswith("unmatched  /extra/Conv"))
    assert lines[unmatched + 2].strip().startswith("no PyTorch layer re-computes this Conv")


def test_ok_layers_are_collapsed_beyond_a_screenful_unless_all():
    document = many_layers(200, {150: "mismatch"})
    lines = lines_of(document, height=30)
    rows = [line for line in lines if line.startswith("ok ")]
    assert 5 <= len(rows) < 30
    assert f"+{199 - len(rows)} more ok layers (--all lists them)" in lines
    assert any(line.startswith("MISMATCH   /model.150/conv/Conv") for line in lines)
    assert len(lines) < 90
    every = lines_of(document, height=30, all=True)
    assert len([line for line in every if line.startswith("ok ")]) == 199
    assert not any("more ok layers" in line for line in every)
    to_file = lines_of(document, height=30, to_file=True)
    assert len([line for line in to_file if line.startswith("ok ")]) == 199


@pytest.mark.parametrize("width", [80, 100, 120, 200])
def test_no_line_is_cropped_and_no_number_split_at_any_width(width):
    document = make_document()
    lines = lines_of(document, width=width)
    assert max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    dropped = re.search(r"\(not shown at \d+ columns: (.*)\)", text)
    dropped = dropped.group(1).split(", ") if dropped else []
    headers = ["Param", "max rel err", "max abs err", "PyTorch range", "ONNX range", "Re-computed range"]
    for layer in document["layers"]:
        for param in layer["params"]:
            for header, cell in zip(headers, param_cells(param)):
                if header in dropped or cell == "-":
                    continue
                # Every number (and every range) is on one line, whole.
                assert any(cell in line for line in lines), (width, header, cell)
    assert ODD_NAME in text


def test_at_80_columns_columns_are_dropped_deliberately_and_said():
    lines = lines_of(make_document(), width=80)
    assert "(not shown at 80 columns: max abs err, Re-computed range)" in lines
    header = next(line for line in lines if line.startswith("Status"))
    assert header.split("  ") and "max abs err" not in header and "ONNX range" in header
    wide = lines_of(make_document(), width=200)
    assert not any("not shown at" in line for line in wide)


def test_colour_only_when_asked_and_never_inside_the_words():
    plain = render(table_report, make_document(), {**OPTIONS, "color": False})
    assert "\x1b" not in plain
    coloured = render(table_report, make_document(), {**OPTIONS, "color": True})
    assert "\x1b[" in coloured
    # Without its colour codes, the coloured text is the plain text.
    assert SGR.sub("", coloured) == plain
    assert "\x1b[1;31mMISMATCH" in coloured


def test_a_long_name_wraps_between_words_and_stays_whole():
    document = make_document()
    long_name = "/model.28/decoder/layers.5/cross_attn/sampling_offsets/very_long_suffix_for_test/MatMul"
    document["layers"][0]["target"] = long_name
    lines = lines_of(document, width=80)
    assert any(long_name in line for line in lines)
    assert max(len(line) for line in lines) <= max(80, len(long_name) + 11)

"""Results tables from a fixed metrics CSV: Markdown byte for byte, marks in the right cells, LaTeX and CSV."""

import csv
import io
from pathlib import Path

import pytest
from conftest import markdown_cells

from fangprune.report.tables import (
    AVG,
    TITLES,
    marks,
    value_table,
    per_model_notes,
    perplexity_notes,
    read_metrics_csv,
    table_columns,
    to_csv,
    to_latex,
    to_markdown,
    with_average,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture
def rows():
    with open(DATA / "metrics_fixture.csv") as fh:
        return with_average(read_metrics_csv(fh))


def test_average_is_the_mean_of_the_task_columns(rows):
    values = value_table(rows)
    assert values.loc[("m", "dense", 0.0), AVG] == pytest.approx(0.65)
    assert values.loc[("m", "c", 0.3), AVG] == pytest.approx(0.575)
    assert sum(r["metric"] == AVG for r in rows) == 6


def always(*_):
    return True


def test_markdown_tables_cell_for_cell(rows):
    for name, notes in (("table1", ["a note"]), ("table2", None)):
        got = to_markdown(rows, name, TITLES[name], notes, always)
        assert markdown_cells(got) == markdown_cells((DATA / f"{name}_expected.md").read_text())


def test_nothing_is_marked_without_a_resolved_interval(rows):
    values = value_table(rows)
    assert marks(values, table_columns("table2", rows)) == {}
    assert "**" not in to_markdown(rows, "table2", TITLES["table2"])
    # a resolver that resolves nothing marks nothing either
    assert marks(values, table_columns("table2", rows), lambda *a: False) == {}


def test_marks_go_to_best_and_second_per_sparsity_block(rows):
    values = value_table(rows)
    mk = marks(values, table_columns("table2", rows), always)
    # 30%: BoolQ ties a/c at 65: a tie is never resolved, so no mark; ARC-e b best, a second, c unmarked
    assert not any(mk.get((("m", m, 0.3), "boolq")) for m in "abc")
    assert mk[(("m", "b", 0.3), "arc_easy")] == "best" and mk[(("m", "a", 0.3), "arc_easy")] == "second"
    assert (("m", "c", 0.3), "arc_easy") not in mk
    # 40% has two methods: a best, never a second; the dense row is never marked
    assert mk[(("m", "a", 0.4), "boolq")] == "best" and (("m", "b", 0.4), "boolq") not in mk
    assert not any(k[1] == "dense" for k, _ in mk)
    # perplexity: lower is better
    mk1 = marks(values, table_columns("table1", rows), always)
    assert mk1[(("m", "b", 0.3), "ppl_wikitext2")] == "best" and mk1[(("m", "a", 0.3), "ppl_wikitext2")] == "second"
    assert not any(metric in ("params", "block_params_kept_frac") for _, metric in mk1)


def test_latex_marks_and_escapes(rows):
    tex = to_latex(rows, "table2", TITLES["table2"], None, always)
    lines = tex.splitlines()
    assert "a & 30\\% & 65.00 & \\underline{55.00} & \\textbf{60.00} \\\\" in lines
    assert "c & 30\\% & 65.00 & 50.00 & 57.50 \\\\" in lines
    assert tex.count("\\begin{tabular}{llrrr}") == 1 and "\\bottomrule" in tex
    t1 = to_latex(rows, "table1", TITLES["table1"])
    assert "dense & 0\\% & 10.00 & 65.00 & 100.0\\% & 1,000 \\\\" in t1.splitlines()


def test_csv_table_keeps_unscaled_values(rows):
    table = list(csv.DictReader(io.StringIO(to_csv(rows, "table2"))))
    assert [r["method"] for r in table] == ["dense", "a", "b", "c", "a", "b"]
    assert float(table[1]["boolq"]) == 0.65 and float(table[3][AVG]) == pytest.approx(0.575)


def test_table4_columns_follow_mmlu_categories():
    rows = [
        {"model": "m", "method": "dense", "sparsity": 0.0, "metric": m, "value": v}
        for m, v in (("mmlu", 0.3), ("mmlu/stem", 0.25), ("mmlu/humanities", 0.35),
                     ("mmlu/social_sciences", 0.3), ("mmlu/other", 0.3))
    ]
    cells = markdown_cells(to_markdown(rows, "table4", TITLES["table4"]))
    assert ["Method", "Sparsity", "Humanities", "STEM", "Social Sci.", "Other", "Avg"] in cells
    assert ["dense", "0%", "35.00", "25.00", "30.00", "30.00", "30.00"] in cells


def test_plot_is_a_png(rows, tmp_path):
    pytest.importorskip("matplotlib")
    from fangprune.report.plots import sparsity_curves

    sparsity_curves(rows, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_delta_cells_in_the_papers_style_starred_when_resolved(rows):
    extra = [
        {"model": "m", "method": "b", "sparsity": 0.3, "metric": "delta_ppl_wikitext2", "value": -0.5,
         "ci_low": -0.9, "ci_high": -0.1, "n": 32, "reference": "a"},
        {"model": "m", "method": "b", "sparsity": 0.3, "metric": "delta_boolq", "value": -0.05,
         "ci_low": -0.12, "ci_high": 0.02, "n": 100, "reference": "a"},
    ]
    md = markdown_cells(to_markdown(rows + extra, "table1", TITLES["table1"]))
    assert ["b", "30%", "12.00 (-0.50)*"] == next(r for r in md if r[:2] == ["b", "30%"])[:3]
    md2 = markdown_cells(to_markdown(rows + extra, "table2", TITLES["table2"]))
    # accuracy deltas in points; the interval spans 0: no star
    assert ["b", "30%", "60.00 (-5.00)", "58.00"] == next(r for r in md2 if r[:2] == ["b", "30%"])[:4]
    table = list(csv.DictReader(io.StringIO(to_csv(rows + extra, "table1"))))
    b = next(r for r in table if r["method"] == "b" and r["sparsity"] == "0.3")
    assert float(b["delta_ppl_wikitext2"]) == -0.5 and float(b["delta_ppl_wikitext2_ci_high"]) == -0.1
    buf = io.StringIO()
    from fangprune.report.tables import write_metrics_csv

    write_metrics_csv(rows + extra, buf)
    back = read_metrics_csv(io.StringIO(buf.getvalue()))
    row = next(r for r in back if r["metric"] == "delta_boolq")
    assert row["reference"] == "a" and row["ci_low"] == -0.12 and row["n"] == 100


def test_unstructured_table_in_the_clearcut_shape():
    from fangprune.report.tables import unstructured_table

    rows = [{"model": "m", "method": a, "sparsity": 0.5, "metric": "ppl_wikitext2", "value": v}
            for a, v in (("wanda", 20.0), ("wanda-2of4", 30.0), ("w-rec", 19.0))]
    rows.append({"model": "m", "method": "wanda", "sparsity": 0.5, "metric": "block_zero_frac", "value": 0.5})
    methods = {"wanda": {"algorithm": "wanda", "sparsity_type": "unstructured"},
               "wanda-2of4": {"algorithm": "wanda", "sparsity_type": "2:4"},
               "w-rec": {"algorithm": "wanda", "sparsity_type": "unstructured", "reconstruction": True},
               "obc": {"algorithm": "obc"}}
    md, wide, tex = unstructured_table(rows, methods)
    assert markdown_cells(md) == [["Method", "m 50%", "m 2:4"], ["wanda", "20.00", "30.00"],
                                  ["wanda + reconstruction", "19.00", "-"]]
    assert "m/50%/zero_frac" in wide.splitlines()[0] and ",0.5" in wide.splitlines()[1]
    assert "wanda + reconstruction & 19.00 & - \\\\" in tex


def test_per_model_notes_name_a_model_only_where_models_differ():
    ppl = [
        {"model": "a", "source": "wikitext2 test", "windows": 32, "seqlen": 512},
        {"model": "b", "source": "wikitext2 test", "windows": 32, "seqlen": 512, "bos": True},
        {"model": "a", "source": "ptb test", "windows": 32, "seqlen": 512},
        {"model": "b", "source": "ptb test", "windows": 32, "seqlen": 512},
    ]
    bos = " (BOS + seqlen-1 text tokens, every text token scored)"
    assert perplexity_notes(ppl) == [
        "PPL: ptb test, 32 windows of 512 tokens.",
        "a: PPL: wikitext2 test, 32 windows of 512 tokens.",
        f"b: PPL: wikitext2 test, 32 windows of 512 tokens{bos}.",
    ]
    assert per_model_notes([("a", "x"), ("b", "x"), ("b", "y")]) == ["b: y", "x"]
    assert perplexity_notes(ppl[:1]) == ["PPL: wikitext2 test, 32 windows of 512 tokens."]

"""Published tables (reports/published/, METHODS_SPEC §9): they load, their printed averages and text
claims hold, their method ids are ours, and reports render them beside our numbers."""

from __future__ import annotations

import csv

import pytest
from record_builders import cell_record
from report_parsing import html_tables, markdown_tables

from augbench.registry import default_registry
from augbench.reporting.formats import to_csv, to_latex, to_markdown
from augbench.reporting.published import PUBLISHED_DIR, PublishedError, list_published, load_published
from augbench.reporting.run_report import render_suite_report
from augbench.reporting.tables import build_table

TABLES = {"p1_tab1": "full_data", "p2_tab1_resnet50": "few_shot", "p2_tab1_vitb16": "few_shot",
          "p2_tab2": "long_tail", "p2_tab3": "waterbirds", "p2_tab4": "few_shot"}
#: Registry ids of the built-in methods; the other ids name methods still to be implemented.
REGISTERED = {"original", "cutmix", "mixup", "sd_random", "sd_random+cutmix", "sd_random+mixup", "cmo", "cmo.drw"}
PLANNED = {"real_filter", "real_guidance", "real_mix", "da_fusion", "diff_aug", "diff_mix", "real_gen",
           "noisecutmix", "diff_ii", "diff_ii.vanilla_t2i", "diff_ii.cl_only", "diff_ii.cl_li",
           "diff_ii.cl_li_td", "diff_ii.cl_si", "diff_ii.cl_si_se", "diff_ii.cl_td"}
#: The one printed Avg that does not match its entries (METHODS_SPEC §9.2): (table, method id, average).
FLAGGED_AVG = {("p2_tab1_resnet50", "real_filter", "Avg-10")}
#: The one printed [Δ] that is not Avg - Original's Avg (P2 Tab.1 as printed; not in METHODS_SPEC §9.2).
FLAGGED_DELTA = {("p2_tab1_resnet50", "diff_aug", "Avg-5")}
#: Printed values have two decimals, so a recomputed mean or difference is off by at most 0.01.
ROUNDING = 0.01 + 1e-9


def test_every_published_table_loads_with_all_cells():
    assert list_published() == sorted(TABLES)
    assert not list(PUBLISHED_DIR.parent.rglob("*.py"))  # reports/ is data only (DESIGN.md "Layout")
    for table_id, protocol in TABLES.items():
        table = load_published(table_id)
        assert table.id == table_id and table.protocol == protocol
        assert "METHODS_SPEC §9" in table.source
        for row in table.rows:
            assert list(row.cells) == list(table.columns)
            assert all(0 < mean < 100 for mean, _ in row.cells.values())
    p1 = load_published("p1_tab1")
    assert p1.trials == 5 and p1.row("SD-random").cells[("aircraft", "full")] == (78.27, 0.33)


def test_unknown_table_names_the_available_ones():
    with pytest.raises(PublishedError, match="p2_tab1_resnet50.*p2_tab3"):
        load_published("p2_tab9")
    with pytest.raises(PublishedError, match="no row 'diff_ii'"):
        load_published("p1_tab1").row("diff_ii")


def _mean(row, columns):
    return sum(row.cells[c][0] for c in columns) / len(columns)


def test_printed_averages_match_their_cells_except_the_flagged_ones():
    """Avg = mean of the averaged cells, [Δ] = Avg - the baseline's Avg (P2 Tab.1/3). P2 Tab.2 prints only
    the difference of the row's mean to CE's mean for every row but CE (METHODS_SPEC §9.3)."""
    avg_mismatches, delta_mismatches = set(), set()
    checked = 0
    for table_id in TABLES:
        table = load_published(table_id)
        if not table.averages:  # P2 Tab.4 prints no Avg
            continue
        base = table.row("original")
        for row in table.rows:
            for i, average in enumerate(table.averages):
                avg, delta = row.avg[i], row.delta[i]
                assert avg is not None or delta is not None, (table_id, row.method, average.label)
                if avg is not None and abs(avg - _mean(row, average.columns)) > ROUNDING:
                    avg_mismatches.add((table_id, row.method_id, average.label))
                expected = (avg - base.avg[i] if avg is not None
                            else _mean(row, average.columns) - _mean(base, average.columns))
                if delta is not None and abs(delta - expected) > ROUNDING:
                    delta_mismatches.add((table_id, row.method_id, average.label))
                checked += 1
    assert checked == 2 * 10 + 2 * 10 + 2 * 7 + 8
    assert avg_mismatches == FLAGGED_AVG
    assert delta_mismatches == FLAGGED_DELTA


def test_flagged_cells_are_recorded_in_the_notes():
    table = load_published("p2_tab1_resnet50")
    real_filter = table.row("real_filter")
    assert real_filter.avg[1] == 70.66
    assert _mean(real_filter, table.averages[1].columns) == pytest.approx(68.59, abs=0.005)
    notes = " ".join(table.notes)
    assert "Real-Filter" in notes and "70.66" in notes and "68.59" in notes and "§9.2" in notes
    assert table.row("diff_aug").delta[0] == 8.78 and "Diff-AUG" in notes and "8.48" in notes
    assert "CE" in " ".join(load_published("p2_tab2").notes)  # the Avg convention


def test_p1_text_claims_noisecutmix_over_cutmix():
    table = load_published("p1_tab1")
    ours, cutmix = table.row("noisecutmix"), table.row("cutmix")
    gain = {d: round(ours.cells[(d, "full")][0] - cutmix.cells[(d, "full")][0], 2) for d in ("cub", "flowers")}
    assert gain == {"cub": 2.27, "flowers": 2.98}


def test_method_ids_are_registered_or_planned():
    registry = default_registry()
    for table_id in TABLES:
        for row in load_published(table_id).rows:
            assert row.method_id in REGISTERED | PLANNED, (table_id, row.method)
            if row.method_id in REGISTERED:
                assert row.method_id in registry
    assert load_published("p2_tab2").row("CE").method_id == "original"


def _records(method, accs, dataset_params):
    """One synthetic record per (dataset, protocol params) with top-1 ``accs[i]``."""
    return [cell_record(method, 0, dataset=dataset, params=params, metrics={"top1": acc}, selection="max_test",
                        profile="sd15") for acc, (dataset, params) in zip(accs, dataset_params)]


def test_markdown_shows_matching_published_columns_only():
    cells = [("cub", {"shots": 5}), ("flowers", {"shots": 5}), ("pets", {"shots": 5})]
    table = build_table("few_shot", _records("original", [50.0, 60.0, 70.0], cells))
    published = [load_published("p2_tab1_resnet50")]
    md = to_markdown(table, "ours", published)
    assert md.startswith(to_markdown(table, "ours"))
    ours, paper = markdown_tables(md)
    assert ours[1][:5] == ["original", "50.00", "60.00", "70.00", "60.00"]
    assert paper[0] == ["Method (paper)", "id", "cub (shots=5)", "pets (shots=5)"]  # our order, no Avg-5 (incomplete)
    assert ["Original", "original", "54.52", "86.98"] in paper
    assert ["Ours (Diff-II)", "diff_ii", "62.22", "89.84"] in paper
    assert len(paper) == 1 + len(published[0].rows)
    assert "36.63" not in md  # aircraft: not a column of ours
    assert "P2 L190-213" in md and "68.59" in md
    assert r"\begin{tabular}{lccc}" in to_latex(table, "ours", published)
    assert "source" not in to_csv(table).splitlines()[0]


def test_printed_averages_appear_when_all_their_columns_are_shown():
    cells = [(d, {"shots": 5}) for d in ("aircraft", "cars", "cub", "pets")]
    table = build_table("few_shot", _records("original", [40.0] * 4, cells))
    _, paper = markdown_tables(to_markdown(table, "ours", [load_published("p2_tab1_resnet50")]))
    assert paper[0][-1] == "Avg-5 [Δ]"
    assert ["Mixup", "mixup", "36.75", "41.43", "54.33", "86.36", "54.72 [+0.16]"] in paper
    lt_cells = [(d, {"imbalance_factor": f}) for d in ("cub", "flowers") for f in (100, 20, 10)]
    lt = build_table("long_tail", _records("original", [50.0] * 6, lt_cells))
    _, paper = markdown_tables(to_markdown(lt, "ours", [load_published("p2_tab2")]))
    assert ["CE", "original", "33.65", "44.82", "58.13", "80.43", "90.87", "95.07", "45.53", "88.79"] in paper
    assert ["Ours (Diff-II)", "diff_ii", "51.21", "62.31", "70.28", "89.54", "94.39", "97.35", "[+15.74]",
            "[+4.97]"] in paper


def test_suite_report_renders_waterbirds_side_by_side(tmp_path):
    suite = tmp_path / "wb.toml"
    suite.write_text('[suite]\nprotocol = "waterbirds"\ntable = "waterbirds"\ndatasets = ["cub"]\n'
                     'methods = ["original"]\nseeds = [0]\nrecipe = "diff_ii_resnet50"\n'
                     '[profiles.sd15]\npublished = ["p2_tab3"]\n')
    groups = {"00": 40.0, "11": 30.0, "01": 36.0, "10": 26.0}
    record = _records("original", [33.0], [("cub", {"shots": 5})])[0]
    record.metrics.update(groups=groups, worst_group=26.0, pooled=33.0)
    record.write(tmp_path)
    md_path, tex_path, csv_path, html_path = render_suite_report(str(suite), tmp_path, profile="sd15", echo=None)
    ours, paper = markdown_tables(md_path.read_text())
    assert ours[1][:6] == ["original", "40.00", "30.00", "36.00", "26.00", "33.00"]
    assert ["Ours (Diff-II)", "diff_ii", "49.84", "41.46", "51.01", "42.03", "46.09 [+11.39]"] in paper
    assert html_tables(html_path.read_text()) == [ours, paper]  # the page shows the same cells
    assert tex_path.read_text().count(r"\begin{tabular}") == 2
    rows = list(csv.reader(csv_path.read_text().splitlines()))
    assert rows[0][-3:] == ["clip_score", "oracle_fidelity", "source"] and rows[1][-1] == "measured"
    assert ["diff_ii", "groups", "W,L", "42.0300", "", "3", "46.0900", "11.3900", *[""] * 4, "", "", "", "p2_tab3"] in rows
    assert len(rows) == 1 + 6 + 8 * 4

"""Diff-II's ablation (P2 Tab.4, METHODS_SPEC §9.5) and split-ratio sweep (P2 Fig.7, §9.6) reports: the
Tab.4 layout, the published LPIPS column, the oracle-captioner flag and the CLIP / LPIPS plot against s."""

from __future__ import annotations

import csv
import json

import pytest
from record_builders import artifact, cell_record, synthetic_set
from report_parsing import html_tables, markdown_tables

from augbench.registry import default_registry
from augbench.reporting.formats import to_csv, to_latex, to_markdown
from augbench.reporting.plots import sweep_points, swept_parameter
from augbench.reporting.published import PublishedError, load_published
from augbench.reporting.run_report import render_suite_report
from augbench.reporting.tables import ORACLE_MARK, build_table, caption
from augbench.run.suites import load_suite, validate_suite

PRESETS = ["diff_ii.vanilla_t2i", "diff_ii.cl_only", "diff_ii.cl_li", "diff_ii.cl_li_td", "diff_ii.cl_si",
           "diff_ii.cl_si_se", "diff_ii.cl_td", "diff_ii"]


def _record(method, top1, lpips=None, clip=None, seed=0, dataset="aircraft", oracle=False, params=None):
    recipe = {"source": "world", "oracle_captioner": True} if oracle else {"source": "file"}
    return cell_record(method, seed, dataset=dataset, metrics={"top1": top1}, profile="sd15", method_params=params,
                       artifacts=[artifact("lora_ti"), artifact("suffixes", **recipe)],
                       synthetic=synthetic_set(lpips, clip, key=f"k-{method}-{seed}"))


def test_p2_tab4_is_transcribed_with_its_lpips_column():
    table = load_published("p2_tab4")
    assert [r.method_id for r in table.rows] == PRESETS
    assert [r.lpips for r in table.rows] == [49.9, 47.9, 27.5, 30.4, 35.4, 51.5, 50.0, 52.7]
    assert [r.cells[("aircraft", "shots=5")][0] for r in table.rows] == [31.53, 38.74, 37.32, 38.37, 37.70, 40.49,
                                                                          40.78, 42.15]
    # the full model's accuracy is P2 Tab.1's ResNet-50 Aircraft 5-shot cell (METHODS_SPEC §9.5)
    assert table.row("diff_ii").cells == {("aircraft", "shots=5"): load_published("p2_tab1_resnet50").row(
        "diff_ii").cells[("aircraft", "shots=5")]}
    assert load_published("p2_tab3").rows[0].lpips is None  # other tables print none


def test_a_malformed_lpips_is_refused(tmp_path, monkeypatch):
    import augbench.reporting.published as published

    text = (published.PUBLISHED_DIR / "p2_tab4.toml").read_text().replace("lpips = 49.9", 'lpips = "49.9%"')
    (tmp_path / "p2_tab4.toml").write_text(text)
    monkeypatch.setattr(published, "PUBLISHED_DIR", tmp_path)
    with pytest.raises(PublishedError, match="'lpips' must be the printed LPIPS in %"):
        load_published("p2_tab4")


def test_ablation_table_has_lpips_then_accuracy_and_no_avg_and_shows_the_paper_beside():
    records = [_record(m, 30.0 + i, lpips=40.0 + i, clip=25.0) for i, m in enumerate(PRESETS)]
    records.append(_record("diff_ii", 39.0, lpips=49.0, clip=26.0, seed=1))
    table = build_table("ablation", records, method_order=PRESETS)
    assert list(table.frame().columns) == ["Method", "LPIPS", "aircraft (shots=5)", "CLIP"]
    pub = load_published("p2_tab4")
    ours, paper = markdown_tables(to_markdown(table, "ours", [pub]))
    assert [row[0] for row in ours[1:]] == PRESETS
    assert ours[-1] == ["diff_ii", "48.0", "38.00 ± 1.41", "25.5"]
    assert paper[0] == ["Method (paper)", "id", "LPIPS", "aircraft (shots=5)"]
    assert paper[-1][1:] == ["diff_ii", "52.7", "42.15"]
    rows = list(csv.reader(to_csv(table, [pub]).splitlines()))
    lpips_at = rows[0].index("lpips")
    assert [r[lpips_at] for r in rows if r[-1] == "p2_tab4" and r[0] == "diff_ii.cl_li"] == ["27.5000"]
    cap = caption(table, {"name": "diff_ii_ablation"}, "sd15")
    assert "paired" in cap and ORACLE_MARK not in cap and "Avg =" not in cap  # the table has no Avg column
    assert r"\begin{tabular}{lccc}" in to_latex(table, cap, [])


def test_world_suffixes_are_flagged_as_an_oracle_captioner():
    records = [_record("diff_ii", 40.0, lpips=50.0, clip=25.0, oracle=True), _record("diff_ii.cl_only", 38.0)]
    table = build_table("ablation", records)
    assert table.oracle_captioner == ["diff_ii"]
    frame = table.frame()
    assert list(frame["Method"]) == [f"diff_ii {ORACLE_MARK}", "diff_ii.cl_only"]
    cap = caption(table, {"name": "x"}, "embedded")
    assert "ORACLE CAPTIONER" in cap and "ground-truth captions" in cap and "diff_ii" in cap
    assert r"$\ddagger$" in to_latex(table, cap, [])
    few_shot = build_table("few_shot", records)  # the flag does not depend on the table kind
    assert few_shot.oracle_captioner == ["diff_ii"] and "ORACLE CAPTIONER" in caption(few_shot, {"name": "x"}, "e")


SWEEP = ["diff_ii(split_ratio=0.0)", "diff_ii(split_ratio=0.3)", "diff_ii(split_ratio=1.0)", "diff_ii(split_ratio=0.1)"]


def test_sweep_points_read_the_swept_value_from_the_entries():
    assert swept_parameter(SWEEP) == "split_ratio"
    assert swept_parameter(["diff_ii", "diff_ii.cl_only"]) is None
    records = [_record(m, 40.0, lpips=10.0 * i, clip=30.0 - i) for i, m in enumerate(SWEEP)]
    records.append(_record("diff_ii", 41.0, lpips=5.0, clip=31.0, params={"split_ratio": 0.5}))
    records.append(_record("diff_ii.cl_only", 41.0, lpips=5.0, clip=31.0, params={"split_ratio": "auto"}))
    table = build_table("sweep", records)
    points = sweep_points(table, records)
    assert [p.value for p in points] == [0.0, 0.1, 0.3, 0.5, 1.0]  # sorted; "auto" is left out
    assert [(p.method, p.clip_score, p.lpips) for p in points][:2] == [
        ("diff_ii(split_ratio=0.0)", 30.0, 0.0), ("diff_ii(split_ratio=0.1)", 27.0, 30.0)]


def test_sweep_suite_report_embeds_the_plot_and_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")  # the report extra; the page is still written without it
    suite = tmp_path / "sweep.toml"
    suite.write_text('[suite]\nprotocol = "few_shot"\ntable = "sweep"\ndatasets = ["aircraft"]\nseeds = [0]\n'
                     f'methods = {json.dumps(SWEEP)}\n')
    for i, m in enumerate(SWEEP):
        _record(m, 40.0, lpips=10.0 * i, clip=30.0 - i).write(tmp_path)
    paths = render_suite_report(str(suite), tmp_path, profile="sd15", echo=None)
    png = tmp_path / "reports" / "sweep_sweep.png"
    assert png in paths and png.read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "reports" / "sweep.html").read_text()
    assert "against split_ratio" in page and page.count("data:image/png;base64") >= 2
    ours = markdown_tables((tmp_path / "reports" / "sweep.md").read_text())[0]
    assert [row[0] for row in ours[1:]] == SWEEP and ours[0][:3] == ["Method", "LPIPS", "aircraft (shots=5)"]
    assert html_tables(page)[0] == ours


@pytest.mark.parametrize("name, rows", [("diff_ii_ablation", PRESETS), ("split_ratio", None)])
def test_built_in_suites_load_in_both_profiles(name, rows):
    for profile in ("embedded", "sd15"):
        suite = load_suite(name, profile)
        validate_suite(suite, default_registry())
        assert suite.shots == (5,) and suite.table_kind in ("ablation", "sweep")
    sd15 = load_suite(name, "sd15")
    assert sd15.recipe == "diff_ii_resnet50"
    if rows:
        assert list(load_suite(name).methods) == rows and sd15.datasets == ("aircraft",)
        assert sd15.published == ("p2_tab4",)
    else:
        methods = load_suite(name).methods
        assert swept_parameter(methods) == "split_ratio" and len(methods) == 6 and sd15.datasets == ("cub",)

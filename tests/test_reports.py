"""Tables from records alone: few-shot / long-tail columns, Waterbirds groups, caption facts, and the
Markdown / LaTeX / CSV renderings of the same numbers."""

from __future__ import annotations

import csv
import math

import pytest
from record_builders import artifact, cell_record, synthetic_set, training
from report_parsing import markdown_tables

from augbench.reporting.formats import csv_frame, to_csv, to_latex, to_markdown
from augbench.reporting.tables import build_table, caption, replacement_mode


def _record(method, seed, dataset="toybirds", params=None, metrics=None, lpips=None, clip=None, **extra):
    synthetic = synthetic_set(lpips, clip) if lpips is not None or clip is not None else None
    return cell_record(method, seed, dataset=dataset, params=params, metrics=metrics, synthetic=synthetic, **extra)


def _groups(ll, ww, lw, wl):
    groups = {"00": ll, "11": ww, "01": lw, "10": wl}
    return {"top1": sum(groups.values()) / 4 + 1.0, "groups": groups, "group_mean": sum(groups.values()) / 4,
            "worst_group": min(groups.values()), "pooled": sum(groups.values()) / 4 + 1.0}


def test_waterbirds_table_has_p2_group_columns_mean_worst_and_delta():
    records = [_record("original", 0, metrics=_groups(40, 30, 36, 26)),
               _record("original", 1, metrics=_groups(42, 32, 38, 28)),
               _record("sd_random", 0, metrics=_groups(50, 40, 46, 36), lpips=20.0, clip=30.0),
               _record("sd_random", 1, metrics=_groups(52, 42, 48, 38), lpips=22.0, clip=32.0),
               _record("sd_random", 2, metrics={"top1": 10.0})]  # no group metrics: not a Waterbirds record
    table = build_table("waterbirds", records, ["original", "sd_random"])
    assert table.labels == ["L,L", "W,W", "L,W", "W,L"] and table.seeds == [0, 1]
    assert table.cell("original", ("groups", "L,L")) == pytest.approx((41.0, math.sqrt(2), 2))
    assert table.summary.loc["original", "avg"] == pytest.approx((41 + 31 + 37 + 27) / 4)
    assert table.summary.loc["sd_random", "delta"] == pytest.approx(10.0)
    assert table.cell("sd_random", ("summary", "worst")) == pytest.approx((37.0, math.sqrt(2), 2))
    assert table.summary.loc["sd_random", "lpips"] == pytest.approx(21.0)
    assert math.isnan(table.summary.loc["original", "lpips"])

    md = to_markdown(table, caption(table, {"name": "waterbirds"}, "embedded"))
    [rows] = markdown_tables(md)
    assert rows == [["Method", "L,L", "W,W", "L,W", "W,L", "Avg [Δ]", "Δ paired (95% CI)", "Worst", "Pooled", "LPIPS",
                     "CLIP"],
                    ["original", "41.00 ± 1.41", "31.00 ± 1.41", "37.00 ± 1.41", "27.00 ± 1.41", "34.00", "—",
                     "27.00 ± 1.41", "35.00 ± 1.41", "—", "—"],
                    ["sd_random", "51.00 ± 1.41", "41.00 ± 1.41", "47.00 ± 1.41", "37.00 ± 1.41", "44.00 [+10.00]",
                     "+10.00 [+10.00, +10.00]*", "37.00 ± 1.41", "45.00 ± 1.41", "21.0", "31.0"]]
    assert "unweighted mean of the four groups" in md and "seeds [0, 1]" in md

    tex = to_latex(table, "c")
    assert r"Method & L,L & W,W & L,W & W,L & Avg [$\Delta$] & $\Delta$ paired (95\% CI) & Worst & Pooled & LPIPS & CLIP \\" in tex
    assert r"sd\_random & 51.00 $\pm$ 1.41 &" in tex and r"original & 41.00 $\pm$ 1.41" in tex
    assert r"\begin{tabular}{lcccccccccc}" in tex and r"\toprule" in tex and r"\caption{c}" in tex
    assert "& -- & --" in tex  # no synthetic metrics for original

    rows = list(csv.DictReader(to_csv(table).splitlines()))
    assert len(rows) == 2 * 6 and "source" not in rows[0]
    last = rows[-1]
    assert (last["method"], last["dataset"], last["setting"]) == ("sd_random", "summary", "pooled")
    assert last["top1_mean"] == "45.0000" and last["top1_std"] == f"{math.sqrt(2):.4f}" and last["n_seeds"] == "2"
    assert last["avg"] == "44.0000" and last["delta_vs_original"] == "10.0000" and last["lpips"] == "21.0000"
    assert rows[0]["lpips"] == "" and rows[0]["delta_vs_original"] == "0.0000"
    # the paired difference to original over seeds, with its 95 % interval (the tables' Δ paired column)
    assert (last["paired_delta"], last["paired_ci_low"], last["paired_ci_high"], last["paired_seeds"]) == (
        "10.0000", "10.0000", "10.0000", "2")
    assert rows[0]["paired_delta"] == "" and rows[0]["method"] == "original"  # the reference itself


def test_few_shot_columns_in_numeric_order_avg_only_when_complete_and_one_seed_without_std():
    records = [_record("original", 0, params={"shots": 10}, metrics={"top1": 60.0}),
               _record("original", 0, params={"shots": 5}, metrics={"top1": 50.0}),
               _record("cutmix", 0, params={"shots": 5}, metrics={"top1": 54.0}),
               _record("cutmix", 0, dataset="aircraft", params={"shots": 5}, metrics={"top1": 30.0}),
               _record("original", 0, dataset="aircraft", params={"shots": 5}, metrics={"top1": 28.0})]
    table = build_table("few_shot", records, ["cutmix"])
    assert table.methods == ["cutmix", "original"]  # the suite's order first, then record order
    assert table.labels == ["aircraft (shots=5)", "toybirds (shots=5)", "toybirds (shots=10)"]
    assert table.cell("original", ("toybirds", "shots=10")) == (60.0, None, 1)
    assert table.cell("cutmix", ("toybirds", "shots=10")) == (pytest.approx(math.nan, nan_ok=True), None, 0)
    assert math.isnan(table.summary.loc["cutmix", "avg"])  # a missing column: no Avg, no Δ
    [rows] = markdown_tables(to_markdown(table, "cap"))
    assert rows[1] == ["cutmix", "30.00", "54.00", "—", "—", "—", "—"]
    assert rows[2] == ["original", "28.00", "50.00", "60.00", "46.00", "—", "—"]
    frame = csv_frame(table)
    assert frame["n_seeds"].isna().tolist() == [False, False, True, False, False, False]  # cutmix: no 10-shot cell
    assert to_csv(table).splitlines()[3] == "cutmix,toybirds,shots=10" + "," * 12


def test_long_tail_table_orders_imbalance_factors_and_reports_class_groups():
    records = []
    for seed in (0, 1):
        for imbalance, acc in ((100, 30.0), (10, 60.0), (20, 45.0)):
            metrics = {"top1": acc + seed, "class_groups": {"many": acc + 10 + 2 * seed, "medium": acc, "few": None}}
            records.append(_record("original", seed, params={"imbalance_factor": imbalance}, metrics=metrics))
    table = build_table("long_tail", records)
    assert [label for _, label in table.columns] == ["imbalance_factor=100", "imbalance_factor=20",
                                                     "imbalance_factor=10"]  # P2 Tab.2 order
    assert table.summary.loc["original", "avg"] == pytest.approx(45.5)
    md = to_markdown(table, caption(table, {"name": "long_tail"}, "embedded"))
    ours, groups = markdown_tables(md)
    assert ours[1][:4] == ["original", "30.50 ± 0.71", "45.50 ± 0.71", "60.50 ± 0.71"]
    assert groups == [["Method", "toybirds (imbalance_factor=100)", "toybirds (imbalance_factor=20)",
                       "toybirds (imbalance_factor=10)"],
                      ["original", "41.0 / 30.0 / —", "56.0 / 45.0 / —", "71.0 / 60.0 / —"]]
    assert "**Many / medium / few (mean per-class accuracy, %)**" in md and "METHODS_SPEC §6.2" in md
    assert to_latex(table, "c").count(r"\begin{tabular}") == 2


def test_caption_states_replacement_mode_per_family_and_flags_foreign_artifacts():
    foreign = [artifact("lora_ti", foreign=True)]
    records = [
        _record("original", 0, metrics={"top1": 50.0}),
        _record("sd_random", 0, metrics={"top1": 52.0}, lpips=20.0, training=training("concat")),
        _record("sd_random+cutmix", 0, metrics={"top1": 53.0}, lpips=20.0, training=training("concat", 0.5)),
        _record("diff_mix.uniform_strength", 0, params={"shots": 10}, metrics={"top1": 58.0}, lpips=25.0,
                training=training("global_pool", 0.1), artifacts=foreign),
        _record("diff_mix.uniform_strength", 0, metrics={"top1": 55.0}, lpips=25.0,
                training=training("global_pool", 0.1), artifacts=[artifact("lora_ti")]),
    ]
    table = build_table("few_shot", records)
    assert table.replacement_modes == {"sd_random": ["concat"], "diff_mix": ["global_pool (p = 0.1)"]}
    assert table.foreign_artifacts == {"diff_mix.uniform_strength": ["toybirds (shots=10)"]}
    cap = caption(table, {"name": "few_shot"}, "embedded")
    assert "replacement mode (METHODS_SPEC §4) — sd_random: concat; diff_mix: global_pool (p = 0.1)." in cap
    assert "FOREIGN ARTIFACTS" in cap and "diff_mix.uniform_strength (toybirds (shots=10))" in cap
    [rows] = markdown_tables(to_markdown(table, cap))
    assert [r[0] for r in rows[1:]] == ["original", "sd_random", "sd_random+cutmix", "diff_mix.uniform_strength †"]
    tex = to_latex(table, cap)
    assert r"diff\_mix.uniform\_strength $\dagger$ &" in tex and r"$\dagger$ FOREIGN ARTIFACTS" in tex
    # without synthetic sets or foreign artifacts the caption says nothing about either
    plain = caption(build_table("few_shot", records[:1]), {"name": "few_shot"}, "embedded")
    assert "replacement mode" not in plain and "FOREIGN" not in plain


def test_unknown_table_kind_is_an_error():
    with pytest.raises(ValueError, match="waterbirds"):
        build_table("no_such_table", [])


def test_oracle_fidelity_gets_a_column_when_the_profile_has_an_oracle():
    def with_fid(rec, value):
        rec.synthetic["metrics"]["oracle_fidelity"] = {"metric": "oracle_fidelity", "value": value}
        return rec

    records = [_record("original", 0, metrics={"top1": 50.0}),
               with_fid(_record("sd_random", 0, metrics={"top1": 40.0}, lpips=20.0, clip=30.0), 25.0),
               with_fid(_record("sd_random", 1, metrics={"top1": 42.0}, lpips=20.0, clip=30.0), 35.0)]
    table = build_table("few_shot", records, ["original", "sd_random"])
    md = to_markdown(table, caption(table, {"name": "few_shot"}, "embedded"))
    [rows] = markdown_tables(md)
    assert rows[0][-1] == "Fid." and rows[1][-1] == "—" and rows[2][-1] == "30.0"
    assert "Fid. = oracle fidelity" in md
    no_oracle = build_table("few_shot", [_record("sd_random", 0, metrics={"top1": 40.0}, lpips=20.0, clip=30.0)])
    assert "Fid." not in no_oracle.frame().columns  # sd15: no oracle, no column
    assert list(csv.DictReader(to_csv(table).splitlines()))[-1]["oracle_fidelity"] == "30.0000"


def test_caption_names_the_artifacts_each_method_used():
    records = [_record("original", 0, metrics={"top1": 50.0}),
               _record("da_fusion", 0, metrics={"top1": 52.0}, lpips=20.0, clip=30.0,
                       artifacts=[artifact("ti")]),
               _record("diff_gen", 0, metrics={"top1": 51.0}, lpips=20.0, clip=30.0,
                       artifacts=[artifact("lora_ti")])]
    table = build_table("few_shot", records)
    text = caption(table, {"name": "few_shot"}, "embedded")
    assert "da_fusion: ti; diff_gen: lora_ti" in text
    assert "original:" not in text.split("Artifacts")[1]


def test_paired_differences_to_original_with_95_percent_intervals_and_marks():
    original = {0: (50.0, 60.0), 1: (44.0, 58.0), 2: (53.0, 61.0)}
    lifts = {"mixup": (4.0, 5.0, 6.0), "cutmix": (-6.0, 7.0, 2.0)}  # consistent vs noisy gains
    records = []
    for seed, (five, ten) in original.items():
        records += [_record("original", seed, params={"shots": 5}, metrics={"top1": five}),
                    _record("original", seed, params={"shots": 10}, metrics={"top1": ten})]
        for method, lift in lifts.items():
            records += [_record(method, seed, params={"shots": 5}, metrics={"top1": five + lift[seed]}),
                        _record(method, seed, params={"shots": 10}, metrics={"top1": ten + lift[seed]})]
    table = build_table("few_shot", records, ["original", "mixup", "cutmix"])
    mixup = table.summary.loc["mixup"]
    # diffs 4, 5, 6: mean 5, std 1, t(0.975, 2) = 4.303 -> half width 4.303 / sqrt(3) = 2.484
    assert mixup["paired_diff"] == pytest.approx(5.0) and mixup["paired_n"] == 3
    assert (mixup["paired_lo"], mixup["paired_hi"]) == (pytest.approx(2.516, abs=1e-3), pytest.approx(7.484, abs=1e-3))
    [rows] = markdown_tables(to_markdown(table, "cap"))
    header = rows[0]
    col = header.index("Δ paired (95% CI)")
    assert rows[2][col] == "+5.00 [+2.52, +7.48]*"  # excludes zero: marked
    assert rows[3][col].startswith("+1.00 [") and not rows[3][col].endswith("*")  # noisy: not marked
    assert rows[1][col] == "—"
    text = caption(table, {"name": "few_shot"}, "embedded")
    assert "95 % Student-t interval" in text and "* = the interval excludes zero" in text


def test_one_seed_caption_says_smoke_test_and_no_interval_column():
    records = [_record("original", 0, metrics={"top1": 50.0}), _record("mixup", 0, metrics={"top1": 57.0})]
    table = build_table("few_shot", records)
    [rows] = markdown_tables(to_markdown(table, "cap"))
    assert "Δ paired (95% CI)" not in rows[0]
    assert "ONE SEED: a smoke test" in caption(table, {"name": "few_shot"}, "embedded")


def test_replacement_mode_reads_the_records_training_and_only_with_a_synthetic_set():
    with_set = _record("sd_random", 0, metrics={"top1": 1.0}, lpips=1.0, training=training("same_class", 0.25))
    assert replacement_mode(with_set) == "same_class (p = 0.25)"
    assert replacement_mode(_record("sd_random", 0, lpips=1.0, training=training("concat", 0.25))) == "concat"
    # a real-only cell has nothing to replace, whatever the suite's defaults
    assert replacement_mode(_record("original", 0, training=training("same_class"))) is None

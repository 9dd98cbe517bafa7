"""Tables from records alone: few-shot / long-tail columns, Waterbirds groups, caption facts."""

from __future__ import annotations

import math

import pytest

from benchmark.reports import build_table, caption, to_csv, to_latex, to_markdown


def _record(method, seed, dataset="toybirds", params=None, metrics=None, lpips=None):
    return {"cell": {"method": method, "seed": seed, "dataset": dataset, "protocol_params": params or {"shots": 5}},
            "metrics": metrics, "selection": "val_split", "profile": "embedded",
            "synthetic": {"metrics": {"lpips": {"value": lpips, "metric": "lpips_alex"}}} if lpips else None}


def _groups(ll, ww, lw, wl):
    groups = {"00": ll, "11": ww, "01": lw, "10": wl}
    return {"top1": sum(groups.values()) / 4 + 1.0, "groups": groups, "group_mean": sum(groups.values()) / 4,
            "worst_group": min(groups.values()), "pooled": sum(groups.values()) / 4 + 1.0}


def test_waterbirds_table_has_p2_group_columns_mean_worst_and_delta():
    records = [_record("original", 0, metrics=_groups(40, 30, 36, 26)),
               _record("original", 1, metrics=_groups(42, 32, 38, 28)),
               _record("sd_random", 0, metrics=_groups(50, 40, 46, 36), lpips=20.0),
               _record("sd_random", 1, metrics=_groups(52, 42, 48, 38), lpips=22.0)]
    table = build_table("waterbirds", records, ["original", "sd_random"])
    assert table["labels"] == ["L,L", "W,W", "L,W", "W,L"]
    orig, sd = table["rows"]
    assert orig["cells"][("groups", "L,L")] == pytest.approx((41.0, math.sqrt(2)))
    assert orig["avg"] == pytest.approx((41 + 31 + 37 + 27) / 4)
    assert sd["delta"] == pytest.approx(10.0)
    assert sd["extra"]["worst"][0] == pytest.approx(37.0) and sd["lpips"] == pytest.approx(21.0)
    md = to_markdown(table, caption(table, {"name": "waterbirds"}, "embedded"))
    assert "| Method | L,L | W,W | L,W | W,L | Avg [Δ] | Worst | Pooled | LPIPS | CLIP |" in md
    assert "| sd_random | 51.00 ± 1.41 |" in md and "[+10.00]" in md
    assert "unweighted mean of the four groups" in md
    assert r"W,L & Avg [$\Delta$] & Worst" in to_latex(table, "c")
    rows = to_csv(table).splitlines()
    assert len(rows) == 1 + 2 * 6 and rows[-1].startswith("sd_random,summary,pooled,")


def test_long_tail_table_orders_imbalance_factors_and_reports_class_groups():
    records = []
    for imbalance, acc in ((100, 30.0), (10, 60.0), (20, 45.0)):
        metrics = {"top1": acc, "class_groups": {"many": acc + 10, "medium": acc, "few": None}}
        records.append(_record("original", 0, params={"imbalance_factor": imbalance}, metrics=metrics))
    table = build_table("long_tail", records)
    assert [label for _, label in table["columns"]] == ["imbalance_factor=100", "imbalance_factor=20",
                                                        "imbalance_factor=10"]  # P2 Tab.2 order
    assert table["rows"][0]["avg"] == pytest.approx(45.0)
    md = to_markdown(table, caption(table, {"name": "long_tail"}, "embedded"))
    assert "Many / medium / few" in md and "70.0 / 60.0 / —" in md
    assert "METHODS_SPEC §6.2" in md


def test_unknown_table_kind_is_an_error():
    with pytest.raises(ValueError, match="waterbirds"):
        build_table("no_such_table", [])

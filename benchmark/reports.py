"""Paper-style tables from result records (DESIGN.md, "Results and reports").

Reports read records only (no model, no GPU). The few-shot table follows P2 Tab.1's layout
(METHODS_SPEC §9.2): rows = methods, columns = dataset × shots, each cell the mean ± sample std
(ddof = 1, METHODS_SPEC §7.1/U19) of top-1 accuracy over trial seeds, an ``Avg`` column with the
difference to ``original`` in brackets, and the synthetic-set metrics of each method (LPIPS diversity,
CLIP score; METHODS_SPEC §7.2-7.3). The caption states the selection rule, the seeds and the metric
definitions, so a table can never be read without them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmark.runner import default_run_dir, load_suite

SELECTION_TEXT = {
    "val_split": "epoch chosen by accuracy on a validation split carved from the training subset",
    "last_epoch": "last epoch",
    "max_test": "best epoch on the TEST set (the papers' rule; optimistic, for parity only)",
}


def load_records(run_dir: Path, profile: str | None = None) -> list[dict[str, Any]]:
    records = []
    for p in sorted((run_dir / "records").glob("*.json")):
        rec = json.loads(p.read_text(encoding="utf-8"))
        if profile is None or rec.get("profile") == profile:
            records.append(rec)
    return records


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    if not values:
        return math.nan, None
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def few_shot_table(records: list[dict[str, Any]], method_order: list[str] | None = None) -> dict[str, Any]:
    """Aggregate records into the few-shot table structure (also used by other protocols' tables)."""
    cols: list[tuple[str, str]] = []
    acc: dict[tuple[str, tuple[str, str]], list[float]] = defaultdict(list)
    seeds: set[int] = set()
    syn: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    selections, lpips_names = set(), set()
    methods: list[str] = []
    for rec in records:
        cell = rec["cell"]
        method = cell["method"]
        if method not in methods:
            methods.append(method)
        params = cell.get("protocol_params", {})
        col = (cell["dataset"], ", ".join(f"{k}={v}" for k, v in params.items()) or "full")
        if col not in cols:
            cols.append(col)
        top1 = (rec.get("metrics") or {}).get("top1")
        if top1 is not None:
            acc[(method, col)].append(float(top1))
        seeds.add(cell["seed"])
        selections.add(rec.get("selection"))
        s = (rec.get("synthetic") or {}).get("metrics") or {}
        lp = s.get("lpips") or {}
        if lp.get("value") is not None:
            syn[method]["lpips"].append(float(lp["value"]))
            lpips_names.add(lp.get("metric") or lp.get("name") or "lpips")
        cs = s.get("clip_score") or {}
        if cs.get("value") is not None:
            syn[method]["clip_score"].append(float(cs["value"]))
    if method_order:
        methods = [m for m in method_order if m in methods] + [m for m in methods if m not in method_order]
    cols.sort(key=lambda c: (c[0], _shots_key(c[1])))
    rows = []
    base_avg = None
    for method in methods:
        cells = {col: _mean_std(acc.get((method, col), [])) for col in cols}
        n = {col: len(acc.get((method, col), [])) for col in cols}
        means = [cells[c][0] for c in cols if not math.isnan(cells[c][0])]
        avg = sum(means) / len(means) if len(means) == len(cols) and means else math.nan
        if method == "original":
            base_avg = avg
        rows.append({"method": method, "cells": cells, "n": n, "avg": avg,
                     "lpips": _mean_or_none(syn[method]["lpips"]), "clip_score": _mean_or_none(syn[method]["clip_score"])})
    for row in rows:
        row["delta"] = (row["avg"] - base_avg) if base_avg is not None and not math.isnan(row["avg"]) else None
    return {"columns": cols, "rows": rows, "seeds": sorted(seeds), "selection": sorted(s for s in selections if s),
            "lpips_names": sorted(n for n in lpips_names if n)}


def _mean_or_none(v: list[float]) -> float | None:
    return sum(v) / len(v) if v else None


def _shots_key(label: str) -> Any:
    digits = "".join(ch for ch in label if ch.isdigit() or ch == ".")
    try:
        return float(digits)
    except ValueError:
        return label


def caption(table: dict[str, Any], spec: dict[str, Any], profile: str) -> str:
    seeds = table["seeds"]
    sel = "; ".join(SELECTION_TEXT.get(s, s) for s in table["selection"]) or "n/a"
    lp = ", ".join(table["lpips_names"]) or "lpips"
    uncal = " (uncalibrated: distance of unit-normalised EfficientNet-Lite0 ImageNet features, not AlexNet LPIPS)" \
        if any("effnet" in n for n in table["lpips_names"]) else ""
    return (
        f"{spec.get('description', spec['name'])} — profile `{profile}`. Top-1 accuracy (%) on the test split, "
        f"mean ± sample std (ddof=1) over trial seeds {seeds} (the seed sets the few-shot subset, the "
        f"validation split, the synthetic set and training; std shown only with ≥2 seeds). Model selection: {sel}. "
        f"Avg = unweighted mean over columns, [Δ] = difference to `original`. "
        f"LPIPS = mean pairwise distance among same-class synthetic images ×100 ({lp}){uncal}. "
        f"CLIP = 100·max(cos(image, text), 0) with text `a photo of a {{class name}} {{meta}}` (METHODS_SPEC §7)."
    )


def _fmt(mean: float, std: float | None) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _fmt_opt(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def to_markdown(table: dict[str, Any], cap: str) -> str:
    cols = table["columns"]
    header = ["Method", *[f"{d} ({p})" for d, p in cols], "Avg [Δ]", "LPIPS", "CLIP"]
    lines = [f"**{cap}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table["rows"]:
        avg = "—" if math.isnan(row["avg"]) else f"{row['avg']:.2f}"
        if row["delta"] is not None and row["method"] != "original":
            avg += f" [{row['delta']:+.2f}]"
        cells = [_fmt(*row["cells"][c]) for c in cols]
        lines.append("| " + " | ".join([row["method"], *cells, avg, _fmt_opt(row["lpips"]), _fmt_opt(row["clip_score"])]) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("·", r"$\cdot$"),
                 ("≥", r"$\geq$"), ("—", "--"), ("`", "")):
        s = s.replace(a, b)
    return s


def to_latex(table: dict[str, Any], cap: str) -> str:
    cols = table["columns"]
    spec = "l" + "c" * (len(cols) + 3)
    head = " & ".join(["Method", *[f"{d} ({p})" for d, p in cols], "Avg [$\\Delta$]", "LPIPS", "CLIP"])
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             _tex_escape(head).replace(r"[\$\textbackslash{}Delta\$]", r"[$\Delta$]") + r" \\", r"\midrule"]
    for row in table["rows"]:
        avg = "--" if math.isnan(row["avg"]) else f"{row['avg']:.2f}"
        if row["delta"] is not None and row["method"] != "original":
            avg += f" [{row['delta']:+.2f}]"
        cells = [_fmt(*row["cells"][c]) for c in cols]
        lines.append(" & ".join(_tex_escape(x) for x in [row["method"], *cells, avg, _fmt_opt(row["lpips"]),
                                                         _fmt_opt(row["clip_score"])]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex_escape(cap)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method", "dataset", "setting", "top1_mean", "top1_std", "n_seeds", "avg", "delta_vs_original",
                "lpips", "clip_score"])
    for row in table["rows"]:
        for col in table["columns"]:
            m, s = row["cells"][col]
            w.writerow([row["method"], col[0], col[1], "" if math.isnan(m) else f"{m:.4f}",
                        "" if s is None else f"{s:.4f}", row["n"][col], "" if math.isnan(row["avg"]) else f"{row['avg']:.4f}",
                        "" if row["delta"] is None else f"{row['delta']:.4f}",
                        "" if row["lpips"] is None else f"{row['lpips']:.4f}",
                        "" if row["clip_score"] is None else f"{row['clip_score']:.4f}"])
    return buf.getvalue()


def render_suite_report(suite: str, run_dir: str | Path | None = None, formats=("md", "tex", "csv"),
                        profile: str | None = None, echo=print) -> list[Path]:
    """Render ``suite``'s table from the records in ``run_dir``; returns the written files."""
    profile_name = profile or "embedded"
    run_dir = Path(run_dir) if run_dir else default_run_dir(suite, profile_name)
    spec = load_suite(suite, profile_name)
    records = load_records(run_dir, profile)
    if not records:
        raise FileNotFoundError(f"no result records in {run_dir / 'records'}; run `augbench run --suite {suite}` first")
    table = few_shot_table(records, method_order=list(spec.get("methods", [])))
    cap = caption(table, spec, records[0].get("profile", profile_name))
    out_dir = run_dir / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = {"md": lambda: to_markdown(table, cap), "tex": lambda: to_latex(table, cap), "csv": lambda: to_csv(table)}
    paths = []
    for fmt in formats:
        fmt = fmt.strip()
        if fmt not in writers:
            raise ValueError(f"unknown report format {fmt!r}; expected md, tex or csv")
        p = out_dir / f"{Path(suite).stem}.{fmt}"
        p.write_text(writers[fmt](), encoding="utf-8")
        paths.append(p)
    if "md" in formats and echo:
        echo(to_markdown(table, cap))
    return paths

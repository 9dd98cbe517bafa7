"""Paper-style tables from result records (DESIGN.md, "Results and reports").

Reports read records only (no model, no GPU). The few-shot table follows P2 Tab.1's layout
(METHODS_SPEC §9.2): rows = methods, columns = dataset × shots, each cell the mean ± sample std
(ddof = 1, METHODS_SPEC §7.1/U19) of top-1 accuracy over trial seeds, an ``Avg`` column with the
difference to ``original`` in brackets, and the synthetic-set metrics of each method (LPIPS diversity,
CLIP score; METHODS_SPEC §7.2-7.3). The caption states the selection rule, the seeds and the metric
definitions, so a table can never be read without them.

A suite may name published tables (``published = ["p2_tab1_resnet50"]``, usually in its
``[profiles.sd15]`` table); each is then rendered after ours, restricted to the columns our table has
and in our column order, with the paper's numbers exactly as printed (``benchmark.published``,
METHODS_SPEC §9): a second table in Markdown, a second tabular in LaTeX, extra rows tagged by a
``source`` column in CSV. Without ``published`` the output is ours alone.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.html_report import to_html
from benchmark.published import Column, PublishedTable, load_published
from benchmark.runner import default_run_dir, load_suite

#: Formats ``augbench report`` writes by default (``--format`` picks a subset).
REPORT_FORMATS = ("md", "tex", "csv", "html")

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
    class_groups: dict[tuple[str, tuple[str, str]], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
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
        metrics = rec.get("metrics") or {}
        top1 = metrics.get("top1")
        if top1 is not None:
            acc[(method, col)].append(float(top1))
        for group, value in (metrics.get("class_groups") or {}).items():
            if value is not None:
                class_groups[(method, col)][group].append(float(value))
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
        groups = {col: {g: _mean_or_none(v) for g, v in class_groups[(method, col)].items()} for col in cols
                  if (method, col) in class_groups}
        rows.append({"method": method, "cells": cells, "n": n, "avg": avg, "extra": {}, "class_groups": groups,
                     "lpips": _mean_or_none(syn[method]["lpips"]), "clip_score": _mean_or_none(syn[method]["clip_score"])})
    for row in rows:
        row["delta"] = (row["avg"] - base_avg) if base_avg is not None and not math.isnan(row["avg"]) else None
    return {"kind": "few_shot", "columns": cols, "labels": [f"{d} ({p})" for d, p in cols], "extra_columns": [],
            "rows": rows, "seeds": sorted(seeds), "selection": sorted(s for s in selections if s),
            "lpips_names": sorted(n for n in lpips_names if n)}


#: Waterbirds groups ``"{y}{place}"`` in P2 Tab.3's column order: (bird type, background), L = land, W = water.
WATERBIRDS_GROUPS = (("00", "L,L"), ("11", "W,W"), ("01", "L,W"), ("10", "W,L"))


def waterbirds_table(records: list[dict[str, Any]], method_order: list[str] | None = None) -> dict[str, Any]:
    """P2 Tab.3 layout (METHODS_SPEC §6.3, §9.4): the four group accuracies, their unweighted mean
    (``Avg``, with the difference to ``original``), the worst group and the pooled accuracy; each the
    mean ± sample std over seeds. Records without group metrics are skipped.
    """
    grouped = [r for r in records if (r.get("metrics") or {}).get("groups")]
    # the generic aggregation gives seeds, selection and synthetic-set metrics; the cells are rebuilt below
    table = few_shot_table(grouped, method_order)
    cols = [("groups", label) for _, label in WATERBIRDS_GROUPS]
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rec in grouped:
        method, m = rec["cell"]["method"], rec["metrics"]
        for key, label in WATERBIRDS_GROUPS:
            if key in m["groups"]:
                values[(method, label)].append(float(m["groups"][key]))
        values[(method, "worst")].append(float(m["worst_group"]))
        values[(method, "pooled")].append(float(m["pooled"]))
    base_avg = None
    for row in table["rows"]:
        method = row["method"]
        row["cells"] = {col: _mean_std(values[(method, col[1])]) for col in cols}
        row["n"] = {col: len(values[(method, col[1])]) for col in cols}
        means = [row["cells"][c][0] for c in cols]
        row["avg"] = sum(means) / len(means) if not any(math.isnan(v) for v in means) else math.nan
        row["extra"] = {"worst": _mean_std(values[(method, "worst")]), "pooled": _mean_std(values[(method, "pooled")])}
        row["class_groups"] = {}
        if method == "original":
            base_avg = row["avg"]
    for row in table["rows"]:
        row["delta"] = (row["avg"] - base_avg) if base_avg is not None and not math.isnan(row["avg"]) else None
    table.update(kind="waterbirds", columns=cols, labels=[label for _, label in cols],
                 extra_columns=[("worst", "Worst"), ("pooled", "Pooled")])
    return table


def build_table(kind: str, records: list[dict[str, Any]], method_order: list[str] | None = None) -> dict[str, Any]:
    """The table a suite's ``table`` names: ``few_shot`` / ``long_tail`` (rows = methods, columns =
    dataset × setting) or ``waterbirds`` (columns = groups)."""
    if kind == "waterbirds":
        return waterbirds_table(records, method_order)
    if kind in ("few_shot", "long_tail", "full_data"):
        table = few_shot_table(records, method_order)
        table["kind"] = kind
        if kind == "long_tail":  # P2 Tab.2 order: IF = 100, 20, 10
            table["columns"].sort(key=lambda c: (c[0], -_as_number(_shots_key(c[1]))))
            table["labels"] = [f"{d} ({p})" for d, p in table["columns"]]
        return table
    raise ValueError(f"unknown table {kind!r}; expected few_shot, long_tail, full_data or waterbirds")


def _mean_or_none(v: list[float]) -> float | None:
    return sum(v) / len(v) if v else None


def _as_number(key: Any) -> float:
    return key if isinstance(key, float) else 0.0


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
    kind = table.get("kind", "few_shot")
    what = {
        "waterbirds": "Accuracy (%) per test group (bird type, background; L = land, W = water), "
                      "Avg = unweighted mean of the four groups, Worst = worst group, Pooled = accuracy over all "
                      "test images (METHODS_SPEC §6.3)",
        "long_tail": "Top-1 accuracy (%) on the balanced test split, long-tail subsets built as in METHODS_SPEC §6.2; "
                     "many / medium / few = mean per-class accuracy of classes with > 20, 5-20, < 5 training images "
                     "(per-dataset thresholds from the suite, §5.4)",
    }.get(kind, "Top-1 accuracy (%) on the test split")
    return (
        f"{spec.get('description', spec['name'])} — profile `{profile}`. {what}; "
        f"mean ± sample std (ddof=1) over trial seeds {seeds} (the seed sets the training subset, the "
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


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def _row_strings(table: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """Method, cells, Avg [Δ], extra columns, LPIPS, CLIP of one row, as text."""
    avg = "—" if math.isnan(row["avg"]) else f"{row['avg']:.2f}"
    if row["delta"] is not None and row["method"] != "original":
        avg += f" [{row['delta']:+.2f}]"
    cells = [_fmt(*row["cells"][c]) for c in table["columns"]]
    extra = [_fmt(*row["extra"][key]) for key, _ in table.get("extra_columns", [])]
    return [row["method"], *cells, avg, *extra, _fmt_opt(row["lpips"]), _fmt_opt(row["clip_score"])]


def _header(table: dict[str, Any]) -> list[str]:
    return ["Method", *table["labels"], "Avg [Δ]", *[label for _, label in table.get("extra_columns", [])],
            "LPIPS", "CLIP"]


def _published_view(table: dict[str, Any], pub: PublishedTable) -> tuple[list[Column], list[int]]:
    """The published columns our table also has (in our order) and the indices of the printed
    averages whose cells are all among them."""
    cols = [c for c in table["columns"] if c in pub.columns]
    averages = [i for i, a in enumerate(pub.averages) if set(a.columns) <= set(cols)]
    return cols, averages


def _fmt_printed_avg(avg: float | None, delta: float | None) -> str:
    parts = ([f"{avg:.2f}"] if avg is not None else []) + ([f"[{delta:+.2f}]"] if delta is not None else [])
    return " ".join(parts) or "—"


def _published_strings(table: dict[str, Any], pub: PublishedTable) -> tuple[list[str], list[list[str]], str]:
    """Header, rows and caption of ``pub`` restricted to ``table``'s columns (METHODS_SPEC §9)."""
    cols, averages = _published_view(table, pub)
    labels = dict(zip(table["columns"], table["labels"]))
    header = ["Method (paper)", "id", *[labels[c] for c in cols], *[f"{pub.averages[i].label} [Δ]" for i in averages]]
    rows = [[row.method, row.method_id or "—", *[_fmt(*row.cells[c]) for c in cols],
             *[_fmt_printed_avg(row.avg[i], row.delta[i]) for i in averages]] for row in pub.rows]
    cap = (f"Published: {pub.title}. Source: {pub.source}. Backbone {pub.backbone} (our recipe `{pub.recipe}`); "
           f"{pub.statistic}. Shown: {len(cols)} of the {len(pub.columns)} published columns (those this report "
           f"has, in its order) and the printed averages over shown columns only; numbers and Avg [Δ] as printed. "
           + " ".join(pub.notes))
    return header, rows, cap


def class_group_rows(table: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """Long-tail only: header and rows of many / medium / few accuracy per method and column (None
    when no record has them)."""
    cols = [c for c in table["columns"] if any(c in row["class_groups"] for row in table["rows"])]
    if not cols:
        return None
    rows = []
    for row in table["rows"]:
        cells = []
        for col in cols:
            g = row["class_groups"].get(col, {})
            cells.append(" / ".join("—" if g.get(k) is None else f"{g[k]:.1f}" for k in ("many", "medium", "few")))
        rows.append([row["method"], *cells])
    return ["Method", *[f"{d} ({p})" for d, p in cols]], rows


def class_group_markdown(table: dict[str, Any]) -> str:
    """Long-tail only: the many / medium / few table in Markdown (empty when no record has them)."""
    groups = class_group_rows(table)
    if groups is None:
        return ""
    header, rows = groups
    lines = ["", "Many / medium / few (mean per-class accuracy, %):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def _markdown(header: list[str], rows: list[list[str]], cap: str) -> str:
    lines = [f"**{cap}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def to_markdown(table: dict[str, Any], cap: str, published: Sequence[PublishedTable] = ()) -> str:
    """Our table, its class-group table, then each ``published`` table restricted to our columns."""
    text = _markdown(_header(table), [_row_strings(table, row) for row in table["rows"]], cap)
    text += class_group_markdown(table)
    return text + "".join("\n" + _markdown(*_published_strings(table, pub)) for pub in published)


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("·", r"$\cdot$"),
                 ("≥", r"$\geq$"), ("—", "--"), ("`", "")):
        s = s.replace(a, b)
    return s


def _latex(header: list[str], rows: list[list[str]], cap: str) -> str:
    spec = "l" + "c" * (len(header) - 1)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_tex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex_escape(x) for x in cells) + r" \\" for cells in rows]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{_tex_escape(cap)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_latex(table: dict[str, Any], cap: str, published: Sequence[PublishedTable] = ()) -> str:
    """Our table as a LaTeX float, then one float (a second tabular) per ``published`` table."""
    text = _latex(_header(table), [_row_strings(table, row) for row in table["rows"]], cap)
    return text + "".join(_latex(*_published_strings(table, pub)) for pub in published)


def to_csv(table: dict[str, Any], published: Sequence[PublishedTable] = ()) -> str:
    """One line per method and column; with ``published`` tables a ``source`` column is added
    (``measured`` for ours, the table id for the paper's rows restricted to our columns)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    source = ["source"] if published else []
    w.writerow(["method", "dataset", "setting", "top1_mean", "top1_std", "n_seeds", "avg", "delta_vs_original",
                "lpips", "clip_score", *source])
    measured = ["measured"] if published else []
    for row in table["rows"]:
        columns = [(col, row["cells"][col], row["n"][col]) for col in table["columns"]]
        columns += [(("summary", label.lower()), row["extra"][key], None) for key, label in table.get("extra_columns", [])]
        for col, (m, s), n in columns:
            w.writerow([row["method"], col[0], col[1], "" if math.isnan(m) else f"{m:.4f}",
                        _num(s), "" if n is None else n,
                        "" if math.isnan(row["avg"]) else f"{row['avg']:.4f}",
                        _num(row["delta"]), _num(row["lpips"]), _num(row["clip_score"]), *measured])
    for pub in published:
        cols, averages = _published_view(table, pub)
        covering = {c: i for i in averages for c in pub.averages[i].columns}
        for row in pub.rows:
            for col in cols:
                m, s = row.cells[col]
                i = covering.get(col)
                avg, delta = (None, None) if i is None else (row.avg[i], row.delta[i])
                w.writerow([row.method_id or row.method, col[0], col[1], f"{m:.4f}", _num(s),
                            "" if pub.trials is None else pub.trials, _num(avg), _num(delta), "", "", pub.id])
    return buf.getvalue()


def render_suite_report(suite: str, run_dir: str | Path | None = None, formats=REPORT_FORMATS,
                        profile: str | None = None, echo=print) -> list[Path]:
    """Render ``suite``'s table from the records in ``run_dir``, followed by the published tables the
    suite names in ``published`` (side by side, module docstring); returns the written files."""
    profile_name = profile or "embedded"
    run_dir = Path(run_dir) if run_dir else default_run_dir(suite, profile_name)
    spec = load_suite(suite, profile_name)
    records = load_records(run_dir, profile)
    if not records:
        raise FileNotFoundError(f"no result records in {run_dir / 'records'}; run `augbench run --suite {suite}` first")
    table = build_table(spec.get("table", spec["protocol"]), records, method_order=list(spec.get("methods", [])))
    cap = caption(table, spec, records[0].get("profile", profile_name))
    ids = spec.get("published", [])
    published = [load_published(t) for t in ([ids] if isinstance(ids, str) else ids)]
    out_dir = run_dir / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    writers = {"md": lambda: to_markdown(table, cap, published), "tex": lambda: to_latex(table, cap, published),
               "csv": lambda: to_csv(table, published),
               "html": lambda: to_html(table, cap, records, run_dir, title=f"augbench — {spec['name']} ({profile_name})",
                                       tables=[(_header(table), [_row_strings(table, r) for r in table["rows"]], cap),
                                               *[_published_strings(table, pub) for pub in published]],
                                       class_groups=class_group_rows(table))}
    paths = []
    for fmt in formats:
        fmt = fmt.strip()
        if fmt not in writers:
            raise ValueError(f"unknown report format {fmt!r}; expected some of {', '.join(REPORT_FORMATS)}")
        p = out_dir / f"{Path(suite).stem}.{fmt}"
        p.write_text(writers[fmt](), encoding="utf-8")
        paths.append(p)
    if "md" in formats and echo:
        echo(writers["md"]())
    return paths

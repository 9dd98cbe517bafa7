"""Paper-style tables from result records (DESIGN.md, "Results and reports").

Reports read records only (no model, no GPU): typed :class:`augbench.run.records.CellRecord` objects
(``augbench.reporting.run_report`` reads a run directory's through the one reader). The records become
one pandas DataFrame per table, and every format is rendered from those frames by pandas: Markdown with ``DataFrame.to_markdown``
(tabulate), LaTeX with ``Styler.to_latex`` (booktabs rules), CSV with ``DataFrame.to_csv`` and the
HTML page with ``Styler.to_html`` (``augbench.reporting.html``), so every format shows the same numbers.

The few-shot table follows P2 Tab.1's layout (METHODS_SPEC §9.2): rows = methods, columns = dataset ×
shots, each cell the mean ± sample std (ddof = 1, METHODS_SPEC §7.1/U19) of top-1 accuracy over
trial seeds, an ``Avg`` column with the difference to ``original`` in brackets, and the synthetic-set
metrics of each method (LPIPS diversity, CLIP score; METHODS_SPEC §7.2-7.3). Long-tail tables (P2
Tab.2, §9.3) order the imbalance factors 100, 20, 10 and add a many / medium / few table; Waterbirds
tables (P2 Tab.3, §9.4) have the four group columns, the worst group and the pooled accuracy. The
caption states the selection rule, the seeds, the metric definitions, how each method family's
synthetic images joined training (METHODS_SPEC §4) and which methods used foreign artifacts, so a
table can never be read without them. Methods whose Diff-II suffixes came from the embedded world's
ground-truth captions (suffix source ``world``, an oracle captioner; METHODS_SPEC §3.10.4) are marked
``‡`` and named in the caption, as foreign artifacts are.

Ablation tables (``table = "ablation"``, P2 Tab.4, §9.5) have one row per preset, LPIPS diversity first,
then accuracy per column, CLIP score and fidelity, and no ``Avg`` (the rows are components, not
competitors). Sweep tables (``table = "sweep"``, P2 Fig.7, §9.6) have the same layout, rows being one
family with several values of a parameter (``diff_ii(split_ratio=0.1)``, ...); their reports add a plot
of CLIP score and LPIPS against that parameter (``augbench.reporting.plots``).

A suite may name published tables (``published = ["p2_tab1_resnet50"]``, usually in its
``[profiles.sd15]`` table); each is then rendered after ours, restricted to the columns our table has
and in our column order, with the paper's numbers exactly as printed (``augbench.reporting.published``,
METHODS_SPEC §9): a second table in Markdown, a second tabular in LaTeX, extra rows tagged by a
``source`` column in CSV. Without ``published`` the output is ours alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from augbench.method_ids import method_family  # re-exported: the family a replacement mode belongs to
from augbench.plugins import UnknownNameError
from augbench.protocols import get_protocol, protocol_names
from augbench.protocols.base import TableLayout
from augbench.protocols.long_tail import CLASS_GROUP_NAMES as CLASS_GROUPS
from augbench.reporting.published import Column, PublishedTable
from augbench.reporting.synthetic_table import (
    SUMMARY_METRICS,
    mean_by_method,
    synthetic_metrics,
    synthetic_set_frame,
)
from augbench.run.records import CellRecord
from augbench.training.selection import SELECTION_NOTES as SELECTION_TEXT

#: Formats ``augbench report`` writes by default (``--format`` picks a subset).
REPORT_FORMATS = ("md", "tex", "csv", "html")

#: Table kinds laid out as P2 Tab.4: LPIPS first, then accuracy, no Avg column.
COMPONENT_KINDS = ("ablation", "sweep")

#: Marks a method whose cells used artifacts trained on images outside their training part (DESIGN.md,
#: "Leakage guard"); the caption explains it.
FOREIGN_MARK = "†"
#: Marks a method whose suffixes came from the world's ground-truth captions (an oracle captioner).
ORACLE_MARK = "‡"


def replacement_mode(record: CellRecord) -> str | None:
    """How the cell's synthetic images joined training (METHODS_SPEC §4): the record's ``training``
    mode, with its probability unless the mode is ``concat``; ``None`` without a synthetic set."""
    if record.synthetic is None or record.training is None:
        return None  # without a synthetic set there is nothing to replace
    mode = record.training["replacement_mode"]
    return mode if mode == "concat" else f"{mode} (p = {record.training['replacement_p']:g})"


@dataclass
class ReportTable:
    """One table's numbers, aggregated over seeds from the records.

    Attributes:
        kind: ``few_shot``, ``long_tail``, ``full_data`` or ``waterbirds``.
        methods: row order (the suite's method order, then any other method in record order).
        columns: the accuracy columns ``(dataset, setting)`` in the paper's order.
        labels: their printed labels.
        extra_columns: summary columns after ``Avg`` (Waterbirds: worst group, pooled), ``(key, label)``.
        cells: index ``(method, dataset, setting)`` over ``columns`` and ``extra_columns``; columns
            ``mean``, ``std`` (sample std, ddof = 1; NaN with one seed) and ``n`` (seeds).
        summary: index ``method``; ``avg`` (unweighted mean of the column means, NaN unless every
            column has a value), ``delta`` (``avg`` minus ``original``'s), ``lpips``, ``clip_score``
            ``oracle_fidelity`` (means over the method's records; NaN without a synthetic set or an oracle).
        class_groups: long tail: index ``(method, dataset, setting)``, columns ``many``, ``medium``,
            ``few`` (mean over seeds of the mean per-class accuracy); empty otherwise.
        seeds / selection / lpips_names: caption facts of the records used.
        replacement_modes: method family -> the replacement modes its cells used (METHODS_SPEC §4).
        foreign_artifacts: method -> labels of the columns whose cells used foreign artifacts.
        artifacts: method -> the artifact kinds its cells used (concept learning, inversion pools).
        oracle_captioner: methods whose suffix artifacts came from ground-truth captions (``oracle_captioner``
            in the artifact recipe, suffix source ``world``; METHODS_SPEC §3.10.4).
    """

    kind: str
    methods: list[str]
    columns: list[Column]
    labels: list[str]
    extra_columns: list[tuple[Column, str]]
    cells: pd.DataFrame
    summary: pd.DataFrame
    class_groups: pd.DataFrame
    seeds: list[int]
    selection: list[str]
    lpips_names: list[str]
    replacement_modes: dict[str, list[str]]
    foreign_artifacts: dict[str, list[str]]
    artifacts: dict[str, list[str]] = field(default_factory=dict)
    oracle_captioner: list[str] = field(default_factory=list)

    def cell(self, method: str, column: Column) -> tuple[float, float | None, int]:
        """``(mean, std or None, number of seeds)`` of one cell; ``(nan, None, 0)`` when it has no value."""
        key = (method, *column)
        if key not in self.cells.index:
            return math.nan, None, 0
        mean, std, n = self.cells.loc[key, ["mean", "std", "n"]]
        return float(mean), (None if pd.isna(std) else float(std)), int(n)

    def frame(self) -> pd.DataFrame:
        """The table as printed: one row per method, cells as text in the paper's layout."""
        marks = {m: (f" {FOREIGN_MARK}" if m in self.foreign_artifacts else "")
                 + (f" {ORACLE_MARK}" if m in self.oracle_captioner else "") for m in self.methods}
        data: dict[str, list[str]] = {"Method": [m + marks[m] for m in self.methods]}
        components = self.kind in COMPONENT_KINDS
        if components:  # P2 Tab.4: LPIPS, then accuracy
            data["LPIPS"] = [_fmt_opt(self.summary.loc[m, "lpips"]) for m in self.methods]
        for column, label in zip(self.columns, self.labels):
            data[label] = [_fmt(*self.cell(m, column)[:2]) for m in self.methods]
        if not components:
            data["Avg [Δ]"] = [_fmt_avg(m, self.summary.loc[m, "avg"], self.summary.loc[m, "delta"])
                               for m in self.methods]
            if self.summary["paired_n"].max() >= 2:  # paired differences need two seeds
                data["Δ paired (95% CI)"] = [_fmt_paired(self.summary.loc[m]) for m in self.methods]
            if self.summary["syn_only"].notna().any():  # suites with syn_only: the classification accuracy score
                data["Syn-only"] = [_fmt_opt(self.summary.loc[m, "syn_only"]) for m in self.methods]
        for column, label in self.extra_columns:
            data[label] = [_fmt(*self.cell(m, column)[:2]) for m in self.methods]
        if not components:
            data["LPIPS"] = [_fmt_opt(self.summary.loc[m, "lpips"]) for m in self.methods]
        data["CLIP"] = [_fmt_opt(self.summary.loc[m, "clip_score"]) for m in self.methods]
        if self.summary["oracle_fidelity"].notna().any():  # profiles with an oracle (embedded)
            data["Fid."] = [_fmt_opt(self.summary.loc[m, "oracle_fidelity"]) for m in self.methods]
        return pd.DataFrame(data)

    def synthetic_frame(self) -> pd.DataFrame | None:
        """The synthetic-set table (``augbench.reporting.synthetic_table``); None without syn_only / distribution
        metrics."""
        return synthetic_set_frame(self.methods, self.summary)

    def class_group_frame(self) -> pd.DataFrame | None:
        """Long tail: many / medium / few per method and column as ``a / b / c`` text (None without them)."""
        if self.class_groups.empty:
            return None
        columns = [c for c in self.columns if any((m, *c) in self.class_groups.index for m in self.methods)]
        data: dict[str, list[str]] = {"Method": list(self.methods)}
        for column, label in zip(self.columns, self.labels):
            if column in columns:
                data[label] = [self._class_group_text(m, column) for m in self.methods]
        return pd.DataFrame(data)

    def _class_group_text(self, method: str, column: Column) -> str:
        key = (method, *column)
        values = self.class_groups.loc[key] if key in self.class_groups.index else {}
        return " / ".join("—" if pd.isna(values.get(g, math.nan)) else f"{values[g]:.1f}" for g in CLASS_GROUPS)


def build_table(kind: str, records: Sequence[CellRecord], method_order: Sequence[str] | None = None) -> ReportTable:
    """The table a suite's ``table`` names, aggregated over seeds, laid out by :func:`table_layout`:
    ``few_shot`` / ``long_tail`` / ``full_data`` (columns = dataset × setting) or ``waterbirds``
    (columns = the four groups; records without group metrics are skipped)."""
    layout = table_layout(kind)
    records = [r for r in records if layout.keeps(r.metrics)]
    methods = list(dict.fromkeys(r.cell["method"] for r in records))
    if method_order:
        methods = [m for m in method_order if m in methods] + [m for m in methods if m not in method_order]
    columns = layout.columns([r.cell for r in records])
    extra_columns = list(layout.extra_columns)
    cells = (_measurements(layout, records)
             .groupby(["method", "dataset", "setting"], sort=False)["value"]
             .agg(mean="mean", std="std", n="count"))  # pandas' std is the sample std (ddof = 1)
    summary = pd.DataFrame(index=pd.Index(methods, name="method"))
    summary["avg"] = math.nan
    if len(cells) and columns:
        means = cells["mean"].unstack(["dataset", "setting"]).reindex(index=methods,
                                                                      columns=pd.MultiIndex.from_tuples(columns))
        summary["avg"] = means.mean(axis=1, skipna=False)  # NaN unless every column has a value
    base = summary["avg"].get("original", math.nan)
    summary["delta"] = summary["avg"] - base  # NaN without an original row
    summary = summary.join(_paired_differences(_measurements(layout, records), methods, columns))
    synthetic = synthetic_metrics(records, layout)
    for metric in SUMMARY_METRICS:  # LPIPS, CLIP, Fid., and syn_only / distribution metrics where measured
        summary[metric] = mean_by_method(synthetic, metric)
    seeds = sorted({r.cell["seed"] for r in records})
    selection = sorted({r.selection for r in records})
    lpips_names = sorted({n for n in synthetic.get("lpips_name", []) if isinstance(n, str)})
    modes: dict[str, list[str]] = {}
    foreign: dict[str, list[str]] = {}
    labels = [layout.label(c) for c in columns]
    for rec in records:
        cell = rec.cell
        mode = replacement_mode(rec)
        if mode is not None and mode not in modes.setdefault(method_family(cell["method"]), []):
            modes[method_family(cell["method"])].append(mode)
        if rec.uses_foreign_artifacts:
            label = layout.foreign_label(cell)
            if label not in foreign.setdefault(cell["method"], []):
                foreign[cell["method"]].append(label)
    return ReportTable(kind=kind, methods=methods, columns=columns, labels=labels, extra_columns=extra_columns,
                       cells=cells, summary=summary, class_groups=_class_groups(layout, records), seeds=seeds,
                       selection=selection, lpips_names=lpips_names,
                       replacement_modes={f: m for f, m in modes.items() if m}, foreign_artifacts=foreign,
                       artifacts=_artifact_kinds(records), oracle_captioner=_oracle_captioned(records, methods))


def _oracle_captioned(records: Sequence[CellRecord], methods: Sequence[str]) -> list[str]:
    """Methods (in row order) whose cells used suffixes from ground-truth captions (METHODS_SPEC §3.10.4)."""
    flagged = {r.cell["method"] for r in records if any(a["recipe"].get("oracle_captioner") for a in r.artifacts)}
    return [m for m in methods if m in flagged]


def _artifact_kinds(records: Sequence[CellRecord]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for rec in records:
        for artifact in rec.artifacts:
            if artifact["kind"] not in kinds.setdefault(rec.cell["method"], []):
                kinds[rec.cell["method"]].append(artifact["kind"])
    return {m: k for m, k in kinds.items() if k}


def table_layout(kind: str) -> TableLayout:
    """The layout of a table kind: the protocol's own (``few_shot``, ``long_tail``, ``waterbirds``,
    ``full_data`` or a plugin protocol's), or for the component tables (``ablation``, ``sweep``, P2
    Tab.4) the default dataset × setting columns.

    Raises:
        ValueError: no such kind (the message lists the known ones).
    """
    if kind in COMPONENT_KINDS:
        return TableLayout()
    try:
        return get_protocol(kind).table_layout
    except UnknownNameError:
        raise ValueError(f"unknown table {kind!r}; expected one of "
                         f"{', '.join([*protocol_names(), *COMPONENT_KINDS])}") from None


def _measurements(layout: TableLayout, records: Sequence[CellRecord]) -> pd.DataFrame:
    """One row per (record, table column): method, seed, dataset, setting, value."""
    rows = [(rec.cell["method"], rec.cell["seed"], *value)
            for rec in records for value in layout.measurements(rec.cell, rec.metrics)]
    return pd.DataFrame(rows, columns=["method", "seed", "dataset", "setting", "value"])


def _class_groups(layout: TableLayout, records: Sequence[CellRecord]) -> pd.DataFrame:
    """Mean over seeds of each class group's accuracy (long tail), index ``(method, dataset, setting)``."""
    rows = [(r.cell["method"], r.cell["dataset"], layout.setting(r.cell), group, value)
            for r in records for group, value in layout.class_group_values(r.metrics).items()]
    if not rows:
        return pd.DataFrame(columns=list(CLASS_GROUPS))
    frame = pd.DataFrame(rows, columns=["method", "dataset", "setting", "group", "value"])
    return frame.pivot_table(index=["method", "dataset", "setting"], columns="group", values="value",
                             aggfunc="mean", sort=False).reindex(columns=list(CLASS_GROUPS))


def _noise_text(table: ReportTable) -> str:
    """How to read differences: a smoke test with one seed, paired intervals with more."""
    if table.kind in COMPONENT_KINDS and len(table.seeds) < 2:
        return "One seed: the rows are paired (same noise and draws), but accuracy differences are not tested. "
    if len(table.seeds) < 2:
        return ("ONE SEED: a smoke test of the pipeline, not a comparison — the same method moves by several points "
                "between seeds, so no difference in this table is evidence. ")
    if table.kind in COMPONENT_KINDS or table.summary["paired_n"].max() < 2:
        return ""
    return ("Δ paired (95% CI) = mean over seeds of (method's Avg − original's Avg) on the same seed (same subset, "
            "validation split and training order), with its 95 % Student-t interval (n − 1 degrees of freedom); "
            f"{SIGNIFICANT_MARK} = the interval excludes zero. ")


REHEARSAL_MARK = "[rehearsal]"


def _family(row: str) -> str | None:
    """The family of a table row's first part (``cmo.drw`` -> ``cmo``); ``None`` for a row that is no method id."""
    from augbench.method_ids import MethodIdError, method_family

    try:
        return method_family(row)
    except MethodIdError:
        return None


def _rehearsal_scale(spec: Mapping[str, Any]) -> str:
    """What a rehearsal shrank, from the suite's scale knobs (``--rehearsal``'s overlay)."""
    keys = ("classes", "test_per_class", "max_synthetic", "epochs", "classifier_batch_size")
    parts = [f"{k} {spec[k]}" for k in keys if spec.get(k)]
    parts += [f"{k} {v}" for k, v in (spec.get("profile_overrides") or {}).items()]
    return ", ".join(parts) or "suite scale knobs"


def caption(table: ReportTable, spec: Mapping[str, Any], profile: str) -> str:
    """What the table shows and how to read it: metric definitions, seeds, selection rule, how synthetic
    images joined training (per method family, METHODS_SPEC §4) and which methods used foreign artifacts."""
    sel = "; ".join(SELECTION_TEXT.get(s, s) for s in table.selection) or "n/a"
    lp = ", ".join(table.lpips_names) or "lpips"
    uncal = " (uncalibrated: distance of unit-normalised EfficientNet-Lite0 ImageNet features, not AlexNet LPIPS)" \
        if any("effnet" in n for n in table.lpips_names) else ""
    what = table_layout(table.kind).caption
    text = (
        f"{spec.get('description') or spec['name']} — profile `{profile}`. {what}; "
        f"mean ± sample std (ddof=1) over trial seeds {table.seeds} (the seed sets the training subset, the "
        f"validation split, the synthetic set and training; std shown only with ≥2 seeds). Model selection: {sel}. "
        f"{'' if table.kind in COMPONENT_KINDS else 'Avg = unweighted mean over columns, [Δ] = difference to `original`. '}"
        f"{_noise_text(table)}"
        f"LPIPS = mean pairwise distance among same-class synthetic images ×100 ({lp}){uncal}. "
        f"CLIP = 100·max(cos(image, text), 0) with text `a photo of a {{class name}} {{meta}}` (METHODS_SPEC §7)."
    )
    if spec.get("rehearsal"):
        text = (f"{REHEARSAL_MARK} REHEARSAL: a shrunk run of the real code path ({_rehearsal_scale(spec)}); its "
                f"numbers say nothing about the methods, so no published table is shown beside it. " + text)
    if any(_family(m) == "cmo" for m in table.methods):
        text += (" CMO: a CutMix box from a batch drawn with weights 1/n_k, pasted in 0-based epochs 3 < e < E − 3 "
                 "with p = 0.5 per batch; CMO-DRW (`cmo.drw`) adds deferred re-weighting from 80 % of the schedule "
                 "(Diff-Mix's epoch 160 of 200), β = 0.9999 (defaults of METHODS_SPEC §5.4; each record's train "
                 "config holds the epochs used; the configuration behind P2's copied numbers is unspecified).")
    references = [r for r in spec.get("references") or () if r in table.methods]
    if references:
        text += (f" Reference rows, not augmentation methods: {', '.join(f'`{r}`' for r in references)} — fresh "
                 "renders of each class by the embedded world's own renderer, what a perfect generator would add "
                 "(`world_renders.wrongN`: N % of them rendered from another class, labelled as the requested one).")
    if table.summary["oracle_fidelity"].notna().any():
        text += (" Fid. = oracle fidelity, the share (%) of synthetic images the world's oracle classifier assigns "
                 "to their label (DESIGN.md, Metrics).")
    if table.replacement_modes:
        modes = "; ".join(f"{family}: {', '.join(m)}" for family, m in table.replacement_modes.items())
        text += f" Synthetic images joined training by replacement mode (METHODS_SPEC §4) — {modes}."
    if table.artifacts:
        used = "; ".join(f"{method}: {', '.join(kinds)}" for method, kinds in table.artifacts.items())
        text += (f" Artifacts, built on each cell's training part and shared across methods (record: key, "
                 f"manifest, files) — {used}.")
    if table.kind in COMPONENT_KINDS:
        text += (" Rows are presets or parameter values of one method: request seeds derive from (run seed, family, "
                 "index), so every row starts from the same noise and draws (paired comparison; DESIGN.md).")
    if table.oracle_captioner:
        text += (f" {ORACLE_MARK} ORACLE CAPTIONER: the prompt suffixes of {', '.join(table.oracle_captioner)} are the "
                 f"scene phrases of the embedded world's ground-truth captions of the training images (suffix source "
                 f"`world`), a captioner that never errs, where the paper captions with BLIP and summarises with "
                 f"GPT-4 (METHODS_SPEC §3.10.4).")
    if table.foreign_artifacts:
        which = "; ".join(f"{method} ({', '.join(cols)})" for method, cols in table.foreign_artifacts.items())
        text += (f" {FOREIGN_MARK} FOREIGN ARTIFACTS: these cells used concept/inversion artifacts trained on images "
                 f"outside their training part (allowed by allow_foreign_artifacts = true; their numbers may be "
                 f"optimistic): {which}.")
    return text


#: Marks a paired difference to ``original`` whose 95 % interval excludes zero; the caption explains it.
SIGNIFICANT_MARK = "*"


def _paired_differences(measurements: pd.DataFrame, methods: Sequence[str], columns: Sequence[Column]) -> pd.DataFrame:
    """Per method, the paired difference of its Avg to ``original``'s over the seeds both have.

    A seed's Avg is the mean over the table's columns (only seeds with every column count); the same
    seed means the same subsets, validation split and training order for both rows, so differences
    are paired. ``paired_diff`` = mean difference, ``paired_lo`` / ``paired_hi`` = its 95 % Student-t
    interval (n − 1 degrees of freedom; NaN with fewer than two seeds), ``paired_n`` = seeds.
    """
    from scipy import stats

    out = pd.DataFrame(index=pd.Index(methods, name="method"),
                       columns=["paired_diff", "paired_lo", "paired_hi", "paired_n"], dtype=float)
    out["paired_n"] = 0.0
    if measurements.empty or not columns:
        return out
    wanted = pd.MultiIndex.from_tuples(list(columns))
    per_seed = (measurements.set_index(["method", "seed", "dataset", "setting"])["value"]
                .unstack(["dataset", "setting"]).reindex(columns=wanted).mean(axis=1, skipna=False).dropna())
    if "original" not in per_seed.index.get_level_values("method"):
        return out
    base = per_seed.xs("original", level="method")
    for method in methods:
        if method == "original" or method not in per_seed.index.get_level_values("method"):
            continue
        diffs = (per_seed.xs(method, level="method") - base).dropna()
        n = len(diffs)
        out.loc[method, ["paired_diff", "paired_n"]] = [diffs.mean() if n else math.nan, n]
        if n >= 2:
            half = stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
            out.loc[method, ["paired_lo", "paired_hi"]] = [diffs.mean() - half, diffs.mean() + half]
    return out


def _fmt_paired(row: pd.Series) -> str:
    if pd.isna(row["paired_lo"]):
        return "—"
    mark = SIGNIFICANT_MARK if row["paired_lo"] > 0 or row["paired_hi"] < 0 else ""
    return f"{row['paired_diff']:+.2f} [{row['paired_lo']:+.2f}, {row['paired_hi']:+.2f}]{mark}"


def _fmt(mean: float, std: float | None) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _fmt_opt(v: float | None) -> str:
    return "—" if v is None or pd.isna(v) else f"{v:.1f}"


def _fmt_avg(method: str, avg: float, delta: float) -> str:
    text = "—" if pd.isna(avg) else f"{avg:.2f}"
    if not pd.isna(delta) and method != "original":
        text += f" [{delta:+.2f}]"
    return text


def _published_view(table: ReportTable, pub: PublishedTable) -> tuple[list[Column], list[int]]:
    """The published columns our table also has (in our order) and the indices of the printed
    averages whose cells are all among them."""
    cols = [c for c in table.columns if c in pub.columns]
    averages = [i for i, a in enumerate(pub.averages) if set(a.columns) <= set(cols)]
    return cols, averages


def _fmt_printed_avg(avg: float | None, delta: float | None) -> str:
    parts = ([f"{avg:.2f}"] if avg is not None else []) + ([f"[{delta:+.2f}]"] if delta is not None else [])
    return " ".join(parts) or "—"


def sweep_figures(table: ReportTable, records: Sequence[CellRecord], png: Path) -> list[tuple[Any, str]]:
    """A sweep table's plot of CLIP score and LPIPS against the swept parameter (P2 Fig.7, METHODS_SPEC §9.6),
    also written to ``png``; empty for other tables, without matplotlib or without synthetic-set metrics."""
    from augbench.reporting.plots import sweep_figure, sweep_points, swept_parameter

    parameter = swept_parameter(table.methods) if table.kind == "sweep" else None
    points = sweep_points(table, records, parameter) if parameter else []
    image = sweep_figure(points, parameter, f"mean over seeds {table.seeds}") if points else None
    if image is None:
        return []
    image.save(png)
    cap = (f"CLIP score (left) and LPIPS diversity ×100 (right) of the synthetic set against {parameter} "
           f"(P2 Fig.7, METHODS_SPEC §9.6; paper: CLIP decreases slowly, LPIPS increases with s); also {png.name}.")
    return [(image, cap)]

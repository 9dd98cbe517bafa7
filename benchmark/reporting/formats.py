"""Every format a report is written in, rendered from the table's frames by pandas (DESIGN.md, "Results and
reports"): Markdown (``DataFrame.to_markdown``, tabulate), LaTeX (``Styler.to_latex``, booktabs rules) and CSV
(``DataFrame.to_csv``); the HTML page (``augbench.reporting.html``) renders the same :func:`report_tables`.
A report's tables, in order: ours, its class-group table (long tail), its synthetic-set table (suites with
``syn_only`` or ``distribution_metrics``), then the published ones restricted to our columns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd

from augbench.reporting.published import PublishedTable
from augbench.reporting.synthetic_table import synthetic_set_caption
from augbench.reporting.tables import (
    FOREIGN_MARK,
    ORACLE_MARK,
    ReportTable,
    _fmt,
    _fmt_opt,
    _fmt_printed_avg,
    _published_view,
)


class RenderedTable(NamedTuple):
    """One table as every format shows it: the printed cells and the caption."""

    frame: pd.DataFrame
    caption: str


def published_table(table: ReportTable, pub: PublishedTable) -> RenderedTable:
    """``pub`` restricted to ``table``'s columns, in its order, numbers as printed (METHODS_SPEC §9)."""
    cols, averages = _published_view(table, pub)
    labels = dict(zip(table.columns, table.labels))
    data: dict[str, list[str]] = {"Method (paper)": [r.method for r in pub.rows],
                                  "id": [r.method_id or "—" for r in pub.rows]}
    if any(r.lpips is not None for r in pub.rows):  # P2 Tab.4 prints the synthetic set's LPIPS (%) first
        data["LPIPS"] = [_fmt_opt(r.lpips) for r in pub.rows]
    for col in cols:
        data[labels[col]] = [_fmt(*r.cells[col]) for r in pub.rows]
    for i in averages:
        data[f"{pub.averages[i].label} [Δ]"] = [_fmt_printed_avg(r.avg[i], r.delta[i]) for r in pub.rows]
    cap = (f"Published: {pub.title}. Source: {pub.source}. Backbone {pub.backbone} (our recipe `{pub.recipe}`); "
           f"{pub.statistic}. Shown: {len(cols)} of the {len(pub.columns)} published columns (those this report "
           f"has, in its order) and the printed averages over shown columns only; numbers and Avg [Δ] as printed. "
           + " ".join(pub.notes))
    return RenderedTable(pd.DataFrame(data), cap)


def report_tables(table: ReportTable, cap: str, published: Sequence[PublishedTable] = ()) -> list[RenderedTable]:
    """Every table of a report in order: ours, its class-group table (long tail), the published ones."""
    tables = [RenderedTable(table.frame(), cap)]
    groups = table.class_group_frame()
    if groups is not None:
        tables.append(RenderedTable(groups, "Many / medium / few (mean per-class accuracy, %)"))
    synthetic = table.synthetic_frame()
    if synthetic is not None:
        tables.append(RenderedTable(synthetic, synthetic_set_caption(table.summary)))
    return tables + [published_table(table, pub) for pub in published]


def to_markdown(table: ReportTable, cap: str, published: Sequence[PublishedTable] = ()) -> str:
    """Our table, its class-group table, then each ``published`` table restricted to our columns."""
    return "\n".join(f"**{t.caption}**\n\n{_markdown_table(t.frame)}\n" for t in report_tables(table, cap, published))


#: Columns of names (left-aligned in Markdown; numbers are right-aligned, as in the papers' tables).
NAME_COLUMNS = ("Method", "Method (paper)", "id")


def _markdown_table(frame: pd.DataFrame) -> str:
    # disable_numparse: cells are already formatted text, and tabulate must not re-read "51.00" as 51
    return frame.to_markdown(index=False, disable_numparse=True,
                             colalign=["left" if c in NAME_COLUMNS else "right" for c in frame.columns])


#: Unicode in cells and captions and its LaTeX form (applied after LaTeX escaping).
_TEX_SYMBOLS = (("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("·", r"$\cdot$"), ("≥", r"$\geq$"), ("—", "--"),
                ("×", r"$\times$"), (FOREIGN_MARK, r"$\dagger$"), (ORACLE_MARK, r"$\ddagger$"))


def _tex_symbols(text: str) -> str:
    for a, b in _TEX_SYMBOLS:
        text = text.replace(a, b)
    return text


def _tex_escape(text: str) -> str:
    """A caption as LaTeX text (Styler escapes cells, not captions)."""
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                 ("{", r"\{"), ("}", r"\}"), ("$", r"\$"), ("`", "")):
        text = text.replace(a, b)
    return _tex_symbols(text)


def _latex(t: RenderedTable) -> str:
    styler = (t.frame.style.hide(axis="index")
              .format(_tex_symbols, escape="latex")  # pandas escapes first, then the symbols become math
              .format_index(_tex_symbols, escape="latex", axis=1))
    return styler.to_latex(caption=_tex_escape(t.caption), hrules=True, position="t", position_float="centering",
                           column_format="l" + "c" * (t.frame.shape[1] - 1), environment="table")


def to_latex(table: ReportTable, cap: str, published: Sequence[PublishedTable] = ()) -> str:
    """Our table as a LaTeX float, then one float (a second tabular) per ``published`` table."""
    return "".join(_latex(t) for t in report_tables(table, cap, published))


CSV_COLUMNS = ("method", "dataset", "setting", "top1_mean", "top1_std", "n_seeds", "avg", "delta_vs_original",
               "paired_delta", "paired_ci_low", "paired_ci_high", "paired_seeds", "lpips", "clip_score",
               "oracle_fidelity")


def csv_frame(table: ReportTable, published: Sequence[PublishedTable] = ()) -> pd.DataFrame:
    """One row per method and column (summary columns included); with ``published`` tables a ``source``
    column is added (``measured`` for ours, the table id for the paper's rows restricted to our columns)."""
    rows = []
    for method in table.methods:
        s = table.summary.loc[method]
        for column in [*table.columns, *(key for key, _ in table.extra_columns)]:
            mean, std, n = table.cell(method, column)
            paired = (s["paired_diff"], s["paired_lo"], s["paired_hi"], s["paired_n"] or None)
            rows.append((method, *column, mean, std, n or None, s["avg"], s["delta"], *paired, s["lpips"],
                         s["clip_score"], s["oracle_fidelity"], "measured"))
    for pub in published:
        cols, averages = _published_view(table, pub)
        covering = {c: i for i in averages for c in pub.averages[i].columns}
        for row in pub.rows:
            for col in cols:
                i = covering.get(col)
                avg, delta = (None, None) if i is None else (row.avg[i], row.delta[i])
                rows.append((row.method_id or row.method, *col, *row.cells[col], pub.trials, avg, delta,
                             None, None, None, None, row.lpips, None, None, pub.id))
    frame = pd.DataFrame(rows, columns=[*CSV_COLUMNS, "source"])
    counts = ("n_seeds", "paired_seeds")
    frame = frame.astype({c: float for c in CSV_COLUMNS[3:] if c not in counts} | dict.fromkeys(counts, "Int64"))
    return frame if published else frame.drop(columns="source")


def to_csv(table: ReportTable, published: Sequence[PublishedTable] = ()) -> str:
    """``csv_frame`` as CSV text: four decimals, empty fields where there is no value."""
    return csv_frame(table, published).to_csv(index=False, float_format="%.4f", lineterminator="\n")


__all__ = ["CSV_COLUMNS", "RenderedTable", "csv_frame", "published_table", "report_tables", "to_csv", "to_latex",
           "to_markdown"]

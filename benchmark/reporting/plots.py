"""Report plots beyond the HTML page's accuracy and loss plots: the parameter sweep of P2 Fig.7.

P2 Fig.7 (METHODS_SPEC §9.6) plots the CLIP score (faithfulness, §7.3) and the LPIPS diversity (§7.2) of
Diff-II's synthetic set against the split ratio ``s``; the paper prints no numbers, only the trend (CLIP
decreases slowly, LPIPS increases substantially with ``s``). A sweep suite (``table = "sweep"``) lists one
family with several values, ``diff_ii(split_ratio=0.1)``, ...; :func:`sweep_points` reads the swept value
of every row from its entry (or, for a plain entry, from the method parameters its records carry) and
the two metrics from the report table, and :func:`sweep_figure` draws them on two y axes (matplotlib,
the ``report`` extra) as a PNG image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from augbench.run.records import CellRecord
from augbench.run.suites import parse_method_entry

__all__ = ["SweepPoint", "swept_parameter", "sweep_figure", "sweep_points"]


@dataclass(frozen=True)
class SweepPoint:
    """One row of a sweep: the parameter's value and the synthetic-set metrics (NaN where missing)."""

    method: str
    value: float
    clip_score: float
    lpips: float


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def swept_parameter(methods: Sequence[str]) -> str | None:
    """The parameter the rows vary: the one key with a numeric value in every entry that has parameters."""
    keys: dict[str, set[float]] = {}
    for entry in methods:
        for key, value in parse_method_entry(entry)[1].items():
            if _number(value) is not None:
                keys.setdefault(key, set()).add(float(value))
    varied = [k for k, values in keys.items() if len(values) > 1]
    return varied[0] if len(varied) == 1 else None


def sweep_points(table: Any, records: Sequence[CellRecord], parameter: str | None = None) -> list[SweepPoint]:
    """The rows of ``table`` (``augbench.reporting.tables.ReportTable``) with a numeric value of ``parameter``
    (default :func:`swept_parameter`), sorted by it; a plain entry (``diff_ii``) takes the value its records'
    method parameters carry, and is left out when that is not a number (``auto``)."""
    parameter = parameter or swept_parameter(table.methods)
    if parameter is None:
        return []
    points = []
    for method in table.methods:
        value = _number(parse_method_entry(method)[1].get(parameter))
        if value is None:
            recorded = {_number(r.method["params"].get(parameter)) for r in records if r.cell["method"] == method}
            value = next(iter(recorded)) if len(recorded) == 1 else None
        if value is not None:
            points.append(SweepPoint(method, value, float(table.summary.loc[method, "clip_score"]),
                                     float(table.summary.loc[method, "lpips"])))
    return sorted(points, key=lambda p: p.value)


def sweep_figure(points: Sequence[SweepPoint], parameter: str, title: str = ""):
    """CLIP score (left axis) and LPIPS (right axis) against ``parameter`` as a PIL image; ``None`` without
    matplotlib or without a point that has either metric."""
    if not any(not math.isnan(p.clip_score) or not math.isnan(p.lpips) for p in points):
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    xs = [p.value for p in points]
    fig, left = plt.subplots(figsize=(5.2, 3.4), dpi=100)
    right = left.twinx()
    left.plot(xs, [p.clip_score for p in points], "o-", color="C0", label="CLIP score")
    right.plot(xs, [p.lpips for p in points], "s--", color="C1", label="LPIPS ×100")
    left.set_xlabel(f"{parameter} ({title})" if title else parameter)
    left.set_ylabel("CLIP score", color="C0")
    right.set_ylabel("LPIPS diversity (×100)", color="C1")
    left.set_xticks(xs, [f"{x:g}" for x in xs])
    left.grid(alpha=0.3)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    # above the axes: the two curves cross, so any corner inside may hide a point
    left.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                ncol=2, frameon=False)
    return figure_image(fig, plt)


def figure_image(fig, plt):
    """A finished matplotlib figure as an RGB PIL image (the figure is closed); every report plot ends here."""
    from PIL import Image

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")

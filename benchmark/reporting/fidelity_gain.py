"""The fidelity–gain picture (issue 24): each method's paired gain over ``original`` against its oracle fidelity,
with the ceiling's label-noise curve behind the points.

On the embedded world a method's synthetic images are judged by the world's oracle classifier (Fid., the share
it assigns to their label; ``augbench.metrics.fidelity``). For a soft label (Real-Mix, Diff-Mix, NoiseCutMix)
the label is its larger-weight class -- the class the mix is mostly of and the one training weights most --
so an inter-class image counts as faithful when the oracle sees that class. The reference rows
``world_renders`` / ``world_renders.wrongN`` (``augbench.methods.world_renders``) are a perfect generator with a
share of wrong-class renders: their points, joined by a line, are the gain a generator of that fidelity gets on
this world, which is what a method's point reads against. Gains are the table's paired differences of the Avg
(``augbench.reporting.tables``): mean over seeds with a 95 % interval when there are two seeds or more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GainPoint", "fidelity_gain_figure", "fidelity_gain_figures", "gain_points"]


@dataclass(frozen=True)
class GainPoint:
    """One row: oracle fidelity (%), paired gain over ``original`` (points), its interval (NaN without one)."""

    method: str
    fidelity: float
    gain: float
    low: float
    high: float
    reference: bool


def gain_points(table: Any, references: Sequence[str] = ()) -> list[GainPoint]:
    """The rows of ``table`` (a ``ReportTable``) with both an oracle fidelity and a gain over ``original``."""
    points = []
    for method in table.methods:
        if method == "original" or method not in table.summary.index:
            continue
        row = table.summary.loc[method]
        fidelity = float(row["oracle_fidelity"])
        paired = float(row["paired_diff"]) if not math.isnan(float(row["paired_diff"])) else float(row["delta"])
        if math.isnan(fidelity) or math.isnan(paired):
            continue
        points.append(GainPoint(method, fidelity, paired, float(row["paired_lo"]), float(row["paired_hi"]),
                                method in references))
    return points


def fidelity_gain_figure(points: Sequence[GainPoint], title: str = ""):
    """The picture as a PIL image; ``None`` without matplotlib or without a point."""
    if not points:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from augbench.reporting.plots import figure_image

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.axhline(0, color="0.6", lw=0.8)
    refs = sorted((p for p in points if p.reference), key=lambda p: p.fidelity)
    if refs:
        ax.plot([p.fidelity for p in refs], [p.gain for p in refs], "-", color="0.55", lw=1.5, zorder=1,
                label="world renders (wrong = q): a perfect generator with label noise")
    for p in points:
        has_interval = not math.isnan(p.low)
        err = [[p.gain - p.low], [p.high - p.gain]] if has_interval else None
        style = {"color": "0.45", "marker": "s"} if p.reference else {"color": "C0", "marker": "o"}
        ax.errorbar([p.fidelity], [p.gain], yerr=err, ms=5, capsize=2, lw=0.8, ls="none", zorder=2, **style)
        ax.annotate(p.method.replace("world_renders", "renders"), (p.fidelity, p.gain), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlim(0, 102)  # the whole fidelity scale, so pictures of different runs compare at a glance
    ax.set_xlabel("oracle fidelity of the synthetic set (%)")
    ax.set_ylabel("paired Δ accuracy over original (points)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if refs:
        ax.legend(fontsize=7, loc="lower right", frameon=False)
    return figure_image(fig, plt)


def fidelity_gain_figures(table: Any, references: Sequence[str], png: Path) -> list[tuple[Any, str]]:
    """The picture (also written to ``png``) with its caption, for the HTML report; empty without points."""
    points = gain_points(table, references)
    intervals = any(not math.isnan(p.low) for p in points)
    image = fidelity_gain_figure(points, f"seeds {table.seeds}")
    if image is None:
        return []
    image.save(png)
    cap = ("Paired gain of each method's Avg over original against its synthetic set's oracle fidelity"
           + (" (bars: 95 % intervals over seeds)" if intervals else " (one seed: no interval)")
           + "; grey: the world_renders reference rows, fresh renders by the world's own renderer with a share of "
             "wrong-class images. Soft labels count as faithful when the oracle sees their larger-weight class. "
             f"Also {png.name}.")
    return [(image, cap)]

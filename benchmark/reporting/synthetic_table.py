"""What each method's synthetic set is, apart from what it adds to a classifier trained on real images.

Per record with a synthetic set (:func:`synthetic_metrics`), then per method over its records (the table's
summary): LPIPS diversity, CLIP score and oracle fidelity (METHODS_SPEC §7), and where the suite asks for them
(issue 25):

* ``syn_only`` (suite key ``syn_only = true``): the classification accuracy score — a classifier trained on
  the synthetic set alone with the cell's recipe and seed, tested on the real test split; the number is the
  record's table measurements averaged like ``Avg`` (``augbench.run.stages.syn_only_stage``).
* distribution metrics (``distribution_metrics = true``; ``augbench.metrics.distribution``) on the profile's
  CLIP image features, pooled over classes, against the cell's training part (``train``) and the test split
  (``test``): Fréchet distance (biased at small n), KID (unbiased), precision / recall / density / coverage
  (k nearest neighbours) and the Vendi score of the synthetic features (the effective number of distinct
  images; diversity beside LPIPS). Per-class values stay in the records.

:func:`synthetic_set_frame` prints them as a second table beside the accuracy table, so the accuracy table
stays readable; the main table shows only ``Syn-only`` beside ``Avg``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from augbench.protocols.base import TableLayout
from augbench.run.records import CellRecord

#: Distribution metrics read from ``synthetic.metrics.distribution.<reference>.<name>.value``:
#: ``(summary column, metric name, reference set, printed label)``.
DISTRIBUTION_COLUMNS = (
    ("fd_train", "fd", "train", "FD (train)"),
    ("kid_train", "kid", "train", "KID (train)"),
    ("fd_test", "fd", "test", "FD (test)"),
    ("kid_test", "kid", "test", "KID (test)"),
    ("precision", "precision", "test", "P"),
    ("recall", "recall", "test", "R"),
    ("density", "density", "test", "D"),
    ("coverage", "coverage", "test", "C"),
    ("vendi", "vendi", "train", "Vendi"),
)
#: Every per-method column of the synthetic-set table, in printed order: ``(summary column, label)``.
SYNTHETIC_COLUMNS = (("lpips", "LPIPS"), ("clip_score", "CLIP"), ("oracle_fidelity", "Fid."),
                     ("syn_only", "Syn-only"), *((c, label) for c, _, _, label in DISTRIBUTION_COLUMNS))
#: Shares shown as percentages, like the accuracy columns.
_SCALED = {"precision": 100.0, "recall": 100.0, "density": 100.0, "coverage": 100.0}
#: Columns printed with three significant digits (distances and the Vendi count have no common scale:
#: KID is ~10 on the embedded world's 64-dimensional CLIP and ~0.01 on ViT-B/32); the rest with one decimal.
_SIGNIFICANT = {"fd_train", "kid_train", "fd_test", "kid_test", "vendi"}
SUMMARY_METRICS = tuple(c for c, _ in SYNTHETIC_COLUMNS)


def synthetic_metrics(records: Sequence[CellRecord], layout: TableLayout) -> pd.DataFrame:
    """One row per record with a synthetic set: ``method``, every :data:`SUMMARY_METRICS` column (NaN where
    the record has none) and ``lpips_name`` (the network behind LPIPS)."""
    rows = []
    for rec in records:
        if rec.synthetic is None:
            continue  # no synthetic set, no synthetic-set metrics (the method's columns stay NaN)
        metrics = rec.synthetic["metrics"]
        lp, fid = metrics["lpips"], metrics["oracle_fidelity"]  # fidelity: None without an oracle (sd15)
        row: dict[str, Any] = {"method": rec.cell["method"], "lpips": lp["value"],
                               "clip_score": metrics["clip_score"]["value"],
                               "oracle_fidelity": fid["value"] if fid else None,
                               "lpips_name": lp["metric"] if lp["value"] is not None else None,
                               "syn_only": _syn_only(rec, layout)}
        distribution = metrics.get("distribution") or {}
        for column, name, reference, _ in DISTRIBUTION_COLUMNS:
            value = ((distribution.get(reference) or {}).get(name) or {}).get("value")
            row[column] = None if value is None else value * _SCALED.get(column, 1.0)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["method", *SUMMARY_METRICS, "lpips_name"])
    return frame.astype(dict.fromkeys(SUMMARY_METRICS, float))


def _syn_only(rec: CellRecord, layout: TableLayout) -> float | None:
    """The synthetic-only classifier's table measurements of this record, averaged (None without one)."""
    result = rec.synthetic.get("syn_only")
    if not result or not result.get("metrics"):
        return None
    values = [value for *_, value in layout.measurements(rec.cell, result["metrics"])]
    return sum(values) / len(values) if values else None


def synthetic_set_frame(methods: Sequence[str], summary: pd.DataFrame) -> pd.DataFrame | None:
    """The synthetic-set table (methods with a synthetic set, columns with a value); None when the suite
    measured nothing beyond the accuracy table's own LPIPS / CLIP / Fid. columns."""
    extra = [c for c, _ in SYNTHETIC_COLUMNS[3:] if c in summary and summary[c].notna().any()]
    if not extra:
        return None
    columns = [(c, label) for c, label in SYNTHETIC_COLUMNS if c in summary and summary[c].notna().any()]
    rows = [m for m in methods if summary.loc[m, [c for c, _ in columns]].notna().any()]
    data: dict[str, list[str]] = {"Method": rows}
    for column, label in columns:
        data[label] = ["—" if pd.isna(v := summary.loc[m, column]) else f"{v:.3g}" if column in _SIGNIFICANT
                       else f"{v:.1f}" for m in rows]
    return pd.DataFrame(data)


def synthetic_set_caption(summary: pd.DataFrame) -> str:
    """What each column of the synthetic-set table measures, for the columns it has."""
    has = {c for c in SUMMARY_METRICS if c in summary and summary[c].notna().any()}
    text = "Synthetic sets (means over each method's cells and seeds)."
    if "syn_only" in has:
        text += (" Syn-only = classification accuracy score: top-1 (%) of a classifier trained on the synthetic set "
                 "alone (same recipe, seed and schedule length in images), tested on the real test split, averaged "
                 "like Avg.")
    if has & {c for c, *_ in DISTRIBUTION_COLUMNS}:
        text += (" On the profile's CLIP image features, pooled over classes: FD = Fréchet distance (biased upward at "
                 "small n: few-shot references have 5-10 images per class), KID = kernel inception distance "
                 "(unbiased; below zero when the sets are closer than two samples of one distribution), against the "
                 "cell's training part (train) and the real test split (test); P / R / D / C = precision, recall, "
                 "density, coverage ×100 (k = 5 nearest neighbours, fewer in a class with fewer images) against the "
                 "test split; "
                 "Vendi = effective number of distinct synthetic images per the cosine kernel (diversity). "
                 "Per-class values are in each record (synthetic.metrics.distribution).")
    return text


def mean_by_method(frame: pd.DataFrame, column: str) -> pd.Series | float:
    """Per-method mean of one column of :func:`synthetic_metrics` (NaN for an empty frame)."""
    return frame[column].groupby(frame["method"]).mean() if len(frame) else math.nan


__all__ = ["DISTRIBUTION_COLUMNS", "SUMMARY_METRICS", "SYNTHETIC_COLUMNS", "mean_by_method", "synthetic_metrics",
           "synthetic_set_caption", "synthetic_set_frame"]

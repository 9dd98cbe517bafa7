"""Result records: one typed, versioned JSON record per cell, and a run-level ``results.json``.

A cell record (``<run-dir>/records/<cell>.json``, format :data:`RECORD_FORMAT`) holds everything a
table needs and everything needed to say where a number came from: the cell, the method and its
parameters, the subset manifests, the artifacts used (with the leakage flag), the synthetic set and
what the select stage dropped, how synthetic data joined training, the classifier result, versions,
the git commit and timings per stage. Reports read records only.

``results.json`` (format :data:`RESULTS_FORMAT`) sums a run up the way lm-evaluation-harness writes
its results file: the suite's configuration, versions, and per-cell metrics in one place.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from augbench import __version__
from augbench.run.store import write_json_atomic

RECORD_FORMAT = "augbench.record/2"
RESULTS_FORMAT = "augbench.results/1"
READABLE_RECORD_FORMATS = ("augbench.record/1", RECORD_FORMAT)


class RecordError(ValueError):
    """A record file is not a record this version can read."""


@dataclass
class CellRecord:
    """One cell's result (the JSON keys are the field names)."""

    cell: dict[str, Any]
    cell_key: str
    method_id: str
    method: dict[str, Any]
    subset: dict[str, Any]
    selection: str
    training: dict[str, Any] | None
    artifacts: list[dict[str, Any]]
    synthetic: dict[str, Any] | None
    train: dict[str, Any]
    history: Any
    metrics: dict[str, Any] | None
    profile: str
    models: dict[str, Any]
    timings: dict[str, float]
    stage_keys: dict[str, Any]
    reused: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=lambda: versions())
    git_commit: str | None = field(default_factory=lambda: git_commit())
    format: str = RECORD_FORMAT

    @property
    def uses_foreign_artifacts(self) -> bool:
        return any(a.get("foreign") for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, run_dir: Path) -> Path:
        path = Path(run_dir) / "records" / f"{self.cell_key}.json"
        write_json_atomic(path, self.to_dict())
        return path


def read_record(path: str | Path) -> dict[str, Any]:
    """A record as a dict, after checking its format (older readable formats are accepted as they are)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") not in READABLE_RECORD_FORMATS:
        raise RecordError(f"{path}: record format {data.get('format')!r}; this augbench reads "
                          f"{', '.join(READABLE_RECORD_FORMATS)} (rerun the cell to rewrite it)")
    return data


def write_results(run_dir: Path, suite: dict[str, Any], summary: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    """``<run-dir>/results.json``: configuration, versions and per-cell metrics of the whole run."""
    cells = {}
    for rec in records:
        syn = rec.get("synthetic") or {}
        cells[rec["cell_key"]] = {
            "method_id": rec["method_id"], "cell": rec["cell"], "metrics": rec.get("metrics"),
            "synthetic_metrics": syn.get("metrics"), "training": rec.get("training"),
            "foreign_artifacts": any(a.get("foreign") for a in rec.get("artifacts") or []),
            "record": f"records/{rec['cell_key']}.json",
        }
    path = Path(run_dir) / "results.json"
    write_json_atomic(path, {"format": RESULTS_FORMAT, "suite": suite, "summary": summary,
                             "versions": versions(), "git_commit": git_commit(), "results": cells})
    return path


STAGE_ORDER = ("subset", "artifacts", "generate", "select", "metrics", "train", "evaluate")


def stage_seconds(records: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent per stage over ``records``, counting only work the records' run did.

    A reused stage's timing is its store lookup, except ``train``, whose cached result carries the
    seconds of the run that computed it: a reused ``train`` therefore counts zero. (The record's
    ``reused`` list is not a guide for the other stages: ``artifacts`` is listed when one artifact was
    reused while another, e.g. Diff-II's inversion pool, was built.) ``evaluate`` is the test-set
    evaluation inside training (``train`` excludes it). Keys follow the cell's chain
    (:data:`STAGE_ORDER`); ``total`` is their sum.
    """
    totals = dict.fromkeys(STAGE_ORDER, 0.0)
    for rec in records:
        trained = "train" not in (rec.get("reused") or [])
        for stage, seconds in (rec.get("timings") or {}).items():
            if stage != "train" or trained:
                totals[stage] = totals.get(stage, 0.0) + float(seconds)
        if trained:
            evaluation = float(((rec.get("train") or {}).get("timings") or {}).get("eval", 0.0))
            totals["evaluate"] += evaluation
            totals["train"] -= evaluation
    totals["total"] = sum(totals.values())
    return {k: round(v, 1) for k, v in totals.items()}


def format_stage_seconds(totals: dict[str, float]) -> str:
    """``"subset 2 s, artifacts 3.1 min, generate 12.0 min, ..."`` (stages under half a second left out)."""
    parts = [f"{stage} {seconds:.0f} s" if seconds < 60 else f"{stage} {seconds / 60:.1f} min"
             for stage, seconds in totals.items() if stage != "total" and seconds >= 0.5]
    return ", ".join(parts) or "nothing computed"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "augbench": __version__}
    for name in ("torch", "torchvision", "diffusers", "transformers", "timm", "peft", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


__all__ = ["RECORD_FORMAT", "RESULTS_FORMAT", "CellRecord", "RecordError", "read_record", "write_results"]

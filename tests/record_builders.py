"""Cell records for report tests: real :class:`CellRecord` objects with only what a test cares about set.

A record the runner writes has every field; a test names the cell, the metrics and the synthetic set and
leaves the rest empty, so the tables, the HTML page and the plots read exactly the type the runner writes.
"""

from __future__ import annotations

from typing import Any

from augbench.run.records import CellRecord


def synthetic_set(lpips: float | None = None, clip: float | None = None, fidelity: float | None = None,
                  key: str = "set", lpips_metric: str = "lpips_alex", **fields: Any) -> dict[str, Any]:
    """A record's ``synthetic`` entry with the three synthetic-set metrics (METHODS_SPEC §7.2-7.3)."""
    metrics = {"lpips": {"metric": lpips_metric, "value": lpips}, "clip_score": {"metric": "clip_score", "value": clip},
               "oracle_fidelity": None if fidelity is None else {"metric": "oracle_fidelity", "value": fidelity}}
    return {"key": key, "dir": f"/elsewhere/{key}", "size": 6, "metrics": metrics, **fields}


def training(mode: str = "concat", p: float = 0.5) -> dict[str, Any]:
    """A record's ``training`` entry (``augbench.contract.TrainingIntegration.to_dict()``, METHODS_SPEC §4)."""
    return {"replacement_mode": mode, "replacement_p": p, "labels": "soft", "label_gamma": 1.0, "label_sigma": 0.0}


def artifact(kind: str, foreign: bool = False, **recipe: Any) -> dict[str, Any]:
    """A record's ``artifacts`` entry (``augbench.run.artifacts.Artifact.record()``)."""
    return {"key": f"{kind}-key", "kind": kind, "recipe": recipe, "base_model": "m", "foreign": foreign,
            "trained_on": {"hash": "h", "size": 1}, "files": {}, "seconds": 0.0, "reused": False,
            "foreign_examples": [], "folder": "/elsewhere"}


def cell_record(method: str, seed: int = 0, *, dataset: str = "toybirds", params: dict[str, Any] | None = None,
                metrics: dict[str, Any] | None = None, synthetic: dict[str, Any] | None = None,
                profile: str = "embedded", protocol: str = "few_shot", selection: str = "val_split",
                method_params: dict[str, Any] | None = None, **fields: Any) -> CellRecord:
    """A record of ``method`` (the suite entry, the table row) on one cell; ``fields`` set any other field."""
    params = {"shots": 5} if params is None else params
    cell = {"suite": "test", "profile": profile, "dataset": dataset, "protocol": protocol,
            "protocol_params": params, "method": method, "seed": seed}
    key = f"{dataset}.{protocol}.{'-'.join(f'{k}{v}' for k, v in params.items())}.{method}.seed{seed}"
    values: dict[str, Any] = dict(
        cell=cell, cell_key=key, method_id=method.split("(")[0],
        method={"method": method.split("(")[0], "preset": None, "params": method_params or {}},
        subset={}, selection=selection, training=None, artifacts=[], synthetic=synthetic, train={}, history=None,
        metrics=metrics, profile=profile, models={}, timings={}, stage_keys={}, versions={}, git_commit=None)
    return CellRecord(**(values | fields))


def write_records(run_dir, records: list[CellRecord]) -> None:
    """Each record under ``run_dir/records/`` as the runner writes it."""
    for record in records:
        record.write(run_dir)

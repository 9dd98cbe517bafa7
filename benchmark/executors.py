"""Executors beyond the local one: fan a suite's cells out over a Ray cluster (DESIGN.md, "Ray").

A suite's cells are grouped by the real-data subset they train on (dataset, protocol parameters,
seed). Cells of one group share stages — the subset, and the synthetic set a composition such as
``sd_random+cutmix`` reuses from ``sd_random`` — so a group runs as one Ray task, in order, through
exactly the code of the local executor (:func:`benchmark.runner.run_cells`); different groups share
no stage and run in parallel. Every stage is cached under a content hash and every record is written
atomically, so the records are the same as a local run's, and an interrupted Ray run resumes like a
local one.

The run directory must be on a file system every node sees (one machine, NFS, a mounted bucket);
augbench and the methods a suite names must be installed on every node. ``ray.init`` connects to
``--ray-address`` or ``RAY_ADDRESS`` when given, else starts a local Ray instance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark.runner import Cell, RunOptions, run_cells


def group_cells_by_subset(cells: list[Cell]) -> list[list[Cell]]:
    """Cells that train on the same subset, in plan order; groups in order of first appearance."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.dataset, cell.protocol, cell.protocol_params, cell.seed), []).append(cell)
    return list(groups.values())


def _run_group(cells: list[Cell], spec: Mapping[str, Any], opts: RunOptions, run_dir: str,
               threads: int) -> dict[str, list]:
    """The body of one Ray task: the local executor over one group, with the task's CPU share."""
    import torch

    torch.set_num_threads(max(1, threads))
    return run_cells(cells, spec, opts, Path(run_dir), lambda s: print(s, flush=True))


def run_cells_ray(cells: list[Cell], spec: Mapping[str, Any], opts: RunOptions, run_dir: Path,
                  log) -> dict[str, list]:
    """Run ``cells`` as one Ray task per subset group; returns what :func:`run_cells` returns, merged."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--executor ray needs Ray: pip install 'augbench[ray]' "
                           "(or run with the default --executor local)") from exc

    # paths must mean the same thing in workers, whose working directory is not ours
    run_dir = Path(run_dir).resolve()
    shipped = dataclasses.replace(
        opts, log=None,
        run_dir=str(run_dir),
        datasets_dir=str(Path(opts.datasets_dir).resolve()) if opts.datasets_dir else None,
        data_root=str(Path(opts.data_root).resolve()) if opts.data_root else None)
    if not ray.is_initialized():
        ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=True)
    task = ray.remote(_run_group).options(num_cpus=opts.ray_cpus_per_task, num_gpus=opts.ray_gpus_per_task,
                                          max_retries=0)
    groups = group_cells_by_subset(cells)
    log(f"ray: {len(groups)} tasks ({opts.ray_cpus_per_task} CPU, {opts.ray_gpus_per_task} GPU each) on "
        f"{ray.cluster_resources().get('CPU', 0):.0f} CPUs / {ray.cluster_resources().get('GPU', 0):.0f} GPUs")
    spec = dict(spec)
    refs = [task.remote(group, spec, shipped, str(run_dir), int(opts.ray_cpus_per_task)) for group in groups]
    merged: dict[str, list] = {"failed": [], "reused": [], "computed": []}
    for group, ref in zip(groups, refs):
        try:
            outcome = ray.get(ref)
        except Exception as exc:  # a lost worker fails its group, not the run
            outcome = {"failed": [{"cell": c.key, "error": f"ray task: {type(exc).__name__}: {exc}"} for c in group],
                       "reused": [], "computed": []}
        for key in merged:
            merged[key].extend(outcome[key])
    return merged


__all__ = ["group_cells_by_subset", "run_cells_ray"]

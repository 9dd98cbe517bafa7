"""Executors: run a suite's cells through a per-cell function, locally or over a Ray cluster.

An executor receives the cells and the per-cell function (``runner.CellRunner``:
``cell_fn(cell, log, on_stage) -> record``) and knows nothing else about what a cell does, so local
and Ray runs execute the same code and write the same records.

* ``local``: cells one after another in this process, with a progress bar (cells done, the stage now
  running, ETA). A failing cell is logged and skipped so it cannot lose the others' work
  (``AUGBENCH_RAISE=1`` re-raises). With ``--workers N`` the subset groups (below) run as jobs of a
  pool of N processes on this machine (:func:`run_pool`).
* ``ray``: cells grouped by the real subset they train on (``Cell.subset_group``: dataset, protocol
  parameters, seed) run as one Ray task each, in order, through :func:`run_local`; different groups
  share no stage and run in parallel. The run directory and the shared cache must be on storage every
  node sees; augbench and the methods the suite names must be installed on every node. ``ray.init``
  connects to ``--ray-address`` or ``RAY_ADDRESS`` when given, else starts a local Ray instance.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from augbench.run.suites import Cell, RunOptions

CellFn = Callable[..., dict[str, Any]]


def group_cells_by_subset(cells: list[Cell]) -> list[list[Cell]]:
    """Cells that train on the same subset, in plan order; groups in order of first appearance."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.subset_group, []).append(cell)
    return list(groups.values())


class Progress:
    """A tqdm bar over cells whose postfix names the cell and stage now running; logs go above it."""

    def __init__(self, total: int, enabled: bool, log: Callable[[str], None]):
        from tqdm.auto import tqdm

        # disable=None: a bar on a terminal only; logs piped to a file stay plain lines
        self.bar = tqdm(total=total, unit="cell", desc="cells", disable=None if enabled else True, dynamic_ncols=True)
        self._log = log
        self.cell = ""

    def log(self, message: str) -> None:
        if self.bar.disable:
            self._log(message)
        else:
            self.bar.write(message)

    def stage(self, stage: str) -> None:
        self.bar.set_postfix_str(f"{self.cell}: {stage}", refresh=True)

    def advance(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_local(cells: list[Cell], cell_fn: CellFn, opts: RunOptions, log: Callable[[str], None]) -> dict[str, list]:
    """Run ``cells`` one after another; returns failed cells and the store entries reused / computed."""
    progress = Progress(len(cells), opts.progress, log)
    failed = []
    try:
        for i, cell in enumerate(cells, 1):
            progress.cell = cell.key
            progress.log(f"[{i}/{len(cells)}] {cell.key}")
            t = time.time()
            try:
                rec = cell_fn(cell, progress.log, progress.stage)
            except Exception as exc:  # noqa: BLE001 - one cell's failure must not lose the others' work
                failed.append({"cell": cell.key, "error": f"{type(exc).__name__}: {exc}"})
                progress.log(f"  FAILED: {type(exc).__name__}: {exc}")
                if os.environ.get("AUGBENCH_RAISE"):
                    raise
                continue
            finally:
                progress.advance()
            acc = (rec.get("metrics") or {}).get("top1")
            reused = f" (reused: {', '.join(rec['reused'])})" if rec.get("reused") else ""
            progress.log(f"  top-1 {acc:.2f}% in {time.time() - t:.1f}s{reused}")
    finally:
        progress.close()
    reused, computed = cell_fn.stage_log() if hasattr(cell_fn, "stage_log") else ([], [])
    return {"failed": failed, "reused": reused, "computed": computed}


def _run_group(cells: list[Cell], cell_fn: CellFn, opts: RunOptions, threads: int) -> dict[str, list]:
    """The body of one Ray task or pool job: the local executor over one group, with its CPU share."""
    import dataclasses

    import torch

    threads = max(1, threads)
    # training sets its thread count from the usable cores; this caps it at the worker's share
    os.environ["AUGBENCH_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return run_local(cells, cell_fn, dataclasses.replace(opts, progress=False, workers=1),
                     lambda s: print(s, flush=True))


def run_pool(cells: list[Cell], cell_fn: CellFn, opts: RunOptions, log: Callable[[str], None]) -> dict[str, list]:
    """``--workers N``: the subset groups of ``cells`` as jobs of N worker processes on this machine.

    Each worker gets ``cores // N`` threads (one per core on a 2-core machine with 2 workers: two
    1-thread processes do more work than one 2-thread process, as the world build measured). Cells
    that share a subset run in one job, in plan order, so a subset's artifacts are built once and
    reused by the next cell; the shared store's file locks keep jobs that still meet on an entry from
    building it twice. Every cell computes exactly what a serial run computes (seeds come from the
    cell, not the worker), so the records are the same; tests check it.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from augbench.training.runtime import usable_cores

    groups = group_cells_by_subset(cells)
    workers = max(1, min(int(opts.workers), len(groups)))
    threads = max(1, usable_cores() // workers)
    log(f"process pool: {len(groups)} subset groups on {workers} workers x {threads} thread(s)")
    progress = Progress(len(cells), opts.progress, log)
    merged: dict[str, list] = {"failed": [], "reused": [], "computed": []}
    # spawn: a forked child would inherit torch's thread pools and any warm pipelines of this process
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = {pool.submit(_run_group, group, cell_fn, opts, threads): group for group in groups}
        try:
            for job in as_completed(jobs):
                group = jobs[job]
                try:
                    outcome = job.result()
                except Exception as exc:  # noqa: BLE001 - a lost worker fails its group, not the run
                    outcome = {"failed": [{"cell": c.key, "error": f"worker: {type(exc).__name__}: {exc}"}
                                          for c in group], "reused": [], "computed": []}
                for key in merged:
                    merged[key].extend(outcome[key])
                progress.bar.update(len(group))
        finally:
            progress.close()
    return merged


def run_ray(cells: list[Cell], cell_fn: CellFn, opts: RunOptions, log: Callable[[str], None]) -> dict[str, list]:
    """Run ``cells`` as one Ray task per subset group; returns what :func:`run_local` returns, merged."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--executor ray needs Ray: pip install 'augbench[ray]' "
                           "(or run with the default --executor local)") from exc

    if not ray.is_initialized():
        ray.init(address=opts.ray_address, include_dashboard=False, log_to_driver=True)
    task = ray.remote(_run_group).options(num_cpus=opts.ray_cpus_per_task, num_gpus=opts.ray_gpus_per_task,
                                          max_retries=0)
    groups = group_cells_by_subset(cells)
    log(f"ray: {len(groups)} tasks ({opts.ray_cpus_per_task} CPU, {opts.ray_gpus_per_task} GPU each) on "
        f"{ray.cluster_resources().get('CPU', 0):.0f} CPUs / {ray.cluster_resources().get('GPU', 0):.0f} GPUs")
    refs = [task.remote(group, cell_fn, opts, int(opts.ray_cpus_per_task)) for group in groups]
    merged: dict[str, list] = {"failed": [], "reused": [], "computed": []}
    for group, ref in zip(groups, refs):
        try:
            outcome = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a lost worker fails its group, not the run
            outcome = {"failed": [{"cell": c.key, "error": f"ray task: {type(exc).__name__}: {exc}"} for c in group],
                       "reused": [], "computed": []}
        for key in merged:
            merged[key].extend(outcome[key])
    return merged


__all__ = ["Progress", "group_cells_by_subset", "run_local", "run_pool", "run_ray"]

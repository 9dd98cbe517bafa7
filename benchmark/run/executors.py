"""Executors: run a suite's cells through a per-cell function, locally or over a Ray cluster.

An executor receives the cells and the per-cell function (``runner.CellRunner``:
``cell_fn(cell, log, on_stage) -> record``) and knows nothing else about what a cell does, so local
and Ray runs execute the same code and write the same records.

* ``local``: cells one after another in this process, with a progress bar (cells done, the stage now
  running, ETA). A failing cell is skipped so it cannot lose the others' work: the console gets one
  ``FAILED`` line (the stage that was running, the error's first line, and the log file), and the full
  message and traceback go to ``<run dir>/logs/<cell key>.log``. Running out of memory (a CUDA or CPU
  allocator error, ``MemoryError``) names the stage, the size the allocator tried and the knob that
  lowers that stage's memory (:data:`MEMORY_KNOBS`). With ``--workers N`` the subset groups (below)
  run as jobs of a pool of N processes on this machine (:func:`run_pool`).
* ``ray``: cells grouped by the real subset they train on (``Cell.subset_group``: dataset, protocol
  parameters, seed) run as one Ray task each, in order, through :func:`run_local`; different groups
  share no stage and run in parallel. The run directory and the shared cache must be on storage every
  node sees; augbench and the methods the suite names must be installed on every node. ``ray.init``
  connects to ``--ray-address`` or ``RAY_ADDRESS`` when given, else starts a local Ray instance.
  Both run each group through :func:`run_local`, so their failures read and are logged the same way.

Debugging: ``AUGBENCH_RAISE=1`` (set by ``augbench run --debug``) re-raises the first failing cell's
exception with its traceback, after writing the log, instead of going on with the next cell.
"""

from __future__ import annotations

import os
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from augbench.run.cells import Cell, RunOptions
from augbench.run.memory import is_out_of_memory

CellFn = Callable[..., dict[str, Any]]

#: Re-raise a failing cell's exception (``augbench run --debug`` sets it) instead of going on.
RAISE_ENV = "AUGBENCH_RAISE"
#: Stage (as ``on_stage`` names it) -> what lowers its memory, named by an out-of-memory failure.
MEMORY_KNOBS = {
    "artifacts": "[concepts.ti] / [concepts.lora_ti] micro_batch, encode_batch, resolution in the suite",
    "generate": "--batch-size",
    "select": "--batch-size",
    "metrics": "--batch-size",
    "train": "[suite] classifier_batch_size",
}
#: The stage a cell is in before its first ``on_stage`` call (datasets, subsets, method resolution).
FIRST_STAGE = "subset"
_TRIED = re.compile(r"tried to allocate\s+(\d+\s+bytes|[\d.]+\s*[KMGTP]i?B)\b", re.IGNORECASE)


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
        self.last_stage = FIRST_STAGE  # the stage running now, named by a failure

    def log(self, message: str) -> None:
        if self.bar.disable:
            self._log(message)
        else:
            self.bar.write(message)

    def stage(self, stage: str) -> None:
        self.last_stage = stage
        self.bar.set_postfix_str(f"{self.cell}: {stage}", refresh=True)

    def advance(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# --- failures ------------------------------------------------------------------------------------------

def failure_log_path(run_dir: str | os.PathLike | None, cell_key: str) -> Path | None:
    """``<run_dir>/logs/<cell key>.log``, where a failed cell's traceback goes (``None`` without a run dir)."""
    return Path(run_dir) / "logs" / f"{cell_key}.log" if run_dir else None


def write_failure_log(path: Path | None, cell: Cell, stage: str, exc: BaseException) -> Path | None:
    """The cell, the stage and the full traceback of ``exc`` in ``path``; ``None`` when it cannot be written."""
    if path is None:
        return None
    text = (f"cell: {cell.key}\nstage: {stage}\nerror: {type(exc).__name__}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return path


def failure_message(exc: BaseException, stage: str, log_path: Path | None) -> str:
    """The one ``FAILED`` line: the stage, the error's first line (out of memory: the size tried and the knob
    of :data:`MEMORY_KNOBS`) and where the traceback is."""
    first = (str(exc).strip().splitlines() or [""])[0]
    where = f"traceback: {log_path}" if log_path else f"set {RAISE_ENV}=1 (augbench run --debug) for the traceback"
    if getattr(exc, "names_its_knob", False):  # e.g. concepts' ConceptMemoryError: its own advice is sharper
        return f"out of memory in stage {stage}: {first}; {where}"
    if is_out_of_memory(exc):
        tried = _TRIED.search(str(exc))
        size = f" (tried to allocate {tried.group(1)})" if tried else ""
        knob = MEMORY_KNOBS.get(stage, "--batch-size")
        return f"out of memory in stage {stage}{size}; lower it with {knob}; {where}"
    more = " [...]" if len(str(exc).strip().splitlines()) > 1 else ""
    return f"{type(exc).__name__} in stage {stage}: {first}{more}; {where}"


def _failed(cell: Cell, exc: BaseException, stage: str, opts: RunOptions) -> tuple[dict[str, Any], str]:
    log_path = write_failure_log(failure_log_path(opts.run_dir, cell.key), cell, stage, exc)
    message = failure_message(exc, stage, log_path)
    entry = {"cell": cell.key, "error": f"{type(exc).__name__}: {exc}", "stage": stage, "message": message,
             "log": str(log_path) if log_path else None, "out_of_memory": is_out_of_memory(exc)}
    return entry, message


def _release_memory() -> None:
    """After a failed cell: collect its garbage and return cached CUDA blocks, so the next cell starts clean."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- executors ------------------------------------------------------------------------------------------

def run_local(cells: list[Cell], cell_fn: CellFn, opts: RunOptions, log: Callable[[str], None]) -> dict[str, list]:
    """Run ``cells`` one after another; returns failed cells and the store entries reused / computed.

    A failed cell's entry holds ``cell``, ``error`` (type and full message), ``stage``, ``message`` (the
    console line), ``log`` (its traceback file) and ``out_of_memory``.
    """
    progress = Progress(len(cells), opts.progress, log)
    failed = []
    try:
        for i, cell in enumerate(cells, 1):
            progress.cell, progress.last_stage = cell.key, FIRST_STAGE
            progress.log(f"[{i}/{len(cells)}] {cell.key}")
            t = time.time()
            try:
                rec = cell_fn(cell, progress.log, progress.stage)
            except Exception as exc:  # noqa: BLE001 - one cell's failure must not lose the others' work
                entry, message = _failed(cell, exc, progress.last_stage, opts)
                failed.append(entry)
                progress.log(f"  FAILED: {message}")
                if os.environ.get(RAISE_ENV):
                    raise
                rec = None
            finally:
                progress.advance()
            if rec is None:  # the exception and its frames are gone now: give their memory back
                _release_memory()
                continue
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

    from augbench.training.runtime import usable_cores, user_threads

    groups = group_cells_by_subset(cells)
    workers = max(1, min(int(opts.workers), len(groups)))
    threads = max(1, usable_cores() // workers)
    if user_threads() is not None:  # OMP_NUM_THREADS caps each worker's share
        threads = max(1, min(threads, user_threads()))
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


__all__ = ["FIRST_STAGE", "MEMORY_KNOBS", "RAISE_ENV", "Progress", "failure_log_path", "failure_message",
           "group_cells_by_subset", "is_out_of_memory", "run_local", "run_pool", "run_ray", "write_failure_log"]

"""The suite runner: check the suite, plan the cells, run each as a chain of stages, sum the run up.

``run_suite`` loads and validates the suite (unknown keys, methods, presets, datasets, recipes) and
checks that every dataset's data is present, all before the first cell runs; then an executor
(``augbench.run.executors``: local, or Ray) calls :class:`CellRunner` on every cell. A cell is the chain
of :mod:`augbench.run.stages`::

    subset ─> artifacts ─> generate ─> select ─> metrics ─> train ─> record

Artifacts, synthetic sets, selections and synthetic-set metrics live in the shared store
(``--cache-dir`` / ``AUGBENCH_CACHE`` / ``~/.cache/augbench``), so another run or suite that needs
the same set reuses it (and waits for it when the other is still building it); classifier results and
records live in the run directory. A finished stage is never recomputed and nothing half-written is
ever read, so an interrupted run is resumed by running the same command again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augbench.run.cells import Cell, RunOptions, default_run_dir, plan_cells
from augbench.run.records import (
    CellRecord,
    format_stage_seconds,
    read_record,
    stage_peak_memory,
    stage_seconds,
    write_results,
    write_run_suite,
)
from augbench.run.stages import (
    CellEnv,
    Subsets,
    TrainInputs,
    artifacts_stage,
    full_split_of,
    generate_stage,
    metrics_stage,
    reference_sets,
    resolve_method,
    select_stage,
    subset_stage,
    syn_only_stage,
    train_stage,
)
from augbench.run.store import Store, default_cache_root, write_json_atomic
from augbench.run.suites import EXECUTORS, Suite, SuiteError, load_suite

# store folders named after what they hold; records and logs name the stage that made them
STAGE_OF_STORE_FOLDER = {"synthetic": "generate", "selections": "select"}


def run_cell(cell: Cell, env: CellEnv, memory: Any = None) -> dict[str, Any]:
    """Run (or reuse) every stage of ``cell`` and write its record; returns the record as a dict.

    ``memory``: the cell's ``augbench.run.memory.StageMemory``, whose per-stage peaks the record keeps.
    """
    from augbench.data import open_dataset
    from augbench.data.views import first_classes

    timings: dict[str, float] = {}
    suite, opts = env.suite, env.opts
    already_reused = (len(env.store.stages.reused), len(env.run_store.stages.reused))
    source = first_classes(open_dataset(cell.dataset, opts.data_root, opts.datasets_dir), suite.classes)
    test_source = (first_classes(open_dataset(suite.test_dataset, opts.data_root, opts.datasets_dir), suite.classes)
                   if suite.test_dataset else source)
    if test_source.class_names != source.class_names:
        raise SuiteError(f"test dataset {test_source.card.id!r} has different classes from {source.card.id!r}")

    t = time.time()
    subsets = subset_stage(cell, suite, source, test_source)
    resolved = resolve_method(cell, suite, env.registry)
    timings["subset"] = time.time() - t
    references = reference_sets(subsets, source, test_source) if suite.distribution_metrics else None
    synthetic, syn_info, artifacts = _synthetic_stages(env, cell, resolved, source, subsets, timings, references)

    # many / medium / few from the training subset's counts (long tail, METHODS_SPEC §5.4), else None
    class_groups = suite.protocol_object().class_groups(subsets.subset, source)
    inputs = TrainInputs(cell, subsets, source, test_source, synthetic, syn_info["selection"] if syn_info else None,
                         resolved, class_groups)
    result, train_key, _ = train_stage(env, inputs)
    timings["train"] = result.get("seconds", 0.0)
    if suite.syn_only and synthetic is not None and len(synthetic):  # the classification accuracy score
        syn_info["syn_only"] = syn_only_stage(env, inputs)
        timings["syn_only"] = syn_info["syn_only"]["seconds"]

    reused = env.store.stages.reused[already_reused[0]:] + env.run_store.stages.reused[already_reused[1]:]
    record = CellRecord(
        cell=cell.to_dict(), cell_key=cell.key, method_id=resolved.method_id, method=resolved.method.provenance(),
        subset=_subset_record(subsets), selection=suite.selection,
        training=resolved.training.to_dict() if resolved.training and synthetic is not None else None,
        artifacts=[a.record() for a in artifacts.values()], synthetic=syn_info,
        train={k: v for k, v in result.items() if k != "history"}, history=result.get("history"),
        metrics=result.get("metrics"), profile=env.profile.name,
        models={"pipeline": env.profile.pipeline, "clip": env.profile.clip, "classifier": env.profile.classifier,
                "classifier_weights": env.profile.classifier_weights,
                **({"classifier_weights_file": env.profile.classifier_weights_file}
                   if env.profile.classifier_weights_file else {}),
                **({"alexnet_weights": env.profile.alexnet_weights} if env.profile.alexnet_weights else {})},
        timings=timings, reused=[STAGE_OF_STORE_FOLDER.get(s.split("/")[0], s.split("/")[0]) for s in reused],
        memory=memory.peaks() if memory is not None else {},
        stage_keys={"train": train_key, "synthetic": syn_info["key"] if syn_info else None,
                    "artifacts": [a.key for a in artifacts.values()]},
    )
    record.write(env.opts.run_dir)
    return record.to_dict()


def _synthetic_stages(env: CellEnv, cell: Cell, resolved, source, subsets: Subsets, timings: dict[str, float],
                      references=None):
    """artifacts → generate → select → metrics for an offline method; ``(None, None, {})`` otherwise.
    ``references``: the real sets of the distribution metrics (``augbench.run.stages.reference_sets``)."""
    from augbench.synthetic.loading import load_synthetic

    offline = resolved.offline
    if offline is None:
        return None, None, {}
    t = time.time()
    artifacts = artifacts_stage(env, offline, source, subsets.train_part, full_split_of(subsets))
    timings["artifacts"] = time.time() - t
    ref = generate_stage(env, offline, source, subsets.train_part, cell.seed, artifacts)
    timings["generate"] = ref.seconds
    t = time.time()
    selection = select_stage(env, offline, source, ref, artifacts)
    timings["select"] = time.time() - t
    synthetic, rows = load_synthetic(ref.folder, source.class_names, subsets.train_part.image_ids,
                                     kept=selection["kept"], integration=resolved.training)
    t = time.time()
    syn_metrics = metrics_stage(env, synthetic, source, selection["key"], references)
    timings["metrics"] = time.time() - t
    info = {"key": ref.key, "dir": str(ref.folder), "size": len(rows), "generated": selection["generated"],
            "dropped_by_select": selection["dropped"], "selection": selection["key"], "metrics": syn_metrics,
            "regenerated": sum(int(row.get("provenance", {}).get("regenerated", 0)) for row in rows),
            "rejected_by_filter": sum(int(row.get("provenance", {}).get("rejected", 0)) for row in rows),
            "method": offline.provenance(), "reused": ref.reused}
    return synthetic, info, artifacts


def _subset_record(s: Subsets) -> dict[str, Any]:
    return {"hash": s.subset.manifest_hash, "size": len(s.subset.samples),
            "train_hash": s.train_part.manifest_hash, "train_size": len(s.train_part.samples),
            "val_hash": s.val_part.manifest_hash if s.val_part else None,
            "val_size": len(s.val_part.samples) if s.val_part else 0}


@dataclass
class CellRunner:
    """The per-cell function executors call: ``runner(cell, log, on_stage) -> record``.

    Picklable (it holds the suite and options only), so a Ray worker runs exactly this code; models
    and stores are created in the process that runs the cell.
    """

    suite: Suite
    opts: RunOptions

    def __call__(self, cell: Cell, log: Callable[[str], None], on_stage=lambda stage: None) -> dict[str, Any]:
        from augbench.run.memory import StageMemory

        memory = StageMemory()

        def stage(name: str) -> None:
            memory.enter(name)
            on_stage(name)

        try:
            return run_cell(cell, self.env(log, stage), memory)
        finally:
            memory.close()

    def env(self, log: Callable[[str], None], on_stage=lambda stage: None) -> CellEnv:
        import torch

        from augbench.registry import default_registry
        from augbench.run.profiles import get_profile

        if not hasattr(self, "_stores"):
            cache_root = Path(self.opts.cache_dir) if self.opts.cache_dir else default_cache_root()
            self._stores = (Store(cache_root, log), Store(Path(self.opts.run_dir) / "cache", log))
        device = self.opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
        profile = self.suite.apply_to_profile(get_profile(self.opts.profile))
        return CellEnv(self.suite, self.opts, profile, device, self._stores[0], self._stores[1],
                       default_registry(), log, on_stage)

    def __getstate__(self) -> dict[str, Any]:  # stores hold a log callable: each process makes its own
        return {"suite": self.suite, "opts": self.opts}

    def stage_log(self) -> tuple[list[str], list[str]]:
        """(reused, computed) store entries of the cells this runner ran in this process."""
        if not hasattr(self, "_stores"):
            return [], []
        shared, local = self._stores
        return shared.stages.reused + local.stages.reused, shared.stages.computed + local.stages.computed


# --- the run -----------------------------------------------------------------------------------------

def prepare_run(opts: RunOptions) -> tuple[Suite, list[Cell], Path]:
    """Load and validate the suite and check every dataset's data, before any cell runs."""
    from augbench.registry import default_registry
    from augbench.run.suites import parse_method_entry, validate_suite

    if opts.executor not in EXECUTORS:
        raise SuiteError(f"unknown executor {opts.executor!r}: expected one of {', '.join(EXECUTORS)}")
    if not (str(opts.workers) == "auto" or str(opts.workers).isdigit() and int(opts.workers) >= 1) or \
            (str(opts.workers) not in ("1", "auto") and opts.executor != "local"):
        raise SuiteError(f"--workers {opts.workers}: expected a count >= 1 or 'auto', with the local executor (Ray "
                         "places tasks itself: --ray-cpus-per-task)")
    suite = load_suite(opts.suite, opts.profile, rehearsal=opts.rehearsal)
    validate_suite(suite, default_registry(), opts.datasets_dir)
    cells = plan_cells(suite, opts)
    registry = default_registry()
    for entry in dict.fromkeys(c.method for c in cells):  # --methods may name ids the suite does not
        registry.resolve(parse_method_entry(entry)[0])
    check_data_present(suite, cells, opts)
    from augbench.run.models import check_models
    from augbench.run.profiles import get_profile

    check_models(suite, cells, suite.apply_to_profile(get_profile(opts.profile)))  # before hours of GPU work
    run_dir = Path(opts.run_dir) if opts.run_dir else default_run_dir(opts.suite, opts.profile, opts.rehearsal)
    return suite, cells, run_dir


class DataMissingError(RuntimeError):
    """A dataset the suite needs is not on disk (the message names it and how to get it)."""


def check_data_present(suite: Suite, cells: list[Cell], opts: RunOptions) -> None:
    from augbench.data.cards import load_card
    from augbench.data.core import resolve_data_root
    from augbench.data.readers import data_status

    needed = dict.fromkeys([*(c.dataset for c in cells), *([suite.test_dataset] if suite.test_dataset else [])])
    root = resolve_data_root(opts.data_root)
    missing = []
    for dataset in needed:
        status = data_status(load_card(dataset, opts.datasets_dir), root)
        if not status["present"]:
            missing.append(f"{dataset} ({status.get('reason', 'missing')})")
    if missing:
        raise DataMissingError(f"suite {suite.name} (profile {suite.profile}) needs data that is not present: "
                               f"{'; '.join(missing)}. Pass --data-root DIR or set AUGBENCH_DATA "
                               "(layouts: docs/datasets.md; `augbench data verify <dataset>` checks one)")


def run_suite(opts: RunOptions) -> dict[str, Any]:
    """Run every cell of the suite (resuming finished stages) and return a summary."""
    import torch

    from augbench.run.executors import run_local, run_pool, run_ray
    from augbench.training.runtime import load_warning, torch_threads

    log = opts.log or (lambda s: print(s, flush=True))
    torch.set_num_threads(torch_threads())
    if (warning := load_warning()) is not None:
        log(warning)
    _quiet_library_progress_bars()
    suite, cells, run_dir = prepare_run(opts)
    run_dir.mkdir(parents=True, exist_ok=True)
    opts = _resolved(opts, run_dir)
    opts = dataclasses.replace(opts, workers=resolve_workers(opts, cells))
    write_run_suite(run_dir, suite)  # what `augbench report --run-dir` renders from
    t0 = time.time()
    workers = f", {opts.workers} workers" if opts.workers > 1 else ""
    log(f"suite {suite.name} ({opts.profile}): {len(cells)} cells -> {run_dir} (executor: {opts.executor}{workers}; "
        f"shared cache: {opts.cache_dir})")
    execute = run_ray if opts.executor == "ray" else run_pool if opts.workers > 1 else run_local
    outcome = execute(cells, CellRunner(suite, opts), opts, log)
    wall = time.time() - t0
    summary = {"suite": suite.name, "profile": opts.profile, "run_dir": str(run_dir), "cells": len(cells),
               "executor": opts.executor, "workers": opts.workers, "failed": outcome["failed"], "reused_stages": outcome["reused"],
               "computed_stages": outcome["computed"], "wall_seconds": wall}
    records = [read_record(p) for c in cells if (p := run_dir / "records" / f"{c.key}.json").is_file()]
    summary["stage_seconds"] = stage_seconds([r.to_dict() for r in records])
    summary["stage_peak_memory_gb"] = stage_peak_memory([r.to_dict() for r in records])
    write_json_atomic(run_dir / "last_run.json", summary)
    write_results(run_dir, suite.to_dict(), {k: v for k, v in summary.items() if k not in ("reused_stages",
                                                                                       "computed_stages")}, records)
    log(f"done: {len(cells) - len(outcome['failed'])}/{len(cells)} cells in {wall / 60:.1f} min "
        f"({len(outcome['reused'])} stages reused, {len(outcome['computed'])} computed)")
    log(f"time per stage: {format_stage_seconds(summary['stage_seconds'])}")
    peaks = summary["stage_peak_memory_gb"]
    if peaks:
        log("peak memory per stage: " + ", ".join(f"{stage} {gb:.1f} GB" for stage, gb in peaks.items()
                                                  if ":" not in stage or stage.startswith("cuda:")))
        log("  of which anonymous (not memory-mapped files): " + ", ".join(
            f"{stage.removeprefix('anon:')} {gb:.1f} GB" for stage, gb in peaks.items() if stage.startswith("anon:")))
    if outcome["failed"]:
        log(f"{len(outcome['failed'])} cells failed; see {run_dir / 'last_run.json'}")
    return summary


def resolve_workers(opts: RunOptions, cells: list[Cell]) -> int:
    """``--workers``: a count, or ``auto`` = one process per usable core (at most 4, at most one per subset
    group) for the embedded profile on the CPU, where two 1-thread processes outrun one 2-thread
    process; 1 elsewhere (a GPU is shared badly by processes, and sd15 models are large)."""
    from augbench.run.executors import group_cells_by_subset
    from augbench.training.runtime import available_cpus, usable_cores

    if str(opts.workers) != "auto":
        workers, cores = int(opts.workers), available_cpus()
        if workers > cores and opts.executor == "local":
            # capped, not refused: a pool wider than the cores gives each worker less than one core and only
            # runs slower; records do not depend on the worker count (every stage is seeded)
            (opts.log or print)(f"warning: --workers {workers} is more than the {cores} usable CPU cores; running "
                                f"{cores} workers")
            return cores
        return workers
    on_cpu = (opts.device or ("cuda" if _cuda_available() else "cpu")).startswith("cpu")
    if opts.executor != "local" or opts.profile != "embedded" or not on_cpu:
        return 1
    return max(1, min(usable_cores(), 4, len(group_cells_by_subset(cells))))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _quiet_library_progress_bars() -> None:
    """diffusers' and transformers' per-load bars would interleave with the run's own progress and logs."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def _resolved(opts: RunOptions, run_dir: Path) -> RunOptions:
    """Absolute run and cache folders, so every process (and Ray worker) means the same place."""
    cache = Path(opts.cache_dir) if opts.cache_dir else default_cache_root()
    return dataclasses.replace(
        opts, log=None, run_dir=str(run_dir.resolve()), cache_dir=str(cache.expanduser().resolve()),
        datasets_dir=str(Path(opts.datasets_dir).resolve()) if opts.datasets_dir else None,
        data_root=str(Path(opts.data_root).resolve()) if opts.data_root else None)


__all__ = ["CellRunner", "DataMissingError", "check_data_present", "prepare_run",
           "resolve_workers", "run_cell", "run_suite"]

"""Data parallelism on CPU cores for the VAE and UNet stages: ``torch.nn.parallel.DistributedDataParallel``
over single-threaded worker processes (gloo).

These small conv nets barely use a second intra-op thread, but two single-threaded processes each on
half the batch run nearly twice as fast (``BuildConfig.processes``). Every process draws the whole
batch from the same generator and keeps its slice (:func:`batch_slice`), so batches, noise and
timesteps do not depend on the process count; each process's loss is the mean over an equal share of
the batch, so DDP's averaged gradient is the gradient of the whole batch's mean loss. Only float
summation order differs from one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from augbench.world.build.loops import Log
from augbench.world.build.recipe import BuildConfig

# A stage's training loop: (cfg, model, data, log, rank, world) -> (trained model, stats).
Loop = Callable[..., tuple]


def num_processes(cfg: BuildConfig) -> int:
    """Processes for the data-parallel stages: ``cfg.processes``, or one per thread on CPU (0)."""
    if not cfg.device.startswith("cpu"):
        return 1
    return cfg.processes if cfg.processes > 0 else max(1, cfg.threads)


def batch_slice(batch: int, rank: int, world: int) -> slice:
    """Process ``rank``'s equal share of a batch of ``batch`` samples drawn whole by every process."""
    if batch % world:
        raise ValueError(f"batch size {batch} does not split over {world} processes: "
                         f"set BuildConfig.processes to a divisor of it")
    share = batch // world
    return slice(rank * share, (rank + 1) * share)


def distributed(module: torch.nn.Module, world: int) -> torch.nn.Module:
    """``module`` for the training forward pass: itself in one process, else wrapped in DDP, which
    averages its gradients over the processes during ``backward`` (the caller keeps stepping and
    saving the bare ``module``; DDP's wrapper only adds the gradient hooks)."""
    if world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)


def batch_loss(loss: torch.Tensor, world: int) -> float:
    """The whole batch's loss (for the log and the stats): the mean of the processes' losses."""
    if world == 1:
        return float(loss.detach())
    import torch.distributed as dist

    total = loss.detach().clone()
    dist.all_reduce(total)
    return float(total / world)


def train_data_parallel(stage: str, model, cfg: BuildConfig, data: dict, log: Log, factory: Callable, loop: Loop):
    """Run ``loop`` on ``model`` in :func:`num_processes` single-threaded processes.

    The model is initialised by the caller, once, so every process starts from the same weights as
    the single-process path; the processes keep identical copies (same averaged gradients, same
    optimizer steps) and rank 0 hands back the trained weights. ``factory(cfg)`` builds each worker's
    empty copy; ``factory`` and ``loop`` must be module-level functions (the workers import them by
    name). Workers are plain ``python -c`` subprocesses rather than ``multiprocessing`` children, so
    callers need no ``__main__`` guard.
    """
    world = num_processes(cfg)
    if world == 1:
        trained, stats = loop(cfg, model.to(cfg.device), data, log)
        return trained, {**stats, "processes": 1}
    t0 = time.time()
    log(f"[{stage}] data-parallel over {world} single-threaded processes")
    with tempfile.TemporaryDirectory(prefix=f"augbench-{stage}-") as tmp:
        torch.save({"model": model.state_dict(), **data}, Path(tmp) / "payload.pt")
        (Path(tmp) / "config.json").write_text(json.dumps(asdict(cfg)))
        targets = [f"{fn.__module__}:{fn.__qualname__}" for fn in (factory, loop)]
        _run_workers(stage, world, [*targets, tmp])
        out = torch.load(Path(tmp) / "result.pt", weights_only=True)
    model.load_state_dict(out["model"])
    model.eval()
    return model, {**out["stats"], "seconds": time.time() - t0, "processes": world}


def _run_workers(stage: str, world: int, args: list[str]) -> None:
    """Start ``world`` workers (:func:`run_worker`) and wait for all; one failing stops the others."""
    code = "import sys; from augbench.world.build.parallel import run_worker; run_worker(*sys.argv[1:])"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(rank), str(world), *args]) for rank in range(world)]
    try:
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs):
                break  # a peer would wait forever in the gradient all-reduce
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    failed = {rank: p.returncode for rank, p in enumerate(procs) if p.returncode != 0}
    if failed:
        raise RuntimeError(f"world build: {stage} training failed in process(es) {failed} (exit codes); "
                           f"see the traceback above, or set BuildConfig.processes=1 to train in this process")


def exit_with_parent(poll_seconds: float = 1.0) -> None:
    """End this process when its parent dies (a daemon thread polls the parent pid).

    A build stopped by SIGTERM/SIGKILL runs no ``finally``, and its data-parallel workers would go on
    training, writing checkpoints into the folder a resumed build uses, on cores it needs.
    """
    import threading

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_worker(rank: str, world: str, factory: str, loop: str, tmp: str) -> None:
    """One process of :func:`train_data_parallel` (arguments arrive as command-line strings;
    ``factory`` and ``loop`` as ``"module:function"`` targets)."""
    import torch.distributed as dist

    from augbench.plugins import import_target

    exit_with_parent()
    rank, world = int(rank), int(world)
    fields = json.loads((Path(tmp) / "config.json").read_text())
    cfg = BuildConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    torch.set_num_threads(max(1, cfg.threads // world))
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        payload = torch.load(Path(tmp) / "payload.pt", mmap=True, weights_only=True)
        model = import_target(factory)(cfg)
        model.load_state_dict(payload.pop("model"))
        log = (lambda s: print(s, flush=True)) if rank == 0 else (lambda s: None)
        trained, stats = import_target(loop)(cfg, model.to(cfg.device), payload, log, rank, world)
        if rank == 0:
            torch.save({"model": trained.state_dict(), "stats": stats}, Path(tmp) / "result.pt")
    finally:
        dist.destroy_process_group()

"""What every stage's training loop shares: seeded initialisation, the LR schedule, progress lines
and the resumable loop checkpoint.

Every stage draws its randomness from explicit generators derived from the build seed
(:func:`augbench.run.seeding.derive_seed`), never from global RNG state, so a resumed build (which
skips finished stages) trains the rest exactly as an uninterrupted one.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from augbench.run.seeding import derive_seed
from augbench.run.store import write_bytes_atomic

Log = Callable[[str], None]


def seeded_init(seed: int, name: str, factory: Callable):
    """``factory()`` with parameters initialised from a generator derived from (build ``seed``, ``name``),
    not from global RNG state: a resumed build, which skips finished stages, initialises the rest
    exactly as an uninterrupted one."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, f"init-{name}") % (2**31))
        return factory()


def cosine_with_warmup(opt, total: int, warmup: int):
    """Linear warm-up over ``warmup`` steps, then a cosine decay to zero at step ``total``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def log_progress(log: Log, name: str, step: int, total: int, losses: list[float], t0: float, start: int = 0) -> None:
    """About twenty progress lines per loop: step, recent mean loss, seconds per step, time left."""
    every = max(1, total // 20)
    if step % every == 0 or step == total - 1:
        rate = (time.time() - t0) / (step + 1 - start)
        log(f"[{name}] step {step + 1}/{total} loss {np.mean(losses[-every:]):.4f} "
            f"({rate:.2f}s/step, eta {rate * (total - step - 1) / 60:.1f} min)")


def torch_save_atomic(obj, path: Path) -> None:
    """``torch.save`` through the store's atomic write: a build killed mid-save leaves the old file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


class LoopCheckpoint:
    """A training loop's full state in one file, so an interrupted build continues where it stopped.

    The state is everything the next step depends on: modules, optimizer, LR schedule, the batch
    generator and the step; a resumed loop therefore draws the same batches, noise and timesteps as
    an uninterrupted one. Saved atomically (temporary file + rename) by rank 0 only; every process
    restores from the same file at the start.
    """

    def __init__(self, path: str | Path | None, every: int):
        self.path = Path(path) if path else None
        self.every = every

    def restore(self, modules: dict, opt, sched, gen: torch.Generator, log: Log) -> tuple[int, list[float]]:
        """Load the saved state into the arguments; returns (first step to run, losses so far)."""
        if self.path is None or not self.path.exists():
            return 0, []
        state = torch.load(self.path, weights_only=True)
        for name, module in modules.items():
            module.load_state_dict(state["modules"][name])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        log(f"resumed from {self.path} at step {state['step']}")
        return int(state["step"]), list(state["losses"])

    def maybe_save(self, done: int, total: int, modules: dict, opt, sched, gen, losses, rank: int) -> None:
        """Save after ``done`` steps when due (never after the last step: the stage result is saved then)."""
        if self.path is None or rank != 0 or done % self.every or done >= total:
            return
        torch_save_atomic({"step": done, "losses": losses, "gen": gen.get_state(), "opt": opt.state_dict(),
                           "sched": sched.state_dict(), "modules": {k: m.state_dict() for k, m in modules.items()}},
                          path=self.path)

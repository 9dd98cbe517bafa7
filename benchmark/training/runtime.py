"""Where and how training runs: device choice, bf16 autocast, CPU thread count.

Threads: ``AUGBENCH_NUM_THREADS`` (a ``--workers`` pool worker's share, or the user's) wins; else the
user's ``OMP_NUM_THREADS``; else one thread per usable core (the affinity mask). :func:`torch_threads`
is what ``torch.set_num_threads`` should get; :func:`usable_cores` is how many cores there are to split.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["autocast", "resolve_device", "torch_threads", "usable_cores", "user_threads"]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA device without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when ``amp``; a no-op context on CPU (CPU runs stay in fp32)."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _positive_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def user_threads() -> int | None:
    """The thread count the user set in ``OMP_NUM_THREADS`` (a positive integer), else ``None``."""
    return _positive_int("OMP_NUM_THREADS")


def torch_threads() -> int:
    """Threads for ``torch.set_num_threads``: ``AUGBENCH_NUM_THREADS``, else ``OMP_NUM_THREADS``, else
    :func:`usable_cores` -- so a user's ``OMP_NUM_THREADS=4`` is honoured rather than overridden by the
    core count (issue 23)."""
    return _positive_int("AUGBENCH_NUM_THREADS") or user_threads() or usable_cores()


def usable_cores() -> int:
    """CPU cores this process may run on: ``AUGBENCH_NUM_THREADS`` when set (a ``--workers`` pool
    worker's share), else the affinity mask (not the machine's count)."""
    if (share := _positive_int("AUGBENCH_NUM_THREADS")) is not None:
        return share
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1

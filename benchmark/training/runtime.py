"""Where and how training runs: device choice, bf16 autocast, CPU thread count."""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["autocast", "resolve_device", "usable_cores"]


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


def usable_cores() -> int:
    """CPU cores this process may run on: ``AUGBENCH_NUM_THREADS`` when set (a ``--workers`` pool
    worker's share), else the affinity mask (not the machine's count)."""
    if os.environ.get("AUGBENCH_NUM_THREADS", "").isdigit() and int(os.environ["AUGBENCH_NUM_THREADS"]) > 0:
        return int(os.environ["AUGBENCH_NUM_THREADS"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1

"""Where and how training runs: device choice, bf16 autocast, CPU thread count.

Threads: ``AUGBENCH_NUM_THREADS`` (a ``--workers`` pool worker's share, or the user's) wins; else the
user's ``OMP_NUM_THREADS``; else one thread per usable core (the affinity mask and the cgroup's CPU quota). :func:`torch_threads`
is what ``torch.set_num_threads`` should get; :func:`usable_cores` is how many cores there are to split.
"""

from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["autocast", "available_cpus", "cgroup_cpu_quota", "load_warning", "resolve_device", "torch_threads", "usable_cores",
           "user_threads"]


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
    worker's share), else the affinity mask, capped by the cgroup's CPU quota (a container given 2 CPUs of a
    64-core host gets 2 threads, not 64 that thrash; issue 26)."""
    if (share := _positive_int("AUGBENCH_NUM_THREADS")) is not None:
        return share
    return available_cpus()


def available_cpus() -> int:
    """CPUs the machine lets this process use, whatever the thread settings: the affinity mask capped by the
    cgroup's CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota else cores


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> int | None:
    """The CPUs the cgroup grants (quota / period, rounded up): cgroup v2 ``cpu.max``, else v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; ``None`` without a limit or a readable file."""
    def read(name: str) -> str | None:
        try:
            with open(os.path.join(root, name), encoding="ascii") as f:
                return f.read().strip()
        except OSError:
            return None

    fields = (read("cpu.max") or "").split()
    if len(fields) == 2 and fields[0] != "max":
        quota, period = fields
    else:
        quota, period = read("cpu/cpu.cfs_quota_us"), read("cpu/cpu.cfs_period_us")
    try:
        q, p = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    return -(-q // p) if q > 0 and p > 0 else None


def load_warning(cores: int | None = None) -> str | None:
    """A warning when the 1-minute load average exceeds the cores this process may use: other work is
    running, and a CPU training beside it was measured up to 30× slower (1,092 s instead of 35 s; issue
    26). Timings of such a run are not comparable; results are (every stage is seeded)."""
    cores = cores or available_cpus()
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        return None
    if load <= cores:
        return None
    return (f"warning: load average {load:.1f} exceeds the {cores} usable cores: other processes compete for the "
            f"CPU, so this run will be slower (results are unaffected; timings are not comparable)")

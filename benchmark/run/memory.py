"""Peak memory of each stage of a cell, for records, run logs and ``nox -s perf`` (issue 23).

"Will a full-size sd15 cell fit a 24 GB GPU, does a rehearsal stay under 8 GB?" is answered per stage:
a daemon thread samples this process's resident set size (psutil) every ``interval`` seconds and keeps
the highest value seen while each stage runs; on CUDA, torch's peak allocated bytes are reset when a
stage starts and read when it ends. Stages are the names the runner passes to ``on_stage`` (artifacts,
generate, select, metrics, train); what runs before the first (opening the dataset, drawing subsets,
loading a reused set) is ``prepare``. A stage reused from the store never starts, so it has no entry.

Sampling misses spikes shorter than ``interval``. The RSS includes everything the process holds,
memory-mapped weight files included: safetensors maps a model's file and a channels-last copy of its
convolutions leaves the mapped originals resident (random SD1.5 weights: the UNet's 3.2 GB showed as
6.2 GB), though the kernel may drop those clean file pages under memory pressure. So each stage also
keeps its peak *anonymous* memory (RSS minus file-backed and shared pages, Linux ``RssAnon``-like), what
a smaller machine must really hold.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["StageMemory", "is_out_of_memory"]

GB = 1024**3
_OOM_TEXT = ("out of memory", "can't allocate memory")


def is_out_of_memory(exc: BaseException | None) -> bool:
    """``torch.OutOfMemoryError``, ``MemoryError``, or a ``RuntimeError`` whose message says the allocator ran
    out (``CUDA out of memory``, CPU ``can't allocate memory``) -- here or anywhere in its cause chain. Torch-free
    (the type is matched by name), for the executors and for concept learning's memory guard alike."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            return True
        if isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in _OOM_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class StageMemory:
    """Per-stage peaks of one cell: :meth:`enter` at each stage, :meth:`peaks` at the end."""

    def __init__(self, interval: float = 0.05):
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._lock = threading.Lock()
        self._stage = "prepare"
        self._rss: dict[str, int] = {}
        self._anon: dict[str, int] = {}
        self._cuda: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_forever, name="augbench-memory", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        info = self._process.memory_info()
        anon = info.rss - getattr(info, "shared", 0)  # "shared": file-backed + shared pages (Linux)
        with self._lock:
            self._rss[self._stage] = max(self._rss.get(self._stage, 0), info.rss)
            self._anon[self._stage] = max(self._anon.get(self._stage, 0), anon)

    def _sample_forever(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def enter(self, stage: str) -> None:
        """The stage now running (its peak starts from the current RSS)."""
        self._sample()
        self._close_cuda()
        with self._lock:
            self._stage = stage
        self._sample()

    def _close_cuda(self) -> None:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return
        with self._lock:
            stage = self._stage
        self._cuda[stage] = max(self._cuda.get(stage, 0), int(torch.cuda.max_memory_allocated()))
        torch.cuda.reset_peak_memory_stats()

    def close(self) -> None:
        """Stop the sampler thread (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)

    def peaks(self) -> dict[str, dict[str, Any]]:
        """``{stage: {"rss_gb": peak RSS, "anon_gb": peak anonymous memory, "cuda_gb": peak CUDA allocated or
        None}}``, stages in run order."""
        self._sample()
        self._close_cuda()
        return {stage: {"rss_gb": round(rss / GB, 3), "anon_gb": round(self._anon[stage] / GB, 3),
                        "cuda_gb": round(self._cuda[stage] / GB, 3) if stage in self._cuda else None}
                for stage, rss in self._rss.items()}

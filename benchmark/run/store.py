"""The shared, content-addressed artifact store and atomic file writes (DESIGN.md, "Shared store").

Artifacts (concept learning, inversion pools), synthetic sets, selections and synthetic-set metrics
live under ``<cache root>/<stage>/<key>`` where ``key`` is the content hash of everything the stage
depends on. The root is shared by every run and suite: ``--cache-dir``, else ``AUGBENCH_CACHE``,
else ``~/.cache/augbench``. Records stay in each run's directory.

Two processes that need the same entry at the same time do not both build it: the first takes the
entry's file lock (``filelock``) and builds, the second waits on the lock and then finds the entry
complete. An entry is complete only when its *marker* file exists, and markers are written last and
atomically (temporary name, then ``os.replace``), so nothing half-written is ever read.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "AUGBENCH_CACHE"


def default_cache_root(environ=os.environ) -> Path:
    """``$AUGBENCH_CACHE`` or ``~/.cache/augbench``."""
    return Path(environ.get(ENV_VAR) or Path.home() / ".cache" / "augbench")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN / infinite float (also inside dicts, lists and tuples) replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_json_atomic(path: str | Path, value: Any) -> None:
    """Pretty, key-sorted JSON (``default=str`` for paths and the like), written atomically; NaN and
    infinity become ``null`` (JSON has neither; a reader would choke on ``NaN``)."""
    write_text_atomic(path, json.dumps(finite_or_none(value), indent=2, sort_keys=True, default=str) + "\n")


@dataclass
class StageLog:
    """Which store entries this process reused and which it built (for logs, records, summaries)."""

    reused: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)


class Store:
    """``<root>/<stage>/<key>`` entries (a folder, or a ``.json`` file), built once under a file lock.

    Args:
        root: the store's root folder (created on first write).
        log: a ``str -> None`` callable for "waiting for ..." messages.
        lock_timeout: seconds to wait for another process's build before giving up (``-1``: forever).
    """

    def __init__(self, root: str | Path, log: Callable[[str], None] | None = None, lock_timeout: float = -1):
        self.root = Path(root)
        self.log = log or (lambda s: None)
        self.lock_timeout = lock_timeout
        self.stages = StageLog()

    def folder(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def json_path(self, stage: str, key: str) -> Path:
        return self.root / stage / f"{key}.json"

    def _lock(self, target: Path):
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(target.parent / f".{target.name}.lock"), timeout=self.lock_timeout)

    def build_folder(self, stage: str, key: str, marker: str, build: Callable[[Path], Any]) -> tuple[Path, bool]:
        """The folder of ``stage/key``, built by ``build(folder)`` unless ``folder/marker`` exists.

        ``build`` must write ``marker`` last (atomically); a build interrupted before that is resumed
        or redone by the next caller. Returns ``(folder, reused)``.
        """
        folder = self.folder(stage, key)
        if (folder / marker).is_file():
            self.stages.reused.append(f"{stage}/{key}")
            return folder, True
        with self._waiting(folder):
            if (folder / marker).is_file():  # another process built it while we waited
                self.stages.reused.append(f"{stage}/{key}")
                return folder, True
            folder.mkdir(parents=True, exist_ok=True)
            build(folder)
            if not (folder / marker).is_file():
                raise RuntimeError(f"building {stage}/{key} did not write its completion marker {marker!r}")
        self.stages.computed.append(f"{stage}/{key}")
        return folder, False

    def build_json(self, stage: str, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """The JSON value of ``stage/key``, computed by ``compute()`` and stored unless present."""
        path = self.json_path(stage, key)
        value = self._read_json(path)
        if value is not None:
            self.stages.reused.append(f"{stage}/{key}")
            return value, True
        with self._waiting(path):
            value = self._read_json(path)
            if value is not None:
                self.stages.reused.append(f"{stage}/{key}")
                return value, True
            value = compute()
            write_json_atomic(path, value)
        self.stages.computed.append(f"{stage}/{key}")
        return value, False

    @staticmethod
    def _read_json(path: Path) -> Any | None:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:  # not ours (writes are atomic): rebuild rather than crash
            return None

    @contextlib.contextmanager
    def _waiting(self, target: Path):
        """Hold ``target``'s lock; say so when another process holds it and we wait."""
        from filelock import Timeout

        lock = self._lock(target)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.log(f"  waiting for another process to finish {target.parent.name}/{target.name} ...")
            t = time.time()
            lock.acquire(timeout=self.lock_timeout)
            self.log(f"  ... it finished after {time.time() - t:.0f}s")
        try:
            yield
        finally:
            lock.release()


__all__ = ["ENV_VAR", "StageLog", "Store", "default_cache_root", "write_bytes_atomic", "write_json_atomic",
           "write_text_atomic"]

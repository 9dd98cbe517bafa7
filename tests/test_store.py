"""The shared store: one build per key even across processes, nothing half-written is ever read."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

from augbench.run.store import Store, default_cache_root, write_json_atomic


def _build_slowly(root: str, key: str, builds_log: str, result_queue) -> None:
    def build(folder: Path) -> None:
        with open(builds_log, "a") as fh:
            fh.write("built by one process\n")
        time.sleep(1.0)  # long enough that the other process arrives while this one builds
        (folder / "data.txt").write_text("payload")
        write_json_atomic(folder / "done.json", {"ok": True})

    messages = []
    folder, reused = Store(root, log=messages.append).build_folder("synthetic", key, "done.json", build)
    result_queue.put((str(folder), reused, messages))


def test_two_processes_build_one_entry_once(tmp_path):
    builds_log = tmp_path / "builds.log"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build_slowly, args=(str(tmp_path / "store"), "k1", str(builds_log), queue))
             for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert builds_log.read_text().count("built") == 1
    assert sorted(reused for _, reused, _ in results) == [False, True]
    waiter = next(messages for _, reused, messages in results if reused)
    assert any("waiting for another process" in m for m in waiter)
    folder = Path(results[0][0])
    assert (folder / "data.txt").read_text() == "payload"


def test_an_interrupted_build_is_redone_not_read(tmp_path):
    store = Store(tmp_path)
    calls = []

    def failing(folder: Path) -> None:
        (folder / "part.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    try:
        store.build_folder("artifacts", "k", "done.json", failing)
    except KeyboardInterrupt:
        pass

    def build(folder: Path) -> None:
        calls.append(1)
        write_json_atomic(folder / "done.json", {})

    _, reused = store.build_folder("artifacts", "k", "done.json", build)
    assert not reused and calls == [1]
    assert store.stages.computed == ["artifacts/k"]


def test_json_entries_are_reused_and_a_foreign_file_is_recomputed(tmp_path):
    store = Store(tmp_path)
    value, reused = store.build_json("metrics", "k", lambda: {"lpips": 1.5})
    assert value == {"lpips": 1.5} and not reused
    value, reused = store.build_json("metrics", "k", lambda: {"lpips": 9.9})
    assert value == {"lpips": 1.5} and reused
    store.json_path("metrics", "k").write_text("{not json")
    value, reused = store.build_json("metrics", "k", lambda: {"lpips": 2.0})
    assert value == {"lpips": 2.0} and not reused
    assert json.loads(store.json_path("metrics", "k").read_text()) == {"lpips": 2.0}
    assert not list(tmp_path.rglob("*.tmp"))


def test_cache_root_comes_from_the_environment(tmp_path):
    assert default_cache_root({"AUGBENCH_CACHE": str(tmp_path)}) == tmp_path
    assert default_cache_root({}).parts[-2:] == (".cache", "augbench")

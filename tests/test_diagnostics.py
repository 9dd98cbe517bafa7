"""Failures you can read (issue 23): a failed cell's traceback in ``<run dir>/logs/<cell>.log`` and one console
line naming it; out of memory names the stage, the size tried and the knob that lowers it; the run goes on;
``AUGBENCH_RAISE`` re-raises; thread counts honour ``OMP_NUM_THREADS``; a corrupt image in a training
subset or test split fails in one line naming the file and the ``data verify --check-images`` command."""

from __future__ import annotations

import pytest
import torch
from fixtures_real import corrupt, make_cub

from augbench.data import DataError, open_dataset
from augbench.data.image_cache import DecodedImages, load_rgb
from augbench.run.cells import Cell, RunOptions
from augbench.run.executors import MEMORY_KNOBS, RAISE_ENV, failure_message, is_out_of_memory, run_local
from augbench.training.runtime import torch_threads, usable_cores, user_threads


def _cell(method: str) -> Cell:
    return Cell("s", "embedded", "toybirds", "few_shot", (("shots", 5),), method, 0)


def _fails_in(stage: str, exc: BaseException):
    def run(cell, log, on_stage):
        on_stage("artifacts")
        if stage != "artifacts":
            on_stage(stage)
        raise exc
    return run


def _run(tmp_path, behaviours: dict, monkeypatch) -> tuple[dict, list[str]]:
    monkeypatch.delenv(RAISE_ENV, raising=False)
    cells = [_cell(m) for m in behaviours]

    def cell_fn(cell, log, on_stage):
        return behaviours[cell.method](cell, log, on_stage)

    lines: list[str] = []
    outcome = run_local(cells, cell_fn, RunOptions(suite="s", run_dir=str(tmp_path), progress=False), lines.append)
    return outcome, lines


def test_a_failed_cell_leaves_its_traceback_in_the_run_dir_and_one_line_on_the_console(tmp_path, monkeypatch):
    def subset_error(cell, log, on_stage):
        raise ValueError("the subset is wrong\nsecond line of the message")

    outcome, lines = _run(tmp_path, {"broken": subset_error, "ok": lambda c, log, s: {"metrics": {"top1": 50.0}}},
                          monkeypatch)
    (failed,) = outcome["failed"]
    log = tmp_path / "logs" / f"{_cell('broken').key}.log"
    assert failed["log"] == str(log) and failed["stage"] == "subset" and not failed["out_of_memory"]
    assert failed["error"] == "ValueError: the subset is wrong\nsecond line of the message"
    (line,) = [x for x in lines if "FAILED" in x]
    assert line == f"  FAILED: ValueError in stage subset: the subset is wrong [...]; traceback: {log}"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "second line of the message" in text
    assert "stage: subset" in text and "subset_error" in text
    assert not any("Traceback" in x for x in lines)
    assert any("top-1 50.00%" in x for x in lines)  # the next cell ran


@pytest.mark.parametrize("stage, exc, size", [
    ("artifacts", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has 1.5 GiB free"),
     "2.00 GiB"),
    ("generate", RuntimeError("CUDA error: out of memory"), None),
    ("train", RuntimeError("[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 4294967296 bytes. Error code 12"), "4294967296 bytes"),
    ("metrics", MemoryError(), None),
])
def test_out_of_memory_names_the_stage_the_size_and_the_knob(tmp_path, monkeypatch, stage, exc, size):
    outcome, lines = _run(tmp_path, {"big": _fails_in(stage, exc), "ok": lambda c, log, s: {"metrics": {"top1": 1.0}}},
                          monkeypatch)
    (failed,) = outcome["failed"]
    assert failed["out_of_memory"] and failed["stage"] == stage
    (line,) = [x for x in lines if "FAILED" in x]
    log = tmp_path / "logs" / f"{_cell('big').key}.log"
    tried = f" (tried to allocate {size})" if size else ""
    knob = MEMORY_KNOBS[stage]
    assert line == f"  FAILED: out of memory in stage {stage}{tried}; lower it with {knob}; traceback: {log}"
    assert "Traceback" in log.read_text() and len(line.splitlines()) == 1
    assert any("top-1" in x for x in lines)


def test_the_knobs_are_the_ones_a_user_can_set():
    assert MEMORY_KNOBS["artifacts"] == ("[concepts.ti] / [concepts.lora_ti] micro_batch, encode_batch, resolution "
                                         "in the suite")
    assert MEMORY_KNOBS["generate"] == MEMORY_KNOBS["metrics"] == "--batch-size"
    assert MEMORY_KNOBS["train"] == "[suite] classifier_batch_size"
    wrapped = ValueError("loading failed")
    wrapped.__cause__ = torch.OutOfMemoryError("CUDA out of memory")
    assert is_out_of_memory(wrapped) and not is_out_of_memory(RuntimeError("shape mismatch"))
    assert "AUGBENCH_RAISE=1" in failure_message(KeyError("x"), "train", None)  # no run dir: how to see it


def test_augbench_raise_re_raises_after_writing_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv(RAISE_ENV, "1")
    cell = _cell("broken")
    with pytest.raises(ZeroDivisionError):
        run_local([cell, _cell("never")], lambda c, log, s: 1 / 0, RunOptions(suite="s", run_dir=str(tmp_path),
                                                                             progress=False), lambda s: None)
    assert "ZeroDivisionError" in (tmp_path / "logs" / f"{cell.key}.log").read_text()


def test_thread_counts_honour_omp_num_threads_and_augbench_num_threads_wins(monkeypatch):
    monkeypatch.delenv("AUGBENCH_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = usable_cores()
    assert user_threads() is None and torch_threads() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert user_threads() == 3 and torch_threads() == 3 and usable_cores() == cores  # the cores are still there
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert torch_threads() == cores
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("AUGBENCH_NUM_THREADS", "2")  # a pool worker's share, or the user's explicit choice
    assert torch_threads() == 2 and usable_cores() == 2


@pytest.fixture()
def corrupt_cub(tmp_path):
    make_cub(tmp_path)
    source = open_dataset("cub", tmp_path)
    bad = corrupt(source.image_path(source.samples("test")[0].image_id))
    return source, bad


def test_a_corrupt_image_fails_in_one_line_naming_the_file_and_the_verify_command(corrupt_cub):
    source, bad = corrupt_cub
    ids = [s.image_id for s in source.samples("test")]
    with pytest.raises(DataError) as err:
        DecodedImages().get(source, ids)
    text = str(err.value)
    assert str(bad) in text and "`augbench data verify cub --check-images`" in text and "\n" not in text
    with pytest.raises(DataError, match="augbench data verify cub --check-images") as err:
        load_rgb(source, ids[0])  # what the inversion and captioner builders decode training images with
    assert str(bad) in str(err.value)
    train = DecodedImages().get(source, [s.image_id for s in source.samples("train")])  # the good ones decode
    assert train.dtype == torch.uint8 and train.shape[1] == 3


def test_a_cell_with_a_corrupt_test_image_fails_and_the_next_cell_runs(corrupt_cub, tmp_path, monkeypatch):
    source, bad = corrupt_cub
    images = DecodedImages()

    def evaluate(cell, log, on_stage):
        on_stage("train")
        images.get(source, [s.image_id for s in source.samples("test")])
        return {"metrics": {"top1": 10.0}}

    outcome, lines = _run(tmp_path / "run", {"a": evaluate, "b": lambda c, log, s: {"metrics": {"top1": 20.0}}},
                          monkeypatch)
    (line,) = [x for x in lines if "FAILED" in x]
    assert line.startswith("  FAILED: DataError in stage train: corrupt or unreadable image in dataset 'cub': ")
    assert str(bad) in line and "augbench data verify cub --check-images" in line
    assert [f["cell"] for f in outcome["failed"]] == [_cell("a").key] and any("top-1 20.00%" in x for x in lines)

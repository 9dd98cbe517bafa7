"""The one typed record reader: schema versions, refusals that name the file and version, ``suite.json``."""

from __future__ import annotations

import json

import pytest
from record_builders import cell_record, synthetic_set

from augbench.run.records import (
    RECORD_FORMAT,
    RECORD_SCHEMA_VERSION,
    CellRecord,
    RecordError,
    read_record,
    read_records,
    read_run_suite,
    write_results,
    write_run_suite,
)
from augbench.run.suites import load_suite


def _written(tmp_path, **changes) -> tuple:
    """A record file as the runner writes it, with ``changes`` applied to its JSON (None deletes a key)."""
    record = cell_record("sd_random", 1, metrics={"top1": 50.0}, synthetic=synthetic_set(20.0, 30.0))
    data = record.to_dict()
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "records" / "cell.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return record, path


def test_a_written_record_reads_back_as_the_same_typed_record(tmp_path):
    record, path = _written(tmp_path)
    assert json.loads(path.read_text())["schema_version"] == RECORD_SCHEMA_VERSION
    back = read_record(path)
    assert isinstance(back, CellRecord) and back == record
    assert back.cell["method"] == "sd_random" and back.synthetic["metrics"]["lpips"]["value"] == 20.0
    assert read_records(tmp_path) == [record] and read_records(tmp_path / "elsewhere") == []


def test_schema_2_records_spelled_their_version_in_format_and_still_read(tmp_path):
    record, path = _written(tmp_path, schema_version=None, format="augbench.record/2")
    back = read_record(path)
    assert back.schema_version == RECORD_SCHEMA_VERSION and back.format == RECORD_FORMAT
    assert back.metrics == record.metrics


@pytest.mark.parametrize("changes, message", [
    ({"schema_version": RECORD_SCHEMA_VERSION + 1}, f"schema version {RECORD_SCHEMA_VERSION + 1} is newer"),
    ({"schema_version": None, "format": "augbench.record/1"}, "'augbench.record/1' without a schema version"),
    ({"schema_version": 1}, "schema version 1 is no longer read"),
    ({"schema_version": "3"}, "schema version '3' is not an augbench record"),
    ({"format": "other.record"}, "format 'other.record'"),
    ({"replacement_mode": "concat"}, "unknown fields replacement_mode"),
    ({"metrics": None, "training": None, "selection": None}, "lacks fields selection"),
    ({"cell": {"method": "x"}}, "'cell' needs method, seed, dataset and protocol_params"),
])
def test_unreadable_records_are_errors_naming_the_file_and_the_version(tmp_path, changes, message):
    _, path = _written(tmp_path, **changes)
    with pytest.raises(RecordError, match=message) as info:
        read_record(path)
    assert str(path) in str(info.value)


def test_results_json_sums_up_typed_records(tmp_path):
    records = [cell_record("original", 0, metrics={"top1": 40.0}),
               cell_record("sd_random", 0, metrics={"top1": 50.0}, synthetic=synthetic_set(20.0, 30.0))]
    results = json.loads(write_results(tmp_path, {"name": "s"}, {"cells": 2}, records).read_text())
    sd = results["results"][records[1].cell_key]
    assert sd["synthetic_metrics"]["clip_score"]["value"] == 30.0 and sd["foreign_artifacts"] is False
    assert results["results"][records[0].cell_key]["synthetic_metrics"] is None


def test_suite_json_gives_back_the_resolved_suite_with_its_profile(tmp_path):
    sd15 = load_suite("few_shot", "sd15")
    write_run_suite(tmp_path, sd15)
    assert read_run_suite(tmp_path) == sd15  # tuples, thresholds and the profile overlay (published) intact
    assert read_run_suite(tmp_path).published == ("p2_tab1_resnet50",) and load_suite("few_shot").published == ()
    assert read_run_suite(tmp_path / "none") is None
    # runs before the format field wrote the same object without it
    data = json.loads((tmp_path / "suite.json").read_text())
    (tmp_path / "suite.json").write_text(json.dumps({"spec": data["spec"], "profile": "sd15"}))
    assert read_run_suite(tmp_path) == sd15
    (tmp_path / "suite.json").write_text(json.dumps({**data, "format": "augbench.suite/9"}))
    with pytest.raises(RecordError, match="suite format 'augbench.suite/9'"):
        read_run_suite(tmp_path)


def test_stage_memory_attributes_each_peak_to_the_stage_that_held_it():
    import numpy as np

    from augbench.run.memory import StageMemory

    memory = StageMemory(interval=0.01)
    memory.enter("generate")
    big = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    memory.enter("train")
    del big
    peaks = memory.peaks()
    memory.close()
    assert list(peaks) == ["prepare", "generate", "train"]
    assert peaks["generate"]["rss_gb"] - peaks["prepare"]["rss_gb"] > 0.3
    assert peaks["generate"]["cuda_gb"] is None and 0 < peaks["generate"]["anon_gb"] <= peaks["generate"]["rss_gb"]


def test_records_before_schema_4_read_with_empty_memory(tmp_path):
    from augbench.run.records import RECORD_SCHEMA_VERSION, CellRecord, stage_peak_memory

    assert RECORD_SCHEMA_VERSION == 4
    old = cell_record("original").to_dict()
    old.pop("memory")
    old["schema_version"] = 3
    assert CellRecord.from_dict(old).memory == {}
    old["schema_version"] = 4
    with pytest.raises(RecordError, match="lacks fields memory"):
        CellRecord.from_dict(old)
    peaks = stage_peak_memory([{"memory": {"train": {"rss_gb": 2.0, "anon_gb": 1.0, "cuda_gb": None},
                                           "prepare": {"rss_gb": 1.0}}},
                               {"memory": {"train": {"rss_gb": 3.5, "anon_gb": 0.5, "cuda_gb": 1.5}}}, {}])
    assert list(peaks.items()) == [("prepare", 1.0), ("train", 3.5), ("anon:train", 1.0), ("cuda:train", 1.5)]

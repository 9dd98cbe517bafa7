"""``augbench report --run-dir DIR`` renders what the run wrote: ``suite.json`` (profile and published tables
included) and the typed records; ``--suite`` / ``--profile`` only fill in for a directory without it."""

from __future__ import annotations

import csv
import json

import pytest
from record_builders import cell_record, write_records
from report_parsing import markdown_tables

from augbench.cli.main import main
from augbench.reporting.run_report import render_suite_report
from augbench.run.records import RECORD_SCHEMA_VERSION, write_run_suite
from augbench.run.suites import load_suite

#: P2 Tab.1 ResNet-50 columns our sd15 few-shot suite has (METHODS_SPEC §9.2).
CELLS = [("cub", 5), ("pets", 5)]


def _sd15_run(run_dir, with_suite_json=True, profile="sd15"):
    records = [cell_record(method, seed, dataset=dataset, params={"shots": shots}, profile=profile,
                           metrics={"top1": 50.0 + i + seed}, selection="max_test")
               for i, method in enumerate(["original", "mixup"]) for seed in (0, 1) for dataset, shots in CELLS]
    write_records(run_dir, records)
    if with_suite_json:
        write_run_suite(run_dir, load_suite("few_shot", "sd15"))
    return run_dir


def _report(capsys, *argv) -> tuple[int, str]:
    code = main(["report", *argv])
    return code, capsys.readouterr().err


def test_an_sd15_run_renders_its_published_table_without_being_told_the_profile(tmp_path, capsys):
    run_dir = _sd15_run(tmp_path / "few_shot-sd15")
    code, err = _report(capsys, "--run-dir", str(run_dir), "--format", "md,csv")
    assert code == 0, err
    ours, paper = markdown_tables((run_dir / "reports" / "few_shot.md").read_text())
    assert [row[0] for row in ours[1:]] == ["original", "mixup"]  # the suite's row order
    assert ours[0][1:3] == ["cub (shots=5)", "pets (shots=5)"]
    assert paper[0][:4] == ["Method (paper)", "id", "cub (shots=5)", "pets (shots=5)"]
    assert ["Ours (Diff-II)", "diff_ii", "62.22", "89.84"] in paper  # P2 Tab.1 as printed
    assert "profile `sd15`" in (run_dir / "reports" / "few_shot.md").read_text()
    sources = {row["source"] for row in csv.DictReader((run_dir / "reports" / "few_shot.csv").read_text().splitlines())}
    assert sources == {"measured", "p2_tab1_resnet50"}
    # naming the run's own suite and profile again (as `nox -s benchmark` forwards them) changes nothing
    assert _report(capsys, "--run-dir", str(run_dir), "--suite", "few_shot", "--profile", "sd15",
                   "--format", "md")[0] == 0


@pytest.mark.parametrize("flags, names", [(["--profile", "embedded"], ["embedded", "sd15"]),
                                          (["--suite", "long_tail"], ["long_tail", "few_shot"])])
def test_a_suite_or_profile_that_contradicts_suite_json_is_an_error_naming_both(tmp_path, capsys, flags, names):
    run_dir = _sd15_run(tmp_path / "run")
    code, err = _report(capsys, "--run-dir", str(run_dir), *flags)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert all(name in err for name in names) and "suite.json" in err
    assert not (run_dir / "reports").exists()


def test_without_suite_json_the_report_says_what_to_pass(tmp_path, capsys):
    run_dir = _sd15_run(tmp_path / "run", with_suite_json=False)
    code, err = _report(capsys, "--run-dir", str(run_dir))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no suite.json" in err and "--suite" in err
    # --suite fills in; the profile is the one every record names, so the sd15 overlay (published) applies
    assert _report(capsys, "--run-dir", str(run_dir), "--suite", "few_shot", "--format", "md")[0] == 0
    assert len(markdown_tables((run_dir / "reports" / "few_shot.md").read_text())) == 2


def test_records_of_two_profiles_without_suite_json_need_a_profile(tmp_path, capsys):
    run_dir = _sd15_run(tmp_path / "run", with_suite_json=False)
    cell_record("original", 5, dataset="cub", metrics={"top1": 1.0}, profile="embedded").write(run_dir)
    code, err = _report(capsys, "--run-dir", str(run_dir), "--suite", "few_shot")
    assert code == 2 and "profiles embedded, sd15" in err and "--profile" in err
    assert _report(capsys, "--run-dir", str(run_dir), "--suite", "few_shot", "--profile", "embedded",
                   "--format", "md")[0] == 0
    [ours] = markdown_tables((run_dir / "reports" / "few_shot.md").read_text())  # embedded: no published table
    assert [row[0] for row in ours[1:]] == ["original"]


def test_a_record_of_a_newer_schema_stops_the_report_naming_file_and_version(tmp_path, capsys):
    run_dir = _sd15_run(tmp_path / "run")
    path = next((run_dir / "records").glob("*.json"))
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "schema_version": RECORD_SCHEMA_VERSION + 1}))
    code, err = _report(capsys, "--run-dir", str(run_dir))
    assert code == 2 and str(path) in err and f"schema version {RECORD_SCHEMA_VERSION + 1} is newer" in err


def test_report_with_nothing_to_go_on_names_both_options(capsys):
    code, err = _report(capsys)
    assert code == 2 and "--run-dir" in err and "--suite" in err


def test_records_of_another_profile_beside_suite_json_are_left_out_and_said_so(tmp_path):
    run_dir = _sd15_run(tmp_path / "run")
    cell_record("cutmix", 0, dataset="cub", metrics={"top1": 1.0}, profile="embedded").write(run_dir)
    said = []
    render_suite_report(run_dir=run_dir, formats=("md",), echo=said.append)
    ours = markdown_tables((run_dir / "reports" / "few_shot.md").read_text())[0]
    assert [row[0] for row in ours[1:]] == ["original", "mixup"]
    assert said[-1] == "left out 1 records of profile embedded: this report is profile sd15's"

"""End to end: a miniature suite through the CLI, resume after an interruption, reports."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest
from report_parsing import markdown_tables

from augbench.cli.main import main
from augbench.registry import default_registry
from augbench.run import cells as run_cells
from augbench.run import runner, suites
from augbench.run.profiles import WORLD_WEIGHTS

pytestmark = pytest.mark.skipif(not (WORLD_WEIGHTS / "sd" / "model_index.json").exists(),
                                reason="needs the committed world models")

TOYBIRDS = Path(__file__).resolve().parent.parent / "datasets" / "toybirds.toml"


def _run(suite, run_dir, cards, *extra):
    return main(["run", "--suite", str(suite), "--run-dir", str(run_dir), "--datasets-dir", str(cards),
                 "--batch-size", "8", *extra])


def _records(run_dir: Path) -> dict[str, dict]:
    out = {}
    for p in sorted((run_dir / "records").glob("*.json")):
        rec = json.loads(p.read_text())
        out[p.name] = {k: rec[k] for k in ("cell", "method_id", "subset", "metrics", "synthetic", "selection")}
        out[p.name]["synthetic"] = rec["synthetic"] and {k: rec["synthetic"][k] for k in ("key", "size", "metrics")}
        if out[p.name]["synthetic"]:
            out[p.name]["synthetic"]["metrics"] = {k: v for k, v in rec["synthetic"]["metrics"].items() if k != "seconds"}
    return out


def test_interrupted_run_resumes_with_identical_records(mini, tmp_path, monkeypatch, capsys):
    root, cards, suite = mini
    clean = tmp_path / "clean"
    assert _run(suite, clean, cards) == 0
    reference = _records(clean)
    assert len(reference) == 2
    rec = reference["minibirds.few_shot.shots5.sd_random+cutmix.seed0.json"]
    assert rec["synthetic"]["size"] == 16  # expansion 1 x (5 shots - 1 validation image) x 4 classes
    assert 0 <= rec["metrics"]["top1"] <= 100
    assert rec["subset"]["val_size"] == 4
    first = json.loads((clean / "last_run.json").read_text())
    spent = first["stage_seconds"]
    assert spent["generate"] > 0 and spent["train"] > 0 and spent["evaluate"] > 0
    assert spent["total"] <= first["wall_seconds"] + 0.5

    # interrupt after the first cell
    interrupted = tmp_path / "interrupted"
    real_run_cell = runner.run_cell
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_run_cell(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", flaky)
    assert _run(suite, interrupted, cards) == 130
    monkeypatch.setattr(runner, "run_cell", real_run_cell)
    assert len(list((interrupted / "records").glob("*.json"))) == 1
    assert not list(interrupted.rglob("*.tmp"))

    capsys.readouterr()
    assert _run(suite, interrupted, cards) == 0
    out = capsys.readouterr().out
    assert "reused: train" in out
    assert _records(interrupted) == reference

    # a third run recomputes nothing
    summary_args = ["--json"]
    capsys.readouterr()
    assert _run(suite, interrupted, cards, *summary_args) == 0
    summary = json.loads(out_json(capsys.readouterr().out))
    assert summary["computed_stages"] == []
    assert summary["stage_seconds"]["train"] == 0 and summary["stage_seconds"]["generate"] < 1  # reused: lookups only

    # changing how synthetic images join training retrains only the cell that has them
    edited = tmp_path / "mini_suite.toml"
    edited.write_text(suite.read_text().replace('replacement_mode = "concat"', 'replacement_mode = "same_class"'))
    capsys.readouterr()
    assert _run(edited, interrupted, cards, "--json") == 0
    computed = json.loads(out_json(capsys.readouterr().out))["computed_stages"]
    assert [s for s in computed if s.startswith("train/")] and not [s for s in computed if s.startswith("synthetic/")]
    assert len([s for s in computed if s.startswith("train/")]) == 1

    # the report renders every method with measured numbers
    assert main(["report", "--suite", str(suite), "--run-dir", str(interrupted)]) == 0
    md = (interrupted / "reports" / "mini_suite.md").read_text()
    assert "| original " in md and "| sd_random+cutmix " in md
    assert "validation split" in md and "uncalibrated" in md
    csv = (interrupted / "reports" / "mini_suite.csv").read_text().splitlines()
    assert len(csv) == 3 and all(row.split(",")[3] for row in csv[1:])


def out_json(text: str) -> str:
    """The JSON object at the end of ``text`` (log lines come first)."""
    return text[text.index("\n{") + 1:] if not text.startswith("{") else text


def test_unknown_suite_and_method_errors_are_helpful(mini, tmp_path):
    with pytest.raises(suites.SuiteError, match="built-in suites: .*few_shot"):
        suites.load_suite("no_such_suite")
    _, cards, suite = mini
    from augbench.registry import UnknownMethodError

    with pytest.raises(UnknownMethodError, match="cutmix"):
        runner.run_suite(run_cells.RunOptions(suite=str(suite), methods=["cutmx"], run_dir=str(tmp_path),
                                           datasets_dir=str(cards), log=lambda s: None))


PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"


def test_installed_plugin_runs_in_a_suite(mini, tmp_path):
    """pip-install the example plugin into a target folder and run it in a suite: no change to augbench."""
    import os
    import subprocess
    import sys

    _, cards, suite = mini
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(PLUGIN)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    assert list(site.glob("augbench_plugin_example-*.dist-info"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1")
    listing = subprocess.run([sys.executable, "-m", "augbench.cli.main", "methods", "--json"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert listing.returncode == 0, listing.stderr
    ids = {row["id"]: row["distribution"] for row in json.loads(listing.stdout)}
    assert ids["channel_flip"] == "augbench-plugin-example" and ids["cutmix"] == "augbench"
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "augbench.cli.main", "run", "--suite", str(suite), "--run-dir", str(run_dir),
                          "--datasets-dir", str(cards), "--methods", "channel_flip", "noise+channel_flip"],
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    records = {p.stem: json.loads(p.read_text()) for p in (run_dir / "records").glob("*.json")}
    assert set(records) == {"minibirds.few_shot.shots5.channel_flip.seed0",
                            "minibirds.few_shot.shots5.noise+channel_flip.seed0"}
    noise = records["minibirds.few_shot.shots5.noise+channel_flip.seed0"]
    assert noise["synthetic"]["size"] == 16 and noise["method"]["method"] == "noise+channel_flip"


def test_ray_executor_gives_the_local_records(mini, tmp_path, monkeypatch):
    """Two subsets (seeds) fan out as two Ray tasks; the records equal a local run's (both 1 thread per
    process, as each 1-CPU Ray task trains: across thread counts float reductions differ)."""
    ray = pytest.importorskip("ray")
    from augbench.run.executors import group_cells_by_subset

    monkeypatch.setenv("AUGBENCH_NUM_THREADS", "1")
    _, cards, suite = mini
    extra = ["--seeds", "0", "1", "--methods", "original", "cutmix"]
    local, distributed = tmp_path / "local", tmp_path / "ray"
    assert _run(suite, local, cards, *extra) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert _run(suite, distributed, cards, "--executor", "ray", *extra) == 0
    finally:
        ray.shutdown()
    assert len(_records(local)) == 4
    assert _records(distributed) == _records(local)
    summary = json.loads((distributed / "last_run.json").read_text())
    assert summary["executor"] == "ray" and summary["failed"] == []

    spec = suites.load_suite(str(suite))
    cells = run_cells.plan_cells(spec, run_cells.RunOptions(suite=str(suite), seeds=[0, 1]))
    groups = group_cells_by_subset(cells)
    assert [[c.seed for c in g] for g in groups] == [[0, 0], [1, 1]]


def _assert_same(a, b, path: str) -> None:
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in b:
            _assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_process_pool_gives_the_serial_records(mini, tmp_path, monkeypatch):
    """--workers 2: two subset groups on two 1-thread processes; records equal a serial 1-thread run's.

    (Across thread counts CPU float reductions differ in the last bits, which can flip a prediction, so
    the serial reference runs with the workers' thread count.)
    """
    _, cards, suite = mini
    monkeypatch.setenv("AUGBENCH_NUM_THREADS", "1")
    extra = ["--seeds", "0", "1", "--methods", "original", "sd_random"]
    serial, pooled = tmp_path / "serial", tmp_path / "pool"
    assert _run(suite, serial, cards, "--cache-dir", str(tmp_path / "cache_serial"), *extra) == 0
    assert _run(suite, pooled, cards, "--cache-dir", str(tmp_path / "cache_pool"), "--workers", "2", *extra) == 0
    assert len(_records(serial)) == 4
    assert _records(pooled) == _records(serial)
    assert json.loads((pooled / "last_run.json").read_text())["failed"] == []
    assert main(["run", "--suite", str(suite), "--workers", "0", "--datasets-dir", str(cards)]) == 2


def _species_tables(species) -> str:
    return "\n\n".join("[[world.species]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in s.items())
                       for s in species)


@pytest.fixture(scope="module")
def mini_ood(tmp_path_factory):
    """Two water and two land species: a training card and a background-shifted Waterbirds-style test card."""
    root = tmp_path_factory.mktemp("mini_ood")
    species = [s for i, s in enumerate(tomllib.loads(TOYBIRDS.read_text())["world"]["species"]) if i in (0, 1, 12, 13)]
    assert {s["habitat"] for s in species} == {"water", "land"}
    names = ", ".join(json.dumps(s["name"]) for s in species)
    cards = root / "cards"
    cards.mkdir()
    header = '[dataset]\nname = "{name}"\nkind = "embedded"\nreader = "world"\nmeta = "bird"\n'
    (cards / "minitrain.toml").write_text(
        header.format(name="mini train") + f"[splits]\ntrain = 48\ntest = 16\n[classes]\nnames = [{names}]\n"
        "[world]\nmode = \"species\"\nimage_size = 64\n[world.splits.train]\nper_class = 12\nhabitat_consistency = 0.95\n"
        "[world.splits.test]\nper_class = 4\nhabitat_consistency = 0.95\n\n" + _species_tables(species))
    (cards / "miniwater.toml").write_text(
        header.format(name="mini waterbirds") + f"[splits]\ntrain = 16\ntest = 32\n[classes]\nnames = [{names}]\n"
        "[world]\nmode = \"species\"\nimage_size = 64\n[world.splits.train]\nper_class = 4\nhabitat_consistency = 0.95\n"
        "[world.splits.test]\nper_class = 8\nbalanced_places = true\n\n" + _species_tables(species))
    common = ('recipe = "embedded"\nepochs = 1\nselection = "val_split"\nval_fraction = 0.2\nseeds = [0]\n'
              'datasets = ["minitrain"]\nmethods = ["original", "mixup"]\n')
    (root / "mini_wb.toml").write_text('[suite]\nname = "mini_wb"\nprotocol = "waterbirds"\ntable = "waterbirds"\n'
                                       'test_dataset = "miniwater"\nshots = [5]\n' + common)
    (root / "mini_lt.toml").write_text('[suite]\nname = "mini_lt"\nprotocol = "long_tail"\ntable = "long_tail"\n'
                                       'imbalance_factors = [10]\nclass_group_thresholds = { minitrain = [8, 2] }\n'
                                       + common)
    return root, cards


def test_waterbirds_suite_reports_the_four_groups(mini_ood, tmp_path):
    root, cards = mini_ood
    run_dir = tmp_path / "wb"
    assert _run(root / "mini_wb.toml", run_dir, cards) == 0
    rec = json.loads((run_dir / "records" / "minitrain.waterbirds.shots5.original.seed0.json").read_text())
    metrics = rec["metrics"]
    assert set(metrics["groups"]) == {"00", "01", "10", "11"}
    assert set(metrics["group_sizes"].values()) == {8}  # balanced: 4 species x 8 / 4 groups
    assert metrics["worst_group"] == min(metrics["groups"].values())
    assert main(["report", "--suite", str(root / "mini_wb.toml"), "--run-dir", str(run_dir)]) == 0
    md = (run_dir / "reports" / "mini_wb.md").read_text()
    [ours] = markdown_tables(md)
    assert ours[0][1:8] == ["L,L", "W,W", "L,W", "W,L", "Avg [Δ]", "Worst", "Pooled"]
    assert "mixup" in [row[0] for row in ours[1:]]


def test_long_tail_suite_reports_many_medium_few(mini_ood, tmp_path):
    root, cards = mini_ood
    run_dir = tmp_path / "lt"
    assert _run(root / "mini_lt.toml", run_dir, cards) == 0
    rec = json.loads((run_dir / "records" / "minitrain.long_tail.imbalance_factor10.original.seed0.json").read_text())
    assert rec["subset"]["size"] == 12 + 3 + 1 + 1  # n_k = max(floor(12 * 0.1^(k/2)), 1), METHODS_SPEC §6.2
    groups = rec["metrics"]["class_groups"]  # many > 8 images, few < 2, medium in between
    assert set(groups) == {"many", "medium", "few"} and None not in groups.values()
    assert main(["report", "--suite", str(root / "mini_lt.toml"), "--run-dir", str(run_dir)]) == 0
    assert "Many / medium / few" in (run_dir / "reports" / "mini_lt.md").read_text()


def test_suite_with_an_unknown_recipe_fails_before_any_work(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[suite]\nprotocol = "few_shot"\ndatasets = ["toybirds"]\nmethods = ["original"]\nseeds = [0]\n'
                   'recipe = "diffii_resnet50"\n')
    with pytest.raises(suites.SuiteError, match="did you mean 'diff_ii_resnet50'"):
        suites.validate_suite(suites.load_suite(str(bad)), default_registry())
    for name in suites.list_suites():
        for profile in ("embedded", "sd15"):  # every built-in suite is valid in both profiles
            suites.validate_suite(suites.load_suite(name, profile), default_registry())


def test_profile_overlay_refines_method_params_key_by_key(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nprotocol = "long_tail"\ndatasets = ["toybirds"]\nmethods = ["sd_random"]\nseeds = [0]\n'
                     '[methods_params.sd_random]\nallocation = "uniform"\nguidance_scale = 5.0\n'
                     '[profiles.sd15]\nseeds = [0, 1]\npublished = ["p2_tab2"]\n'
                     '[profiles.sd15.methods_params.sd_random]\nallocation = "proportional"\nexpansion = 5.0\n')
    embedded, sd15 = suites.load_suite(str(suite)), suites.load_suite(str(suite), "sd15")
    assert embedded.methods_params == {"sd_random": {"allocation": "uniform", "guidance_scale": 5.0}}
    assert sd15.methods_params == {"sd_random": {"allocation": "proportional", "guidance_scale": 5.0,
                                                 "expansion": 5.0}}
    assert sd15.seeds == (0, 1) and sd15.published == ("p2_tab2",)


def test_auto_workers_one_per_core_on_the_embedded_cpu_profile_only(mini, monkeypatch):
    from augbench.run.runner import resolve_workers

    _, _, suite = mini
    spec = suites.load_suite(str(suite))
    opts = run_cells.RunOptions(suite=str(suite), seeds=[0, 1, 2], workers="auto", device="cpu")
    cells = run_cells.plan_cells(spec, opts)
    monkeypatch.setenv("AUGBENCH_NUM_THREADS", "8")  # usable cores
    assert resolve_workers(opts, cells) == 3  # one per subset group
    monkeypatch.setenv("AUGBENCH_NUM_THREADS", "2")
    assert resolve_workers(opts, cells) == 2
    import dataclasses

    assert resolve_workers(dataclasses.replace(opts, profile="sd15"), cells) == 1
    assert resolve_workers(dataclasses.replace(opts, device="cuda"), cells) == 1
    monkeypatch.setattr("augbench.training.runtime.available_cpus", lambda: 8)
    assert resolve_workers(dataclasses.replace(opts, workers="3"), cells) == 3


def test_stage_seconds_counts_only_what_a_record_computed_and_splits_out_evaluation():
    from augbench.run.records import format_stage_seconds, stage_seconds

    computed = {"timings": {"subset": 0.5, "generate": 30.0, "train": 20.0}, "reused": [],
                "train": {"timings": {"eval": 3.0}}}
    # a cell sharing the synthetic set, whose training was cached by an earlier run (seconds of that run)
    reused = {"timings": {"subset": 0.5, "generate": 0.01, "train": 20.0}, "reused": ["generate", "train"],
              "train": {"timings": {"eval": 3.0}}}
    # one artifact reused, another built in the same stage: the stage's seconds count
    partly = {"timings": {"artifacts": 25.0}, "reused": ["artifacts"]}
    totals = stage_seconds([computed, reused, partly])
    assert totals["generate"] == 30.0 and totals["train"] == 17.0 and totals["evaluate"] == 3.0
    assert totals["artifacts"] == 25.0 and totals["subset"] == 1.0 and totals["total"] == 76.0
    assert format_stage_seconds(totals) == "subset 1 s, artifacts 25 s, generate 30 s, train 17 s, evaluate 3 s"
    assert format_stage_seconds(stage_seconds([{**computed, "timings": {"generate": 600.0, "train": 3.2}}])) == \
        "generate 10.0 min, evaluate 3 s"


def test_explicit_workers_beyond_the_cpus_are_capped_with_a_warning(mini, monkeypatch):
    from augbench.run.runner import resolve_workers
    from augbench.training import runtime

    _, _, suite = mini
    spec = suites.load_suite(str(suite))
    said: list[str] = []
    opts = run_cells.RunOptions(suite=str(suite), workers="16", device="cpu", log=said.append)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
    assert resolve_workers(opts, run_cells.plan_cells(spec, opts)) == 2
    assert said == ["warning: --workers 16 is more than the 2 usable CPU cores; running 2 workers"]
    assert resolve_workers(dataclasses.replace(opts, workers="2"), []) == 2 and len(said) == 1


def test_cpus_follow_the_cgroup_quota_and_a_loaded_machine_is_named(tmp_path, monkeypatch):
    from augbench.training import runtime

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert runtime.cgroup_cpu_quota(str(tmp_path)) == 2  # 1.5 CPUs: two threads, rounded up
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime.cgroup_cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("400000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert runtime.cgroup_cpu_quota(str(tmp_path)) == 4  # cgroup v1
    monkeypatch.setattr(runtime, "cgroup_cpu_quota", lambda: 1)
    monkeypatch.delenv("AUGBENCH_NUM_THREADS", raising=False)
    assert runtime.available_cpus() == 1 == runtime.usable_cores()
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (3.5, 1.0, 1.0))
    assert "load average 3.5 exceeds the 2 usable cores" in runtime.load_warning(2)
    assert runtime.load_warning(4) is None


def test_syn_only_trains_once_per_synthetic_set_and_the_report_shows_it(mini, tmp_path, capsys):
    """``syn_only = true``: rows sharing a synthetic set (sd_random, sd_random+cutmix) share one synthetic-only
    training; the table gets a Syn-only column and the report a synthetic-set table that explains it, with the
    distribution metrics against the training part and the test split (``distribution_metrics = true``)."""
    _, cards, suite = mini
    edited = tmp_path / "syn_only.toml"
    text = suite.read_text().replace('name = "mini_suite"', 'name = "syn_only"').replace(
        'methods = ["original", "sd_random+cutmix"]', 'methods = ["original", "sd_random", "sd_random+cutmix"]')
    edited.write_text(text.replace("epochs = 1\n", "epochs = 1\nsyn_only = true\ndistribution_metrics = true\n", 1))
    run_dir = tmp_path / "run"
    capsys.readouterr()
    assert _run(edited, run_dir, cards, "--json") == 0
    computed = json.loads(out_json(capsys.readouterr().out))["computed_stages"]
    assert len([s for s in computed if s.startswith("syn_only/")]) == 1
    records = {p.name.split(".")[3]: json.loads(p.read_text()) for p in (run_dir / "records").glob("*.json")}
    plain, mixed = records["sd_random"]["synthetic"]["syn_only"], records["sd_random+cutmix"]["synthetic"]["syn_only"]
    assert plain == mixed and 0 <= plain["metrics"]["top1"] <= 100
    assert records["original"]["synthetic"] is None
    assert main(["report", "--suite", str(edited), "--run-dir", str(run_dir)]) == 0
    ours, synthetic = markdown_tables((run_dir / "reports" / "syn_only.md").read_text())[:2]
    assert "Syn-only" in ours[0] and "Syn-only" in synthetic[0]
    column = ours[0].index("Syn-only")
    by_method = {row[0]: row[column] for row in ours[1:]}
    assert by_method["original"] == "—" and by_method["sd_random"] == f"{plain['metrics']['top1']:.1f}"
    assert "classification accuracy score" in (run_dir / "reports" / "syn_only.md").read_text()
    distribution = records["sd_random"]["synthetic"]["metrics"]["distribution"]
    # the training part: 5 shots x 4 classes less the validation images (selection = "val_split")
    assert distribution["train"]["n"]["reference"] == 16 and distribution["test"]["n"]["reference"] == 32
    assert {"FD (train)", "KID (test)", "P", "C", "Vendi"} <= set(synthetic[0])
    fd = synthetic[0].index("FD (train)")
    assert float(next(r for r in synthetic[1:] if r[0] == "sd_random")[fd]) == pytest.approx(
        distribution["train"]["fd"]["value"], rel=5e-3)

"""Suites are checked before any cell runs; expected CLI errors are one line and exit code 2."""

from __future__ import annotations

import pytest

from augbench.cli.main import main
from augbench.registry import default_registry
from augbench.run.cells import RunOptions, plan_cells
from augbench.run.suites import SuiteError, load_suite, validate_suite

HEAD = '[suite]\nprotocol = "few_shot"\ndatasets = ["toybirds"]\nmethods = ["original", "sd_random"]\nseeds = [0]\n'


def _suite(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_a_misspelt_key_is_refused_with_a_suggestion(tmp_path):
    path = _suite(tmp_path, HEAD + 'replacment_mode = "concat"\n')
    with pytest.raises(SuiteError, match=r"unknown key in \[suite\] 'replacment_mode'"):
        load_suite(path)
    path = _suite(tmp_path, HEAD + '[training]\nreplacment_mode = "same_class"\n')
    with pytest.raises(SuiteError, match="did you mean 'replacement_mode'"):
        load_suite(path)
    path = _suite(tmp_path, HEAD + '[trainig.sd_random]\nreplacement_mode = "same_class"\n')
    with pytest.raises(SuiteError, match="did you mean 'training'"):
        load_suite(path)


def test_every_problem_is_named_in_one_error(tmp_path):
    path = _suite(tmp_path, HEAD.replace('"original", "sd_random"', '"original", "sd_randon"')
                  + 'recipe = "embeded"\n[methods_params.cutmx]\npreset = "noisecutmix_paper"\n'
                  + '[methods_params.mixup]\npreset = "no_such_preset"\n[training.mixupp]\nreplacement_p = 0.1\n')
    suite = load_suite(path)
    with pytest.raises(SuiteError) as info:
        validate_suite(suite, default_registry())
    message = str(info.value)
    for expected in ("sd_random", "[methods_params.cutmx]", "did you mean 'cutmix'", "no_such_preset",
                     "[training.mixupp]", "did you mean 'embedded'"):
        assert expected in message, (expected, message)


def test_unknown_dataset_is_refused_before_any_cell(tmp_path):
    suite = load_suite(_suite(tmp_path, HEAD.replace('"toybirds"', '"toybird"')))
    with pytest.raises(SuiteError, match="unknown dataset 'toybird' \\(did you mean 'toybirds'\\?\\)"):
        validate_suite(suite, default_registry())


def test_training_overrides_layer_suite_wide_then_family(tmp_path):
    suite = load_suite(_suite(tmp_path, HEAD + '[training]\nreplacement_mode = "same_class"\nreplacement_p = 0.3\n'
                              '[training.sd_random]\nreplacement_p = 0.7\n'
                              '[profiles.sd15.training.sd_random]\nlabels = "hard"\n'))
    assert suite.training_overrides("sd_random") == {"replacement_mode": "same_class", "replacement_p": 0.7}
    assert suite.training_overrides("cutmix") == {"replacement_mode": "same_class", "replacement_p": 0.3}
    sd15 = load_suite(tmp_path / "s.toml", "sd15")
    assert sd15.training_overrides("sd_random") == {"replacement_mode": "same_class", "replacement_p": 0.7,
                                                    "labels": "hard"}


def test_plan_covers_the_grid_in_order(tmp_path):
    suite = load_suite(_suite(tmp_path, HEAD + "shots = [5, 10]\n"))
    cells = plan_cells(suite, RunOptions(suite="s", seeds=[0, 1]))
    assert [(dict(c.protocol_params)["shots"], c.method, c.seed) for c in cells][:4] == [
        (5, "original", 0), (5, "original", 1), (5, "sd_random", 0), (5, "sd_random", 1)]
    assert len(cells) == 8 and len({c.key for c in cells}) == 8


@pytest.mark.parametrize("argv, expected", [
    (["run", "--suite", "few_shott"], "unknown suite 'few_shott' (did you mean 'few_shot'?)"),
    (["run", "--suite", "few_shot", "--methods", "cutmx"], "cutmix"),
    (["run", "--suite", "few_shot", "--profile", "sd15", "--methods", "original"], "needs data that is not present"),
    (["generate", "--method", "sd_random", "--dataset", "toybird", "--out", "x"], "toybirds"),
])
def test_expected_cli_errors_are_one_line_and_exit_2(argv, expected, tmp_path, capsys):
    assert main([*argv, *(["--run-dir", str(tmp_path)] if argv[0] == "run" else [])]) == 2
    out, err = capsys.readouterr()
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "records").exists()  # nothing ran


def test_a_suite_typo_exits_2_through_the_cli(tmp_path, capsys):
    path = _suite(tmp_path, HEAD + 'replacment_mode = "concat"\n')
    assert main(["run", "--suite", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "did you mean 'replacement_mode'" in capsys.readouterr().err


def test_debug_shows_the_traceback():
    with pytest.raises(SuiteError):
        main(["--debug", "run", "--suite", "few_shott"])


def test_image_budget_reaches_the_training_recipe_cli_over_suite(tmp_path):
    from types import SimpleNamespace

    from augbench.run.stages import train_config

    suite = load_suite(_suite(tmp_path, HEAD + 'recipe = "embedded"\nimage_budget = 3000\n'))
    validate_suite(suite, default_registry())

    def recipe_with(**opts):
        env = SimpleNamespace(suite=suite, opts=RunOptions(suite="s", **opts), device="cpu",
                              profile=SimpleNamespace(classifier_size=64))
        inputs = SimpleNamespace(cell=SimpleNamespace(dataset="toybirds", seed=0),
                                 resolved=SimpleNamespace(training=None, method_id="original", mixer=None))
        return train_config(env, inputs).recipe

    assert recipe_with().image_budget == 3000 and recipe_with().num_epochs(120) == 25
    assert recipe_with(image_budget=1200).num_epochs(120) == 10  # the CLI flag wins over the suite


@pytest.mark.parametrize("value", ["0", "-5", "2.5", "true"])
def test_a_bad_image_budget_is_refused_before_any_cell(tmp_path, value):
    suite = load_suite(_suite(tmp_path, HEAD + f"image_budget = {value}\n"))
    with pytest.raises(SuiteError, match="image_budget = .*expected a whole number >= 1"):
        validate_suite(suite, default_registry())


# --- protocols (augbench.protocols objects, issue 22 item 1) -------------------------------------------

@pytest.mark.parametrize("extra, expected", [
    ('imbalance_factors = [100]\n', "[suite] 'imbalance_factors': protocol 'few_shot' does not take it; its "
                                    "parameters: shots"),
    ('shots = [0]\n', "shots = (0,): expected a non-empty list of positive whole numbers"),
])
def test_a_protocol_parameter_the_protocol_does_not_take_or_a_bad_value_is_refused(tmp_path, extra, expected):
    with pytest.raises(SuiteError) as info:
        load_suite(_suite(tmp_path, HEAD + extra))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_protocol_is_refused_with_a_suggestion_and_exit_2(tmp_path, capsys):
    path = _suite(tmp_path, HEAD.replace('"few_shot"', '"few_shto"'))
    with pytest.raises(SuiteError, match=r"unknown protocol 'few_shto' \(did you mean 'few_shot'\?\)"):
        load_suite(path)
    assert main(["run", "--suite", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown protocol 'few_shto'" in err and len(err.strip().splitlines()) == 1


def test_a_plugin_protocol_that_does_not_import_fails_the_suite_in_one_line(tmp_path, capsys):
    from augbench.protocols import PROTOCOLS

    PROTOCOLS.register("broken_protocol", "no_such_module_xyz:Protocol", distribution="augbench-broken")
    try:
        path = _suite(tmp_path, HEAD.replace('"few_shot"', '"broken_protocol"'))
        assert main(["run", "--suite", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    finally:
        PROTOCOLS.unregister("broken_protocol")
    err = capsys.readouterr().err
    assert "'broken_protocol' from 'augbench-broken' failed to load" in err and len(err.strip().splitlines()) == 1


def test_a_key_in_the_wrong_table_is_told_where_it_belongs(tmp_path):
    with pytest.raises(SuiteError) as info:
        load_suite(_suite(tmp_path, HEAD + 'replacement_mode = "concat"\n'))
    assert "'replacement_mode' belongs in [training] (all methods) or [training.<family>], not in [suite]" \
        in str(info.value)
    assert "did you mean" not in str(info.value)
    with pytest.raises(SuiteError, match=r"'seeds' belongs in \[suite\], not in \[training.sd_random\]"):
        load_suite(_suite(tmp_path, HEAD + '[training.sd_random]\nseeds = [1]\n'))


def test_the_grid_is_the_protocols_and_shots_only_where_it_takes_them(tmp_path):
    suite = load_suite(_suite(tmp_path, HEAD.replace('"few_shot"', '"long_tail"') + "imbalance_factors = [10, 100]\n"))
    assert [c.protocol_params for c in plan_cells(suite, RunOptions(suite="s"))][::2] == [
        (("imbalance_factor", 10),), (("imbalance_factor", 100),)]
    with pytest.raises(SuiteError, match="--shots: protocol 'long_tail' does not take shots"):
        plan_cells(suite, RunOptions(suite="s", shots=[5]))
    few = load_suite(_suite(tmp_path, HEAD))
    assert {c.protocol_params for c in plan_cells(few, RunOptions(suite="s", shots=[1, 2]))} == {
        (("shots", 1),), (("shots", 2),)}

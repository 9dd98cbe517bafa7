"""Suite rows with their own parameters, ``diff_ii(split_ratio=0.1)``: one family, several values, several
rows (a parameter sweep, METHODS_SPEC §9.6)."""

from __future__ import annotations

import pytest

from augbench.registry import default_registry
from augbench.reporting.tables import method_family
from augbench.run.cells import RunOptions, plan_cells
from augbench.run.stages import resolve_method
from augbench.run.suites import SuiteError, load_suite, parse_method_entry, validate_suite

HEAD = '[suite]\nprotocol = "few_shot"\ndatasets = ["toybirds"]\nseeds = [0]\n'


def _suite(tmp_path, methods: str, extra: str = ""):
    path = tmp_path / "s.toml"
    path.write_text(HEAD + f"methods = {methods}\n" + extra)
    return path


def test_entries_parse_with_toml_values():
    assert parse_method_entry("diff_ii") == ("diff_ii", {})
    assert parse_method_entry("diff_ii(split_ratio=0.1)") == ("diff_ii", {"split_ratio": 0.1})
    assert parse_method_entry(' diff_ii.cl_only(split_ratio = 1.0, interpolation = "slerp") ') == (
        "diff_ii.cl_only", {"split_ratio": 1.0, "interpolation": "slerp"})
    assert parse_method_entry("sd_random(guidance_scale=2.0)+cutmix") == ("sd_random+cutmix", {"guidance_scale": 2.0})
    assert parse_method_entry("diff_ii()") == ("diff_ii", {})
    assert parse_method_entry("diff_ii(split_ratio=0)")[1]["split_ratio"] == 0


@pytest.mark.parametrize("entry", ["diff_ii(split_ratio=)", "diff_ii(split_ratio=0.1", "(split_ratio=0.1)",
                                   "diff_ii(split_ratio=0.1)x", "diff_ii(split_ratio 0.1)",
                                   "sd_random+cutmix(alpha=1.0)"])
def test_malformed_entries_say_what_is_expected(entry):
    with pytest.raises(SuiteError, match=r"id\(key=value|key = value"):
        parse_method_entry(entry)


def test_rows_of_one_family_become_cells_and_resolve_to_their_parameters(tmp_path):
    suite = load_suite(_suite(tmp_path, '["sd_random(guidance_scale=1.5)", "sd_random(guidance_scale=3.0)", '
                                        '"sd_random"]', '[methods_params.sd_random]\nexpansion = 2.0\n'))
    validate_suite(suite, default_registry())
    cells = plan_cells(suite, RunOptions(suite=str(tmp_path / "s.toml")))
    assert [c.method for c in cells] == list(suite.methods)
    assert len({c.key for c in cells}) == 3
    resolved = [resolve_method(c, suite, default_registry()) for c in cells]
    assert [r.method.config.guidance_scale for r in resolved] == [1.5, 3.0, None]
    assert {r.method.config.expansion for r in resolved} == {2.0}  # [methods_params] still applies
    assert resolved[0].method_id == "sd_random"
    assert resolved[0].method.provenance() != resolved[1].method.provenance()  # different synthetic sets
    assert method_family(cells[0].method) == "sd_random"


def test_row_parameters_are_validated_with_the_family_config(tmp_path):
    suite = load_suite(_suite(tmp_path, '["sd_random(guidance_scal=1.5)", "sd_randon(guidance_scale=1.0)"]'))
    with pytest.raises(SuiteError) as info:
        validate_suite(suite, default_registry())
    message = str(info.value)
    assert "sd_random(guidance_scal=1.5)" in message and "guidance_scal" in message
    assert "sd_randon" in message
    with pytest.raises(SuiteError, match="split_ratio="):
        load_suite(_suite(tmp_path, '["sd_random(split_ratio=)"]'))
    with pytest.raises(SuiteError, match="twice"):
        load_suite(_suite(tmp_path, '["sd_random", "sd_random"]'))

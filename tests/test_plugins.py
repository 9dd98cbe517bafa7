"""The one generic registry (benchmark/plugins.py) and the registries built on it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from augbench.plugins import (
    DuplicateNameError,
    PluginLoadError,
    Registry,
    RegistryError,
    UnknownNameError,
    did_you_mean,
)


class _FakeDist:
    """What ``importlib.metadata.distributions()`` yields, as far as the registry reads it."""

    def __init__(self, name: str, eps: dict[str, str], group: str = "augbench.things", version: str = "1.0"):
        self.metadata = {"Name": name}
        self.version = version
        self.entry_points = [EntryPoint(n, v, group) for n, v in eps.items()] + [
            EntryPoint("unrelated", "x:y", "console_scripts")
        ]


def _registry(*dists: _FakeDist, **kwargs) -> Registry:
    return Registry("thing", "augbench.things", distributions=lambda: list(dists), **kwargs)


@pytest.fixture
def lazy_module(tmp_path, monkeypatch):
    """A module on sys.path that records being imported (``sys.modules`` tells)."""
    (tmp_path / "lazy_plugin_mod.py").write_text("VALUE = 42\n", encoding="utf-8")
    (tmp_path / "broken_plugin_mod.py").write_text("raise ImportError('needs libfoo')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("lazy_plugin_mod", "broken_plugin_mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return "lazy_plugin_mod"


# --- discovery and duplicates ----------------------------------------------------------------------


def test_duplicates_from_two_distributions_name_both():
    reg = _registry(_FakeDist("pkg-a", {"flip": "a.mod:Flip"}), _FakeDist("pkg-b", {"flip": "b.mod:Flip"}))
    with pytest.raises(DuplicateNameError) as err:
        reg.names()
    msg = str(err.value)
    assert "thing 'flip'" in msg and "'pkg-a' (a.mod:Flip)" in msg and "'pkg-b' (b.mod:Flip)" in msg
    assert "'augbench.things'" in msg  # where to rename it


def test_entry_points_keep_their_distribution_and_other_groups_are_ignored():
    reg = _registry(_FakeDist("pkg-a", {"flip": "a.mod:Flip"}, version="2.1"), _FakeDist("pkg-b", {"roll": "b:R"}))
    assert reg.names() == ["flip", "roll"] and "unrelated" not in reg
    assert (reg.entry("flip").distribution, reg.entry("flip").version) == ("pkg-a", "2.1")


def test_one_distribution_seen_twice_and_a_builtin_also_declared_as_entry_point_are_one_entry():
    reg = _registry(_FakeDist("pkg-a", {"flip": "a.mod:Flip"}), _FakeDist("Pkg_A", {"flip": "a.mod:Flip"}),
                    _FakeDist("augbench", {"mean": "m:mean"}), builtins={"mean": "m:mean"})
    assert reg.names() == ["flip", "mean"]
    assert reg.entry("mean").distribution == "augbench"


def test_in_process_registration_refuses_a_taken_name_unless_replacing():
    reg = Registry("thing", builtins={"flip": "a:b"})
    with pytest.raises(DuplicateNameError, match="'augbench'.*'<in-process>'"):
        reg.register("flip", object())
    marker = object()
    reg.register("flip", marker, replace=True)
    assert reg.get("flip") is marker


def test_names_must_match_the_pattern():
    with pytest.raises(RegistryError, match="'Flip-It'.*lowercase snake_case"):
        Registry("thing", builtins={"Flip-It": "a:b"})
    reg = Registry("scheduler", builtins={"dpmsolver++": "a:b"}, name_pattern=r"^[a-z][a-z0-9_+]*$")
    assert reg.names() == ["dpmsolver++"]


# --- laziness and loading ----------------------------------------------------------------------------


def test_listing_imports_nothing_and_get_imports_once(lazy_module):
    reg = Registry("thing", builtins={"answer": f"{lazy_module}:VALUE"})
    assert reg.names() == ["answer"] and "answer" in reg and len(reg) == 1
    assert lazy_module not in sys.modules
    assert reg.get("answer") == 42 and lazy_module in sys.modules
    del sys.modules[lazy_module]
    assert reg.get("answer") == 42 and lazy_module not in sys.modules  # loaded once, then held


def test_load_failure_names_the_entry_point_and_its_distribution(lazy_module):
    reg = _registry(_FakeDist("fancy-things", {"broken": "broken_plugin_mod:Thing"}))
    with pytest.raises(PluginLoadError) as err:
        reg.get("broken")
    msg = str(err.value)
    for part in ("thing 'broken'", "'fancy-things'", "'broken_plugin_mod:Thing'", "'augbench.things'",
                 "ImportError: needs libfoo"):
        assert part in msg, (part, msg)


def test_validate_and_adapt_hooks(lazy_module):
    def must_be_int(name, obj):
        if not isinstance(obj, int):
            raise TypeError(f"expected an int, got {obj!r}")

    reg = Registry("number", builtins={"answer": f"{lazy_module}:VALUE", "text": "json:dumps"},
                   adapt=lambda name, obj: obj * 2 if isinstance(obj, int) else obj, validate=must_be_int)
    assert reg.get("answer") == 84  # adapted, then validated
    with pytest.raises(PluginLoadError, match=r"number 'text' from 'augbench' \(json:dumps\): expected an int"):
        reg.get("text")
    with pytest.raises(RegistryError):  # PluginLoadError is a RegistryError, so callers catch one type
        reg.get("text")


def test_dict_style_access_of_the_registries_that_replaced_dicts():
    reg = Registry("recipe", builtins={"a": 1, "b": 2})
    assert reg["a"] == 1 and list(reg) == ["a", "b"] and reg.keys() == ["a", "b"]
    reg["c"] = 3
    assert reg.entry("c").distribution == "<in-process>" and reg.items() == [("a", 1), ("b", 2), ("c", 3)]
    assert reg.pop("c") == 3 and reg.pop("c", None) is None and "c" not in reg
    with pytest.raises(KeyError):
        reg["zz"]


# --- did you mean ------------------------------------------------------------------------------------


def test_unknown_names_get_one_suggestion_rule():
    reg = Registry("profile", builtins={"embedded": 1, "sd15": 2}, hint=" See the docs.")
    with pytest.raises(UnknownNameError) as err:
        reg.get("sd5")
    assert str(err.value) == "unknown profile 'sd5' (did you mean 'sd15'?). Known: embedded, sd15. See the docs."
    assert isinstance(err.value, KeyError)  # dict-like callers keep working
    assert str(err.value).startswith("unknown")  # not KeyError's repr()


def test_did_you_mean_never_suggests_the_name_itself():
    assert did_you_mean("training", ["training", "trainer"]) == " (did you mean 'trainer'?)"
    assert did_you_mean("training", ["training"]) == ""


def test_did_you_mean_cutoff_prefixes_and_count():
    assert did_you_mean("cutmx", ["cutmix", "mixup"]) == " (did you mean 'cutmix'?)"
    assert did_you_mean("zzz", ["cutmix", "mixup"]) == ""
    assert did_you_mean("probability", ["prob", "alpha"]) == " (did you mean 'prob'?)"  # a shortened spelling
    assert did_you_mean("p", ["prob"]) == ""  # too short to be a prefix match
    assert did_you_mean("toybird", ["toybirds", "toywaterbirds"], n=2) == " (did you mean 'toybirds' or 'toywaterbirds'?)"
    assert did_you_mean(5, [5, 50]) == " (did you mean '50'?)"  # any value is compared as text


# --- the registries built on it ------------------------------------------------------------------------


def test_harness_registries_list_without_importing_and_keep_their_error_types():
    """Artifact kinds, readers, profiles, recipes and schedulers are Registry instances: their built-ins are
    listed without importing the diffusion modules, and their lookups raise what callers always caught."""
    code = textwrap.dedent(
        """
        import json, sys
        from augbench.run.artifacts import ARTIFACT_KINDS
        from augbench.data.core import READERS
        kinds, readers = ARTIFACT_KINDS.names(), READERS.names()
        heavy = [m for m in ("augbench.diffusion.inversion", "augbench.diffusion.concepts.kinds",
                             "augbench.data.readers", "augbench.world.datasets", "diffusers") if m in sys.modules]
        kind = ARTIFACT_KINDS.get("ddim_inversion")
        print(json.dumps({"kinds": kinds, "readers": readers, "heavy": heavy, "kind": [kind.name, kind.version]}))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"class_mean", "ti", "lora_ti", "ddim_inversion", "suffixes"} <= set(data["kinds"])
    assert {"cub", "waterbirds", "world"} <= set(data["readers"])
    assert data["heavy"] == [] and data["kind"] == ["ddim_inversion", 1]

    from augbench.contract import ConfigError
    from augbench.data.core import DataError, _reader
    from augbench.diffusion.schedulers import SCHEDULERS, make_scheduler
    from augbench.run.artifacts import ArtifactError, ArtifactKind, _kind, register_artifact_kind
    from augbench.run.profiles import get_profile
    from augbench.training.recipes import get_recipe

    with pytest.raises(ConfigError, match=r"unknown artifact kind 'lora_tii' \(did you mean 'lora_ti'\?\)"):
        _kind("lora_tii")
    with pytest.raises(ArtifactError, match="'class_mean' is provided twice"):
        register_artifact_kind(ArtifactKind("class_mean", lambda *a: None))
    with pytest.raises(DataError, match=r"unknown dataset reader 'cubb' \(did you mean 'cub'\?\)"):
        _reader("cubb")
    with pytest.raises(ValueError, match=r"unknown profile 'sd5' \(did you mean 'sd15'\?\)"):
        get_profile("sd5", environ={})
    with pytest.raises(ValueError, match=r"unknown recipe 'embeded' \(did you mean 'embedded'\?\)"):
        get_recipe("embeded")
    with pytest.raises(ValueError, match=r"unknown scheduler 'dim' \(did you mean 'ddim'\?\)"):
        make_scheduler("dim", {})
    assert SCHEDULERS["dpmsolver++"].config["algorithm_type"] == "dpmsolver++"


def test_augbench_testing_imports_without_pytest_or_torch():
    code = ("import sys; import augbench.testing as t; "
            "print(sorted(m for m in ('pytest', 'torch') if m in sys.modules), 'TinySource' in dir(t))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["[]", "True"]

"""Protocols are objects: every registered protocol passes the contract mixin, a third-party protocol is
discovered through its entry point, and bad protocol input is one clear line (issue 22 item 1)."""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import sys
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from augbench.plugins import PluginLoadError, UnknownNameError
from augbench.protocols import PROTOCOLS, get_protocol, protocol_names, protocol_registry
from augbench.protocols.few_shot import FewShot
from augbench.testing.protocols import ProtocolTesterMixin, toy_source

PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"

#: what the contract tests of each built-in use: parameters, values that must be refused, datasets
OVERRIDES = {
    "few_shot": {"params": {"shots": [5, 1]}, "bad_params": {"shots": [0]}},
    "long_tail": {"params": {"imbalance_factors": [100, 10], "class_group_thresholds": {"toybirds": [20, 5]}},
                  "bad_params": {"imbalance_factors": [30], "class_group_thresholds": {"toybirds": [2, 9]}}},
    "waterbirds": {"test_dataset": "toywaterbirds", "bad_params": {"shots": []}},
    "full_data": {"bad_params": {"val_fraction": 1.5}},
}

# timm's "every registered model": one test class per registered protocol, built-ins and installed plugins
for _name in protocol_names():
    globals()[f"TestProtocol_{_name}"] = type(f"TestProtocol_{_name}", (ProtocolTesterMixin,),
                                              {"protocol_name": _name, **OVERRIDES.get(_name, {})})


# --- a third-party protocol ---------------------------------------------------------------------------

def _plugin_distribution(entry_points: dict[str, str] | None = None, name: str = "augbench-plugin-example"):
    """What importlib.metadata reports once the plugin package is pip-installed (its own pyproject's
    ``augbench.protocols`` entry points, unless ``entry_points`` replaces them)."""
    meta = tomllib.loads((PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    eps = meta["entry-points"]["augbench.protocols"] if entry_points is None else entry_points

    class Distribution:
        metadata = {"Name": name}
        version = meta["version"]
        entry_points = [importlib_metadata.EntryPoint(k, v, "augbench.protocols") for k, v in eps.items()]

    return Distribution()


@contextmanager
def _plugin_importable():
    """The plugin's ``src/`` on ``sys.path`` (as site-packages after ``pip install``), removed afterwards."""
    path = str(PLUGIN / "src")
    sys.path.insert(0, path)
    try:
        yield
    finally:
        sys.path.remove(path)
        for module in [m for m in sys.modules if m.split(".")[0] == "augbench_plugin_example"]:
            del sys.modules[module]


class TestPluginProtocol(ProtocolTesterMixin):
    """The plugin's ``first_shots`` protocol, discovered through its entry point, passes the same contract."""

    protocol_name = "first_shots"
    registry = protocol_registry(distributions=lambda: [_plugin_distribution()])
    bad_params: ClassVar = {"shots": [0]}
    expect_randomness = False  # the first k images: the seed changes nothing

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _on_path(cls):
        with _plugin_importable():
            yield

    def test_plugin_is_discovered_next_to_the_builtins(self):
        entries = {e.name: (e.distribution, e.value) for e in self.registry.entries()}
        assert entries["first_shots"] == ("augbench-plugin-example", "augbench_plugin_example.protocols:FirstShots")
        assert entries["few_shot"][0] == "augbench" and set(protocol_names()) < set(entries)


def test_a_plugin_protocol_that_fails_to_import_names_entry_point_and_distribution():
    registry = protocol_registry(distributions=lambda: [
        _plugin_distribution({"broken": "no_such_module_xyz:Protocol"}, name="augbench-broken")])
    assert "broken" in registry.names()  # listing imports nothing
    with pytest.raises(PluginLoadError) as info:
        registry.get("broken")
    message = str(info.value)
    assert "'broken'" in message and "'augbench-broken'" in message and "augbench.protocols" in message
    assert "\n" not in message


def test_an_entry_point_must_name_a_protocol_registered_under_its_own_name():
    with _plugin_importable():
        registry = protocol_registry(distributions=lambda: [_plugin_distribution(
            {"other_name": "augbench_plugin_example.protocols:FirstShots", "not_a_protocol": "pathlib:Path"})])
        with pytest.raises(PluginLoadError, match="must equal the entry-point name 'other_name'"):
            registry.get("other_name")
        with pytest.raises(PluginLoadError, match="subclass of augbench.protocols.base.Protocol"):
            registry.get("not_a_protocol")


def test_an_unknown_protocol_gets_a_suggestion():
    with pytest.raises(UnknownNameError, match=r"unknown protocol 'long_tial' \(did you mean 'long_tail'\?\)"):
        get_protocol("long_tial")


# --- one behaviour for runs and `data subset` -------------------------------------------------------

def test_waterbirds_draws_the_few_shot_training_subset_and_the_cards_test_split():
    """METHODS_SPEC §6.3: train on the k-shot subset the few-shot protocol draws; test on the Waterbirds
    test split. Runs and `augbench data subset` both call Waterbirds.draw."""
    birds, water = toy_source("toybirds"), toy_source("toywaterbirds")
    draw = get_protocol("waterbirds")().draw(birds, 3, {"shots": 5}, test_source=water)
    assert draw.train.manifest_hash == FewShot().draw(birds, 3, {"shots": 5}).train.manifest_hash
    assert (draw.test.subset.dataset, draw.test.subset.split, draw.test.whole_split) == ("toywaterbirds", "test", True)
    assert sum(draw.facts["test_groups"].values()) == len(draw.test.subset.samples)
    assert list(draw.parts()) == ["train", "test"]


def test_long_tail_thresholds_come_from_the_suite_then_the_card():
    """METHODS_SPEC §5.4 (CUB 20 / 5, Flowers 30 / 10): a suite's class_group_thresholds for the dataset,
    else the card's [protocols.long_tail], else CUB's."""
    birds = toy_source("toybirds")
    LongTail = get_protocol("long_tail")
    assert LongTail().thresholds_of(birds) == {"many_above": 20, "few_below": 5}
    assert LongTail(class_group_thresholds={"toybirds": (8, 2)}).thresholds_of(birds) == {"many_above": 8,
                                                                                         "few_below": 2}
    subset = LongTail().draw_training(birds, 0, {"imbalance_factor": 100})[0]
    counts = subset.class_counts(birds.num_classes)
    groups = LongTail(class_group_thresholds={"toybirds": (8, 2)}).class_groups(subset, birds)
    assert groups["many"] == [c for c, n in enumerate(counts) if n > 8]


@dataclass(frozen=True)
class Ways(FewShot):
    """An in-process protocol with a parameter no built-in has (``ways``), for the suite tests."""

    name: ClassVar[str] = "ways_protocol"
    ways: int = 2


def test_a_plugin_protocols_own_parameter_reaches_its_object_from_the_suite(tmp_path):
    from augbench.run.suites import SuiteError, load_suite

    path = tmp_path / "s.toml"
    head = '[suite]\nprotocol = "ways_protocol"\ndatasets = ["toybirds"]\nmethods = ["original"]\nseeds = [0]\n'
    PROTOCOLS.register("ways_protocol", Ways)
    try:
        path.write_text(head + "ways = 7\nshots = [2]\n")
        suite = load_suite(path)
        assert suite.protocol_params == {"ways": 7} and suite.protocol_object() == Ways(shots=(2,), ways=7)
        path.write_text(head + "wyas = 7\n")
        with pytest.raises(SuiteError, match=r"unknown key in \[suite\] 'wyas' \(did you mean 'ways'\?\)"):
            load_suite(path)
    finally:
        PROTOCOLS.unregister("ways_protocol")

"""Registry: lazy entry points, duplicates, did-you-mean, presets, compositions (benchmark/registry.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest
import torch

from augbench.contract import BatchMethod, ConfigError, MethodCard, MethodConfig, OfflineMethod, param
from augbench.registry import (
    Composition,
    DuplicateMethodError,
    Registry,
    RegistryError,
    UnknownMethodError,
    default_registry,
    parse_method_id,
)

BUILTINS = {"original", "cutmix", "mixup", "sd_random"}


@dataclass(frozen=True)
class _FlipConfig(MethodConfig):
    p: float = param(0.5, "flip probability", paper="P: 0.25")
    axes: tuple[int, ...] = param((3,), "axes to flip")


class _Flip(BatchMethod):
    family = "flip"
    Config = _FlipConfig
    presets: ClassVar[dict] = {"always": {"p": 1.0}, "vertical": {"axes": (2,)}}
    card = MethodCard(summary="flip images", labels="unchanged", cost="none")

    def make_params(self, batch_size, image_hw, generator):
        return torch.rand(batch_size, generator=generator) < self.config.p

    def apply(self, images, targets, params):
        out = images.clone()
        out[params] = images[params].flip(self.config.axes)
        return out, targets


class _Nothing(OfflineMethod):
    family = "nothing"
    card = MethodCard(summary="generates nothing")

    def plan(self, subset, budget, seed, *, ctx=None):
        return []

    def generate(self, requests, ctx):
        return []


class _FakeDist:
    def __init__(self, name, eps, version="1.0"):
        self.metadata = {"Name": name}
        self.version = version
        self.entry_points = [EntryPoint(n, v, "augbench.methods") for n, v in eps.items()] + [
            EntryPoint("other", "x:y", "console_scripts")
        ]


def _fake(*dists):
    return Registry(distributions=lambda: list(dists))


# --- in-process registration ---------------------------------------------------------------------


def test_fresh_registry_register_and_create():
    reg = Registry(discover=False)
    assert reg.names() == []
    reg.register("flip", _Flip)
    reg.register("nothing", _Nothing)
    assert reg.names() == ["flip", "nothing"]
    assert reg.ids() == ["flip", "flip.always", "flip.vertical", "nothing"]
    m = reg.create("flip.vertical", p=0.1)
    assert isinstance(m, _Flip) and m.id == "flip.vertical" and m.preset == "vertical"
    assert m.config == _FlipConfig(p=0.1, axes=(2,))
    assert reg.create("flip", p=None).config.p == 0.5  # None means "default" (timm factory rule)
    entry = reg.entry("flip")
    assert entry.distribution == "<in-process>" and entry.value.endswith(":_Flip")


def test_in_process_duplicate_raises_unless_replace():
    reg = Registry(discover=False)
    reg.register("flip", _Flip)
    with pytest.raises(DuplicateMethodError, match="flip"):
        reg.register("flip", _Flip)
    reg.register("flip", _Nothing, replace=True)
    assert reg.get_class("flip") is _Nothing


def test_lazy_string_target_and_type_check():
    reg = Registry(discover=False)
    reg.register("lazy", "augbench.methods.mixing:CutMix", distribution="somepkg")
    reg.register("bad", "augbench.run.hashing:content_hash", distribution="badpkg")
    reg.register("missing", "no_such_module_xyz:Thing", distribution="ghostpkg")
    assert reg.get_class("lazy").__name__ == "CutMix"
    with pytest.raises(RegistryError, match="badpkg.*not a BatchMethod or OfflineMethod"):
        reg.get_class("bad")
    with pytest.raises(RegistryError, match="ghostpkg.*no_such_module_xyz"):
        reg.get_class("missing")


def test_names_must_be_snake_case():
    reg = Registry(discover=False)
    with pytest.raises(RegistryError, match="snake_case"):
        reg.register("Bad-Name", _Flip)


# --- entry points --------------------------------------------------------------------------------


def test_entry_points_from_fake_distributions():
    reg = _fake(
        _FakeDist("pkg-a", {"cutmix": "augbench.methods.mixing:CutMix"}, "2.0"),
        _FakeDist("pkg-b", {"mixup": "augbench.methods.mixing:MixUp"}),
    )
    assert reg.names() == ["cutmix", "mixup"]
    assert reg.entry("cutmix").distribution == "pkg-a" and reg.entry("cutmix").version == "2.0"
    assert reg.describe("mixup")["distribution"] == "pkg-b"


def test_duplicate_across_distributions_names_both():
    reg = _fake(
        _FakeDist("augbench", {"cutmix": "augbench.methods.mixing:CutMix"}),
        _FakeDist("fancy-cutmix", {"cutmix": "fancy.mod:CutMix"}),
    )
    with pytest.raises(DuplicateMethodError) as err:
        reg.names()
    msg = str(err.value)
    assert "'augbench'" in msg and "'fancy-cutmix'" in msg and "'cutmix'" in msg


def test_same_distribution_seen_twice_is_not_a_duplicate():
    # e.g. an editable install plus a build folder on sys.path: importlib keeps the first.
    reg = _fake(
        _FakeDist("augbench", {"cutmix": "augbench.methods.mixing:CutMix"}),
        _FakeDist("Augbench", {"cutmix": "augbench.methods.mixing:CutMix"}),
    )
    assert reg.names() == ["cutmix"]


def test_builtins_discovered_through_entry_points():
    reg = Registry()
    names = set(reg.names())
    assert BUILTINS <= names
    for name in BUILTINS:
        assert reg.entry(name).distribution == "augbench"
    assert reg.entry("cutmix").value == "augbench.methods.mixing:CutMix"
    assert default_registry() is default_registry()


def test_listing_imports_no_method_module_and_no_diffusers():
    code = textwrap.dedent(
        """
        import json, sys
        from augbench.registry import Registry
        reg = Registry()
        names = reg.names()
        listed = {m: (m in sys.modules) for m in ("diffusers", "transformers", "augbench.methods.mixing", "augbench.methods.sd_random")}
        described = reg.describe_all(include_presets=True)
        after = {m: (m in sys.modules) for m in ("diffusers", "transformers", "augbench.methods.mixing", "augbench.methods.sd_random")}
        print(json.dumps({"names": names, "listed": listed, "after": after, "n": len(described)}))
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout.strip().splitlines()[-1])
    assert BUILTINS <= set(data["names"])
    assert not any(data["listed"].values()), data["listed"]
    # describing every built-in (which imports the method modules) still imports no diffusers
    assert data["after"]["augbench.methods.sd_random"] and data["after"]["augbench.methods.mixing"]
    assert not data["after"]["diffusers"] and not data["after"]["transformers"]
    assert data["n"] >= len(BUILTINS)


# --- ids, did you mean, presets ------------------------------------------------------------------


def test_parse_method_id():
    assert parse_method_id("cutmix") == [("cutmix", None)]
    assert parse_method_id("cutmix.diffii_code") == [("cutmix", "diffii_code")]
    assert parse_method_id("sd_random.p1_article+mixup") == [("sd_random", "p1_article"), ("mixup", None)]
    for bad in ("", "CutMix", "a..b", "a.b.c", "+cutmix", "cut mix", "cutmix.", "cutmix.Paper"):
        with pytest.raises(RegistryError, match="malformed"):
            parse_method_id(bad)


def test_one_id_parser_for_families_and_formatting():
    from augbench.method_ids import format_method_id, method_family

    for method_id in ("cutmix", "cutmix.diffii_code", "sd_random.p1_article+mixup"):
        assert format_method_id(parse_method_id(method_id)) == method_id
    assert format_method_id(parse_method_id(" sd_random + cutmix ")) == "sd_random+cutmix"
    assert method_family("diff_mix.uniform_strength") == "diff_mix"
    assert method_family("diff_ii(split_ratio=0.1)+cutmix") == "diff_ii"  # a suite entry's parameters
    with pytest.raises(ValueError, match="malformed"):  # also a ValueError, for config-style callers
        method_family("Diff_II")


def test_unknown_family_did_you_mean():
    reg = Registry()
    with pytest.raises(UnknownMethodError, match=r"unknown method 'cutmx' \(did you mean 'cutmix'\?\)\. Known: "):
        reg.create("cutmx")
    with pytest.raises(KeyError):  # also a KeyError, for dict-like callers
        reg.get_class("sd_randon")
    assert "cutmx" not in reg and "cutmix" in reg and "cutmix.diffii_code" in reg


def test_unknown_preset_did_you_mean():
    reg = Registry()
    with pytest.raises(UnknownMethodError, match=r"unknown preset 'cutmix.difii_code' \(did you mean 'cutmix\.diffii_code'\?\)"):
        reg.create("cutmix.difii_code")


def test_unknown_param_did_you_mean():
    with pytest.raises(ConfigError, match=r"'probability' \(did you mean 'prob'\?\)"):
        Registry().create("cutmix", probability=0.2)


def test_presets_overlay_defaults():
    reg = Registry()
    assert reg.create("cutmix.noisecutmix_paper").config.prob == 0.5
    d = reg.create("cutmix.diffii_code").config
    assert (d.beta, d.prob, d.decision, d.partner) == (1.0, 0.3, "per_sample", "uniform")
    m = reg.create("mixup.diffii_code").config
    assert (m.alpha, m.prob, m.decision, m.partner) == (1.0, 0.3, "per_batch", "permutation")
    p1 = reg.create("mixup.noisecutmix_paper").config
    assert (p1.alpha, p1.prob, p1.decision) == (0.2, 0.5, "per_sample")
    dm = reg.create("mixup.dm_code").config
    assert (dm.alpha, dm.prob, dm.decision) == (1.0, 0.5, "per_batch")
    assert reg.create("cutmix.dm_code", prob=0.9).config.prob == 0.9  # overrides win over presets
    assert {"cutmix.noisecutmix_paper", "cutmix.diffii_code", "cutmix.dm_code"} <= set(reg.ids())


def test_describe():
    info = Registry().describe("cutmix.diffii_code")
    assert info["id"] == "cutmix.diffii_code" and info["family"] == "cutmix" and info["preset"] == "diffii_code"
    assert info["kind"] == "batch" and info["distribution"] == "augbench"
    assert info["summary"].startswith("CutMix")
    params = {p["name"]: p for p in info["params"]}
    assert params["prob"]["default"] == 0.3  # preset applied
    assert params["prob"]["help"] and "0.3" in params["prob"]["paper"]
    assert params["decision"]["choices"] == ["per_sample", "per_batch"]
    assert "noisecutmix_paper" in info["presets"]
    assert info["card"]["labels"] and info["card"]["cost"]
    sd = Registry().describe("sd_random")
    assert sd["kind"] == "offline"
    json.dumps(Registry().describe_all(include_presets=True))  # JSON-ready for `augbench methods --json`


# --- compositions --------------------------------------------------------------------------------


def test_composition():
    reg = Registry()
    comp = reg.create("sd_random+cutmix")
    assert isinstance(comp, Composition) and comp.kind == "composition"
    assert comp.offline.id == "sd_random" and comp.batch.id == "cutmix" and comp.id == "sd_random+cutmix"
    comp = reg.create("sd_random.p1_article+mixup.noisecutmix_paper", {"mixup": {"prob": 1.0}})
    assert comp.offline.config.prompt_template == "a photo of a {name}"
    assert comp.batch.config.prob == 1.0 and comp.batch.config.alpha == 0.2
    # order does not matter
    assert reg.create("mixup+sd_random").offline.id == "sd_random"
    info = reg.describe("sd_random+cutmix")
    assert info["kind"] == "composition" and [p["id"] for p in info["parts"]] == ["sd_random", "cutmix"]
    assert comp.provenance()["batch"]["params"]["prob"] == 1.0


def test_invalid_compositions():
    reg = Registry()
    with pytest.raises(RegistryError, match="exactly one offline method and one batch mixer"):
        reg.create("cutmix+mixup")
    with pytest.raises(RegistryError, match="exactly one offline"):
        reg.create("sd_random+cutmix+mixup")
    with pytest.raises(ConfigError, match="keyed by family"):
        reg.create("sd_random+cutmix", {"prob": 0.1})
    with pytest.raises(UnknownMethodError, match="did you mean 'cutmix'"):
        reg.create("sd_random+cutmux")


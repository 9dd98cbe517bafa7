"""Shared test fixtures."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

TOYBIRDS = Path(__file__).resolve().parent.parent / "datasets" / "toybirds.toml"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One shared artifact store for the whole test session (as one user's ~/.cache/augbench)."""
    return tmp_path_factory.mktemp("augbench-cache")


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch, shared_cache):
    """Tests never see the developer's data root, extra card folders or artifact cache."""
    monkeypatch.delenv("AUGBENCH_DATA", raising=False)
    monkeypatch.delenv("AUGBENCH_DATASETS", raising=False)
    monkeypatch.setenv("AUGBENCH_CACHE", str(shared_cache))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP hand-off costs (and stalls on a shared 2-core box)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def mini(tmp_path_factory):
    """A 4-species world card and a 2-method suite small enough for CI."""
    root = tmp_path_factory.mktemp("mini")
    full = tomllib.loads(TOYBIRDS.read_text())
    species = full["world"]["species"][:4]
    names = ", ".join(json.dumps(s["name"]) for s in species)
    tables = "\n\n".join("[[world.species]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in s.items())
                         for s in species)
    cards = root / "cards"
    cards.mkdir()
    (cards / "minibirds.toml").write_text(f"""
[dataset]
name = "mini toybirds"
kind = "embedded"
reader = "world"
meta = "bird"
[splits]
train = 32
test = 32
[classes]
names = [{names}]
[world]
mode = "species"
image_size = 64
[world.splits.train]
per_class = 8
habitat_consistency = 0.9
[world.splits.test]
per_class = 8
habitat_consistency = 0.9

{tables}
""")
    suite = root / "mini_suite.toml"
    suite.write_text("""
[suite]
name = "mini_suite"
description = "test suite"
protocol = "few_shot"
datasets = ["minibirds"]
shots = [5]
seeds = [0]
methods = ["original", "sd_random+cutmix"]
recipe = "embedded"
epochs = 1
selection = "val_split"
val_fraction = 0.2
[training]
replacement_mode = "concat"
[methods_params.sd_random]
num_inference_steps = 2
[methods_params.cutmix]
preset = "noisecutmix_paper"
""")
    return root, cards, suite

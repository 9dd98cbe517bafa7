"""Method contract pieces: configs, presets, requests, samples, contexts (benchmark/contract/)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from augbench.contract import (
    PROCESS_PIPELINES,
    BatchMethod,
    ConfigError,
    GenerationRequest,
    MethodCard,
    MethodConfig,
    MethodContext,
    PipelineCache,
    SyntheticSample,
    as_soft_targets,
    param,
    request_seed,
)
from augbench.run.seeding import derive_seed
from augbench.testing import TinySource, tiny_profile


@dataclass(frozen=True)
class _Cfg(MethodConfig):
    alpha: float = param(1.0, "alpha", paper="0.2 [P1]")
    sizes: tuple[int, ...] = param((1, 2), "sizes")
    mode: str = param("a", "mode", choices=("a", "b"))
    name: str | None = param(None, "optional")


class _M(BatchMethod):
    family = "m"
    Config = _Cfg
    presets: ClassVar[dict] = {"big": {"sizes": [4, 8], "mode": "b"}}
    card = MethodCard(summary="test method")


def test_config_round_trip_restores_tuples_and_validates():
    cfg = _Cfg(alpha=0.5, sizes=(3,), mode="b", name="x")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["sizes"] == [3]
    assert _Cfg.from_dict(data) == cfg
    assert _Cfg.from_dict({"alpha": None}) == _Cfg()  # None = default
    with pytest.raises(ConfigError, match="'alpah' \\(did you mean 'alpha'\\?\\)"):
        _Cfg.from_dict({"alpah": 1})
    with pytest.raises(ConfigError, match="expected one of 'a', 'b'"):
        _Cfg.from_dict({"mode": "c"})
    assert cfg.replace(alpha=2.0).alpha == 2.0 and cfg.replace(alpha=None).alpha == 0.5


def test_describe_params_metadata():
    params = {p["name"]: p for p in _Cfg.describe_params()}
    assert params["alpha"] == {
        "name": "alpha", "type": "float", "default": 1.0, "help": "alpha", "paper": "0.2 [P1]", "choices": None
    }
    assert params["sizes"]["default"] == [1, 2] and params["mode"]["choices"] == ["a", "b"]


def test_presets_and_ids():
    m = _M(preset="big", alpha=3.0)
    assert m.id == "m.big" and m.config == _Cfg(alpha=3.0, sizes=(4, 8), mode="b")
    assert _M().id == "m" and _M(method_id="m.custom").id == "m.custom"
    assert m.provenance() == {"method": "m.big", "preset": "big", "params": m.config.to_dict()}
    with pytest.raises(ConfigError, match=r"no preset 'bgi' \(did you mean 'big'\?\)\. Presets: "):
        _M(preset="bgi")
    with pytest.raises(ConfigError, match="either a config or preset"):
        _M(config=_Cfg(), alpha=1.0)


def test_as_soft_targets():
    assert torch.equal(as_soft_targets(torch.tensor([1, 0]), 3), torch.tensor([[0.0, 1, 0], [1, 0, 0]]))
    soft = torch.tensor([[0.2, 0.8]])
    assert as_soft_targets(soft) is soft
    with pytest.raises(ValueError, match="num_classes"):
        as_soft_targets(torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="probability vectors"):
        as_soft_targets(torch.zeros(2, 2, 2))


def test_request_seed_is_derive_seed_of_run_family_index():
    assert request_seed(3, "sd_random", 5) == derive_seed(3, "sd_random", 5)
    assert request_seed(3, "sd_random", 5) != request_seed(3, "diff_gen", 5)
    # presets of one family share request seeds: ablation rows are paired comparisons
    from augbench.registry import default_registry

    reg = default_registry()
    assert reg.create("sd_random").request_seed(3, 5) == reg.create("sd_random.p1_article").request_seed(3, 5)


def test_generation_request_and_sample():
    r = GenerationRequest(index=2, seed=9, target_class=1, source_ids=("a",), source_classes=(0,), lam=0.3)
    assert json.loads(json.dumps(r.to_dict()))["source_ids"] == ["a"]
    img = np.zeros((4, 5, 3), dtype=np.uint8)
    s = SyntheticSample(Image.fromarray(img), np.array([0.0, 1.0]), {"request_index": 2})
    assert s.image_array().shape == (4, 5, 3) and s.request_index == 2
    with pytest.raises(ValueError, match="uint8"):
        SyntheticSample(img.astype(np.float32), np.array([1.0]), {}).image_array()


def test_method_context_and_pipeline_cache(tmp_path):
    src = TinySource()
    ctx = MethodContext(profile=tiny_profile(tmp_path), source=src, cache_dir=str(tmp_path))
    assert ctx.card is src.card and ctx.num_classes == 3 and ctx.pipelines is PROCESS_PIPELINES
    with pytest.raises(ValueError, match="batch_size"):
        MethodContext(profile=tiny_profile(tmp_path), batch_size=0)
    with pytest.raises(ValueError, match="dataset card"):
        MethodContext(profile=tiny_profile(tmp_path)).require_card()
    cache, calls = PipelineCache(), []
    assert cache.get("k", lambda: calls.append(1) or "pipe") == "pipe"
    assert cache.get("k", lambda: calls.append(1) or "other") == "pipe"
    assert calls == [1] and "k" in cache and len(cache) == 1


def test_tiny_source_is_deterministic():
    src = TinySource(per_class={"train": [2, 1, 0]})
    assert [s.image_id for s in src.samples("train")] == ["train/0/0", "train/0/1", "train/1/0"]
    a, b = src.load_image("train/0/1"), TinySource().load_image("train/0/1")
    assert np.array_equal(np.asarray(a), np.asarray(b)) and a.size == (16, 16)


def test_one_one_hot_and_one_list_of_replacement_modes_shared_with_training():
    from augbench.contract import REPLACEMENT_MODES, one_hot
    from augbench.diffusion.cache import PipelineCache as DiffusionSideCache
    from augbench.training import losses, replacement

    assert losses.one_hot is one_hot and replacement.REPLACEMENT_MODES is REPLACEMENT_MODES
    assert PipelineCache is DiffusionSideCache  # the warm-model cache lives on the diffusion side
    label = one_hot(2, 4)  # a SyntheticSample's hard label
    assert label.dtype == np.float64 and label.tolist() == [0.0, 0.0, 1.0, 0.0]
    targets = one_hot(torch.tensor([1, 0]), 3)  # training targets
    assert targets.dtype == torch.float32 and targets.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]

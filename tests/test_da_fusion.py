"""DA-Fusion specifics (METHODS_SPEC §3.6): strengths drawn per edit, own-edits training, the SD v1.4 base."""

from __future__ import annotations

import pytest

from augbench.contract import ConfigError, MethodContext, PipelineCache
from augbench.registry import default_registry
from augbench.run.artifacts import build_artifacts
from augbench.run.profiles import get_profile
from augbench.run.store import Store
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile, tiny_subset


def test_every_real_image_gets_m_edits_with_strengths_from_the_four_values():
    method = default_registry().create("da_fusion", {"edits_per_image": 3})
    subset = tiny_subset(TinySource(per_class={"train": [3, 2, 1]}))
    requests = method.plan(subset, None, seed=0)
    assert len(requests) == 3 * len(subset.image_ids)
    assert [r.source_ids[0] for r in requests[:6]] == [subset.image_ids[0]] * 3 + [subset.image_ids[1]] * 3
    assert {r.strength for r in requests} <= {0.25, 0.5, 0.75, 1.0} and len({r.strength for r in requests}) > 1
    assert requests == method.plan(subset, None, seed=0)  # strengths come from the request seeds
    assert method.card.training.replacement_mode == "own_edits" and method.card.training.labels == "hard"
    single = default_registry().create("da_fusion.single_strength").plan(subset, None, seed=0)
    assert {r.strength for r in single} == {0.5}


def test_daf_sd14_trains_tokens_on_the_profiles_sd14(tmp_path):
    source = TinySource(per_class={"train": [2, 2, 2]})
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline(), image_size=16), source=source,
                        pipelines=PipelineCache())
    method = default_registry().create("da_fusion.daf_sd14")
    subset = tiny_subset(source)
    (spec,) = method.artifacts(subset, ctx)
    assert spec.base_model == str(cached_tiny_sd_pipeline(seed=1)) != ctx.profile.pipeline
    artifact = build_artifacts([spec], subset, ctx, Store(tmp_path))["ti"]
    assert artifact.base_model == spec.base_model
    default = default_registry().create("da_fusion").artifacts(subset, ctx)[0]
    assert default.base_model is None


def test_daf_sd14_on_a_profile_without_sd14_says_where_to_get_it():
    ctx = MethodContext(profile=get_profile("embedded"))
    with pytest.raises(ConfigError, match="AUGBENCH_SD15_SD14"):
        default_registry().create("da_fusion.daf_sd14").base_pipeline(ctx)
    assert get_profile("sd15", {"AUGBENCH_SD15_SD14": "my-org/sd14"}).extra["sd14_pipeline"] == "my-org/sd14"

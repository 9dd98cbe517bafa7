"""The ``ddim_inversion`` artifact kind (METHODS_SPEC §3.10.1) and ordered artifact builds with dependencies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from augbench.contract import ArtifactSpec, MethodContext, PipelineCache
from augbench.data.core import Subset
from augbench.diffusion.inversion import INVERSION_KIND, inversion_recipe, load_inversion_pool
from augbench.registry import default_registry
from augbench.run.artifacts import (
    ARTIFACT_KINDS,
    ArtifactError,
    ArtifactKind,
    build_artifacts,
    register_artifact_kind,
)
from augbench.run.store import Store
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    source = TinySource(per_class={"train": [3, 2, 1]})
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=source, batch_size=4,
                        pipelines=PipelineCache())
    subset = Subset(source.card.id, "train", "few_shot", {"shots": 5, "seed": 0}, tuple(source.samples("train")))
    return ctx, subset, Store(tmp_path_factory.mktemp("inversion-store"))


def _artifacts(method_id: str, setting, **params):
    ctx, subset, store = setting
    method = default_registry().create(method_id, {"suffix_source": "world", **params})
    return build_artifacts(method.artifacts(subset, ctx), subset, ctx, store)


def test_the_pool_is_built_once_and_shared_by_the_presets(setting):
    first = _artifacts("diff_ii", setting)
    # built in declared order: the suffixes first, so a captioner that cannot load fails before concept learning
    assert list(first) == ["suffixes", "lora_ti", INVERSION_KIND]
    assert not first[INVERSION_KIND].reused
    for preset in ("diff_ii.cl_si", "diff_ii.cl_li_td", "diff_ii.jpeg_q75"):
        again = _artifacts(preset, setting)
        assert again[INVERSION_KIND].reused and again[INVERSION_KIND].key == first[INVERSION_KIND].key
    assert INVERSION_KIND not in _artifacts("diff_ii.cl_td", setting)  # no interpolation, no pool


def test_the_pool_key_follows_the_concepts(setting):
    base = _artifacts("diff_ii", setting)[INVERSION_KIND]
    retrained = _artifacts("diff_ii", setting, concept_steps=4)
    assert retrained[INVERSION_KIND].key != base.key
    assert retrained[INVERSION_KIND].recipe["requires"] == {"lora_ti": retrained["lora_ti"].key}
    assert retrained[INVERSION_KIND].recipe["concept_recipe"]["steps"] == 4
    vanilla = inversion_recipe(setting[0].profile, None)
    assert vanilla["requires"] == [] and vanilla["prompt"] == "a photo of a {name} {meta}"


def test_the_pool_is_built_at_the_methods_image_size_and_keyed_by_it(setting):
    ctx, _, _ = setting
    assert ctx.profile.image_size == 32
    base = _artifacts("diff_ii", setting)[INVERSION_KIND]
    larger = _artifacts("diff_ii", setting, image_size=48)[INVERSION_KIND]
    assert base.recipe["size"] == 32 and larger.recipe["size"] == 48 and larger.key != base.key
    # 48 px through the tiny VAE (factor 2): 24 x 24 latents; the profile's 32 px give 16 x 16
    assert load_inversion_pool(larger).latents.shape[-2:] == (24, 24)
    assert load_inversion_pool(base).latents.shape[-2:] == (16, 16)
    assert inversion_recipe(ctx.profile, None, image_size=None)["size"] == 32  # None: the profile's


def test_the_pool_holds_every_training_image_inverted_with_its_class_prompt(setting):
    from augbench.diffusion import pipelines as diffusion
    from augbench.diffusion.concepts import concept_prompt

    ctx, subset, _ = setting
    built = _artifacts("diff_ii", setting)
    pool = load_inversion_pool(built[INVERSION_KIND])
    assert pool.image_ids == tuple(subset.image_ids) and pool.labels == tuple(subset.labels)
    assert pool.latents.shape == (6, 4, 16, 16) and pool.latents.dtype == torch.float32
    assert pool.class_rows(1) == [3, 4]
    # row 4 equals a direct DDIM inversion of that image with <class_1>'s prompt, lora_ti loaded
    warm = diffusion.load_warm_pipeline(ctx, artifact=built["lora_ti"])
    prompt = concept_prompt(warm, ctx.card, 1, "a photo of a {token} {meta}")
    image = np.asarray(ctx.source.load_image(subset.image_ids[4]).convert("RGB"))
    direct = diffusion.ddim_invert(warm.pipe, [image], warm.embeddings.get([prompt]),
                                   num_inference_steps=built[INVERSION_KIND].recipe["steps"], size=32)
    torch.testing.assert_close(pool.latents[4:5], direct.float(), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(pool.latents[3], pool.latents[4])


def test_a_dependency_must_be_declared_first(setting):
    ctx, subset, store = setting
    spec = ArtifactSpec(INVERSION_KIND, inversion_recipe(ctx.profile, "lora_ti", {"steps": 3}))
    with pytest.raises(ArtifactError, match="requires 'lora_ti', which must be declared before it"):
        build_artifacts([spec], subset, ctx, store)


def test_later_builders_see_earlier_artifacts(setting, tmp_path):
    ctx, subset, _ = setting
    seen = {}

    def build(spec, train_part, build_ctx, folder):
        seen.update(build_ctx.artifacts)
        (folder / "copy.npy").write_bytes((build_ctx.artifacts["class_mean"].folder / "class_mean.npy").read_bytes())

    register_artifact_kind(ArtifactKind("test_needs_mean", build), replace=True)
    try:
        specs = [ArtifactSpec("class_mean", {"size": 4}), ArtifactSpec("test_needs_mean", {"requires": ["class_mean"]})]
        out = build_artifacts(specs, subset, ctx, Store(tmp_path))
    finally:
        ARTIFACT_KINDS.pop("test_needs_mean", None)
    assert list(seen) == ["class_mean"] and "class_mean" not in ctx.artifacts  # the caller's ctx is untouched
    assert out["test_needs_mean"].recipe["requires"] == {"class_mean": out["class_mean"].key}

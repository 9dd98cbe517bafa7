"""GIF-SD (methods/gif.py): the contract, the L-inf budget, the guidance objective, groups and labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from augbench.contract import ConfigError, MethodContext, PipelineCache, one_hot
from augbench.methods import gif as gif_module
from augbench.registry import default_registry
from augbench.run.seeding import make_generator
from augbench.testing import (
    OfflineMethodTesterMixin,
    TinySource,
    cached_tiny_sd_pipeline,
    tiny_profile,
    tiny_subset,
)

STEPS = 4  # tiny DDIM steps (the contract params); strength 0.9 runs 3 of them


class TestGIFContract(OfflineMethodTesterMixin):
    method_id = "gif"


@pytest.fixture(scope="module")
def ctx():
    return MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=TinySource(per_class={"train": [3, 2, 1]}),
                         batch_size=4, pipelines=PipelineCache())


def _gif(**params):
    return default_registry().create("gif", {"num_inference_steps": STEPS, **params})


def _plain_img2img(ctx, requests):
    """diffusers-semantics img2img (augbench.diffusion.pipelines.image_to_image) of the requests, unperturbed."""
    from augbench.diffusion import pipelines as diffusion
    from augbench.diffusion.sampling import load_sources

    warm = diffusion.load_warm_pipeline(ctx)
    pipe = diffusion.pipeline_view(warm, "ddim")
    sources = [gif_module.augment_source(s, r) for s, r in zip(load_sources(ctx, requests), requests, strict=True)]
    return diffusion.image_to_image(
        pipe, sources, warm.embeddings.get([r.prompt for r in requests]), warm.embeddings.get([""] * len(requests)),
        [r.strength for r in requests], [make_generator(r.seed) for r in requests], num_inference_steps=STEPS,
        guidance_scale=50.0, size=ctx.profile.image_size)


def test_zero_budget_reproduces_plain_img2img_of_the_request_seed(ctx):
    method = _gif(epsilon=0.0)  # the guidance step still runs; the projection must undo all of it
    requests = method.plan(tiny_subset(ctx.source), 4, seed=3, ctx=ctx)
    assert all(r.params["rotation"] is not None for r in requests)  # the code's seed augmentation is on
    plain = _plain_img2img(ctx, requests)
    zero = method.generate(requests, ctx)
    for a, b in zip(zero, plain, strict=True):
        assert np.abs(a.image_array().astype(int) - b.astype(int)).max() <= 1
        assert a.provenance["gif"]["latent_linf"] == 0.0
    perturbed = _gif().generate(requests, ctx)  # epsilon 0.8: the perturbation shows in the pixels
    assert all(np.abs(p.image_array().astype(int) - b.astype(int)).max() > 8 for p, b in zip(perturbed, plain, strict=True))


def _group_latents(method, ctx, requests):
    """The img2img latents of one group, as ``generate`` computes them."""
    from augbench.diffusion import pipelines as diffusion
    from augbench.diffusion.sampling import load_sources

    warm = diffusion.load_warm_pipeline(ctx)
    pipe = diffusion.pipeline_view(warm, "ddim")
    sources = load_sources(ctx, requests)
    z = gif_module.img2img_latents(
        pipe, [gif_module.augment_source(s, r) for s, r in zip(sources, requests, strict=True)],
        warm.embeddings.get([r.prompt for r in requests]), warm.embeddings.get([""] * len(requests)),
        [r.strength for r in requests], [make_generator(r.seed) for r in requests], num_inference_steps=STEPS,
        guidance_scale=50.0, size=ctx.profile.image_size).clone()
    return z, sources[0], pipe.vae


@pytest.mark.parametrize("epsilon", [0.05, 0.3])
def test_perturbation_stays_within_its_budget_and_uses_it(ctx, epsilon):
    method = _gif(epsilon=epsilon)
    requests = method.plan(tiny_subset(ctx.source), 2, seed=0, ctx=ctx)
    assert requests[0].params["members"] == [[0, requests[0].seed], [1, requests[1].seed]]
    z, source, vae = _group_latents(method, ctx, requests)
    out, info = method.perturb_group(z, requests, source, gif_module._ZeroShot(ctx, ctx.card, method.config), vae)
    gap = (out - z.float()).abs()
    assert float(gap.max()) <= epsilon + 1e-6
    assert float(gap.max()) == pytest.approx(epsilon, abs=1e-6)  # alpha ~ U[0, 1), beta ~ N(0, 1) exceed it
    assert float((gap > 0).float().mean()) > 0.5  # most entries moved, not a few
    assert info["latent_linf"] == pytest.approx(epsilon, abs=1e-6)
    samples = method.generate(requests, ctx)
    assert all(s.provenance["gif"]["latent_linf"] <= epsilon + 1e-6 for s in samples)


@pytest.mark.parametrize("weights", [{}, {"entropy_weight": 0.0, "diversity_weight": 0.0}])
def test_guidance_objective_increases_over_the_steps(ctx, weights):
    """Sign-gradient ascent on GIF's score; with the other weights at 0 the score is CLIP's s'[j] alone."""
    method = _gif(optimisation_steps=4, step_size=0.01, track_objective=True, **weights)
    requests = method.plan(tiny_subset(ctx.source), 4, seed=1, ctx=ctx)
    samples = method.generate(requests, ctx)
    for s in samples:
        scores = s.provenance["gif"]["scores"]
        assert len(scores) == 5  # the four iterates the steps were taken at, and the final one
        assert scores[-1] > scores[0] + 1e-4, scores
    if weights:
        terms = samples[0].provenance["gif"]["terms"]
        assert samples[0].provenance["gif"]["scores"][-1] == pytest.approx(terms["class_probability"], abs=1e-5)
    unguided = _gif(optimisation_steps=0).generate(requests, ctx)  # same alpha/beta draws, no step
    assert any(not np.array_equal(a.image_array(), b.image_array()) for a, b in zip(samples, unguided, strict=True))


def test_labels_are_one_hot_at_the_source_class(ctx):
    subset = tiny_subset(ctx.source)
    label_of = dict(zip(subset.image_ids, subset.labels, strict=True))
    method = _gif(edits_per_image=1, optimisation_steps=0)  # one edit of each of the 6 images, classes 0, 1, 2
    requests = method.plan(subset, None, seed=0, ctx=ctx)
    samples = method.generate(requests, ctx)
    assert {r.target_class for r in requests} == {0, 1, 2}
    for r, s in zip(requests, samples, strict=True):
        assert r.target_class == r.source_classes[0] == label_of[r.source_ids[0]]
        np.testing.assert_array_equal(s.label, one_hot(r.target_class, ctx.num_classes))
        assert s.image_array().shape == (16, 16, 3)  # resized back to the source (output_size "source")


def test_groups_follow_the_code_and_a_split_group_is_completed_once(ctx, monkeypatch):
    method = _gif()
    requests = method.plan(tiny_subset(ctx.source), None, seed=0, ctx=ctx)
    assert len(requests) == 5 * 6
    sizes = [len(r.params["members"]) for r in requests[:5]]
    assert sizes == [2, 2, 2, 2, 1]  # edits of one image in groups of 2, 2, 1 [CARS:474-481]
    whole = method.generate(requests[:4], ctx)
    calls = []
    real = gif_module.img2img_latents
    monkeypatch.setattr(gif_module, "img2img_latents", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    fresh = _gif()
    second = fresh.generate([requests[1]], ctx)  # its group-mate 0 is regenerated with it
    assert calls == [2]
    first = fresh.generate([requests[0]], ctx)  # ... and kept: no second img2img
    assert calls == [2]
    for a, b in zip(whole[:2], first + second, strict=True):
        assert np.abs(a.image_array().astype(int) - b.image_array().astype(int)).max() <= 2
        strip = lambda prov: {k: v for k, v in prov.items() if k != "gif"}  # noqa: E731 - scores: float noise
        assert strip(a.provenance) == strip(b.provenance)
        assert a.provenance["gif"]["group"] == b.provenance["gif"]["group"]


def test_plan_draws_prompt_words_and_augmentation_per_request_seed(ctx):
    subset = tiny_subset(ctx.source)
    requests = _gif().plan(subset, 10, seed=0, ctx=ctx)
    assert requests == _gif().plan(subset, 10, seed=0, ctx=ctx)
    assert len({r.params["domain"] for r in requests}) > 1 and len({r.params["rotation"] for r in requests}) == 10
    assert all(-15 <= r.params["rotation"] <= 15 for r in requests)
    for r in requests:
        assert r.prompt == " ".join(f"{r.params['domain']} {r.params['adjective']} Tiny class 0 bird".split())
    unguided = default_registry().create("gif.unguided").plan(subset, 2, seed=0, ctx=ctx)
    assert [r.prompt for r in unguided] == ["an image of Tiny class 0 bird"] * 2
    code = default_registry().create("gif.code").plan(subset, 1, seed=0, ctx=ctx)[0]
    assert code.prompt.endswith("Tiny class 0") and "bird" not in code.prompt
    no_aug = _gif(source_augment="none").plan(subset, 1, seed=0, ctx=ctx)[0]
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert "rotation" not in no_aug.params and gif_module.augment_source(image, no_aug) is image


def test_models_presets_and_bad_config(ctx):
    profile = ctx.profile
    assert _gif().required_models(profile) == {"pipeline": profile.pipeline, "clip": profile.clip}
    assert _gif(optimisation_steps=0).required_models(profile) == {"pipeline": profile.pipeline}
    assert default_registry().create("gif.code").required_models(profile)["sd14_pipeline"] == \
        profile.extra["sd14_pipeline"]
    bare = dataclasses.replace(ctx, profile=dataclasses.replace(profile, extra={}))
    with pytest.raises(ConfigError, match="needs a profile that offers SD v1.4"):
        default_registry().create("gif.code").base_pipeline(bare)
    for bad in ({"epsilon": -0.1}, {"step_size": 0.0}, {"group_size": 0}, {"strength": 0.0}, {"prompt_domains": ()}):
        with pytest.raises(ConfigError):
            _gif(**bad)
    cfg = default_registry().create("gif.pets").config
    assert (cfg.strength, cfg.edits_per_image, cfg.guidance_scale, cfg.epsilon) == (0.7, 10, 50.0, 0.8)


def test_projection_is_the_code_clamp():
    centre = torch.zeros(1, 2, 2, 2)
    x = torch.tensor([-3.0, -0.5, 0.2, 4.0]).view(1, 2, 2, 1).repeat(1, 1, 1, 2)
    np.testing.assert_allclose(gif_module.project_linf(x, centre, 0.8).flatten().unique().numpy(),
                               [-0.8, -0.5, 0.2, 0.8], atol=1e-7)

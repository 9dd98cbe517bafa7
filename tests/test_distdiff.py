"""DistDiff (augbench.methods.distdiff, augbench.diffusion.prototype_guidance): prototypes, energy, guided img2img.

Tiny random Stable Diffusion and CLIP from configs (32 px, 6 steps); the contract mixin for the method id, and
behaviour the mixin cannot see: the prototypes are the class means of the profile CLIP's features and the
groups partition each class, rho = 0 is exactly img2img, the guidance lowers the energy of the final images,
and the code's random transform start comes from the request seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from augbench.contract import ConfigError, MethodContext, PipelineCache
from augbench.diffusion import pipelines as D
from augbench.diffusion.prototype_guidance import (
    PROTOTYPE_KIND,
    PrototypeGuidance,
    average_linkage_groups,
    build_prototypes,
    energy_of_images,
    hierarchical_energy,
    load_prototypes,
    stretch,
)
from augbench.diffusion.sampling import load_sources
from augbench.metrics.clip import profile_clip_scorer
from augbench.registry import default_registry
from augbench.run.artifacts import build_artifacts
from augbench.run.seeding import make_generator
from augbench.run.store import Store
from augbench.testing import (
    OfflineMethodTesterMixin,
    TinySource,
    cached_tiny_sd_pipeline,
    tiny_profile,
    tiny_subset,
)

STEPS = 6  # 3 run at strength 0.5; the guided window is 2 of them


class TestDistDiffContract(OfflineMethodTesterMixin):
    method_id = "distdiff"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, one_thread):
    """Classes of 5, 3 and 1 training images (K = 3: three groups, three singletons, one singleton)."""
    root = tmp_path_factory.mktemp("distdiff")
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()),
                        source=TinySource(per_class={"train": [5, 3, 1]}), batch_size=4, cache_dir=root,
                        pipelines=PipelineCache())
    subset = tiny_subset(ctx.source)
    ctx.artifacts = build_artifacts(_method().artifacts(subset, ctx), subset, ctx, Store(root / "store"))
    return ctx


def _method(method_id="distdiff", **params):
    return default_registry().create(method_id, {"num_inference_steps": STEPS, **params})


def _images(method, requests, ctx):
    return [s.image_array() for s in method.generate(requests, ctx)]


def _energies(images, requests, ctx):
    protos = load_prototypes(ctx.artifacts[PROTOTYPE_KIND])
    return energy_of_images(images, [r.target_class for r in requests], protos,
                            profile_clip_scorer(ctx.profile, ctx.device), size=ctx.profile.image_size)


def test_prototypes_are_class_means_of_the_profile_clip_features_and_groups_partition_each_class(ctx):
    subset = tiny_subset(ctx.source)
    protos = load_prototypes(ctx.artifacts[PROTOTYPE_KIND])
    assert protos.image_ids == tuple(subset.image_ids) and protos.labels == tuple(subset.labels)
    # CLIPScorer's own feature path (not the guidance's) on the images stretched as img2img sees them
    size = ctx.profile.image_size
    pixels = torch.from_numpy(np.stack([stretch(ctx.source.load_image(i), size) for i in subset.image_ids]))
    feats = profile_clip_scorer(ctx.profile, ctx.device).image_features(pixels.permute(0, 3, 1, 2))
    labels, groups = np.asarray(subset.labels), np.asarray(protos.groups)
    for c, n in enumerate([5, 3, 1]):
        members = np.flatnonzero(labels == c)
        torch.testing.assert_close(protos.class_prototypes[c], feats[members].mean(0), atol=1e-5, rtol=0)
        used = sorted(set(groups[members].tolist()))
        assert used == list(range(min(3, n)))  # K = 3 groups, fewer for a class with fewer images
        assert protos.sub_counts[c].tolist() == [int((groups[members] == g).sum()) for g in range(3)]
        assert int(protos.sub_counts[c].sum()) == n  # every image of the class in exactly one group
        for g in used:
            torch.testing.assert_close(protos.sub_prototypes[c, g], feats[members[groups[members] == g]].mean(0),
                                       atol=1e-5, rtol=0)
        assert torch.count_nonzero(protos.sub_prototypes[c, len(used):]) == 0


def test_average_linkage_recovers_separated_groups_numbered_by_first_row():
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0]])  # apart as directions too (unit features)
    truth = np.array([2, 0, 1, 2, 0, 1, 1, 2, 0])
    points = centres[truth] + rng.normal(0, 0.3, (len(truth), 2))
    groups = average_linkage_groups(points, 3)
    assert groups.tolist() == [0, 1, 2, 0, 1, 2, 2, 0, 1]  # the blobs, named in order of first appearance
    assert average_linkage_groups(points[:2], 3).tolist() == [0, 1]  # fewer images than K: one group each
    protos = build_prototypes(torch.from_numpy(points).float(), [0] * len(truth), 1, 3)
    assert protos.sub_counts[0].tolist() == [3, 3, 3]


def test_energy_is_the_distance_to_the_class_prototype_plus_the_nearest_group_prototype():
    f = torch.tensor([[3.0, 4.0]])  # unit: (0.6, 0.8)
    pc = torch.tensor([[1.0, 0.0]])
    pg = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]])
    mask = torch.tensor([[True, True, False]])  # the exact match is an unused slot
    e = hierarchical_energy(f, pc, pg, mask, class_weight=2.0, group_weight=1.0)
    expected = 2.0 * np.hypot(0.4, 0.8) + np.hypot(0.6, 0.2)  # nearest used group: (0, 1) (dot 0.8 > 0.6)
    assert float(e) == pytest.approx(expected, abs=1e-6)
    raw = hierarchical_energy(f, pc, pg, mask, class_weight=1.0, group_weight=0.0, normalize=False)
    assert float(raw) == pytest.approx(np.hypot(2.0, 4.0), abs=1e-6)  # the code's transform: raw features


@pytest.mark.parametrize("scheduler", ["dpmsolver++", "ddim"])
def test_rho_zero_reproduces_plain_img2img_of_the_same_request_seeds(ctx, scheduler):
    method = _method("distdiff.no_guidance", scheduler=scheduler)
    requests = method.plan(tiny_subset(ctx.source), 4, seed=3, ctx=ctx)
    warm = D.load_warm_pipeline(ctx)
    plain = D.image_to_image(D.pipeline_view(warm, scheduler), load_sources(ctx, requests),
                             warm.embeddings.get([r.prompt for r in requests]), warm.embeddings.get([""] * 4),
                             [r.strength for r in requests], [make_generator(r.seed) for r in requests],
                             num_inference_steps=STEPS, guidance_scale=7.5, size=ctx.profile.image_size)
    ours = _images(method, requests, ctx)
    assert all(np.array_equal(a, b) for a, b in zip(ours, plain, strict=True))
    guided = _images(_method(scheduler=scheduler), requests, ctx)
    assert min(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(guided, plain, strict=True)) > 2


@pytest.mark.parametrize("params", [{}, {"guidance": "direct"}])
def test_guidance_lowers_the_energy_of_the_final_images(ctx, params):
    requests = _method().plan(tiny_subset(ctx.source), 8, seed=0, ctx=ctx)
    plain = _energies(_images(_method(rho=0.0), requests, ctx), requests, ctx)
    guided = _energies(_images(_method(**params), requests, ctx), requests, ctx)
    assert float(guided.mean()) < float(plain.mean()) - 0.05
    assert int((guided < plain).sum()) >= 6  # measured 8 of 8 (transform), 8 of 8 (direct)


@pytest.mark.parametrize("method_id", ["distdiff", "distdiff.direct"])
def test_a_batch_guided_in_chunks_gives_the_images_of_single_calls(ctx, method_id):
    """6 rows: the guided step backpropagates 4 + 2 rows (GUIDANCE_ROWS), each chunk with its share of
    DPM-Solver++'s history; every image equals its batch-1 run."""
    method = _method(method_id)
    requests = method.plan(tiny_subset(ctx.source), 6, seed=2, ctx=ctx)
    batched = _images(method, requests, dataclasses.replace(ctx, batch_size=6))
    single = _images(method, requests, dataclasses.replace(ctx, batch_size=1))
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(batched, single, strict=True)) <= 2


def test_the_gradient_not_the_random_start_lowers_the_energy(ctx):
    """The code's random transform start alone (rho = 0) perturbs the image; its gradient step lowers the energy."""
    requests = _method().plan(tiny_subset(ctx.source), 8, seed=1, ctx=ctx)
    perturbed = _energies(_images(_method(transform_init="random", rho=0.0), requests, ctx), requests, ctx)
    guided = _energies(_images(_method(transform_init="random"), requests, ctx), requests, ctx)
    assert float(guided.mean()) < float(perturbed.mean()) - 0.05


def test_the_code_preset_is_deterministic_per_request_seed_and_leaves_global_rng_alone(ctx):
    method = _method("distdiff.code")
    assert method.config.transform_init == "random" and not method.config.normalize_features
    subset = tiny_subset(ctx.source)
    requests = method.plan(subset, 4, seed=0, ctx=ctx)
    state = torch.get_rng_state()
    first = _images(method, requests, ctx)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)  # a different global state changes nothing
    again = _images(_method("distdiff.code"), requests, ctx)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = _images(method, method.plan(subset, 4, seed=1, ctx=ctx), ctx)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_the_guided_window_follows_the_code_schedule():
    g = PrototypeGuidance(energy=lambda images, rows: images.sum())
    assert g.window(50, 25) == (5, 2)  # full-schedule steps 30 and 31: DDc's timesteps[50 - 20 : 50 - 20 + 2]
    assert g.window(25, 13) == (2, 2)  # the harness's 25 steps: steps 15 and 16
    assert g.window(4, 2) == (0, 2)  # the window would start before img2img does: its first step
    assert dataclasses.replace(g, steps=5).window(6, 3) == (1, 2)  # clamped to the steps that run


def test_provenance_records_the_guided_steps_and_the_energy(ctx):
    method = _method()
    requests = method.plan(tiny_subset(ctx.source), 2, seed=0, ctx=ctx)
    for sample in method.generate(requests, ctx):
        assert sample.provenance["guided_steps"] == [4, 5]  # 6 steps, 40 % left: step 4 (3 run from step 3)
        assert sample.provenance["energy_at_guidance"] > 0
        assert sample.label.argmax() == sample.provenance["target_class"] and sample.label.max() == 1.0


def test_bad_config_and_a_missing_artifact_fail_with_one_line():
    with pytest.raises(ConfigError, match=r"radius = 0.0 \(expected > 0\)"):
        _method(radius=0.0)
    with pytest.raises(ConfigError, match="transform_init"):
        _method(transform_init="gaussian")
    bare = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=TinySource(),
                         pipelines=PipelineCache())
    method = _method()
    with pytest.raises(ConfigError, match="needs the 'distdiff_prototypes' artifact"):
        method.generate(method.plan(tiny_subset(bare.source), 1, seed=0, ctx=bare), bare)


def test_card_models_and_training_integration():
    method = _method()
    profile = tiny_profile(cached_tiny_sd_pipeline())
    assert method.required_models(profile) == {"pipeline": profile.pipeline, "clip": profile.clip}
    training = type(method).card.training
    assert (training.replacement_mode, training.replacement_p, training.labels) == ("same_class", 0.5, "hard")

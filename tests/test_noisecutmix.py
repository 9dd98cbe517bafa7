"""NoiseCutMix specifics (METHODS_SPEC §3.9, §5.5): box, masks, labels, the three-branch step, full-split concepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from augbench.contract import ConfigError, MethodContext, PipelineCache
from augbench.diffusion.pipelines import NoiseStep
from augbench.methods.noisecutmix import cutmix_box, latent_mask, mixed_noise_denoise, pixel_mask
from augbench.registry import Composition, default_registry
from augbench.run.seeding import make_generator
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile, tiny_subset

pytestmark = pytest.mark.usefixtures("one_thread")


def _ctx(per_class=(3, 2, 1), **kw) -> MethodContext:
    return MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=TinySource(per_class={"train": list(per_class)}),
                         pipelines=PipelineCache(), **kw)


def _plan(method_id="noisecutmix.vanilla", seed=0, budget=200, ctx=None, **params):
    ctx = ctx or _ctx()
    method = default_registry().create(method_id, params)
    return method, method.plan(tiny_subset(ctx.source), budget, seed, ctx=ctx)


# --- box and masks ------------------------------------------------------------------------------------

def test_the_box_is_ncm_cutmix_box_clipped_to_the_image():
    # λ = 0.75 -> cut = floor(512 * 0.5) = 256: [cx - 128, cx + 128) clipped
    assert cutmix_box(0.75, 10, 500, 512, 512) == (0, 372, 138, 512)
    assert cutmix_box(0.75, 300, 200, 512, 512) == (172, 72, 428, 328)
    # odd cut: floor(100 * sqrt(0.51)) = 71, half 35 on each side (the box is 70 wide, as the code)
    assert cutmix_box(0.49, 50, 50, 100, 100) == (15, 15, 85, 85)
    assert cutmix_box(1.0, 7, 9, 64, 64) == (7, 9, 7, 9)  # λ = 1: empty box, all class B
    assert cutmix_box(0.0, 0, 0, 64, 64) == (0, 0, 32, 32)  # λ = 0: full-size box, clipped at the corner
    assert cutmix_box(0.5, 20, 10, 64, 32) == (0, 0, 42, 21)  # width and height scale separately


def test_lanczos_latent_mask_is_soft_and_nearest_is_the_snapped_box():
    box = (5, 3, 22, 17)
    soft = latent_mask(box, 32, 32, 2, "lanczos")
    assert soft.shape == (1, 16, 16) and soft.min() >= 0 and soft.max() <= 1
    values = set(np.round(soft.numpy().ravel(), 3))
    assert len(values) > 3, "Lanczos gives soft edges, not a binary mask"
    assert soft[0, 5, 6] > 0.95 and soft[0, 0, 15] == 0.0 and 0.2 < soft[0, 8, 6] < 0.8  # row 8 straddles y = 17
    assert abs(float(soft.mean()) - pixel_mask(box, 32, 32).mean()) < 0.02
    hard = latent_mask(box, 32, 32, 2, "nearest")
    expected = torch.zeros(1, 16, 16)
    expected[0, 2:9, 3:11] = 1  # edges 3/2, 17/2, 5/2, 22/2 rounded half up
    assert torch.equal(hard, expected)


# --- the plan -----------------------------------------------------------------------------------------

def test_plan_draws_classes_lambda_and_box_from_the_request_seed():
    method, plan = _plan()
    assert plan == _plan()[1]
    other = _plan(seed=1)[1]
    assert [r.params["box"] for r in plan] != [r.params["box"] for r in other]
    assert [r.seed for r in plan] != [r.seed for r in other]
    for r in plan:
        p = r.params
        assert r.seed == method.request_seed(0, r.index)
        assert p["box"] == list(cutmix_box(p["lam_sampled"], *p["centre"], 32, 32))
        assert r.lam == p["area_pixel"] == p["label_weight_a"] == pixel_mask(p["box"], 32, 32).mean()
        assert r.target_class == p["class_a"] and r.source_classes == (p["class_b"],)
    pairs = [(r.params["class_a"], r.params["class_b"]) for r in plan]
    assert {a for a, _ in pairs} == {b for _, b in pairs} == {0, 1, 2}
    assert any(a == b for a, b in pairs) and any(a != b for a, b in pairs)  # independent draws, B may equal A
    assert 0.3 < np.mean([r.params["lam_sampled"] for r in plan]) < 0.7  # Beta(1, 1)
    # the realised area never exceeds the nominal 1 - λ (floor, even sides, clipping) and clipping often shrinks it
    assert all(r.lam <= 1 - r.params["lam_sampled"] + 1e-12 for r in plan)
    assert any(r.lam < 1 - r.params["lam_sampled"] - 0.05 for r in plan)


def test_classes_are_uniform_over_all_classes_not_the_subsets():
    _, plan = _plan(ctx=_ctx(per_class=(4, 4, 0)))
    assert 2 in {r.params["class_a"] for r in plan} and 2 in {r.params["class_b"] for r in plan}


def test_default_size_is_expansion_times_the_subset():
    ctx = _ctx()
    method = default_registry().create("noisecutmix.vanilla", {"expansion": 1.5})
    assert len(method.plan(tiny_subset(ctx.source), None, 0, ctx=ctx)) == 9


def test_label_weight_options():
    _, area = _plan()
    _, paper = _plan("noisecutmix.paper")
    assert [r.params["box"] for r in paper] == [r.params["box"] for r in area]  # paired draws across presets
    assert all(r.lam == pytest.approx(1 - r.params["lam_sampled"]) for r in paper)  # P1: λ to the outside class
    _, latent = _plan(label_area="latent", budget=20)
    for r in latent:
        mask = latent_mask(r.params["box"], 32, 32, 2, "lanczos")
        assert r.lam == pytest.approx(float(mask.mean())) == r.params["area_latent"]


def test_labels_put_r_on_a_and_the_rest_on_b():
    method, plan = _plan(budget=40)
    for r in plan:
        label = method.label(r, 3)
        assert label.sum() == pytest.approx(1.0) and (label >= 0).all()
        a, b = r.params["class_a"], r.params["class_b"]
        assert label[a] == pytest.approx(r.lam if a != b else 1.0)
        if a != b:
            assert label[b] == pytest.approx(1 - r.lam)


def test_stored_rows_carry_mixing_metadata_the_diff_mix_rule_reads_correctly():
    from augbench.contract import SyntheticSample
    from augbench.synthetic.generate import _row
    from augbench.synthetic.loading import label_vector

    method, plan = _plan(budget=30)
    names = ("a", "b", "c")
    index = {n: i for i, n in enumerate(names)}
    for r in plan:
        label = method.label(r, 3)
        row = _row(SyntheticSample(np.zeros((4, 4, 3), np.uint8), label, method.sample_provenance(r)), "f.png", names)
        assert row["mix"] == {"a": names[r.params["class_b"]], "b": names[r.params["class_a"]], "s": r.lam}
        stored = label_vector(row, index, "as_generated")
        np.testing.assert_allclose(stored, label, atol=1e-6)
        np.testing.assert_allclose(label_vector(row, index, "diff_mix", gamma=1.0, sigma=1.0), stored, atol=1e-6)


def test_alpha_must_be_positive():
    for alpha in (0.0, -1.0):
        with pytest.raises(ConfigError, match="alpha > 0"):
            default_registry().create("noisecutmix", {"alpha": alpha})
    with pytest.raises(ConfigError, match="needs concepts"):
        default_registry().create("noisecutmix.vanilla", {"concept_training_images": "full_split"})


def test_artifacts_per_preset():
    ctx = _ctx()
    subset = tiny_subset(ctx.source)
    assert default_registry().create("noisecutmix.vanilla").artifacts(subset, ctx) == []
    (default,) = default_registry().create("noisecutmix").artifacts(subset, ctx)
    (full,) = default_registry().create("noisecutmix.p1_full_split").artifacts(subset, ctx)
    assert (default.kind, default.trained_on) == ("lora_ti", "train_part")
    assert (full.kind, full.trained_on, full.recipe) == ("lora_ti", "full_split", default.recipe)


def test_a_composition_generates_the_offline_set_and_its_mixer_mixes_the_soft_labels(tmp_path):
    from augbench.synthetic.generate import generate_synthetic_set
    from augbench.synthetic.loading import load_synthetic

    ctx = _ctx()
    subset = tiny_subset(ctx.source)
    out = generate_synthetic_set("noisecutmix.vanilla+mixup", ctx.source, subset, ctx.profile, 0, tmp_path / "set",
                                 batch_size=4, budget=4, pipelines=ctx.pipelines)
    synthetic, rows = load_synthetic(out, ctx.card.class_names, subset.image_ids)
    assert [r["method"] for r in rows] == ["noisecutmix.vanilla"] * 4
    torch.testing.assert_close(synthetic.targets.sum(1), torch.ones(4))
    mixer = default_registry().create("noisecutmix.vanilla+mixup", {"mixup": {"prob": 1.0}}).batch
    images = torch.stack(list(synthetic.images)).float() / 255
    mixed_images, mixed = mixer(images, synthetic.targets, make_generator(0))
    assert mixed_images.shape == images.shape
    torch.testing.assert_close(mixed.sum(1), torch.ones(4))


def test_compositions_with_training_mixers_resolve():
    for mixer in ("cutmix", "mixup"):
        comp = default_registry().create(f"noisecutmix+{mixer}.noisecutmix_paper")
        assert isinstance(comp, Composition) and comp.offline.family == "noisecutmix" and comp.batch.family == mixer
    card = default_registry().get_class("noisecutmix").card
    assert (card.training.replacement_mode, card.training.labels) == ("concat", "as_generated")


# --- the three-branch step ----------------------------------------------------------------------------

def test_mixing_before_or_after_cfg_gives_the_same_prediction():
    g = make_generator(0)
    eps_u, eps_a, eps_b, x = (torch.randn(2, 4, 8, 8, generator=g) for _ in range(4))
    mask = torch.rand(2, 1, 8, 8, generator=g)
    step = NoiseStep(0, 999, x, eps_u, (eps_a, eps_b), 7.5, (0, 1))
    before = step.guided(mask * eps_a + (1 - mask) * eps_b)
    guided_a = eps_u + 7.5 * (eps_a - eps_u)
    guided_b = eps_u + 7.5 * (eps_b - eps_u)
    torch.testing.assert_close(before, mask * guided_a + (1 - mask) * guided_b, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_pipe():
    from diffusers import StableDiffusionPipeline

    from augbench.diffusion.pipelines import PromptEmbeddingCache, make_scheduler

    pipe = StableDiffusionPipeline.from_pretrained(str(cached_tiny_sd_pipeline()), local_files_only=True,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = make_scheduler("dpmsolver++", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    cache = PromptEmbeddingCache(pipe)
    n = 3
    emb_a = cache.get([f"a photo of a bird number {i}" for i in range(n)])
    emb_b = cache.get([f"a photo of a fish number {i}" for i in range(n)])
    negative = cache.get([""] * n)
    masks = torch.stack([latent_mask(box, 32, 32, 2) for box in [(3, 5, 20, 27), (0, 0, 32, 16), (10, 10, 10, 10)]])
    latents = torch.randn(n, 4, 16, 16, generator=make_generator(3))
    return pipe, latents, emb_a, emb_b, negative, masks


def test_three_branches_in_one_unet_call_equal_three_separate_calls(tiny_pipe):
    from diffusers import DPMSolverMultistepScheduler

    pipe, latents, emb_a, emb_b, negative, masks = tiny_pipe
    steps, w = 4, 7.5
    mixed = mixed_noise_denoise(pipe, latents, emb_a, emb_b, negative, masks, num_inference_steps=steps,
                                guidance_scale=w)
    sched = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(steps)
    x = latents
    with torch.inference_mode():
        for t in sched.timesteps:
            x_in = sched.scale_model_input(x, t)
            eps_u, eps_a, eps_b = (pipe.unet(x_in, t, encoder_hidden_states=e).sample for e in (negative, emb_a, emb_b))
            guided_a, guided_b = eps_u + w * (eps_a - eps_u), eps_u + w * (eps_b - eps_u)
            x = sched.step(masks * guided_a + (1 - masks) * guided_b, t, x).prev_sample
    torch.testing.assert_close(mixed, x, rtol=1e-4, atol=1e-4)
    plain = mixed_noise_denoise(pipe, latents, emb_a, emb_a, negative, masks, num_inference_steps=steps,
                                guidance_scale=w)
    assert (mixed - plain).abs().max() > 1e-3, "class B's prompt must matter"


def test_batch_of_one_equals_batch_of_n(tiny_pipe):
    pipe, latents, emb_a, emb_b, negative, masks = tiny_pipe
    batched = mixed_noise_denoise(pipe, latents, emb_a, emb_b, negative, masks, num_inference_steps=3,
                                  guidance_scale=7.5)
    for i in range(latents.shape[0]):
        row = slice(i, i + 1)
        single = mixed_noise_denoise(pipe, latents[row], emb_a[row], emb_b[row], negative[row], masks[row],
                                     num_inference_steps=3, guidance_scale=7.5)
        torch.testing.assert_close(single, batched[row], rtol=1e-4, atol=1e-4)


def test_generated_batches_match_and_labels_follow_the_plan():
    ctx = _ctx(batch_size=4)
    method = default_registry().create("noisecutmix.vanilla")
    plan = method.plan(tiny_subset(ctx.source), 4, 0, ctx=ctx)
    batched = method.generate(plan, ctx)
    single = method.generate(plan, MethodContext(**{**ctx.__dict__, "batch_size": 1}))
    for r, a, b in zip(plan, batched, single, strict=True):
        assert np.abs(a.image_array().astype(int) - b.image_array().astype(int)).max() <= 1
        np.testing.assert_allclose(a.label, method.label(r, 3))
        assert a.provenance["prompt"] == ctx.card.prompt(r.params["class_a"], "a photo of a {name} {meta}")
        assert a.provenance["prompt_b"] == ctx.card.prompt(r.params["class_b"], "a photo of a {name} {meta}")
        assert a.provenance["lam"] == r.lam


# --- P1's full-split concepts through the leakage guard (METHODS_SPEC §5.5) --------------------------------

def test_full_split_of_joins_the_training_and_validation_parts():
    from augbench.protocols.splits import validation_split
    from augbench.run.stages import Subsets, full_split_of

    source = TinySource(per_class={"train": [5, 5, 5]})
    subset = tiny_subset(source)
    train, val = validation_split(subset, 0.2, 0)
    assert full_split_of(Subsets(subset, train, val)) is subset
    assert full_split_of(Subsets(subset, subset, None)) is subset
    joined = full_split_of(Subsets(train, train, val))  # full_data: the subset is the training part
    assert sorted(joined.image_ids) == sorted(subset.image_ids) and joined.manifest_hash != train.manifest_hash


def _env(store_root: Path, allow_foreign: bool):
    from types import SimpleNamespace

    from augbench.run.stages import CellEnv
    from augbench.run.store import Store

    return CellEnv(suite=SimpleNamespace(allow_foreign_artifacts=allow_foreign),
                   opts=SimpleNamespace(batch_size=4, build_artifacts=True), profile=_ctx().profile, device="cpu",
                   store=Store(store_root), run_store=Store(store_root / "run"), registry=default_registry(),
                   log=lambda line: None)


def test_p1_full_split_is_refused_unless_foreign_artifacts_are_allowed_then_flagged(tmp_path):
    from augbench.protocols.splits import validation_split
    from augbench.run.artifacts import ArtifactError
    from augbench.run.stages import Subsets, artifacts_stage, full_split_of

    source = TinySource(per_class={"train": [3, 3, 3]})
    subset = tiny_subset(source)
    train, val = validation_split(subset, 0.34, 0)
    full = full_split_of(Subsets(subset, train, val))
    method = default_registry().create("noisecutmix.p1_full_split", {"concept_steps": 2})
    with pytest.raises(ArtifactError, match="allow_foreign_artifacts") as refused:
        artifacts_stage(_env(tmp_path, False), method, source, train, full)
    message = str(refused.value)
    assert f"manifest {subset.manifest_hash}" in message and f"training part {train.manifest_hash}" in message
    assert val.image_ids[0] in message  # the leaked validation images are named

    flagged = artifacts_stage(_env(tmp_path, True), method, source, train, full)["lora_ti"]
    record = flagged.record()
    assert record["foreign"] and record["reused"]  # the refused call built it; the guard ran after
    assert set(record["foreign_examples"]) == set(val.image_ids)
    assert record["trained_on"] == {"hash": subset.manifest_hash, "size": len(subset.image_ids)}
    # without the preset the same artifact slot is trained on the training part only and passes the guard
    plain = default_registry().create("noisecutmix", {"concept_steps": 2})
    clean = artifacts_stage(_env(tmp_path, False), plain, source, train, full)["lora_ti"]
    assert not clean.foreign and clean.trained_on_ids == tuple(train.image_ids) and clean.key != flagged.key
    # the method generates from the flagged artifact (the runner then marks its table row with a dagger)
    ctx = _ctx()
    ctx = MethodContext(profile=ctx.profile, source=source, pipelines=ctx.pipelines, artifacts={"lora_ti": flagged})
    (sample,) = method.generate(method.plan(train, 1, 0, ctx=ctx), ctx)
    assert sample.provenance["prompt"].startswith("a photo of a <") and abs(sample.label.sum() - 1) < 1e-9

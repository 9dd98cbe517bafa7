"""SD-random on a tiny random Stable Diffusion saved to disk and loaded with from_pretrained (§3.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from augbench.contract import MethodContext, PipelineCache
from augbench.data.core import Sample, Subset
from augbench.methods.sd_random import SDRandom, allocate
from augbench.registry import Registry
from augbench.run.seeding import derive_seed, make_generator
from augbench.testing import (
    TinySource,
    cached_tiny_sd_pipeline,
    tiny_profile,
    tiny_subset,
)


@pytest.fixture(scope="module")
def sd_path() -> Path:
    return cached_tiny_sd_pipeline()


def _ctx(sd_path, batch_size=4, **profile_kwargs) -> MethodContext:
    return MethodContext(
        profile=tiny_profile(sd_path, **profile_kwargs),
        source=TinySource(per_class={"train": [3, 2, 1]}),
        batch_size=batch_size,
        pipelines=PipelineCache(),
    )


# --- planning ------------------------------------------------------------------------------------


def test_allocate_proportional_and_uniform():
    assert allocate([3, 2, 1], 6) == [3, 2, 1]
    assert allocate([3, 2, 1], 12) == [6, 4, 2]
    assert allocate([3, 2, 1], 3) == [2, 1, 0]  # remainders .5/.0/.5: tie -> lower class index
    assert allocate([1, 1, 1], 2) == [1, 1, 0]
    assert allocate([5, 0, 1], 6, "uniform") == [3, 0, 3]
    assert allocate([0, 0], 4) == [0, 0]
    assert sum(allocate([7, 3, 11, 1], 101)) == 101
    with pytest.raises(ValueError, match="allocation"):
        allocate([1], 1, "random")


def test_plan_counts_seeds_prompts(sd_path):
    ctx = _ctx(sd_path)
    subset = tiny_subset(ctx.source)
    method = SDRandom()
    plan = method.plan(subset, None, 7, ctx=ctx)
    assert len(plan) == len(subset.samples) == 6  # expansion 1.0 = |subset|
    assert [r.target_class for r in plan] == [0, 0, 0, 1, 1, 2]
    assert [r.seed for r in plan] == [derive_seed(7, "sd_random", i) for i in range(6)]
    assert plan[0].prompt == "a photo of a Tiny class 0 bird"
    assert all(r.source_ids == () for r in plan)
    assert len(SDRandom(expansion=2.5).plan(subset, None, 7, ctx=ctx)) == 15
    assert [r.target_class for r in method.plan(subset, 3, 7, ctx=ctx)] == [0, 0, 1]
    # request seeds do not depend on the budget (a larger plan extends a smaller one)
    assert [r.seed for r in method.plan(subset, 3, 7, ctx=ctx)] == [derive_seed(7, "sd_random", i) for i in range(3)]
    # without a context the plan still works; prompts are filled in at generation time
    assert [r.prompt for r in method.plan(subset, 2, 7)] == [None, None]


def test_prompt_presets(sd_path):
    ctx = _ctx(sd_path)
    subset = tiny_subset(ctx.source)
    reg = Registry()
    assert reg.create("sd_random.p1_article").plan(subset, 1, 0, ctx=ctx)[0].prompt == "a photo of a Tiny class 0"
    assert reg.create("sd_random.p1_no_article").plan(subset, 1, 0, ctx=ctx)[0].prompt == "a photo of Tiny class 0"
    with pytest.raises(ValueError, match="placeholders"):
        SDRandom(prompt_template="a photo of {species}")


# --- generation ----------------------------------------------------------------------------------


class _Counter:
    def __init__(self, module):
        self.calls, self.rows = 0, 0
        self.handle = module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()))
        self.calls += 1
        self.rows += x.shape[0]


def test_prompt_embeddings_encoded_once_per_class_and_cfg_in_one_unet_call(sd_path):
    from augbench.diffusion import pipelines as diffusion

    ctx = _ctx(sd_path, batch_size=2)
    method = SDRandom()
    subset = tiny_subset(ctx.source)
    plan = method.plan(subset, None, 0, ctx=ctx)  # 6 requests over 3 classes
    warm = diffusion.load_warm_pipeline(ctx)
    text = _Counter(warm.pipe.text_encoder)
    unet = _Counter(warm.pipe.unet)
    try:
        method.generate(plan, ctx)
        # 3 class prompts + the empty prompt, in one text-encoder call
        assert (text.calls, text.rows) == (1, 4)
        assert warm.embeddings.encoded_prompts == 4
        # 3 batches x 2 steps UNet calls; each call holds uncond + cond for 2 images
        assert unet.calls == 3 * 2 and unet.rows == 3 * 2 * 4
        method.generate(plan[:2], ctx)  # warm cache: no more text-encoder work
        assert text.calls == 1
        SDRandom(guidance_scale=1.0).generate(plan[:2], ctx)  # w = 1: no CFG, batch of 2
        assert unet.rows == 3 * 2 * 4 + 2 * 4 + 2 * 2
    finally:
        text.handle.remove()
        unet.handle.remove()
    assert ctx.pipelines is not None and len(ctx.pipelines) == 1  # one warm pipeline per process/context


def test_cached_embeddings_equal_prompt_strings(sd_path):
    """Passing cached prompt_embeds gives the images diffusers makes from the prompt strings."""
    from augbench.diffusion import pipelines as diffusion

    ctx = _ctx(sd_path, batch_size=3)
    method = SDRandom()
    plan = method.plan(tiny_subset(ctx.source), 3, 0, ctx=ctx)
    ours = np.stack([s.image_array() for s in method.generate(plan, ctx)])
    pipe = diffusion.pipeline_view(diffusion.load_warm_pipeline(ctx), "dpmsolver++")
    ref = pipe(
        prompt=[r.prompt for r in plan],
        negative_prompt=[""] * 3,
        generator=[make_generator(r.seed) for r in plan],
        num_inference_steps=2,
        guidance_scale=7.5,
        height=32,
        width=32,
        output_type="np",
    ).images
    assert np.abs(diffusion.to_uint8(ref).astype(int) - ours.astype(int)).max() <= 1


def test_pipeline_is_loaded_from_disk_offline_with_dpm_solver(sd_path):
    from diffusers import DPMSolverMultistepScheduler

    from augbench.diffusion import pipelines as diffusion

    ctx = _ctx(sd_path)
    warm = diffusion.load_warm_pipeline(ctx)
    assert warm is diffusion.load_warm_pipeline(ctx)  # warm, loaded once
    assert warm.pipe.safety_checker is None
    assert warm.pipe.unet.dtype == torch.float32
    view = diffusion.pipeline_view(warm, "dpmsolver++")
    assert isinstance(view.scheduler, DPMSolverMultistepScheduler)
    assert view.scheduler.config.algorithm_type == "dpmsolver++"
    assert view.scheduler.config.beta_schedule == "scaled_linear" and view.scheduler.config.steps_offset == 1
    assert view.unet is warm.pipe.unet and view.scheduler is not warm.pipe.scheduler


def test_missing_pipeline_names_path(tmp_path):
    from augbench.diffusion import pipelines as diffusion

    ctx = _ctx(tmp_path / "nowhere")
    with pytest.raises(diffusion.ModelLoadError, match="nowhere"):
        diffusion.load_warm_pipeline(ctx)


def test_samples_and_provenance(sd_path):
    ctx = _ctx(sd_path, image_size=16)
    subset = Subset("tiny", "train", "full", {}, (Sample("train/2/0", 2),))
    samples = SDRandom().generate(SDRandom().plan(subset, 2, 3, ctx=ctx), ctx)
    assert [s.image_array().shape for s in samples] == [(16, 16, 3)] * 2
    assert all(np.array_equal(s.label, [0.0, 0.0, 1.0]) for s in samples)
    prov = samples[1].provenance
    assert prov["method"] == "sd_random" and prov["request_index"] == 1 and prov["target_class"] == 2
    assert prov["sampler"] == {"num_inference_steps": 2, "guidance_scale": 7.5, "image_size": 16, "scheduler": "dpmsolver++"}
    assert prov["prompt"] == "a photo of a Tiny class 2 bird"
    assert SDRandom().generate([], ctx) == []

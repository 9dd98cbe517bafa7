"""Concept learning's memory knobs (augbench.diffusion.concepts.memory) on the tiny random SD: same results, less memory.

* ``micro_batch``: a step split into micro-batches accumulates the gradient of the unsplit step (the
  sum over classes of each class's mean MSE for ``ti``, the batch mean for ``lora_ti``) -- bit-identical
  when unsplit -- and trains the same tokens and LoRA.
* ``gradient_checkpointing``: the same gradients, fewer saved activations.
* SDPA attention is what diffusers / transformers already use; fp16 weights on CUDA keep the trained
  parameters fp32 (the cast is checked on CPU; the CUDA run only where a GPU is present).
* Out of memory: one line naming the stage, the rows it tried, the resolution and the suite key.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from augbench.contract import ConfigError, MethodContext, PipelineCache
from augbench.diffusion.concepts import ConceptMemoryError, formats, training
from augbench.diffusion.concepts.memory import cast_frozen, enable_checkpointing, memory_guard, row_chunks
from augbench.diffusion.concepts.recipes import MEMORY_DEFAULTS, concept_recipe, validate_recipe
from augbench.run.seeding import make_generator
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile, tiny_subset


class WideSource(TinySource):
    """Non-square images (24 x 16): concept learning crops and encodes them every step."""

    def load_image(self, image_id):
        return super().load_image(image_id).resize((24, 16), Image.BILINEAR)


@pytest.fixture(scope="module")
def profile():
    torch.set_num_threads(1)
    return tiny_profile(cached_tiny_sd_pipeline())


def _modules(profile, kind: str, checkpointing: bool = False):
    """The base components as the loop prepares them: class tokens trainable, LoRA (with B != 0) for lora_ti."""
    comps = training.load_base_components(profile, "cpu")
    te, unet = comps["text_encoder"], comps["unet"]
    ids = training._add_tokens(comps["tokenizer"], te, ["<c0>", "<c1>", "<c2>"], 49406 - 1)
    te.get_input_embeddings().weight.requires_grad_(True)
    params = [te.get_input_embeddings().weight]
    if kind == "lora_ti":
        lora = training._inject_lora(unet, 4, make_generator(1))
        with torch.no_grad():  # B = 0 at init would leave A without a gradient
            for p in lora:
                p.normal_(0, 0.1, generator=make_generator(2))
        params += lora
        unet.train()
    if checkpointing:
        enable_checkpointing(unet, te if kind == "ti" else None)
    captions = [f"a photo of a <c{c}>" for c in (0, 0, 1, 1, 2, 2)]
    input_ids = training._tokenize(comps["tokenizer"], captions, "cpu")
    return comps, params, input_ids, ids


def _step(profile, kind: str, **memory):
    """One step through the loop's ``_accumulate`` (6 rows: 3 classes x 2): loss, gradients, bytes autograd saved."""
    recipe = {**concept_recipe(kind, "tiny"), **memory}
    comps, params, input_ids, ids = _modules(profile, kind, recipe["gradient_checkpointing"])
    latents = torch.randn(6, 4, 16, 16, generator=make_generator(3))
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    weights = (1.0 / torch.bincount(groups).float())[groups] if kind == "ti" else torch.ones(6) / 6
    gens, saved = {"noise": make_generator(4)}, [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = training._accumulate(recipe, kind, "cpu", (comps["text_encoder"], comps["unet"], comps["noise_scheduler"]),
                                    latents, input_ids, weights, gens)
    # the embedding's gradient on the class tokens (the rows the loop trains; every other row is restored)
    grads = [params[0].grad[ids].clone()] + [p.grad.clone() for p in params[1:]]
    return loss, grads, saved[0], (comps, latents, input_ids, groups)


@pytest.mark.parametrize("kind", ["ti", "lora_ti"])
def test_micro_batches_accumulate_the_unsplit_steps_gradient(profile, kind):
    loss, grads, _, (_, latents, input_ids, groups) = _step(profile, kind)
    # the unsplit step is the loop before micro-batches, bit for bit: its loss and reduction, recomputed here
    fresh, params, _, ids = _modules(profile, kind)
    sched = fresh["noise_scheduler"]
    noise, t = training._draw_noise(sched, latents, {"noise": make_generator(4)})
    per_row = training._row_losses(fresh["unet"], sched, latents, noise, t, fresh["text_encoder"](input_ids)[0])
    if kind == "ti":  # sum over classes of each class's mean MSE
        sums = torch.zeros(3).index_add(0, groups, per_row)
        reference = (sums / torch.bincount(groups).float()).sum()
    else:
        reference = per_row.mean()
    reference.backward()
    assert torch.allclose(loss, reference.detach(), rtol=1e-6)
    assert all(torch.equal(g, p.grad[ids] if i == 0 else p.grad) for i, (g, p) in enumerate(zip(grads, params)))
    for micro_batch in (1, 4):  # one row per forward; chunks that cut through a class
        split_loss, split_grads, _, _ = _step(profile, kind, micro_batch=micro_batch)
        assert torch.allclose(split_loss, loss, rtol=1e-6)
        for g, s in zip(grads, split_grads):
            torch.testing.assert_close(s, g, rtol=1e-5, atol=1e-5 * float(g.abs().max()))  # float32 summation order


@pytest.mark.parametrize("kind", ["ti", "lora_ti"])
def test_gradient_checkpointing_keeps_the_gradients_and_saves_fewer_activations(profile, kind):
    loss, grads, kept, _ = _step(profile, kind)
    ck_loss, ck_grads, recomputed, (comps, _, _, _) = _step(profile, kind, gradient_checkpointing=True)
    assert comps["unet"].is_gradient_checkpointing
    assert torch.equal(loss, ck_loss)
    for g, c in zip(grads, ck_grads):
        torch.testing.assert_close(c, g, rtol=1e-5, atol=1e-7)
    assert recomputed < kept / 2, (recomputed, kept)


def _train(kind: str, profile, tmp_path, source_cls=WideSource, **memory):
    ctx = MethodContext(profile=profile, source=source_cls(per_class={"train": [3, 2, 1], "test": 1}),
                        pipelines=PipelineCache())
    folder = tmp_path / f"{kind}-{'-'.join(f'{k}{v}' for k, v in memory.items()) or 'default'}"
    training.train_concepts(kind, {**concept_recipe(kind, "tiny"), **memory}, tiny_subset(ctx.source), ctx, folder)
    if kind == "ti":
        return torch.load(folder / formats.TI_FILE, weights_only=True)
    out = dict(load_file(str(folder / formats.LORA_FILE)))
    embeds = torch.load(folder / formats.TI_EMBEDS_FILE, weights_only=True)["learned_embeds_dict"]
    return {**out, **{f"token {k}": v for k, v in embeds.items()}}


def test_memory_knobs_train_the_same_concepts(profile, tmp_path):
    """Crops encoded one image per VAE call, one row per forward, checkpointing: the same tokens and LoRA."""
    knobs = {"micro_batch": 1, "encode_batch": 1, "gradient_checkpointing": True}
    for kind in ("ti", "lora_ti"):
        base, knobbed = _train(kind, profile, tmp_path), _train(kind, profile, tmp_path, **knobs)
        assert set(base) == set(knobbed)
        diffs = torch.cat([(base[k] - knobbed[k]).abs().flatten() for k in base])
        if kind == "ti":
            assert float(diffs.max()) < 1e-6
        else:
            # AdamW's first updates are ~ lr * g / (|g| + 1e-8): an element whose gradient is within float
            # noise of zero moves by up to a few 1e-5 at lr 1e-3; all others agree to 1e-6
            assert float(diffs.max()) < 5e-5 and float((diffs > 1e-6).float().mean()) < 1e-3


def test_attention_is_pytorch_sdpa(profile):
    from diffusers.models.attention_processor import AttnProcessor2_0

    comps = training.load_base_components(profile, "cpu")
    assert {type(p) for p in comps["unet"].attn_processors.values()} == {AttnProcessor2_0}
    training._inject_lora(comps["unet"], 4, make_generator(0))  # peft wraps the projections, not the processor
    assert {type(p) for p in comps["unet"].attn_processors.values()} == {AttnProcessor2_0}
    assert comps["text_encoder"].config._attn_implementation == "sdpa"


def test_fp16_weights_keep_trained_parameters_fp32(profile):
    comps, params, _, _ = _modules(profile, "lora_ti")
    for name in ("vae", "text_encoder", "unet"):
        cast_frozen(comps[name], torch.float16)
    trained = {id(p) for p in params}
    for name in ("vae", "text_encoder", "unet"):
        for p in comps[name].parameters():
            assert p.dtype == (torch.float32 if id(p) in trained else torch.float16)
    assert comps["text_encoder"].get_input_embeddings().weight.dtype == torch.float32
    # the CPU path stays fp32 whatever the recipe says
    cpu = training.load_base_components(profile, "cpu")
    training._prepare_precision({"mixed_precision": "fp16"}, "cpu", cpu["unet"], cpu["vae"])
    assert {p.dtype for p in cpu["unet"].parameters()} | {p.dtype for p in cpu["vae"].parameters()} == {torch.float32}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the fp16 CUDA path needs a GPU")
def test_fp16_cuda_training_runs_and_micro_batches_agree(profile, tmp_path):
    """fp16 autocast, fp16 frozen weights, fp32 trained parameters and a GradScaler, micro-batched, on CUDA."""
    for kind in ("ti", "lora_ti"):
        ctx = MethodContext(profile=profile, source=WideSource(per_class={"train": [3, 2, 1], "test": 1}),
                            pipelines=PipelineCache(), device="cuda")
        results = []
        for micro_batch in (0, 1):
            recipe = {**concept_recipe(kind, "tiny"), "mixed_precision": "fp16", "micro_batch": micro_batch,
                      "gradient_checkpointing": True}
            result = training.train_concepts(kind, recipe, tiny_subset(ctx.source), ctx, tmp_path / f"{kind}{micro_batch}")
            assert all(torch.isfinite(torch.tensor(result.losses)))
            results.append(result.losses[0])  # before any update: the same step, in fp16 summation order
        assert results[0] == pytest.approx(results[1], rel=1e-2)


def test_out_of_memory_is_one_line_naming_the_knob():
    recipe = concept_recipe("ti", "sd15")
    with pytest.raises(ConceptMemoryError) as err:
        with memory_guard("ti", "step", 8, recipe, "cpu", total=800):
            torch.empty(1 << 62, dtype=torch.uint8)  # the CPU allocator refuses: a real out-of-memory error
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, RuntimeError)
    assert "concept learning (ti)" in message and "8 row(s)" in message and "512 px" in message
    assert "set [concepts.ti] micro_batch = 4 in the suite" in message and "all 800 rows" in message
    assert "DefaultCPUAllocator" in str(err.value.__cause__)
    one_row = {**recipe, "gradient_checkpointing": False}
    with pytest.raises(ConceptMemoryError, match=r"\[concepts.lora_ti\] gradient_checkpointing = true"):
        with memory_guard("lora_ti", "step", 1, one_row, "cpu"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(ConceptMemoryError, match=r"lower \[concepts.ti\] resolution \(now 512\)"):
        with memory_guard("ti", "step", 1, recipe, "cpu"):
            raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(ValueError, match="not memory"):  # anything else passes through
        with memory_guard("ti", "step", 8, recipe, "cpu"):
            raise ValueError("not memory")


@pytest.mark.parametrize("where, expected", [
    ("unet", r"a forward \+ backward of 6 row\(s\) at 32 px; set \[concepts.ti\] micro_batch = 3 in the suite"),
    ("vae.encoder", r"encoding 6 image\(s\) per VAE call at 32 px; set \[concepts.ti\] encode_batch = 3 in the suite"),
])
def test_a_concept_step_out_of_memory_names_its_stage(profile, tmp_path, monkeypatch, where, expected):
    load = training.load_base_components

    def impossible(module, args):
        torch.empty(1 << 62, dtype=torch.uint8)

    def load_with_a_full_device(*args, **kwargs):
        comps = load(*args, **kwargs)
        name, _, sub = where.partition(".")
        module = getattr(comps[name], sub) if sub else comps[name]
        module.register_forward_pre_hook(impossible)
        return comps

    monkeypatch.setattr(training, "load_base_components", load_with_a_full_device)
    with pytest.raises(ConceptMemoryError, match=expected):
        _train("ti", profile, tmp_path, source_cls=TinySource)


def test_recipes_hold_the_memory_keys():
    ti, lora = concept_recipe("ti", "sd15"), concept_recipe("lora_ti", "sd15")
    assert (ti["micro_batch"], ti["encode_batch"], ti["gradient_checkpointing"]) == (8, 4, True)
    assert (lora["micro_batch"], lora["encode_batch"], lora["gradient_checkpointing"]) == (0, 4, True)
    for kind in ("ti", "lora_ti"):
        for name in ("embedded", "tiny"):
            assert {k: concept_recipe(kind, name)[k] for k in MEMORY_DEFAULTS} == MEMORY_DEFAULTS
        # a complete recipe written before the memory keys stays valid and trains as it did
        old = {k: v for k, v in concept_recipe(kind, "embedded").items() if k not in MEMORY_DEFAULTS}
        assert validate_recipe(kind, old) == concept_recipe(kind, "embedded")
    # a suite's [concepts.ti] table refines the profile's recipe
    refined = tiny_profile(cached_tiny_sd_pipeline(), extra={"concept_recipes": {"ti": {"micro_batch": 2}}})
    assert concept_recipe("ti", refined)["micro_batch"] == 2
    for bad in ({"micro_batch": -1}, {"micro_batch": "8"}, {"encode_batch": 0}, {"gradient_checkpointing": "yes"}):
        with pytest.raises(ConfigError, match=rf"ti recipe: {next(iter(bad))} = .*expected .*\[concepts.ti\]"):
            concept_recipe("ti", "tiny", **bad)
    assert row_chunks(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)] and row_chunks(7, 0) == [slice(0, 7)]


def test_a_recipe_from_before_the_memory_keys_keeps_its_key_and_result(profile, tmp_path):
    """Artifacts keep their recipe as written (``artifact.json`` is never re-validated); a recipe without the
    memory keys keeps its old key and trains exactly as the default recipe of today."""
    from augbench.contract import ArtifactSpec
    from augbench.run.artifacts import artifact_key, build_artifacts
    from augbench.run.store import Store

    ctx = MethodContext(profile=profile, source=TinySource(per_class={"train": [2, 1, 1], "test": 1}),
                        pipelines=PipelineCache())
    subset = tiny_subset(ctx.source)
    today = concept_recipe("ti", "tiny", steps=2)
    before = {k: v for k, v in today.items() if k not in MEMORY_DEFAULTS}
    old, new = (build_artifacts([ArtifactSpec("ti", r)], subset, ctx, Store(tmp_path / n))["ti"]
                for n, r in (("old", before), ("new", today)))
    assert old.key == artifact_key(ArtifactSpec("ti", before), subset, profile.pipeline_key) != new.key
    assert dict(old.recipe) == before
    assert old.files[formats.TI_FILE] == new.files[formats.TI_FILE]

"""DiffuseMix (``methods/diffusemix.py``): the contract on a tiny random InstructPix2Pix pipeline, the fractal bank,
the half mask and the blend, labels, and the one-line errors when the profile's editor is missing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from augbench.contract import ConfigError, MethodContext
from augbench.diffusion.fractals import IFS, filling_rate, fractal_bank, ifs_fractal, render_ifs
from augbench.diffusion.instruct import EDITOR_BUILD_COMMAND, instruct_unet
from augbench.methods.diffusemix import README_PROMPTS, DiffuseMix, concatenate, fractal_blend, half_mask
from augbench.run.seeding import derive_seed
from augbench.testing import OfflineMethodTesterMixin
from augbench.testing.tiny import (
    TinySource,
    cached_tiny_sd_pipeline,
    tiny_profile,
    tiny_sd_components,
    tiny_subset,
)


def _context(tmp_dir: Path, batch_size: int = 4) -> MethodContext:
    profile = DiffuseMix.contract_test_profile(tiny_profile(cached_tiny_sd_pipeline()))
    return MethodContext(profile=profile, source=TinySource(per_class={"train": [3, 2, 1]}), batch_size=batch_size,
                         cache_dir=tmp_dir)


class TestDiffuseMixContract(OfflineMethodTesterMixin):
    """The mixin's default context with the method's ``contract_test_profile`` applied (what the registered-methods
    contract test needs the mixin to do for every method that declares one)."""

    method_id = "diffusemix"

    def get_context(self, tmp_dir: Path) -> MethodContext:
        return _context(tmp_dir, self.batch_size)


class TestDiffuseMixPaperPresetContract(OfflineMethodTesterMixin):
    method_id = "diffusemix.paper"
    params = {"original_side": "random"}

    def get_context(self, tmp_dir: Path) -> MethodContext:
        return _context(tmp_dir, self.batch_size)


# --- the tiny editor itself ----------------------------------------------------------------------------------


def test_instruct_unet_starts_as_the_text_to_image_unet():
    """InstructPix2Pix's init: twice the input channels, the new ones zero, so the output ignores the image."""
    base = tiny_sd_components(0)["unet"].eval()
    wide = instruct_unet(base).eval()
    assert wide.config.in_channels == 2 * base.config.in_channels == 8
    assert torch.equal(wide.conv_in.weight[:, 4:], torch.zeros_like(wide.conv_in.weight[:, 4:]))
    g = torch.Generator().manual_seed(0)
    x, image = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g)
    text = torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        ref = base(x, 10, encoder_hidden_states=text).sample
        out = wide(torch.cat([x, image], 1), 10, encoder_hidden_states=text).sample
    torch.testing.assert_close(out, ref)
    assert base.config.in_channels == 4  # the source UNet is left as it was


# --- fractals --------------------------------------------------------------------------------------------------


def test_fractals_are_deterministic_per_seed_and_differ_between_seeds():
    a, b, c = ifs_fractal(3, 48), ifs_fractal(3, 48), ifs_fractal(4, 48)
    assert a.dtype == np.uint8 and a.shape == (48, 48, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    lit = (a.max(-1) > 0).mean()
    assert 0.05 < lit < 0.95, f"a fractal covers part of the image, not none or all of it ({lit:.2f})"
    bank = fractal_bank(7, 3, 32)
    assert np.array_equal(bank[1], ifs_fractal(derive_seed(7, "fractal-bank", 1), 32))
    assert not np.array_equal(bank[0], bank[1])


def test_fractal_draws_leave_the_global_rng_alone():
    state = np.random.get_state()[1].copy()
    ifs_fractal(11, 16)
    assert np.array_equal(np.random.get_state()[1], state)


def test_sierpinski_triangle_renders_with_its_hole():
    """The three half-scale maps of the Sierpinski triangle: the chaos game never visits the middle triangle."""
    maps = np.array([[[0.5, 0, 0], [0, 0.5, 0]], [[0.5, 0, 0.5], [0, 0.5, 0]], [[0.5, 0, 0.25], [0, 0.5, 0.5]]])
    ifs = IFS(maps, np.full(3, 1 / 3), np.ones((3, 3)))
    from augbench.diffusion.fractals import _chaos_game

    xy, colours = _chaos_game(ifs, np.random.default_rng(0), 60_000, 512, 30)
    image = render_ifs(xy, colours, 64)
    lit = image.max(-1) > 0
    # y = 0.25 of the unit square lies at row 16 (each axis stretched to the image less FractalDB's border): x = 0.5
    # there is in the triangle's hole, x = 0.1 outside the triangle, while its base is drawn
    assert not lit[16:19, 30:34].any() and not lit[16:19, 4:8].any()
    assert lit[1:3, 2:62].all() and 0.15 < lit.mean() < 0.35
    assert 0.03 < filling_rate(xy) < 0.2  # about half the image (the triangle) times (3/4)^9 at 512 px, plus edges
    line = np.stack([np.linspace(0, 1, 1000), np.linspace(0, 1, 1000)], 1)
    assert filling_rate(line) < 0.01


# --- concatenation and blending --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 32), (31, 17), (256, 256)])
@pytest.mark.parametrize("orientation", ["horizontal", "vertical"])
@pytest.mark.parametrize("ramp", [0.0, 20 / 256])
@pytest.mark.parametrize("original_first", [True, False])
def test_the_half_mask_weighs_exactly_half(shape, orientation, ramp, original_first):
    mask = half_mask(*shape, orientation, ramp=ramp, original_first=original_first)
    assert mask.shape == shape and mask.min() >= 0 and mask.max() <= 1
    assert mask.mean() == pytest.approx(0.5, abs=1e-12)


def test_a_binary_mask_puts_the_original_in_one_half_and_the_edit_in_the_other():
    rng = np.random.default_rng(0)
    original, edited = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    left_right = concatenate(original, edited, half_mask(32, 32, "horizontal"))
    assert np.array_equal(left_right[:, :16], original[:, :16]) and np.array_equal(left_right[:, 16:], edited[:, 16:])
    bottom_top = concatenate(original, edited, half_mask(32, 32, "vertical", original_first=False))
    assert np.array_equal(bottom_top[16:], original[16:]) and np.array_equal(bottom_top[:16], edited[:16])


def test_the_ramp_follows_the_code_s_mask_at_256_px():
    """The repo's mask (utils.py:37-40): 118 zeros, ``linspace(0, 1, 20)``, 118 ones across the width."""
    code = np.concatenate([np.zeros(118), np.linspace(0, 1, 20), np.ones(118)])
    ours = half_mask(256, 256, "horizontal", ramp=20 / 256)
    assert np.abs(ours[0] - code).max() < 0.03 and (ours == ours[0]).all()


def test_the_blend_is_one_minus_lambda_hybrid_plus_lambda_fractal():
    rng = np.random.default_rng(1)
    hybrid, fractal = rng.uniform(0, 255, (32, 32, 3)), rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    np.testing.assert_allclose(fractal_blend(hybrid, fractal, 0.2), 0.8 * hybrid + 0.2 * fractal)
    assert np.array_equal(fractal_blend(hybrid, fractal, 0.0), hybrid)


def test_mix_composes_the_half_mask_and_the_fractal_of_the_request():
    method = DiffuseMix(mask="binary", fractal_count=5, fractal_seed=3)
    subset = tiny_subset(TinySource(per_class={"train": [2, 2, 2]}, size=32))
    request = method.plan(subset, 1, 0)[0]
    rng = np.random.default_rng(2)
    source, edited = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    out = method.mix(source, edited, request)
    p = request.params
    fractal = ifs_fractal(derive_seed(3, "fractal-bank", p["fractal"]), 32)
    original_half = (slice(None), slice(0, 16)) if p["orientation"] == "horizontal" else (slice(0, 16), slice(None))
    edited_half = (slice(None), slice(16, 32)) if p["orientation"] == "horizontal" else (slice(16, 32), slice(None))
    if not p["original_first"]:
        original_half, edited_half = edited_half, original_half
    expected = np.empty((32, 32, 3))
    expected[original_half] = 0.8 * source[original_half] + 0.2 * fractal[original_half]
    expected[edited_half] = 0.8 * edited[edited_half] + 0.2 * fractal[edited_half]
    assert out.dtype == np.uint8
    assert np.abs(out.astype(float) - expected).max() <= 0.5 + 1e-9


# --- planning and labels -----------------------------------------------------------------------------------------


def test_every_real_image_gets_one_request_per_prompt_with_its_class():
    method = DiffuseMix()
    subset = tiny_subset(TinySource(per_class={"train": [2, 1, 1]}))
    plan = method.plan(subset, None, 0)
    assert len(plan) == len(README_PROMPTS) * 4
    for k, (image_id, label) in enumerate(zip(subset.image_ids, subset.labels, strict=True)):
        mine = plan[k * len(README_PROMPTS):(k + 1) * len(README_PROMPTS)]
        assert [r.prompt for r in mine] == list(README_PROMPTS)
        assert {r.source_ids for r in mine} == {(image_id,)} and {r.target_class for r in mine} == {label}
    assert {r.params["orientation"] for r in plan} == {"horizontal", "vertical"}
    assert all(r.params["original_first"] for r in plan)  # the code's layout
    assert len({r.params["fractal"] for r in plan}) > 1


def test_labels_are_the_source_class(tmp_path):
    ctx = _context(tmp_path)
    method = DiffuseMix(prompts=("snowy",), num_inference_steps=2, fractal_count=2)
    subset = tiny_subset(ctx.source)
    requests = method.plan(subset, None, 5, ctx=ctx)
    samples = method.generate(requests, ctx)
    assert len(samples) == len(subset.labels) == 6
    for r, s, label in zip(requests, samples, subset.labels, strict=True):
        assert np.array_equal(s.label, np.eye(3)[label]) and s.provenance["sources"] == list(r.source_ids)
        assert s.image_array().shape == (32, 32, 3) and s.provenance["prompt"] == "snowy"


# --- a missing editor ------------------------------------------------------------------------------------------


def test_a_missing_world_editor_stops_with_the_build_command(tmp_path):
    from augbench.run.profiles import get_profile

    profile = dataclasses.replace(get_profile("embedded", environ={}), instruct_pipeline=str(tmp_path / "editor"))
    ctx = MethodContext(profile=profile, source=TinySource(), cache_dir=tmp_path)
    method = DiffuseMix()
    subset = tiny_subset(ctx.source)
    for call in (lambda: method.setup(subset, ctx), lambda: method.generate(method.plan(subset, 1, 0), ctx)):
        with pytest.raises(ConfigError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and EDITOR_BUILD_COMMAND in message
        assert "AUGBENCH_EMBEDDED_INSTRUCT_PIPELINE" in message and "augbench models check --profile embedded" in message


def test_the_models_check_names_the_editor_variable(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from augbench.run.cells import RunOptions, plan_cells
    from augbench.run.models import ModelsMissingError, check_models
    from augbench.run.profiles import get_profile
    from augbench.run.suites import load_suite

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    suite = load_suite("few_shot", "sd15")
    cells = plan_cells(suite, RunOptions(suite=suite.name, profile="sd15", methods=["diffusemix"]))
    profile = dataclasses.replace(get_profile("sd15", environ={}), local_files_only=True)
    with pytest.raises(ModelsMissingError) as info:
        check_models(suite, cells, profile)
    message = str(info.value)
    assert "InstructPix2Pix pipeline [timbrooks/instruct-pix2pix]" in message
    assert "AUGBENCH_SD15_INSTRUCT_PIPELINE=DIR" in message and "augbench models check --profile sd15" in message
    editor = tmp_path / "editor"
    editor.mkdir()
    env = {"AUGBENCH_SD15_INSTRUCT_PIPELINE": str(editor)}
    assert get_profile("sd15", environ=env).instruct_pipeline == str(editor)
    with pytest.raises(ConfigError, match="AUGBENCH_SD15_INSTRUCT_PIPELINE"):
        DiffuseMix().setup(None, MethodContext(profile=get_profile("sd15", environ=env)))
    with pytest.raises(ValueError, match="AUGBENCH_SD15_INSTRUCT_PIPELINE"):
        get_profile("sd15", environ={"AUGBENCH_SD15_INSTRUCT_PIPELINE": str(tmp_path / "nowhere")})


# --- the embedded world's editor: edit pairs and a smoke build -------------------------------------------------


def _corpus_scene(i: int):
    from augbench.data import open_dataset

    return open_dataset("toycorpus").item(f"train/{i:06d}").scene


def test_scene_layers_match_the_render_and_find_the_bird():
    from augbench.world.build.edits import scene_layers
    from augbench.world.render import render_scene

    scene = _corpus_scene(0)
    layers = scene_layers(scene, 64)
    assert np.array_equal(layers.image, render_scene(scene, 64))
    cy, cx = int(scene.cy * 64), int(scene.cx * 64)
    assert layers.bird[cy, cx] > 0.9 and layers.bird[0, 0] == 0 and 0.03 < layers.bird.mean() < 0.4
    assert layers.ground[0].max() == 0 and layers.ground[-1].min() == 1  # sky above, ground below


@pytest.mark.parametrize("kind", ["autumn", "snowy", "rainbow"])
def test_season_edits_keep_the_bird_and_change_the_background(kind):
    from augbench.world.build.edits import apply_edit, scene_layers

    layers = scene_layers(_corpus_scene(1), 64)
    edited = apply_edit(kind, layers, np.random.default_rng(0)).astype(int)
    source = layers.image.astype(int)
    bird, background = layers.bird > 0.999, layers.bird == 0
    assert np.abs(edited[bird] - source[bird]).max() <= 1
    assert np.abs(edited[background] - source[background]).mean() > 5


def test_edit_pairs_are_deterministic_and_carry_readme_instructions():
    from augbench.world.build.edits import EDITS, edit_pair

    scene = _corpus_scene(2)
    a = edit_pair(scene, 32, np.random.default_rng(4))
    b = edit_pair(scene, 32, np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2])) and a[2:] == b[2:]
    readme = {texts[0] for kind, texts in EDITS.items() if kind not in ("night", "background")}
    assert readme == set(README_PROMPTS)
    moved = edit_pair(_corpus_scene(1), 32, np.random.default_rng(0), kind="background")
    assert moved[2].startswith("make it ") and not np.array_equal(moved[0], moved[1])


def _interrupt_editor_after(monkeypatch, steps: int) -> None:
    from augbench.world.build.loops import LoopCheckpoint

    real_save = LoopCheckpoint.maybe_save

    def save_then_die(self, done, total, modules, *args, **kwargs):
        real_save(self, done, total, modules, *args, **kwargs)
        if done == steps:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(LoopCheckpoint, "maybe_save", save_then_die)


@pytest.fixture(scope="module")
def world_copy(tmp_path_factory):
    """A copy of the committed world (links kept), for editor builds that must not touch the committed folder."""
    import shutil

    from augbench.run.profiles import WORLD_WEIGHTS

    target = tmp_path_factory.mktemp("world") / "weights"
    shutil.copytree(WORLD_WEIGHTS, target, symlinks=True, ignore=shutil.ignore_patterns("editor"))
    return target


def test_a_smoke_editor_build_publishes_an_instruct_pix2pix_folder(world_copy, capsys, one_thread):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    from augbench.diffusion.instruct import check_instruct_pipeline
    from augbench.run.profiles import get_profile
    from augbench.world.build.editor import main

    assert main(["--weights", str(world_copy), "--smoke", "--threads", "1", "--processes", "1"]) == 0
    assert "editor built" in capsys.readouterr().out
    editor = world_copy / "editor"
    record = json.loads((editor / "build.json").read_text())
    assert record["config"]["editor_steps"] == 2 and np.isfinite(record["stats"]["final_loss"])
    assert {"edit_mae", "identity_mae", "oracle_accuracy_editor_edit"} <= set(record["check"])
    assert (editor / "vae" / "diffusion_pytorch_model.safetensors").resolve() == \
        (world_copy / "sd" / "vae" / "diffusion_pytorch_model.safetensors").resolve()
    assert (editor / "text_encoder" / "model.safetensors").resolve().parent == (world_copy / "clip").resolve()
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(str(editor), local_files_only=True)
    assert pipe.unet.config.in_channels == 2 * pipe.vae.config.latent_channels == 16
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    profile = get_profile("embedded", environ={"AUGBENCH_EMBEDDED_INSTRUCT_PIPELINE": str(editor)})
    check_instruct_pipeline(profile)  # complete: no error
    from augbench.data import open_dataset
    from augbench.data.core import Subset

    source = open_dataset("toybirds")
    subset = Subset.of_source(source, "train", "full", {}, tuple(source.samples("train")[:2]))
    ctx = MethodContext(profile=profile, source=source, batch_size=2)
    method = DiffuseMix(num_inference_steps=2, fractal_count=2)
    samples = method.generate(method.plan(subset, 2, 0, ctx=ctx), ctx)
    assert [s.image_array().shape for s in samples] == [(64, 64, 3)] * 2


def test_an_interrupted_editor_build_resumes_to_the_same_weights(world_copy, tmp_path, monkeypatch, one_thread):
    import shutil

    from augbench.world.build.editor import _world_recipe, build_editor

    settings = dict(editor_steps=2, editor_pairs=4, editor_batch=2, check_editor_images=2, check_editor_steps=1,
                    threads=1, processes=1, checkpoint_every=1)
    whole, again = tmp_path / "a" / "weights", tmp_path / "b" / "weights"
    for target in (whole, again):
        shutil.copytree(world_copy, target, symlinks=True, ignore=shutil.ignore_patterns("editor"))
    build_editor(whole, _world_recipe(whole, **settings), log=lambda s: None)
    with monkeypatch.context() as m:
        _interrupt_editor_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            build_editor(again, _world_recipe(again, **settings), log=lambda s: None)
    assert not (again / "editor").exists()
    lines: list[str] = []
    build_editor(again, _world_recipe(again, **settings), log=lines.append, resume=True)
    assert any("resumed from" in line and "step 1" in line for line in lines)
    rel = Path("editor", "unet", "diffusion_pytorch_model.safetensors")
    assert (whole / rel).read_bytes() == (again / rel).read_bytes()
    assert not again.with_name("weights.editor-building").exists()


def test_the_editor_is_a_stage_of_the_world_build(world_copy, tmp_path, one_thread):
    """Its identity follows the UNet's and its own settings; as a stage it trains on the staged ``sd/`` and saves
    ``editor/`` beside it (what ``augbench world build`` runs after the UNet)."""
    import shutil

    from augbench.world.build import BuildConfig, stage_identities
    from augbench.world.build.editor import editor_stage

    cfg = BuildConfig.smoke()
    ids = stage_identities(cfg)
    longer = stage_identities(dataclasses.replace(cfg, editor_steps=3))
    assert longer["unet"] == ids["unet"] and longer["editor"] != ids["editor"]
    assert stage_identities(dataclasses.replace(cfg, unet_steps=3))["editor"] != ids["editor"]
    assert stage_identities(dataclasses.replace(cfg, check_editor_images=5))["editor"] == ids["editor"]
    assert editor_stage(dataclasses.replace(cfg, editor_steps=0), tmp_path, tmp_path, print) is None

    staging = tmp_path / "weights.building"
    shutil.copytree(world_copy, staging, symlinks=True, ignore=shutil.ignore_patterns("editor"))
    from augbench.world.build.editor import _world_recipe

    world_cfg = _world_recipe(staging, editor_steps=2, editor_pairs=4, editor_batch=2, check_editor_images=2,
                              check_editor_steps=1, threads=1, processes=1)
    (tmp_path / "stages").mkdir()
    stats = editor_stage(world_cfg, tmp_path / "stages", staging, lambda s: None)
    assert np.isfinite(stats["final_loss"]) and "edit_mae" in stats["check"]
    assert (tmp_path / "stages" / "editor.pt").is_file() and (staging / "editor" / "build.json").is_file()
    again = editor_stage(world_cfg, tmp_path / "stages", staging, lambda s: None)
    assert again["resumed"]  # a finished stage is reused

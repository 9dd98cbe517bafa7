"""The world build recipe (few-step smoke run at tiny sizes) and the committed world models."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import augbench.world.build as build_module
from augbench.run.profiles import WORLD_WEIGHTS
from augbench.world.build import BuildConfig, build, sd15_scheduler_config, stage_identities
from augbench.world.build.recipe import COMMITTED_EDITOR


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "weights"
    record = build(out, BuildConfig.smoke(), log=lambda s: None)
    return out, record


def test_smoke_build_writes_loadable_pipeline_clip_and_oracle(smoke_world):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPModel, CLIPTokenizer

    out, record = smoke_world
    assert record["config"]["unet_steps"] == 2 and (out / "build.json").exists()
    # the run records' package versions plus the renderer's and the tokenizer vocabulary's
    assert {"torch", "diffusers", "transformers", "augbench", "pillow", "open_clip_torch"} <= set(record["versions"])
    for stage in ("clip", "vae", "unet", "oracle"):
        assert np.isfinite(record["stats"][stage]["final_loss"])
    pipe = StableDiffusionPipeline.from_pretrained(str(out / "sd"), local_files_only=True, torch_dtype=torch.float32)
    assert pipe.safety_checker is None
    assert pipe.tokenizer.model_max_length == 77
    sched = pipe.scheduler.config
    for key in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type"):
        assert sched[key] == sd15_scheduler_config()[key]
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    image = pipe("a photo of a bird", num_inference_steps=2, output_type="np", height=32, width=32,
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 32, 32, 3)
    clip = CLIPModel.from_pretrained(str(out / "clip"), local_files_only=True)
    tok = CLIPTokenizer.from_pretrained(str(out / "clip"), local_files_only=True)
    # the SD text encoder is the CLIP text tower, frozen: same weights
    a = clip.text_model.embeddings.token_embedding.weight
    b = pipe.text_encoder.get_input_embeddings().weight
    torch.testing.assert_close(a.float(), b.float())
    assert tok("a bird").input_ids == pipe.tokenizer("a bird").input_ids
    # ... and stored once: the pipeline's text encoder and tokenizer are links into clip/
    assert (out / "sd" / "text_encoder" / "model.safetensors").is_symlink()
    assert (out / "sd" / "tokenizer" / "tokenizer.json").resolve() == (out / "clip" / "tokenizer.json").resolve()


def test_same_recipe_rebuilds_byte_identical_weights(smoke_world, tmp_path):
    out, _ = smoke_world
    again = tmp_path / "weights"
    build(again, BuildConfig.smoke(), log=lambda s: None)
    files = sorted(p.relative_to(out) for p in out.rglob("*.safetensors"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.safetensors"))
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_oracle_alone_equals_the_full_builds_oracle(smoke_world, tmp_path):
    from augbench.world.build import build_oracle

    out, _ = smoke_world
    torch.manual_seed(12345)  # global RNG state must not matter
    build_oracle(tmp_path, BuildConfig.smoke(), log=lambda s: None, vae=out / "sd" / "vae")
    assert (tmp_path / "oracle" / "model.safetensors").read_bytes() == (out / "oracle" / "model.safetensors").read_bytes()
    assert not (tmp_path.with_name(tmp_path.name + ".oracle-building")).exists()  # its work folder is removed


def test_oracle_alone_needs_the_worlds_vae(tmp_path):
    from augbench.world.build import build_oracle

    with pytest.raises(FileNotFoundError, match="AutoencoderKL folder at"):
        build_oracle(tmp_path, BuildConfig.smoke(), log=lambda s: None)
    # without the VAE round trip among its degradations it needs none; a resume finding files of another
    # recipe (its identity differs) starts afresh instead of loading them
    cfg = dataclasses.replace(BuildConfig.smoke(), oracle_degradations=("blur", "jpeg"))
    work = tmp_path.with_name(tmp_path.name + ".oracle-building")
    work.mkdir(exist_ok=True)  # the failed build above left its (empty) work folder, as a stopped one does
    (work / "oracle.json").write_text(json.dumps({"oracle_lr": 1.0}))
    (work / "oracle.ckpt.pt").write_bytes(b"not a checkpoint")
    lines = []
    assert np.isfinite(build_oracle(tmp_path, cfg, log=lines.append, resume=True)["final_loss"])
    assert not any("resum" in line for line in lines)


def _interrupt_oracle_after(monkeypatch, steps: int):
    """Make the oracle loop die right after it checkpointed ``steps`` steps."""
    from augbench.world.build.loops import LoopCheckpoint

    real_save = LoopCheckpoint.maybe_save

    def save_then_die(self, done, total, modules, *args, **kwargs):
        real_save(self, done, total, modules, *args, **kwargs)
        if done == steps and "oracle" in modules:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(LoopCheckpoint, "maybe_save", save_then_die)


def test_oracle_alone_resumes_from_its_epoch_checkpoint(smoke_world, tmp_path, monkeypatch):
    """A killed ``build_oracle`` continues from its last epoch with ``resume=True`` and gives the bytes of an
    uninterrupted run."""
    from augbench.world.build import build_oracle

    out, _ = smoke_world
    cfg = dataclasses.replace(BuildConfig.smoke(), oracle_epochs=2)  # 48 images, batch 16: 3 steps an epoch
    vae = out / "sd" / "vae"
    build_oracle(tmp_path / "a", cfg, log=lambda s: None, vae=vae)
    with monkeypatch.context() as m:
        _interrupt_oracle_after(m, 3)
        with pytest.raises(KeyboardInterrupt):
            build_oracle(tmp_path / "b", cfg, log=lambda s: None, vae=vae)
    work = tmp_path / "b.oracle-building"
    assert {"oracle.json", "oracle_recon.pt", "oracle.ckpt.pt"} <= {p.name for p in work.iterdir()}
    lines = []
    stats = build_oracle(tmp_path / "b", cfg, log=lines.append, vae=vae, resume=True)
    assert any("resumed from" in line and "step 3" in line for line in lines), lines[:4]
    assert stats["recon_seconds"] == 0.0  # the VAE round trips were reused too
    weights = "oracle/model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()


def test_oracle_alone_rewrites_only_the_oracle_entries_of_build_json(smoke_world, tmp_path):
    from augbench.world.build import build_oracle

    out, _ = smoke_world
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "build.json").write_text((out / "build.json").read_text())
    before = json.loads((out / "build.json").read_text())
    cfg = dataclasses.replace(BuildConfig.smoke(), oracle_lr=1e-3, oracle_blur_sigma=(0.2, 0.9))
    stats = build_oracle(tmp_path / "w", cfg, log=lambda s: None, vae=out / "sd" / "vae")
    after = json.loads((tmp_path / "w" / "build.json").read_text())
    assert after["stats"]["oracle"] == json.loads(json.dumps(stats))
    assert after["config"]["oracle_lr"] == 1e-3 and after["config"]["oracle_blur_sigma"] == [0.2, 0.9]
    assert list(after["config"]) == list(before["config"])  # same keys, in the same places
    for key in set(before["config"]) - {"oracle_lr", "oracle_blur_sigma"}:
        assert after["config"][key] == before["config"][key], key
    assert {k: v for k, v in after.items() if k not in ("config", "stats")} == \
        {k: v for k, v in before.items() if k not in ("config", "stats")}
    assert {k: v for k, v in after["stats"].items() if k != "oracle"} == \
        {k: v for k, v in before["stats"].items() if k != "oracle"}


def test_weights_are_saved_in_fp16(smoke_world):
    from safetensors import safe_open

    out, _ = smoke_world
    for f in out.rglob("*.safetensors"):
        with safe_open(str(f), "pt") as fh:
            dtypes = {fh.get_slice(k).get_dtype() for k in fh.keys()}
        assert dtypes <= {"F16", "I64"}, (f, dtypes)


committed = pytest.mark.skipif(not (WORLD_WEIGHTS / "sd" / "model_index.json").exists(),
                               reason="committed world models not present")


@committed
def test_committed_pipeline_generates_offline(monkeypatch):
    from diffusers import StableDiffusionPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = StableDiffusionPipeline.from_pretrained(str(WORLD_WEIGHTS / "sd"), local_files_only=True,
                                                   torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(["a photo of a Common Gull bird"] * 2, num_inference_steps=3, output_type="np",
                  generator=[torch.Generator().manual_seed(i) for i in range(2)]).images
    assert images.shape == (2, 64, 64, 3) and np.isfinite(images).all()
    assert not np.allclose(images[0], images[1])


@committed
def test_committed_clip_and_build_record():
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(str(WORLD_WEIGHTS / "clip"), local_files_only=True)
    assert model.config.vision_config.image_size == 64
    record = json.loads((WORLD_WEIGHTS / "build.json").read_text())
    assert record["config"]["seed"] == 0 and record["build_seconds"] > 0
    stored = [f for d in ("sd", "clip") for f in (WORLD_WEIGHTS / d).rglob("*") if f.is_file() and not f.is_symlink()]
    assert sum(f.stat().st_size for f in stored) <= 25 * 10**6


@pytest.mark.parametrize("stage", ["vae", "unet"])
def test_data_parallel_training_matches_one_process(stage):
    """Two single-threaded processes on half batches train the same model as one process on the
    whole batch (same batches and noise from the same generator; only float summation order differs).

    Compared by outputs, not weights: a conv bias ahead of a one-channel GroupNorm gets a gradient
    of pure rounding noise, which Adam's first steps turn into +-lr either way without any effect.
    """
    from augbench.world.build.unet import make_unet, train_unet
    from augbench.world.build.vae import make_vae, train_vae

    cfg = dataclasses.replace(BuildConfig.smoke(), vae_steps=3, unet_steps=3)
    gen = torch.Generator().manual_seed(0)
    if stage == "vae":
        images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen)
        probe = build_module.to_unit(images[:4])
        train = lambda c: train_vae(c, images, log=lambda s: None)  # noqa: E731
        run = lambda m: m(probe, sample_posterior=False).sample  # noqa: E731
    else:
        lat = torch.randn(32, cfg.vae_latent_channels, 8, 8, generator=gen)
        text = torch.randn(16, 77, cfg.text_hidden, generator=gen)
        train = lambda c: train_unet(c, lat, lat.abs() * 0.1, 1.3, text, text[0], log=lambda s: None)  # noqa: E731
        run = lambda m: m(lat[:4], torch.tensor([10, 300, 600, 900]), encoder_hidden_states=text[:4]).sample  # noqa: E731
    outputs, losses = [], []
    with torch.no_grad():
        torch.manual_seed(0)
        untrained = run((make_vae if stage == "vae" else make_unet)(cfg).eval())
    for processes in (1, 2, 2):
        torch.manual_seed(0)  # the freshly built model's init, as build() seeds it
        model, stats = train(dataclasses.replace(cfg, processes=processes))
        assert stats["processes"] == processes
        losses.append(stats["final_loss"])
        with torch.no_grad():
            outputs.append(run(model))
    assert not torch.allclose(outputs[0], untrained, atol=1e-3), "training changed nothing"
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-3, atol=1e-3)
    assert torch.equal(outputs[2], outputs[1]), "two data-parallel runs of the same recipe differ"


def test_a_batch_that_does_not_split_over_the_processes_is_refused():
    from augbench.world.build.parallel import batch_slice, num_processes

    cfg = dataclasses.replace(BuildConfig.smoke(), unet_batch=6, processes=4)
    with pytest.raises(ValueError, match="does not split over 4 processes"):
        batch_slice(cfg.unet_batch, 0, num_processes(cfg))


def test_world_check_runs_on_smoke_models(smoke_world, tmp_path):
    """``world check`` end to end on the smoke-built models with a handful of images: every metric,
    old and new keys, and the sample grid (values are meaningless for 2-step models)."""
    from augbench.world.check import ATTRIBUTE_KEYS, MAX_TARGETS, TARGETS, CheckConfig, run_check

    out, _ = smoke_world
    cfg = CheckConfig(weights=out, heldout_images=4, generated_per_species=1, num_inference_steps=4,
                      batch_size=24, test_images=48, vae_oracle_images=8, img2img_images=4,
                      grid_path=tmp_path / "grid.png")
    results = run_check(cfg, log=lambda s: None)
    for key in ("vae_psnr_db", "clip_zero_shot_accuracy", "oracle_test_accuracy", "faithfulness_plain_name",
                "faithfulness_description", "build_seconds", "model_sizes_bytes", "targets", "meets_targets",
                "description_beats_plain_name", "check_seconds", "grid_path",  # the keys before issue 14
                "vae_recon_oracle_accuracy", "vae_real_oracle_accuracy", "img2img_fidelity_0.3",
                "img2img_fidelity_0.5", "img2img_fidelity_0.7", "attribute_chance",
                "attribute_faithfulness_plain_name", "attribute_faithfulness_description",
                "blurred_oracle_accuracy", "oracle_degradation_gap", "max_targets"):
        assert key in results, key
    for key in ("clip_zero_shot_accuracy", "oracle_test_accuracy", "faithfulness_description",
                "vae_recon_oracle_accuracy", "img2img_fidelity_0.5"):
        assert 0.0 <= results[key] <= 1.0, key
    assert set(results["meets_targets"]) == set(TARGETS) | set(MAX_TARGETS)
    assert results["oracle_degradation_gap"] == max(
        results["oracle_test_accuracy"] - results["blurred_oracle_accuracy"],
        results["vae_real_oracle_accuracy"] - results["vae_recon_oracle_accuracy"])
    assert set(results["attribute_faithfulness_description"]) == set(ATTRIBUTE_KEYS)
    assert results["attribute_chance"]["habitat"] == pytest.approx(0.5)  # 12 water and 12 land species
    assert (tmp_path / "grid.png").exists()
    json.dumps(results)


def test_attribute_agreement_reads_attributes_off_predicted_species():
    from augbench.data import open_dataset
    from augbench.world.check import attribute_agreement, species_attributes

    attrs = species_attributes(open_dataset("toybirds").card.raw["world"]["species"])
    labels = np.arange(24)
    assert set(attribute_agreement(labels, labels, attrs).values()) == {1.0}
    # Orange-crowned Gull (0) read as Common Gull (3): same genus, so body and habitat agree, crown does not
    same_genus = attribute_agreement(np.array([3]), np.array([0]), attrs)
    assert same_genus["body"] == same_genus["habitat"] == 1.0 and same_genus["crown"] == 0.0


def test_build_options_latent_channels_v_prediction_min_snr_and_perceptual(tmp_path):
    """The issue-14 recipe knobs build a loadable pipeline: 8 latent channels (UNet follows), standardised
    latents, v-prediction (the saved scheduler says so), min-SNR weighting and the ImageNet perceptual
    VAE loss."""
    from diffusers import StableDiffusionPipeline

    cfg = dataclasses.replace(BuildConfig.smoke(), vae_latent_channels=8, vae_perceptual=0.5, vae_standardize=True,
                              unet_prediction="v_prediction", unet_min_snr_gamma=5.0)
    record = build(tmp_path / "w", cfg, log=lambda s: None, with_oracle=False)
    for stage in ("vae", "unet"):
        assert np.isfinite(record["stats"][stage]["final_loss"])
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "w" / "sd"), local_files_only=True,
                                                   torch_dtype=torch.float32)
    assert pipe.vae.config.latent_channels == pipe.unet.config.in_channels == 8
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.vae.config.scaling_factor == 1.0 and record["vae_scaling_factor"] == 1.0
    image = pipe("a photo of a bird", num_inference_steps=2, output_type="np", height=32, width=32,
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()


def test_standardize_latents_keeps_reconstructions_and_whitens_channels():
    from augbench.world.build.vae import encode_latents, make_vae, standardize_latents

    torch.manual_seed(0)
    cfg = dataclasses.replace(BuildConfig.smoke(), vae_latent_channels=8)
    vae = make_vae(cfg).eval()
    with torch.no_grad():  # a VAE whose latents are off-centre and unevenly scaled per channel
        vae.quant_conv.bias[:8] += torch.linspace(-2, 2, 8)
        vae.quant_conv.weight[:8] *= torch.linspace(0.2, 3, 8).view(-1, 1, 1, 1)
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = build_module.to_unit(images)
    with torch.no_grad():
        before = vae(x, sample_posterior=False).sample
        lat_mean, lat_std = encode_latents(vae, images)
        new_mean, new_std = standardize_latents(vae, lat_mean, lat_std)
        after = vae(x, sample_posterior=False).sample
        post = vae.encode(x).latent_dist
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(post.mean, new_mean[:12], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(post.std, new_std[:12], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(new_mean.mean(dim=(0, 2, 3)), torch.zeros(8), rtol=0, atol=1e-4)
    torch.testing.assert_close(new_mean.std(dim=(0, 2, 3)), torch.ones(8), rtol=0, atol=1e-4)


def test_oracle_degradations_are_seeded_and_optional():
    from augbench.world.build import degrade_images

    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(degrade_images(x, torch.Generator().manual_seed(1), p=0.0), x)
    a = degrade_images(x, torch.Generator().manual_seed(1), p=1.0)
    b = degrade_images(x, torch.Generator().manual_seed(1), p=1.0)
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    assert all(not torch.equal(a[i], x[i]) for i in range(len(x)))
    # the VAE round trip replaces an image by its reconstruction; it needs them
    recon = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    assert torch.equal(degrade_images(x, torch.Generator().manual_seed(1), 1.0, ("vae",), recon), recon)
    with pytest.raises(ValueError, match="needs the images' VAE round trips"):
        degrade_images(x, torch.Generator().manual_seed(1), 1.0, ("vae",))
    with pytest.raises(ValueError, match="unknown oracle degradations"):
        degrade_images(x, torch.Generator().manual_seed(1), 1.0, ("sharpen",))
    # a second degradation goes on top of the VAE round trip: some reconstructions come out noisy
    x, recon = torch.zeros(64, 3, 8, 8), torch.full((64, 3, 8, 8), 0.5)
    both = degrade_images(x, torch.Generator().manual_seed(1), 1.0, ("vae", "noise"), recon, second=1.0)
    from_recon = (both - 0.5).abs().amax((1, 2, 3)) < 0.25  # else noise on the zero image
    assert from_recon.any() and (~from_recon).any()
    assert any(not torch.equal(both[i], recon[i]) for i in torch.nonzero(from_recon).flatten())


def test_oracle_blur_is_a_gaussian_of_the_drawn_radius_and_jpeg_a_lossy_round_trip():
    from augbench.world.build.oracle import down_up, gaussian_blur, jpeg_round_trip

    delta = torch.zeros(2, 3, 21, 21)
    delta[:, :, 10, 10] = 1.0
    sigma = torch.tensor([0.7, 1.4])
    blurred = gaussian_blur(delta, sigma)
    offsets = (torch.arange(21) - 10.0).square()
    second_moment = (blurred[:, 0].sum(1) * offsets).sum(1)  # variance of the row profile
    torch.testing.assert_close(blurred.sum((2, 3)), torch.ones(2, 3))
    torch.testing.assert_close(second_moment, sigma.square(), rtol=0.02, atol=0.01)
    flat = torch.full((2, 3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, sigma), flat)
    torch.testing.assert_close(down_up(flat, torch.tensor([2.0, 3.0])), flat)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    low, high = jpeg_round_trip(x, torch.tensor([10, 10])), jpeg_round_trip(x, torch.tensor([95, 95]))
    assert low.shape == x.shape and (low - x).abs().mean() > (high - x).abs().mean()


def test_recipes_are_named():
    assert BuildConfig.recipe("cpu") == BuildConfig()
    v2 = BuildConfig.recipe("v2", seed=3)
    assert v2.vae_latent_channels == 8 and v2.vae_standardize and v2.seed == 3
    assert v2.unet_steps > BuildConfig().unet_steps and v2.vae_steps > BuildConfig().vae_steps
    with pytest.raises(ValueError, match="unknown world recipe"):
        BuildConfig.recipe("nope")


def _interrupt_unet_after(monkeypatch, steps: int):
    """Make the UNet loop die right after it checkpointed ``steps`` steps (a killed build)."""
    from augbench.world.build.loops import LoopCheckpoint

    real_save = LoopCheckpoint.maybe_save

    def save_then_die(self, done, total, modules, *args, **kwargs):
        real_save(self, done, total, modules, *args, **kwargs)
        if done == steps and "unet" in modules:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(LoopCheckpoint, "maybe_save", save_then_die)


def test_resumed_build_equals_an_uninterrupted_one(smoke_world, tmp_path, monkeypatch):
    out, _ = smoke_world
    cfg = dataclasses.replace(BuildConfig.smoke(), checkpoint_every=1)
    again = tmp_path / "weights"
    with monkeypatch.context() as m:
        _interrupt_unet_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            build(again, cfg, log=lambda s: None)
    stages = tmp_path / "weights.building" / "stages"
    assert {"clip.json", "vae.pt", "unet.ckpt.pt"} <= {p.name for p in stages.iterdir()}
    assert not again.exists()  # nothing half-built is published
    lines = []
    record = build(again, cfg, log=lines.append, resume=True)
    assert any("resumed from" in line and "step 1" in line for line in lines)
    assert record["resumed"] and record["stats"]["vae"]["resumed"] and not (tmp_path / "weights.building").exists()
    for rel in sorted(p.relative_to(out) for p in out.rglob("*.safetensors")):
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_resume_of_a_different_recipe_starts_afresh(tmp_path, monkeypatch):
    cfg = dataclasses.replace(BuildConfig.smoke(), checkpoint_every=1)
    with monkeypatch.context() as m:
        _interrupt_unet_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            build(tmp_path / "w", cfg, log=lambda s: None)
    lines = []
    record = build(tmp_path / "w", dataclasses.replace(cfg, seed=1), log=lines.append, resume=True)
    assert any("different recipe" in line for line in lines)
    assert not record["resumed"] and not any(s.get("resumed") for s in record["stats"].values() if s)


def test_resume_with_a_longer_unet_reuses_the_kept_clip_and_vae(smoke_world, tmp_path):
    out, first = smoke_world
    cfg = BuildConfig.smoke()
    build(tmp_path / "w", cfg, log=lambda s: None, keep_stages=True)
    kept = tmp_path / "w.stages"
    assert {"clip.json", "clip", "vae.pt", "unet.pt", "identity.json"} <= {p.name for p in kept.iterdir()}
    lines = []
    build(tmp_path / "other", dataclasses.replace(cfg, seed=1), log=lines.append, resume=True)
    assert any("nothing to resume" in line for line in lines) and kept.exists()  # unrelated: not consumed
    build(tmp_path / "w", dataclasses.replace(cfg, seed=1), log=lines.append, resume=True)
    assert kept.exists()  # a kept build that shares no stage with the recipe is left alone
    lines = []
    record = build(tmp_path / "w", dataclasses.replace(cfg, unet_steps=cfg.unet_steps + 1), log=lines.append,
                   resume=True)
    assert any("reusing clip, vae (unet, editor redone)" in line for line in lines), lines[:3]
    stats = record["stats"]
    assert stats["clip"]["resumed"] and stats["vae"]["resumed"] and not stats["unet"].get("resumed")
    assert not kept.exists() and not (tmp_path / "w.building").exists()
    same = ("clip/model-00001-of-00002.safetensors", "sd/vae/diffusion_pytorch_model.safetensors")
    for rel in same:
        assert (out / rel).read_bytes() == (tmp_path / "w" / rel).read_bytes(), rel
    unet = "sd/unet/diffusion_pytorch_model.safetensors"
    assert (out / unet).read_bytes() != (tmp_path / "w" / unet).read_bytes()


def test_init_from_continues_a_built_world_keeping_its_clip_vae_and_oracle(smoke_world, tmp_path):
    out, _ = smoke_world
    cfg = dataclasses.replace(BuildConfig.smoke(), init_from=str(out))
    record = build(tmp_path / "next", cfg, log=lambda s: None)
    nxt = tmp_path / "next"
    same = ("clip/model-00001-of-00002.safetensors", "clip/model-00002-of-00002.safetensors",
            "oracle/model.safetensors")
    for rel in same:
        assert (out / rel).read_bytes() == (nxt / rel).read_bytes(), rel
    vae = "sd/vae/diffusion_pytorch_model.safetensors"
    unet = "sd/unet/diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file

    # the VAE is re-standardised on its own (already standardised) latents: equal up to fp16 rounding
    first, again = load_file(str(out / vae)), load_file(str(nxt / vae))
    assert all(torch.allclose(first[k].float(), again[k].float(), atol=2e-2) for k in first)
    assert (out / unet).read_bytes() != (nxt / unet).read_bytes()  # trained further
    assert record["init_from"]["sha256"] == build_module.weights_fingerprint(out)
    assert record["stats"]["vae"]["inherited_from"] == str(out)
    # the continued world's bytes are part of every stage's identity
    assert stage_identities(cfg)["vae"] != stage_identities(BuildConfig.smoke())["vae"]


def test_recipe_v4_requires_the_world_it_continues(tmp_path):
    with pytest.raises(ValueError, match="--init-from"):
        BuildConfig.recipe("v4")
    assert BuildConfig.recipe("v4", init_from="somewhere").init_from == "somewhere"
    with pytest.raises(FileNotFoundError, match="expected a built world folder"):
        build(tmp_path / "w", dataclasses.replace(BuildConfig.smoke(), init_from=str(tmp_path / "missing")),
              log=lambda s: None)
    assert not (tmp_path / "w.building").exists()  # refused before anything was staged


def test_contrastive_loss_is_clip_loss_and_hard_negative_columns_only_add_image_to_text_terms():
    from augbench.diffusion.tokenizer import build_clip_tokenizer
    from augbench.metrics.clip import clip_normalize
    from augbench.world.build.clip import _contrastive_loss, make_clip

    cfg = BuildConfig.smoke()
    tokenizer = build_clip_tokenizer(model_max_length=77)
    torch.manual_seed(0)
    model = make_clip(cfg, tokenizer).eval()
    tok = tokenizer([f"a photo of a {c} bird" for c in ("red", "blue", "green", "black", "white", "grey")],
                    padding=True, return_tensors="pt")
    pixels = clip_normalize(torch.randint(0, 256, (6, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8))
    with torch.no_grad():
        out = model(**tok, pixel_values=pixels, return_loss=True)
    logits = out.logits_per_image
    assert torch.allclose(_contrastive_loss(logits), out.loss)  # the library's CLIP loss without negatives
    # a negative column as close to every image as its own caption: the image-to-text half rises,
    # the text-to-image half (over the batch's captions) is unchanged
    with_negative = torch.cat([logits, logits.diagonal()[:, None]], dim=1)
    assert _contrastive_loss(with_negative) > _contrastive_loss(logits)
    far_negative = torch.cat([logits, torch.full((6, 1), -1e4)], dim=1)
    assert torch.allclose(_contrastive_loss(far_negative), _contrastive_loss(logits))


def test_recipes_differ_only_where_documented():
    cpu, v2, v3 = BuildConfig.recipe("cpu"), BuildConfig.recipe("v2"), BuildConfig.recipe("v3")
    assert dataclasses.replace(v3, vae_steps=v2.vae_steps) == v2  # v3 only trains the VAE longer
    assert dataclasses.replace(v2, vae_steps=cpu.vae_steps, unet_steps=cpu.unet_steps) == cpu
    assert stage_identities(v3)["clip"] == stage_identities(v2)["clip"]
    v4 = BuildConfig.recipe("v4", init_from=str(WORLD_WEIGHTS))
    # v4 continues a built world's UNet at half the peak learning rate and trains the longer editor; nothing else
    assert dataclasses.replace(v4, unet_lr=v3.unet_lr, init_from=None, editor_steps=v3.editor_steps,
                               editor_pairs=v3.editor_pairs) == v3
    assert (v4.editor_steps, v4.editor_pairs) == (COMMITTED_EDITOR["editor_steps"], COMMITTED_EDITOR["editor_pairs"])
    assert v4.unet_lr == v3.unet_lr / 2 and v4.unet_steps == v3.unet_steps
    assert all(stage_identities(v4)[s]["init_sha256"] for s in ("clip", "vae", "unet"))
    with pytest.raises(ValueError, match="expected one of cpu, gpu, v2, v3, v4"):
        BuildConfig.recipe("v9")


def test_a_data_parallel_worker_ends_when_its_build_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    child_pid = tmp_path / "child.pid"
    worker = ("import os, sys, time; from augbench.world.build.parallel import exit_with_parent; exit_with_parent(0.1); "
              "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)")
    build_process = ("import subprocess, sys, time; "
                     f"subprocess.Popen([sys.executable, '-c', {worker!r}, sys.argv[1]]); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", build_process, str(child_pid)])
    deadline = time.time() + 30
    while not child_pid.exists() or not child_pid.read_text():
        assert time.time() < deadline, "worker did not start"
        time.sleep(0.1)
    pid = int(child_pid.read_text())
    os.kill(parent.pid, signal.SIGKILL)  # no finally, no atexit: only the worker's own watch can end it
    parent.wait()
    deadline = time.time() + 10
    while _alive(pid):
        assert time.time() < deadline, "orphaned worker kept running"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its new parent) counts as ended
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False

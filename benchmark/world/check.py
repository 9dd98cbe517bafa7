"""``augbench world check``: a quality report of the embedded world's foundation models.

Offline, a few minutes on 2 CPU cores. Reports (DESIGN.md, "The embedded miniature world"):

* VAE reconstruction PSNR on held-out corpus images;
* CLIP zero-shot species accuracy on the toybirds test set (prompts ``a photo of a {name} bird``);
* text-to-image faithfulness: the share of generated images that the oracle classifier assigns to
  the prompted species, (a) with plain-name prompts ``a photo of a {name} bird`` and (b) with
  attribute-description prompts (the species' attributes spelled out);
* a per-attribute breakdown of that faithfulness: for each generated image, which attributes (body
  colour, crown colour, wing colour, wing pattern, beak, tail, size, habitat) of the species the
  oracle assigns it to match the prompted species' (``attribute_faithfulness_*``), next to what a
  uniformly random species would match (``attribute_chance``);
* oracle accuracy on VAE reconstructions of toybirds test images (posterior mean, decode) next to
  its accuracy on the same real images: no UNet can be more faithful than its VAE;
* oracle accuracy on blurred test images (Gaussian, ``blur_sigma`` = 1 px by default, and a sweep over
  ``blur_sigmas``; PIL's blur, not the build's own) and the oracle's degradation gap, clean accuracy minus
  the worse of blurred and VAE-reconstructed (``oracle_degradation_gap``, at most 2 points): a judge of
  species must not read a soft image of the right species as another one (issue 24, part 3);
* img2img fidelity: the oracle accuracy of ``StableDiffusionImg2ImgPipeline`` outputs (the loaded
  pipeline's components, DPM-Solver++, prompt ``a photo of a {name} bird``) started from toybirds
  test images at strengths 0.3 / 0.5 / 0.7 (``img2img_fidelity_<strength>``);
* the oracle's own test accuracy, build time and model sizes;
* a PNG grid per species, real images next to generated ones, so a person can look.

Why the attribute breakdown reads attributes off the oracle's species prediction rather than from
per-attribute classifiers: it needs no extra model (no new training, nothing more to commit or
check), and with species that differ in one or two attributes within a genus it separates the two
failure modes the issue is about -- right genus but wrong fine attribute (body and habitat match,
crown or wing pattern does not) versus the wrong kind of bird altogether. Its limit: an image is
mapped to the nearest of the 24 species, so an attribute that no species combines with the others
drawn is read as whatever the nearest species has.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from augbench.run.profiles import WORLD_WEIGHTS
from augbench.run.seeding import derive_seed, make_generator

TARGETS = {"vae_psnr_db": 24.0, "oracle_test_accuracy": 0.95, "clip_zero_shot_accuracy": 0.50,
           "faithfulness_description": 0.60, "faithfulness_plain_name": 0.25, "vae_recon_oracle_accuracy": 0.90,
           "img2img_fidelity_0.5": 0.70}
# upper bounds (``meets_targets`` says ``value <= bound``)
MAX_TARGETS = {"oracle_degradation_gap": 0.02}
# attributes of the per-attribute breakdown: the BirdSpec attributes plus the species' habitat
ATTRIBUTE_KEYS = ("body", "crown", "wing", "pattern", "beak", "tail", "size", "habitat")


@dataclass
class CheckConfig:
    weights: Path = WORLD_WEIGHTS
    heldout_images: int = 256
    generated_per_species: int = 8
    num_inference_steps: int = 25
    guidance_scale: float = 7.5
    batch_size: int = 48
    seed: int = 0
    grid_path: Path | None = None
    # toybirds test images for CLIP zero-shot and oracle accuracy (None: the whole test split)
    test_images: int | None = None
    # test images (spread evenly over the class-major test split) reconstructed by the VAE (None: every
    # test image, the ones oracle_test_accuracy is measured on) and used as img2img sources
    vae_oracle_images: int | None = None
    img2img_images: int = 128
    img2img_strengths: tuple[float, ...] = (0.3, 0.5, 0.7)
    # std (pixels) of the Gaussian blur of blurred_oracle_accuracy (PSNR 25.4 dB on the test renders, below
    # the VAE's 29.5 dB), and the stds of the wider sweep blurred_oracle_accuracy_by_sigma
    blur_sigma: float = 1.0
    blur_sigmas: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)


def load_world_pipeline(weights: Path = WORLD_WEIGHTS, dtype=torch.float32):
    """The world's ``StableDiffusionPipeline``, loaded offline in fp32 (CPU-friendly)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(weights / "sd"), local_files_only=True, torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_world_clip(weights: Path = WORLD_WEIGHTS, dtype=torch.float32):
    from transformers import CLIPModel, CLIPTokenizer

    path = str(weights / "clip")
    model = CLIPModel.from_pretrained(path, local_files_only=True, torch_dtype=dtype).eval()
    return model, CLIPTokenizer.from_pretrained(path, local_files_only=True)


def load_oracle(weights: Path = WORLD_WEIGHTS):
    """The oracle classifier (timm tf_efficientnet_lite0) of the world in ``weights`` and its input normalisation."""
    return load_oracle_folder(Path(weights) / "oracle")


def load_oracle_folder(folder: Path):
    """An oracle saved by the world build (``config.json`` + ``model.safetensors``) from any folder, e.g. a
    kept copy of an earlier one; returns the model (eval, fp32) and its normalisation."""
    import timm
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "config.json").exists() or not (folder / "model.safetensors").exists():
        raise FileNotFoundError(f"expected an oracle folder (config.json + model.safetensors) at {folder}, e.g. "
                                "benchmark/world/weights/oracle or a copy of it")
    cfg = json.loads((folder / "config.json").read_text())
    model = timm.create_model(cfg["architecture"], pretrained=False, num_classes=cfg["num_classes"])
    state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
    model.load_state_dict(state)
    return model.eval(), (tuple(cfg["mean"]), tuple(cfg["std"]))


def blur_images(images_u8: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 HxWx3 images blurred by PIL's Gaussian of std ``sigma`` pixels."""
    from PIL import Image, ImageFilter

    return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(sigma))) for im in images_u8])


@torch.no_grad()
def classify(model, norm, images_u8: np.ndarray, batch: int = 128) -> np.ndarray:
    """Predicted labels for uint8 HxWx3 images."""
    mean = torch.tensor(norm[0]).view(1, 3, 1, 1)
    std = torch.tensor(norm[1]).view(1, 3, 1, 1)
    preds = []
    for i in range(0, len(images_u8), batch):
        x = torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch])).permute(0, 3, 1, 2).float() / 255.0
        preds.append(model((x - mean) / std).argmax(1).numpy())
    return np.concatenate(preds)


@torch.no_grad()
def vae_psnr(vae, images_u8: np.ndarray) -> float:
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = ((rec - x) / 2).pow(2).flatten(1).mean(1)  # in [0, 1] units
    return float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean())


@torch.no_grad()
def clip_zero_shot(model, tokenizer, images_u8: np.ndarray, labels: np.ndarray, prompts: list[str]) -> float:
    from augbench.metrics.clip import clip_normalize

    text = tokenizer(prompts, padding=True, return_tensors="pt")
    tf = model.get_text_features(**text)
    tf = getattr(tf, "pooler_output", tf)
    tf = tf / tf.norm(dim=-1, keepdim=True)
    correct = 0
    side = model.config.vision_config.image_size
    for i in range(0, len(images_u8), 256):
        x = torch.from_numpy(images_u8[i:i + 256]).permute(0, 3, 1, 2)
        if x.shape[-1] != side:  # e.g. smoke-built models at 32 px
            x = torch.nn.functional.interpolate(x.float(), size=(side, side), mode="bilinear",
                                                antialias=True).round().clamp(0, 255).to(torch.uint8)
        f = model.get_image_features(pixel_values=clip_normalize(x))
        f = getattr(f, "pooler_output", f)
        f = f / f.norm(dim=-1, keepdim=True)
        correct += int(((f @ tf.T).argmax(1).numpy() == labels[i:i + 256]).sum())
    return correct / len(labels)


@torch.no_grad()
def generate(pipe, prompts: list[str], seeds: list[int], steps: int, guidance: float, batch: int,
             size: int) -> np.ndarray:
    """Text-to-image with one generator per image (batch-size independent), uint8 output."""
    from diffusers import DPMSolverMultistepScheduler

    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    out = []
    for i in range(0, len(prompts), batch):
        gens = [make_generator(s) for s in seeds[i:i + batch]]
        imgs = pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                    height=size, width=size, output_type="np").images
        out.append((np.clip(imgs, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


@torch.no_grad()
def vae_reconstruct(vae, images_u8: np.ndarray, batch: int = 64) -> np.ndarray:
    """Decode of the posterior mean of every image, uint8 HxWx3 (as the pipeline's image processor rounds)."""
    out = []
    for i in range(0, len(images_u8), batch):
        x = torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        out.append(((rec.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


@torch.no_grad()
def img2img(pipe, images_u8: np.ndarray, prompts: list[str], seeds: list[int], strength: float, steps: int,
            guidance: float, batch: int) -> np.ndarray:
    """``StableDiffusionImg2ImgPipeline`` built from ``pipe``'s components, DPM-Solver++, uint8 output."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline

    i2i = StableDiffusionImg2ImgPipeline(**{**pipe.components, "safety_checker": None, "feature_extractor": None},
                                         requires_safety_checker=False)
    i2i.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    i2i.set_progress_bar_config(disable=True)
    out = []
    for i in range(0, len(prompts), batch):
        init = torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch])).permute(0, 3, 1, 2).float() / 255.0
        gens = [make_generator(s) for s in seeds[i:i + batch]]
        imgs = i2i(prompts[i:i + batch], image=init, strength=strength, num_inference_steps=steps,
                   guidance_scale=guidance, generator=gens, output_type="np").images
        out.append((np.clip(imgs, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


def species_attributes(species_table: list[dict]) -> dict[str, np.ndarray]:
    """``{attribute: [num_species] array of values}`` for :data:`ATTRIBUTE_KEYS`."""
    return {k: np.array([entry[k] for entry in species_table]) for k in ATTRIBUTE_KEYS}


def attribute_agreement(predicted: np.ndarray, prompted: np.ndarray, attrs: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of images whose predicted species has the prompted species' value, per attribute."""
    return {k: float((v[predicted] == v[prompted]).mean()) for k, v in attrs.items()}


def attribute_chance(attrs: dict[str, np.ndarray]) -> dict[str, float]:
    """:func:`attribute_agreement` of a uniformly random prediction (over all prompted/predicted pairs)."""
    return {k: float((v[:, None] == v[None, :]).mean()) for k, v in attrs.items()}


def evenly_spaced(n_total: int, n: int | None) -> np.ndarray:
    """``n`` indices spread evenly over ``range(n_total)`` (every class of a class-major split; None: all)."""
    n = n_total if n is None else min(n, n_total)
    return np.linspace(0, n_total - 1, n).round().astype(int)


def run_check(cfg: CheckConfig | None = None, log=print) -> dict:
    """Compute every metric of the report; writes the sample grid when ``cfg.grid_path`` is set."""
    from augbench.data import open_dataset

    cfg = cfg or CheckConfig()
    weights = Path(cfg.weights)
    missing = [p for p in ("sd/model_index.json", "clip/config.json", "oracle/config.json") if not (weights / p).exists()]
    if missing:
        raise FileNotFoundError(
            f"world models missing under {weights}: {', '.join(missing)}. Build them with `augbench world build` "
            "(or `nox -s world`), or restore the committed files with `git checkout -- benchmark/world/weights`."
        )
    t0 = time.time()
    results: dict = {}
    corpus = open_dataset("toycorpus")
    toy = open_dataset("toybirds")
    pipe = load_world_pipeline(weights)
    held = np.stack([corpus.render(s.image_id) for s in corpus.samples("heldout")[: cfg.heldout_images]])
    results["vae_psnr_db"] = vae_psnr(pipe.vae, held)
    log(f"VAE reconstruction PSNR: {results['vae_psnr_db']:.2f} dB on {len(held)} held-out images")

    test = toy.samples("test")
    if cfg.test_images is not None:
        test = [test[i] for i in evenly_spaced(len(test), cfg.test_images)]
    test_imgs = np.stack([toy.render(s.image_id) for s in test])
    test_labels = np.array([s.label for s in test])
    names = [toy.card.prompt(c) for c in range(toy.num_classes)]
    clip, tok = load_world_clip(weights)
    results["clip_zero_shot_accuracy"] = clip_zero_shot(clip, tok, test_imgs, test_labels, names)
    log(f"CLIP zero-shot species accuracy: {results['clip_zero_shot_accuracy']:.3f} ({toy.num_classes} species)")

    oracle = load_oracle(weights)
    results["oracle_test_accuracy"] = float((classify(*oracle, test_imgs) == test_labels).mean())
    blurred = {sigma: float((classify(*oracle, blur_images(test_imgs, sigma)) == test_labels).mean())
               for sigma in dict.fromkeys((cfg.blur_sigma, *cfg.blur_sigmas))}
    results["blurred_oracle_accuracy"] = blurred[cfg.blur_sigma]
    results["blurred_oracle_accuracy_by_sigma"] = {f"{k:g}": v for k, v in sorted(blurred.items())}
    log(f"oracle test accuracy: {results['oracle_test_accuracy']:.3f} clean, "
        f"{results['blurred_oracle_accuracy']:.3f} blurred (Gaussian, {cfg.blur_sigma:g} px)")
    results |= _reconstruction_fidelity(cfg, pipe, oracle, test_imgs, test_labels, names, log)
    results["oracle_degradation_gap"] = max(results["oracle_test_accuracy"] - results["blurred_oracle_accuracy"],
                                            results["vae_real_oracle_accuracy"] - results["vae_recon_oracle_accuracy"])
    faithfulness, generated = _text_to_image_faithfulness(cfg, pipe, oracle, toy, names, log)
    results |= faithfulness

    build = json.loads((weights / "build.json").read_text()) if (weights / "build.json").exists() else {}
    results["build_seconds"] = build.get("build_seconds")
    results["model_sizes_bytes"] = model_sizes(weights)
    results["targets"] = TARGETS
    results["max_targets"] = MAX_TARGETS
    results["meets_targets"] = {k: (results.get(k) is not None and results[k] >= v) for k, v in TARGETS.items()}
    results["meets_targets"] |= {k: (results.get(k) is not None and results[k] <= v) for k, v in MAX_TARGETS.items()}
    results["description_beats_plain_name"] = results["faithfulness_description"] > results["faithfulness_plain_name"]
    results["check_seconds"] = time.time() - t0
    if cfg.grid_path:
        write_grid(cfg.grid_path, test_imgs, test_labels, generated, cfg.generated_per_species, toy.num_classes)
        results["grid_path"] = str(cfg.grid_path)
        log(f"sample grid written to {cfg.grid_path}")
    return results


def _reconstruction_fidelity(cfg: CheckConfig, pipe, oracle, test_imgs: np.ndarray, test_labels: np.ndarray,
                             names: list[str], log) -> dict:
    """Oracle accuracy on VAE reconstructions (next to the same real images) and on img2img outputs."""
    results: dict = {}
    pick = evenly_spaced(len(test_imgs), cfg.vae_oracle_images)
    t = time.time()
    recon = vae_reconstruct(pipe.vae, test_imgs[pick])
    results["vae_real_oracle_accuracy"] = float((classify(*oracle, test_imgs[pick]) == test_labels[pick]).mean())
    results["vae_recon_oracle_accuracy"] = float((classify(*oracle, recon) == test_labels[pick]).mean())
    log(f"oracle accuracy on VAE reconstructions: {results['vae_recon_oracle_accuracy']:.3f} "
        f"(real: {results['vae_real_oracle_accuracy']:.3f}) on {len(pick)} test images ({time.time() - t:.0f}s)")

    pick = evenly_spaced(len(test_imgs), cfg.img2img_images)
    i2i_seeds = [derive_seed(cfg.seed, "world-check-img2img", int(i)) for i in pick]
    i2i_prompts = [names[c] for c in test_labels[pick]]
    for strength in cfg.img2img_strengths:
        if int(cfg.num_inference_steps * strength) < 1:
            results[f"img2img_fidelity_{strength:g}"] = None  # no denoising step at all
            continue
        t = time.time()
        imgs = img2img(pipe, test_imgs[pick], i2i_prompts, i2i_seeds, strength, cfg.num_inference_steps,
                       cfg.guidance_scale, cfg.batch_size)
        acc = float((classify(*oracle, imgs) == test_labels[pick]).mean())
        results[f"img2img_fidelity_{strength:g}"] = acc
        log(f"img2img fidelity at strength {strength:g}: {acc:.3f} over {len(imgs)} images ({time.time() - t:.0f}s)")
    return results


def _text_to_image_faithfulness(cfg: CheckConfig, pipe, oracle, toy, names: list[str], log) -> tuple[dict, dict]:
    """Faithfulness of plain-name and description prompts, overall and per attribute, and the
    attributes' chance level; and the generated images per prompt kind (for the grid)."""
    from augbench.world.render import describe
    from augbench.world.species import spec_of

    table = toy.card.raw["world"]["species"]
    attrs = species_attributes(table)
    results: dict = {"attribute_chance": attribute_chance(attrs)}
    generated: dict[str, np.ndarray] = {}
    descriptions = [f"a photo of a {describe(spec_of(s))}" for s in table]
    k = cfg.generated_per_species
    labels = np.repeat(np.arange(toy.num_classes), k)
    seeds = [derive_seed(cfg.seed, "world-check", int(c), j) for c in range(toy.num_classes) for j in range(k)]
    for kind, prompts in (("plain_name", names), ("description", descriptions)):
        t = time.time()
        imgs = generate(pipe, [prompts[c] for c in labels], seeds, cfg.num_inference_steps, cfg.guidance_scale,
                        cfg.batch_size, toy.image_size)
        generated[kind] = imgs
        pred = classify(*oracle, imgs)
        acc = float((pred == labels).mean())
        results[f"faithfulness_{kind}"] = acc
        results[f"attribute_faithfulness_{kind}"] = attribute_agreement(pred, labels, attrs)
        log(f"text-to-image faithfulness ({kind} prompts): {acc:.3f} over {len(imgs)} images "
            f"({time.time() - t:.0f}s)")
        log("  attributes of the predicted species that match the prompt: " + ", ".join(
            f"{a} {v:.2f}" for a, v in results[f"attribute_faithfulness_{kind}"].items()))
    return results, generated


def model_sizes(weights: Path) -> dict[str, int]:
    """Bytes stored per model directory; symlinks (``sd/`` shares CLIP's text tower) count once."""
    sizes = {}
    for sub in ("sd", "clip", "oracle"):
        d = weights / sub
        if d.exists():
            sizes[sub] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file() and not f.is_symlink())
    sizes["sd_and_clip"] = sizes.get("sd", 0) + sizes.get("clip", 0)
    sizes["total"] = sizes["sd_and_clip"] + sizes.get("oracle", 0)
    return sizes


def write_grid(path, real, real_labels, generated: dict, k: int, num_classes: int, per_row: int = 4) -> None:
    """One row per species: ``per_row`` real | plain-name generated | description generated
    (blank tiles where a species has fewer images than ``per_row``)."""
    from PIL import Image

    h, w = real.shape[1:3]

    def strip(tiles) -> np.ndarray:
        tiles = list(tiles)[:per_row]
        tiles += [np.full((h, w, 3), 255, np.uint8)] * (per_row - len(tiles))
        return np.concatenate(tiles, 1)

    rows = []
    for c in range(num_classes):
        parts = [strip(real[real_labels == c])]
        for kind in ("plain_name", "description"):
            parts.append(np.full((h, 4, 3), 255, np.uint8))
            parts.append(strip(generated[kind][c * k:(c + 1) * k]))
        rows.append(np.concatenate(parts, 1))
    grid = np.concatenate(rows, 0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)

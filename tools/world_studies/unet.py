"""UNet study (issue 14): oracle fidelity of the UNet vs training steps and objective, and how well
the frozen CLIP text tower separates the 24 species descriptions.

Trains the build recipe's ``UNet2DConditionModel`` (same shape; latent channels follow the VAE)
single-threaded on latents of a study VAE (``out/studies/vae_<run>.pt``) or the committed one, with
the committed CLIP text tower, and measures with the committed oracle:

* one-step x0 fidelity: noise 96 toybirds test images' latents to t, predict x0 in one step
  (conditioned on the species description), decode, classify;
* 25-step sample faithfulness: DPM-Solver++ (25 steps, CFG 7.5) with description prompts,
  2 images per species.

Objectives: ``eps`` (the build's), ``minsnr`` (eps with min-SNR-gamma=5 weights, Hang et al. 2023),
``v`` (v-prediction, diffusers ``prediction_type="v_prediction"``).

    python -m tools.world_studies.unet --text                      # CLIP text separability
    python -m tools.world_studies.unet --vae out/studies/vae_lat8.pt --runs eps minsnr v --steps 300

Results are appended to ``out/studies/unet.jsonl``.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from tools.world_studies.common import (
    Results,
    corpus_captions,
    corpus_images,
    oracle_predict,
    single_thread,
    test_set,
)


def load_text_tower():
    from augbench.run.profiles import WORLD_WEIGHTS
    from augbench.world.check import load_world_pipeline

    pipe = load_world_pipeline(WORLD_WEIGHTS)
    return pipe.text_encoder.eval(), pipe.tokenizer, pipe.vae.eval()


def species_prompts():
    from augbench.data import open_dataset
    from augbench.world.render import describe
    from augbench.world.species import spec_of

    toy = open_dataset("toybirds")
    table = toy.card.raw["world"]["species"]
    names = [toy.card.prompt(c) for c in range(toy.num_classes)]
    descriptions = [f"a photo of a {describe(spec_of(s))}" for s in table]
    return names, descriptions, table


# --- CLIP text separability ------------------------------------------------------------------------

@torch.no_grad()
def text_study(results: Results, test_imgs, test_labels, weights: Path | None = None) -> None:
    """Zero-shot species accuracy of a world's CLIP (default: the committed one; or a build's staged
    ``<weights>.building``) with name vs description prompts, per-attribute zero-shot (``a photo of a
    bird with a {colour} crown`` etc.), and how similar the 24 description embeddings are (pooled,
    projected; and the UNet's view: the 77-token hidden states)."""
    from augbench.run.profiles import WORLD_WEIGHTS
    from augbench.world.build import encode_texts, text_encoder_of
    from augbench.world.check import clip_zero_shot, load_world_clip
    from augbench.world.render import ATTRIBUTES

    names, descriptions, table = species_prompts()
    clip, tok = load_world_clip(Path(weights or WORLD_WEIGHTS))
    row = {"zero_shot_names": clip_zero_shot(clip, tok, test_imgs, test_labels, names),
           "zero_shot_descriptions": clip_zero_shot(clip, tok, test_imgs, test_labels, descriptions)}
    templates = {"body": "a photo of a bird with a {} body", "crown": "a photo of a bird with a {} crown",
                 "wing": "a photo of a bird with {} wings", "pattern": "a photo of a bird with {} wings"}
    for key, template in templates.items():
        values = list(ATTRIBUTES[key])
        truth = np.array([values.index(table[c][key]) for c in test_labels])
        row[f"zero_shot_attr_{key}"] = clip_zero_shot(clip, tok, test_imgs, truth, [template.format(v) for v in values])
        row[f"chance_attr_{key}"] = 1 / len(values)

    def sims(e):
        e = e / e.norm(dim=-1, keepdim=True)
        s = e @ e.T
        off = s[~torch.eye(len(s), dtype=torch.bool)]
        return float(off.mean()), float(off.max())

    t = tok(descriptions, padding=True, return_tensors="pt")
    pooled = clip.get_text_features(**t)
    pooled = getattr(pooled, "pooler_output", pooled)
    row["desc_pooled_cos_mean"], row["desc_pooled_cos_max"] = sims(pooled)
    hidden = encode_texts(text_encoder_of(clip), tok, descriptions)  # what the UNet cross-attends to, as built
    row["desc_hidden_cos_mean"], row["desc_hidden_cos_max"] = sims(hidden.flatten(1))
    # within-genus pairs (species that differ in 1-2 attributes) vs the rest
    e = pooled / pooled.norm(dim=-1, keepdim=True)
    s = (e @ e.T).numpy()
    genus = np.arange(24) // 4
    same = (genus[:, None] == genus[None, :]) & ~np.eye(24, dtype=bool)
    row["desc_pooled_cos_within_genus"] = float(s[same].mean())
    row["desc_pooled_cos_across_genus"] = float(s[genus[:, None] != genus[None, :]].mean())
    results.add(study="text", weights=str(weights or "committed"), **row)


# --- UNet -------------------------------------------------------------------------------------------

def make_unet(latent: int, sample: int, channels=(48, 96, 96), hidden: int = 64):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample, in_channels=latent, out_channels=latent, layers_per_block=1,
        block_out_channels=tuple(channels),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=hidden, attention_head_dim=8, norm_num_groups=16,
    )


@torch.no_grad()
def encode(vae, images_u8: torch.Tensor, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    from augbench.world.build import to_unit

    means, stds = [], []
    for i in range(0, len(images_u8), batch):
        d = vae.encode(to_unit(images_u8[i:i + batch])).latent_dist
        means.append(d.mean)
        stds.append(d.std)
    return torch.cat(means), torch.cat(stds)


def x0_from(pred, zt, a, kind: str):
    if kind == "v":
        return a.sqrt() * zt - (1 - a).sqrt() * pred
    return (zt - (1 - a).sqrt() * pred) / a.sqrt()


@torch.no_grad()
def evaluate(unet, vae, scaling, kind, text_encoder, tokenizer, test_imgs, test_labels, acp,
             ts=(50, 200, 500), per_species: int = 2) -> dict:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from augbench.world.build import encode_texts, sd15_scheduler_config
    from augbench.world.check import generate

    t0 = time.time()
    names, descriptions, _ = species_prompts()
    desc_emb = encode_texts(text_encoder, tokenizer, descriptions)
    z0 = encode(vae, torch.from_numpy(test_imgs).permute(0, 3, 1, 2))[0] * scaling
    cond = desc_emb[test_labels]
    out = {}
    g = torch.Generator().manual_seed(1)
    for t in ts:
        a = acp[t].view(1, 1, 1, 1)
        eps = torch.randn(z0.shape, generator=g)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        x0 = torch.cat([x0_from(unet(zt[i:i + 48], torch.full((len(zt[i:i + 48]),), t),
                                     encoder_hidden_states=cond[i:i + 48]).sample, zt[i:i + 48], a, kind)
                        for i in range(0, len(zt), 48)])
        rec = vae.decode(x0 / scaling).sample.clamp(-1, 1)
        rec = ((rec + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out[f"x0_fidelity_t{t}"] = float((oracle_predict(rec) == test_labels).mean())
    sched_cfg = {k: v for k, v in sd15_scheduler_config().items()
                 if k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "steps_offset")}
    sched_cfg["prediction_type"] = "v_prediction" if kind == "v" else "epsilon"
    vae.register_to_config(scaling_factor=float(scaling))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DPMSolverMultistepScheduler(**sched_cfg), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    labels = np.repeat(np.arange(24), per_species)
    imgs = generate(pipe, [descriptions[c] for c in labels], [1000 + i for i in range(len(labels))], 25, 7.5, 48, 64)
    pred = oracle_predict(imgs)
    out["faithfulness_description"] = float((pred == labels).mean())
    from tools.world_studies.vae import attribute_errors

    out["attributes_description"] = attribute_errors(pred, labels)
    out["eval_seconds"] = round(time.time() - t0, 1)
    return out


def train(name: str, kind: str, vae, lat_mean, lat_std, text_emb, empty_emb, steps: int, batch: int,
          results: Results, test_imgs, test_labels, text_encoder, tokenizer, evals: int = 3,
          lr: float = 1e-3, gamma: float = 5.0, ema_decay: float = 0.998, seed: int = 0, vae_name: str = "") -> None:
    from diffusers import DDPMScheduler

    from augbench.world.build import sd15_scheduler_config
    from augbench.world.build.loops import cosine_with_warmup

    scaling = float(1.0 / lat_mean.std())
    torch.manual_seed(seed)
    latent, side = lat_mean.shape[1], lat_mean.shape[-1]
    unet = make_unet(latent, side)
    ema = copy.deepcopy(unet).requires_grad_(False)
    acp = DDPMScheduler(**{k: v for k, v in sd15_scheduler_config().items() if k != "set_alpha_to_one"}).alphas_cumprod
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    sched = cosine_with_warmup(opt, steps, warmup=max(1, steps // 40))
    gen = torch.Generator().manual_seed(seed)
    at = sorted({int(round(steps * (k + 1) / evals)) for k in range(evals)})
    n = len(text_emb)
    t0 = time.time()
    losses = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (batch,), generator=gen)
        z0 = (lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)) * scaling
        cond = text_emb[idx].clone()
        cond[torch.rand(batch, generator=gen) < 0.1] = empty_emb
        t = torch.randint(0, 1000, (batch,), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        pred = unet(zt, t, encoder_hidden_states=cond).sample
        snr = (a / (1 - a)).flatten()
        if kind == "v":
            target = a.sqrt() * eps - (1 - a).sqrt() * z0
            w = torch.ones_like(snr)
        else:
            target = eps
            w = torch.clamp(snr, max=gamma) / snr if kind == "minsnr" else torch.ones_like(snr)
        loss = (w * (pred - target).pow(2).flatten(1).mean(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(ema_decay, step / (9 + step))
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(unet.parameters()), 1 - decay)
        losses.append(float(loss))
        if step % max(1, steps // 10) == 0:
            print(f"[{name}] step {step}/{steps} loss {np.mean(losses[-50:]):.4f} "
                  f"({(time.time() - t0) / step:.3f}s/step)", flush=True)
        if step in at:
            ev = evaluate(ema.eval(), vae, scaling, kind, text_encoder, tokenizer, test_imgs, test_labels, acp)
            t0 += ev["eval_seconds"]
            results.add(study="unet", run=name, kind=kind, vae=vae_name, step=step, of_steps=steps, batch=batch,
                        loss=float(np.mean(losses[-50:])), train_seconds=round(time.time() - t0, 1), **ev)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", action="store_true", help="CLIP text-tower separability")
    ap.add_argument("--weights", default=None,
                    help="`--text`: a world weights folder (default: the committed one), e.g. a build's .building")
    ap.add_argument("--vae", default="committed", help="'committed' or a study VAE file (out/studies/vae_<run>.pt)")
    ap.add_argument("--runs", nargs="*", default=[], choices=["eps", "minsnr", "v"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--evals", type=int, default=3)
    ap.add_argument("--corpus", type=int, default=20000, help="corpus images rendered (cached)")
    ap.add_argument("--latents", type=int, default=8000, help="corpus images encoded for the UNet")
    ap.add_argument("--test-images", type=int, default=96)
    ap.add_argument("--eval-committed", action="store_true",
                    help="the same metrics for the committed VAE + UNet (1800 steps x batch 64)")
    ap.add_argument("--standardize", action="store_true",
                    help="fold per-channel latent standardisation into the VAE (build.standardize_latents)")
    ap.add_argument("--out", default="out/studies/unet.jsonl")
    args = ap.parse_args(argv)
    single_thread()
    results = Results(args.out)
    test_imgs, test_labels = test_set(args.test_images)
    if args.text:
        text_study(results, test_imgs, test_labels, args.weights)
    if args.eval_committed:
        from diffusers import DDPMScheduler

        from augbench.run.profiles import WORLD_WEIGHTS
        from augbench.world.build import sd15_scheduler_config
        from augbench.world.check import load_world_pipeline

        pipe = load_world_pipeline(WORLD_WEIGHTS)
        acp = DDPMScheduler(**{k: v for k, v in sd15_scheduler_config().items()
                               if k != "set_alpha_to_one"}).alphas_cumprod
        ev = evaluate(pipe.unet.eval(), pipe.vae.eval(), pipe.vae.config.scaling_factor, "eps", pipe.text_encoder,
                      pipe.tokenizer, test_imgs, test_labels, acp)
        results.add(study="unet", run="committed", kind="eps", vae="committed", step=1800, of_steps=1800, batch=64,
                    loss=None, train_seconds=None, **ev)
    if not args.runs:
        return
    from augbench.world.build import encode_texts

    text_encoder, tokenizer, committed_vae = load_text_tower()
    if args.vae == "committed":
        vae = committed_vae
    else:
        from tools.world_studies.vae import load_trained

        vae = load_trained(args.vae)
    t = time.time()
    images = corpus_images(args.corpus)[: args.latents]
    captions = corpus_captions(args.corpus)[: args.latents]
    lat_mean, lat_std = encode(vae, images)
    if args.standardize:
        from augbench.world.build import standardize_latents

        lat_mean, lat_std = standardize_latents(vae, lat_mean, lat_std)
    text_emb = encode_texts(text_encoder, tokenizer, captions)
    empty_emb = encode_texts(text_encoder, tokenizer, [""])[0]
    print(f"encoded {len(images)} latents {tuple(lat_mean.shape[1:])} and captions in {time.time() - t:.0f}s; "
          f"latent mean {lat_mean.mean():.3f} std {lat_mean.std():.3f}, per-channel std "
          f"{[round(float(v), 3) for v in lat_mean.std(dim=(0, 2, 3))]}", flush=True)
    for kind in args.runs:
        train(f"{kind}", kind, vae, lat_mean, lat_std, text_emb, empty_emb, args.steps, args.batch, results,
              test_imgs, test_labels, text_encoder, tokenizer, evals=args.evals,
              vae_name=Path(args.vae).stem + ("+std" if args.standardize else ""))


if __name__ == "__main__":
    main()

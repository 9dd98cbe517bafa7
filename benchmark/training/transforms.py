"""Train and eval transforms on uint8 tensors, applied on the training device (METHODS_SPEC §5.1-§5.4).

Images are decoded and resized once to the recipe's pre-crop size ``R`` (``augbench.data.imaging``); the
per-sample random crops, flips and colour jitter below then run as a few batched tensor operations
(PERF_NOTES §6 item 11). Every random number is drawn on the CPU from the generator passed in, so CPU
and CUDA runs see the same crops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from augbench.data.imaging import center_crop, normalize, prepare_images
from augbench.training.recipes import Recipe

__all__ = [
    "augment_batch",
    "eval_geometry",
    "prepare_eval",
    "random_crop_flip",
    "random_resized_crop_flip",
    "train_geometry",
]


def train_geometry(recipe: Recipe, input_size: int) -> tuple[int, int]:
    """``(R, padding)`` of the §5.1 train transform scaled to ``input_size`` (256/8 at 224)."""
    return max(input_size, round(input_size * recipe.resize_ratio)), round(input_size * recipe.crop_padding_ratio)


def eval_geometry(recipe: Recipe, input_size: int) -> int:
    """Pre-crop size ``R`` of the eval transform ``Resize((R, R)) -> CenterCrop(S)``."""
    return train_geometry(recipe, input_size)[0]


def prepare_eval(images: Any, recipe: Recipe, input_size: int) -> torch.Tensor:
    """Eval transform once: ``Resize((R, R)) -> CenterCrop(S)`` (§5.1) as a uint8 ``[N, 3, S, S]``."""
    r = eval_geometry(recipe, input_size)
    return center_crop(prepare_images(images, r, recipe.resize_mode), input_size)


def _flips(batch: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Which samples are flipped (probability 0.5 each); draws nothing when ``hflip`` is off."""
    return torch.rand(batch, generator=generator) < 0.5 if hflip else torch.zeros(batch, dtype=torch.bool)


def random_crop_flip(
    images: torch.Tensor, size: int, padding: int, hflip: bool, generator: torch.Generator
) -> torch.Tensor:
    """``RandomCrop(size, padding)`` (zero fill) + ``RandomHorizontalFlip`` on a uint8 batch, per sample.

    Offsets and flips are drawn on the CPU from ``generator``; the crop is one gather on the images'
    device. Returns float ``[B, 3, size, size]`` in [0, 1], channels-last strided.
    """
    b, _, h, w = images.shape
    dev = images.device
    padded = F.pad(images, (padding, padding, padding, padding)) if padding > 0 else images
    hp, wp = h + 2 * padding, w + 2 * padding
    oy = torch.randint(0, hp - size + 1, (b,), generator=generator)
    ox = torch.randint(0, wp - size + 1, (b,), generator=generator)
    flip = _flips(b, hflip, generator)
    ar = torch.arange(size)
    rows = oy[:, None] + ar
    cols = ox[:, None] + ar
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = padded[bi, :, rows.to(dev)[:, :, None], cols.to(dev)[:, None, :]]  # [B, S, S, C]
    return out.permute(0, 3, 1, 2).float().div_(255.0)


def _resized_crop_boxes(
    b: int, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(top, left, box_h, box_w)`` per sample, sampled as torchvision's ``RandomResizedCrop`` does.

    Ten tries of (area scale, log aspect ratio) per sample, vectorised; the first box that fits is
    kept, else the centre crop with the ratio clamped into range (torchvision's fallback).
    """
    area = h * w
    tries = 10
    s = torch.empty(b, tries).uniform_(*scale, generator=generator) * area
    logr = torch.empty(b, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = torch.exp(logr)
    cw = torch.sqrt(s * r).round()
    ch = torch.sqrt(s / r).round()
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((b,), -1))
    u = torch.rand(b, 2, generator=generator)
    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(h * ratio[1]), h
    else:
        fw, fh = w, h
    idx = first.clamp(min=0)
    bw = torch.where(first >= 0, cw[torch.arange(b), idx], torch.full((b,), float(fw)))
    bh = torch.where(first >= 0, ch[torch.arange(b), idx], torch.full((b,), float(fh)))
    top = torch.where(first >= 0, torch.floor(u[:, 0] * (h - bh + 1)), torch.floor((h - bh) / 2))
    left = torch.where(first >= 0, torch.floor(u[:, 1] * (w - bw + 1)), torch.floor((w - bw) / 2))
    return top, left, bh, bw


def _color_jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation (in that fixed order) with per-sample ``factors[B, 3]``."""
    x = (x * factors[:, 0, None, None, None]).clamp(0, 1)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    m = gray.mean(dim=(2, 3), keepdim=True)
    x = ((x - m) * factors[:, 1, None, None, None] + m).clamp(0, 1)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    return (gray + (x - gray) * factors[:, 2, None, None, None]).clamp(0, 1)


def random_resized_crop_flip(
    images: torch.Tensor,
    size: int,
    hflip: bool,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    color_jitter: float = 0.0,
) -> torch.Tensor:
    """``RandomResizedCrop(size)`` + flip (+ brightness/contrast/saturation jitter) on a uint8 batch.

    The crop box follows torchvision's sampling (``_resized_crop_boxes``); resampling is bilinear
    ``grid_sample`` without antialiasing. Jitter factors are drawn uniformly from ``[1 - s, 1 + s]``
    and applied in the fixed order brightness, contrast, saturation (torchvision draws a random order;
    NOTE: a documented simplification). Returns float in [0, 1], channels-last strided.
    """
    b, _, h, w = images.shape
    dev = images.device
    top, left, bh, bw = _resized_crop_boxes(b, h, w, scale, ratio, generator)
    flip = _flips(b, hflip, generator)
    # drawn even without jitter, so the stream layout does not depend on the jitter strength
    jit = torch.empty(b, 3).uniform_(1 - color_jitter, 1 + color_jitter, generator=generator)
    # affine grid in normalised coordinates (align_corners=False): centre and half-extent of the box
    cx = (left + bw / 2) / w * 2 - 1
    cy = (top + bh / 2) / h * 2 - 1
    sx = bw / w * torch.where(flip, -1.0, 1.0)
    sy = bh / h
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    grid = F.affine_grid(theta.to(dev), [b, 3, size, size], align_corners=False)
    x = F.grid_sample(images.float().div(255.0), grid, mode="bilinear", padding_mode="border", align_corners=False)
    if color_jitter > 0:
        x = _color_jitter(x, jit.to(dev))
    return x.contiguous(memory_format=torch.channels_last)


def augment_batch(
    images: torch.Tensor,
    recipe: Recipe,
    input_size: int,
    padding: int,
    generator: torch.Generator,
    mean: Sequence[float],
    std: Sequence[float],
    channels_last: bool,
) -> torch.Tensor:
    """The recipe's train transform of a uint8 batch, normalised: the classifier's float input.

    ``resize_crop`` recipes take ``RandomCrop(S, padding)`` + flip (§5.1), ``random_resized_crop``
    recipes ``RandomResizedCrop(S)`` + flip + colour jitter (§5.2, §5.4).
    """
    if recipe.train_transform == "resize_crop":
        x = random_crop_flip(images, input_size, padding, recipe.hflip, generator)
    else:
        x = random_resized_crop_flip(images, input_size, recipe.hflip, generator, color_jitter=recipe.color_jitter)
    x = normalize(x, mean, std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x

"""Generic uint8 image helpers shared by classifier training and the synthetic-set metrics.

Images enter the harness as PIL images, ``[3, H, W]`` / ``[H, W, 3]`` tensors or arrays, or uint8
batches; this module turns them into uint8 ``[N, 3, H, W]`` tensors, resizes them and crops them.
Keeping images uint8 until the last moment is what lets training decode every image once and do the
random crops on the device (PERF_NOTES §6 item 11).

It depends on torch (and numpy only to read PIL images) and on nothing else in the harness, so both
``augbench.training`` and ``augbench.metrics`` can use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "RESIZE_MODES",
    "as_uint8_chw",
    "center_crop",
    "center_square",
    "float_to_uint8",
    "normalize",
    "prepare_images",
    "resize_uint8",
]

RESIZE_MODES = ("stretch", "shorter_side")
"""``stretch`` = ``Resize((R, R))`` (METHODS_SPEC §5.1); ``shorter_side`` = ``Resize(R)`` + centre square (§5.2)."""


def float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] (any shape) as uint8 in [0, 255], values outside [0, 1] clamped."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8)


def as_uint8_chw(image: Any) -> torch.Tensor:
    """One image as a uint8 ``[3, H, W]`` tensor.

    Accepts a PIL image (converted to RGB), an ``[H, W]`` or ``[H, W, 3]`` array, or a ``[C, H, W]`` /
    ``[H, W, C]`` tensor (uint8, or float in [0, 1]); grey images are repeated over three channels.
    """
    if isinstance(image, torch.Tensor):
        t = image
        if t.dim() == 3 and t.shape[0] not in (1, 3) and t.shape[-1] in (1, 3):
            t = t.permute(2, 0, 1)
        if t.dtype != torch.uint8:
            t = float_to_uint8(t)
        return t.expand(3, -1, -1) if t.shape[0] == 1 else t
    arr = np.array(image.convert("RGB")) if hasattr(image, "convert") else np.array(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return torch.from_numpy(arr).permute(2, 0, 1)


def resize_uint8(images: torch.Tensor, size: int | tuple[int, int], chunk: int = 256) -> torch.Tensor:
    """Bilinear (antialiased) resize of a uint8 ``[N, 3, H, W]`` batch, in chunks; returns uint8.

    Chunking bounds the float copy of the batch, so large datasets can be decoded on a small machine.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    out = []
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].float()
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], *size))


def center_square(images: torch.Tensor) -> torch.Tensor:
    """The centred ``min(H, W)`` square of ``[..., H, W]`` images (a view)."""
    h, w = images.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return images[..., top : top + s, left : left + s]


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The centred ``size x size`` crop of square ``[..., R, R]`` images, contiguous (``CenterCrop``)."""
    top = (images.shape[-1] - size) // 2
    return images[..., top : top + size, top : top + size].contiguous()


def prepare_images(images: Any, size: int, mode: str = "stretch") -> torch.Tensor:
    """Decode images once into a uint8 ``[N, 3, size, size]`` tensor (METHODS_SPEC §5.1 first resize).

    Args:
        images: uint8 ``[N, 3, H, W]`` tensor (or float in [0, 1]), or a sequence of PIL images /
            ``[3, H, W]`` tensors / ``[H, W, 3]`` arrays (sizes may differ).
        size: output side ``R``.
        mode: ``stretch`` = ``Resize((R, R))`` (aspect not kept, §5.1); ``shorter_side`` =
            ``Resize(R)`` (shorter side to ``R``, aspect kept) then the centre ``R x R`` square (§5.2
            eval up to the final centre crop).

    Returns:
        A contiguous uint8 tensor.
    """
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        batch = images if images.dtype == torch.uint8 else float_to_uint8(images)
        if mode == "shorter_side" and batch.shape[-1] != batch.shape[-2]:
            h, w = batch.shape[-2:]
            scale = size / min(h, w)
            batch = center_square(resize_uint8(batch, (round(h * scale), round(w * scale))))
        return resize_uint8(batch, size).contiguous()
    out = [_prepare_one(as_uint8_chw(image), size, mode) for image in images]
    if not out:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    return torch.stack(out).contiguous()


def _prepare_one(image: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``prepare_images`` for one uint8 ``[3, H, W]`` image."""
    if mode == "shorter_side":
        h, w = image.shape[-2:]
        scale = size / min(h, w)
        # max(size, ...) guards against rounding the shorter side below R
        resized = resize_uint8(image[None], (max(size, round(h * scale)), max(size, round(w * scale))))
        image = center_square(resized[0])
    return resize_uint8(image[None], size)[0]


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` of a float ``[N, C, H, W]`` batch (the classifier's input norm)."""
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s

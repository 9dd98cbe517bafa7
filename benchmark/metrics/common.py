"""What every synthetic-set metric shares: labels and images in one form, and one network per process.

Callers hand the metrics (METHODS_SPEC §7) uint8 tensors, lists of PIL images of mixed sizes, hard
labels or soft labels; :func:`dominant_labels` and :func:`as_float01` turn them into the one form the
metrics compute on. :func:`cached_network` keeps each metric network (LPIPS trunk, CLIP, oracle) loaded
once per process and device, because the metrics stage scores many sets in one run. :func:`finite_or_none`
turns NaN / infinity into ``None`` before a result is written, because JSON has no NaN (``json.dumps``
writes a bare ``NaN`` that strict readers reject).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from augbench.run.store import finite_or_none  # noqa: F401 - re-exported: metrics write no NaN

__all__ = ["as_float01", "cached_network", "dominant_labels", "finite_or_none", "release_networks"]

_NETWORKS: dict[tuple, Any] = {}


def cached_network(key: tuple, build: Callable[[], Any]) -> Any:
    """The network ``build()`` returns, built once per ``key`` = (kind, model, device) per process."""
    if key not in _NETWORKS:
        _NETWORKS[key] = build()
    return _NETWORKS[key]


def release_networks() -> None:
    """Forget every cached metric network (``augbench.run.stages.release_warm_models``, before training)."""
    _NETWORKS.clear()


def dominant_labels(labels: torch.Tensor | Sequence) -> torch.Tensor:
    """Integer labels from ``[N]`` integers or ``[N, C]`` soft labels (argmax = dominant class)."""
    t = torch.as_tensor(labels)
    return t.argmax(1).long() if t.dim() == 2 else t.long()


def as_float01(images: Any, size: int | None = None) -> torch.Tensor:
    """uint8 ``[N,3,H,W]`` (or a list of PIL images / tensors, sizes may differ) -> float in [0, 1].

    A list of images of different sizes needs ``size``: each image is then resized to
    ``size x size`` (bilinear, antialiased) on its own before stacking.
    """
    if isinstance(images, torch.Tensor):
        return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    from augbench.data.imaging import as_uint8_chw, resize_uint8

    ts = [as_uint8_chw(im) for im in images]
    if size is not None:
        ts = [resize_uint8(t[None], size)[0] for t in ts]
    if len({tuple(t.shape) for t in ts}) > 1:
        raise ValueError("images of different sizes: pass a size to resize them to")
    return torch.stack(ts).float() / 255.0



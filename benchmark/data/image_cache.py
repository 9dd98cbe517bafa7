"""Real images decoded once per process as uint8 ``[3, H, W]`` tensors (PERF_NOTES §6 item 11).

Every cell of a suite trains and evaluates on images of the same few datasets; decoding them once per
process instead of once per cell saves most of the non-training time of a small cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class DecodedImages:
    """``get(source, ids)``: a stacked uint8 tensor (or a list when sizes differ), decoded on first use."""

    def __init__(self):
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, source, image_ids: list[str]):
        import torch

        for image_id in image_ids:
            if (source.card.id, image_id) not in self._cache:
                arr = np.asarray(source.load_image(image_id).convert("RGB"), dtype=np.uint8)
                self._cache[(source.card.id, image_id)] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        tensors = [self._cache[(source.card.id, i)] for i in image_ids]
        if len({tuple(t.shape) for t in tensors}) == 1:
            return torch.stack(tensors)
        return tensors  # mixed sizes: the training code resizes


IMAGES = DecodedImages()

"""Real images decoded once per process as uint8 ``[3, H, W]`` tensors (PERF_NOTES §6 item 11).

Every cell of a suite trains and evaluates on images of the same few datasets; decoding them once per
process instead of once per cell saves most of the non-training time of a small cell.

This is where the train stage first decodes a cell's training subset and test split, so an image that
cannot be decoded fails here, in one line naming the file and the ``augbench data verify <dataset>
--check-images`` run that lists every such file (``data verify`` decodes images only when asked, and real
datasets are large: a corrupt file is typically met here first). The cell fails; the run goes on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from augbench.data.core import DataError

__all__ = ["IMAGES", "DecodedImages", "load_rgb", "unreadable_image_error"]


def unreadable_image_error(source, image_id: str, exc: BaseException) -> DataError:
    """One line naming the image's file (or id), why it failed, and the verify command for ``source``'s dataset."""
    dataset = source.card.id
    path_of = getattr(source, "image_path", None)
    try:
        where = str(path_of(image_id)) if callable(path_of) else f"image {image_id!r}"
    except Exception:  # noqa: BLE001 - an unknown id: name the id instead
        where = f"image {image_id!r}"
    cause = exc.__cause__ if isinstance(exc, DataError) and exc.__cause__ is not None else exc
    detail = " ".join(f"{type(cause).__name__}: {cause}".split())
    return DataError(f"corrupt or unreadable image in dataset {dataset!r}: {where} ({detail}); re-extract or "
                     f"re-download it; `augbench data verify {dataset} --check-images` lists every unreadable file")


def load_rgb(source, image_id: str):
    """``source.load_image(image_id)`` as RGB; an undecodable image raises :func:`unreadable_image_error`.

    For builders that decode training images themselves (concept learning, inversion, captioning).
    """
    try:
        return source.load_image(image_id).convert("RGB")
    except (DataError, OSError, ValueError, SyntaxError) as exc:
        raise unreadable_image_error(source, image_id, exc) from exc


class DecodedImages:
    """``get(source, ids)``: a stacked uint8 tensor (or a list when sizes differ), decoded on first use."""

    def __init__(self):
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, source, image_ids: list[str]):
        """The images ``image_ids`` of ``source``; an undecodable one raises :func:`unreadable_image_error`."""
        import torch

        for image_id in image_ids:
            if (source.card.id, image_id) not in self._cache:
                arr = np.asarray(load_rgb(source, image_id), dtype=np.uint8)
                self._cache[(source.card.id, image_id)] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        tensors = [self._cache[(source.card.id, i)] for i in image_ids]
        if len({tuple(t.shape) for t in tensors}) == 1:
            return torch.stack(tensors)
        return tensors  # mixed sizes: the training code resizes


IMAGES = DecodedImages()

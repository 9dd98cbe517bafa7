"""Shared pieces of the studies: cached data, the committed oracle, evaluation sets, a results log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from augbench.run.profiles import WORLD_WEIGHTS

CACHE = Path(os.environ.get("AUGBENCH_STUDY_CACHE", "out/studies/cache"))


def single_thread() -> None:
    """Studies share a 2-core machine: one intra-op thread, one process."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


def corpus_images(n: int, size: int = 64) -> torch.Tensor:
    """The first ``n`` pretraining-corpus images, uint8 [n, 3, size, size] (rendered once, cached)."""
    from augbench.world.render import RENDER_VERSION

    path = CACHE / f"corpus_{n}_{size}_r{RENDER_VERSION}.npy"  # the render version: cached pixels go stale
    if not path.exists():
        from augbench.world.build import render_corpus

        images, captions = render_corpus(n, size)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, images.numpy())
        path.with_suffix(".captions.json").write_text(json.dumps(captions))
    return torch.from_numpy(np.load(path))


def corpus_captions(n: int, size: int = 64) -> list[str]:
    from augbench.world.render import RENDER_VERSION

    corpus_images(n, size)
    return json.loads((CACHE / f"corpus_{n}_{size}_r{RENDER_VERSION}.captions.json").read_text())


def test_set(n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``n`` toybirds test images (uint8 NHWC) spread evenly over the split, and their labels --
    the same images ``world check`` reconstructs."""
    from augbench.data import open_dataset
    from augbench.world.check import evenly_spaced

    toy = open_dataset("toybirds")
    test = toy.samples("test")
    pick = evenly_spaced(len(test), n)
    imgs = np.stack([toy.render(test[i].image_id) for i in pick])
    return imgs, np.array([test[i].label for i in pick])


_ORACLE = None


def oracle():
    """The committed oracle (fp32) and its normalisation."""
    global _ORACLE
    if _ORACLE is None:
        from augbench.world.check import load_oracle

        _ORACLE = load_oracle(WORLD_WEIGHTS)
    return _ORACLE


def oracle_accuracy(images_u8: np.ndarray, labels: np.ndarray) -> float:
    from augbench.world.check import classify

    model, norm = oracle()
    return float((classify(model, norm, images_u8) == labels).mean())


def oracle_predict(images_u8: np.ndarray) -> np.ndarray:
    from augbench.world.check import classify

    model, norm = oracle()
    return classify(model, norm, images_u8)


def psnr(a_u8: np.ndarray, b_u8: np.ndarray) -> float:
    mse = ((a_u8.astype(np.float64) - b_u8.astype(np.float64)) / 255.0) ** 2
    mse = mse.reshape(len(mse), -1).mean(1)
    return float((10 * np.log10(1.0 / np.maximum(mse, 1e-10))).mean())


class Results:
    """Append-only JSON-lines log of a study's measurements."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, **row) -> dict:
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **row}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return row

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

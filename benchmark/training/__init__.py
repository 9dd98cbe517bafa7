"""Classifier training and evaluation for the harness (METHODS_SPEC §4, §5, §7.1; PERF_NOTES §6 item 11).

One module per responsibility:

* ``recipes``     — ``Recipe``, ``RECIPES``, ``get_recipe`` (§5) and the cosine warm-up schedule (§5.1).
* ``losses``      — soft-target cross-entropy and the DII/DM label smoothing (§5.7).
* ``transforms``  — train/eval crops, flips and colour jitter on uint8 tensors (§5.1-§5.4).
* ``inputs``      — ``LabeledImages``, ``SyntheticSet`` and the ``BatchMixer`` signature.
* ``replacement`` — ``ReplacementSampler``, ``REPLACEMENT_MODES``, ``DEFAULT_REPLACEMENT_MODE`` (§4).
* ``evaluation``  — predictions and accuracy metrics (§5.4, §6.2, §6.3, §7.1).
* ``selection``   — model-selection rules and their caption notes (pure Python, no torch).
* ``config``      — ``TrainConfig`` and ``TrainResult``.
* ``loop``        — ``train_classifier``.

Generic uint8 image helpers (``prepare_images``, ``resize_uint8``) live in ``augbench.data.imaging``.
The names below are re-exported lazily, so ``from augbench.training import TrainConfig`` works and
``import augbench.training.selection`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "RECIPES": "recipes",
    "Recipe": "recipes",
    "cosine_warmup_lr": "recipes",
    "get_recipe": "recipes",
    "label_smoothing_loss": "losses",
    "one_hot": "losses",
    "smoothed_targets": "losses",
    "soft_target_cross_entropy": "losses",
    "eval_geometry": "transforms",
    "prepare_eval": "transforms",
    "random_crop_flip": "transforms",
    "random_resized_crop_flip": "transforms",
    "train_geometry": "transforms",
    "BatchMixer": "inputs",
    "LabeledImages": "inputs",
    "SyntheticSet": "inputs",
    "DEFAULT_REPLACEMENT_MODE": "replacement",
    "REPLACEMENT_MODES": "replacement",
    "ReplacementSampler": "replacement",
    "classification_metrics": "evaluation",
    "evaluate_model": "evaluation",
    "many_medium_few": "evaluation",
    "predict": "evaluation",
    "SELECTION_NOTES": "selection",
    "SELECTION_RULES": "selection",
    "select_epoch": "selection",
    "TrainConfig": "config",
    "TrainResult": "config",
    "train_classifier": "loop",
}
# image helpers that moved to augbench.data.imaging, still importable from here
_IMAGING_EXPORTS = ("prepare_images", "resize_uint8")

__all__ = [  # every key of _EXPORTS and _IMAGING_EXPORTS (a test checks it)
    "DEFAULT_REPLACEMENT_MODE",
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
    "prepare_eval",
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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    elif name in _IMAGING_EXPORTS:
        module = importlib.import_module("augbench.data.imaging")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static analysis sees; at run time the names load on first use
    from augbench.data.imaging import prepare_images, resize_uint8
    from augbench.training.config import TrainConfig, TrainResult
    from augbench.training.evaluation import classification_metrics, evaluate_model, many_medium_few, predict
    from augbench.training.inputs import BatchMixer, LabeledImages, SyntheticSet
    from augbench.training.loop import train_classifier
    from augbench.training.losses import (
        label_smoothing_loss,
        one_hot,
        smoothed_targets,
        soft_target_cross_entropy,
    )
    from augbench.training.recipes import RECIPES, Recipe, cosine_warmup_lr, get_recipe
    from augbench.training.replacement import DEFAULT_REPLACEMENT_MODE, REPLACEMENT_MODES, ReplacementSampler
    from augbench.training.selection import SELECTION_NOTES, SELECTION_RULES, select_epoch
    from augbench.training.transforms import (
        eval_geometry,
        prepare_eval,
        random_crop_flip,
        random_resized_crop_flip,
        train_geometry,
    )

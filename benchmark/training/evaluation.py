"""Evaluation of a classifier: predictions and accuracy metrics (METHODS_SPEC §5.4, §6.2, §6.3, §7.1).

Every accuracy is defined once, in ``augbench.protocols`` (per-class and group accuracies in
``protocols.metrics``, the many/medium/few thresholds in ``protocols.long_tail.class_groups``); this
module applies them to a model's predictions. It imports the protocols' torch-free modules only, never
the reporting side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from augbench.data.imaging import normalize
from augbench.protocols.long_tail import class_groups
from augbench.protocols.metrics import group_metrics, mean_accuracy_by_class_group, per_class_accuracy
from augbench.training.runtime import autocast

__all__ = ["classification_metrics", "evaluate_model", "many_medium_few", "predict", "predict_logits"]


def many_medium_few(train_counts: Sequence[int], many: int = 20, few: int = 5) -> dict[str, list[int]]:
    """Class groups by training count (§5.4: CUB many > 20, medium 5-20, few < 5; Flowers 30/10).

    The training-side name of ``augbench.protocols.long_tail.class_groups``.
    """
    return class_groups(train_counts, many_above=many, few_below=few)


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
        ``n``; with ``groups``: ``groups`` (per-group accuracy over the group's images), ``group_mean``
        (unweighted mean of groups, P2 Tab.3 "Avg"), ``worst_group``, ``pooled`` (accuracy over all
        grouped samples), ``group_sizes``; with ``class_groups``: ``class_groups`` = mean per-class
        accuracy within each class group (§5.4, ``protocols.mean_accuracy_by_class_group``).
    """
    preds, labels = preds.cpu().long(), labels.cpu().long()
    correct = (preds == labels).double()
    n = int(labels.numel())
    out: dict[str, Any] = {"n": n, "top1": 100.0 * float(correct.mean()) if n else float("nan")}
    tested = per_class_accuracy(preds, labels)
    per_class = [tested.get(c) for c in range(num_classes)]
    out["per_class"] = per_class
    present = [a for a in per_class if a is not None]
    out["mean_per_class"] = float(np.mean(present)) if present else float("nan")
    if groups is not None:
        out.update(group_metrics(correct, groups))
    if class_groups is not None:
        out["class_groups"] = mean_accuracy_by_class_group(per_class, class_groups)
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
    return predict_logits(model, images, mean, std, batch_size, device, amp).argmax(1)


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: str | torch.device | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Float logits ``[N, C]`` (on the CPU) of ``model`` in eval mode; its train/eval mode is restored."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(device, non_blocking=True).float().div_(255.0)
            x = normalize(x, mean, std).contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
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

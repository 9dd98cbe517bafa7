"""Training losses (METHODS_SPEC §5.7): soft-target cross-entropy and the DII/DM label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from augbench.contract import one_hot  # the one one-hot; re-exported for training code

__all__ = ["label_smoothing_loss", "one_hot", "smoothed_targets", "soft_target_cross_entropy"]


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


def drw_class_weights(counts, beta: float) -> torch.Tensor:
    """DRW's per-class weights (METHODS_SPEC §5.4, [DM train_hub_imb.py L497-506]): ``w_k = (1 - beta) /
    (1 - beta^{n_k})`` normalised to sum to C; ``beta = 0`` gives 1 for every class. ``n_k`` are the real
    training subset's class counts (a class without images counts as one, so its weight stays finite)."""
    n = torch.as_tensor(counts, dtype=torch.float64).clamp_min(1.0)
    weights = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(float(beta), dtype=torch.float64), n))
    return (weights / weights.sum() * len(n)).float()


def class_weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i sum_k w_k q_ik (-log p_ik) / sum_i sum_k w_k q_ik``: ``F.cross_entropy(weight=w)`` (its mean
    divides by the weights of the targets) for probability targets, so mixed labels are re-weighted too."""
    weighted = targets.float() * weights.to(logits.device).float()[None, :]
    return -(weighted * F.log_softmax(logits.float(), dim=1)).sum() / weighted.sum().clamp_min(1e-12)


def label_smoothing_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """DII ``LabelSmoothing`` / DM ``LabelSmoothingLoss`` (§5.7): integer ``[N]`` or vector ``[N, C]`` targets."""
    q = smoothed_targets(target, logits.shape[1], smoothing)
    return soft_target_cross_entropy(logits, q)

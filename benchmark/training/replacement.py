"""Joint training with synthetic data: which synthetic image replaces a fetched real one (METHODS_SPEC §4).

``REPLACEMENT_MODES`` lists every mode; ``DEFAULT_REPLACEMENT_MODE`` is the one default used by
``TrainConfig`` and by suites that do not name a mode (P1's SD-random setting, real + synthetic
concatenated).
"""

from __future__ import annotations

import torch

# the modes are part of the method contract (a card's TrainingIntegration names one); re-exported here
from augbench.contract import DEFAULT_REPLACEMENT_MODE, REPLACEMENT_MODES
from augbench.contract.config import EPOCH_MODES
from augbench.training.inputs import SyntheticSet
from augbench.training.losses import one_hot

__all__ = ["DEFAULT_REPLACEMENT_MODE", "REPLACEMENT_MODES", "ReplacementSampler"]


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
        if mode not in REPLACEMENT_MODES or mode in EPOCH_MODES:
            raise ValueError(
                f"replacement mode must be one of {', '.join(m for m in REPLACEMENT_MODES if m not in EPOCH_MODES)}, "
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

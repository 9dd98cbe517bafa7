"""CutMix and MixUp: training-time label mixing (METHODS_SPEC §2).

Papers: CutMix (Yun et al., ICCV 2019), mixup (Zhang et al., ICLR 2018). Semantics follow the
reference code the benchmark reproduces [DM downstream_tasks/mixup.py:65-119; DII utils.py:64-117;
EXT ildoonet ``cutmix/utils.py`` ``rand_bbox``], with the settings of METHODS_SPEC §2.2 as presets:

=====================  =========================================  ==========================================
preset                 CutMix                                     MixUp
=====================  =========================================  ==========================================
(default) /            beta 1, p 0.5, per sample, partner         alpha 0.2, p 0.5, per sample, partner
``noisecutmix_paper``  uniform (P1 §4.1 L93; HARNESS §2.2)        uniform (P1 §4.1 L93; HARNESS §2.2)
``diffii_code``        beta 1, p 0.3, per sample, random index    alpha 1, p 0.3, per batch, permutation
``dm_code``            beta 1, p 0.5, per sample, random index    alpha 1, p 0.5, per batch, permutation
``diffii_code_lt``     beta 1, p 0.1, per sample, random index    —
``dm_code_lt``         beta 1, p 0.1, per sample, random index    —
=====================  =========================================  ==========================================

Why not torchvision or timm: ``torchvision.transforms.v2.CutMix/MixUp`` decide per batch only and
always pair sample ``i`` with ``i-1`` (``roll(1)``), without an application probability; timm's
``Mixup`` draws from the global ``np.random`` (not reproducible per call) and needs an even batch size.
Neither expresses the per-sample decision with a uniformly drawn partner of DM/DII/P1, so both
transforms are written here, with every random draw taken from the passed ``torch.Generator``.

Partner "random index": DM and DII mix a fetched sample with a uniformly drawn *dataset* index. A
batch method sees one batch; since batches are uniform draws from the (shuffled) training set, the
harness draws the partner uniformly among the *other* members of the batch, i.e. uniformly over the
training set minus the sample itself (HARNESS, METHODS_SPEC §2.2). Partners are always taken from the
un-mixed batch (as in the dataset wrapper, where the partner is fetched fresh).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from augbench.contract import BatchMethod, MethodCard, MethodConfig, param

__all__ = ["CMO", "CMOParams", "CutMix", "CutMixParams", "MixUp", "MixUpParams", "sample_beta", "sample_partners"]

DECISIONS = ("per_sample", "per_batch")
PARTNERS = ("uniform", "permutation", "roll")


def sample_beta(a: float, b: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws from Beta(a, b) as float64, using only ``generator``.

    Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b). ``torch.distributions.Beta`` cannot take a
    generator, so the gamma sampler behind it is called directly (``torch._standard_gamma`` accepts
    one). float64 keeps small shapes (alpha = 0.2) from underflowing to 0/0.
    """
    x = torch._standard_gamma(torch.full((n,), float(a), dtype=torch.float64), generator=generator)
    y = torch._standard_gamma(torch.full((n,), float(b), dtype=torch.float64), generator=generator)
    total = x + y
    return torch.where(total > 0, x / total.clamp_min(torch.finfo(torch.float64).tiny), 0.5)


def sample_partners(batch_size: int, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Partner index per sample (long ``[B]``).

    Args:
        batch_size: B.
        mode: ``uniform`` (each sample independently draws one of the other B-1 samples; itself when
            B == 1), ``permutation`` (``torch.randperm``, as DM/DII's MixUp; fixed points allowed) or
            ``roll`` (``i -> i-1``, torchvision's pairing).
        generator: the only source of randomness.
    """
    idx = torch.arange(batch_size)
    if mode == "uniform":
        if batch_size < 2:
            return idx.clone()
        j = torch.randint(0, batch_size - 1, (batch_size,), generator=generator)
        return j + (j >= idx).long()
    if mode == "permutation":
        return torch.randperm(batch_size, generator=generator)
    if mode == "roll":
        return idx.roll(1)
    raise ValueError(f"unknown partner mode {mode!r}; expected one of {PARTNERS}")


def _decisions(batch_size: int, prob: float, decision: str, generator: torch.Generator) -> torch.Tensor:
    if decision == "per_sample":
        return torch.rand(batch_size, generator=generator, dtype=torch.float64) < prob
    return (torch.rand(1, generator=generator, dtype=torch.float64) < prob).expand(batch_size).clone()


def _mix_targets(targets: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    # Params live on the CPU (they come from a CPU generator); move them to the batch's device.
    lam_t = lam.to(device=targets.device, dtype=targets.dtype).unsqueeze(1)
    return lam_t * targets + (1 - lam_t) * targets[partner.to(targets.device)]


# --- CutMix --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutMixParams:
    """Everything random in one CutMix batch (pin these in tests).

    Attributes:
        apply: bool ``[B]``: whether sample i is mixed.
        partner: long ``[B]``: index of the partner sample in the (un-mixed) batch.
        lam_sampled: float64 ``[B]``: the Beta draw (before box clipping).
        boxes: long ``[B, 4]``: ``(y0, y1, x0, x1)`` of the clipped box, half-open; all zeros where
            ``apply`` is false.
        lam: float64 ``[B]``: area-corrected ``1 - box_area / (H * W)`` (1.0 where not applied).
    """

    apply: torch.Tensor
    partner: torch.Tensor
    lam_sampled: torch.Tensor
    boxes: torch.Tensor
    lam: torch.Tensor


def cutmix_box(lam: float, image_hw: tuple[int, int], center: tuple[int, int]) -> tuple[int, int, int, int]:
    """The clipped CutMix box for Beta draw ``lam`` centred at ``center = (cy, cx)`` (METHODS_SPEC §2.1).

    Side lengths ``floor(W*sqrt(1-lam))`` and ``floor(H*sqrt(1-lam))``; the box extends half a side
    (integer division) on each side of the centre and is clipped to the image, as ``rand_bbox`` does.

    Returns:
        ``(y0, y1, x0, x1)``, half-open.
    """
    h, w = image_hw
    cut_rat = math.sqrt(1.0 - lam)
    cut_w, cut_h = int(w * cut_rat), int(h * cut_rat)
    cy, cx = center
    x0, x1 = min(max(cx - cut_w // 2, 0), w), min(max(cx + cut_w // 2, 0), w)
    y0, y1 = min(max(cy - cut_h // 2, 0), h), min(max(cy + cut_h // 2, 0), h)
    return y0, y1, x0, x1


@dataclass(frozen=True)
class CutMixConfig(MethodConfig):
    beta: float = param(1.0, "Beta(beta, beta) parameter of λ", paper="1.0 in P1, DM, DII, DAF [§2.2]")
    prob: float = param(
        0.5,
        "probability that a sample (per_sample) or the batch (per_batch) is mixed",
        paper="P1 0.5; DII code 0.3 (few-shot), 0.1 (long-tail); DM code 0.5, 0.1 (long-tail) [§2.2]",
    )
    decision: str = param(
        "per_sample", "apply decision per sample or once per batch", paper="per sample in DM/DII [§2.2]",
        choices=DECISIONS,
    )
    partner: str = param(
        "uniform",
        "partner: uniform over the other batch members, a random permutation, or roll(1)",
        paper="DM/DII: uniformly random dataset index; P1: UNSPEC [§2.2]",
        choices=PARTNERS,
    )
    num_classes: int | None = param(None, "number of classes, only needed for integer labels")

    def validate(self) -> None:
        super().validate()
        if not (0.0 <= self.prob <= 1.0) or self.beta <= 0:
            raise ValueError(f"CutMix needs 0 <= prob <= 1 and beta > 0; got prob={self.prob}, beta={self.beta}")


class CutMix(BatchMethod):
    """CutMix (METHODS_SPEC §2.1): paste a partner's box, mix labels by the realised box area.

    For each mixed sample i with partner j: draw ``lam ~ Beta(beta, beta)`` and a centre uniformly over
    integer pixel positions, copy ``x_j`` inside the clipped box, recompute ``lam = 1 - area/(H*W)``
    and set ``y_i = lam*y_i + (1-lam)*y_j`` (soft labels allowed). Random draws, in order: apply
    decisions, partners, λ (Beta via gamma), centre rows, centre columns.

    Example:
        >>> from augbench.run.seeding import make_generator
        >>> mix = CutMix(preset="diffii_code", num_classes=10)
        >>> x, y = mix(torch.rand(8, 3, 32, 32), torch.arange(8), make_generator(0))
    """

    family: ClassVar[str] = "cutmix"
    Config: ClassVar[type[MethodConfig]] = CutMixConfig
    presets: ClassVar[dict] = {
        "noisecutmix_paper": {"beta": 1.0, "prob": 0.5, "decision": "per_sample", "partner": "uniform"},
        "diffii_code": {"beta": 1.0, "prob": 0.3, "decision": "per_sample", "partner": "uniform"},
        "diffii_code_lt": {"beta": 1.0, "prob": 0.1, "decision": "per_sample", "partner": "uniform"},
        "dm_code": {"beta": 1.0, "prob": 0.5, "decision": "per_sample", "partner": "uniform"},
        "dm_code_lt": {"beta": 1.0, "prob": 0.1, "decision": "per_sample", "partner": "uniform"},
        "per_batch": {"beta": 1.0, "prob": 1.0, "decision": "per_batch", "partner": "permutation"},
    }
    card: ClassVar[MethodCard] = MethodCard(
        summary="CutMix: paste a box from a partner image; labels mixed by the realised box area",
        changes="training batches: a rectangle of each mixed image is replaced by the partner's pixels",
        labels="soft: lam*y_a + (1-lam)*y_b with lam = 1 - clipped box area / image area",
        cost="negligible (one copy per mixed sample, on the training device)",
        references=("METHODS_SPEC §2.1", "METHODS_SPEC §2.2", "Yun et al. 2019"),
    )

    def make_params(self, batch_size: int, image_hw: tuple[int, int], generator: torch.Generator) -> CutMixParams:
        """Sample decisions, partners, λ and box centres for a ``[B, C, H, W]`` batch."""
        cfg = self.config
        h, w = int(image_hw[0]), int(image_hw[1])
        apply = _decisions(batch_size, cfg.prob, cfg.decision, generator)
        partner = sample_partners(batch_size, cfg.partner, generator)
        n = batch_size if cfg.decision == "per_sample" else 1
        lam_sampled = sample_beta(cfg.beta, cfg.beta, n, generator)
        cy = torch.randint(0, h, (n,), generator=generator)
        cx = torch.randint(0, w, (n,), generator=generator)
        if n == 1:
            lam_sampled, cy, cx = (t.expand(batch_size).clone() for t in (lam_sampled, cy, cx))
        boxes = torch.zeros(batch_size, 4, dtype=torch.long)
        for i in range(batch_size):
            if apply[i]:
                boxes[i] = torch.tensor(cutmix_box(float(lam_sampled[i]), (h, w), (int(cy[i]), int(cx[i]))))
        area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
        lam = 1.0 - area.to(torch.float64) / float(h * w)
        return CutMixParams(apply=apply, partner=partner, lam_sampled=lam_sampled, boxes=boxes, lam=lam)

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: CutMixParams) -> tuple[torch.Tensor, torch.Tensor]:
        """Paste the boxes of ``params`` and mix the targets with the area-corrected λ."""
        targets = self.soft_targets(targets)
        out = images.clone()
        for i in range(images.shape[0]):
            y0, y1, x0, x1 = (int(v) for v in params.boxes[i])
            if params.apply[i] and y1 > y0 and x1 > x0:
                out[i, :, y0:y1, x0:x1] = images[int(params.partner[i]), :, y0:y1, x0:x1]
        return out, _mix_targets(targets, params.partner, params.lam)


# --- MixUp ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixUpParams:
    """Everything random in one MixUp batch.

    Attributes:
        apply: bool ``[B]``.
        partner: long ``[B]``.
        lam: float64 ``[B]``: the Beta draw where applied, 1.0 elsewhere.
    """

    apply: torch.Tensor
    partner: torch.Tensor
    lam: torch.Tensor


@dataclass(frozen=True)
class MixUpConfig(MethodConfig):
    alpha: float = param(
        0.2, "Beta(alpha, alpha) parameter of λ", paper="P1 0.2; DII and DM code 1.0 (hard-coded) [§2.2]"
    )
    prob: float = param(
        0.5, "probability that a sample (per_sample) or the batch (per_batch) is mixed",
        paper="P1 0.5; DII code 0.3; DM code 0.5 [§2.2]",
    )
    decision: str = param(
        "per_sample", "apply decision per sample or once per batch", paper="per batch in DM/DII [§2.2]",
        choices=DECISIONS,
    )
    partner: str = param(
        "uniform",
        "partner: uniform over the other batch members, a random permutation, or roll(1)",
        paper="DM/DII: random permutation inside the batch; P1: UNSPEC [§2.2]",
        choices=PARTNERS,
    )
    num_classes: int | None = param(None, "number of classes, only needed for integer labels")

    def validate(self) -> None:
        super().validate()
        if not (0.0 <= self.prob <= 1.0) or self.alpha <= 0:
            raise ValueError(f"MixUp needs 0 <= prob <= 1 and alpha > 0; got prob={self.prob}, alpha={self.alpha}")


class MixUp(BatchMethod):
    """MixUp (METHODS_SPEC §2.1): ``x = lam*x_a + (1-lam)*x_b``, ``y = lam*y_a + (1-lam)*y_b``.

    ``lam ~ Beta(alpha, alpha)``, one draw per sample (per_sample) or one per batch (per_batch, as in
    DM/DII). Random draws, in order: apply decisions, partners, λ. Images must be floating point.
    """

    family: ClassVar[str] = "mixup"
    Config: ClassVar[type[MethodConfig]] = MixUpConfig
    presets: ClassVar[dict] = {
        "noisecutmix_paper": {"alpha": 0.2, "prob": 0.5, "decision": "per_sample", "partner": "uniform"},
        "diffii_code": {"alpha": 1.0, "prob": 0.3, "decision": "per_batch", "partner": "permutation"},
        "dm_code": {"alpha": 1.0, "prob": 0.5, "decision": "per_batch", "partner": "permutation"},
        "per_batch": {"alpha": 1.0, "prob": 1.0, "decision": "per_batch", "partner": "permutation"},
    }
    card: ClassVar[MethodCard] = MethodCard(
        summary="MixUp: convex combination of two images and of their labels",
        changes="training batches: mixed images are blended pixel-wise with a partner",
        labels="soft: lam*y_a + (1-lam)*y_b",
        cost="negligible (one blend per batch on the training device)",
        references=("METHODS_SPEC §2.1", "METHODS_SPEC §2.2", "Zhang et al. 2018"),
    )

    def make_params(self, batch_size: int, image_hw: tuple[int, int], generator: torch.Generator) -> MixUpParams:
        """Sample decisions, partners and λ."""
        cfg = self.config
        apply = _decisions(batch_size, cfg.prob, cfg.decision, generator)
        partner = sample_partners(batch_size, cfg.partner, generator)
        n = batch_size if cfg.decision == "per_sample" else 1
        lam = sample_beta(cfg.alpha, cfg.alpha, n, generator).expand(batch_size).clone()
        lam = torch.where(apply, lam, torch.ones_like(lam))
        return MixUpParams(apply=apply, partner=partner, lam=lam)

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: MixUpParams) -> tuple[torch.Tensor, torch.Tensor]:
        """Blend images and targets with ``params.lam`` (samples with lam == 1 are left unchanged)."""
        if not images.is_floating_point():
            raise TypeError(f"MixUp blends pixels and needs floating-point images; got {images.dtype}")
        targets = self.soft_targets(targets)
        shape = (-1, *([1] * (images.ndim - 1)))
        lam = params.lam.to(device=images.device, dtype=images.dtype).view(shape)
        mixed = lam * images + (1 - lam) * images[params.partner.to(images.device)]
        out = torch.where(params.apply.to(images.device).view(shape), mixed, images)
        return out, _mix_targets(targets, params.partner, params.lam)


# --- CMO -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CMOParams:
    """Everything random in one CMO batch: whether it mixes, the Beta draw, the box and its area-corrected λ."""

    apply: bool
    lam_sampled: float
    box: tuple[int, int, int, int]
    lam: float


@dataclass(frozen=True)
class CMOConfig(MethodConfig):
    beta: float = param(1.0, "λ ~ Beta(beta, beta) sets the box size", paper="DM --beta 1 [§5.4]")
    prob: float = param(0.5, "probability that a batch is mixed", paper="DM --cutmix_prob 0.5 [§5.4]")
    start_data_aug: int = param(3, "mix only in 0-based epochs e with start < e < epochs - end",
                                paper="DM --start_data_aug 3 [§5.4]")
    end_data_aug: int = param(3, "see start_data_aug", paper="DM --end_data_aug 3 [§5.4]")
    class_weighting: str = param("none", "the run's loss re-weighting: none, or drw (P2's CMO-DRW row; any other "
                                 "method takes DRW from [training] class_weighting)",
                                 paper="P2 Table 2: CMO and CMO-DRW rows [§5.4]", choices=("none", "drw"))
    num_classes: int | None = param(None, "number of classes, only needed for integer labels")

    def validate(self) -> None:
        super().validate()
        if not (0.0 <= self.prob <= 1.0) or self.beta <= 0:
            raise ValueError(f"CMO needs 0 <= prob <= 1 and beta > 0; got prob={self.prob}, beta={self.beta}")
        if self.start_data_aug < 0 or self.end_data_aug < 0:
            raise ValueError("CMO's start_data_aug and end_data_aug are epoch counts >= 0")


class CMO(BatchMethod):
    """CMO, context-rich minority oversampling (METHODS_SPEC §5.4; Park et al. 2022): a CutMix box from a batch
    drawn with per-sample weights 1/n_k (the training loop's ``inverse_frequency`` partner sampler, weighted_alpha
    = 1) pasted into the regular batch, so minority objects appear on majority backgrounds.

    Per batch, in 0-based epochs ``start < e < E - end``: with probability ``prob`` one ``lam ~ Beta(beta, beta)``,
    one box (CutMix geometry, centre uniform over pixels) for the whole batch, ``lam`` corrected to the box area;
    targets ``lam * y + (1 - lam) * y_minority``, i.e. the loss ``lam CE(out, y) + (1 - lam) CE(out, y_minority)``
    [DM train_hub_imb.py L596-646, 692-708]. Random draws, in order: decision, λ, centre row, centre column.
    """

    family: ClassVar[str] = "cmo"
    Config: ClassVar[type[MethodConfig]] = CMOConfig
    partner_sampler: ClassVar[str | None] = "inverse_frequency"
    presets: ClassVar[dict] = {"drw": {"class_weighting": "drw"}}  # P2 Table 2's CMO-DRW
    card: ClassVar[MethodCard] = MethodCard(
        summary="CMO: paste a box from a minority-oversampled batch into the regular batch (long-tail baseline)",
        changes="training batches: a rectangle of every image of a mixed batch comes from a class-balanced batch",
        labels="soft: lam*y + (1-lam)*y_minority with lam = 1 - box area / image area",
        cost="a second (class-weighted) batch per step, loaded and augmented; negligible otherwise",
        references=("METHODS_SPEC §5.4", "P2 Table 2 (CMO, CMO-DRW)", "Park et al. 2022"),
    )

    def active(self, epoch: int, num_epochs: int) -> bool:
        e = epoch - 1  # DM counts epochs from 0
        return self.config.start_data_aug < e < num_epochs - self.config.end_data_aug

    def make_params(self, batch_size: int, image_hw: tuple[int, int], generator: torch.Generator) -> CMOParams:
        cfg = self.config
        h, w = int(image_hw[0]), int(image_hw[1])
        apply = bool(torch.rand(1, generator=generator, dtype=torch.float64) < cfg.prob)
        lam_sampled = float(sample_beta(cfg.beta, cfg.beta, 1, generator)[0])
        cy, cx = int(torch.randint(0, h, (1,), generator=generator)), int(torch.randint(0, w, (1,), generator=generator))
        box = cutmix_box(lam_sampled, (h, w), (cy, cx)) if apply else (0, 0, 0, 0)
        lam = 1.0 - (box[1] - box[0]) * (box[3] - box[2]) / float(h * w)
        return CMOParams(apply=apply, lam_sampled=lam_sampled, box=box, lam=lam)

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: CMOParams,
              partner: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Paste ``params.box`` of the partner batch into every image and mix the targets by the box area."""
        if partner is None:
            raise ValueError("CMO mixes with a partner batch: apply(images, targets, params, partner=(images, targets))")
        targets, minority = self.soft_targets(targets), self.soft_targets(partner[1]).to(targets.device)
        y0, y1, x0, x1 = params.box
        if not params.apply or y1 <= y0 or x1 <= x0:
            return images.clone(), targets
        out = images.clone()
        out[:, :, y0:y1, x0:x1] = partner[0][:, :, y0:y1, x0:x1].to(images.device)
        return out, params.lam * targets + (1.0 - params.lam) * minority.to(targets.dtype)

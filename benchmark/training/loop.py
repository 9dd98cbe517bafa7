"""The training loop: ``train_classifier`` (METHODS_SPEC §4, §5, §7.1).

A run, in order:

1. **Decode once** (``_TrainingPool``): real and synthetic images become uint8 tensors at the recipe's
   pre-crop size ``R`` on the training device.
2. **Real / synthetic selection** per batch (§4): replacement with probability ``p`` through a
   ``ReplacementSampler``, or real and synthetic sets concatenated (``concat``).
3. **Augmentation** on the device (``transforms.augment_batch``), then the optional **batch mixer**.
4. **Loss** (§5.7) and the per-iteration **schedule** (§5.1) (``_Run._step``).
5. **Evaluation and model selection** every evaluated epoch (``_Run._evaluate``); the weights of the
   epoch the selection rule will report are kept (``_BestWeights``).

Randomness comes only from ``torch.Generator`` objects derived from the run seed (``_Streams``);
what draws from the global RNG (the weights of a model built by a factory, dropout) runs inside
``torch.random.fork_rng`` seeded from the run seed, so the caller's global state is untouched.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from augbench.contract.config import EPOCH_MODES
from augbench.data.imaging import prepare_images
from augbench.run.seeding import derive_seed, make_generator
from augbench.training.config import TrainConfig, TrainResult
from augbench.training.evaluation import evaluate_model
from augbench.training.inputs import BatchMixer, LabeledImages, SyntheticSet
from augbench.training.losses import (
    class_weighted_cross_entropy,
    drw_class_weights,
    one_hot,
    smoothed_targets,
    soft_target_cross_entropy,
)
from augbench.training.recipes import Recipe, cosine_warmup_lr
from augbench.training.replacement import REPLACEMENT_MODES, ReplacementSampler
from augbench.training.runtime import autocast, resolve_device, torch_threads
from augbench.training.selection import FINAL_EPOCH_RULES, SELECTION_RULES, selected_metrics
from augbench.training.transforms import augment_batch, prepare_eval, train_geometry

__all__ = ["train_classifier"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        model: an ``nn.Module``, a ``augbench.training.backbones.ClassifierSpec`` (its normalisation and input
            size become the defaults), or a zero-argument factory returning either; a factory is called
            under ``fork_rng`` seeded from the run seed, so the head initialisation is reproducible.
        train: the real training subset (after carving out any validation split).
        num_classes: number of classes ``C``.
        config: ``TrainConfig`` (recipe, seed, replacement mode, selection, device...). The recipe is
            used as given: the per-dataset learning rate is applied by ``get_recipe``, not here.
        test: the test split (metrics per epoch; the reported numbers).
        val: validation split for ``selection='val_split'`` (carved from the training data by the caller).
        synthetic: optional synthetic set (§4).
        mixer: optional batch method ``(images, targets, generator) -> (images, soft_targets)`` (CutMix,
            MixUp, §2) applied to every training batch after augmentation and normalisation.
        class_groups: optional named class lists for grouped accuracies (many/medium/few, §5.4).

    Returns:
        ``TrainResult`` (metrics, history, timings, config, model with the selected epoch's weights).

    Raises:
        ValueError: inconsistent inputs (e.g. ``val_split`` selection without ``val``).
    """
    cfg = config or TrainConfig()
    cfg.recipe.validate()
    _check_config(cfg, test, val)
    device = resolve_device(cfg.device)
    t_start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.num_threads or torch_threads())
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(derive_seed(cfg.seed, "train", "torch_global"))
            run = _Run(model, train, num_classes, cfg, device, test, val, synthetic, mixer, class_groups, t_start)
            return run.fit()
    finally:
        torch.set_num_threads(prev_threads)


def _check_config(cfg: TrainConfig, test: LabeledImages | None, val: LabeledImages | None) -> None:
    """Refuse a replacement mode or selection rule the loop does not know, or one missing its split."""
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


# --------------------------------------------------------------------------------------------------
# What a run is made of: the classifier, the image pool, the step plan, the random streams
# --------------------------------------------------------------------------------------------------


@dataclass
class _Classifier:
    """The module to train and the input convention it expects."""

    model: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    spec_info: dict[str, Any]


def _resolve_classifier(model: Any, cfg: TrainConfig) -> _Classifier:
    """Build ``model`` if it is a factory and take the normalisation and input size from a ``ClassifierSpec``.

    ``TrainConfig`` values win over the spec's; ImageNet statistics are the last resort.
    """
    from augbench.training.backbones import (
        ClassifierSpec,  # backbones imports timm: loaded only when training
    )

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
    if input_size is None:
        raise ValueError("input_size is unknown: pass TrainConfig(input_size=...) or a ClassifierSpec")
    return _Classifier(model, tuple(mean or IMAGENET_MEAN), tuple(std or IMAGENET_STD), int(input_size), spec_info)


class _TrainingPool:
    """The training images on the device, and how a batch of epoch positions becomes images and targets.

    An epoch runs over the real images, over real then synthetic images with ``concat``, or over the synthetic
    images alone with ``synthetic_only`` (the classification accuracy score). In the
    replacement modes each fetched real image is swapped for a synthetic one by the sampler (§4).
    """

    def __init__(self, train: LabeledImages, synthetic: SyntheticSet | None, cfg: TrainConfig, num_classes: int,
                 pre_crop: int, resize_mode: str, device: torch.device):
        self.device = device
        self.num_classes = num_classes
        self.real = prepare_images(train.images, pre_crop, resize_mode).to(device)
        self.real_labels = train.labels.clone()
        self.n_real = len(self.real_labels)
        self.n_synthetic = len(synthetic) if synthetic is not None else 0
        self.synthetic: torch.Tensor | None = None
        self.sampler: ReplacementSampler | None = None
        self.concat_targets: torch.Tensor | None = None
        # positions >= first_synthetic of an epoch address the synthetic images (concat: after the real ones)
        self.first_synthetic = 0 if cfg.replacement_mode == "synthetic_only" else self.n_real
        if synthetic is None or len(synthetic) == 0:
            if cfg.replacement_mode == "synthetic_only":
                raise ValueError("replacement mode 'synthetic_only' trains on the synthetic set alone, and it is empty")
            return
        self.synthetic = prepare_images(synthetic.images, pre_crop, resize_mode).to(device)
        if cfg.replacement_mode in EPOCH_MODES:
            targets = synthetic.soft_targets(num_classes)
            if cfg.replacement_mode == "concat":
                targets = torch.cat([one_hot(self.real_labels, num_classes), targets])
            if cfg.synthetic_labels == "hard":
                targets = one_hot(targets.argmax(1), num_classes)
            self.concat_targets = targets
        else:
            self.sampler = ReplacementSampler(cfg.replacement_mode, cfg.replacement_p, self.real_labels, synthetic,
                                              num_classes, cfg.synthetic_labels)

    @property
    def epoch_length(self) -> int:
        if self.concat_targets is None:
            return self.n_real
        return self.first_synthetic + self.n_synthetic

    def batch(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(uint8 images on the device, [B, C] targets, number of synthetic images in the batch)``."""
        if self.concat_targets is not None:
            return self._concat_batch(idx)
        if self.sampler is not None:
            return self._replacement_batch(idx, generator)
        return self.real[idx.to(self.device)], one_hot(self.real_labels[idx], self.num_classes), 0

    def _concat_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Positions ``>= first_synthetic`` address the synthetic images (``concat``, P1; ``synthetic_only``)."""
        is_syn = idx >= self.first_synthetic
        if bool(is_syn.all()):
            images = self.synthetic[(idx - self.first_synthetic).to(self.device)]
        elif is_syn.any():
            real_part = self.real[idx.clamp(max=self.n_real - 1).to(self.device)]
            syn_part = self.synthetic[(idx - self.first_synthetic).clamp(min=0).to(self.device)]
            images = torch.where(is_syn.to(self.device)[:, None, None, None], syn_part, real_part)
        else:
            images = self.real[idx.to(self.device)]
        return images, self.concat_targets[idx], int(is_syn.sum())

    def _replacement_batch(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Each real image replaced with probability ``p`` by the sampler's draw (§4 replacement modes)."""
        syn, label_cls = self.sampler.draw(idx, generator)
        targets = self.sampler.targets(idx, syn, label_cls)
        rep = syn >= 0
        images = self.real[idx.to(self.device)]
        if rep.any():
            images = images.clone()
            images[rep.to(self.device)] = self.synthetic[syn[rep].to(self.device)]
        return images, targets, int(rep.sum())


@dataclass(frozen=True)
class _Plan:
    """Batch size, steps, epochs, evaluation epochs and schedule lengths of a run (§5.1, §5.3)."""

    batch_size: int
    steps_per_epoch: int
    epochs: int
    eval_at: frozenset[int]
    t_max: int
    warmup: int

    @classmethod
    def of(cls, recipe: Recipe, epoch_length: int) -> _Plan:
        bs = min(recipe.batch_size, epoch_length)  # capped at the epoch length, as DM does
        steps_per_epoch = epoch_length // bs if recipe.drop_last else math.ceil(epoch_length / bs)
        epochs = recipe.num_epochs(epoch_length)
        total_steps = epochs * steps_per_epoch
        t_max = epochs * epoch_length // bs if recipe.t_max_rule == "paper" else total_steps
        return cls(bs, steps_per_epoch, epochs, frozenset(recipe.eval_epochs(epochs)), t_max,
                   int(recipe.warmup_fraction * t_max))

    def lr(self, recipe: Recipe, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based)."""
        if recipe.schedule == "cosine":
            return cosine_warmup_lr(step, recipe.lr, self.t_max, self.warmup)
        return recipe.lr


@dataclass(frozen=True)
class _Streams:
    """One generator per kind of random draw, each derived from the run seed, so e.g. a mixer that
    draws more numbers does not change the shuffle or the crops."""

    shuffle: torch.Generator
    replace: torch.Generator
    augment: torch.Generator
    mix: torch.Generator
    partner: torch.Generator  # a mixer's partner batch (CMO): its indices, replacements and augmentation

    @classmethod
    def from_seed(cls, seed: int) -> _Streams:
        names = ("shuffle", "replace", "augment", "mix", "partner")
        return cls(*(make_generator(derive_seed(seed, "train", name)) for name in names))


class _BestWeights:
    """A copy of the weights of the best-scoring evaluated epoch so far (ties keep the earlier epoch)."""

    def __init__(self) -> None:
        self.score = -math.inf
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, score: float | None, model: nn.Module) -> None:
        if score is not None and score > self.score:
            self.score = score
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restore(self, model: nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def _make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov
        )
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _loss_targets(targets: torch.Tensor, mixed: bool, recipe: Recipe, num_classes: int) -> torch.Tensor:
    """The target distribution the loss sees (§5.7): the targets, label-smoothed when the recipe says so.

    Under DII's convention unmixed hard labels (rows with a 1) are smoothed as integer labels (mass 1);
    DM's treats every row as a vector.
    """
    if recipe.label_smoothing <= 0:
        return targets
    integer_rows = None
    if recipe.smoothing_mode == "dii" and not mixed:
        integer_rows = targets.max(dim=1).values == 1.0
    return smoothed_targets(targets, num_classes, recipe.label_smoothing, integer_rows)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PartnerSampler:
    """Indices of a mixer's partner batch (``BatchMethod.partner_sampler``), over the real training images.

    ``inverse_frequency``: drawn with replacement with per-sample weights ``1 / n_k`` (CMO's weighted_alpha = 1,
    METHODS_SPEC §5.4); on a subset whose classes are all the same size (few-shot) that is uniform, and the
    record says so.
    """

    weights: torch.Tensor
    uniform: bool

    @classmethod
    def of(cls, mixer: Any, labels: torch.Tensor, num_classes: int) -> _PartnerSampler | None:
        rule = getattr(mixer, "partner_sampler", None)
        if rule is None:
            return None
        if rule != "inverse_frequency":
            raise ValueError(f"{type(mixer).__name__}: unknown partner_sampler {rule!r}; the training loop draws "
                             "'inverse_frequency' partner batches")
        counts = torch.bincount(labels.long(), minlength=num_classes).double()
        present = counts[counts > 0]
        return cls(1.0 / counts[labels.long()], bool((present == present[0]).all()))

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.multinomial(self.weights, n, replacement=True, generator=generator)


@dataclass(frozen=True)
class _DRW:
    """Deferred re-weighting (METHODS_SPEC §5.4): uniform weights before ``first_epoch`` (1-based), DRW's after.

    Diff-Mix re-weights from 0-based epoch 160 of 200; ``drw_start`` is that point as a fraction of the
    schedule, so a recipe of E epochs re-weights from 1-based epoch ``round(drw_start * E) + 1``.
    """

    first_epoch: int
    class_weights: torch.Tensor

    @classmethod
    def of(cls, cfg: TrainConfig, labels: torch.Tensor, num_classes: int, epochs: int) -> _DRW | None:
        if cfg.class_weighting != "drw":
            return None
        counts = torch.bincount(labels.long(), minlength=num_classes)
        return cls(int(round(cfg.drw_start * epochs)) + 1, drw_class_weights(counts, cfg.drw_beta))

    def weights(self, epoch: int) -> torch.Tensor | None:
        return self.class_weights if epoch >= self.first_epoch else None


class _Run:
    """One call of ``train_classifier``: prepares everything, trains epoch by epoch, reports."""

    def __init__(self, model, train, num_classes, cfg, device, test, val, synthetic, mixer, class_groups, t_start):
        self.cfg, self.recipe, self.device, self.t_start = cfg, cfg.recipe, device, t_start
        self.amp = cfg.amp and device.type == "cuda"
        self.num_classes, self.test, self.val = num_classes, test, val
        self.mixer, self.class_groups = mixer, class_groups
        self.clf = _resolve_classifier(model, cfg)
        self.pre_crop, self.padding = train_geometry(self.recipe, self.clf.input_size)
        self.pool = _TrainingPool(train, synthetic, cfg, num_classes, self.pre_crop, self.recipe.resize_mode, device)
        s = self.clf.input_size
        self.test_x = prepare_eval(test.images, self.recipe, s) if test is not None else None
        self.val_x = prepare_eval(val.images, self.recipe, s) if val is not None else None
        self.t_prepared = time.perf_counter()
        self.model = self.clf.model.to(device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.optimizer = _make_optimizer(self.model, self.recipe)
        self.plan = _Plan.of(self.recipe, self.pool.epoch_length)
        if cfg.selection in FINAL_EPOCH_RULES and not cfg.curves:
            # the rule reports the final weights: evaluating earlier epochs would change nothing reported
            self.plan = dataclasses.replace(self.plan, eval_at=frozenset({self.plan.epochs}))
        self.has_bn = _has_batchnorm(self.model)
        self.streams = _Streams.from_seed(cfg.seed)
        self.best = _BestWeights()
        # selection = "ema": evaluate (and report) an exponential moving average of the weights, BN
        # statistics included (torch.optim.swa_utils; an honest rule that needs no validation images)
        self.ema = (torch.optim.swa_utils.AveragedModel(
            self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
            if cfg.selection == "ema" else None)
        self.history: list[dict[str, Any]] = []
        self.drw = _DRW.of(cfg, self.pool.real_labels, num_classes, self.plan.epochs)
        self.partner = _PartnerSampler.of(mixer, self.pool.real_labels, num_classes)
        self.mixing = mixer is not None
        self.class_weights: torch.Tensor | None = None
        self.step = 0
        self.images_seen = 0
        self.train_time = self.eval_time = 0.0

    def fit(self) -> TrainResult:
        for epoch in range(1, self.plan.epochs + 1):
            t_epoch = time.perf_counter()
            record = self._train_epoch(epoch)
            t_trained = time.perf_counter()
            self.train_time += t_trained - t_epoch
            if epoch in self.plan.eval_at:
                self._evaluate(record)
            self.eval_time += time.perf_counter() - t_trained
            record["seconds"] = time.perf_counter() - t_epoch
            self.history.append(record)
        self.best.restore(self.model)
        self.model.eval()
        metrics = selected_metrics(self.history, self.cfg.selection)
        return TrainResult(metrics=metrics, history=self.history, timings=self._timings(),
                           config=self._config_record(), model=self.model)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the epoch's images; returns the epoch's history record (not yet evaluated)."""
        self.class_weights = self.drw.weights(epoch) if self.drw is not None else None
        active = getattr(self.mixer, "active", None)  # a plain (images, targets, generator) callable mixes always
        self.mixing = self.mixer is not None and (active is None or bool(active(epoch, self.plan.epochs)))
        bs = self.plan.batch_size
        perm = torch.randperm(self.pool.epoch_length, generator=self.streams.shuffle)
        loss_sum, loss_n, replaced = 0.0, 0, 0
        lr = self.recipe.lr
        for b in range(self.plan.steps_per_epoch):
            idx = perm[b * bs : (b + 1) * bs]
            if idx.numel() < 2 and self.has_bn:
                continue  # NOTE: a batch of one cannot be batch-normalised in train mode; skipped
            images, targets, n_synthetic = self.pool.batch(idx, self.streams.replace)
            lr = self.plan.lr(self.recipe, self.step)
            loss = self._step(images, targets, lr)
            replaced += n_synthetic
            loss_sum += loss * idx.numel()
            loss_n += idx.numel()
        self.images_seen += loss_n
        return {
            "epoch": epoch,
            "train_loss": loss_sum / max(1, loss_n),
            "lr": lr,
            "replaced_fraction": replaced / max(1, loss_n),
            "val_top1": None,
            "test_top1": None,
        }

    def _step(self, images: torch.Tensor, targets: torch.Tensor, lr: float) -> float:
        """Augment, mix, one optimiser step at learning rate ``lr``; returns the batch's mean loss."""
        x = augment_batch(images, self.recipe, self.clf.input_size, self.padding, self.streams.augment,
                          self.clf.mean, self.clf.std, self.cfg.channels_last)
        targets = targets.to(self.device)
        mixed = self.mixing  # this epoch mixes (CutMix, MixUp: every epoch; CMO: inside its window)
        if mixed:
            x, targets = self.mixer(x, targets, self.streams.mix, **self._partner_batch(len(x)))
            targets = targets.to(self.device).float()
        q = _loss_targets(targets, mixed, self.recipe, self.num_classes)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.amp):
            logits = self.model(x)
        loss = (soft_target_cross_entropy(logits, q) if self.class_weights is None
                else class_weighted_cross_entropy(logits, q, self.class_weights))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return float(loss.detach())

    def _partner_batch(self, n: int) -> dict[str, Any]:
        """``{"partner": (images, targets)}`` for a mixer with a partner sampler (drawn, replaced and augmented
        with the partner stream only), else ``{}``."""
        if self.partner is None:
            return {}
        images, targets, _ = self.pool.batch(self.partner.draw(n, self.streams.partner), self.streams.partner)
        x = augment_batch(images, self.recipe, self.clf.input_size, self.padding, self.streams.partner,
                          self.clf.mean, self.clf.std, self.cfg.channels_last)
        return {"partner": (x, targets.to(self.device))}

    def _evaluate(self, record: dict[str, Any]) -> None:
        """Validation and test metrics into ``record``; keep the weights if the selection rule prefers them."""
        clf, cfg = self.clf, self.cfg
        model = self.ema.module if self.ema is not None else self.model
        if self.val_x is not None:
            record["val_top1"] = evaluate_model(
                model, self.val_x, self.val.labels, self.num_classes, clf.mean, clf.std, None, None,
                cfg.eval_batch_size, self.device, self.amp,
            )["top1"]
        if self.test_x is not None:
            metrics = evaluate_model(
                model, self.test_x, self.test.labels, self.num_classes, clf.mean, clf.std, self.test.groups,
                self.class_groups, cfg.eval_batch_size, self.device, self.amp,
            )
            record["test_top1"] = metrics["top1"]
            record["test"] = metrics
        # last_epoch / max_per_group report the last evaluated epoch: the epoch number is its score
        score = {"val_split": record["val_top1"], "max_test": record["test_top1"]}.get(cfg.selection, record["epoch"])
        self.best.offer(score, model)

    def _timings(self) -> dict[str, float]:
        total = time.perf_counter() - self.t_start
        return {
            "prepare": self.t_prepared - self.t_start,
            "train": self.train_time,
            "eval": self.eval_time,
            "total": total,
            "train_images_per_s": self.images_seen / self.train_time if self.train_time > 0 else float("nan"),
            "steps": self.step,
        }

    def _config_record(self) -> dict[str, Any]:
        """``TrainConfig.to_dict()`` plus what the run resolved: sizes, normalisation, plan, data sizes."""
        plan, pool = self.plan, self.pool
        record = self.cfg.to_dict()
        record.update(
            input_size=self.clf.input_size,
            mean=list(self.clf.mean),
            std=list(self.clf.std),
            pre_crop_size=self.pre_crop,
            crop_padding=self.padding,
            device=str(self.device),
            amp=self.amp,
            num_classes=self.num_classes,
            n_train=pool.n_real,
            n_synthetic=pool.n_synthetic,
            n_val=len(self.val) if self.val is not None else 0,
            n_test=len(self.test) if self.test is not None else 0,
            epoch_length=pool.epoch_length,
            epochs=plan.epochs,
            eval_epochs=sorted(plan.eval_at),
            **({"partner_sampler": {"rule": self.mixer.partner_sampler, "uniform": self.partner.uniform,
                                    "mixing_epochs": [e for e in range(1, plan.epochs + 1)
                                                      if self.mixer.active(e, plan.epochs)]}}
               if self.partner is not None else {}),
            **({"drw": {"first_epoch": self.drw.first_epoch, "beta": self.cfg.drw_beta,
                        "class_weights": [round(float(w), 6) for w in self.drw.class_weights]}}
               if self.drw is not None else {}),
            batch_size=plan.batch_size,
            steps_per_epoch=plan.steps_per_epoch,
            t_max=plan.t_max,
            warmup_steps=plan.warmup,
            mixer=type(self.mixer).__name__ if self.mixer is not None else None,
            backbone=self.clf.spec_info or None,
        )
        return record

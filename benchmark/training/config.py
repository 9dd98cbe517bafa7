"""What a training run is given and what it returns: ``TrainConfig`` and ``TrainResult``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from augbench.training.recipes import RECIPES, Recipe
from augbench.training.replacement import DEFAULT_REPLACEMENT_MODE

if TYPE_CHECKING:
    from torch import nn

__all__ = ["TrainConfig", "TrainResult"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on besides data and model.

    Attributes:
        recipe: the ``Recipe``, used as given (``get_recipe`` has already applied the per-dataset
            learning rate and any overrides).
        seed: run seed; every random stream derives from it.
        input_size: classifier input ``S`` (default: the ``ClassifierSpec``'s).
        mean / std: input normalisation (default: the ``ClassifierSpec``'s, else ImageNet).
        replacement_mode: §4 mode (``same_class``, ``global_pool``, ``own_edits``, ``inverse_freq_class``,
            ``global_pool_inverse_freq``, ``concat``); default ``DEFAULT_REPLACEMENT_MODE``.
        replacement_p: replacement probability ``p`` (§4: 0.5); ignored by ``concat``.
        synthetic_labels: ``auto`` (per-mode rule of §4), ``soft`` or ``hard``.
        selection: ``val_split`` (default), ``last_epoch``, ``ema``, ``max_test`` or ``max_per_group``.
        ema_decay: per-step decay of the weight average that ``selection = "ema"`` evaluates.
        curves: evaluate at every epoch of the recipe's schedule even when the selection rule can only
            report the last one (``last_epoch``, ``ema``). Off by default: those rules then evaluate
            once, at the end -- the reported numbers are identical and a few-shot cell trains ~20%
            faster (issue 15); the history has no intermediate test curve and no ``max_test_top1``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``.
        num_threads: torch CPU threads during training (default: the usable core count).
        amp: bf16 autocast on CUDA (never on CPU).
        channels_last: channels-last memory format (faster on CPU and GPU for convnets).
        eval_batch_size: evaluation batch size.
        class_weighting / drw_beta / drw_start: ``drw`` re-weights the loss per class with
            ``losses.drw_class_weights(counts, drw_beta)`` from the first epoch after ``drw_start`` of the schedule
            (Diff-Mix: epoch 160 of 200, METHODS_SPEC §5.4), uniform before; ``none``: plain cross-entropy.
        dataset: dataset id, recorded with the run. It does not change the learning rate: pass it to
            ``get_recipe`` for the per-dataset rate of §5.1 recipes.
    """

    recipe: Recipe = RECIPES["embedded"]
    seed: int = 0
    input_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    replacement_mode: str = DEFAULT_REPLACEMENT_MODE
    replacement_p: float = 0.5
    synthetic_labels: str = "auto"
    selection: str = "val_split"
    ema_decay: float = 0.98
    curves: bool = False
    device: str = "auto"
    num_threads: int | None = None
    amp: bool = True
    channels_last: bool = True
    eval_batch_size: int = 256
    dataset: str | None = None
    class_weighting: str = "none"
    drw_beta: float = 0.9999
    drw_start: float = 0.8

    def __post_init__(self) -> None:
        check_class_weighting(self.class_weighting, self.drw_beta, self.drw_start)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the recipe's mappings as plain dicts); the DRW fields only when DRW is on, so the
        keys of runs without it stay what they were."""
        d = asdict(self)
        d["recipe"] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in d["recipe"].items()}
        if self.class_weighting == "none":
            for key in ("class_weighting", "drw_beta", "drw_start"):
                d.pop(key)
        return d


#: ``[training] class_weighting``: ``none`` (plain cross-entropy) or ``drw`` (deferred re-weighting, §5.4)
CLASS_WEIGHTINGS = ("none", "drw")


def check_class_weighting(mode: str, beta: float, start: float) -> None:
    """DRW's settings: a known rule, ``beta`` in [0, 1), the deferral a fraction of the schedule in (0, 1)."""
    from augbench.contract import ConfigError

    if mode not in CLASS_WEIGHTINGS:
        raise ConfigError(f"class_weighting = {mode!r}: expected one of {', '.join(CLASS_WEIGHTINGS)}")
    if not 0.0 <= float(beta) < 1.0:
        raise ConfigError(f"drw_beta = {beta}: expected a value in [0, 1) (DRW: 0.9999, METHODS_SPEC §5.4)")
    if not 0.0 < float(start) < 1.0:
        raise ConfigError(f"drw_start = {start}: the deferral must fall inside the schedule, a fraction in (0, 1) of "
                          "its epochs (Diff-Mix: epoch 160 of 200 = 0.8)")


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


def class_weighting_problems(suite: Any) -> list[str]:
    """Every ``[training]`` / ``[training.<family>]`` DRW setting of ``suite`` this module refuses, as lines."""
    from augbench.contract import ConfigError

    scopes = [("[training]", "")] + [(f"[training.{family}]", family) for family, table in suite.training.items()
                                     if isinstance(table, Mapping)]
    problems = []
    for scope, family in scopes:
        keys = suite.class_weighting(family)
        try:
            check_class_weighting(keys.get("class_weighting", "none"), keys.get("drw_beta", 0.9999),
                                  keys.get("drw_start", 0.8))
        except ConfigError as exc:
            problems.append(f"{scope}: {exc}")
    return problems

"""Method configuration: ``MethodConfig`` dataclasses, ``param`` metadata, cards and training integration.

Each method class declares a ``Config`` dataclass (subclass of ``MethodConfig``) with its harness
defaults, ``presets`` (dict overlays selected by ``family.preset`` ids, timm's ``arch.tag`` idea) and a
``card`` (``MethodCard``: what it changes, its labels and cost, and how its synthetic images join
training, ``TrainingIntegration``, METHODS_SPEC §4). Parameter help and the papers' values go into the
dataclass field metadata through ``param``. Part of ``augbench.contract``; imports neither torch nor
the runner.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from augbench.plugins import did_you_mean

__all__ = [
    "DEFAULT_REPLACEMENT_MODE",
    "LABEL_RULES",
    "REPLACEMENT_MODES",
    "ConfigError",
    "EmptyConfig",
    "MethodCard",
    "MethodConfig",
    "TrainingIntegration",
    "param",
]

# How a synthetic image replaces a fetched real one (METHODS_SPEC §4 (a)-(d')); ``concat`` (P1's
# SD-random setting: real and synthetic sets concatenated) is the default of cards, suites and
# ``augbench.training.TrainConfig``. ``augbench.training.replacement`` implements the modes.
# ``synthetic_only``: an epoch runs over the synthetic set alone (the classification accuracy score, a
# suite's ``syn_only`` column; DiffDA-Eval's training on generated images only). DiffDA-Eval's other modes
# are ``concat`` (full-concat), ``same_class`` with p = 1 (full-replace) and p = 0.5 (random-replace).
REPLACEMENT_MODES = (
    "same_class",
    "global_pool",
    "own_edits",
    "inverse_freq_class",
    "global_pool_inverse_freq",
    "concat",
    "synthetic_only",
)
#: the modes whose epoch is not the real images with some of them swapped (no ReplacementSampler)
EPOCH_MODES = ("concat", "synthetic_only")
DEFAULT_REPLACEMENT_MODE = "concat"


class ConfigError(ValueError):
    """A method configuration or preset is invalid (unknown key, wrong type, unknown preset)."""


# --- configuration -------------------------------------------------------------------------------


def param(default: Any, help: str = "", *, paper: Any = None, choices: Sequence[Any] | None = None) -> Any:
    """A config dataclass field carrying documentation for the method card.

    Args:
        default: harness default value (immutable, or a tuple).
        help: one-line description shown by ``augbench methods`` and ``Registry.describe``.
        paper: the papers' / reference code's value(s) where they differ from the harness default,
            as free text with METHODS_SPEC citations (e.g. ``"P1: 0.2 [§2.2]; DII code: 1.0"``).
        choices: allowed values; checked by ``MethodConfig.validate``.

    Returns:
        A ``dataclasses.field`` with ``metadata = {"help", "paper", "choices"}``.
    """
    meta = {"help": help, "paper": paper, "choices": tuple(choices) if choices is not None else None}
    return field(default=default, metadata=meta)


def _tuple_fields(cls: type) -> set[str]:
    names = set()
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations (local types): fall back to defaults
        hints = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        origins = {typing.get_origin(hint)} | {typing.get_origin(a) for a in typing.get_args(hint)}
        if tuple in origins or hint is tuple or isinstance(f.default, tuple):
            names.add(f.name)
    return names


@dataclass(frozen=True)
class MethodConfig:
    """Base class of every method's ``Config`` dataclass (frozen; JSON-ready values only).

    Subclasses add fields with ``param(...)``. ``to_dict``/``from_dict`` round-trip exactly (tuples
    are restored from JSON lists); unknown keys raise ``ConfigError`` with close matches.
    """

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (tuples become lists, so it is JSON-ready)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodConfig:
        """Build a config from a dict; ``None`` values mean "use the default" (timm factory rule).

        Raises:
            ConfigError: a key is not a field of this config.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            hints = [f"{k!r}{did_you_mean(k, known)}" for k in unknown]
            raise ConfigError(
                f"{cls.__qualname__}: unknown parameter(s) {', '.join(hints)}; "
                f"known parameters: {', '.join(sorted(known)) or '(none)'}"
            )
        tuples = _tuple_fields(cls)
        kwargs = {}
        for k, v in data.items():
            if v is None:
                continue
            kwargs[k] = tuple(v) if k in tuples and isinstance(v, list) else v
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def replace(self, **changes: Any) -> MethodConfig:
        """A copy with ``changes`` applied (``None`` values ignored), validated."""
        return type(self).from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})

    def validate(self) -> None:
        """Check ``choices`` declared through ``param``; subclasses may add checks.

        Raises:
            ConfigError: a value is not one of the declared choices.
        """
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ConfigError(
                    f"{type(self).__qualname__}.{f.name} = {getattr(self, f.name)!r}; expected one of "
                    f"{', '.join(repr(c) for c in choices)}"
                )

    @classmethod
    def describe_params(cls) -> list[dict[str, Any]]:
        """One dict per field: name, type, default, help, paper value(s), choices."""
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            out.append(
                {
                    "name": f.name,
                    "type": str(f.type),
                    "default": list(default) if isinstance(default, tuple) else default,
                    "help": f.metadata.get("help", ""),
                    "paper": f.metadata.get("paper"),
                    "choices": list(f.metadata["choices"]) if f.metadata.get("choices") else None,
                }
            )
        return out


@dataclass(frozen=True)
class EmptyConfig(MethodConfig):
    """Config of a method without parameters."""


LABEL_RULES = ("as_generated", "hard", "diff_mix")


@dataclass(frozen=True)
class TrainingIntegration:
    """How a method's synthetic images join classifier training (METHODS_SPEC §4), declared on its card.

    A suite overrides these per family in ``[training.<family>]`` (or for every family in ``[training]``);
    records and table captions state what was used.

    Attributes:
        replacement_mode: ``concat`` (P1: real and synthetic sets concatenated), ``same_class``,
            ``own_edits``, ``global_pool``, ``inverse_freq_class`` or ``global_pool_inverse_freq``
            (§4 (a)-(d')).
        replacement_p: probability that a real sample is replaced by a synthetic one (§4: 0.5).
        labels: ``as_generated`` (the stored normalised label), ``hard`` (one-hot of the target class,
            §4 per-class methods) or ``diff_mix`` (``sigma * [(1 - s**gamma) e_a + s**gamma e_b]`` from the
            stored mixing metadata, §3.7), applied when the set is loaded, as the papers' code does.
        label_gamma, label_sigma: the ``diff_mix`` rule's γ and σ (§3.7: 0.8 and 0.9 / 1.0 for CUB-LT).
    """

    replacement_mode: str = DEFAULT_REPLACEMENT_MODE
    replacement_p: float = 0.5
    labels: str = "as_generated"
    label_gamma: float = 0.8
    label_sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.replacement_mode not in REPLACEMENT_MODES:
            hint = did_you_mean(self.replacement_mode, REPLACEMENT_MODES)
            raise ConfigError(f"unknown replacement_mode {self.replacement_mode!r}{hint}; "
                              f"expected one of {', '.join(REPLACEMENT_MODES)}")
        if self.labels not in LABEL_RULES:
            raise ConfigError(f"unknown labels rule {self.labels!r}; expected one of {', '.join(LABEL_RULES)}")
        if not 0.0 <= float(self.replacement_p) <= 1.0:
            raise ConfigError(f"replacement_p must be in [0, 1], got {self.replacement_p}")
        for name in ("label_gamma", "label_sigma"):
            value = float(getattr(self, name))
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1] (Diff-Mix's soft label sigma * [(1 - s**gamma) e_a + "
                                  f"s**gamma e_b], METHODS_SPEC §3.7: gamma 0.8, sigma 0.9 / 1.0), got {value}")

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainingIntegration:
        unknown = [k for k in overrides if k not in {f.name for f in dataclasses.fields(self)}]
        if unknown:
            raise ConfigError(f"unknown training key(s) {unknown}; expected "
                              f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MethodCard:
    """What a method is, in a few lines (USER_NEEDS §8.9: "write a method card for each generator").

    Parameters and their harness defaults come from the ``Config`` dataclass; the papers' values from
    its ``param(paper=...)`` metadata and from the presets.

    Attributes:
        summary: one line (shown by ``augbench methods``).
        changes: what the method changes in the training data.
        labels: the labels it emits (hard one-hot, soft mixtures, ...).
        cost: compute cost (what runs, how many UNet/VAE/text-encoder passes per image, ...).
        references: METHODS_SPEC sections and papers.
        training: how its synthetic images join training by default (METHODS_SPEC §4).
    """

    summary: str
    changes: str = ""
    labels: str = ""
    cost: str = ""
    references: tuple[str, ...] = ()
    training: TrainingIntegration = field(default_factory=TrainingIntegration)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["references"] = list(self.references)
        return d

"""The method contract: one interface for every augmentation method (DESIGN.md, "The method contract").

Two kinds of methods share one base class (``Method``):

* **batch** methods (``BatchMethod``: CutMix, MixUp, identity) mix a training batch. Sampling the
  randomness (``make_params``: λ, boxes, partners, apply decisions) is separate from applying it
  (``apply``), following torchvision v2's ``make_params``/``transform`` split, so tests can pin the
  parameters. All randomness comes from an explicit ``torch.Generator`` (never global RNG state).
* **offline** methods (``OfflineMethod``: SD-random and the diffusion family) produce a synthetic set
  before training: optional ``setup(subset, ctx)`` (concept learning, inversion pools), ``plan(subset,
  budget, seed)`` (a list of ``GenerationRequest``, each with its own seed derived from
  ``(run seed, method id, request index)``; METHODS_SPEC §4 "HARNESS: use a per-worker seeded
  generator"), and batched ``generate(requests, ctx)`` returning ``SyntheticSample`` objects (image,
  soft label, provenance).

Each method class declares a ``Config`` dataclass (subclass of ``MethodConfig``) with its harness
defaults, ``presets`` (dict overlays selected by ``family.preset`` ids, timm's ``arch.tag`` idea) and a
``card`` (``MethodCard``: what it changes, its labels and cost). Parameter help and the papers' values
go into the dataclass field metadata through ``param``.
"""

from __future__ import annotations

import dataclasses
import difflib
import threading
import types
import typing
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from augbench.run.seeding import derive_seed
from augbench.training.replacement import DEFAULT_REPLACEMENT_MODE, REPLACEMENT_MODES

if TYPE_CHECKING:
    from PIL import Image

    from augbench.data.cards import DatasetCard
    from augbench.data.core import ImageSource, Subset
    from augbench.run.profiles import Profile

__all__ = [
    "ArtifactSpec",
    "BatchMethod",
    "ConfigError",
    "GenerationRequest",
    "Method",
    "MethodCard",
    "MethodConfig",
    "MethodContext",
    "OfflineMethod",
    "PipelineCache",
    "PROCESS_PIPELINES",
    "SyntheticSample",
    "TrainingIntegration",
    "as_soft_targets",
    "param",
    "request_seed",
]

KINDS = ("batch", "offline")


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


def _close_matches(name: str, known: Sequence[str] | set[str], n: int = 1) -> list[str]:
    """Close spellings of ``name`` among ``known`` (difflib, plus shared prefixes such as prob/probability)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=n, cutoff=0.5)
    if not close:
        close = [k for k in known if len(k) >= 3 and (name.startswith(k) or k.startswith(name))][:n]
    return close


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
            hints = []
            for k in unknown:
                close = _close_matches(k, known)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
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
            close = _close_matches(self.replacement_mode, REPLACEMENT_MODES)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
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


ARTIFACT_TRAINING_IMAGES = ("train_part", "full_split")


@dataclass(frozen=True)
class ArtifactSpec:
    """Something an offline method needs built before it generates (DESIGN.md, "Stages, artifacts").

    The runner builds it once per (kind, recipe, base model, training images) in the shared store, or
    reuses it, and hands it to the method in ``ctx.artifacts[name]``.

    Attributes:
        kind: a registered artifact kind (``augbench.run.artifacts.ARTIFACT_KINDS``).
        recipe: the kind's parameters (JSON-ready); part of the artifact's key.
        name: the key in ``ctx.artifacts`` (default: ``kind``).
        path: an existing artifact folder to import instead of building one (its ``artifact.json`` says
            what it was trained on; the leakage guard checks it like a built one).
        base_model: the diffusers pipeline to train on when it is not the profile's (DA-Fusion's SD v1.4);
            part of the key.
        trained_on: ``train_part`` (default: the cell's training part) or ``full_split`` (the training part
            plus the validation part carved from it, as P1's full-data generator checkpoints, METHODS_SPEC
            §5.5); the leakage guard refuses ``full_split`` unless the suite sets ``allow_foreign_artifacts``.
    """

    kind: str
    recipe: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""
    path: str | None = None
    base_model: str | None = None
    trained_on: str = "train_part"

    def __post_init__(self) -> None:
        if self.trained_on not in ARTIFACT_TRAINING_IMAGES:
            raise ConfigError(f"ArtifactSpec.trained_on = {self.trained_on!r}; expected one of "
                              f"{', '.join(ARTIFACT_TRAINING_IMAGES)}")

    @property
    def slot(self) -> str:
        return self.name or self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "recipe": dict(self.recipe), "name": self.slot, "path": self.path,
                "base_model": self.base_model, "trained_on": self.trained_on}

    def context(self, ctx: MethodContext) -> MethodContext:
        """``ctx`` with the profile's pipeline replaced by ``base_model`` (``ctx`` itself without one)."""
        if not self.base_model or self.base_model == ctx.profile.pipeline:
            return ctx
        return dataclasses.replace(ctx, profile=dataclasses.replace(ctx.profile, pipeline=self.base_model,
                                                                    models_fingerprint=None))


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


# --- base class ----------------------------------------------------------------------------------


class Method:
    """Common base of batch and offline methods.

    Class attributes a method declares:
        family: default family id (the entry-point name normally matches it).
        kind: ``"batch"`` or ``"offline"``.
        Config: the ``MethodConfig`` dataclass with harness defaults.
        presets: ``{preset name: {field: value}}`` overlays (``family.preset`` ids).
        card: the ``MethodCard``.
        deterministic: ``True`` when the output does not depend on the seed (the identity method).
        contract_test_params: config overrides the generic contract tests (``augbench.testing``) use
            with tiny *random* models — e.g. a CLIP filter that a random CLIP can never pass.

    Args:
        config: the config (default: ``Config()`` with ``preset`` and ``overrides`` applied).
        preset: preset name (only when ``config`` is not given).
        method_id: the id the registry created it under (``family`` or ``family.preset``).
        **overrides: config values on top of the preset (``None`` values are ignored).
    """

    family: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Config: ClassVar[type[MethodConfig]] = EmptyConfig
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = types.MappingProxyType({})
    card: ClassVar[MethodCard] = MethodCard(summary="")
    deterministic: ClassVar[bool] = False
    contract_test_params: ClassVar[Mapping[str, Any]] = types.MappingProxyType({})

    def __init__(
        self,
        config: MethodConfig | None = None,
        *,
        preset: str | None = None,
        method_id: str | None = None,
        **overrides: Any,
    ):
        if config is not None and (preset or overrides):
            raise ConfigError("pass either a config or preset/overrides, not both")
        self.config = config if config is not None else self.build_config(preset, overrides)
        if not isinstance(self.config, self.Config):
            raise ConfigError(
                f"{type(self).__name__} expects a {self.Config.__qualname__}, got {type(self.config).__name__}"
            )
        self.preset = preset
        family = self.family or type(self).__name__.lower()
        self.id = method_id or (f"{family}.{preset}" if preset else family)

    @classmethod
    def build_config(cls, preset: str | None = None, overrides: Mapping[str, Any] | None = None) -> MethodConfig:
        """Harness defaults, then the preset overlay, then ``overrides`` (``None`` dropped).

        Raises:
            ConfigError: unknown preset or parameter.
        """
        values: dict[str, Any] = {}
        if preset:
            if preset not in cls.presets:
                close = difflib.get_close_matches(preset, list(cls.presets), n=3)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise ConfigError(
                    f"{cls.family or cls.__name__} has no preset {preset!r}.{hint} "
                    f"Presets: {', '.join(sorted(cls.presets)) or '(none)'}"
                )
            values.update(cls.presets[preset])
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.Config.from_dict(values)

    def provenance(self) -> dict[str, Any]:
        """``{"method": id, "preset": ..., "params": config dict}`` for records and manifests."""
        return {"method": self.id, "preset": self.preset, "params": self.config.to_dict()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, config={self.config!r})"


def as_soft_targets(targets: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Probability vectors ``[B, C]`` from ``targets`` (already ``[B, C]`` floats, or int labels ``[B]``).

    Args:
        targets: ``[B, C]`` floating probability vectors, or ``[B]`` integer class indices.
        num_classes: required for integer labels.

    Returns:
        A float tensor ``[B, C]`` (float32 for integer input, else the input dtype).

    Raises:
        ValueError: wrong rank, or integer labels without ``num_classes``.
    """
    if targets.ndim == 2 and targets.is_floating_point():
        return targets
    if targets.ndim == 1 and not targets.is_floating_point():
        if num_classes is None:
            raise ValueError(
                "integer labels need num_classes (set the method's num_classes or pass [B, C] probability "
                "vectors)"
            )
        return torch.nn.functional.one_hot(targets.long(), num_classes).to(torch.float32)
    raise ValueError(
        f"targets must be [B, C] probability vectors or [B] integer labels; got shape {tuple(targets.shape)} "
        f"dtype {targets.dtype}"
    )


class BatchMethod(Method):
    """A training-time batch mixer: ``(images, targets, generator) -> (images, soft_targets)``.

    Subclasses implement ``make_params`` (all randomness, from the generator only) and ``apply``
    (deterministic given the params). Images are ``[B, C, H, W]`` tensors; targets are probability
    vectors ``[B, num_classes]`` (integer labels ``[B]`` are accepted when ``config.num_classes`` is set).
    """

    kind: ClassVar[str] = "batch"

    def make_params(self, batch_size: int, image_hw: tuple[int, int], generator: torch.Generator) -> Any:
        """Sample everything random for one batch (λ, boxes, partners, decisions)."""
        raise NotImplementedError

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply pinned ``params``; returns new ``(images, soft_targets)`` and leaves the inputs untouched."""
        raise NotImplementedError

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``apply(images, targets, make_params(B, (H, W), generator))``.

        Raises:
            TypeError: ``generator`` is not a CPU ``torch.Generator`` (global RNG state is never used).
            ValueError: images are not ``[B, C, H, W]`` or targets do not match the batch.
        """
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{type(self).__name__} needs an explicit torch.Generator (got {type(generator).__name__}); "
                "use augbench.run.seeding.make_generator(seed)"
            )
        if generator.device.type != "cpu":
            raise TypeError(
                f"{type(self).__name__} samples its (tiny) parameters on the CPU; pass a CPU torch.Generator "
                f"(got one on {generator.device}); the batch itself may live on any device"
            )
        self.check_inputs(images, targets)
        params = self.make_params(images.shape[0], (images.shape[-2], images.shape[-1]), generator)
        return self.apply(images, targets, params)

    def check_inputs(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} expects images as a [B, C, H, W] tensor; got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
            )
        if targets.shape[0] != images.shape[0]:
            raise ValueError(
                f"batch size mismatch: {images.shape[0]} images but {targets.shape[0]} targets"
            )

    def soft_targets(self, targets: torch.Tensor) -> torch.Tensor:
        return as_soft_targets(targets, getattr(self.config, "num_classes", None))


# --- offline methods -----------------------------------------------------------------------------


def request_seed(run_seed: int, family: str, request_index: int) -> int:
    """The seed of request ``request_index``: ``derive_seed(run_seed, family, request_index)``.

    It depends neither on batch size nor on worker count (DESIGN.md, "The method contract"), and not
    on the preset: ablation presets of one family (``diff_ii.cl_si``, ``sd_random.p1_article``) start
    from the same noise and draws, so their rows are paired comparisons (DESIGN.md, "Paired comparisons").
    """
    return derive_seed(int(run_seed), str(family), int(request_index))


@dataclass(frozen=True)
class GenerationRequest:
    """One synthetic image to generate.

    Attributes:
        index: position in the plan (0..n-1); names the output file.
        seed: ``request_seed(run_seed, family, index)``.
        target_class: label index of the intended class.
        source_ids: image ids of the real source image(s) (empty for text-to-image).
        source_classes: labels of the source images.
        strength: img2img strength (METHODS_SPEC §1.3), when the method edits an image.
        lam: mixing coefficient (inter-class methods), when used.
        prompt: the text prompt, when known at plan time.
        params: method-specific extras (JSON-ready).
    """

    index: int
    seed: int
    target_class: int
    source_ids: tuple[str, ...] = ()
    source_classes: tuple[int, ...] = ()
    strength: float | None = None
    lam: float | None = None
    prompt: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["source_ids"] = list(self.source_ids)
        d["source_classes"] = list(self.source_classes)
        d["params"] = dict(self.params)
        return d


@dataclass
class SyntheticSample:
    """One generated image with its label and provenance.

    Attributes:
        image: ``uint8`` array ``[H, W, 3]`` or an RGB ``PIL.Image``.
        label: probability vector over the dataset's classes (float, non-negative, sums to 1).
        provenance: ``method``, ``preset``, ``params``, ``seed``, ``sources``, ``request_index`` (and
            anything else the method records).
    """

    image: np.ndarray | Image.Image
    label: np.ndarray
    provenance: dict[str, Any]

    def image_array(self) -> np.ndarray:
        """The image as a ``uint8`` ``[H, W, 3]`` array."""
        img = self.image
        if not isinstance(img, np.ndarray):
            img = np.asarray(img.convert("RGB"))
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"synthetic image must be uint8 [H, W, 3]; got {img.dtype} {img.shape}")
        return img

    @property
    def request_index(self) -> int:
        return int(self.provenance["request_index"])


def one_hot(label: int, num_classes: int) -> np.ndarray:
    """A hard label as a float64 probability vector."""
    v = np.zeros(num_classes, dtype=np.float64)
    v[int(label)] = 1.0
    return v


class PipelineCache:
    """Process-wide cache of warm models: one entry per key (e.g. ``(model, revision, artifact)``).

    DESIGN.md "Shared diffusion machinery": one warm pipeline per (base model, artifact) per process.
    Thread-safe; the factory runs at most once per key.
    """

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.RLock()

    def get(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._items:
                self._items[key] = factory()
            return self._items[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


PROCESS_PIPELINES = PipelineCache()


@dataclass
class MethodContext:
    """What an offline method needs from the harness.

    Attributes:
        profile: the foundation models and scale (``augbench.run.profiles.Profile``).
        source: the dataset's ``ImageSource`` (loads real images by id).
        card: the dataset card (default: ``source.card``).
        device: torch device for generation.
        cache_dir: where artifacts (concept learning, inversion pools) are cached.
        batch_size: how many requests ``generate`` processes per model call.
        pipelines: the warm-model cache (default: the process-wide one).
        artifacts: the built artifacts the method declared, by ``ArtifactSpec.slot``
            (``augbench.run.artifacts.Artifact``: folder, kind, recipe, what it was trained on).
    """

    profile: Profile
    source: ImageSource | None = None
    card: DatasetCard | None = None
    device: str = "cpu"
    cache_dir: Path | None = None
    batch_size: int = 8
    pipelines: PipelineCache = field(default_factory=lambda: PROCESS_PIPELINES)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.card is None and self.source is not None:
            self.card = self.source.card
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def require_card(self) -> DatasetCard:
        if self.card is None:
            raise ValueError("this method needs the dataset card: build MethodContext(source=...) or card=...")
        return self.card

    @property
    def num_classes(self) -> int:
        return self.require_card().num_classes


class OfflineMethod(Method):
    """A method that produces a synthetic set before training.

    The harness calls ``setup(subset, ctx)`` once, ``plan(subset, budget, seed, ctx=ctx)`` once and
    ``generate(chunk, ctx)`` on chunks of the plan (any chunking gives the same images up to float
    noise, because every request carries its own seed).
    """

    kind: ClassVar[str] = "offline"

    def artifacts(self, subset: Subset, ctx: MethodContext) -> list[ArtifactSpec]:
        """The artifacts to build (or reuse) before ``setup``: concept learning, inversion pools, ...

        Built on ``subset`` (the cell's training part) in the shared store and passed in
        ``ctx.artifacts``; the default is none.
        """
        return []

    def setup(self, subset: Subset, ctx: MethodContext) -> None:  # noqa: B027 - optional hook
        """Optional preparation after the artifacts are built (e.g. loading them into a pipeline)."""

    def plan(
        self, subset: Subset, budget: int | None, seed: int, *, ctx: MethodContext | None = None
    ) -> list[GenerationRequest]:
        """The generation requests for ``subset``.

        Args:
            subset: the real training subset.
            budget: number of synthetic images (``None``: the method's default).
            seed: the run seed; request ``i`` gets ``request_seed(seed, self.family, i)``.
            ctx: when given, prompts are filled in at plan time.
        """
        raise NotImplementedError

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        """Generate one ``SyntheticSample`` per request, in request order (batched internally)."""
        raise NotImplementedError

    def select(self, rows: Sequence[Mapping[str, Any]], load_image: Callable[[int], np.ndarray],
               ctx: MethodContext) -> list[int] | None:
        """Whole-set filter after generation (the ``select`` stage): indices of the rows to keep.

        ``rows`` are the synthetic set's manifest rows in request order and ``load_image(i)`` gives
        row ``i``'s image as ``uint8 [H, W, 3]``. ``None`` (the default) keeps every image; a filter
        that needs the whole set (Real-Filter's "drop the bottom 10 %", METHODS_SPEC §3.4) overrides it.
        """
        return None

    def request_seed(self, run_seed: int, index: int) -> int:
        return request_seed(run_seed, self.family, index)

    def sample_provenance(self, request: GenerationRequest, **extra: Any) -> dict[str, Any]:
        """Provenance of the sample generated for ``request``."""
        return {
            **self.provenance(),
            "seed": request.seed,
            "sources": list(request.source_ids),
            "source_classes": list(request.source_classes),
            "request_index": request.index,
            "target_class": request.target_class,
            **({"strength": request.strength} if request.strength is not None else {}),
            **({"lam": request.lam} if request.lam is not None else {}),
            **extra,
        }

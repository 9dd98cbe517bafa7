"""Methods: the ``Method`` base class, batch mixers and offline generators (DESIGN.md, "The method contract").

* **batch** methods (``BatchMethod``: CutMix, MixUp, identity) mix a training batch. Sampling the
  randomness (``make_params``: λ, boxes, partners, apply decisions) is separate from applying it
  (``apply``), following torchvision v2's ``make_params``/``transform`` split, so tests can pin the
  parameters. All randomness comes from an explicit ``torch.Generator`` (never global RNG state).
* **offline** methods (``OfflineMethod``: SD-random and the diffusion family) produce a synthetic set
  before training: ``artifacts(subset, ctx)`` (``ArtifactSpec``: concept learning, inversion pools,
  built by the runner), optional ``setup(subset, ctx)``, ``plan(subset, budget, seed)`` (a list of
  ``GenerationRequest``, each with its own seed derived from ``(run seed, family, request index)``;
  METHODS_SPEC §4 "HARNESS: use a per-worker seeded generator"), and batched ``generate(requests,
  ctx)`` returning ``SyntheticSample`` objects (image, soft label, provenance).

Part of ``augbench.contract``: it imports nothing from the runner or training (``tests/test_layout.py``).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from augbench.canonical import derive_seed
from augbench.contract.config import ConfigError, EmptyConfig, MethodCard, MethodConfig
from augbench.diffusion.cache import PROCESS_PIPELINES, PipelineCache
from augbench.plugins import did_you_mean

if TYPE_CHECKING:
    from PIL import Image

    from augbench.data.cards import DatasetCard
    from augbench.data.core import ImageSource, Subset
    from augbench.run.profiles import Profile

__all__ = [
    "ARTIFACT_TRAINING_IMAGES",
    "KINDS",
    "ArtifactSpec",
    "BatchMethod",
    "GenerationRequest",
    "Method",
    "MethodContext",
    "OfflineMethod",
    "SyntheticSample",
    "as_soft_targets",
    "one_hot",
    "request_seed",
]

KINDS = ("batch", "offline")


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
                raise ConfigError(
                    f"{cls.family or cls.__name__} has no preset {preset!r}{did_you_mean(preset, cls.presets)}. "
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
        return one_hot(targets, num_classes)
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
    #: the partner batch the method mixes with: ``None`` (partners are members of the batch: CutMix, MixUp), or
    #: the sampler the training loop draws a second batch with and passes as ``partner`` -- ``inverse_frequency``
    #: (per-sample weights 1/n_k of the real training subset: CMO, METHODS_SPEC §5.4)
    partner_sampler: ClassVar[str | None] = None

    def active(self, epoch: int, num_epochs: int) -> bool:
        """Whether the method mixes in 1-based ``epoch`` of ``num_epochs`` (default: every epoch)."""
        return True

    def make_params(self, batch_size: int, image_hw: tuple[int, int], generator: torch.Generator) -> Any:
        """Sample everything random for one batch (λ, boxes, partners, decisions)."""
        raise NotImplementedError

    def apply(self, images: torch.Tensor, targets: torch.Tensor, params: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply pinned ``params``; returns new ``(images, soft_targets)`` and leaves the inputs untouched."""
        raise NotImplementedError

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator,
        partner: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``apply(images, targets, make_params(B, (H, W), generator))``; a method with a ``partner_sampler``
        gets the partner batch too: ``apply(..., partner=(partner_images, partner_targets))``.

        Raises:
            TypeError: ``generator`` is not a CPU ``torch.Generator`` (global RNG state is never used).
            ValueError: images are not ``[B, C, H, W]`` or targets do not match the batch; a partner batch
                missing for a method that needs one, or given to one that pairs within the batch.
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
        name = type(self).__name__
        if self.partner_sampler is not None and partner is None:
            raise ValueError(f"{name} mixes with a partner batch drawn by the {self.partner_sampler!r} sampler; "
                             "pass partner=(images, targets) (the training loop draws it)")
        if self.partner_sampler is None and partner is not None:
            raise ValueError(f"{name} pairs images within the batch; it takes no partner batch")
        params = self.make_params(images.shape[0], (images.shape[-2], images.shape[-1]), generator)
        if partner is None:
            return self.apply(images, targets, params)
        self.check_inputs(*partner)
        if tuple(partner[0].shape) != tuple(images.shape):
            raise ValueError(f"{name}: the partner batch {tuple(partner[0].shape)} differs from the batch "
                             f"{tuple(images.shape)}")
        return self.apply(images, targets, params, partner=partner)

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


def one_hot(labels: int | torch.Tensor, num_classes: int) -> np.ndarray | torch.Tensor:
    """Hard labels as probability vectors: the project's one one-hot (METHODS_SPEC §4, §5.7).

    Args:
        labels: one integer class (a ``SyntheticSample``'s hard label), or an integer tensor ``[N]``
            (training targets).
        num_classes: ``C``.

    Returns:
        A float64 array ``[C]`` for an integer, a float32 tensor ``[N, C]`` (on the labels' device) for a
        tensor.
    """
    if isinstance(labels, torch.Tensor):
        return torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float32)
    v = np.zeros(num_classes, dtype=np.float64)
    v[int(labels)] = 1.0
    return v


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

    def required_models(self, profile: Profile) -> dict[str, str]:
        """Models this method loads on ``profile``: role -> location (path or hub id) as it will be loaded.

        ``augbench models check`` and the check ``augbench run`` makes before its first cell
        (``augbench.run.models``) look each one up, so a missing model fails at once, not hours into a run.
        Roles the check knows: ``"pipeline"`` (diffusers ``StableDiffusionPipeline`` folder / hub id),
        ``"sd14_pipeline"``, ``"clip"`` (transformers ``CLIPModel``), ``"captioner"`` (BLIP folder / hub id),
        ``"summariser:openai"`` (value: the model name; needs ``AUGBENCH_SUFFIX_LLM_URL``) and
        ``"summariser:transformers"`` (value: a causal-LM folder); another role is checked as a folder or hub id.
        The synthetic-set metrics' networks and the classifier are added by the check itself.
        Default: the profile's pipeline, ``{"pipeline": profile.pipeline}``.
        """
        return {"pipeline": profile.pipeline}

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

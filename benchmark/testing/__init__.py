"""Reusable contract tests and tiny components for method authors (built-in and third-party).

Modelled on diffusers' ``PipelineTesterMixin``: a test class inherits one mixin, names the method id
and gets the generic contract tests (DESIGN.md, "Testing"):

* shapes and dtypes; soft labels non-negative and summing to 1;
* same seed -> same output, different seed -> different output;
* config round trip (``to_dict``/``from_dict``, every preset);
* registry discovery (the id resolves through the entry-point registry) and ``describe``;
* no network (``HF_HUB_OFFLINE=1`` and sockets that raise);
* offline methods: request seeds independent of chunking, batch 1 == batch N within tolerance.

Example (a third-party package's tests)::

    from augbench.testing import BatchMethodTesterMixin

    class TestChannelFlip(BatchMethodTesterMixin):
        method_id = "channel_flip"

Tiny components for diffusion methods (diffusers-style: built from configs with a fixed seed, never
downloaded): ``tiny_sd_components``, ``save_tiny_sd_pipeline`` and ``tiny_profile``; the tokenizer is
the real CLIP BPE tokenizer built offline (``augbench.diffusion.tokenizer.build_clip_tokenizer``). A small
in-memory dataset: ``TinySource`` / ``tiny_card`` / ``tiny_subset``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from PIL import Image

from augbench.data.cards import DatasetCard
from augbench.contract import (
    BatchMethod,
    GenerationRequest,
    MethodContext,
    OfflineMethod,
    PipelineCache,
    SyntheticSample,
)
from augbench.data.core import ImageSource, Sample, Subset
from augbench.run.profiles import Profile
from augbench.registry import Registry, default_registry
from augbench.run.seeding import make_generator

__all__ = [
    "BatchMethodTesterMixin",
    "MethodTesterMixin",
    "NetworkAccessError",
    "OfflineMethodTesterMixin",
    "TinySource",
    "block_network",
    "cached_tiny_sd_pipeline",
    "save_tiny_sd_pipeline",
    "tiny_card",
    "tiny_profile",
    "tiny_sd_components",
    "tiny_subset",
]

_TINY_SD_VERSION = "2"  # bump when tiny_sd_components changes
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


# --- no network ----------------------------------------------------------------------------------


class NetworkAccessError(RuntimeError):
    """Raised when code under test opens a network connection (not an OSError, so nobody swallows it)."""


def block_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Set the HF offline variables and make every non-Unix socket connection raise.

    Returns:
        The list that records attempted addresses (for assertions).
    """
    attempts: list[Any] = []
    for k, v in OFFLINE_ENV.items():
        monkeypatch.setenv(k, v)

    def guard(real: Callable) -> Callable:
        def connect(sock: socket.socket, address: Any, *args: Any) -> Any:
            if getattr(socket, "AF_UNIX", None) is not None and sock.family == socket.AF_UNIX:
                return real(sock, address, *args)
            attempts.append(address)
            raise NetworkAccessError(f"network access during a test: connect({address!r})")

        return connect

    monkeypatch.setattr(socket.socket, "connect", guard(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(socket.socket.connect_ex))

    def no_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (None, "localhost", "127.0.0.1", "::1"):
            return real_getaddrinfo(host, *args, **kwargs)
        attempts.append(host)
        raise NetworkAccessError(f"network access during a test: getaddrinfo({host!r})")

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return attempts


# --- tiny dataset --------------------------------------------------------------------------------


def tiny_card(num_classes: int = 3, *, meta: str = "bird", dataset_id: str = "tiny") -> DatasetCard:
    """An in-memory dataset card with classes ``class_0 ...`` (names with underscores, like CUB)."""
    return DatasetCard(
        id=dataset_id,
        name="Tiny test dataset",
        kind="embedded",
        reader="tiny",
        class_names=tuple(f"Tiny_class_{i}" for i in range(num_classes)),
        meta=meta,
        prompt_template="a photo of a {name} {meta}",
        splits={"train": 0, "test": 0},
        path=Path("<memory>") / f"{dataset_id}.toml",
    )


class TinySource(ImageSource):
    """Deterministic in-memory images: per-class colour plus seeded noise, ``size`` x ``size`` RGB.

    Args:
        card: the dataset card (default ``tiny_card()``).
        per_class: images per class in each split, e.g. ``{"train": [3, 2, 1], "test": 2}``.
        size: image side in pixels.
    """

    def __init__(self, card: DatasetCard | None = None, per_class: Mapping[str, Any] | None = None, size: int = 16):
        super().__init__(card or tiny_card())
        per_class = dict(per_class or {"train": 4, "test": 2})
        self.size = size
        self._samples: dict[str, list[Sample]] = {}
        for split, counts in per_class.items():
            if isinstance(counts, int):
                counts = [counts] * self.num_classes
            self._samples[split] = [
                Sample(f"{split}/{label}/{k}", label) for label, n in enumerate(counts) for k in range(n)
            ]
        self._ids = {s.image_id: s for ss in self._samples.values() for s in ss}

    def split_names(self) -> list[str]:
        return list(self._samples)

    def samples(self, split: str) -> list[Sample]:
        self._check_split(split)
        return list(self._samples[split])

    # scene clauses of the captions, as the embedded world's captions end (Diff-II's "world" suffixes)
    SCENES = ("on a plain background", "in bright light", "seen from the side")

    def captions(self, image_ids: Sequence[str]) -> list[str]:
        """A world-style caption per image, ``a <class> <meta>, <scene>`` (scene from the image's index)."""
        return [f"a {self.card.prompt_name(self._ids[i].label)} {self.card.meta}, "
                f"{self.SCENES[int(i.rsplit('/', 1)[1]) % len(self.SCENES)]}" for i in image_ids]

    def load_image(self, image_id: str) -> Image.Image:
        from augbench.run.seeding import derive_seed

        if image_id not in self._ids:
            from augbench.data.core import DataError

            raise DataError(f"tiny dataset has no image {image_id!r}")
        label = self._ids[image_id].label
        rng = np.random.default_rng(derive_seed("tiny-image", image_id) % (2**32))
        hue = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 31 + 160) % 256], dtype=np.float64)
        img = hue + rng.normal(0, 20, size=(self.size, self.size, 3))
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB")


def tiny_subset(source: ImageSource, split: str = "train", protocol: str = "full") -> Subset:
    """All samples of ``split`` as a ``Subset``."""
    return Subset.of_source(source, split, protocol, {}, tuple(source.samples(split)))


# --- tiny Stable Diffusion ------------------------------------------------------------------------


def tiny_sd_components(seed: int = 0, *, cross_attention_dim: int = 32) -> dict[str, Any]:
    """Tiny random ``StableDiffusionPipeline`` components built from configs (diffusers test style).

    UNet2DConditionModel (16, 32) with one cross-attention level, AutoencoderKL (16, 32) (latent
    down-sampling factor 2), CLIPTextModel with hidden size 32 and the real CLIP vocabulary
    (49 408 tokens), the offline CLIP BPE tokenizer, and SD v1.5's noise schedule (METHODS_SPEC §1.1)
    in a DDIM scheduler config. ``torch.manual_seed(seed)`` before each component, as diffusers does.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from augbench.diffusion.tokenizer import build_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[16, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_size=cross_attention_dim,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=49408,
            max_position_embeddings=77,
        )
    )
    return {
        "unet": unet,
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder.eval(),
        "tokenizer": build_clip_tokenizer(77),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def save_tiny_sd_pipeline(path: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it to ``path`` (diffusers format); returns ``path``.

    Load it back with ``StableDiffusionPipeline.from_pretrained(path, local_files_only=True)``.
    """
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    if (path / "model_index.json").is_file():
        return path
    pipe = StableDiffusionPipeline(**tiny_sd_components(seed), requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def cached_tiny_sd_pipeline(seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """``save_tiny_sd_pipeline`` into a shared cache folder (built once, then reused by every test).

    The folder is keyed by the seed and the diffusers/transformers versions and is created atomically
    (built in a temporary folder, then renamed), so concurrent test processes are safe.

    Args:
        seed: component seed.
        cache_dir: parent folder (default ``$AUGBENCH_CACHE`` or ``<tmp>/augbench-cache``).
    """
    import diffusers

    return _cached_folder("tiny_sd", f"v{_TINY_SD_VERSION}-seed{seed}-d{diffusers.__version__}", "model_index.json",
                          lambda path: save_tiny_sd_pipeline(path, seed), cache_dir)


def save_tiny_clip(path: str | Path, seed: int = 0) -> Path:
    """A tiny random transformers ``CLIPModel`` (32-px images, real CLIP BPE tokenizer) saved to ``path``."""
    from transformers import CLIPConfig, CLIPModel

    from augbench.diffusion.tokenizer import build_clip_tokenizer

    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPModel(cfg)
    path = Path(path)
    model.save_pretrained(path)
    build_clip_tokenizer().save_pretrained(path)
    return path


def cached_tiny_clip(seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """``save_tiny_clip`` into the shared test cache (built once, atomically)."""
    return _cached_folder("tiny_clip", f"v1-seed{seed}", "config.json", lambda path: save_tiny_clip(path, seed),
                          cache_dir)


def _cached_folder(kind: str, name: str, marker: str, build: Callable[[Path], Any],
                   cache_dir: str | Path | None) -> Path:
    import shutil
    import tempfile

    import transformers

    base = Path(cache_dir) if cache_dir else Path(os.environ.get("AUGBENCH_CACHE") or Path(tempfile.gettempdir()) / "augbench-cache")
    target = base / kind / f"{name}-t{transformers.__version__}"
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    try:
        build(tmp / "out")
        try:
            os.replace(tmp / "out", target)
        except OSError:  # another process won the race
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_profile(pipeline_path: str | Path, *, image_size: int = 32, steps: int = 2, **kwargs: Any) -> Profile:
    """An embedded-like profile pointing at a tiny saved pipeline and a tiny CLIP (fp32, local files only)."""
    kwargs.setdefault("clip", str(cached_tiny_clip()))
    # a second tiny pipeline stands in for SD v1.4 (DA-Fusion's daf_sd14 preset)
    kwargs.setdefault("extra", {"sd14_pipeline": str(cached_tiny_sd_pipeline(seed=1))})
    return Profile(
        name="tiny",
        pipeline=str(pipeline_path),
        lpips="effnet_features",
        classifier="test_resnet",
        classifier_weights="none",
        image_size=image_size,
        classifier_size=image_size,
        num_inference_steps=steps,
        local_files_only=True,
        dtype="float32",
        **kwargs,
    )


# --- contract mixins -----------------------------------------------------------------------------


class MethodTesterMixin:
    """Generic contract tests for any method id. Subclasses set ``method_id``.

    Attributes:
        method_id: the id under test (``family`` or ``family.preset``), resolved through ``registry``.
        params: config overrides used to build the method in every test.
        registry: registry to resolve through (default: the entry-point registry of the environment).
    """

    method_id: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Any]] = {}
    registry: ClassVar[Registry | None] = None

    @pytest.fixture(autouse=True)
    def _no_network(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
        attempts = block_network(monkeypatch)
        yield attempts
        assert not attempts, f"the method tried to reach the network: {attempts}"

    def get_registry(self) -> Registry:
        return self.registry or default_registry()

    def get_method(self, **overrides: Any) -> Any:
        family = self.method_id.split("+")[0].split(".")[0]
        defaults = dict(getattr(self.get_registry().get_class(family), "contract_test_params", {}))
        return self.get_registry().create(self.method_id, {**defaults, **self.params, **overrides})

    def test_registry_discovery(self) -> None:
        reg = self.get_registry()
        family = self.method_id.split("+")[0].split(".")[0]
        assert family in reg.names(), f"{family!r} is not registered (entry-point group augbench.methods)"
        method = self.get_method()
        assert method.id == self.method_id
        assert type(method) is reg.get_class(family)

    def test_describe(self) -> None:
        info = self.get_registry().describe(self.method_id)
        assert info["id"] == self.method_id
        assert info["kind"] in ("batch", "offline")
        assert info["summary"], "the method card needs a one-line summary"
        assert info["distribution"]
        names = [p["name"] for p in info["params"]]
        assert names == [f.name for f in dataclasses.fields(self.get_method().Config)]

    def test_config_round_trip(self) -> None:
        import json

        method = self.get_method()
        cls = type(method)
        configs = [method.config] + [cls.build_config(p) for p in cls.presets]
        for cfg in configs:
            data = json.loads(json.dumps(cfg.to_dict()))
            assert cls.Config.from_dict(data) == cfg
        rebuilt = cls(config=method.config, method_id=method.id)
        assert rebuilt.config == method.config

    def test_no_network(self, _no_network: list[Any]) -> None:
        """Tests run with HF offline variables set and sockets that raise; building the method is offline."""
        assert all(os.environ.get(k) == v for k, v in OFFLINE_ENV.items())
        with pytest.raises(NetworkAccessError):
            socket.create_connection(("198.51.100.1", 80), timeout=0.1)
        _no_network.clear()
        self.get_method()
        assert not _no_network

    def test_unknown_param_is_rejected(self) -> None:
        from augbench.contract import ConfigError

        with pytest.raises(ConfigError, match="unknown parameter"):
            self.get_method(definitely_not_a_parameter=1)


class BatchMethodTesterMixin(MethodTesterMixin):
    """Contract tests for ``BatchMethod`` s.

    Attributes:
        batch_size, num_classes, image_hw: the dummy batch (``num_classes >= batch_size`` gives every
            row a unique label, torchvision's trick, so mixed rows have exactly two non-zero entries).
        expect_randomness: whether different seeds must give different outputs (default: unless the
            method class says ``deterministic = True``, as the identity does).
    """

    batch_size: ClassVar[int] = 8
    num_classes: ClassVar[int] = 10
    image_hw: ClassVar[tuple[int, int]] = (12, 12)
    expect_randomness: ClassVar[bool | None] = None

    def get_dummy_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = make_generator(1234)
        images = torch.rand(self.batch_size, 3, *self.image_hw, generator=g)
        labels = torch.arange(self.batch_size) % self.num_classes
        return images, torch.nn.functional.one_hot(labels, self.num_classes).float()

    def run_method(self, seed: int, method: BatchMethod | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        method = method or self.get_method()
        images, targets = self.get_dummy_inputs()
        return method(images, targets, make_generator(seed))

    def test_is_batch_method(self) -> None:
        assert isinstance(self.get_method(), BatchMethod)

    def test_shapes_and_soft_labels(self) -> None:
        images, targets = self.get_dummy_inputs()
        out_images, out_targets = self.get_method()(images, targets, make_generator(0))
        assert out_images.shape == images.shape and out_images.dtype == images.dtype
        assert out_targets.shape == (self.batch_size, self.num_classes)
        assert out_targets.is_floating_point()
        assert (out_targets >= 0).all()
        torch.testing.assert_close(out_targets.sum(1), torch.ones(self.batch_size), rtol=0, atol=1e-5)

    def test_inputs_untouched(self) -> None:
        images, targets = self.get_dummy_inputs()
        before = images.clone(), targets.clone()
        self.get_method()(images, targets, make_generator(0))
        assert torch.equal(images, before[0]) and torch.equal(targets, before[1])

    def test_same_seed_same_output(self) -> None:
        a, b = self.run_method(7), self.run_method(7)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    def test_different_seed_different_output(self) -> None:
        outs = [self.run_method(s) for s in range(4)]
        differ = any(not torch.equal(outs[0][0], o[0]) or not torch.equal(outs[0][1], o[1]) for o in outs[1:])
        expected = self.expect_randomness
        if expected is None:
            expected = not type(self.get_method()).deterministic
        assert differ == expected

    def test_params_separate_from_apply(self) -> None:
        method = self.get_method()
        images, targets = self.get_dummy_inputs()
        params = method.make_params(self.batch_size, self.image_hw, make_generator(3))
        pinned = method.apply(images, targets, params)
        called = method(images, targets, make_generator(3))
        assert torch.equal(pinned[0], called[0]) and torch.equal(pinned[1], called[1])

    def test_requires_explicit_generator(self) -> None:
        images, targets = self.get_dummy_inputs()
        with pytest.raises(TypeError, match="torch.Generator"):
            self.get_method()(images, targets, None)  # type: ignore[arg-type]

    def test_global_rng_untouched(self) -> None:
        state = torch.get_rng_state()
        np_state = np.random.get_state()[1].copy()
        self.run_method(5)
        assert torch.equal(torch.get_rng_state(), state)
        assert np.array_equal(np.random.get_state()[1], np_state)


class OfflineMethodTesterMixin(MethodTesterMixin):
    """Contract tests for ``OfflineMethod`` s.

    Subclasses implement ``get_context(tmp_dir)`` (profile, source, device) and may override
    ``get_subset(ctx)``. Generation results are cached per class (one run per (seed, batch size)).

    Attributes:
        budget: number of requests generated in the tests.
        batch_size: the "batch N" of the batch-independence test.
        atol_uint8: tolerated absolute pixel difference between batch 1 and batch N.
    """

    budget: ClassVar[int] = 4
    batch_size: ClassVar[int] = 4
    atol_uint8: ClassVar[int] = 2
    _results: ClassVar[dict]
    _ctx: ClassVar[MethodContext]

    def get_context(self, tmp_dir: Path) -> MethodContext:
        """Default: a tiny random Stable Diffusion (diffusers format, from configs) and a 3-class source.

        Enough for any method that needs only the profile's pipeline; methods that need more (a
        dataset's real images of a certain size, another model) override it.
        """
        return MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()),
                             source=TinySource(per_class={"train": [3, 2, 1]}), batch_size=self.batch_size,
                             cache_dir=tmp_dir)

    def get_subset(self, ctx: MethodContext) -> Subset:
        assert ctx.source is not None
        return tiny_subset(ctx.source)

    @pytest.fixture
    def offline_ctx(self, tmp_path_factory: pytest.TempPathFactory) -> MethodContext:
        """The context of ``get_context``, built once per test class, with its own warm-model cache."""
        ctx = type(self).__dict__.get("_ctx")
        if ctx is None:
            tmp = tmp_path_factory.mktemp("offline_ctx")
            ctx = dataclasses.replace(self.get_context(tmp), pipelines=PipelineCache())
            ctx.artifacts = self.build_artifacts(ctx, tmp / "store")
            type(self)._ctx = ctx
        return ctx

    def build_artifacts(self, ctx: MethodContext, store_root: Path) -> dict[str, Any]:
        """The artifacts the method declares for ``get_subset(ctx)``, built as the runner builds them."""
        from augbench.run.artifacts import build_artifacts
        from augbench.run.store import Store

        subset = self.get_subset(ctx)
        return build_artifacts(self.get_method().artifacts(subset, ctx), subset, ctx, Store(store_root))

    def _run(self, ctx: MethodContext, seed: int, batch_size: int) -> tuple[list[GenerationRequest], list[SyntheticSample]]:
        cache = type(self).__dict__.get("_results")
        if cache is None:
            cache = {}
            type(self)._results = cache
        key = (seed, batch_size)
        if key not in cache:
            method = self.get_method()
            run_ctx = dataclasses.replace(ctx, batch_size=batch_size)
            subset = self.get_subset(run_ctx)
            method.setup(subset, run_ctx)
            requests = method.plan(subset, self.budget, seed, ctx=run_ctx)
            cache[key] = (requests, method.generate(requests, run_ctx))
        return cache[key]

    def test_is_offline_method(self) -> None:
        assert isinstance(self.get_method(), OfflineMethod)

    def test_plan_is_deterministic(self, offline_ctx: MethodContext) -> None:
        method = self.get_method()
        subset = self.get_subset(offline_ctx)
        a = method.plan(subset, self.budget, 0, ctx=offline_ctx)
        b = method.plan(subset, self.budget, 0, ctx=offline_ctx)
        c = method.plan(subset, self.budget, 1, ctx=offline_ctx)
        assert a == b
        assert len(a) == self.budget
        assert [r.index for r in a] == list(range(len(a)))
        assert len({r.seed for r in a}) == len(a), "request seeds must differ"
        assert [r.seed for r in a] != [r.seed for r in c]
        for r in a:
            assert r.seed == method.request_seed(0, r.index)

    def test_shapes_labels_provenance(self, offline_ctx: MethodContext) -> None:
        requests, samples = self._run(offline_ctx, 0, self.batch_size)
        assert len(samples) == len(requests) == self.budget
        num_classes = offline_ctx.num_classes
        for r, s in zip(requests, samples, strict=True):
            img = s.image_array()
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            label = np.asarray(s.label, dtype=np.float64)
            assert label.shape == (num_classes,)
            assert (label >= 0).all() and abs(label.sum() - 1.0) < 1e-6
            prov = s.provenance
            for key in ("method", "preset", "params", "seed", "sources", "request_index"):
                assert key in prov, f"provenance lacks {key!r}"
            assert prov["method"] == self.method_id
            assert prov["seed"] == r.seed and prov["request_index"] == r.index

    def test_same_seed_same_output(self, offline_ctx: MethodContext) -> None:
        _, first = self._run(offline_ctx, 0, self.batch_size)
        type(self)._results.pop((0, self.batch_size))
        _, again = self._run(offline_ctx, 0, self.batch_size)
        for a, b in zip(first, again, strict=True):
            assert np.array_equal(a.image_array(), b.image_array())
            assert np.array_equal(a.label, b.label)

    def test_different_seed_different_output(self, offline_ctx: MethodContext) -> None:
        _, a = self._run(offline_ctx, 0, self.batch_size)
        _, b = self._run(offline_ctx, 1, self.batch_size)
        assert any(not np.array_equal(x.image_array(), y.image_array()) for x, y in zip(a, b, strict=True))

    def test_batch_size_independence(self, offline_ctx: MethodContext) -> None:
        _, batched = self._run(offline_ctx, 0, self.batch_size)
        _, single = self._run(offline_ctx, 0, 1)
        for a, b in zip(batched, single, strict=True):
            diff = np.abs(a.image_array().astype(int) - b.image_array().astype(int))
            assert diff.max() <= self.atol_uint8, f"batch {self.batch_size} vs batch 1 differ by {diff.max()}"
            assert a.provenance["seed"] == b.provenance["seed"]

    def test_chunked_generation_equals_whole(self, offline_ctx: MethodContext) -> None:
        """Generating the plan in two chunks (two workers) gives the same set as one call."""
        requests, whole = self._run(offline_ctx, 0, self.batch_size)
        method = self.get_method()
        ctx = dataclasses.replace(offline_ctx, batch_size=self.batch_size)
        half = len(requests) // 2
        parts = method.generate(requests[half:], ctx) + method.generate(requests[:half], ctx)
        parts = sorted(parts, key=lambda s: s.request_index)
        for a, b in zip(whole, parts, strict=True):
            diff = np.abs(a.image_array().astype(int) - b.image_array().astype(int))
            assert diff.max() <= self.atol_uint8

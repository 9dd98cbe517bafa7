"""Reusable contract tests for method authors (built-in and third-party), and a network guard.

Modelled on diffusers' ``PipelineTesterMixin``: a test class inherits one mixin, names the method id
and gets the generic contract tests (DESIGN.md, "Testing"):

* shapes and dtypes; soft labels non-negative and summing to 1;
* same seed -> same output, different seed -> different output;
* config round trip (``to_dict``/``from_dict``, every preset);
* registry discovery (the id resolves through the entry-point registry) and ``describe``;
* no network (``HF_HUB_OFFLINE=1`` and sockets that raise, ``block_network``);
* offline methods: request seeds independent of chunking, batch 1 == batch N within tolerance.

Imports pytest (its fixtures are part of the mixins); ``augbench.testing`` loads this module only
when one of its names is used.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from augbench.contract import BatchMethod, GenerationRequest, MethodContext, OfflineMethod, SyntheticSample
from augbench.data.core import Subset
from augbench.diffusion.cache import PipelineCache
from augbench.method_ids import method_family
from augbench.registry import Registry, default_registry
from augbench.run.seeding import make_generator
from augbench.testing.tiny import TinySource, cached_tiny_sd_pipeline, tiny_profile, tiny_subset

__all__ = [
    "OFFLINE_ENV",
    "BatchMethodTesterMixin",
    "MethodTesterMixin",
    "NetworkAccessError",
    "OfflineMethodTesterMixin",
    "block_network",
]

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
        family = method_family(self.method_id)
        defaults = dict(getattr(self.get_registry().get_class(family), "contract_test_params", {}))
        return self.get_registry().create(self.method_id, {**defaults, **self.params, **overrides})

    def test_registry_discovery(self) -> None:
        reg = self.get_registry()
        family = method_family(self.method_id)
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

    def get_partner(self, method: BatchMethod) -> dict[str, Any]:
        """``{"partner": (images, targets)}`` for a method with a ``partner_sampler`` (other images and labels
        than :meth:`get_dummy_inputs`, as the training loop's second sampler gives), else ``{}``."""
        if method.partner_sampler is None:
            return {}
        g = make_generator(4321)
        images = torch.rand(self.batch_size, 3, *self.image_hw, generator=g)
        labels = (torch.arange(self.batch_size) + 1) % self.num_classes
        return {"partner": (images, torch.nn.functional.one_hot(labels, self.num_classes).float())}

    def call(self, method: BatchMethod, images: torch.Tensor, targets: torch.Tensor,
             generator: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``method(images, targets, generator)``, with the partner batch where the method takes one."""
        return method(images, targets, generator, **self.get_partner(method))

    def run_method(self, seed: int, method: BatchMethod | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        method = method or self.get_method()
        images, targets = self.get_dummy_inputs()
        return self.call(method, images, targets, make_generator(seed))

    def test_is_batch_method(self) -> None:
        assert isinstance(self.get_method(), BatchMethod)

    def test_shapes_and_soft_labels(self) -> None:
        images, targets = self.get_dummy_inputs()
        out_images, out_targets = self.call(self.get_method(), images, targets, make_generator(0))
        assert out_images.shape == images.shape and out_images.dtype == images.dtype
        assert out_targets.shape == (self.batch_size, self.num_classes)
        assert out_targets.is_floating_point()
        assert (out_targets >= 0).all()
        torch.testing.assert_close(out_targets.sum(1), torch.ones(self.batch_size), rtol=0, atol=1e-5)

    def test_inputs_untouched(self) -> None:
        images, targets = self.get_dummy_inputs()
        before = images.clone(), targets.clone()
        self.call(self.get_method(), images, targets, make_generator(0))
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
        pinned = method.apply(images, targets, params, **self.get_partner(method))
        called = self.call(method, images, targets, make_generator(3))
        assert torch.equal(pinned[0], called[0]) and torch.equal(pinned[1], called[1])

    def test_partner_batch_contract(self) -> None:
        """A method with a partner sampler refuses to run without its partner batch; one without refuses one."""
        method = self.get_method()
        images, targets = self.get_dummy_inputs()
        wrong = {} if method.partner_sampler is not None else {"partner": (images.clone(), targets.clone())}
        with pytest.raises(ValueError, match="partner batch"):
            method(images, targets, make_generator(0), **wrong)
        assert all(isinstance(method.active(e, 10), bool) for e in range(1, 11))

    def test_requires_explicit_generator(self) -> None:
        images, targets = self.get_dummy_inputs()
        with pytest.raises(TypeError, match="torch.Generator"):
            self.call(self.get_method(), images, targets, None)

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
        dataset's real images of a certain size, another model) override it, or name the source they run on
        in a ``contract_test_source`` class attribute (a callable returning an ``ImageSource``: the world's
        renderer needs a world card) and adapt the tiny profile with ``contract_test_profile`` (a callable
        ``Profile -> Profile``: DiffuseMix adds a tiny instruction editor).
        """
        cls = self.get_registry().get_class(method_family(self.method_id))
        make_source = getattr(cls, "contract_test_source", None)
        source = make_source() if make_source is not None else TinySource(per_class={"train": [3, 2, 1]})
        profile = tiny_profile(cached_tiny_sd_pipeline())
        # a method that needs a model the tiny profile lacks (DiffuseMix's instruction editor) adds it
        adapt_profile = getattr(cls, "contract_test_profile", None)
        return MethodContext(profile=adapt_profile(profile) if adapt_profile else profile, source=source,
                             batch_size=self.batch_size, cache_dir=tmp_dir)

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

"""Real-Filter's two rules (METHODS_SPEC §3.4): per-image zero-shot with bounded redraws, whole-set presence."""

from __future__ import annotations

import numpy as np
import pytest

from augbench.contract import MethodContext, PipelineCache
from augbench.methods.real_filter import RealFilter, RealFilterError
from augbench.registry import default_registry
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile, tiny_subset


@pytest.fixture(scope="module")
def ctx():
    return MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline(), image_size=16),
                         source=TinySource(per_class={"train": [2, 1, 1]}), batch_size=4, pipelines=PipelineCache())


def _probabilities(labels, num_classes=3):
    """CLIP stand-in output: probability 0.9 on each given label."""
    p = np.full((len(labels), num_classes), 0.1 / (num_classes - 1))
    p[np.arange(len(labels)), labels] = 0.9
    return p


def test_rejected_candidates_are_redrawn_until_recognised_and_counted(ctx, monkeypatch):
    method = default_registry().create("real_filter")
    subset = tiny_subset(ctx.source)
    requests = method.plan(subset, 4, seed=0, ctx=ctx)
    decisions = iter([[False, True, False, True], [True, False], [True]])  # per attempt, per pending request

    def zero_shot(self, ctx, images):
        verdict = next(decisions)
        assert len(verdict) == len(images)
        pending = [r for r in requests if r.index in zero_shot.pending]
        labels = [r.target_class if ok else (r.target_class + 1) % 3 for r, ok in zip(pending, verdict, strict=True)]
        zero_shot.pending = [r.index for r, ok in zip(pending, verdict, strict=True) if not ok]
        return _probabilities(labels)

    zero_shot.pending = [r.index for r in requests]
    monkeypatch.setattr(RealFilter, "_zero_shot", zero_shot)
    samples = method.generate(requests, ctx)
    assert [s.provenance["rejected"] for s in samples] == [1, 0, 2, 0]
    assert all(s.provenance["filter_passed"] for s in samples)
    assert samples[2].provenance["candidate_seed"] != requests[2].seed  # a redraw, with a derived seed
    assert samples[1].provenance["candidate_seed"] == requests[1].seed


def _rows(passed_by_class):
    return [{"target_class": name, "provenance": {"filter_passed": ok, "rejected": 0 if ok else 3}}
            for name, flags in passed_by_class.items() for ok in flags]


def test_unrecognised_requests_are_dropped_and_an_empty_class_is_named(ctx, monkeypatch):
    method = default_registry().create("real_filter", {"max_attempts": 3})
    requests = method.plan(tiny_subset(ctx.source), 2, seed=0, ctx=ctx)
    monkeypatch.setattr(RealFilter, "_zero_shot", lambda self, ctx, images: _probabilities([2] * len(images)))
    samples = method.generate(requests, ctx)  # never recognised: each keeps its best candidate, flagged
    assert [s.provenance["filter_passed"] for s in samples] == [False, False]
    assert [s.provenance["rejected"] for s in samples] == [3, 3]
    rows = _rows({"Tiny_class_0": [True, False], "Tiny_class_1": [False, False], "Tiny_class_2": [True]})
    with pytest.raises(RealFilterError, match=r"none of the 8 candidates .*'Tiny_class_1' \(8 candidates\)"):
        method.select(rows, lambda i: None, ctx)
    keep_best = default_registry().create("real_filter", {"empty_class": "keep_best"})
    assert keep_best.select(rows, lambda i: None, ctx) == [0, 2, 3, 4]  # class 1 keeps its best candidates
    assert method.select(_rows({"Tiny_class_0": [True, False]}), lambda i: None, ctx) == [0]


def test_dm_presence_drops_the_least_confident_tenth_of_the_whole_set(ctx, monkeypatch):
    method = default_registry().create("real_filter.dm_presence")
    probabilities = np.linspace(0.05, 0.95, 20)
    monkeypatch.setattr(RealFilter, "presence_probabilities", lambda self, ctx, images: probabilities)
    rows = [{"file": f"{i}.png"} for i in range(20)]
    kept = method.select(rows, lambda i: np.zeros((4, 4, 3), np.uint8), ctx)
    assert kept == list(range(2, 20))  # the two lowest of 20 (10 %) are dropped


def test_presence_probabilities_come_from_the_profiles_clip(ctx):
    method = default_registry().create("real_filter.dm_presence")
    images = [np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8) for i in range(3)]
    p = method.presence_probabilities(ctx, images)
    assert p.shape == (3,) and np.all((p > 0) & (p < 1))

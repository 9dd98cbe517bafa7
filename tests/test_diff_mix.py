"""The Diff-Mix family (METHODS_SPEC §3.7): DM's task list, soft labels, training integration."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from augbench.contract import ConfigError, MethodContext, PipelineCache, TrainingIntegration
from augbench.diffusion.sampling import plan_translations
from augbench.registry import default_registry
from augbench.synthetic.loading import diff_mix_label, label_vector
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile, tiny_subset


def _seeds(i: int) -> int:
    return 1000 + i


def _subset(per_class=(4, 4, 4, 4)):
    return tiny_subset(TinySource(per_class={"train": list(per_class)}))


def test_worked_example_and_same_class_collapse():
    # §3.7: s = 0.7, gamma = 0.8 -> s**gamma = 0.752 -> 0.9 * (0.248 e_a + 0.752 e_b)
    vec = diff_mix_label(0, 2, 0.7, 3, gamma=0.8, sigma=0.9)
    assert np.allclose(vec, 0.9 * np.array([0.248, 0.0, 0.752]), atol=5e-4)
    assert np.allclose(diff_mix_label(1, 1, 0.7, 3, gamma=0.8, sigma=0.9), [0, 0.9, 0])
    # the stored row and the training rule agree
    row = {"label": {}, "target_class": "c", "mix": {"a": "a", "b": "c", "s": 0.7}}
    assert np.allclose(label_vector(row, {"a": 0, "b": 1, "c": 2}, "diff_mix", 0.8, 0.9), vec)


def test_intra_class_tasks_keep_source_and_target_class_and_draw_images_of_it():
    subset = _subset()
    requests = plan_translations(_seeds, subset, None, expansion=5, inter_class=False, strength=0.7)
    assert len(requests) == 5 * len(subset.image_ids)
    label_of = dict(zip(subset.image_ids, subset.labels))
    for r in requests:
        assert r.source_classes == (r.target_class,) and label_of[r.source_ids[0]] == r.target_class
        assert r.strength == 0.7
    assert requests == plan_translations(_seeds, subset, None, expansion=5, inter_class=False, strength=0.7)


def test_inter_class_draws_are_independent_and_multinomial():
    subset = _subset()
    requests = plan_translations(_seeds, subset, 2000, expansion=5, inter_class=True, strength=0.7)
    pairs = collections.Counter((r.source_classes[0], r.target_class) for r in requests)
    assert len(pairs) == 16  # every (a, b) occurs, a = b included
    same = sum(n for (a, b), n in pairs.items() if a == b) / len(requests)
    assert 0.2 < same < 0.3  # P(a = b) = 1/C
    label_of = dict(zip(subset.image_ids, subset.labels))
    assert all(label_of[r.source_ids[0]] == r.source_classes[0] for r in requests)
    counts = collections.Counter(r.target_class for r in requests[:40])
    assert len(set(counts.values())) > 1  # multinomial, not exactly balanced


def test_exact_per_class_balances_target_classes():
    requests = plan_translations(_seeds, _subset(), 42, expansion=5, inter_class=True, strength=0.7,
                                 class_draw="exact_per_class")
    counts = collections.Counter(r.target_class for r in requests)
    assert max(counts.values()) - min(counts.values()) <= 1 and sum(counts.values()) == 42


def test_long_tail_source_quirk_follows_the_imbalanced_split():
    subset = _subset((40, 4, 2, 1))
    quirk = plan_translations(_seeds, subset, 2000, expansion=5, inter_class=True, strength=0.7,
                              source_draw="whole_split")
    share = sum(r.source_classes[0] == 0 for r in quirk) / len(quirk)
    assert 0.80 < share < 0.90  # 40 / 47 = 0.85 of the images are of class 0
    default = plan_translations(_seeds, subset, 2000, expansion=5, inter_class=True, strength=0.7)
    assert sum(r.source_classes[0] == 0 for r in default) / len(default) < 0.35


def test_strength_presets_and_bad_values():
    reg = default_registry()
    subset = _subset()
    assert {r.strength for r in reg.create("diff_mix").plan(subset, 50, 0)} == {0.7}
    assert {r.strength for r in reg.create("diff_mix.scripts").plan(subset, 50, 0)} == {0.8}
    assert {r.strength for r in reg.create("diff_mix.argparse").plan(subset, 50, 0)} == {0.5}
    assert {r.strength for r in reg.create("diff_mix.uniform").plan(subset, 200, 0)} == {0.3, 0.5, 0.7, 0.9}
    for bad in (0.0, 1.5):
        with pytest.raises((ConfigError, ValueError), match=r"\(0, 1\]"):
            reg.create("diff_mix", {"strength": bad})
    for key in ("label_gamma", "label_sigma"):
        with pytest.raises(ConfigError, match=rf"{key} must be in \(0, 1\]"):
            TrainingIntegration(labels="diff_mix", **{key: 0.0})
        with pytest.raises(ConfigError, match=key):
            TrainingIntegration(labels="diff_mix", **{key: 1.2})


def test_presets_of_the_family_share_tasks_so_rows_are_paired():
    reg = default_registry()
    subset = _subset()
    default, scripts = reg.create("diff_mix").plan(subset, 30, 0), reg.create("diff_mix.scripts").plan(subset, 30, 0)
    assert [(r.seed, r.source_ids, r.target_class) for r in default] == \
        [(r.seed, r.source_ids, r.target_class) for r in scripts]


def test_training_integration_per_member():
    reg = default_registry()
    for inter in ("real_mix", "diff_mix"):
        t = reg.create(inter).card.training
        assert (t.replacement_mode, t.labels, t.label_gamma, t.label_sigma) == ("global_pool", "diff_mix", 0.8, 0.9)
    t = reg.create("diff_aug").card.training
    assert (t.replacement_mode, t.labels) == ("same_class", "hard")
    assert reg.create("real_mix").artifacts(_subset(), MethodContext(profile=tiny_profile("x"))) == []
    assert [s.kind for s in reg.create("diff_aug").artifacts(_subset(), MethodContext(profile=tiny_profile("x")))] \
        == ["lora_ti"]


def test_real_guidance_dm_real_aug_uses_the_family_task_planner():
    subset = _subset()
    reg = default_registry()
    ours = reg.create("real_guidance.dm_real_aug").plan(subset, 20, 0)
    shared = plan_translations(lambda i: reg.create("real_guidance").request_seed(0, i), subset, 20,
                               expansion=5, inter_class=False, strength=0.5)
    assert ours == shared


def test_real_mix_generates_soft_labels_with_mixing_metadata():
    from augbench.synthetic.generate import _row

    source = TinySource(per_class={"train": [2, 2, 2]})
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline(), image_size=16, steps=4), source=source,
                        pipelines=PipelineCache(), batch_size=4)
    method = default_registry().create("real_mix")
    requests = method.plan(tiny_subset(source), 12, 3, ctx=ctx)
    inter = [r for r in requests if r.source_classes[0] != r.target_class][:3]
    samples = method.generate(inter, ctx)
    for r, s in zip(inter, samples, strict=True):
        w = 0.7 ** 0.8
        expected = np.zeros(3)
        expected[r.source_classes[0]], expected[r.target_class] = 1 - w, w
        assert np.allclose(s.label, expected, atol=1e-6)
        assert s.image_array().shape == (16, 16, 3)  # resized back to the source's size
        names = ctx.card.class_names
        row = _row(s, "x.png", names)  # the manifest row the generate stage writes
        assert row["mix"] == {"a": names[r.source_classes[0]], "b": names[r.target_class], "s": 0.7}

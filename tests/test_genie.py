"""GeNIe and GeNIe-Ada (methods/genie.py): the repo's pairs, hard labels at the target, prompts, noise ratios,
and GeNIe-Ada's choice of the edit right after the largest shift towards the target class."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from PIL import Image

from augbench.contract import ConfigError, MethodContext, PipelineCache
from augbench.methods.genie import ADA_RATIOS, ada_choice, center_square, trajectory_shifts
from augbench.registry import default_registry
from augbench.testing import (
    OfflineMethodTesterMixin,
    TinySource,
    cached_tiny_sd_pipeline,
    tiny_card,
    tiny_profile,
    tiny_subset,
)

# 10 steps: floor(10 r) differs for every ratio of the Ada grid, so its candidates are distinct edits
STEPS = {"num_inference_steps": 10}


class TestGeNIeContract(OfflineMethodTesterMixin):
    method_id = "genie"


class TestGeNIeAdaContract(OfflineMethodTesterMixin):
    method_id = "genie.ada"


@pytest.fixture(scope="module")
def ctx():
    return MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), batch_size=4, pipelines=PipelineCache(),
                         source=TinySource(tiny_card(4), per_class={"train": [3, 3, 3, 2]}))


def _create(method_id: str = "genie", **params):
    return default_registry().create(method_id, {**STEPS, **params})


def test_every_edit_targets_another_class_named_in_its_prompt(ctx):
    subset = tiny_subset(ctx.source)
    ids, label_of = subset.image_ids, dict(zip(subset.image_ids, subset.labels))
    requests = _create().plan(subset, None, 0, ctx=ctx)
    assert len(requests) == 5 * len(ids)  # edits_per_image = 5 per real image
    for r in requests:
        (source,), (a,), b = r.source_ids, r.source_classes, r.target_class
        assert label_of[source] == a and b != a
        assert r.prompt == f"a photo of a {ctx.card.prompt_name(b)}." and ctx.card.prompt_name(a) not in r.prompt
        assert r.strength == 0.8
        assert source == ids[r.index % len(ids)]  # round-major: every image is edited once per round
    for image_id in ids:  # the first C - 1 = 3 edits of an image go to the three other classes
        first = [r.target_class for r in requests if r.source_ids[0] == image_id][:3]
        assert sorted(first) == sorted(set(range(4)) - {label_of[image_id]})


def test_all_pairs_is_the_repos_enumeration(ctx):
    subset = tiny_subset(ctx.source)
    requests = _create("genie.repo").plan(subset, None, 0, ctx=ctx)
    pairs = collections.Counter((r.source_ids[0], r.target_class) for r in requests)
    label_of = dict(zip(subset.image_ids, subset.labels))
    expected = {(i, b) for i in subset.image_ids for b in range(4) if b != label_of[i]}
    assert set(pairs) == expected and set(pairs.values()) == {1}  # genie.py:149-171: each (image, other class) once
    counts = collections.Counter(r.target_class for r in requests)
    assert counts == {b: len(subset.image_ids) - subset.class_counts(4)[b] for b in range(4)}


def test_pairs_are_deterministic_per_seed_and_budgets_are_prefixes(ctx):
    subset = tiny_subset(ctx.source)
    method = _create()
    a, b = method.plan(subset, None, 0, ctx=ctx), method.plan(subset, None, 0, ctx=ctx)
    assert a == b
    other = method.plan(subset, None, 1, ctx=ctx)
    assert [r.target_class for r in a] != [r.target_class for r in other]
    assert method.plan(subset, 7, 0, ctx=ctx) == a[:7]
    assert all(r.seed == method.request_seed(0, r.index) for r in a)


@pytest.mark.parametrize(("method_id", "ratio"), [("genie", 0.8), ("genie.noise05", 0.5), ("genie.noise06", 0.6),
                                                  ("genie.noise07", 0.7), ("genie.noise09", 0.9)])
def test_noise_ratio_presets_set_the_strength(ctx, method_id, ratio):
    requests = _create(method_id).plan(tiny_subset(ctx.source), 20, 0, ctx=ctx)
    assert {r.strength for r in requests} == {ratio}


def test_edits_are_labelled_one_hot_at_the_target_class(ctx):
    method = _create()
    requests = method.plan(tiny_subset(ctx.source), 4, 0, ctx=ctx)
    samples = method.generate(requests, ctx)
    for r, s in zip(requests, samples, strict=True):
        expected = np.zeros(4)
        expected[r.target_class] = 1.0
        assert np.array_equal(s.label, expected)
        assert s.provenance["strength"] == 0.8 and s.provenance["prompt"] == r.prompt
        assert s.provenance["source_classes"] == [r.source_classes[0]] != [r.target_class]
        source = np.asarray(ctx.source.load_image(r.source_ids[0]))
        assert s.image_array().shape == source.shape and not np.array_equal(s.image_array(), source)


class _WideSource(TinySource):
    """Tiny images stretched to 24 x 16 (W x H), to see the source geometry."""

    def load_image(self, image_id: str) -> Image.Image:
        return super().load_image(image_id).resize((24, 16), Image.NEAREST)


def test_center_crop_edits_the_centred_square_and_stretch_the_whole_image():
    image = np.arange(6 * 4 * 3).reshape(6, 4, 3)
    assert np.array_equal(center_square(image), image[1:5])
    wide = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=_WideSource(), batch_size=1,
                         pipelines=PipelineCache())
    subset = tiny_subset(wide.source)
    shapes = {}
    for crop in ("center", "stretch"):
        method = _create(crop=crop)
        (sample,) = method.generate(method.plan(subset, 1, 0, ctx=wide), wide)
        shapes[crop] = sample.image_array().shape
    assert shapes == {"center": (16, 16, 3), "stretch": (16, 24, 3)}


def test_bad_configs_and_a_single_class_are_refused():
    reg = default_registry()
    for bad in ({"noise_ratio": 0.0}, {"noise_ratio": 1.5}, {"edits_per_image": 0}, {"ratios": (0.7, 0.6)},
                {"ratios": (0.8,)}):
        with pytest.raises(ConfigError):
            reg.create("genie", bad)
    one_class = tiny_subset(TinySource(per_class={"train": [2, 0, 0]}))
    with pytest.raises(ConfigError, match="at least two classes"):
        reg.create("genie").plan(one_class, None, 0)


def test_trajectory_shift_projects_on_the_direction_to_the_target_prototype():
    source, prototype = np.zeros(3), np.array([2.0, 0.0, 0.0])  # v = prototype - source along the first axis
    along = np.array([0.1, 0.15, 0.6, 0.7, 0.75])
    edits = np.stack([along, np.zeros(5), np.zeros(5)], axis=1)
    edits[1:, 1] = 5.0  # a large move off the direction (between the first two edits) does not count
    shifts = trajectory_shifts(source, edits, prototype)
    np.testing.assert_allclose(shifts, [0.05, 0.45, 0.1, 0.05])
    assert ADA_RATIOS[ada_choice(ADA_RATIOS, shifts)] == 0.7  # the edit right after the largest shift
    late = np.stack([[0.0, 0.05, 0.1, 0.15, 0.9], np.zeros(5), np.zeros(5)], axis=1)
    assert ADA_RATIOS[ada_choice(ADA_RATIOS, trajectory_shifts(source, late, prototype))] == 0.9
    assert ada_choice(ADA_RATIOS, trajectory_shifts(prototype, edits, prototype)) == 1  # no direction: first
    with pytest.raises(ValueError, match="5 ratios need 4 shifts"):
        ada_choice(ADA_RATIOS, shifts[:2])


def test_ada_keeps_the_fixed_ratio_edit_right_after_the_largest_shift(ctx):
    subset = tiny_subset(ctx.source)
    ada = _create("genie.ada")
    requests = ada.plan(subset, 8, 0, ctx=ctx)
    of_class = collections.defaultdict(list)
    for image_id, label in zip(subset.image_ids, subset.labels):
        of_class[label].append(image_id)
    assert all(r.strength is None and r.params["prototype_ids"] == of_class[r.target_class] for r in requests)
    samples = ada.generate(requests, ctx)
    chosen = []
    for r, s in zip(requests, samples, strict=True):
        info = s.provenance["ada"]
        assert info["ratios"] == list(ADA_RATIOS)
        assert info["chosen"] in ADA_RATIOS[1:] and s.provenance["strength"] == info["chosen"]
        assert info["chosen"] == ADA_RATIOS[int(np.argmax(info["shifts"])) + 1]
        assert s.label[r.target_class] == 1.0
        chosen.append(info["chosen"])
        # the kept image is GeNIe's edit of the same request at the chosen ratio (same seed, same noise)
        fixed = _create(noise_ratio=info["chosen"])
        (plain,) = fixed.generate([fixed.plan(subset, 8, 0, ctx=ctx)[r.index]], ctx)
        diff = np.abs(plain.image_array().astype(int) - s.image_array().astype(int))
        assert diff.max() <= 2
    assert len({tuple(s.provenance["ada"]["shifts"]) for s in samples}) == len(samples)
    assert len(set(chosen)) > 1, f"the ratio should depend on the image; chose {chosen}"


def test_cards_models_and_training_integration():
    reg = default_registry()
    profile = tiny_profile(cached_tiny_sd_pipeline())
    assert set(reg.create("genie").required_models(profile)) == {"pipeline"}
    assert reg.create("genie.ada").required_models(profile)["clip"] == profile.clip
    training = reg.get_class("genie").card.training
    assert (training.replacement_mode, training.labels) == ("concat", "hard")

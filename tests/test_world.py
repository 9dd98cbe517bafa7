"""The embedded world's renderer, species table and datasets."""

from __future__ import annotations

import collections
import dataclasses
import difflib

import numpy as np
import pytest

from augbench.data import open_dataset
from augbench.world.render import (
    ATTRIBUTES,
    COLOURS,
    CONTEXTS,
    BirdSpec,
    caption,
    contradict,
    render,
    render_scene,
    sample_scene,
)
from augbench.world.species import generate_species, spec_of

SPEC = BirdSpec(body="white", crown="red", wing="blue", pattern="striped", beak="long", tail="forked", size="large")


def test_render_is_deterministic_and_seed_dependent():
    a, scene_a = render(SPEC, seed=7, size=32)
    b, scene_b = render(SPEC, seed=7, size=32)
    c, _ = render(SPEC, seed=8, size=32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert scene_a == scene_b
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


def test_render_size_is_configurable():
    scene = sample_scene(SPEC, np.random.default_rng(0))
    assert render_scene(scene, 16).shape == (16, 16, 3)
    assert render_scene(scene, 64).shape == (64, 64, 3)


def _colour_fraction(img: np.ndarray, rgb, tol: int = 40) -> float:
    return float((np.abs(img.astype(int) - np.array(rgb)).max(-1) < tol).mean())


def test_attributes_are_visible_in_pixels():
    """The crown colour appears in the image; changing only the crown changes those pixels."""
    spec_red = SPEC
    spec_purple = BirdSpec(**{**SPEC.as_dict(), "crown": "purple"})
    img_red, _ = render(spec_red, seed=3, size=64, context="standing in the grass")
    img_purple, _ = render(spec_purple, seed=3, size=64, context="standing in the grass")
    assert _colour_fraction(img_red, COLOURS["red"]) > 0.002
    assert _colour_fraction(img_purple, COLOURS["red"]) < _colour_fraction(img_red, COLOURS["red"])
    assert _colour_fraction(img_purple, COLOURS["purple"]) > 0.002
    # same scene, only the crown differs: most pixels are identical
    assert (img_red == img_purple).all(-1).mean() > 0.9


def test_invalid_attribute_is_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match="expected one of"):
        BirdSpec(**{**SPEC.as_dict(), "tail": "curly"})


def test_captions_spell_out_attributes_and_context():
    scene = sample_scene(SPEC, np.random.default_rng(1), context="flying over water")
    text = caption(scene)
    for word in ("white body", "red crown", "blue striped wings", "long beak", "forked tail", "flying over water"):
        assert word in text
    varied = {caption(scene, np.random.default_rng(i)) for i in range(20)}
    assert len(varied) > 5 and all("flying over water" in t for t in varied)


def test_species_table_matches_cards_and_has_fine_grained_neighbours():
    table = generate_species()
    card_species = open_dataset("toybirds").card.raw["world"]["species"]
    assert table == card_species, "datasets/toybirds.toml must hold generate_species() verbatim"
    specs = [spec_of(s) for s in table]
    assert len(set(specs)) == len(specs) == 24
    for g in range(0, 24, 4):
        genus = specs[g:g + 4]
        common = genus[3]
        for sp in genus[:3]:
            assert 1 <= len(sp.differences(common)) <= 2
    # names are incomplete: the genus' shared attributes (e.g. body colour) never appear in a name
    for entry in table:
        assert entry["body"] not in entry["name"].lower()
    assert {s["habitat"] for s in table} == {"water", "land"}


def test_toybirds_splits_and_labels():
    src = open_dataset("toybirds")
    assert src.num_classes >= 20
    train, test = src.samples("train"), src.samples("test")
    counts_train = collections.Counter(s.label for s in train)
    counts_test = collections.Counter(s.label for s in test)
    assert min(counts_train.values()) >= 30 and min(counts_test.values()) >= 50
    assert len(train) == src.card.splits["train"] and len(test) == src.card.splits["test"]
    assert len({s.image_id for s in train} & {s.image_id for s in test}) == 0
    # an image id always renders the same pixels, and its label's species is what is drawn
    sample = train[123]
    np.testing.assert_array_equal(src.render(sample.image_id), src.render(sample.image_id))
    item = src.item(sample.image_id)
    assert item.scene.spec == spec_of(src.card.raw["world"]["species"][sample.label])


def test_toywaterbirds_groups_follow_the_waterbirds_design():
    src = open_dataset("toywaterbirds")
    train = src.samples("train")
    agree = np.mean([s.attrs["y"] == s.attrs["place"] for s in train])
    assert 0.9 < agree < 0.99  # 95% habitat/background correlation
    test_groups = collections.Counter(s.attrs["group"] for s in src.samples("test"))
    assert set(test_groups) == {"00", "01", "10", "11"}
    assert test_groups["00"] == test_groups["01"] and test_groups["10"] == test_groups["11"]
    # species-level labels, shared with toybirds
    assert src.class_names == open_dataset("toybirds").class_names


def test_corpus_goes_beyond_benchmark_species():
    corpus = open_dataset("toycorpus")
    bench = {spec_of(s) for s in open_dataset("toybirds").card.raw["world"]["species"]}
    specs = [corpus.item(f"train/{i:06d}").scene.spec for i in range(200)]
    assert len(set(specs)) > 150
    assert sum(s in bench for s in specs) < 10
    assert {corpus.item(f"train/{i:06d}").scene.context for i in range(200)} == set(CONTEXTS)
    assert set(ATTRIBUTES["body"]) == {s.body for s in specs}


def test_world_subsets_carry_the_render_version_and_real_manifests_do_not():
    """Cached results are keyed on manifests of ids: a change of the drawing code must change them."""
    import dataclasses

    from augbench.protocols.few_shot import few_shot
    from augbench.world.render import RENDER_VERSION

    subset = few_shot(open_dataset("toybirds"), 2, seed=0)
    assert subset.revision == f"render-{RENDER_VERSION}" and subset.manifest()["revision"] == subset.revision
    older = dataclasses.replace(subset, revision="render-1")
    assert older.manifest_hash != subset.manifest_hash
    # sources read from files have no revision: their manifests (and hashes) are as before
    assert "revision" not in dataclasses.replace(subset, revision=None).manifest()


def _single_attribute_variants(spec: BirdSpec) -> list[BirdSpec]:
    return [dataclasses.replace(spec, **{key: value}) for key, values in ATTRIBUTES.items()
            for value in values if value != getattr(spec, key)]


def test_contradicted_description_is_a_species_that_differs_in_exactly_one_attribute():
    rng = np.random.default_rng(0)
    kinds = collections.Counter()
    for entry in generate_species():
        spec = spec_of(entry)
        scene = sample_scene(spec, np.random.default_rng(3), context="standing on rocks")
        variants = {caption(dataclasses.replace(scene, spec=v)): v for v in _single_attribute_variants(spec)}
        for _ in range(10):
            edited = contradict(caption(scene), rng)
            assert edited in variants, edited
            changed = [k for k in ATTRIBUTES if getattr(variants[edited], k) != getattr(spec, k)]
            kinds.update(changed)
    # every attribute kind gets contradicted, the wing pattern included (the CLIP's blind spot)
    assert set(kinds) == set(ATTRIBUTES) and kinds["pattern"] >= 0.1 * sum(kinds.values())


def test_contradicted_corpus_captions_change_one_phrase_and_keep_the_context():
    corpus = open_dataset("toycorpus")
    rng = np.random.default_rng(1)
    edited_count = 0
    for i in range(300):
        text = corpus.item(f"train/{i:06d}").caption
        edited = contradict(text, rng)
        if edited is None:  # only captions that state no attribute ("a photo of a gull, ...")
            assert not any(w in text for w in (*COLOURS, "beak", "tail", "winged", "small", "large"))
            continue
        edited_count += 1
        ops = [op for op in difflib.SequenceMatcher(None, text.split(), edited.split()).get_opcodes() if op[0] != "equal"]
        assert edited != text and len(ops) == 1, (text, edited)
        assert edited.rsplit(", ", 1)[1] == text.rsplit(", ", 1)[1]
    assert edited_count > 250

"""Protocols on in-memory sources (METHODS_SPEC §5.4, §5.5, §6.1-6.3).

Includes CUB-LT from a synthetic set with CUB's exact training counts (200 classes, 5,994 images:
194 classes with 30 images and 6 with 29), reproducing §6.2's numbers, and line-by-line
re-implementations of Diff-Mix's few-shot, long-tail and Flowers-split code to show the protocols draw
the same images for the same seed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from augbench.data import DataError, ImageSource, Sample, Subset
from augbench.data.cards import DatasetCard
from augbench.protocols.few_shot import few_shot
from augbench.protocols.full_data import full_data
from augbench.protocols.long_tail import class_groups, long_tail, long_tail_counts, shot_thresholds
from augbench.protocols.metrics import class_group_accuracy, mean_accuracy_by_class_group, per_class_accuracy
from augbench.protocols.splits import default_train_split, half_split, validation_split
from augbench.protocols.waterbirds import (
    WATERBIRDS_COLUMNS,
    WATERBIRDS_GROUP_NAMES,
    WATERBIRDS_TABLE_COLUMNS,
    waterbirds_group,
)


class MemorySource(ImageSource):
    """An image source with no pixels: samples only (protocols need nothing else)."""

    def __init__(self, splits: dict[str, list[Sample]], num_classes: int, raw: dict | None = None, dataset_id="mem"):
        card = DatasetCard(
            id=dataset_id, name="in-memory", kind="embedded", reader="memory",
            class_names=tuple(f"class_{i:03d}" for i in range(num_classes)), meta="thing",
            prompt_template="a photo of a {name} {meta}", splits={k: len(v) for k, v in splits.items()},
            path=Path(f"{dataset_id}.toml"), raw=raw or {},
        )
        super().__init__(card)
        self._splits = splits

    def split_names(self):
        return list(self._splits)

    def samples(self, split):
        self._check_split(split)
        return list(self._splits[split])

    def load_image(self, image_id):
        raise DataError("in-memory source has no pixels")


def from_counts(counts, interleave=False, split="train", **kw) -> MemorySource:
    """One sample per image: ``counts[c]`` images of class c, class-major or round-robin order."""
    if interleave:
        order = [(c, j) for j in range(max(counts)) for c in range(len(counts)) if j < counts[c]]
    else:
        order = [(c, j) for c in range(len(counts)) for j in range(counts[c])]
    samples = [Sample(f"{c:03d}/{j:03d}.jpg", c) for c, j in order]
    return MemorySource({split: samples, "test": samples[:5]}, len(counts), **kw)


def cub_counts(tail29: list[int]) -> list[int]:
    """CUB's training counts: 30 images per class except 29 for the six classes in ``tail29``."""
    counts = [30] * 200
    for c in tail29:
        counts[c] = 29
    assert sum(counts) == 5994
    return counts


# --- Diff-Mix reference implementations (global `random`, as in DM dataset/instance/*.py) --------------


def _with_global_random(fn):
    state = random.getstate()
    try:
        return fn()
    finally:
        random.setstate(state)


def dm_few_shot(labels, k, seed):
    def run():
        random.seed(seed)
        label_to_indices = defaultdict(list)
        for i, label in enumerate(labels):
            label_to_indices[label].append(i)
        out = []
        for _, items in label_to_indices.items():
            out.extend(random.sample(items, k))
        return out

    return _with_global_random(run)


DM_IMB = {100: 0.01, 50: 0.02, 20: 0.05, 10: 0.1}


def dm_long_tail(labels, num_classes, imbalance_factor, seed):
    def run():
        random.seed(seed)
        label_to_indices = defaultdict(list)
        for i, label in enumerate(labels):
            label_to_indices[label].append(i)
        img_average = len(labels) / num_classes
        out = []
        ranked = sorted(label_to_indices.items(), key=lambda x: len(x[1]), reverse=True)
        for sorted_idx, (_, indices) in enumerate(ranked):
            num = img_average * (DM_IMB[imbalance_factor] ** (sorted_idx / (num_classes - 2.0)))
            out.extend(random.sample(indices, max(int(num), 1)))
        return out

    return _with_global_random(run)


# --- few-shot (§6.1) --------------------------------------------------------------------------------


def test_few_shot_matches_diff_mix_and_is_deterministic():
    src = from_counts([7, 5, 9, 6], interleave=True)
    labels = [s.label for s in src.samples("train")]
    for seed in (0, 1, 42):
        sub = few_shot(src, 5, seed)
        ids = [s.image_id for s in src.samples("train")]
        assert sub.image_ids == [ids[i] for i in dm_few_shot(labels, 5, seed)]
        assert sub.class_counts(4) == [5, 5, 5, 5]
        assert sub.params == {"shots": 5, "seed": seed} and sub.protocol == "few_shot"
        again = few_shot(src, 5, seed)
        assert again.to_json() == sub.to_json() and again.manifest_hash == sub.manifest_hash
    assert few_shot(src, 5, 0).manifest_hash != few_shot(src, 5, 1).manifest_hash


def test_few_shot_refuses_small_classes_without_replacement():
    src = from_counts([7, 3, 9, 4])
    with pytest.raises(DataError) as info:
        few_shot(src, 5, 0)
    msg = str(info.value)
    assert "'class_001' (label 1): 3" in msg and "'class_003' (label 3): 4" in msg
    assert "shots <= 3" in msg and "replacement" in msg
    assert few_shot(src, 3, 0).class_counts(4) == [3, 3, 3, 3]


def test_few_shot_uses_the_cards_training_split():
    src = from_counts([6, 6, 6], split="trainval", raw={"protocols": {"train_split": "trainval"}})
    assert default_train_split(src) == "trainval"
    assert few_shot(src, 2, 0).split == "trainval"


# --- long-tail (§6.2, §5.4) ------------------------------------------------------------------------


@pytest.mark.parametrize("tail29", [list(range(6)), list(range(194, 200)), [3, 50, 77, 120, 161, 199]])
def test_cub_lt_reproduces_the_spec_numbers(tail29):
    """CUB-LT from 5,994 images (nbar = 29.97): the numbers in METHODS_SPEC §6.2, wherever the 29s are."""
    src = from_counts(cub_counts(tail29))
    expected = {  # IF: (total, head, tail, single-image classes)
        100: (1242, 29, 1, 83),
        50: (1427, 29, 1, 62),
        20: (1798, 29, 1, 21),
        10: (2238, 29, 2, 0),
    }
    for imbalance_factor, (total, head, tail, singles) in expected.items():
        sub = long_tail(src, imbalance_factor, seed=0)
        per_class = sorted(sub.class_counts(200), reverse=True)
        assert len(sub.samples) == total
        assert (per_class[0], per_class[-1]) == (head, tail)
        assert sum(1 for n in per_class if n == 1) == singles
        assert len(set(sub.image_ids)) == total  # without replacement
    groups = class_groups(long_tail(src, 100, 0).class_counts(200))
    assert {k: len(v) for k, v in groups.items()} == {"many": 16, "medium": 61, "few": 123}


def test_long_tail_counts_formula():
    counts = long_tail_counts(5994, 200, 100)
    assert counts[0] == 29 and sum(counts) == 1242
    assert counts == [max(int(29.97 * (0.01 ** (k / 198.0))), 1) for k in range(200)]


def test_long_tail_matches_diff_mix_with_ties_in_first_appearance_order():
    counts = cub_counts([10, 20, 30, 40, 50, 60])
    src = from_counts(counts, interleave=True)
    labels = [s.label for s in src.samples("train")]
    ids = [s.image_id for s in src.samples("train")]
    for imbalance_factor in (100, 20, 10):
        sub = long_tail(src, imbalance_factor, seed=3)
        assert sub.image_ids == [ids[i] for i in dm_long_tail(labels, 200, imbalance_factor, 3)]
        assert sub.params == {"imbalance_factor": imbalance_factor, "seed": 3, "base": "split:train"}
    # stable sort: the first class (30 images, first appearance) is the head; the first 29-class ranks 194
    sub = long_tail(src, 100, 0)
    assert sub.class_counts(200)[0] == 29 and sub.class_counts(200)[10] == 1


def test_long_tail_validates_its_inputs():
    src = from_counts([5, 5, 5])
    with pytest.raises(ValueError, match="100, 50, 20, 10"):
        long_tail(src, 30, 0)
    with pytest.raises(DataError, match="at least 3 classes"):
        long_tail(from_counts([4, 4]), 10, 0)
    with pytest.raises(DataError, match="needs .* images but has"):
        long_tail(from_counts([40, 2, 2, 2]), 10, 0)


def test_class_groups_thresholds_are_configurable():
    counts = [31, 30, 10, 9, 21, 20, 5, 4]
    assert class_groups(counts) == {"many": [0, 1, 4], "medium": [2, 3, 5, 6], "few": [7]}
    assert class_groups(counts, many_above=30, few_below=10) == {"many": [0], "medium": [1, 2, 4, 5], "few": [3, 6, 7]}
    flowers_like = from_counts([3, 3, 3], raw={"protocols": {"long_tail": {"many_above": 30, "few_below": 10}}})
    assert shot_thresholds(flowers_like) == (30, 10) and shot_thresholds(from_counts([3, 3, 3])) == (20, 5)
    acc = class_group_accuracy([0, 1, 1, 7], [0, 1, 2, 7], {"many": [0, 1], "medium": [2], "few": [7], "none": [5]})
    assert acc == {"many": 100.0, "medium": 0.0, "few": 100.0, "none": None}


def test_class_group_accuracy_averages_classes_not_images():
    """METHODS_SPEC §5.4: DM's many/medium/few numbers are the mean of the group's per-class accuracies
    (``sum(cls_acc[many]) / sum(many)``), so a class with many test images counts once."""
    preds, labels = [0, 0, 0, 0, 1, 2, 0], [0, 0, 0, 1, 1, 2, 2]  # class 0: 3/3, class 1: 1/2, class 2: 1/2
    assert per_class_accuracy(preds, labels) == {0: 100.0, 1: 50.0, 2: 50.0}
    acc = class_group_accuracy(preds, labels, {"many": [0, 1], "few": [2, 9]})
    assert acc == {"many": 75.0, "few": 50.0}  # pooled over "many"'s five images it would be 80.0
    assert mean_accuracy_by_class_group([100.0, None, 50.0], {"a": [0, 1], "b": [1]}) == {"a": 100.0, "b": None}
    with pytest.raises(ValueError, match="predictions for"):
        class_group_accuracy([0], [0, 1], {"a": [0]})


def test_waterbirds_groups_are_defined_once():
    assert [waterbirds_group(y, p) for y in (0, 1) for p in (0, 1)] == list(WATERBIRDS_GROUP_NAMES)
    assert WATERBIRDS_GROUP_NAMES[waterbirds_group(1, 0)] == "waterbird on land"
    # P2 Tab.3 column order, labels (bird type, background)
    assert WATERBIRDS_TABLE_COLUMNS == (("00", "L,L"), ("11", "W,W"), ("01", "L,W"), ("10", "W,L"))
    assert dict(WATERBIRDS_TABLE_COLUMNS) == WATERBIRDS_COLUMNS
    with pytest.raises(ValueError, match="0 or 1"):
        waterbirds_group(2, 0)


def test_flower_lt_starts_from_diff_mix_half_split():
    counts = [40, 58, 41, 46, 87, 40, 49]
    src = from_counts(counts, interleave=True, split="all",
                      raw={"protocols": {"long_tail": {"base": "half_split", "base_split": "all"}}})
    samples = src.samples("all")
    # Diff-Mix flower.py: per class (label order) a default_rng(seed) permutation, first int(0.5 n) -> train
    rng = np.random.default_rng(7)
    class_to_images = {c: [s.image_id for s in samples if s.label == c] for c in range(len(counts))}
    perms = {c: rng.permutation(len(class_to_images[c])) for c in range(len(counts))}
    dm_train = []
    for c in range(len(counts)):
        ids = np.array_split(perms[c], [int(0.5 * len(perms[c]))])[0]
        dm_train.extend(class_to_images[c][i] for i in ids)
    train, test = half_split(src, 7)
    assert train.image_ids == dm_train
    assert sorted(train.image_ids + test.image_ids) == sorted(s.image_id for s in samples)
    assert train.class_counts(7) == [n // 2 for n in counts]
    lt = long_tail(src, 10, 7)
    assert lt.params["base"] == "half_split:all:seed=7"
    assert set(lt.image_ids) <= set(train.image_ids)


def test_flower_lt_is_tested_on_the_other_half():
    """METHODS_SPEC §6.2 "Test sets": Flower-LT's balanced test set is Diff-Mix's held-out half, not the
    official test split (which overlaps the half the long-tail subset is drawn from)."""
    from augbench.protocols.base import evaluation_key
    from augbench.protocols.long_tail import LongTail

    src = from_counts([40, 58, 41, 46, 87, 40, 49], interleave=True, split="all",
                      raw={"protocols": {"long_tail": {"base": "half_split", "base_split": "all"}}})
    draw = LongTail().draw(src, 7, {"imbalance_factor": 10})
    assert draw.test.subset.image_ids == half_split(src, 7)[1].image_ids and not draw.test.whole_split
    assert not set(draw.test.subset.image_ids) & set(draw.train.image_ids)
    assert evaluation_key(draw.test) == ["mem", "all", draw.test.subset.manifest_hash]
    assert list(draw.parts()) == ["train", "test"]
    cub_like = from_counts([12] * 6)
    assert evaluation_key(LongTail().draw(cub_like, 7, {"imbalance_factor": 10}).test) == ["mem", "test"]


# --- full data and validation splits (§5.5) -----------------------------------------------------------


def test_full_data_holds_out_a_random_fifth():
    src = from_counts([30] * 10, interleave=True)
    train, val = full_data(src, seed=0)
    assert (len(train.samples), len(val.samples)) == (240, 60)
    assert not set(train.image_ids) & set(val.image_ids)
    order = [s.image_id for s in src.samples("train")]
    assert train.image_ids == [i for i in order if i in set(train.image_ids)]  # split order kept
    assert val.params == {"seed": 0, "val_fraction": 0.2, "part": "val"}
    assert full_data(src, seed=0)[1].to_json() == val.to_json()
    assert full_data(src, seed=1)[1].image_ids != val.image_ids
    assert len(full_data(from_counts([30] * 200 + [27]), seed=0)[1].samples) == round(0.2 * 6027)


def test_validation_split_is_stratified_when_possible():
    five_shot = few_shot(from_counts([12] * 6), 5, 0)
    train, val = validation_split(five_shot, 0.2, seed=0)
    assert val.class_counts(6) == [1] * 6 and train.class_counts(6) == [4] * 6
    assert val.params["stratified"] is True and val.params["parent"] == five_shot.manifest_hash
    assert validation_split(five_shot, 0.2, seed=0)[1].manifest_hash == val.manifest_hash
    assert validation_split(five_shot, 0.2, seed=1)[1].image_ids != val.image_ids


def test_validation_split_keeps_a_training_image_of_every_class():
    lt = long_tail(from_counts(cub_counts(list(range(6)))), 100, 0)
    train, val = validation_split(lt, 0.2, seed=0)
    assert val.params["stratified"] is False
    assert all(n >= 1 for n in train.class_counts(200))
    assert len(val.samples) == round(0.2 * len(lt.samples))
    assert sorted(train.image_ids + val.image_ids) == sorted(lt.image_ids)


def test_subset_manifest_roundtrip(tmp_path):
    src = from_counts([6, 6, 6])
    sub = few_shot(src, 2, 0)
    path = sub.write(tmp_path / "m.json")
    again = Subset.read(path, src)
    assert again.manifest_hash == sub.manifest_hash and path.read_text() == sub.to_json() + "\n"


def test_protocols_run_on_the_embedded_world():
    """The protocols use only the ImageSource interface, so the world's toy datasets work too."""
    from augbench.data import open_dataset
    from augbench.protocols.waterbirds import waterbirds

    birds, water = open_dataset("toybirds"), open_dataset("toywaterbirds")
    sub = few_shot(birds, 5, 0)
    assert sub.class_counts(birds.num_classes) == [5] * birds.num_classes
    assert len(long_tail(birds, 10, 0).samples) == sum(long_tail_counts(len(birds.samples("train")), birds.num_classes, 10))
    proto = waterbirds(birds, water, seed=0, shots=5)
    assert proto.train.manifest_hash == sub.manifest_hash and min(proto.group_counts.values()) > 0

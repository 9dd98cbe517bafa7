"""Synthetic labels are stored normalised with mixing metadata and transformed at load time (§3.7, §4)."""

from __future__ import annotations

import numpy as np
import pytest

from augbench.synthetic.loading import SyntheticLabelError, label_vector, target_class

CLASSES = {"a": 0, "b": 1, "c": 2}


def _row(label, mix=None, target="b"):
    return {"file": "images/000000.png", "label": label, "target_class": target, "mix": mix}


def test_as_generated_keeps_the_stored_label():
    vec = label_vector(_row({"a": 0.25, "b": 0.75}), CLASSES, "as_generated")
    np.testing.assert_allclose(vec, [0.25, 0.75, 0.0])


def test_hard_is_one_hot_of_the_target_class():
    vec = label_vector(_row({"a": 0.25, "b": 0.75}, target="a"), CLASSES, "hard")
    np.testing.assert_array_equal(vec, [1.0, 0.0, 0.0])


def test_diff_mix_rule_matches_the_worked_example():
    """METHODS_SPEC §3.7: s = 0.7, gamma = 0.8 -> s**gamma = 0.752 -> y = 0.9 (0.248 e_a + 0.752 e_b)."""
    vec = label_vector(_row({"b": 1.0}, mix={"a": "a", "b": "b", "s": 0.7}), CLASSES, "diff_mix", gamma=0.8, sigma=0.9)
    np.testing.assert_allclose(vec, [0.9 * (1 - 0.7**0.8), 0.9 * 0.7**0.8, 0.0], rtol=1e-6)
    assert vec[1] == pytest.approx(0.9 * 0.752, abs=1e-3)
    same = label_vector(_row({"b": 1.0}, mix={"a": "b", "b": "b", "s": 0.5}), CLASSES, "diff_mix", sigma=0.9)
    np.testing.assert_allclose(same, [0.0, 0.9, 0.0], rtol=1e-6)  # intra-class: sigma * e_a


def test_diff_mix_without_metadata_says_what_to_use_instead():
    with pytest.raises(SyntheticLabelError, match="labels = 'hard'"):
        label_vector(_row({"b": 1.0}), CLASSES, "diff_mix")


def test_target_class_falls_back_to_the_dominant_label():
    assert target_class({"label": {"a": 0.3, "c": 0.7}, "target_class": None}) == "c"


def test_rows_store_normalised_labels_and_mixing_metadata():
    from augbench.contract import SyntheticSample
    from augbench.synthetic.generate import _row

    prov = {"method": "m", "preset": None, "params": {}, "seed": 1, "sources": ["img7"], "source_classes": [0],
            "request_index": 3, "target_class": 2, "strength": 0.7}
    row = _row(SyntheticSample(np.zeros((4, 4, 3), np.uint8), np.array([0.0, 1.0, 3.0]), prov), "f.png",
               ("a", "b", "c"))
    assert row["label"] == {"b": 0.25, "c": 0.75}
    assert row["mix"] == {"a": "a", "b": "c", "s": 0.7} and row["target_class"] == "c"
    text_to_image = dict(prov, sources=[], source_classes=[], strength=None)
    text_to_image.pop("strength")
    assert _row(SyntheticSample(np.zeros((4, 4, 3), np.uint8), np.eye(3)[2], text_to_image), "f.png",
                ("a", "b", "c"))["mix"] is None

"""DRW, deferred re-weighting (METHODS_SPEC §5.4; issue 27 part 1): weights, loss, schedule, suite keys."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from augbench.contract import ConfigError
from augbench.registry import default_registry
from augbench.run.seeding import make_generator
from augbench.run.suites import SuiteError, load_suite, validate_suite
from augbench.training import LabeledImages, TrainConfig, get_recipe, train_classifier
from augbench.training.losses import class_weighted_cross_entropy, drw_class_weights


def test_drw_weights_follow_the_formula_of_section_5_4():
    counts = [100, 20, 5, 1]
    beta = 0.9999
    expected = (1 - beta) / (1 - np.power(beta, np.array(counts, dtype=float)))  # [DM train_hub_imb.py L497-506]
    expected = expected / expected.sum() * len(counts)
    assert torch.allclose(drw_class_weights(counts, beta), torch.tensor(expected, dtype=torch.float32), rtol=1e-6)
    assert torch.equal(drw_class_weights(counts, 0.0), torch.ones(4))  # beta = 0 before the deferral: uniform
    weights = drw_class_weights(counts, beta)
    assert float(weights.sum()) == pytest.approx(4.0) and bool((weights[1:] > weights[:-1]).all())


def test_class_weighted_loss_is_torch_weighted_cross_entropy_for_hard_labels():
    g = make_generator(0)
    logits = torch.randn(12, 4, generator=g)
    labels = torch.randint(0, 4, (12,), generator=g)
    weights = drw_class_weights([50, 10, 3, 1], 0.9999)
    ours = class_weighted_cross_entropy(logits, F.one_hot(labels, 4).float(), weights)
    assert float(ours) == pytest.approx(float(F.cross_entropy(logits, labels, weight=weights)), rel=1e-6)


def _imbalanced() -> LabeledImages:
    """Class 0: 8 images, class 1: 4, class 2: 1 (coloured squares on noise, as test_training's toy data)."""
    g = make_generator(0)
    labels = torch.tensor([0] * 8 + [1] * 4 + [2])
    x = torch.randint(0, 120, (len(labels), 3, 20, 20), dtype=torch.uint8, generator=g)
    for i, c in enumerate(labels.tolist()):
        x[i, c, :10, :10] = 255
    return LabeledImages(x, labels)


def _cfg(**kw) -> TrainConfig:
    recipe = get_recipe("embedded", epochs=4, batch_size=8, eval_every=1, lr=3e-3)
    return TrainConfig(recipe=recipe, seed=0, input_size=16, selection="last_epoch", device="cpu", num_threads=1, **kw)


def test_drw_reweights_only_after_the_deferral_epoch():
    def model():
        return timm.create_model("test_resnet", pretrained=False, num_classes=3)

    train = _imbalanced()
    plain = train_classifier(model, train, num_classes=3, config=_cfg(), test=train)
    drw = train_classifier(model, train, num_classes=3, config=_cfg(class_weighting="drw", drw_start=0.5), test=train)
    assert drw.config["drw"]["first_epoch"] == 3  # round(0.5 * 4) + 1 (1-based): epochs 3 and 4 re-weighted
    assert drw.config["drw"]["class_weights"][2] > drw.config["drw"]["class_weights"][0]
    assert [h["train_loss"] for h in drw.history[:2]] == [h["train_loss"] for h in plain.history[:2]]
    assert drw.history[2]["train_loss"] != plain.history[2]["train_loss"]
    assert "class_weighting" not in plain.config  # runs without DRW keep their keys


@pytest.mark.parametrize("body, message", [
    ('class_weighting = "drw"\ndrw_beta = 1.0\n', "drw_beta = 1.0: expected a value in \\[0, 1\\)"),
    ('class_weighting = "drw"\ndrw_start = 1.5\n', "drw_start = 1.5: the deferral must fall inside the schedule"),
    ('class_weighting = "drw2"\n', "class_weighting = 'drw2': expected one of none, drw"),
])
def test_bad_drw_settings_are_refused_before_any_cell(tmp_path, body, message):
    path = tmp_path / "s.toml"
    path.write_text('[suite]\nprotocol = "long_tail"\ndatasets = ["toybirds"]\nmethods = ["original", "cutmix"]\n'
                    'seeds = [0]\n[training.cutmix]\n' + body)
    suite = load_suite(str(path))
    with pytest.raises(SuiteError, match=message):
        validate_suite(suite, default_registry())


def test_drw_is_chosen_suite_wide_or_per_family(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[suite]\nprotocol = "long_tail"\ndatasets = ["toybirds"]\nmethods = ["original", "cutmix"]\n'
                    'seeds = [0]\n[training.cutmix]\nclass_weighting = "drw"\ndrw_start = 0.75\n')
    suite = load_suite(str(path))
    validate_suite(suite, default_registry())
    assert suite.class_weighting("cutmix") == {"class_weighting": "drw", "drw_start": 0.75}
    assert suite.class_weighting("original") == {}
    assert suite.training_overrides("cutmix") == {}  # not a synthetic-image key
    with pytest.raises(ConfigError, match="drw_beta"):
        TrainConfig(class_weighting="drw", drw_beta=-0.1)

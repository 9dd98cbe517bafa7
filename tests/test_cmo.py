"""CMO (METHODS_SPEC §5.4; issue 27): the minority sampler, the box and loss rule, the epoch window."""

from __future__ import annotations

import pytest
import timm
import torch

from augbench.registry import default_registry
from augbench.run.seeding import make_generator
from augbench.training import LabeledImages, TrainConfig, get_recipe, train_classifier
from augbench.training.loop import _PartnerSampler


def test_minority_sampler_weights_are_inverse_class_counts():
    labels = torch.tensor([0] * 8 + [1] * 2)
    sampler = _PartnerSampler.of(default_registry().create("cmo"), labels, 2)
    assert torch.allclose(sampler.weights, torch.tensor([1 / 8] * 8 + [1 / 2] * 2, dtype=torch.float64))
    assert not sampler.uniform
    draws = sampler.draw(20000, make_generator(0))
    assert abs(float((labels[draws] == 1).double().mean()) - 0.5) < 0.02  # each class half the draws
    balanced = _PartnerSampler.of(default_registry().create("cmo"), torch.tensor([0, 0, 1, 1]), 2)
    assert balanced.uniform  # a few-shot subset: the minority sampler is uniform there, and the record says so
    assert _PartnerSampler.of(default_registry().create("cutmix"), labels, 2) is None


def test_box_from_the_minority_batch_and_area_corrected_labels():
    cmo = default_registry().create("cmo", {"prob": 1.0})
    images, minority = torch.zeros(4, 3, 16, 16), torch.ones(4, 3, 16, 16)
    y, y_min = torch.eye(3)[[0, 0, 0, 1]], torch.eye(3)[[2, 2, 1, 2]]
    params = cmo.make_params(4, (16, 16), make_generator(1))
    out, targets = cmo.apply(images, y, params, partner=(minority, y_min))
    y0, y1, x0, x1 = params.box
    pasted = float(out[0, 0].sum()) / 256.0
    assert params.apply and pasted == pytest.approx(1 - params.lam)  # one box for the whole batch
    assert torch.equal(out[:, :, y0:y1, x0:x1], minority[:, :, y0:y1, x0:x1])
    assert torch.allclose(targets, params.lam * y + (1 - params.lam) * y_min)
    skip = default_registry().create("cmo", {"prob": 0.0}).make_params(4, (16, 16), make_generator(1))
    out, targets = cmo.apply(images, y, skip, partner=(minority, y_min))
    assert torch.equal(out, images) and torch.equal(targets, y)


def test_cmo_mixes_only_inside_its_epoch_window():
    cmo = default_registry().create("cmo")
    # DM: 0-based epochs e with 3 < e < E - 3; 1-based epochs 5 .. E - 3
    assert [e for e in range(1, 13) if cmo.active(e, 12)] == [5, 6, 7, 8, 9]


def test_training_with_cmo_records_its_sampler_and_window():
    g = make_generator(0)
    labels = torch.tensor([0] * 8 + [1] * 4 + [2] * 2)
    train = LabeledImages(torch.randint(0, 255, (len(labels), 3, 20, 20), dtype=torch.uint8, generator=g), labels)
    recipe = get_recipe("embedded", epochs=8, batch_size=8, eval_every=1, lr=3e-3)
    cfg = TrainConfig(recipe=recipe, seed=0, input_size=16, selection="last_epoch", device="cpu", num_threads=1)
    out = train_classifier(lambda: timm.create_model("test_resnet", pretrained=False, num_classes=3), train,
                           num_classes=3, config=cfg, test=train, mixer=default_registry().create("cmo"))
    assert out.config["partner_sampler"] == {"rule": "inverse_frequency", "uniform": False, "mixing_epochs": [5]}
    plain = train_classifier(lambda: timm.create_model("test_resnet", pretrained=False, num_classes=3), train,
                             num_classes=3, config=cfg, test=train)
    # outside the window CMO trains exactly as plain cross-entropy does (same streams, no mixing)
    assert [h["train_loss"] for h in out.history[:4]] == [h["train_loss"] for h in plain.history[:4]]


def test_long_tail_suite_has_cmo_and_cmo_drw_rows_matched_to_p2_table_2():
    from types import SimpleNamespace

    from augbench.reporting.published import load_published
    from augbench.run.cells import Cell, RunOptions
    from augbench.run.stages import resolve_method, train_config
    from augbench.run.suites import load_suite

    for profile in ("embedded", "sd15"):
        suite = load_suite("long_tail", profile)
        assert {"cmo", "cmo.drw"} <= set(suite.methods)
    suite = load_suite("long_tail")

    def weighting(method: str) -> str:
        cell = Cell("long_tail", "embedded", "toybirds", "long_tail", (("imbalance_factor", 100),), method, 0)
        resolved = resolve_method(cell, suite, default_registry())
        env = SimpleNamespace(suite=suite, opts=RunOptions(suite="long_tail"), device="cpu",
                              profile=SimpleNamespace(classifier_size=64))
        cfg = train_config(env, SimpleNamespace(cell=cell, resolved=resolved))
        return cfg.class_weighting

    assert weighting("cmo") == "none" and weighting("cmo.drw") == "drw" and weighting("original") == "none"
    table = load_published("p2_tab2")
    assert table.row("CMO").method_id == "cmo" and table.row("CMO-DRW").method_id == "cmo.drw"

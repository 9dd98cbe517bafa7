"""Classifier training: §5.7 losses, §4 replacement modes, schedule, selection, metrics, determinism."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from augbench.protocols.metrics import class_group_accuracy
from augbench.run.seeding import make_generator
from augbench.training import (
    DEFAULT_REPLACEMENT_MODE,
    RECIPES,
    REPLACEMENT_MODES,
    SELECTION_NOTES,
    LabeledImages,
    ReplacementSampler,
    SyntheticSet,
    TrainConfig,
    classification_metrics,
    cosine_warmup_lr,
    get_recipe,
    label_smoothing_loss,
    many_medium_few,
    one_hot,
    select_epoch,
    smoothed_targets,
    soft_target_cross_entropy,
    train_classifier,
)
from augbench.training.selection import per_group_maxima, selected_metrics

# --- §5.7 losses -----------------------------------------------------------------------------------


def test_label_smoothing_integer_targets_by_hand():
    q = smoothed_targets(torch.tensor([2, 0]), num_classes=5, smoothing=0.1)
    off = 0.1 / 4
    assert torch.allclose(q[0], torch.tensor([off, off, 0.9, off, off]))
    assert torch.allclose(q[1], torch.tensor([0.9, off, off, off, off]))
    assert torch.allclose(q.sum(1), torch.ones(2))


def test_label_smoothing_vector_targets_are_added_not_renormalised():
    c, eps = 5, 0.1
    off = eps / (c - 1)
    onehot = one_hot(torch.tensor([1]), c)
    q = smoothed_targets(onehot, c, eps)
    assert torch.allclose(q[0], torch.tensor([off, off + 0.9, off, off, off]))
    assert math.isclose(float(q.sum()), 1 + eps / (c - 1), rel_tol=1e-6)
    # DM synthetic label sigma * [(1 - s^g) e_src + s^g e_tgt], sigma = 0.9: mass 0.81 + eps * C / (C - 1)
    w = 0.7**0.8
    y = 0.9 * ((1 - w) * one_hot(torch.tensor([0]), c) + w * one_hot(torch.tensor([3]), c))
    q = smoothed_targets(y, c, eps)
    assert math.isclose(float(q.sum()), 0.81 + eps * c / (c - 1), rel_tol=1e-6)
    assert math.isclose(float(q[0, 3]), off + 0.9 * 0.9 * w, rel_tol=1e-6)
    # rows flagged as integer labels use the integer formula (DII: unmixed hard labels)
    q = smoothed_targets(torch.cat([onehot, y]), c, eps, integer_rows=torch.tensor([True, False]))
    assert math.isclose(float(q[0].sum()), 1.0, rel_tol=1e-6) and math.isclose(float(q[0, 1]), 0.9, rel_tol=1e-6)
    assert math.isclose(float(q[1].sum()), 0.81 + eps * c / (c - 1), rel_tol=1e-6)


def test_label_smoothing_loss_value():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    lp = F.log_softmax(logits, 1)
    q_int = torch.tensor([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05]])
    expected = -(q_int * lp).sum(1).mean()
    assert torch.allclose(label_smoothing_loss(logits, torch.tensor([1, 0]), 0.1), expected)
    q_vec = q_int + torch.tensor([[0, 0.05, 0], [0.05, 0, 0]])  # one-hot vectors: + eps/(C-1) on the label
    expected_vec = -(q_vec * lp).sum(1).mean()
    assert torch.allclose(label_smoothing_loss(logits, one_hot(torch.tensor([1, 0]), 3), 0.1), expected_vec)


def test_soft_target_cross_entropy_matches_torch():
    g = make_generator(0)
    logits = torch.randn(6, 4, generator=g)
    t = torch.rand(6, 4, generator=g)
    t = t / t.sum(1, keepdim=True)
    assert torch.allclose(soft_target_cross_entropy(logits, t), F.cross_entropy(logits, t), atol=1e-6)
    hard = torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.allclose(soft_target_cross_entropy(logits, one_hot(hard, 4)), F.cross_entropy(logits, hard))


def test_cosine_warmup_schedule():
    t_max, warm = 100, 10
    assert math.isclose(cosine_warmup_lr(0, 1.0, t_max, warm), 0.1 * 0.5 * (1 + math.cos(0)))
    assert math.isclose(cosine_warmup_lr(9, 1.0, t_max, warm), 0.5 * (1 + math.cos(math.pi * 9 / 100)))
    assert math.isclose(cosine_warmup_lr(50, 1.0, t_max, warm), 0.5, abs_tol=1e-12)
    assert cosine_warmup_lr(100, 1.0, t_max, warm) < 1e-12
    assert cosine_warmup_lr(104, 1.0, t_max, warm) > cosine_warmup_lr(101, 1.0, t_max, warm)  # rises past T_max


def test_recipes():
    assert RECIPES["diff_ii_resnet50"].label_smoothing == 0.1
    assert get_recipe("diff_ii_resnet50", "cub").lr == 0.05
    assert get_recipe("diff_ii_resnet50", "aircraft").lr == 0.1
    assert get_recipe("diff_ii_vit_b16", "pets").lr == 1e-4
    r = get_recipe("noisecutmix")
    assert (r.optimizer, r.lr, r.batch_size, r.epochs, r.label_smoothing) == ("adam", 1e-3, 64, 100, 0.0)
    assert get_recipe("embedded", epochs=3).epochs == 3 and get_recipe("embedded", epochs=3).image_budget is None
    assert get_recipe("embedded").image_budget == 6000
    budget = get_recipe("embedded", image_budget=1000, num_evals=3)
    assert budget.num_epochs(100) == 10 and budget.num_epochs(700) == 1 and budget.num_epochs(5000) == 1
    assert budget.eval_epochs(10) == {3, 7, 10} and budget.eval_epochs(1) == {1}
    assert get_recipe("diff_mix_resnet50").eval_epochs(10) == {4, 8, 10}
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("nope")
    with pytest.raises(ValueError, match="optimizer"):
        get_recipe("embedded", optimizer="lamb")


# --- §4 replacement modes ----------------------------------------------------------------------------

C = 4
REAL_LABELS = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3])  # n_k = 6, 3, 2, 1
# synthetic pool: classes 0 (2 images), 1 (3 images), 3 (1 image); class 2 has none
SYN_CLASS = torch.tensor([0, 0, 1, 1, 1, 3])
SYN_SOURCE = torch.tensor([0, 0, 6, 7, -1, 11])  # edits of real images 0 (x2), 6, 7, 11


def _synthetic(soft: bool = False) -> SyntheticSet:
    t = one_hot(SYN_CLASS, C)
    if soft:
        t = 0.8 * t + 0.2 * one_hot((SYN_CLASS + 1) % C, C)
    return SyntheticSet(torch.zeros(6, 3, 4, 4, dtype=torch.uint8), t, source_index=SYN_SOURCE)


def _draw(mode: str, p: float = 0.5, n: int = 24000, soft: bool = False):
    s = ReplacementSampler(mode, p, REAL_LABELS, _synthetic(soft), C)
    g = make_generator(123)
    idx = torch.randint(0, len(REAL_LABELS), (n,), generator=g)
    syn, cls = s.draw(idx, g)
    return s, idx, syn, cls, s.targets(idx, syn, cls)


def test_same_class_draws_from_the_real_label_class():
    _, idx, syn, _, t = _draw("same_class")
    y = REAL_LABELS[idx]
    rep = syn >= 0
    assert torch.equal(SYN_CLASS[syn[rep]], y[rep])
    assert not rep[y == 2].any()  # class without synthetic images keeps the real image
    has = y != 2
    assert abs(rep[has].float().mean() - 0.5) < 0.02
    # uniform within the class: class 1 has synthetic images 2, 3, 4
    c1 = syn[rep & (y == 1)]
    freq = torch.bincount(c1, minlength=6)[2:5].float() / c1.numel()
    assert (freq - 1 / 3).abs().max() < 0.03
    assert torch.equal(t, one_hot(y, C))  # hard label y_i


def test_own_edits_draws_edits_of_the_same_image():
    _, idx, syn, _, _ = _draw("own_edits")
    rep = syn >= 0
    assert torch.equal(SYN_SOURCE[syn[rep]], idx[rep])
    edited = torch.isin(idx, torch.tensor([0, 6, 7, 11]))
    assert not rep[~edited].any()
    assert abs(rep[edited].float().mean() - 0.5) < 0.03


def test_inverse_freq_class_probabilities_and_labels():
    s, idx, syn, cls, t = _draw("inverse_freq_class", p=1.0)
    w = torch.tensor([1 / 7, 1 / 4, 0.0, 1 / 2])  # 1/(n_k+1), class 2 excluded (no synthetic images)
    assert torch.allclose(s.class_probs.float(), w / w.sum())
    assert (syn >= 0).all()
    freq = torch.bincount(SYN_CLASS[syn], minlength=C).float() / syn.numel()
    assert (freq - w / w.sum()).abs().max() < 0.02
    assert torch.equal(t, one_hot(SYN_CLASS[syn], C))  # label = drawn class k, hard


def test_global_pool_uniform_with_soft_labels():
    _, idx, syn, _, t = _draw("global_pool", p=0.3, soft=True)
    rep = syn >= 0
    assert abs(rep.float().mean() - 0.3) < 0.02
    freq = torch.bincount(syn[rep], minlength=6).float() / rep.sum()
    assert (freq - 1 / 6).abs().max() < 0.02
    syn_t = _synthetic(soft=True).targets
    assert torch.equal(t[rep], syn_t[syn[rep]])
    assert torch.equal(t[~rep], one_hot(REAL_LABELS[idx[~rep]], C))


def test_global_pool_inverse_freq_soft_labels():
    s, idx, syn, cls, t = _draw("global_pool_inverse_freq", p=1.0, soft=True)
    w = torch.tensor([1 / 7, 1 / 4, 0.0, 1 / 2])
    freq = torch.bincount(SYN_CLASS[syn], minlength=C).float() / syn.numel()
    assert (freq - w / w.sum()).abs().max() < 0.02
    assert torch.equal(t, _synthetic(soft=True).targets[syn])


def test_replacement_probability_bounds():
    _, _, syn, _, t = _draw("same_class", p=0.0)
    assert (syn < 0).all()
    with pytest.raises(ValueError, match="probability"):
        ReplacementSampler("same_class", 1.5, REAL_LABELS, _synthetic(), C)
    with pytest.raises(ValueError, match="source_index"):
        ReplacementSampler("own_edits", 0.5, REAL_LABELS, SyntheticSet(torch.zeros(1, 3, 2, 2), [0]), C)
    assert torch.equal(
        SyntheticSet.source_index_from_ids(["b", None, "z"], ["a", "b"]), torch.tensor([1, -1, -1])
    )


# --- evaluation and selection -------------------------------------------------------------------------


def test_group_and_class_group_metrics():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0, 0, 0])
    groups = ["00", "00", "01", "01", "10", "10", "11", "11"]
    cg = many_medium_few([30, 10, 2])
    assert cg == {"many": [0], "medium": [1], "few": [2]}
    m = classification_metrics(preds, labels, 4, groups, cg)
    assert m["top1"] == 50.0 and m["n"] == 8
    assert m["per_class"] == [50.0, 100.0, 25.0, None]
    assert math.isclose(m["mean_per_class"], 175 / 3)
    assert m["groups"] == {"00": 50.0, "01": 100.0, "10": 50.0, "11": 0.0}
    assert m["group_mean"] == 50.0 and m["worst_group"] == 0.0 and m["pooled"] == 50.0
    assert m["class_groups"] == {"many": 50.0, "medium": 100.0, "few": 25.0}
    # unweighted group mean differs from pooled accuracy when groups differ in size
    m2 = classification_metrics(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]), 2, ["a", "a", "a", "b"])
    assert m2["group_mean"] == 50.0 and m2["pooled"] == 75.0


def test_class_group_accuracy_is_the_mean_over_classes_everywhere():
    """§5.4 (DM train_hub_imb.py:801-814): a group's accuracy is the mean of its classes' accuracies,
    not the accuracy pooled over its test images; training and protocols share that one definition."""
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 0, 2, 1])  # class 0: 3/3, class 1: 0/1, class 2: 1/2
    groups = {"many": [0, 1], "few": [2], "untested": [3]}
    expected = {"many": 50.0, "few": 50.0, "untested": None}  # pooled "many" would be 75.0
    assert classification_metrics(preds, labels, 4, class_groups=groups)["class_groups"] == expected
    assert class_group_accuracy(preds, labels, groups) == expected


HISTORY = [
    {"epoch": 1, "val_top1": 40.0, "test_top1": 30.0},
    {"epoch": 2, "val_top1": None, "test_top1": None},  # not evaluated
    {"epoch": 3, "val_top1": 60.0, "test_top1": 50.0},
    {"epoch": 4, "val_top1": 60.0, "test_top1": 70.0},  # tie on val: the earlier epoch wins
    {"epoch": 5, "val_top1": 55.0, "test_top1": 65.0},
    {"epoch": 6, "val_top1": None, "test_top1": None},
]


def test_test_set_selection_notes_say_they_are_optimistic():
    for rule in ("max_test", "max_per_group"):
        assert "optimistic" in SELECTION_NOTES[rule] and "peeks at the test set" in SELECTION_NOTES[rule]
    assert "optimistic" not in SELECTION_NOTES["val_split"] + SELECTION_NOTES["last_epoch"]


def _grouped(epoch, groups, top1):
    return {"epoch": epoch, "val_top1": None, "test_top1": top1,
            "test": {"top1": top1, "groups": groups, "group_mean": sum(groups.values()) / 4, "pooled": top1}}


# each group peaks at a different epoch; no single epoch has all four maxima
GROUP_HISTORY = [
    _grouped(1, {"00": 80.0, "01": 20.0, "10": 30.0, "11": 40.0}, 50.0),
    {"epoch": 2, "val_top1": None, "test_top1": None},  # not evaluated
    _grouped(3, {"00": 60.0, "01": 50.0, "10": 35.0, "11": 45.0}, 52.0),
    _grouped(4, {"00": 70.0, "01": 30.0, "10": 60.0, "11": 10.0}, 51.0),
]


def test_max_per_group_takes_each_group_at_its_own_best_epoch():
    """METHODS_SPEC §6.3: DII reports each group's best-epoch test accuracy (one run per group)."""
    maxima = {"00": 80.0, "01": 50.0, "10": 60.0, "11": 45.0}
    assert per_group_maxima(GROUP_HISTORY) == maxima
    m = selected_metrics(GROUP_HISTORY, "max_per_group")
    assert m["groups"] == maxima and m["max_per_group"] == maxima
    assert m["group_mean"] == m["top1"] == 58.75 and m["worst_group"] == 45.0
    assert m["pooled"] is None  # the groups come from three different epochs
    assert m["selected_epoch"] == 4 and "optimistic" in m["selection_note"]
    assert all(h["test"]["groups"] != maxima for h in GROUP_HISTORY if "test" in h)
    # other rules report one epoch's groups and keep the per-group maxima only for comparison
    last = selected_metrics(GROUP_HISTORY, "last_epoch")
    assert last["groups"] == GROUP_HISTORY[-1]["test"]["groups"] and last["max_per_group"] == maxima
    best = selected_metrics(GROUP_HISTORY, "max_test")
    assert best["selected_epoch"] == best["max_test_epoch"] == 3 and best["groups"]["00"] == 60.0


def test_selection_rules_on_a_scripted_history():
    assert HISTORY[select_epoch(HISTORY, "val_split")]["epoch"] == 3
    assert HISTORY[select_epoch(HISTORY, "max_test")]["epoch"] == 4
    assert HISTORY[select_epoch(HISTORY, "last_epoch")]["epoch"] == 5  # last evaluated epoch
    no_val = [{"epoch": 1, "val_top1": None, "test_top1": 1.0}]
    with pytest.raises(ValueError, match="validation split"):
        select_epoch(no_val, "val_split")
    with pytest.raises(ValueError, match="unknown selection"):
        select_epoch(HISTORY, "best")


# --- end-to-end training on a tiny problem ---------------------------------------------------------------


def _toy(n_per_class: int, seed: int, classes: int = 3, size: int = 20) -> LabeledImages:
    """Images whose class is a coloured square in a class-specific quadrant, on noise."""
    g = make_generator(seed)
    n = n_per_class * classes
    labels = torch.arange(n) % classes
    x = torch.randint(0, 120, (n, 3, size, size), dtype=torch.uint8, generator=g)
    h = size // 2
    for i, c in enumerate(labels.tolist()):
        r, col = divmod(c, 2)
        x[i, c % 3, r * h : r * h + h, col * h : col * h + h] = 255
    groups = [str(int(i) % 2) for i in range(n)]
    return LabeledImages(x, labels, groups=groups)


def _model():
    return timm.create_model("test_resnet", pretrained=False, num_classes=3)


def _cfg(**kw) -> TrainConfig:
    recipe = get_recipe("embedded", epochs=kw.pop("epochs", 3), batch_size=8, eval_every=1, lr=3e-3)
    base = dict(recipe=recipe, seed=0, input_size=16, selection="last_epoch", device="cpu", num_threads=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def toy_data():
    return _toy(8, 0), _toy(6, 1), _toy(4, 2)


def test_training_is_deterministic_and_leaves_global_rng_alone(toy_data):
    train, test, _ = toy_data
    syn = SyntheticSet(_toy(4, 5).images, one_hot(_toy(4, 5).labels, 3))
    state = torch.get_rng_state()
    cfg = _cfg(replacement_mode="same_class")
    a = train_classifier(_model, train, num_classes=3, config=cfg, test=test, synthetic=syn)
    assert torch.equal(state, torch.get_rng_state())
    b = train_classifier(_model, train, num_classes=3, config=cfg, test=test, synthetic=syn)
    assert a.history == [dict(h, seconds=a.history[i]["seconds"]) for i, h in enumerate(b.history)]
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    c = train_classifier(_model, train, num_classes=3, config=replace(cfg, seed=1), test=test, synthetic=syn)
    assert c.history[0]["train_loss"] != a.history[0]["train_loss"]
    assert 0.3 < a.history[-1]["replaced_fraction"] < 0.7
    assert a.config["n_synthetic"] == 12 and a.config["steps_per_epoch"] == 3
    assert set(a.timings) >= {"prepare", "train", "eval", "total", "train_images_per_s"}


class RecordingMixer:
    """Stand-in batch mixer: MixUp with lam = 0.5 and a rolled partner; records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, images, targets, generator):
        assert isinstance(generator, torch.Generator)
        self.calls.append((images.shape, targets.shape, float(targets.sum(1).mean())))
        return 0.5 * (images + images.roll(1, 0)), 0.5 * (targets + targets.roll(1, 0))


def test_mixer_hook_concat_and_val_selection(toy_data):
    train, test, val = toy_data
    syn_src = _toy(2, 7)
    syn = SyntheticSet(syn_src.images, one_hot(syn_src.labels, 3))
    mixer = RecordingMixer()
    r = train_classifier(
        _model,
        train,
        num_classes=3,
        config=_cfg(replacement_mode="concat", selection="val_split", epochs=2),
        test=test,
        val=val,
        synthetic=syn,
        mixer=mixer,
        class_groups={"a": [0], "b": [1, 2]},
    )
    assert r.config["epoch_length"] == 24 + 6 and r.config["mixer"] == "RecordingMixer"
    assert len(mixer.calls) == r.timings["steps"] == 2 * 4
    assert all(c[0][1:] == (3, 16, 16) and c[1][1] == 3 and abs(c[2] - 1) < 1e-6 for c in mixer.calls)
    assert math.isclose(r.history[0]["replaced_fraction"], 6 / 30)
    m = r.metrics
    assert m["selection"] == "val_split" and "validation" in m["selection_note"]
    assert set(m["groups"]) == {"0", "1"} and set(m["class_groups"]) == {"a", "b"}
    assert all(h["val_top1"] is not None and h["test_top1"] is not None for h in r.history)
    assert m["last_epoch_top1"] == r.history[-1]["test_top1"]
    assert m["max_test_top1"] == max(h["test_top1"] for h in r.history)
    assert m["max_per_group"] == {g: max(h["test"]["groups"][g] for h in r.history) for g in ("0", "1")}


class WeightRecorder(nn.Module):
    """A classifier that keeps a copy of its weights (and buffers) whenever it is evaluated."""

    def __init__(self):
        super().__init__()
        self.net = _model()
        self.evaluated_states: list[torch.Tensor] = []

    def weights(self) -> torch.Tensor:
        return torch.cat([v.detach().flatten().double() for v in self.net.state_dict().values()])

    def forward(self, x):
        if not self.training:
            state = self.weights()
            if not self.evaluated_states or not torch.equal(state, self.evaluated_states[-1]):
                self.evaluated_states.append(state)  # validation and test of one epoch: one entry
        return self.net(x)


def test_returned_model_holds_the_selected_epochs_weights(toy_data):
    train, test, _ = toy_data
    # a validation split whose labels are shifted: the better the model learns, the worse it scores,
    # so the validation rule selects an early epoch and not the last one
    val = _toy(4, 2)
    val = LabeledImages(val.images, (val.labels + 1) % 3)
    r = train_classifier(WeightRecorder, train, num_classes=3, config=_cfg(selection="val_split", epochs=4),
                         test=test, val=val)
    states = r.model.evaluated_states
    assert len(states) == 4 and all(not torch.equal(a, b) for a, b in zip(states, states[1:]))
    best = max(range(4), key=lambda i: (r.history[i]["val_top1"], -i))
    assert r.metrics["selected_epoch"] == best + 1 < 4
    assert torch.equal(r.model.weights(), states[best])
    assert r.metrics["top1"] == r.history[best]["test_top1"] and r.metrics["val_top1"] == r.history[best]["val_top1"]


def test_training_learns_the_toy_task(toy_data):
    train, test, _ = toy_data
    r = train_classifier(_model, train, num_classes=3, config=_cfg(epochs=6, selection="max_test"), test=test)
    assert r.metrics["top1"] >= 60.0
    assert "TEST" in r.metrics["selection_note"]
    assert r.metrics["top1"] == r.metrics["max_test_top1"]


def test_an_explicit_learning_rate_survives_the_per_dataset_rate(toy_data):
    """get_recipe applies the §5.1 per-dataset rate, then overrides; training must not re-apply it."""
    assert get_recipe("diff_ii_resnet50", "cars").lr == 0.1
    recipe = get_recipe("diff_ii_resnet50", "cars", lr=0.02, epochs=1, batch_size=8, schedule="constant")
    assert recipe.lr == 0.02
    train, test, _ = toy_data
    cfg = _cfg(recipe=recipe, dataset="cars", selection="last_epoch")
    r = train_classifier(_model, train, num_classes=3, config=cfg, test=test)
    assert r.config["recipe"]["lr"] == 0.02 and r.history[0]["lr"] == 0.02


def test_one_default_replacement_mode():
    assert DEFAULT_REPLACEMENT_MODE == "concat" and DEFAULT_REPLACEMENT_MODE in REPLACEMENT_MODES
    assert TrainConfig().replacement_mode == DEFAULT_REPLACEMENT_MODE


def test_package_exports_load_lazily():
    """``from augbench.training import X`` works for every public name; the selection rules load without torch."""
    import augbench.training as training

    assert set(training.__all__) == set(training._EXPORTS) | set(training._IMAGING_EXPORTS)
    assert all(getattr(training, name) is not None for name in training.__all__)
    code = "import sys, augbench.training.selection; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_val_split_selection_requires_a_validation_split(toy_data):
    train, test, _ = toy_data
    with pytest.raises(ValueError, match="validation split"):
        train_classifier(_model, train, num_classes=3, config=_cfg(selection="val_split"), test=test)
    with pytest.raises(ValueError, match="replacement mode"):
        train_classifier(_model, train, num_classes=3, config=_cfg(replacement_mode="swap"), test=test)


def test_ema_selection_reports_the_averaged_weights(toy_data):
    from augbench.training.evaluation import evaluate_model

    train, test, _ = toy_data
    last = train_classifier(_model, train, num_classes=3, config=_cfg(epochs=3), test=test)
    ema = train_classifier(_model, train, num_classes=3, config=_cfg(epochs=3, selection="ema", ema_decay=0.5),
                           test=test)
    # same seed, same steps: the raw weights agree, so any difference is the averaging
    assert [h["train_loss"] for h in ema.history] == [h["train_loss"] for h in last.history]
    assert ema.metrics["selection"] == "ema" and ema.metrics["selected_epoch"] == 3
    changed = [k for k, v in ema.model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, last.model.state_dict()[k])]
    assert changed, "the returned model must hold the averaged weights"
    from augbench.training.transforms import prepare_eval

    x = prepare_eval(test.images, _cfg().recipe, 16)
    again = evaluate_model(ema.model, x, test.labels, 3, ema.config["mean"], ema.config["std"], device="cpu")
    assert again["top1"] == pytest.approx(ema.metrics["top1"])


@pytest.mark.parametrize("rule", ["last_epoch", "ema"])
def test_final_epoch_rules_evaluate_once_and_report_what_the_full_schedule_reports(toy_data, rule):
    train, test, _ = toy_data
    once = train_classifier(_model, train, num_classes=3, config=_cfg(selection=rule), test=test)
    curves = train_classifier(_model, train, num_classes=3, config=_cfg(selection=rule, curves=True), test=test)
    assert [h["test_top1"] is not None for h in once.history] == [False, False, True]
    assert all(h["test_top1"] is not None for h in curves.history)
    assert once.metrics["top1"] == curves.metrics["top1"] and once.metrics["selected_epoch"] == 3
    assert "max_test_top1" not in once.metrics and "max_test_top1" in curves.metrics
    for v, w in zip(once.model.state_dict().values(), curves.model.state_dict().values(), strict=True):
        assert torch.equal(v, w)


def test_synthetic_only_trains_on_the_synthetic_set_alone(toy_data):
    """``synthetic_only`` (the classification accuracy score, a suite's syn_only): every training image is a
    synthetic one; an epoch is the synthetic set; the real images only name the classes."""
    train, test, _ = toy_data
    labels = torch.arange(9) % 3
    syn = SyntheticSet(torch.full((9, 3, 16, 16), 200, dtype=torch.uint8), one_hot(labels, 3))  # flat grey
    seen = []

    class Recorder(RecordingMixer):
        def __call__(self, images, targets, generator):
            seen.append(images.clone())
            return images, targets

    r = train_classifier(_model, train, num_classes=3, config=_cfg(replacement_mode="synthetic_only", epochs=2),
                         test=test, synthetic=syn, mixer=Recorder())
    assert r.config["epoch_length"] == 9 and all(h["replaced_fraction"] == 1.0 for h in r.history)
    # a flat grey image stays at most two values per channel (grey, crop padding) through augmentation; the
    # toy's real images have dozens
    assert len(seen) == r.timings["steps"] and all(
        len(torch.unique(image[c])) <= 2 for batch in seen for image in batch for c in range(3))
    with pytest.raises(ValueError, match="synthetic set alone"):
        train_classifier(_model, train, num_classes=3, config=_cfg(replacement_mode="synthetic_only"), test=test)

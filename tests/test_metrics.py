"""Synthetic-set metrics: Gram LPIPS == pairwise LPIPS, diversity, CLIP score, oracle fidelity."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from augbench.data.cards import load_card
from augbench.metrics.clip import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    CLIPScorer,
    _features_tensor,
    clip_normalize,
    clip_score,
)
from augbench.metrics.fidelity import oracle_fidelity
from augbench.metrics.perceptual import effnet_perceptual, lpips_alex, lpips_diversity, lpips_pairwise_naive
from augbench.run.profiles import WORLD_WEIGHTS, get_profile
from augbench.run.seeding import make_generator
from augbench.testing import save_tiny_clip
from augbench.training.backbones import WeightsNotFoundError

pytestmark = pytest.mark.usefixtures("one_thread")

def _images(n: int, size: int = 24, seed: int = 0) -> torch.Tensor:
    g = make_generator(seed)
    base = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = F.interpolate(base, size=size, mode="bilinear", align_corners=False) * 0.7
    x = x + 0.3 * torch.rand(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def alex():
    """lpips AlexNet with a random trunk (no download) and the package's calibrated linear layers."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return lpips_alex(pretrained_trunk=False, size=64)


def test_lpips_linear_layers_come_from_the_package(alex):
    shipped = torch.load(Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu")
    for k, w in enumerate(alex.weights):
        assert torch.equal(w, shipped[f"lin{k}.model.1.weight"].flatten())
    assert alex.name == "lpips_alex" and alex.info["calibrated"] and alex.info["trunk"] == "random"


def test_gram_lpips_equals_naive_pairwise(alex):
    x = _images(7)
    x[5] = x[2]  # an identical pair has distance 0
    gram = alex.pairwise(x)
    naive = lpips_pairwise_naive(alex.module, x, size=64)
    assert gram.shape == (7, 7)
    assert (gram - naive).abs().max() < 1e-5
    assert gram[2, 5].abs() < 1e-6 and torch.equal(gram, gram.T)
    assert naive[naive > 0].min() > 1e-3  # the comparison is not trivially between zeros
    paired = alex.paired(x[:3], x[3:6])
    assert torch.allclose(paired, torch.stack([naive[0, 3], naive[1, 4], naive[2, 5]]), atol=1e-5)


def test_lpips_diversity_all_pairs_and_sampled_pairs(alex):
    x = _images(9, seed=1)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2])
    soft = F.one_hot(labels, 3).float() * 0.8 + 0.1  # dominant class = labels
    naive = lpips_pairwise_naive(alex.module, x, size=64)
    res = lpips_diversity(x, soft, alex)
    expect = {}
    for c in range(3):
        idx = torch.nonzero(labels == c).flatten()
        iu = torch.triu_indices(len(idx), len(idx), 1)
        expect[c] = 100 * float(naive[idx][:, idx][iu[0], iu[1]].double().mean())
    assert res["metric"] == "lpips_alex" and res["n_pairs"] == 6 + 3 + 1 and res["pairs"] == "all"
    for c in range(3):
        assert math.isclose(res["per_class"][str(c)], expect[c], abs_tol=1e-3)
    assert math.isclose(res["value"], sum(expect.values()) / 3, abs_tol=1e-3)
    sampled = lpips_diversity(x, labels, alex, pairs=60, seed=3)
    assert sampled["n_pairs"] == 180 and abs(sampled["value"] - res["value"]) < 0.15 * res["value"]
    assert lpips_diversity(x[:4], labels[:4], alex, pairs=5, seed=3)["value"] == lpips_diversity(
        x[:4], labels[:4], alex, pairs=5, seed=3
    )["value"]
    anyp = lpips_diversity(x, labels, alex, pairs=50, scope="any")
    assert anyp["scope"] == "any" and anyp["n_pairs"] == 50 and anyp["value"] > 0
    json.dumps(res)
    with pytest.raises(ValueError, match="scope='any'"):
        lpips_diversity(x, labels, alex, scope="any")


def test_effnet_distance_is_labelled_uncalibrated():
    d = effnet_perceptual(size=32)
    x = _images(4, size=32, seed=2)
    x[3] = x[0]
    m = d.pairwise(x)
    assert d.name == "lpips_effnet_uncalibrated" and d.describe()["calibrated"] is False
    assert torch.allclose(m, m.T) and m[0, 3] < 1e-6 and (m[0, 1:3] > 0).all()
    assert m.max() <= 2.0  # layer mean of (1 - cos) with unit features
    res = lpips_diversity(x, [0, 0, 1, 1], d)
    assert res["metric"] == "lpips_effnet_uncalibrated" and res["config"]["calibrated"] is False


def test_alexnet_trunk_missing_gives_clear_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="alexnet-owt-7be5be79.pth"):
        lpips_alex(alexnet_weights=tmp_path / "alexnet-owt-7be5be79.pth")


# --- CLIP score ---------------------------------------------------------------------------------------


class CountingTokenizer:
    def __init__(self, tok):
        self.tok, self.texts = tok, []
        self.model_max_length = tok.model_max_length

    def __call__(self, texts, **kw):
        self.texts.extend(texts)
        return self.tok(texts, **kw)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def test_clip_score_range_clamp_and_text_cache(tiny_clip_dir):
    scorer = CLIPScorer.from_pretrained(tiny_clip_dir, local_files_only=True)
    scorer.tokenizer = CountingTokenizer(scorer.tokenizer)
    card = load_card("toybirds")
    x = _images(12, size=40, seed=4)
    labels = torch.arange(12) % 6
    res = clip_score(x, labels, card, scorer)
    assert res["prompts"]["0"] == card.prompt(0) and "bird" in res["prompts"]["0"]
    assert sorted(scorer.tokenizer.texts) == sorted(card.prompt(c) for c in range(6))  # one encode per class
    img = scorer.image_features(x)
    txt = scorer.text_features([card.prompt(int(c)) for c in labels])
    cos = (img * txt).sum(-1)
    s = scorer.scores(x, [card.prompt(int(c)) for c in labels])
    assert torch.allclose(s, 100 * cos.clamp(min=0), atol=1e-5)
    assert math.isclose(res["value"], float(s.mean()), rel_tol=1e-5)
    assert (s >= 0).all() and (s <= 100).all()
    # all cross combinations: a random tiny CLIP gives some negative cosines, which score exactly 0
    prompts = [card.prompt(c) for c in range(24)]
    allcos = img @ scorer.text_features(prompts).T
    assert (allcos < 0).any()
    i, j = torch.nonzero(allcos < 0)[0].tolist()
    assert scorer.scores(x[i : i + 1], [prompts[j]])[0] == 0.0
    assert len(scorer.tokenizer.texts) == 24  # only the 18 new prompts were tokenised


def test_metrics_from_a_profile(tiny_clip_dir):
    from augbench.run.profiles import get_profile

    profile = get_profile("embedded").with_overrides(clip=str(tiny_clip_dir))
    x = _images(4, size=32, seed=5)
    cs = clip_score(x, [0, 1, 0, 1], load_card("toybirds"), profile=profile)
    assert cs["metric"] == "clip_score" and cs["n"] == 4 and 0 <= cs["value"] <= 100
    mixed = [Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (32, 32), (10, 10, 200))]
    assert clip_score(mixed, [0, 1], load_card("toybirds"), profile=profile)["n"] == 2
    assert lpips_diversity(mixed, [0, 0], effnet_perceptual(size=32))["n_pairs"] == 1
    with pytest.raises(ValueError, match="CLIPScorer"):
        clip_score(x, [0, 1, 0, 1], load_card("toybirds"))
    with pytest.raises(ValueError, match="PerceptualDistance"):
        lpips_diversity(x, [0, 0, 1, 1])
    json.dumps(cs)


def test_clip_preprocessing_matches_clip_image_processor(tiny_clip_dir):
    from transformers import CLIPImageProcessor

    scorer = CLIPScorer.from_pretrained(tiny_clip_dir)
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    g = make_generator(0)
    x = F.avg_pool2d(torch.randint(0, 256, (3, 3, 56, 48), generator=g).float(), 9, 1).round().to(torch.uint8)
    ref = proc(images=[Image.fromarray(i.permute(1, 2, 0).numpy()) for i in x], return_tensors="pt")["pixel_values"]
    mine = scorer.preprocess(x)
    assert mine.shape == ref.shape == (3, 3, 32, 32)
    assert (mine - ref).abs().mean() < 0.02


def test_clip_normalize_is_the_processors_normalisation_and_what_the_scorer_feeds_at_input_size(tiny_clip_dir):
    from transformers import CLIPImageProcessor
    from transformers.image_utils import OPENAI_CLIP_MEAN as HF_MEAN
    from transformers.image_utils import OPENAI_CLIP_STD as HF_STD

    assert (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD) == (tuple(HF_MEAN), tuple(HF_STD))
    x = _images(3, size=32, seed=6)
    proc = CLIPImageProcessor(do_resize=False, do_center_crop=False)
    ref = proc(images=[i.permute(1, 2, 0).numpy() for i in x], return_tensors="pt")["pixel_values"]
    assert (clip_normalize(x) - ref).abs().max() < 1e-5
    scorer = CLIPScorer.from_pretrained(tiny_clip_dir)
    assert scorer.image_size == 32  # images already at the input size: neither resized nor cropped
    assert torch.equal(scorer.preprocess(x), clip_normalize(x, scorer.mean, scorer.std))


def test_synthetic_set_metrics_are_the_three_metrics_of_the_profile(tiny_clip_dir):
    from augbench.metrics import synthetic_set_metrics

    profile = get_profile("embedded").with_overrides(clip=str(tiny_clip_dir))
    card, x, labels = load_card("toybirds"), _images(4, size=32, seed=7), [0, 1, 0, 1]
    res = synthetic_set_metrics(x, labels, card, profile)
    assert res["lpips"] == lpips_diversity(x, labels, profile=profile)
    assert res["clip_score"] == clip_score(x, labels, card, profile=profile)
    assert res["lpips"]["metric"] == "lpips_effnet_uncalibrated" and res["lpips"]["n_pairs"] == 2
    if profile.oracle and (Path(profile.oracle) / "config.json").is_file():
        assert res["oracle_fidelity"]["metric"] == "oracle_fidelity" and res["oracle_fidelity"]["n"] == 4
    assert synthetic_set_metrics(x, labels, card, dataclasses.replace(profile, oracle=None))["oracle_fidelity"] is None


def test_metrics_json_holds_no_nan_and_says_why_a_value_is_missing(tiny_clip_dir):
    """One image per class: LPIPS diversity has no pair; it is null with a reason, never NaN (issue 23),
    and the report's table reads it as a blank cell."""
    from types import SimpleNamespace

    from augbench.metrics.common import finite_or_none
    from augbench.metrics.synthetic_set import NO_IMAGES_REASON, synthetic_set_metrics, with_reasons
    from augbench.protocols.base import TableLayout
    from augbench.reporting.synthetic_table import synthetic_metrics

    profile = dataclasses.replace(get_profile("embedded").with_overrides(clip=str(tiny_clip_dir)), oracle=None)
    card, x = load_card("toybirds"), _images(3, size=32, seed=7)
    res = synthetic_set_metrics(x, [0, 1, 2], card, profile)
    assert res["lpips"]["value"] is None and res["lpips"]["reason"] == "no class has two synthetic images"
    assert res["lpips"]["n_pairs"] == 0 and res["lpips"]["per_class"] == {}
    assert math.isfinite(res["clip_score"]["value"]) and "reason" not in res["clip_score"]
    json.dumps(res, allow_nan=False)  # raises on NaN or infinity
    frame = synthetic_metrics([SimpleNamespace(cell={"method": "m"}, synthetic={"metrics": res})], TableLayout())
    assert math.isnan(frame.loc[0, "lpips"]) and frame.loc[0, "lpips_name"] is None
    assert frame.loc[0, "clip_score"] == pytest.approx(res["clip_score"]["value"])
    # every non-finite number anywhere becomes null; an empty set says so
    assert finite_or_none({"a": [1.0, float("inf")], "b": (float("nan"), 2), "c": "x"}) == {
        "a": [1.0, None], "b": [None, 2], "c": "x"}
    empty = with_reasons({"clip_score": {"metric": "clip_score", "value": float("nan"), "n": 0},
                          "oracle_fidelity": None})
    assert empty == {"clip_score": {"metric": "clip_score", "value": None, "n": 0, "reason": NO_IMAGES_REASON},
                     "oracle_fidelity": None}


class _TensorFeatures(torch.nn.Module):
    """A CLIPModel whose ``get_*_features`` return tensors, as torchmetrics 1.x expects (transformers 5
    returns model outputs)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        return _features_tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs):
        return _features_tensor(self.model.get_text_features(*args, **kwargs))


@pytest.mark.skipif(not (WORLD_WEIGHTS / "clip" / "config.json").is_file(), reason="needs the committed world CLIP")
def test_clip_score_equals_torchmetrics_where_torchmetrics_is_faithful():
    """Per image, at the CLIP's input size, in float32, torchmetrics' clip_score and ours agree; its
    CLIPScore module clamps the mean instead of each image (why ours stays: augbench.metrics.clip docstring)."""
    pytest.importorskip("torchmetrics")
    from torchmetrics.functional.multimodal.clip_score import clip_score as torchmetrics_clip_score
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPProcessor

    from augbench.data import open_dataset

    profile = get_profile("embedded")
    source = open_dataset("toybirds")
    samples = source.samples("test")[:24]
    images = torch.stack([torch.from_numpy(np.asarray(source.load_image(s.image_id).convert("RGB"))).permute(2, 0, 1)
                          for s in samples])
    scorer = CLIPScorer.from_pretrained(profile.clip)
    assert images.shape[-1] == scorer.image_size and next(scorer.model.parameters()).dtype == torch.float32
    model, processor = _TensorFeatures(scorer.model), CLIPProcessor.from_pretrained(profile.clip)
    load = lambda: (model, processor)  # noqa: E731 - torchmetrics' hook for a model it cannot load by path

    prompts = [source.card.prompt(s.label) for s in samples]
    ours = scorer.scores(images, prompts)
    reference = torch.stack([torchmetrics_clip_score(images[i], prompts[i], load) for i in range(len(samples))])
    assert (ours - reference.detach()).abs().max() < 1e-4
    assert clip_score(images, [s.label for s in samples], source.card, scorer)["value"] == pytest.approx(
        float(ours.mean()), abs=1e-4)

    wrong = [source.card.prompt((s.label + 7) % source.num_classes) for s in samples]
    ours_wrong = scorer.scores(images, wrong)
    assert (ours_wrong == 0).any()  # some negative cosines, clamped per image (§7.3)
    module = CLIPScore(model_name_or_path=load)
    module.update(list(images), wrong)
    raw = 100 * (scorer.image_features(images) * scorer.text_features(wrong)).sum(-1)
    assert float(module.compute()) == pytest.approx(max(float(raw.mean()), 0.0), abs=1e-4)  # clamps the mean
    assert float(ours_wrong.mean()) == pytest.approx(float(raw.clamp(min=0).mean()), abs=1e-4)  # clamps each image
    assert float(ours_wrong.mean()) > float(module.compute()) + 0.1


# --- oracle fidelity ------------------------------------------------------------------------------------


class RedMeanClassifier(torch.nn.Module):
    """Predicts class 0/1/2 from the mean red value (a stand-in oracle)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        r = x[:, 0].mean((1, 2))  # normalised with mean 0, std 1 -> in [0, 1]
        centres = torch.tensor([0.1, 0.5, 0.9])
        return -((r[:, None] - centres) ** 2)


def test_oracle_fidelity():
    x = torch.zeros(6, 3, 20, 20, dtype=torch.uint8)
    for i, v in enumerate([20, 25, 128, 130, 230, 128]):
        x[i, 0] = v
    labels = torch.tensor([0, 0, 1, 1, 2, 2])  # the last image looks like class 1
    res = oracle_fidelity(RedMeanClassifier(), x, F.one_hot(labels, 3).float(), mean=(0, 0, 0), std=(1, 1, 1), input_size=16)
    assert res["n"] == 6 and math.isclose(res["value"], 500 / 6)
    assert res["per_class"] == {"0": 100.0, "1": 100.0, "2": 50.0}
    with pytest.raises(ValueError, match="mean, std and input_size"):
        oracle_fidelity(RedMeanClassifier(), x, labels)

"""Distribution metrics (augbench.metrics.distribution) and ``augbench metrics``: FD and KID are torchmetrics' on the
profile's CLIP features, PRDC equals the ``prdc`` package, Vendi follows its definition, small classes are
reported (null + reason in a run, one line naming the class on the command line)."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from augbench.metrics.distribution import (
    DISTRIBUTION_METRICS,
    CLIPImageFeatures,
    DistributionInputError,
    distribution_metrics,
    distribution_metrics_from_features,
    frechet_distance,
    kernel_inception_distance,
    prdc,
    require_images_per_class,
    vendi_score,
)
from augbench.run.profiles import WORLD_WEIGHTS, get_profile
from augbench.run.seeding import make_generator

pytestmark = pytest.mark.usefixtures("one_thread")

needs_world_clip = pytest.mark.skipif(not (WORLD_WEIGHTS / "clip" / "config.json").is_file(),
                                      reason="needs the committed world CLIP")


def _features(n: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=make_generator(seed), dtype=torch.float64)


def _images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 3, size, size, generator=make_generator(seed)) * 255).to(torch.uint8)


def _quiet_prdc(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict[str, float]:
    import prdc as prdc_package

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line per call
        return {k_: float(v) for k_, v in prdc_package.compute_prdc(real.numpy(), fake.numpy(), k).items()}


@pytest.mark.parametrize(("n_real", "n_fake", "k"), [(40, 30, 5), (7, 25, 3), (60, 60, 1)])
def test_prdc_equals_the_reference_package(n_real, n_fake, k):
    real, fake = _features(n_real, seed=1), 1.2 * _features(n_fake, seed=2) + 0.5
    ours = prdc(real, fake, k, chunk=8)  # small chunks: the chunked reductions equal the package's full matrices
    assert ours == pytest.approx(_quiet_prdc(real, fake, k), abs=1e-12)
    assert sum(v not in (0.0, 1.0) for v in ours.values()) >= 3  # overlapping sets: not a trivial 0 / 1 case


def test_identical_sets_and_a_set_shifted_far_away():
    ref = _features(30, seed=3)
    same = distribution_metrics_from_features(ref.clone(), [0] * 30, ref, [0] * 30, reference_name="test")
    assert same["fd"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert [same[m]["value"] for m in ("precision", "recall", "density", "coverage")] == [1.0, 1.0, 1.0, 1.0]
    shift = torch.zeros(16, dtype=torch.float64)
    shift[0] = 50.0
    far = distribution_metrics_from_features(ref + shift, [0] * 30, ref, [0] * 30, reference_name="test")
    assert [far[m]["value"] for m in ("precision", "recall", "density", "coverage")] == [0.0, 0.0, 0.0, 0.0]
    assert far["fd"]["value"] == pytest.approx(50.0**2, rel=1e-9)  # a translation: FD = |shift|^2 exactly
    assert far["kid"]["value"] > 100
    # the unbiased KID of a set against itself is -(2/m)(mean k(x,x) - mean_{i!=j} k(x_i, x_j)) <= 0, not 0
    kern = (ref @ ref.T / 16 + 1) ** 3
    off = (kern.sum() - kern.diag().sum()) / (30 * 29)
    assert same["kid"]["value"] == pytest.approx(float(-2 / 30 * (kern.diag().mean() - off)), rel=1e-9)


def test_kid_is_unbiased_where_fd_is_not():
    """Two independent samples of one distribution: KID ~ 0, FD clearly above 0 (its small-sample bias)."""
    a, b = _features(200, seed=4), _features(200, seed=5)
    shifted = kernel_inception_distance(a, b + 1.0, make_generator(0))["value"]
    assert abs(kernel_inception_distance(a, b, make_generator(0))["value"]) < 0.01 * shifted
    assert frechet_distance(a, b) > 0.3 and frechet_distance(a, b + 1.0) == pytest.approx(16 + frechet_distance(a, b),
                                                                                          rel=0.05)


def test_kid_subsets_come_from_the_generator():
    a, b = _features(50, seed=6), _features(20, seed=7) + 0.5
    one = kernel_inception_distance(a, b, make_generator(1), subsets=10)
    assert one == kernel_inception_distance(a, b, make_generator(1), subsets=10)
    assert one["subset_size"] == 20 and one["subsets"] == 10 and one["std"] > 0
    assert one != kernel_inception_distance(a, b, make_generator(2), subsets=10)


def test_fd_projection_keeps_torchmetrics_value():
    """Fewer images than dimensions: FD in the joint span equals torchmetrics' FD in all 64 dimensions."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    from augbench.metrics.distribution import PrecomputedFeatures

    real, fake = _features(6, d=64, seed=8), 1.3 * _features(9, d=64, seed=9) + 0.2
    full = FrechetInceptionDistance(feature=PrecomputedFeatures(64))
    full.update(real, real=True)
    full.update(fake, real=False)
    assert frechet_distance(real, fake) == pytest.approx(float(full.compute()), rel=1e-6)


def test_vendi_follows_its_definition():
    assert vendi_score(torch.ones(7, 5)) == pytest.approx(1.0, abs=1e-9)  # n copies of one image
    assert vendi_score(torch.eye(6) * 3.0) == pytest.approx(6.0, abs=1e-9)  # n orthogonal features
    assert vendi_score(torch.eye(3).repeat(4, 1)) == pytest.approx(3.0, abs=1e-9)  # n > d: the dual form
    x = _features(12, d=8, seed=10)  # n > d against exp(entropy of eig(K/n)), K the cosine kernel, scipy's eigvalsh
    unit = (x / x.norm(dim=1, keepdim=True)).numpy()
    eig = scipy.linalg.eigvalsh(unit @ unit.T / 12)
    eig = eig[eig > 0]
    assert vendi_score(x) == pytest.approx(float(np.exp(-(eig * np.log(eig)).sum())), rel=1e-9)


def test_small_classes_get_a_smaller_k_and_null_with_a_reason():
    syn = torch.cat([_features(10, seed=11), _features(1, seed=12), _features(8, seed=13)])
    ys = [0] * 10 + [1] + [2] * 8
    ref = torch.cat([_features(3, seed=14), _features(5, seed=15), _features(6, seed=16), _features(4, seed=17)])
    yr = [0] * 3 + [1] * 5 + [2] * 6 + [3] * 4
    res = distribution_metrics_from_features(syn, ys, ref, yr, reference_name="train")
    json.dumps(res, allow_nan=False)
    assert set(DISTRIBUTION_METRICS) <= set(res) and res["reference"] == "train"
    assert res["classes"] == ["0", "1", "2"] and res["missing_classes"] == ["3"]  # class 3 has no synthetic image
    assert res["n"] == {"synthetic": 19, "reference": 14}  # the reference of the set's classes
    assert res["precision"]["per_class_k"] == {"0": 2, "1": None, "2": 5} and res["precision"]["k"] == 5
    assert res["kid"]["per_class_subset_size"] == {"0": 3, "1": None, "2": 6}
    for name in ("fd", "kid", "precision", "density"):
        assert res[name]["per_class"]["1"] is None and res[name]["value"] is not None
        assert res[name]["per_class_reason"]["1"].startswith("1 synthetic and 5 train images")
        assert res[name]["n_classes"] == 2 and res[name]["per_class_n"]["0"] == {"synthetic": 10, "reference": 3}
    assert res["vendi"]["per_class"]["1"] is None and "Vendi needs at least 2" in res["vendi"]["per_class_reason"]["1"]
    assert res["fd"]["class_mean"] == pytest.approx((res["fd"]["per_class"]["0"] + res["fd"]["per_class"]["2"]) / 2)
    empty = distribution_metrics_from_features(torch.zeros(0, 16), [], ref, yr, reference_name="test")
    assert empty["fd"]["value"] is None and empty["fd"]["reason"] == "the synthetic set is empty"


def test_one_line_error_names_the_class():
    names = ("Common Gull", "Common Tern")
    with pytest.raises(DistributionInputError, match=r"^class 'Common Tern' \(label 1\): the set has 1 image;"):
        require_images_per_class([0, 0, 1], [0, 0, 1, 1], names, reference_name="test", synthetic_name="the set")
    with pytest.raises(DistributionInputError, match="the train reference has 1 image;"):
        require_images_per_class([0, 0], [0, 1], names, reference_name="train")
    require_images_per_class([0, 0], [0, 0, 1], names, reference_name="test")  # class 1 is not in the set


@needs_world_clip
@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save all extracted features")
def test_fd_and_kid_are_torchmetrics_metrics_with_the_clip_feature_module():
    """torchmetrics' metric classes fed uint8 images through CLIPImageFeatures give our numbers (equal set sizes:
    KID's subsets are whole sets, so its global-RNG draws do not matter)."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    from augbench.metrics.clip import profile_clip_scorer

    profile = get_profile("embedded")
    real, fake = _images(10, seed=20), _images(10, size=48, seed=21)
    module = CLIPImageFeatures(profile_clip_scorer(profile))
    fid = FrechetInceptionDistance(feature=module)
    kid = KernelInceptionDistance(feature=module, subsets=3, subset_size=10)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    with torch.random.fork_rng():
        kid_value = float(kid.compute()[0])
    res = distribution_metrics(fake, [0] * 10, real, [0] * 10, profile, reference_name="test")
    assert res["fd"]["value"] == pytest.approx(float(fid.compute()), rel=1e-5)
    assert res["kid"]["value"] == pytest.approx(kid_value, rel=1e-5) and res["kid"]["subsets"] == 1
    assert res["config"]["feature_dim"] == module.num_features and res["config"]["clip"] == profile.clip


@needs_world_clip
def test_synthetic_set_metrics_gain_distribution_per_reference():
    from augbench.data.cards import load_card
    from augbench.metrics.synthetic_set import synthetic_set_metrics

    profile = get_profile("embedded")
    card, syn, train, test = load_card("toybirds"), _images(8, seed=22), _images(4, seed=23), _images(6, seed=24)
    labels = [0, 1] * 4
    plain = synthetic_set_metrics(syn, labels, card, profile)
    res = synthetic_set_metrics(syn, labels, card, profile,
                                references={"train": (train, [0, 1] * 2), "test": (test, [0, 1] * 3)})
    assert "distribution" not in plain and {k: v for k, v in res.items() if k != "distribution"} == plain
    assert set(res["distribution"]) == {"train", "test"}
    assert res["distribution"]["train"] == distribution_metrics(syn, labels, train, [0, 1] * 2, profile,
                                                                reference_name="train")
    assert res["distribution"]["test"]["kid"]["n"] == {"synthetic": 8, "reference": 6}
    json.dumps(res, allow_nan=False)


def _image_folder(root, classes: dict[str, int], seed: int = 0):
    from PIL import Image

    for i, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for j, img in enumerate(_images(n, size=40, seed=seed + i)):
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / name / f"{j}.png")
    return root


@needs_world_clip
def test_cli_scores_an_image_folder_and_names_a_class_with_one_image(mini, tmp_path, capsys):
    from augbench.cli.main import main

    _, cards, _ = mini
    folder = _image_folder(tmp_path / "set", {"Orange-crowned Gull": 3, "barred_winged_gull": 4})
    base = ["metrics", "--synthetic", str(folder), "--dataset", "minibirds", "--datasets-dir", str(cards),
            "--device", "cpu", "--shots", "3"]
    assert main([*base, "--json", "--test-per-class", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["results"]) == {"train", "test"} and out["class_names"] == {"0": "Orange-crowned Gull",
                                                                            "1": "Barred-winged Gull"}
    test = out["results"]["test"]
    assert test["n"] == {"synthetic": 7, "reference": 8} and test["precision"]["per_class_k"] == {"0": 2, "1": 3}
    assert out["results"]["train"]["n"] == {"synthetic": 7, "reference": 6}
    assert main([*base, "--split", "test"]) == 0
    table = capsys.readouterr().out
    assert "reference: test (16 real images of 2 classes; 7 synthetic images)" in table
    assert "Barred-winged Gull" in table and table.count("\nkid ") == 1
    _image_folder(tmp_path / "one", {"Orange-crowned Gull": 1, "Barred-winged Gull": 2})
    assert main([*base[:2], str(tmp_path / "one"), *base[3:], "--split", "test"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "class 'Orange-crowned Gull' (label 0)" in err and "has 1 image;" in err


@needs_world_clip
def test_cli_reads_a_set_written_by_augbench_generate(mini, tmp_path, capsys):
    from augbench.cli.main import main

    _, cards, _ = mini
    out_dir = tmp_path / "renders"
    base = ["--dataset", "minibirds", "--datasets-dir", str(cards), "--shots", "3", "--seed", "1"]
    assert main(["generate", "--method", "world_renders", *base, "--out", str(out_dir)]) == 0
    capsys.readouterr()
    assert main(["metrics", "--synthetic", str(out_dir), *base, "--split", "train", "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]["train"]
    assert res["n"] == {"synthetic": 12, "reference": 12} and res["classes"] == ["0", "1", "2", "3"]
    assert math.isfinite(res["fd"]["value"]) and 0 <= res["coverage"]["value"] <= 1
    # another training subset than the one the set was generated from: refused, with the fix
    assert main(["metrics", "--synthetic", str(out_dir), *base[:-1], "2", "--split", "train", "--device", "cpu"]) == 2
    assert "generated from another training subset" in capsys.readouterr().err

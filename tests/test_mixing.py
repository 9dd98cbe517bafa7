"""CutMix / MixUp exact semantics (METHODS_SPEC §2) and the batch contract (methods/mixing.py)."""

from __future__ import annotations

import math

import pytest
import torch

from augbench.methods.mixing import (
    CutMix,
    CutMixParams,
    MixUp,
    MixUpParams,
    cutmix_box,
    sample_beta,
    sample_partners,
)
from augbench.methods.original import Original
from augbench.run.seeding import make_generator

# The contract mixin runs over every registered id in tests/test_registered_methods.py.


def _onehot(labels, c):
    return torch.nn.functional.one_hot(torch.as_tensor(labels), c).float()


# --- CutMix box and λ ----------------------------------------------------------------------------


def test_cutmix_box_matches_rand_bbox():
    # lam = 0.75 on 10x10: side int(10*0.5) = 5, half side 5 // 2 = 2 -> [c-2, c+2)
    assert cutmix_box(0.75, (10, 10), (5, 5)) == (3, 7, 3, 7)
    # clipped at the corner: [0, 2) x [0, 2)
    assert cutmix_box(0.75, (10, 10), (0, 0)) == (0, 2, 0, 2)
    # non-square: H = 8, W = 16, lam = 0: sides 16 and 8, centred box covers everything
    assert cutmix_box(0.0, (8, 16), (4, 8)) == (0, 8, 0, 16)
    # lam close to 1: empty box
    y0, y1, x0, x1 = cutmix_box(0.999, (10, 10), (5, 5))
    assert (y1 - y0) * (x1 - x0) == 0


def test_cutmix_pinned_params_exact():
    c = 4
    images = torch.arange(4 * 3 * 6 * 6, dtype=torch.float32).reshape(4, 3, 6, 6)
    targets = _onehot([0, 1, 2, 3], c)
    params = CutMixParams(
        apply=torch.tensor([True, False, True, True]),
        partner=torch.tensor([2, 0, 0, 3]),
        lam_sampled=torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64),
        boxes=torch.tensor([[1, 4, 2, 5], [0, 0, 0, 0], [0, 6, 0, 3], [0, 2, 0, 2]]),
        lam=torch.tensor([1 - 9 / 36, 1.0, 1 - 18 / 36, 1 - 4 / 36], dtype=torch.float64),
    )
    out, y = CutMix().apply(images, targets, params)
    expected = images.clone()
    expected[0, :, 1:4, 2:5] = images[2, :, 1:4, 2:5]
    expected[2, :, :, 0:3] = images[0, :, :, 0:3]  # partner taken from the un-mixed batch
    assert torch.equal(out, expected)  # sample 3 mixed with itself: unchanged pixels
    torch.testing.assert_close(y[0], torch.tensor([0.75, 0, 0.25, 0]))
    torch.testing.assert_close(y[1], torch.tensor([0.0, 1, 0, 0]))
    torch.testing.assert_close(y[2], torch.tensor([0.5, 0, 0.5, 0]))
    torch.testing.assert_close(y[3], torch.tensor([0.0, 0, 0, 1]))


def test_cutmix_lambda_is_area_corrected():
    mix = CutMix(prob=1.0)
    h, w = 13, 9
    params = mix.make_params(256, (h, w), make_generator(0))
    y0, y1, x0, x1 = params.boxes.unbind(1)
    area = (y1 - y0) * (x1 - x0)
    torch.testing.assert_close(params.lam, 1 - area.double() / (h * w))
    # clipping makes the realised box smaller than the sampled one for off-centre boxes
    assert (params.lam >= params.lam_sampled - 1e-12).all()
    assert (params.lam > params.lam_sampled + 0.05).any()


def test_cutmix_make_params_reference_draws():
    """Draw order: decisions, partners, λ, centre rows, centre columns; boxes by rand_bbox."""
    b, h, w = 16, 12, 10
    params = CutMix(prob=0.5).make_params(b, (h, w), make_generator(42))
    g = make_generator(42)
    apply = torch.rand(b, generator=g, dtype=torch.float64) < 0.5
    j = torch.randint(0, b - 1, (b,), generator=g)
    partner = j + (j >= torch.arange(b)).long()
    lam = sample_beta(1.0, 1.0, b, g)
    cy = torch.randint(0, h, (b,), generator=g)
    cx = torch.randint(0, w, (b,), generator=g)
    assert torch.equal(params.apply, apply) and torch.equal(params.partner, partner)
    assert torch.equal(params.lam_sampled, lam)
    for i in range(b):
        box = cutmix_box(float(lam[i]), (h, w), (int(cy[i]), int(cx[i]))) if apply[i] else (0, 0, 0, 0)
        assert tuple(params.boxes[i].tolist()) == box
        y0, y1, x0, x1 = box
        assert math.isclose(float(params.lam[i]), 1 - (y1 - y0) * (x1 - x0) / (h * w))


def test_cutmix_labels_follow_the_pixels():
    c, b = 8, 8
    images = torch.stack([torch.full((3, 10, 10), float(i)) for i in range(b)])
    out, y = CutMix(prob=1.0)(images, _onehot(range(b), c), make_generator(3))
    for i in range(b):
        # the share of pixels coming from each source image equals its label weight
        values, counts = out[i, 0].unique(return_counts=True)
        share = torch.zeros(c)
        share[values.long()] = counts.float() / 100
        torch.testing.assert_close(y[i], share)
        assert (y[i] > 0).sum() <= 2


def test_cutmix_per_sample_vs_per_batch_decisions():
    per_sample = CutMix(prob=0.5).make_params(64, (8, 8), make_generator(1))
    assert 0 < per_sample.apply.sum() < 64
    assert per_sample.lam_sampled.unique().numel() > 1
    assert (per_sample.boxes[~per_sample.apply] == 0).all() and (per_sample.lam[~per_sample.apply] == 1).all()
    for seed in range(6):
        pb = CutMix(prob=0.5, decision="per_batch", partner="permutation").make_params(16, (8, 8), make_generator(seed))
        assert pb.apply.all() or not pb.apply.any()
        assert pb.lam_sampled.unique().numel() == 1
        if pb.apply.any():
            assert (pb.boxes == pb.boxes[0]).all()
        assert sorted(pb.partner.tolist()) == list(range(16))


def test_cutmix_probability_rate():
    params = CutMix(prob=0.3).make_params(20000, (4, 4), make_generator(0))
    assert abs(params.apply.double().mean().item() - 0.3) < 0.02
    assert CutMix(prob=0.0).make_params(64, (4, 4), make_generator(0)).apply.sum() == 0


def test_soft_labels_mix_linearly():
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]])
    params = CutMixParams(
        apply=torch.tensor([True, False]),
        partner=torch.tensor([1, 0]),
        lam_sampled=torch.tensor([0.75, 0.75], dtype=torch.float64),
        boxes=torch.tensor([[0, 2, 0, 2], [0, 0, 0, 0]]),
        lam=torch.tensor([0.75, 1.0], dtype=torch.float64),
    )
    _, y = CutMix().apply(torch.zeros(2, 3, 4, 4), soft, params)
    torch.testing.assert_close(y[0], 0.75 * soft[0] + 0.25 * soft[1])
    torch.testing.assert_close(y[1], soft[1])


# --- partners and Beta ---------------------------------------------------------------------------


def test_uniform_partner_never_self_and_covers_others():
    partners = torch.stack([sample_partners(5, "uniform", make_generator(s)) for s in range(400)])
    assert (partners != torch.arange(5)).all()
    for i in range(5):
        assert set(partners[:, i].tolist()) == set(range(5)) - {i}
    assert sample_partners(1, "uniform", make_generator(0)).tolist() == [0]
    assert sample_partners(4, "roll", make_generator(0)).tolist() == [3, 0, 1, 2]
    with pytest.raises(ValueError, match="partner mode"):
        sample_partners(4, "nearest", make_generator(0))


def test_beta_sampler_uses_generator_and_has_right_moments():
    a = sample_beta(0.2, 0.2, 20000, make_generator(0))
    b = sample_beta(0.2, 0.2, 20000, make_generator(0))
    assert torch.equal(a, b)
    assert ((a >= 0) & (a <= 1)).all()
    # Beta(0.2, 0.2): mean 1/2, variance 1/(4 * 1.4) ≈ 0.179 (U-shaped)
    assert abs(a.mean().item() - 0.5) < 0.02 and abs(a.var().item() - 1 / 5.6) < 0.01
    u = sample_beta(1.0, 1.0, 20000, make_generator(1))  # Beta(1, 1) is uniform: variance 1/12
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005


# --- MixUp ---------------------------------------------------------------------------------------


def test_mixup_pinned_params_exact():
    x = torch.rand(3, 3, 4, 4, generator=make_generator(0))
    y = _onehot([0, 1, 2], 3)
    params = MixUpParams(
        apply=torch.tensor([True, True, False]),
        partner=torch.tensor([1, 2, 0]),
        lam=torch.tensor([0.3, 0.9, 1.0], dtype=torch.float64),
    )
    out, yy = MixUp().apply(x, y, params)
    torch.testing.assert_close(out[0], 0.3 * x[0] + 0.7 * x[1])
    torch.testing.assert_close(out[1], 0.9 * x[1] + 0.1 * x[2])
    assert torch.equal(out[2], x[2])
    torch.testing.assert_close(yy, torch.tensor([[0.3, 0.7, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]]))


def test_mixup_per_batch_permutation_dm_semantics():
    mix = MixUp(preset="dm_code")
    x = torch.rand(8, 3, 4, 4, generator=make_generator(0))
    y = _onehot(range(8), 8)
    applied = 0
    for seed in range(12):
        p = mix.make_params(8, (4, 4), make_generator(seed))
        assert p.apply.all() or not p.apply.any()
        assert sorted(p.partner.tolist()) == list(range(8))
        if p.apply.any():
            applied += 1
            assert p.lam.unique().numel() == 1
            out, yy = mix.apply(x, y, p)
            lam = float(p.lam[0])
            torch.testing.assert_close(out, lam * x + (1 - lam) * x[p.partner])
            torch.testing.assert_close(yy, lam * y + (1 - lam) * y[p.partner])
        else:
            assert (p.lam == 1).all()
    assert 0 < applied < 12


def test_mixup_per_sample_p1():
    p = MixUp(preset="noisecutmix_paper").make_params(64, (4, 4), make_generator(0))
    assert 0 < p.apply.sum() < 64
    assert p.lam[p.apply].unique().numel() == int(p.apply.sum())
    assert (p.lam[~p.apply] == 1).all()
    assert (p.partner != torch.arange(64)).all()


def test_mixup_rejects_integer_images_and_checks_labels():
    with pytest.raises(TypeError, match="floating-point"):
        MixUp(prob=1.0)(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), _onehot([0, 1], 2), make_generator(0))
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match="num_classes"):
        MixUp()(x, torch.tensor([0, 1]), make_generator(0))
    _, y = MixUp(num_classes=3, prob=1.0)(x, torch.tensor([0, 2]), make_generator(0))
    assert y.shape == (2, 3)
    with pytest.raises(ValueError, match="batch size mismatch"):
        MixUp()(x, _onehot([0, 1, 2], 3), make_generator(0))


def test_cutmix_works_on_uint8_images():
    x = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8, generator=make_generator(0))
    out, y = CutMix(prob=1.0)(x, _onehot(range(4), 4), make_generator(1))
    assert out.dtype == torch.uint8 and y.dtype == torch.float32


def test_invalid_configs():
    with pytest.raises(ValueError, match="prob"):
        CutMix(prob=1.5)
    with pytest.raises(ValueError, match="expected one of"):
        MixUp(decision="per_epoch")


def test_original_is_identity():
    x = torch.rand(3, 3, 4, 4)
    out, y = Original(num_classes=4)(x, torch.tensor([0, 3, 1]), make_generator(0))
    assert out is x
    torch.testing.assert_close(y, _onehot([0, 3, 1], 4))

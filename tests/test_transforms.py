"""Classifier input transforms: padded crop + flip, random resized crop, colour jitter, image preparation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from augbench.run.seeding import make_generator
from augbench.training import prepare_images, random_crop_flip, random_resized_crop_flip


def test_random_crop_flip_is_a_padded_crop():
    g = make_generator(0)
    x = torch.randint(0, 256, (64, 3, 10, 10), dtype=torch.uint8, generator=g)
    out = random_crop_flip(x, 8, 2, True, make_generator(1))
    assert out.shape == (64, 3, 8, 8) and out.dtype == torch.float32
    padded = F.pad(x, (2, 2, 2, 2)).float() / 255
    flips = 0
    for i in range(64):
        crops = [padded[i, :, a : a + 8, b : b + 8] for a in range(7) for b in range(7)]
        if any(torch.equal(out[i], c) for c in crops):
            continue
        assert any(torch.equal(out[i], c.flip(-1)) for c in crops)
        flips += 1
    assert 16 <= flips <= 48
    same = random_crop_flip(x, 10, 0, False, make_generator(1))
    assert torch.equal(same, x.float() / 255)


def _windows(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every ``size x size`` window of a ``[3, H, W]`` image."""
    h, w = x.shape[-2:]
    return [x[:, a : a + size, b : b + size] for a in range(h - size + 1) for b in range(w - size + 1)]


def test_random_resized_crop_is_a_crop_of_the_drawn_size():
    # a fixed area scale of 1/4 and ratio 1 make every box 8 x 8 of the 16 x 16 image; resampled to
    # 8 x 8 at the box's pixel centres, the output is exactly that window (or its mirror image)
    x = torch.randint(0, 256, (48, 3, 16, 16), dtype=torch.uint8, generator=make_generator(0))
    out = random_resized_crop_flip(x, 8, True, make_generator(1), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    assert out.shape == (48, 3, 8, 8) and out.dtype == torch.float32
    flips, corners = 0, set()
    for i in range(48):
        windows = _windows(x[i].float() / 255, 8)
        match = [k for k, win in enumerate(windows) if torch.allclose(out[i], win, atol=1e-6)]
        if not match:
            match = [k for k, win in enumerate(windows) if torch.allclose(out[i], win.flip(-1), atol=1e-6)]
            flips += 1
        assert len(match) == 1, i
        corners.add(match[0])
    assert 12 <= flips <= 36 and len(corners) > 20  # flips about half the time; boxes spread over the image
    again = random_resized_crop_flip(x, 8, True, make_generator(1), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    assert torch.equal(out, again)


def test_random_resized_crop_full_box_and_colour_jitter():
    x = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8, generator=make_generator(2))
    whole = random_resized_crop_flip(x, 12, False, make_generator(3), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(whole, x.float() / 255, atol=1e-6)
    # jitter draws from the same stream after the boxes and flips, so the crops do not depend on it;
    # on a uniform grey image contrast and saturation change nothing and brightness scales the value
    grey = torch.full((64, 3, 12, 12), 100, dtype=torch.uint8)
    jittered = random_resized_crop_flip(grey, 6, True, make_generator(4), color_jitter=0.4)
    factor = jittered.amax(dim=(1, 2, 3)) / (100 / 255)
    assert torch.allclose(jittered, jittered[:, :1, :1, :1].expand_as(jittered), atol=1e-6)
    assert factor.min() >= 0.6 - 1e-6 and factor.max() <= 1.4 + 1e-6 and factor.std() > 0.1
    plain = random_resized_crop_flip(grey, 6, True, make_generator(4))
    assert torch.allclose(plain, torch.full_like(plain, 100 / 255), atol=1e-6)


def test_prepare_images_from_pil_of_different_sizes():
    ims = [Image.new("RGB", (30, 20), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))]
    x = prepare_images(ims, 12)
    assert x.shape == (2, 3, 12, 12) and x.dtype == torch.uint8
    assert x[0, 0].min() == 255 and x[1, 2].min() == 255


def _striped(height: int = 20, block: int = 8, values=(10, 60, 110, 160, 210)) -> torch.Tensor:
    """A uint8 ``[3, H, W]`` image of vertical stripes ``block`` pixels wide, one grey value each."""
    cols = torch.tensor(values, dtype=torch.uint8).repeat_interleave(block)
    return cols.expand(3, height, -1).contiguous()


def test_shorter_side_keeps_the_aspect_ratio_then_takes_the_centre_square():
    img = _striped()  # 20 x 40, stripes 8 px wide
    # Resize(10): 10 x 20 (both sides halved, stripes 4 px wide), then the centre 10 x 10 square
    # (columns 5..14 of 20): stripe 1 interior, stripe 2, stripe 3 interior
    for out in (prepare_images([img], 10, mode="shorter_side")[0],
                prepare_images(img[None], 10, mode="shorter_side")[0],
                prepare_images([Image.fromarray(img.permute(1, 2, 0).numpy())], 10, mode="shorter_side")[0]):
        assert out.shape == (3, 10, 10)
        assert (out == out[:, :1]).all()  # rows identical: no vertical distortion
        assert (out[:, :, 0:2] == 60).all() and (out[:, :, 4:6] == 110).all() and (out[:, :, 8:10] == 160).all()
    # stretch squeezes the width by 4 and the height by 2: all five stripes are visible
    stretched = prepare_images([img], 10)[0]
    assert stretched[0, 0, 0] == 10 and stretched[0, 0, -1] == 210
    tall = prepare_images([img.transpose(1, 2)], 10, mode="shorter_side")[0]  # 40 x 20: the same, transposed
    assert torch.equal(tall, prepare_images([img], 10, mode="shorter_side")[0].transpose(1, 2))

"""Edit pairs for the embedded world's instruction editor: the same bird, another background, season, light or
style, with the instruction as text (InstructPix2Pix's training triplets, Brooks et al. 2023 §3.1, made here by the
renderer instead of GPT-3 + Prompt-to-Prompt).

The editor exists for DiffuseMix, whose README prompts are global "filters" (``Autumn, snowy, watercolor art,
sunset, rainbow, aurora, mosaic, ukiyo-e, a sketch with crayon``), so every one of them is an edit kind here, with
the README prompt as one of its instructions (the one DiffuseMix sends) and a "make it ..." phrasing as another;
two kinds come from the renderer itself: ``background`` (the scene drawn again in another context of the same pose,
"make it swimming on a lake") and ``night``.

Season and light edits change the background only and keep the bird's pixels (label-preserving, as DiffuseMix
wants its edits); the style edits (watercolor, mosaic, ukiyo-e, crayon) restyle the whole image and keep its
shapes. What is bird and what is ground comes from the renderer: :func:`scene_layers` draws the scene's background
alone and with the bird (``augbench.world.render``'s drawing steps, in render order) and reads the bird's mask off the
difference, and takes the horizon from the background's first random draw. Every random choice comes from the
generator passed in; :data:`EDIT_VERSION` names the transforms (part of the editor's identity).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from augbench.world.render import CONTEXTS, Scene, render_scene

__all__ = ["EDITS", "EDIT_KINDS", "EDIT_VERSION", "Layers", "apply_edit", "edit_pair", "scene_layers"]

#: revision of the transforms below: a change of any edit's pixels bumps it
EDIT_VERSION = 1

#: edit kind -> its instructions; the first is DiffuseMix's README prompt where the kind is one of them
EDITS: dict[str, tuple[str, ...]] = {
    "autumn": ("Autumn", "make it autumn"),
    "snowy": ("snowy", "make it snowy"),
    "watercolor": ("watercolor art", "turn it into a watercolor painting"),
    "sunset": ("sunset", "make it sunset"),
    "rainbow": ("rainbow", "add a rainbow"),
    "aurora": ("aurora", "add an aurora to the night sky"),
    "mosaic": ("mosaic", "turn it into a mosaic"),
    "ukiyo_e": ("ukiyo-e", "make it a ukiyo-e print"),
    "crayon": ("a sketch with crayon", "turn it into a crayon sketch"),
    "night": ("make it night", "at night"),
    "background": (),  # "make it <context>": the instruction names the new context
}
EDIT_KINDS = tuple(EDITS)


@dataclass(frozen=True)
class Layers:
    """A rendered scene and what the edits need to know of it (all ``[H, W]`` maps in [0, 1])."""

    image: np.ndarray  # uint8 [H, W, 3], exactly render_scene(scene, size)
    bird: np.ndarray  # the bird's coverage (anti-aliased)
    ground: np.ndarray  # 1 below the horizon, 0 in the sky


def scene_layers(scene: Scene, size: int) -> Layers:
    """``render_scene(scene, size)`` with the bird's mask and the ground / sky split.

    The scene is drawn again at the renderer's 2x canvas in its order (background, then bird, from a generator
    seeded with ``scene.bg_seed``); pixels the bird changed are its mask, downsampled as the renderer downsamples.
    The horizon is the background's first draw (``int(S * U(0.35, 0.5))``).
    """
    from augbench.world.render import _draw_background, _draw_bird  # the renderer's own steps, no second copy

    s = 2 * size
    rng = np.random.default_rng(scene.bg_seed)
    horizon = int(s * np.random.default_rng(scene.bg_seed).uniform(0.35, 0.5))
    background = Image.new("RGB", (s, s))
    _draw_background(ImageDraw.Draw(background), scene, s, rng)
    full = background.copy()
    _draw_bird(full, scene, s, rng)
    changed = np.abs(np.asarray(full, np.int16) - np.asarray(background, np.int16)).max(-1) > 6
    bird = np.asarray(Image.fromarray(changed.astype(np.uint8) * 255).resize((size, size), Image.Resampling.LANCZOS),
                      np.float64) / 255.0
    rows = (np.arange(size) + 0.5) * 2
    ground = np.clip((rows - horizon) / 2 + 0.5, 0.0, 1.0)[:, None].repeat(size, 1)
    return Layers(render_scene(scene, size), np.clip(bird, 0.0, 1.0), ground)


# --- the transforms: (image float [H, W, 3], layers, generator) -> float image ------------------------------------

def _luma(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114])


def _blur(x: np.ndarray, size: int) -> np.ndarray:
    return ndimage.uniform_filter(x, size=(size, size, 1) if x.ndim == 3 else size, mode="nearest")


def _edges(x: np.ndarray) -> np.ndarray:
    y = _luma(x)
    return np.hypot(ndimage.sobel(y, 0), ndimage.sobel(y, 1)) / 4.0


def _keep_bird(x: np.ndarray, edited_background: np.ndarray, layers: Layers) -> np.ndarray:
    b = layers.bird[..., None]
    return b * x + (1 - b) * edited_background


def _autumn(x, layers, rng):
    greenness = np.clip((x[..., 1] - np.maximum(x[..., 0], x[..., 2])) / 30.0, 0, 1)[..., None]
    t = rng.uniform(0.0, 1.0)
    tone = (1 - t) * np.array([228.0, 128, 36]) + t * np.array([176.0, 62, 28])
    leaves = tone * np.clip(_luma(x)[..., None] / 120.0, 0.5, 1.4)
    return _keep_bird(x, x * (1 - greenness) + leaves * greenness, layers)


def _snowy(x, layers, rng):
    g = layers.ground[..., None]
    snow = np.array([238.0, 241, 247]) * rng.uniform(0.93, 1.0, size=x.shape[:2] + (1,))
    sky = 0.6 * x + 0.4 * np.array([205.0, 210, 220])
    out = g * (0.22 * x + 0.78 * snow) + (1 - g) * sky
    flakes = rng.random(x.shape[:2]) < rng.uniform(0.015, 0.04)
    out[flakes] = 250.0
    return _keep_bird(x, out, layers)


def _sunset(x, layers, rng):
    rows = np.linspace(0.0, 1.0, x.shape[0])[:, None, None]
    top, low = np.array([232.0, 104, 62]), np.array([255.0, 196, 112]) * rng.uniform(0.9, 1.0)
    sky = 0.25 * x + 0.75 * (top + (low - top) * np.clip(rows * 2.2, 0, 1))
    g = layers.ground[..., None]
    background = (1 - g) * sky + g * x * np.array([0.95, 0.7, 0.48])
    bird = x * np.array([1.0, 0.86, 0.72])
    b = layers.bird[..., None]
    return b * bird + (1 - b) * background


def _night_background(x: np.ndarray, darkness: float) -> np.ndarray:
    return x * darkness + np.array([5.0, 10, 34])


def _night(x, layers, rng):
    b = layers.bird[..., None]
    return b * x * 0.62 + (1 - b) * _night_background(x, rng.uniform(0.22, 0.32))


def _rainbow(x, layers, rng):
    h, w = x.shape[:2]
    horizon = float(np.argmax(layers.ground[:, 0] > 0.5)) if layers.ground[:, 0].max() > 0.5 else h / 2
    cy, cx = horizon + rng.uniform(0.0, 0.25) * h, rng.uniform(0.3, 0.7) * w
    radius, band = rng.uniform(0.4, 0.65) * w, max(1.0, 0.022 * w)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    k = np.floor((np.hypot(yy - cy, xx - cx) - radius) / band).astype(int)
    colours = np.array([[228, 40, 40], [245, 140, 30], [245, 225, 40], [60, 180, 70], [40, 90, 220], [130, 60, 190]],
                       dtype=np.float64)
    inside = (k >= 0) & (k < len(colours))
    alpha = (0.55 * inside * (1 - layers.ground))[..., None]
    return _keep_bird(x, (1 - alpha) * x + alpha * colours[np.clip(k, 0, 5)], layers)


def _aurora(x, layers, rng):
    h, w = x.shape[:2]
    yy, xx = (np.mgrid[0:h, 0:w] + 0.5) / np.array([h, w])[:, None, None]
    crest = rng.uniform(0.08, 0.22) + rng.uniform(0.03, 0.08) * np.sin(2 * np.pi * xx / rng.uniform(0.3, 0.7)
                                                                       + rng.uniform(0, 2 * np.pi))
    below = np.where(yy >= crest, np.exp(-(yy - crest) / 0.14), np.exp(-((yy - crest) / 0.03) ** 2))
    glow = (0.85 * below * (1 - layers.ground))[..., None]
    colour = np.array([70.0, 235, 150]) * (1 - 0.4 * xx[..., None]) + np.array([120.0, 60, 200]) * 0.4 * xx[..., None]
    background = (1 - glow) * _night_background(x, 0.25) + glow * colour
    b = layers.bird[..., None]
    return b * x * 0.58 + (1 - b) * background


def _watercolor(x, layers, rng):
    soft = _blur(x, 3)
    quantised = np.round(soft / 40.0) * 40.0
    paint = 0.6 * soft + 0.4 * quantised
    grain = _blur(rng.normal(0.0, 14.0, x.shape[:2] + (1,)), 5)
    return 0.82 * paint + 0.18 * 250.0 + grain - 0.35 * _edges(soft)[..., None]


def _mosaic(x, layers, rng):
    tile = int(rng.integers(2, 4))
    h, w = x.shape[:2]
    ph, pw = -h % tile, -w % tile
    padded = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="edge")
    means = padded.reshape((h + ph) // tile, tile, (w + pw) // tile, tile, 3).mean((1, 3))
    tiles = np.repeat(np.repeat(means, tile, 0), tile, 1)[:h, :w]
    grout = ((np.arange(h) % tile == 0)[:, None] | (np.arange(w) % tile == 0)[None, :])[..., None]
    return np.where(grout, tiles * 0.72, tiles)


def _ukiyo_e(x, layers, rng):
    flat = _blur(x, 3)
    flat = 0.5 * flat + 0.5 * np.round(flat / 85.0) * 85.0
    cream = np.array([240.0, 224, 188])
    sky = (1 - layers.ground)[..., None] * (1 - layers.bird)[..., None] * rng.uniform(0.45, 0.7)
    flat = (1 - sky) * flat + sky * cream
    ink = np.clip(_edges(x) / 70.0, 0, 1)[..., None] * 0.85
    return (1 - ink) * flat + ink * np.array([32.0, 30, 58])


def _crayon(x, layers, rng):
    h, w = x.shape[:2]
    paper = np.array([246.0, 242, 232])
    hatch = ((np.arange(h)[:, None] + np.arange(w)[None, :] + int(rng.integers(3))) % 3 == 0)[..., None]
    fill = 0.3 + 0.4 * hatch
    out = (1 - fill) * paper + fill * x
    stroke = np.clip(_edges(x) / 45.0, 0, 1)[..., None] * 0.8
    return (1 - stroke) * out + stroke * x * 0.45


_TRANSFORMS: dict[str, Callable] = {
    "autumn": _autumn, "snowy": _snowy, "watercolor": _watercolor, "sunset": _sunset, "rainbow": _rainbow,
    "aurora": _aurora, "mosaic": _mosaic, "ukiyo_e": _ukiyo_e, "crayon": _crayon, "night": _night,
}


def apply_edit(kind: str, layers: Layers, rng: np.random.Generator) -> np.ndarray:
    """The edited image (uint8) for one of the transform kinds (every kind but ``background``)."""
    if kind not in _TRANSFORMS:
        raise ValueError(f"unknown edit {kind!r}; expected one of {', '.join(_TRANSFORMS)}")
    out = _TRANSFORMS[kind](layers.image.astype(np.float64), layers, rng)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _other_contexts(scene: Scene) -> list[str]:
    return [c for c, (_, poses) in CONTEXTS.items() if c != scene.context and scene.pose in poses]


def edit_pair(scene: Scene, size: int, rng: np.random.Generator, kind: str | None = None):
    """``(source, edited, instruction, kind)`` for ``scene``: uint8 images, ``kind`` drawn uniformly when not given
    (``background`` only where the pose has another context), the instruction uniformly among the kind's."""
    others = _other_contexts(scene)
    if kind is None:
        kinds = [k for k in EDIT_KINDS if k != "background" or others]
        kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "background":
        if not others:
            raise ValueError(f"pose {scene.pose!r} has no other context to move the bird to")
        context = others[int(rng.integers(len(others)))]
        return render_scene(scene, size), render_scene(dataclasses.replace(scene, context=context), size), \
            f"make it {context}", kind
    layers = scene_layers(scene, size)
    instructions = EDITS[kind]
    return layers.image, apply_edit(kind, layers, rng), instructions[int(rng.integers(len(instructions)))], kind

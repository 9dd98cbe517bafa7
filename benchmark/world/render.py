"""Procedural bird renderer for the embedded miniature world (DESIGN.md, "The embedded miniature world").

A bird is a combination of fine-grained attributes (``BirdSpec``: body, crown and wing colours, wing
pattern, beak and tail shape, size). A *scene* adds nuisance factors: pose, position, scale, facing
direction and a context (``perched on a branch``, ``flying over water``, ...) whose background is land
or water with texture variety. Every image is a pure function of ``(scene, size)``; scenes are a pure
function of ``(spec, seed)``. Images are drawn with PIL at twice the target size and downsampled
(Lanczos) for anti-aliasing.

Captions spell out the attributes and the context, as the captions of a web-scale pretraining corpus
would; species names (``augbench.world.species``) mention only some distinguishing attributes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35),
    "orange": (240, 135, 25),
    "yellow": (240, 215, 40),
    "green": (45, 150, 60),
    "blue": (35, 75, 205),
    "purple": (135, 55, 170),
    "black": (25, 25, 28),
    "white": (240, 240, 236),
    "grey": (135, 135, 140),
    "brown": (125, 75, 35),
}
PATTERNS = ("plain", "striped", "spotted", "barred")

# Revision of the drawing code: part of every world image's identity (``WorldSource.revision``), so a
# change of pixels invalidates cached subsets, artifacts and results. 1: the first world; 2: wing
# patterns at >= 1.5 px and a larger head/crown at 64 px (issue 14).
RENDER_VERSION = 2
PATTERN_WIDTH = 1 / 42  # of the 2x drawing canvas: 3 px at 128, i.e. 1.5 px after the downsampling to 64
HEAD_RADIUS = 0.5  # head radius / body half-length (0.42 in render version 1)
BEAKS = ("short", "long", "hooked")
TAILS = ("short", "long", "forked", "fan")
SIZES = ("small", "large")

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "body": tuple(COLOURS),
    "crown": tuple(COLOURS),
    "wing": tuple(COLOURS),
    "pattern": PATTERNS,
    "beak": BEAKS,
    "tail": TAILS,
    "size": SIZES,
}

# context -> (background kind, allowed poses). Context phrases double as Diff-II suffixes.
CONTEXTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "perched on a branch": ("land", ("perched",)),
    "standing on rocks": ("land", ("standing",)),
    "standing in the grass": ("land", ("standing",)),
    "flying over a forest": ("land", ("flying",)),
    "swimming on a lake": ("water", ("swimming",)),
    "flying over water": ("water", ("flying",)),
    "standing on a beach": ("water", ("standing",)),
    "floating on the sea": ("water", ("swimming",)),
}
LAND_CONTEXTS = tuple(c for c, (bg, _) in CONTEXTS.items() if bg == "land")
WATER_CONTEXTS = tuple(c for c, (bg, _) in CONTEXTS.items() if bg == "water")


@dataclass(frozen=True)
class BirdSpec:
    """The fine-grained attributes that define a species."""

    body: str
    crown: str
    wing: str
    pattern: str
    beak: str
    tail: str
    size: str

    def __post_init__(self):
        for key, allowed in ATTRIBUTES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ValueError(f"BirdSpec.{key} = {value!r}; expected one of {', '.join(allowed)}")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def differences(self, other: BirdSpec) -> list[str]:
        return [k for k in ATTRIBUTES if getattr(self, k) != getattr(other, k)]


@dataclass(frozen=True)
class Scene:
    """A bird in a context with nuisance parameters; ``render_scene`` draws it."""

    spec: BirdSpec
    context: str
    pose: str
    cx: float  # bird centre, fraction of width
    cy: float  # bird centre, fraction of height
    scale: float  # multiplies the size-dependent bird scale
    facing_left: bool
    bg_seed: int
    tone: float  # global brightness jitter

    @property
    def background(self) -> str:
        return CONTEXTS[self.context][0]


def sample_scene(spec: BirdSpec, rng: np.random.Generator, context: str | None = None) -> Scene:
    """Draw the nuisance factors of a scene for ``spec`` (context uniformly if not given)."""
    if context is None:
        context = str(rng.choice(list(CONTEXTS)))
    if context not in CONTEXTS:
        raise ValueError(f"unknown context {context!r}; expected one of {', '.join(CONTEXTS)}")
    pose = str(rng.choice(list(CONTEXTS[context][1])))
    cy_range = {"flying": (0.30, 0.50), "swimming": (0.55, 0.68), "perched": (0.40, 0.55), "standing": (0.48, 0.62)}
    return Scene(
        spec=spec,
        context=context,
        pose=pose,
        cx=float(rng.uniform(0.36, 0.64)),
        cy=float(rng.uniform(*cy_range[pose])),
        scale=float(rng.uniform(0.85, 1.15)),
        facing_left=bool(rng.integers(0, 2)),
        bg_seed=int(rng.integers(0, 2**31 - 1)),
        tone=float(rng.uniform(0.9, 1.1)),
    )


def _jitter(rgb, rng, amount=18):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _draw_background(draw: ImageDraw.ImageDraw, scene: Scene, S: int, rng: np.random.Generator) -> None:
    context = scene.context
    horizon = int(S * rng.uniform(0.35, 0.5))
    sky_top = _jitter((150, 195, 235), rng, 25)
    sky_bottom = _jitter((205, 225, 245), rng, 15)
    for y in range(horizon):
        t = y / max(horizon - 1, 1)
        draw.line([(0, y), (S, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(sky_top, sky_bottom)))
    if scene.background == "water":
        if context == "standing on a beach":
            shore = horizon + int(S * rng.uniform(0.15, 0.25))
            _gradient(draw, S, horizon, shore, _jitter((40, 110, 180), rng), _jitter((70, 150, 200), rng))
            _gradient(draw, S, shore, S, _jitter((225, 205, 150), rng), _jitter((200, 180, 125), rng))
            top = horizon
            bottom = shore
        else:
            deep = (25, 70, 150) if context == "floating on the sea" else (40, 110, 160)
            _gradient(draw, S, horizon, S, _jitter(deep, rng), _jitter((70, 150, 200), rng))
            top, bottom = horizon, S
        for _ in range(int(rng.integers(8, 18))):  # waves
            y = int(rng.uniform(top + 2, bottom - 2))
            x = int(rng.uniform(0, S))
            w = int(rng.uniform(S * 0.08, S * 0.25))
            draw.line([(x, y), (x + w, y)], fill=_jitter((180, 215, 240), rng, 20), width=max(1, S // 64))
    else:
        if context == "flying over a forest":
            _gradient(draw, S, horizon, S, _jitter((35, 95, 40), rng), _jitter((25, 70, 30), rng))
            for _ in range(int(rng.integers(6, 12))):  # tree crowns
                x = rng.uniform(0, S)
                y = rng.uniform(horizon - S * 0.05, S)
                r = rng.uniform(S * 0.06, S * 0.14)
                draw.ellipse([x - r, y - r, x + r, y + r], fill=_jitter((30, 110, 45), rng, 25))
        else:
            _gradient(draw, S, horizon, S, _jitter((110, 165, 70), rng), _jitter((85, 130, 50), rng))
            for _ in range(int(rng.integers(15, 30))):  # grass blades
                x = rng.uniform(0, S)
                y = rng.uniform(horizon, S)
                h = rng.uniform(S * 0.02, S * 0.06)
                draw.line([(x, y), (x + rng.uniform(-2, 2), y - h)], fill=_jitter((60, 120, 40), rng, 20),
                          width=max(1, S // 96))
        if context == "standing on rocks":
            for _ in range(int(rng.integers(2, 5))):
                x = rng.uniform(0, S)
                y = rng.uniform(scene.cy * S + S * 0.1, S * 1.05)
                rw, rh = rng.uniform(S * 0.12, S * 0.25), rng.uniform(S * 0.06, S * 0.12)
                draw.ellipse([x - rw, y - rh, x + rw, y + rh], fill=_jitter((120, 118, 112), rng, 20))
        if context == "perched on a branch":
            y0 = scene.cy * S + 1.05 * _body_half_length(scene, S)  # where the feet are
            slope = rng.uniform(-0.15, 0.15)
            draw.line([(0, y0 - slope * S / 2), (S, y0 + slope * S / 2)], fill=_jitter((95, 60, 30), rng),
                      width=max(2, int(S * 0.035)))


def _body_half_length(scene: Scene, S: int) -> float:
    return (0.16 if scene.spec.size == "small" else 0.22) * scene.scale * S


def _gradient(draw, S, y0, y1, c0, c1):
    for y in range(int(y0), int(y1)):
        t = (y - y0) / max(y1 - y0 - 1, 1)
        draw.line([(0, y), (S, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(c0, c1)))


def _pattern(draw, spec: BirdSpec, box, S, rng):
    """Wing pattern drawn at >= 1.5 px at 64 px: the first world drew 0.5 px lines, which any blur, the
    VAE and CLIP lost (docs/world_v2.md sections 3-4); six species differ from their genus' Common form
    only here."""
    x0, y0, x1, y1 = box
    dark = tuple(max(0, int(c * 0.35)) for c in COLOURS[spec.wing])
    if spec.wing in ("black", "brown", "purple", "blue"):
        dark = (235, 235, 230)
    w = max(1, round(S * PATTERN_WIDTH))
    if spec.pattern == "striped":  # lengthwise stripes
        for k in (1, 2):
            y = y0 + (y1 - y0) * k / 3
            draw.line([(x0 + (x1 - x0) * 0.12, y), (x1 - (x1 - x0) * 0.12, y)], fill=dark, width=w)
    elif spec.pattern == "barred":  # crosswise bars
        for k in (1, 2, 3):
            x = x0 + (x1 - x0) * k / 4
            draw.line([(x, y0 + (y1 - y0) * 0.12), (x, y1 - (y1 - y0) * 0.12)], fill=dark, width=w)
    elif spec.pattern == "spotted":
        r = max(1.0, S * PATTERN_WIDTH)
        for fx, fy in ((0.3, 0.35), (0.55, 0.3), (0.75, 0.5), (0.35, 0.7), (0.6, 0.72)):
            x, y = x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy
            draw.ellipse([x - r, y - r, x + r, y + r], fill=dark)


def _draw_bird(img: Image.Image, scene: Scene, S: int, rng: np.random.Generator) -> None:
    spec = scene.spec
    draw = ImageDraw.Draw(img)
    base = _body_half_length(scene, S)
    cx, cy = scene.cx * S, scene.cy * S
    body_c = COLOURS[spec.body]
    outline = tuple(int(c * 0.5) for c in body_c)
    # Draw everything facing right, mirror at the end if facing left (done on a layer).
    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    bl, bh = base, base * 0.62
    # tail (behind the body, at the left end)
    tx = cx - bl * 0.85
    tail_len = {"short": 0.45, "long": 1.0, "forked": 0.8, "fan": 0.65}[spec.tail] * bl
    if spec.tail == "forked":
        d.polygon([(tx + bl * 0.1, cy - bh * 0.15), (tx - tail_len, cy - bh * 0.75), (tx - tail_len * 0.55, cy),
                   (tx - tail_len, cy + bh * 0.45), (tx + bl * 0.1, cy + bh * 0.2)], fill=body_c, outline=outline)
    elif spec.tail == "fan":
        d.pieslice([tx - tail_len, cy - tail_len * 0.9, tx + tail_len, cy + tail_len * 0.9], 140, 220,
                   fill=body_c, outline=outline)
    else:
        d.polygon([(tx + bl * 0.1, cy - bh * 0.25), (tx - tail_len, cy - bh * 0.2), (tx - tail_len, cy + bh * 0.15),
                   (tx + bl * 0.1, cy + bh * 0.25)], fill=body_c, outline=outline)
    # legs
    if scene.pose in ("perched", "standing"):
        leg_c = (70, 60, 40)
        for off in (-0.15, 0.15):
            lx = cx + off * bl
            d.line([(lx, cy + bh * 0.8), (lx, cy + bh * 0.8 + base * 0.55)], fill=leg_c, width=max(1, S // 90))
    # body
    d.ellipse([cx - bl, cy - bh, cx + bl, cy + bh], fill=body_c, outline=outline)
    # head with crown
    hr = base * HEAD_RADIUS
    hx, hy = cx + bl * 0.85, cy - bh * 0.75
    d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=body_c, outline=outline)
    d.pieslice([hx - hr, hy - hr, hx + hr, hy + hr], 165, 375, fill=COLOURS[spec.crown], outline=outline)
    # beak
    beak_c = (235, 170, 40) if spec.body not in ("yellow", "orange") else (60, 50, 40)
    bx, by = hx + hr * 0.9, hy + hr * 0.1
    blen = {"short": 0.55, "long": 1.35, "hooked": 0.8}[spec.beak] * hr
    if spec.beak == "hooked":
        d.polygon([(bx, by - hr * 0.3), (bx + blen, by - hr * 0.15), (bx + blen * 0.9, by + hr * 0.35),
                   (bx + blen * 0.6, by + hr * 0.05), (bx, by + hr * 0.25)], fill=beak_c)
    else:
        d.polygon([(bx, by - hr * 0.25), (bx + blen, by + hr * 0.02), (bx, by + hr * 0.25)], fill=beak_c)
    # eye
    er = max(1.0, hr * 0.16)
    ex, ey = hx + hr * 0.35, hy - hr * 0.05
    d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(10, 10, 10))
    # wing
    wing_c = COLOURS[spec.wing]
    w_out = tuple(int(c * 0.5) for c in wing_c)
    if scene.pose == "flying":
        box = (cx - bl * 0.55, cy - bh * 2.3, cx + bl * 0.45, cy - bh * 0.1)
        d.polygon([(cx - bl * 0.5, cy - bh * 0.2), (cx - bl * 0.1, cy - bh * 2.3), (cx + bl * 0.5, cy - bh * 2.0),
                   (cx + bl * 0.4, cy - bh * 0.2)], fill=wing_c, outline=w_out)
        _pattern(d, spec, (cx - bl * 0.35, cy - bh * 1.9, cx + bl * 0.35, cy - bh * 0.4), S, rng)
    else:
        box = (cx - bl * 0.8, cy - bh * 0.65, cx + bl * 0.5, cy + bh * 0.6)
        d.ellipse(box, fill=wing_c, outline=w_out)
        _pattern(d, spec, box, S, rng)
    if scene.pose == "swimming":  # water line hides the lower body
        water = img.getpixel((int(min(max(cx, 0), S - 1)), int(min(cy + bh * 1.4, S - 1))))
        d.rectangle([0, cy + bh * 0.35, S, cy + bh * 1.3], fill=(0, 0, 0, 0))
        d.line([(cx - bl * 1.3, cy + bh * 0.35), (cx + bl * 1.3, cy + bh * 0.35)], fill=tuple(water[:3]) + (255,),
               width=max(1, S // 70))
    if scene.facing_left:
        layer = layer.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img.alpha_composite(layer) if img.mode == "RGBA" else img.paste(layer, (0, 0), layer)
    del draw


def render_scene(scene: Scene, size: int = 64) -> np.ndarray:
    """Draw ``scene`` as a ``size``x``size``x3 uint8 array (deterministic)."""
    S = size * 2
    rng = np.random.default_rng(scene.bg_seed)
    img = Image.new("RGB", (S, S))
    _draw_background(ImageDraw.Draw(img), scene, S, rng)
    _draw_bird(img, scene, S, rng)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.float32) * scene.tone
    # mild sensor noise, seeded by the scene
    arr += rng.normal(0.0, 3.0, arr.shape).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


def render(spec: BirdSpec, seed: int, size: int = 64, context: str | None = None) -> tuple[np.ndarray, Scene]:
    """Render ``spec`` in a scene drawn from ``seed``; returns (image, scene)."""
    scene = sample_scene(spec, np.random.default_rng(seed), context)
    return render_scene(scene, size), scene


def describe(spec: BirdSpec) -> str:
    """The attribute description of a species, e.g. ``small bird with a red body, ...``."""
    wings = f"{spec.wing} wings" if spec.pattern == "plain" else f"{spec.wing} {spec.pattern} wings"
    tail = {"short": "a short tail", "long": "a long tail", "forked": "a forked tail", "fan": "a fan-shaped tail"}[spec.tail]
    beak = {"short": "a short beak", "long": "a long beak", "hooked": "a hooked beak"}[spec.beak]
    return f"{spec.size} bird with {_an(spec.body)} body, {_an(spec.crown)} crown, {wings}, {beak} and {tail}"


def _an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def caption(scene: Scene, rng: np.random.Generator | None = None, genus: str | None = None) -> str:
    """A corpus caption that spells out the attributes and the context.

    With ``rng``, the phrasing varies (attribute order and article), as web captions do; with ``genus``
    (the bird looks like a known genus), most captions name it ("a gull with ...", "a red-crowned,
    striped-winged, fork-tailed gull").
    """
    spec = scene.spec
    if rng is None:
        return f"a photo of a {describe(spec)}, {scene.context}"
    if genus is not None and rng.random() < 0.6:
        g = genus.lower()
        if rng.random() < 0.5:
            tail_word = {"short": "short", "long": "long", "forked": "fork", "fan": "fan"}[spec.tail]
            wing_word = spec.wing if spec.pattern == "plain" else spec.pattern
            mods = [f"{spec.crown}-crowned", f"{wing_word}-winged", f"{tail_word}-tailed"]
            mods = [mods[i] for i in sorted(rng.choice(3, size=int(rng.integers(1, 4)), replace=False))]
            return f"a photo of a {', '.join(mods)} {g}, {scene.context}"
        return f"a photo of a {g}, a {describe(spec)}, {scene.context}"
    parts = [f"{_an(spec.body)} body", f"{_an(spec.crown)} crown",
             f"{spec.wing} wings" if spec.pattern == "plain" else f"{spec.wing} {spec.pattern} wings",
             {"short": "a short beak", "long": "a long beak", "hooked": "a hooked beak"}[spec.beak],
             {"short": "a short tail", "long": "a long tail", "forked": "a forked tail", "fan": "a fan-shaped tail"}[spec.tail]]
    if rng.random() < 0.3:
        # compact field-guide phrasing ("a red-crowned, fork-tailed bird"), the style species names use
        tail_word = {"short": "short", "long": "long", "forked": "fork", "fan": "fan"}[spec.tail]
        wing_word = spec.wing if spec.pattern == "plain" else spec.pattern
        lead = f"a photo of a {spec.size} {spec.body} {spec.crown}-crowned, {wing_word}-winged, {tail_word}-tailed bird"
        return f"{lead} with {parts[3]}, {scene.context}"
    order = rng.permutation(len(parts))
    parts = [parts[i] for i in order]
    lead = str(rng.choice(["a photo of a", "an image of a", "a picture of a", "a"]))
    return f"{lead} {spec.size} bird with {', '.join(parts[:-1])} and {parts[-1]}, {scene.context}"


# --- hard negatives for contrastive pretraining -----------------------------------------------------

_COLOUR = "|".join(COLOURS)
_PATTERN_WORD = "striped|spotted|barred"
_BEAK_PHRASE = {"short": "short beak", "long": "long beak", "hooked": "hooked beak"}
_TAIL_PHRASE = {"short": "short tail", "long": "long tail", "forked": "forked tail", "fan": "fan-shaped tail"}
_TAIL_COMPACT = {"short": "short-tailed", "long": "long-tailed", "forked": "fork-tailed", "fan": "fan-tailed"}


def _swap_matches(pattern: str, text: str, choices, rng: np.random.Generator) -> str | None:
    """Replace one random whole-word match of ``pattern`` by a different entry of ``choices``."""
    matches = list(re.finditer(rf"\b(?:{pattern})\b", text))
    if not matches:
        return None
    m = matches[int(rng.integers(len(matches)))]
    new = str(rng.choice([c for c in choices if c != m.group(0)]))
    head = re.sub(r"\ban? $", "", text[:m.start()])
    if head != text[:m.start()]:  # keep the article right: "a red body" -> "an orange body"
        new = _an(new)
    return head + new + text[m.end():]


def _contradict_pattern(text: str, rng: np.random.Generator) -> str | None:
    """Change the wing pattern: swap a named pattern, drop it (plain), or add one to plain wings."""
    m = re.search(rf"\b({_PATTERN_WORD}) wings\b", text)
    if m and rng.random() < 0.25:  # "orange barred wings" -> "orange wings"
        return text[:m.start()] + "wings" + text[m.end():]
    swapped = _swap_matches(_PATTERN_WORD, text, PATTERNS[1:], rng)
    if swapped is not None:
        return swapped
    m = re.search(rf"\b({_COLOUR}) wings\b", text)  # plain wings, spelled out
    if m:
        return text[:m.end(1)] + f" {rng.choice(PATTERNS[1:])}" + text[m.end(1):]
    m = re.search(rf"\b({_COLOUR})-winged\b", text)  # plain wings, compact: the colour stands for them
    if m:
        return text[:m.start(1)] + str(rng.choice(PATTERNS[1:])) + text[m.end(1):]
    return None


def contradict(text: str, rng: np.random.Generator) -> str | None:
    """A caption that differs from ``text`` in exactly one stated attribute (a hard negative).

    The attribute kind is drawn uniformly among those the caption states: one colour word (body,
    crown or wing), the wing pattern, the beak, the tail or the size. ``None`` when the caption states
    none of them (e.g. ``a photo of a gull, standing on rocks``). Used as extra text negatives in
    the world's CLIP pretraining (NegCLIP, Yuksekgonul et al. 2023), so that the text tower must
    encode every attribute word: with random batches alone, captions that differ only in the wing
    pattern ended at pooled cosine 0.9994 (docs/world_v2.md section 0).
    """
    edits = {
        "colour": lambda: _swap_matches(_COLOUR, text, tuple(COLOURS), rng),
        "pattern": lambda: _contradict_pattern(text, rng),
        "beak": lambda: _swap_matches("|".join(_BEAK_PHRASE.values()), text, tuple(_BEAK_PHRASE.values()), rng),
        "tail": lambda: (_swap_matches("|".join(_TAIL_PHRASE.values()), text, tuple(_TAIL_PHRASE.values()), rng)
                         or _swap_matches("|".join(_TAIL_COMPACT.values()), text, tuple(_TAIL_COMPACT.values()), rng)),
        "size": lambda: _swap_matches("|".join(SIZES), text, SIZES, rng),
    }
    kinds = list(edits)
    for k in rng.permutation(len(kinds)):
        edited = edits[kinds[int(k)]]()
        if edited is not None and edited != text:
            return edited
    return None

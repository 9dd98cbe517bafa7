"""Fractal images drawn procedurally from iterated function systems (FractalDB-style), never downloaded.

DiffuseMix (Islam et al., CVPR 2024) blends a fractal image into every concatenated image: ``A = (1 - λ) H + λ F``
with ``F`` drawn uniformly from a folder of fractal images (repo ``augment/diffuseMix.py:68``,
``random.choice(self.fractal_imgs)``; ``augment/utils.py:9-11`` loads the folder, resized to 256 px). The repo's
README links that folder on Google Drive; the harness downloads nothing, so the folder is replaced by a bank of
fractals rendered here from seeds.

How a fractal is made (FractalDB, Kataoka et al., ACCV 2020, "Pre-training without Natural Images"; its category
search ``param_search/ifs_search.py`` in ``hirokatsukataoka16/FractalDB-Pretrained-ResNet-PyTorch``):

* an IFS is ``N`` affine maps ``w_i(x) = A_i x + b_i`` of the plane, ``N = np.random.randint(2, 8)`` (2 to 7), the
  six parameters of every map uniform in ``[-1, 1]``; map ``i`` is chosen with probability ``p_i ∝ |det A_i|``;
* its attractor is drawn by the chaos game with 100,000 points (``--numof_point``), each axis stretched to a
  512 x 512 image less a 6 px border;
* an IFS is kept only when its points cover at least ``min_fill`` of that image (the "filling rate", ``--rate``
  0.2), so degenerate systems (points collapsing to a line or a few dots) are re-drawn.

HARNESS choices (FractalDB leaves them open or differs): a map whose linear part is not a contraction (spectral
norm >= 1) is drawn again, so every system has an attractor (FractalDB keeps such maps, and points can diverge);
the chaos game runs many walkers in parallel (each discards its first ``burn_in`` points, which are not yet on the
attractor; FractalDB runs one walker from the origin) so rendering is vectorised; the filling rate is always
measured with 100,000 points at 512 px, so whether an IFS is kept does not depend on the output size, which gets
``max(100,000, 2 size^2)`` points; every point carries a colour that
is a running average of the colours of the maps that produced it (the "colour IFS" trick of flame fractals), and
a pixel's brightness is the log of its point count, so images look like the colourful fractal pictures DiffuseMix
blends rather than FractalDB's binary patterns.

Every random draw comes from a NumPy generator seeded with ``derive_seed(seed, ...)``: the same seed gives the
same pixels on every machine; global RNG state is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from augbench.canonical import derive_seed

__all__ = ["FILL_GRID", "FILL_POINTS", "IFS", "PAD", "filling_rate", "fractal_bank", "ifs_fractal", "render_ifs", "sample_ifs"]

#: side of the grid the filling rate is measured on, and the chaos-game points it is measured with (FractalDB's
#: 100,000), both independent of the output size
FILL_GRID = 512
FILL_POINTS = 100_000
#: the border left around the attractor, a fraction of the side (FractalDB: 6 px of 512)
PAD = 6 / 512


@dataclass(frozen=True)
class IFS:
    """An iterated function system: ``maps[i] = [[a, b, e], [c, d, f]]`` and the probability of each map."""

    maps: np.ndarray  # [N, 2, 3]
    probs: np.ndarray  # [N]
    colours: np.ndarray  # [N, 3] in [0, 1], one per map

    def __post_init__(self) -> None:
        if self.maps.ndim != 3 or self.maps.shape[1:] != (2, 3) or len(self.probs) != len(self.maps):
            raise ValueError(f"an IFS needs maps [N, 2, 3] and N probabilities; got {self.maps.shape}, "
                             f"{len(self.probs)}")


def sample_ifs(rng: np.random.Generator, *, min_maps: int = 2, max_maps: int = 7, max_norm: float = 1.0) -> IFS:
    """FractalDB's draw: ``N ~ U{min_maps..max_maps}`` maps, parameters ``U[-1, 1]``, ``p_i ∝ |det A_i|``; a map
    whose linear part has spectral norm ``>= max_norm`` is drawn again."""
    n = int(rng.integers(min_maps, max_maps + 1))
    maps = rng.uniform(-1.0, 1.0, size=(n, 2, 3))
    for i in range(n):  # HARNESS: every map a contraction, so the attractor exists (module docstring)
        while np.linalg.norm(maps[i, :, :2], 2) >= max_norm:
            maps[i] = rng.uniform(-1.0, 1.0, size=(2, 3))
    det = np.abs(maps[:, 0, 0] * maps[:, 1, 1] - maps[:, 0, 1] * maps[:, 1, 0])
    probs = det / det.sum() if det.sum() > 0 else np.full(n, 1.0 / n)
    colours = rng.uniform(0.15, 1.0, size=(n, 3))
    return IFS(maps, probs, colours)


def _chaos_game(ifs: IFS, rng: np.random.Generator, points: int, walkers: int, burn_in: int):
    """``points`` attractor points ``[P, 2]`` and their colours ``[P, 3]`` (walkers run in parallel)."""
    steps = -(-points // walkers)
    x = rng.uniform(-1.0, 1.0, size=(walkers, 2))
    colour = np.full((walkers, 3), 0.5)
    a, b = ifs.maps[:, :, :2], ifs.maps[:, :, 2]
    out_x = np.empty((steps, walkers, 2))
    out_c = np.empty((steps, walkers, 3))
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(burn_in + steps):
            k = rng.choice(len(ifs.probs), size=walkers, p=ifs.probs)
            x = np.einsum("nij,nj->ni", a[k], x) + b[k]
            colour = 0.5 * colour + 0.5 * ifs.colours[k]
            if step >= burn_in:
                out_x[step - burn_in], out_c[step - burn_in] = x, colour
    return out_x.reshape(-1, 2)[:points], out_c.reshape(-1, 3)[:points]


def _to_pixels(xy: np.ndarray, size: int) -> np.ndarray | None:
    """Integer pixel coordinates ``[P, 2]`` (column, row) of the points, each axis stretched to the image less a
    ``PAD`` border (FractalDB's rescale: 6 px of 512); None if the points diverge or collapse onto a line."""
    if not np.isfinite(xy).all() or np.abs(xy).max() > 1e6:
        return None
    lo, hi = xy.min(0), xy.max(0)
    if float((hi - lo).min()) < 1e-9:
        return None
    pad = PAD * size
    pix = (xy - lo) / (hi - lo) * (size - 1 - 2 * pad) + pad
    return np.clip(np.round(pix), 0, size - 1).astype(np.int64)


def filling_rate(xy: np.ndarray) -> float:
    """The share of a ``FILL_GRID`` x ``FILL_GRID`` image the points cover (0 for diverging / degenerate points)."""
    pix = _to_pixels(xy, FILL_GRID)
    if pix is None:
        return 0.0
    return len(np.unique(pix[:, 1] * FILL_GRID + pix[:, 0])) / FILL_GRID**2


def render_ifs(xy: np.ndarray, colours: np.ndarray, size: int, gamma: float = 0.6) -> np.ndarray:
    """The points as a ``size`` x ``size`` uint8 RGB image on black: mean point colour per pixel, brightness
    ``(log(1 + count) / log(1 + max count)) ** gamma``.

    Raises:
        ValueError: the points diverge or collapse to one point.
    """
    pix = _to_pixels(xy, size)
    if pix is None:
        raise ValueError("the IFS's points diverge or collapse to a point: draw another IFS")
    flat = pix[:, 1] * size + pix[:, 0]
    counts = np.bincount(flat, minlength=size * size).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=colours[:, c], minlength=size * size) for c in range(3)], 1)
    mean = sums / np.maximum(counts, 1)[:, None]
    brightness = (np.log1p(counts) / np.log1p(counts.max())) ** gamma
    image = mean * brightness[:, None]
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8).reshape(size, size, 3)


def ifs_fractal(seed: int, size: int, *, points: int | None = None, min_fill: float = 0.2, max_tries: int = 64,
                walkers: int = 1024, burn_in: int = 20) -> np.ndarray:
    """A fractal image ``[size, size, 3]`` uint8, a pure function of ``(seed, size)`` and the settings.

    IFSs are drawn (:func:`sample_ifs`) from a generator seeded with ``derive_seed(seed, "ifs-fractal")`` until one
    covers ``min_fill`` of the grid with ``FILL_POINTS`` points (FractalDB's filling rate 0.2; ~6 draws on average);
    after ``max_tries`` the best one drawn is used.

    Args:
        seed: the fractal's seed.
        size: output side in pixels.
        points: chaos-game points drawn (default ``max(FILL_POINTS, 2 * size**2)``: FractalDB's 100,000, more for
            large images, so a 512-px fractal is not sparse).
        min_fill, max_tries: the filling-rate test.
        walkers, burn_in: the parallel chaos game.
    """
    if size < 1:
        raise ValueError(f"fractal size must be >= 1 pixel, got {size}")
    points = int(points or max(FILL_POINTS, 2 * size * size))
    rng = np.random.default_rng(derive_seed(int(seed), "ifs-fractal"))
    best = None
    for _ in range(max_tries):  # each candidate is tested on FractalDB's 100,000 points, whatever the output size
        ifs = sample_ifs(rng)
        xy, colours = _chaos_game(ifs, rng, FILL_POINTS, walkers, burn_in)
        fill = filling_rate(xy)
        if best is None or fill > best[0]:
            best = (fill, ifs, xy, colours)
        if fill >= min_fill:
            break
    if best is None or best[0] == 0.0:
        raise ValueError(f"no IFS drawn from seed {seed} in {max_tries} tries has a finite attractor; raise max_tries")
    _, ifs, xy, colours = best
    if points > len(xy):  # a large image: more points of the accepted IFS
        more_xy, more_colours = _chaos_game(ifs, rng, points - len(xy), walkers, burn_in)
        xy, colours = np.concatenate([xy, more_xy]), np.concatenate([colours, more_colours])
    return render_ifs(xy[:points], colours[:points], size)


def fractal_bank(seed: int, count: int, size: int, **kwargs) -> list[np.ndarray]:
    """``count`` fractals, fractal ``k`` from seed ``derive_seed(seed, "fractal-bank", k)``: the analogue of the
    repo's fractal folder (a fixed set the blend draws from uniformly)."""
    if count < 1:
        raise ValueError(f"a fractal bank needs at least one image, got count={count}")
    return [ifs_fractal(derive_seed(int(seed), "fractal-bank", k), size, **kwargs) for k in range(count)]

"""Performance ratios of the harness's default optimisations (PERF_NOTES §6); ``nox -s perf``.

Each section is a function that measures one optimisation against its naive reference on the
current machine and returns a JSON-ready dict; ``main`` prints them. No section asserts anything
about time: the numbers are for humans (tests check equivalence, never speed).

Usage::

    python -m benchmark.perf                 # all sections
    python -m benchmark.perf --section lpips --lpips-n 32 --lpips-size 64
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["SECTIONS", "lpips_gram_vs_naive", "main"]


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def lpips_gram_vs_naive(n: int = 32, size: int = 64, repeats: int = 1, device: str = "cpu") -> dict[str, Any]:
    """All-pairs LPIPS for ``n`` images: per-image features + Gram matrices vs one pass per pair.

    Uses the ``lpips`` package AlexNet with a random trunk (no download; the calibrated linear
    layers shipped with the package), METHODS_SPEC §7.2 / PERF_NOTES §6 item 12.

    Args:
        n: number of images (``n (n - 1) / 2`` pairs).
        size: image side fed to the network.
        repeats: timing repeats (best of).
        device: ``cpu`` or ``cuda``.

    Returns:
        Times of both methods, their ratio (naive / Gram, i.e. the speed-up) and the max difference.
    """
    from benchmark.metrics import lpips_alex, lpips_pairwise_naive
    from benchmark.seeding import make_generator

    with torch.random.fork_rng():
        torch.manual_seed(0)
        dist = lpips_alex(pretrained_trunk=False, size=size, device=device)
    g = make_generator(0)
    x = (torch.rand(n, 3, size, size, generator=g) * 255).round().to(torch.uint8)
    t_gram, gram = _best_of(lambda: dist.pairwise(x), repeats)
    t_naive, naive = _best_of(lambda: lpips_pairwise_naive(dist.module, x, size=size), repeats)
    return {
        "section": "lpips",
        "n_images": n,
        "n_pairs": n * (n - 1) // 2,
        "size": size,
        "device": device,
        "gram_s": round(t_gram, 4),
        "naive_s": round(t_naive, 4),
        "speedup_naive_over_gram": round(t_naive / t_gram, 2),
        "ratio_gram_over_naive": round(t_gram / t_naive, 4),
        "max_abs_diff": float((gram - naive).abs().max()),
    }


SECTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "lpips": lpips_gram_vs_naive,
}


def main(argv: list[str] | None = None) -> int:
    """Run the requested sections and print one JSON line each."""
    parser = argparse.ArgumentParser(prog="python -m benchmark.perf", description=__doc__.splitlines()[0])
    parser.add_argument("--section", action="append", choices=sorted(SECTIONS), help="default: all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--lpips-n", type=int, default=32)
    parser.add_argument("--lpips-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs: dict[str, dict[str, Any]] = {
        "lpips": {"n": args.lpips_n, "size": args.lpips_size, "repeats": args.repeats, "device": args.device},
    }
    for name in args.section or list(SECTIONS):
        print(json.dumps(SECTIONS[name](**kwargs.get(name, {}))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

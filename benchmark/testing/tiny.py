"""Tiny components for tests of methods (built-in and third-party): a dataset, Stable Diffusion, CLIP.

diffusers-style: every model is built from a config with a fixed seed, never downloaded
(DESIGN.md, "Testing"): ``tiny_sd_components``, ``save_tiny_sd_pipeline`` / ``cached_tiny_sd_pipeline``,
``save_tiny_clip`` / ``cached_tiny_clip`` and ``tiny_profile``; the tokenizer is the real CLIP BPE
tokenizer built offline (``augbench.diffusion.tokenizer.build_clip_tokenizer``). A small in-memory
dataset: ``TinySource`` / ``tiny_card`` / ``tiny_subset``. Needs no pytest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from augbench.data.cards import DatasetCard
from augbench.data.core import ImageSource, Sample, Subset
from augbench.run.profiles import Profile

__all__ = [
    "TinySource",
    "cached_tiny_clip",
    "cached_tiny_sd_pipeline",
    "save_tiny_clip",
    "save_tiny_sd_pipeline",
    "tiny_card",
    "tiny_profile",
    "tiny_sd_components",
    "tiny_subset",
]

_TINY_SD_VERSION = "2"  # bump when tiny_sd_components changes


# --- tiny dataset --------------------------------------------------------------------------------


def tiny_card(num_classes: int = 3, *, meta: str = "bird", dataset_id: str = "tiny") -> DatasetCard:
    """An in-memory dataset card with classes ``class_0 ...`` (names with underscores, like CUB)."""
    return DatasetCard(
        id=dataset_id,
        name="Tiny test dataset",
        kind="embedded",
        reader="tiny",
        class_names=tuple(f"Tiny_class_{i}" for i in range(num_classes)),
        meta=meta,
        prompt_template="a photo of a {name} {meta}",
        splits={"train": 0, "test": 0},
        path=Path("<memory>") / f"{dataset_id}.toml",
    )


class TinySource(ImageSource):
    """Deterministic in-memory images: per-class colour plus seeded noise, ``size`` x ``size`` RGB.

    Args:
        card: the dataset card (default ``tiny_card()``).
        per_class: images per class in each split, e.g. ``{"train": [3, 2, 1], "test": 2}``.
        size: image side in pixels.
    """

    def __init__(self, card: DatasetCard | None = None, per_class: Mapping[str, Any] | None = None, size: int = 16):
        super().__init__(card or tiny_card())
        per_class = dict(per_class or {"train": 4, "test": 2})
        self.size = size
        self._samples: dict[str, list[Sample]] = {}
        for split, counts in per_class.items():
            if isinstance(counts, int):
                counts = [counts] * self.num_classes
            self._samples[split] = [
                Sample(f"{split}/{label}/{k}", label) for label, n in enumerate(counts) for k in range(n)
            ]
        self._ids = {s.image_id: s for ss in self._samples.values() for s in ss}

    def split_names(self) -> list[str]:
        return list(self._samples)

    def samples(self, split: str) -> list[Sample]:
        self._check_split(split)
        return list(self._samples[split])

    # scene clauses of the captions, as the embedded world's captions end (Diff-II's "world" suffixes)
    SCENES = ("on a plain background", "in bright light", "seen from the side")

    def captions(self, image_ids: Sequence[str]) -> list[str]:
        """A world-style caption per image, ``a <class> <meta>, <scene>`` (scene from the image's index)."""
        return [f"a {self.card.prompt_name(self._ids[i].label)} {self.card.meta}, "
                f"{self.SCENES[int(i.rsplit('/', 1)[1]) % len(self.SCENES)]}" for i in image_ids]

    def load_image(self, image_id: str) -> Image.Image:
        from augbench.run.seeding import derive_seed

        if image_id not in self._ids:
            from augbench.data.core import DataError

            raise DataError(f"tiny dataset has no image {image_id!r}")
        label = self._ids[image_id].label
        rng = np.random.default_rng(derive_seed("tiny-image", image_id) % (2**32))
        hue = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 31 + 160) % 256], dtype=np.float64)
        img = hue + rng.normal(0, 20, size=(self.size, self.size, 3))
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB")


def tiny_subset(source: ImageSource, split: str = "train", protocol: str = "full") -> Subset:
    """All samples of ``split`` as a ``Subset``."""
    return Subset.of_source(source, split, protocol, {}, tuple(source.samples(split)))


# --- tiny Stable Diffusion ------------------------------------------------------------------------


def tiny_sd_components(seed: int = 0, *, cross_attention_dim: int = 32) -> dict[str, Any]:
    """Tiny random ``StableDiffusionPipeline`` components built from configs (diffusers test style).

    UNet2DConditionModel (16, 32) with one cross-attention level, AutoencoderKL (16, 32) (latent
    down-sampling factor 2), CLIPTextModel with hidden size 32 and the real CLIP vocabulary
    (49 408 tokens), the offline CLIP BPE tokenizer, and SD v1.5's noise schedule (METHODS_SPEC §1.1)
    in a DDIM scheduler config. ``torch.manual_seed(seed)`` before each component, as diffusers does.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from augbench.diffusion.tokenizer import build_clip_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[16, 32],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            hidden_size=cross_attention_dim,
            intermediate_size=37,
            layer_norm_eps=1e-5,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=49408,
            max_position_embeddings=77,
        )
    )
    return {
        "unet": unet,
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": text_encoder.eval(),
        "tokenizer": build_clip_tokenizer(77),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def save_tiny_sd_pipeline(path: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it to ``path`` (diffusers format); returns ``path``.

    Load it back with ``StableDiffusionPipeline.from_pretrained(path, local_files_only=True)``.
    """
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    if (path / "model_index.json").is_file():
        return path
    pipe = StableDiffusionPipeline(**tiny_sd_components(seed), requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def cached_tiny_sd_pipeline(seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """``save_tiny_sd_pipeline`` into a shared cache folder (built once, then reused by every test).

    The folder is keyed by the seed and the diffusers/transformers versions and is created atomically
    (built in a temporary folder, then renamed), so concurrent test processes are safe.

    Args:
        seed: component seed.
        cache_dir: parent folder (default ``$AUGBENCH_CACHE`` or ``<tmp>/augbench-cache``).
    """
    import diffusers

    return _cached_folder("tiny_sd", f"v{_TINY_SD_VERSION}-seed{seed}-d{diffusers.__version__}", "model_index.json",
                          lambda path: save_tiny_sd_pipeline(path, seed), cache_dir)


def save_tiny_clip(path: str | Path, seed: int = 0) -> Path:
    """A tiny random transformers ``CLIPModel`` (32-px images, real CLIP BPE tokenizer) saved to ``path``."""
    from transformers import CLIPConfig, CLIPModel

    from augbench.diffusion.tokenizer import build_clip_tokenizer

    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPModel(cfg)
    path = Path(path)
    model.save_pretrained(path)
    build_clip_tokenizer().save_pretrained(path)
    return path


def cached_tiny_clip(seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """``save_tiny_clip`` into the shared test cache (built once, atomically)."""
    return _cached_folder("tiny_clip", f"v1-seed{seed}", "config.json", lambda path: save_tiny_clip(path, seed),
                          cache_dir)


def _cached_folder(kind: str, name: str, marker: str, build: Callable[[Path], Any],
                   cache_dir: str | Path | None) -> Path:
    import shutil
    import tempfile

    import transformers

    base = Path(cache_dir) if cache_dir else Path(os.environ.get("AUGBENCH_CACHE") or Path(tempfile.gettempdir()) / "augbench-cache")
    target = base / kind / f"{name}-t{transformers.__version__}"
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    try:
        build(tmp / "out")
        try:
            os.replace(tmp / "out", target)
        except OSError:  # another process won the race
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def tiny_profile(pipeline_path: str | Path, *, image_size: int = 32, steps: int = 2, **kwargs: Any) -> Profile:
    """An embedded-like profile pointing at a tiny saved pipeline and a tiny CLIP (fp32, local files only)."""
    kwargs.setdefault("clip", str(cached_tiny_clip()))
    # a second tiny pipeline stands in for SD v1.4 (DA-Fusion's daf_sd14 preset)
    kwargs.setdefault("extra", {"sd14_pipeline": str(cached_tiny_sd_pipeline(seed=1))})
    return Profile(
        name="tiny",
        pipeline=str(pipeline_path),
        lpips="effnet_features",
        classifier="test_resnet",
        classifier_weights="none",
        image_size=image_size,
        classifier_size=image_size,
        num_inference_steps=steps,
        local_files_only=True,
        dtype="float32",
        **kwargs,
    )

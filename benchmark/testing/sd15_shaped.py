"""Stable Diffusion v1.5's architecture with random weights, at full size or with reduced widths.

What the sd15 profile loads, built from configs (no download): diffusers ``UNet2DConditionModel`` with
SD1.5's block types (three ``CrossAttnDownBlock2D`` + ``DownBlock2D``, mirrored up blocks), two layers
per block, eight attention heads, cross-attention width 768; SD's ``AutoencoderKL`` (four encoder /
decoder blocks, latent factor 8, 4 latent channels, scaling factor 0.18215); a CLIP ViT-L/14-style text
encoder (hidden size 768, 77 positions, the real CLIP BPE tokenizer, offline); SD1.5's PNDM noise schedule
(scaled-linear betas 0.00085-0.012, ``steps_offset`` 1). :func:`sd15_components` ``("full")`` is the
real size (UNet 320/640/1280/1280, 860 M parameters; text encoder 12 layers) that
``tools/make_random_sd15.py`` saves for a CPU rehearsal; ``("tiny")`` keeps every block type, the 768
cross-attention and text widths and the tokenizer with narrow channels and few layers, for tests of the
sd15 code path (``tests/test_sd15_path.py``).

:func:`clip_vit_b32_config` is the CLIP the sd15 profile scores with (ViT-B/32: 224 px, patch 32,
projection 512), full or tiny.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["SIZES", "cached_sd15_shaped_pipeline", "clip_vit_b32_config", "save_sd15_shaped_clip",
           "save_sd15_shaped_pipeline", "sd15_components", "unet_config"]

# per size: UNet / VAE channels, UNet layers per block, text-encoder layers and MLP width, group-norm groups
SIZES: dict[str, dict[str, Any]] = {
    "full": {"unet": (320, 640, 1280, 1280), "vae": (128, 256, 512, 512), "layers": 2, "text_layers": 12,
             "text_mlp": 3072, "groups": 32, "vae_layers": 2},
    "tiny": {"unet": (32, 32, 64, 64), "vae": (32, 32, 32, 32), "layers": 1, "text_layers": 1, "text_mlp": 64,
             "groups": 32, "vae_layers": 1},
}


def unet_config(size: str = "full") -> dict[str, Any]:
    """``UNet2DConditionModel`` keyword arguments of SD1.5's UNet (stable-diffusion-v1-5 ``unet/config.json``), at
    full size or with the narrow channels of ``SIZES["tiny"]``; ``tools/perf.py`` builds its CUDA section from it."""
    s = SIZES[size]
    return {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": s["layers"],
            "block_out_channels": s["unet"], "attention_head_dim": 8, "cross_attention_dim": 768,
            "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            "norm_num_groups": s["groups"]}


def sd15_components(size: str = "tiny", seed: int = 0) -> dict[str, Any]:
    """``StableDiffusionPipeline`` components in SD1.5's architecture (module docstring); random weights
    drawn after ``torch.manual_seed(seed)`` per component, the global RNG restored afterwards."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from augbench.diffusion.tokenizer import build_clip_tokenizer

    if size not in SIZES:
        raise ValueError(f"size {size!r}: expected one of {', '.join(SIZES)}")
    s = SIZES[size]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config(size))
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=s["vae"],
            layers_per_block=s["vae_layers"], down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=s["groups"], sample_size=512,
            scaling_factor=0.18215)
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=s["text_mlp"], num_hidden_layers=s["text_layers"],
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
            bos_token_id=49406, eos_token_id=49407, pad_token_id=1))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder.eval(), "tokenizer": build_clip_tokenizer(77),
            "scheduler": scheduler, "safety_checker": None, "feature_extractor": None, "image_encoder": None}


def save_sd15_shaped_pipeline(path: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """:func:`sd15_components` saved as a diffusers pipeline folder (safetensors); returns ``path``."""
    from diffusers import StableDiffusionPipeline

    path = Path(path)
    if (path / "model_index.json").is_file():
        return path
    pipe = StableDiffusionPipeline(**sd15_components(size, seed), requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def clip_vit_b32_config(size: str = "tiny"):
    """``CLIPConfig`` of OpenAI CLIP ViT-B/32 (``openai/clip-vit-base-patch32``), or a narrow copy at 224 px."""
    from transformers import CLIPConfig

    if size == "full":
        return CLIPConfig(text_config={"vocab_size": 49408, "max_position_embeddings": 77},
                          vision_config={"image_size": 224, "patch_size": 32}, projection_dim=512)
    return CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77},
        vision_config={"image_size": 224, "patch_size": 32, "hidden_size": 64, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        projection_dim=32)


def save_sd15_shaped_clip(path: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """A random ``CLIPModel`` of :func:`clip_vit_b32_config` with the CLIP tokenizer and image processor."""
    from transformers import CLIPImageProcessor, CLIPModel

    from augbench.diffusion.tokenizer import build_clip_tokenizer

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(clip_vit_b32_config(size))
    model.save_pretrained(path, safe_serialization=True)
    build_clip_tokenizer(77).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(path)
    return path


def cached_sd15_shaped_pipeline(seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """The tiny SD1.5-shaped pipeline in the shared test cache (built once, atomically)."""
    import diffusers

    from augbench.testing.tiny import _cached_folder

    return _cached_folder("sd15_shaped", f"v1-seed{seed}-d{diffusers.__version__}", "model_index.json",
                          lambda p: save_sd15_shaped_pipeline(p, "tiny", seed), cache_dir)


def save_sd15_shaped_instruct_pipeline(path: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """An SD1.5-shaped random ``StableDiffusionInstructPix2PixPipeline`` (``timbrooks/instruct-pix2pix`` is SD1.5
    with an 8-channel ``conv_in``): :func:`sd15_components` with the UNet widened by
    ``augbench.diffusion.instruct.instruct_unet`` and the repo's Euler-ancestral scheduler; returns ``path``."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    from augbench.diffusion.instruct import instruct_unet

    path = Path(path)
    if (path / "model_index.json").is_file():
        return path
    parts = sd15_components(size, seed)
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"],
        unet=instruct_unet(parts["unet"]), scheduler=EulerAncestralDiscreteScheduler.from_config(parts["scheduler"].config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def cached_sd15_shaped_instruct_pipeline(seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """The tiny SD1.5-shaped InstructPix2Pix pipeline in the shared test cache (built once, atomically)."""
    import diffusers

    from augbench.testing.tiny import _cached_folder

    return _cached_folder("sd15_shaped_instruct", f"v1-seed{seed}-d{diffusers.__version__}", "model_index.json",
                          lambda p: save_sd15_shaped_instruct_pipeline(p, "tiny", seed), cache_dir)


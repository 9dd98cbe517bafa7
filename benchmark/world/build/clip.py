"""The CLIP stage: a tiny transformers ``CLIPModel`` (image and text towers) trained contrastively on
the corpus captions; its frozen text tower is the diffusion pipeline's text encoder.

Its pixel input is OpenAI CLIP's normalisation, the one the CLIP-score metric feeds
(:func:`augbench.metrics.clip.clip_normalize`, images already at the model's size), and the saved
image-processor config records the same mean and std.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augbench.metrics.clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, clip_normalize
from augbench.run.seeding import derive_seed, make_generator
from augbench.world.build.loops import Log, cosine_with_warmup, log_progress, seeded_init
from augbench.world.build.recipe import BuildConfig


def make_clip(cfg: BuildConfig, tokenizer):
    """An untrained ``CLIPModel`` of the recipe's sizes (4 heads per tower, 8 px patches, 77 tokens)."""
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_hidden * 4,
                num_hidden_layers=cfg.text_layers, num_attention_heads=4, max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(image_size=cfg.image_size, patch_size=8, hidden_size=cfg.vision_hidden,
                  intermediate_size=cfg.vision_hidden * 4, num_hidden_layers=cfg.vision_layers, num_attention_heads=4)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)
    return CLIPModel(config)


def train_clip(cfg: BuildConfig, images: torch.Tensor, captions: list[str], tokenizer, log: Log = print):
    """Contrastive (InfoNCE, learned temperature) training of both towers on the corpus.

    With ``cfg.clip_hard_negatives`` a share of the batch's captions also contributes a hard negative
    (the caption with one attribute changed, :func:`augbench.world.render.contradict`): extra
    columns of the image-to-text logits, as in NegCLIP; the text-to-image loss is over the batch.
    """
    from augbench.world.render import contradict

    model = seeded_init(cfg.seed, "clip", lambda: make_clip(cfg, tokenizer)).to(cfg.device)
    tokens = _caption_tokenizer(cfg, tokenizer, captions)
    ids, mask = tokens(captions)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.clip_lr, weight_decay=0.1, betas=(0.9, 0.98))
    sched = cosine_with_warmup(opt, cfg.clip_steps, warmup=max(1, cfg.clip_steps // 20))
    gen = make_generator(derive_seed(cfg.seed, "clip-batches"))
    negatives_rng = np.random.default_rng(derive_seed(cfg.seed, "clip-negatives"))
    n_neg = round(cfg.clip_batch * cfg.clip_hard_negatives)
    model.train()
    t0 = time.time()
    losses = []
    for step in range(cfg.clip_steps):
        idx = torch.randint(0, len(captions), (cfg.clip_batch,), generator=gen)
        x = images[idx]
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(3)  # captions never mention the facing direction
        negatives = [contradict(captions[int(i)], negatives_rng) for i in idx[:n_neg]]
        negatives = [n for n in negatives if n is not None]
        text_ids, text_mask = ids[idx], mask[idx]
        if negatives:
            neg_ids, neg_mask = tokens(negatives)
            text_ids, text_mask = torch.cat([text_ids, neg_ids]), torch.cat([text_mask, neg_mask])
        out = model(input_ids=text_ids, attention_mask=text_mask, pixel_values=clip_normalize(x).to(cfg.device))
        loss = _contrastive_loss(out.logits_per_image)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        log_progress(log, "clip", step, cfg.clip_steps, losses, t0)
    model.eval()
    return model, {"final_loss": float(np.mean(losses[-50:])), "seconds": time.time() - t0}


def _caption_tokenizer(cfg: BuildConfig, tokenizer, captions: list[str]):
    """``texts -> (input_ids, attention_mask)`` padded to the corpus's longest caption, not to 77.

    Sequences are shorter than 77 in practice: training on the longest real length (plus room for an
    edit with hard negatives) is a pure speed-up, as the causal text transformer's pooled EOS output
    ignores later padding.
    """
    length = max(tokenizer(captions, padding=False, truncation=True, max_length=77, return_length=True)["length"])
    length += 4 if cfg.clip_hard_negatives > 0 else 0

    def tokens(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = tokenizer(texts, padding="max_length", max_length=min(length, 77), truncation=True, return_tensors="pt")
        return tok.input_ids.to(cfg.device), tok.attention_mask.to(cfg.device)

    return tokens


def _contrastive_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where image i matches text i; text columns past the batch are negatives only."""
    batch = logits_per_image.shape[0]
    target = torch.arange(batch, device=logits_per_image.device)
    image_to_text = F.cross_entropy(logits_per_image, target)
    text_to_image = F.cross_entropy(logits_per_image[:, :batch].t(), target)
    return (image_to_text + text_to_image) / 2


def text_encoder_of(clip):
    """The pipeline's ``CLIPTextModel`` (eval, frozen) holding ``clip``'s text tower weights."""
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel(clip.config.text_config)
    # transformers 5 flattened CLIPTextModel (no .text_model); 4.x wraps the tower in .text_model
    getattr(text_encoder, "text_model", text_encoder).load_state_dict(clip.text_model.state_dict())
    return text_encoder.eval().requires_grad_(False)


@torch.no_grad()
def encode_texts(text_encoder, tokenizer, captions: list[str], batch: int = 512) -> torch.Tensor:
    """Last hidden states of the frozen text tower at 77 tokens, exactly as the pipeline encodes prompts."""
    out = []
    for i in range(0, len(captions), batch):
        ids = tokenizer(captions[i:i + batch], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        out.append(text_encoder(ids.to(text_encoder.device))[0].cpu())
    return torch.cat(out)


def save_clip(clip, tokenizer, cfg: BuildConfig, folder: Path) -> None:
    """Save the CLIP model (fp16), its tokenizer and an image-processor config to ``folder``."""
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": cfg.image_size},
                                   crop_size={"height": cfg.image_size, "width": cfg.image_size},
                                   image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD), do_convert_rgb=True)
    clip.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)

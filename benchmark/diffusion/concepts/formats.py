"""Concept files in the reference formats, and applying them to a freshly loaded pipeline.

``lora_ti`` (Diff-Mix / Diff-II / NoiseCutMix format, METHODS_SPEC §1.4 "Outputs"):

* ``pytorch_lora_weights.safetensors`` — the UNet's LoRA state dict as diffusers writes it
  (``StableDiffusionPipeline.save_lora_weights``); loads with ``pipe.load_lora_weights(folder)``.
  Diff-Mix's own files (diffusers 0.25 ``LoRAAttnProcessor`` keys, ``...processor.to_q_lora.down.weight``)
  load through the same call, which converts them.
* ``learned_embeds-steps-last.bin`` — ``torch.save`` of ``{"learned_embeds_dict": {token: vector},
  "name2placeholder": {class name: token}, "placeholder2name": {token: class name}}``.

``ti`` (DA-Fusion, METHODS_SPEC §1.5): ``learned_embeds.bin`` — ``torch.save`` of ``{token: vector}``
with one entry per class, the per-(dataset, seed, k) file DA-Fusion's ``aggregate_embeddings.py``
merges the per-class diffusers textual-inversion files into. Tokens are ``<class_name_with_underscores>``
(lower case: the CLIP tokenizer matches added tokens case-insensitively).

Class-name keys are matched after Diff-Mix's normalisation (``/`` and ``_`` become spaces; case-insensitive
here). This module never imports ``augbench.diffusion.pipelines``: it only changes the pipeline it is given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["LORA_FILE", "TI_EMBEDS_FILE", "TI_FILE", "apply_concepts", "dm_token", "missing_files",
           "read_token_embeddings", "required_files", "ti_token", "token_file", "write_lora_ti_embeds",
           "write_ti_embeds"]

LORA_FILE = "pytorch_lora_weights.safetensors"
TI_EMBEDS_FILE = "learned_embeds-steps-last.bin"  # lora_ti's tokens (Diff-Mix name)
TI_FILE = "learned_embeds.bin"  # ti's tokens (DA-Fusion aggregate)


def required_files(kind: str) -> tuple[str, ...]:
    return (LORA_FILE, TI_EMBEDS_FILE) if kind == "lora_ti" else (TI_FILE,)


def missing_files(kind: str, folder: Path) -> list[str]:
    """Required files absent from ``folder`` (a numbered ``learned_embeds-steps-N.bin`` stands in for ``-last``)."""
    return [n for n in required_files(kind)
            if not (Path(folder) / n).is_file() and not (n == TI_EMBEDS_FILE and token_file(kind, folder).is_file())]


def dm_token(label: int) -> str:
    """Diff-Mix's token of class ``label``: ``<class_{label}>`` [DM train_lora.py:59]."""
    return f"<class_{int(label)}>"


def ti_token(name: str) -> str:
    """DA-Fusion's token of a class: ``<class_name_with_underscores>`` (lower case)."""
    return "<" + re.sub(r"\s+", "_", name.strip()).lower() + ">"


def normalise_name(name: str) -> str:
    return " ".join(name.replace("/", " ").replace("_", " ").split()).lower()


def write_lora_ti_embeds(path: Path, tokens: Sequence[str], vectors: torch.Tensor, class_names: Sequence[str]) -> None:
    torch.save({"learned_embeds_dict": {t: v.detach().cpu().float().clone() for t, v in zip(tokens, vectors)},
                "name2placeholder": dict(zip(class_names, tokens)),
                "placeholder2name": dict(zip(tokens, class_names))}, path)


def write_ti_embeds(path: Path, tokens: Sequence[str], vectors: torch.Tensor) -> None:
    torch.save({t: v.detach().cpu().float().clone() for t, v in zip(tokens, vectors)}, path)


def token_file(kind: str, folder: Path) -> Path:
    """The token file of a folder: ``learned_embeds-steps-last.bin``, else the highest
    ``learned_embeds-steps-{N}.bin`` (Diff-II and NoiseCutMix load ``-steps-35000``) for ``lora_ti``;
    ``learned_embeds.bin`` for ``ti``."""
    folder = Path(folder)
    if kind != "lora_ti":
        return folder / TI_FILE
    if (folder / TI_EMBEDS_FILE).is_file():
        return folder / TI_EMBEDS_FILE
    numbered = [(int(m.group(1)), p) for p in folder.glob("learned_embeds-steps-*.bin")
                if (m := re.fullmatch(r"learned_embeds-steps-(\d+)\.bin", p.name))]
    return max(numbered)[1] if numbered else folder / TI_EMBEDS_FILE


def read_token_embeddings(kind: str, folder: Path, class_names: Sequence[str]) -> dict[int, tuple[str, torch.Tensor]]:
    """``{label: (token, vector)}`` for every class, from a built or imported folder.

    Raises:
        ValueError: a file is missing, unreadable, or a class has no token (the message names the file).
    """
    path = token_file(kind, folder)
    if not path.is_file():
        raise ValueError(f"{path}: missing; a {kind} artifact folder holds {', '.join(required_files(kind))}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure: name the file
        raise ValueError(f"{path}: cannot be read as a torch file of token embeddings ({exc})") from exc
    if kind == "lora_ti":
        if not isinstance(data, dict) or "learned_embeds_dict" not in data:
            raise ValueError(f"{path}: expected a dict with 'learned_embeds_dict' (Diff-Mix format), "
                             f"got {type(data).__name__} with keys {list(data)[:5] if isinstance(data, dict) else '-'}")
        vectors = data["learned_embeds_dict"]
        by_name = {normalise_name(k): v for k, v in (data.get("name2placeholder") or {}).items()}
    else:
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise ValueError(f"{path}: expected a dict token -> embedding vector (DA-Fusion format)")
        vectors = data
        by_name = {}
    lowered = {k.lower(): k for k in vectors}
    out: dict[int, tuple[str, torch.Tensor]] = {}
    for label, name in enumerate(class_names):
        candidates = [by_name.get(normalise_name(name)), dm_token(label), ti_token(name)]
        token = next((lowered[c.lower()] for c in candidates if c and c.lower() in lowered), None)
        if token is None:
            raise ValueError(f"{path}: no token for class {label} {name!r} (looked for "
                             f"{', '.join(repr(c) for c in candidates if c)}; the file has {len(vectors)} tokens, "
                             f"e.g. {', '.join(list(vectors)[:3])})")
        vec = vectors[token]
        out[label] = (token, vec.reshape(-1).float())
    return out


@torch.no_grad()
def apply_concepts(pipe: Any, artifact: Any, class_names: Sequence[str]) -> dict[int, str]:
    """Add the artifact's class tokens (and LoRA) to ``pipe`` -- a pipeline loaded for it alone.

    Returns:
        ``{label: token}``, the string to put in a prompt for each class.
    """
    folder = Path(artifact.folder)
    tokens = read_token_embeddings(artifact.kind, folder, class_names)
    tokenizer, text_encoder = pipe.tokenizer, pipe.text_encoder
    strings = [tokens[i][0] for i in range(len(class_names))]
    tokenizer.add_tokens(strings)
    # new rows and LoRA layers draw a default init from the global RNG before they are overwritten: fork it
    with torch.random.fork_rng(devices=[]):
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ids = tokenizer.convert_tokens_to_ids(strings)
    weight = text_encoder.get_input_embeddings().weight
    for label, token_id in enumerate(ids):
        vec = tokens[label][1]
        if vec.numel() != weight.shape[1]:
            raise ValueError(f"{folder}: token {strings[label]!r} has {vec.numel()} dimensions, the text encoder "
                             f"{weight.shape[1]}: the artifact was trained on another base model")
        weight[token_id] = vec.to(weight.dtype)
    if artifact.kind == "lora_ti":
        path = folder / LORA_FILE
        if not path.is_file():
            raise ValueError(f"{path}: missing; a lora_ti artifact folder holds {', '.join(required_files('lora_ti'))}")
        try:
            with torch.random.fork_rng(devices=[]):
                pipe.load_lora_weights(str(folder), weight_name=LORA_FILE, adapter_name="concepts")
        except Exception as exc:  # noqa: BLE001 - name the file whatever went wrong
            raise ValueError(f"{path}: cannot be loaded as a LoRA of this pipeline's UNet ({exc})") from exc
    return dict(enumerate(strings))

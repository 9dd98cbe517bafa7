"""What keeps concept learning in memory on SD1.5-size models, and the one-line error when it still does not fit.

The knobs are recipe keys (``augbench.diffusion.concepts.recipes``); a suite refines them per kind with a
``[concepts.ti]`` / ``[concepts.lora_ti]`` table (``profile.extra["concept_recipes"]``). None changes what
is learned beyond floating-point summation order:

* ``micro_batch`` -- rows per forward + backward. A step's rows (textual inversion: ``batch_size`` images
  of *every* class, 800 rows for CUB's 200 classes at batch 4) are split into micro-batches whose
  gradients accumulate before the one optimiser step. Every random number of the step is drawn for the
  whole step first, in the order of the unchunked step, and each row's MSE carries its weight in the
  step's loss (``1 / rows of its class`` for ``ti``, ``1 / batch`` for ``lora_ti``), so the summed
  micro-batch losses are the step's loss and ``micro_batch = 0`` (all rows at once) gives bit-identical
  gradients to the loop before this key existed (:func:`row_chunks`).
* ``encode_batch`` -- images per VAE encode call (posterior moments of square images, per-step crops
  of the others); 32 images at 512 px are a 4 GiB activation. (diffusers' VAE slicing is the same
  bound for one call's batch, and tiling is for images above the VAE's 512 px tile: neither is needed.)
* ``gradient_checkpointing`` -- diffusers' ``unet.enable_gradient_checkpointing()`` (+ the CLIP text
  encoder's activation checkpointing for ``ti``, whose tokens sit under every encoder layer): the
  activations of each block are recomputed in the backward instead of kept, the same gradients
  (DA-Fusion trains with it, METHODS_SPEC §1.5). transformers checkpoints only in training mode, so the
  modules are put in ``train()`` (as diffusers' ``textual_inversion.py`` does): SD's UNet and CLIP text
  encoder have no dropout (rates 0), so nothing else changes, and a module with active dropout is
  refused (:func:`enable_checkpointing`).
* Attention: diffusers' default processor is ``AttnProcessor2_0`` (PyTorch SDPA, flash / memory-efficient
  kernels on CUDA) and peft's LoRA wraps the projections, not the processor; transformers' CLIP uses
  ``sdpa`` too. Nothing is re-implemented here (``tests/test_concepts_memory.py`` checks both).
* fp16 on CUDA (``mixed_precision = "fp16"``): the frozen weights -- VAE and UNet for ``ti``; VAE, the
  UNet's base weights and the text encoder except its trained input embedding for ``lora_ti`` -- are
  kept in fp16 and every trained parameter in fp32 under fp16 autocast, as diffusers'
  ``textual_inversion.py`` / ``train_text_to_image_lora.py`` do (:func:`cast_frozen`); both kinds train
  with a GradScaler (accelerate's fp16 mode, which Diff-Mix and DA-Fusion use), which needs the trained
  parameters' gradients in fp32. The CPU path stays fp32 throughout.

Out of memory: a step that raises ``torch.OutOfMemoryError`` or a ``RuntimeError`` naming the CPU
allocator's failure becomes a :class:`ConceptMemoryError`, one line naming the stage, the rows (or images)
it tried, the resolution and the key that lowers it (:func:`memory_guard`).
"""

from __future__ import annotations

import traceback
from typing import Any

import torch

__all__ = ["ConceptMemoryError", "cast_frozen", "enable_checkpointing", "is_out_of_memory", "memory_guard",
           "row_chunks"]



class ConceptMemoryError(RuntimeError):
    """Concept learning ran out of memory; the message is one line naming the suite key that lowers it
    (``names_its_knob``: the executors print it as it is instead of their per-stage advice)."""

    names_its_knob = True


def is_out_of_memory(exc: BaseException) -> bool:
    """``exc`` is an allocator failure (``augbench.run.memory.is_out_of_memory``) not yet turned into this module's
    one line (a ``ConceptMemoryError`` says "out of memory" itself)."""
    from augbench.run.memory import is_out_of_memory as allocator_failed

    return not isinstance(exc, ConceptMemoryError) and allocator_failed(exc)


def row_chunks(rows: int, micro_batch: int) -> list[slice]:
    """Slices of ``range(rows)`` of at most ``micro_batch`` rows each (``0``: one slice of every row)."""
    size = rows if micro_batch <= 0 else int(micro_batch)
    return [slice(i, min(i + size, rows)) for i in range(0, rows, max(size, 1))]


def _suggestion(kind: str, what: str, tried: int, recipe: dict[str, Any], device: str, total: int) -> str:
    table = f"[concepts.{kind}]"
    if what == "encode":
        if tried > 1:
            return f"set {table} encode_batch = {max(1, tried // 2)} in the suite"
        return f"lower {table} resolution (now {recipe['resolution']}) in the suite"
    if tried > 1:
        return (f"set {table} micro_batch = {max(1, tried // 2)} in the suite (rows per forward + backward; "
                f"0 = all {total} rows of a step at once)")
    if not recipe.get("gradient_checkpointing"):
        return f"set {table} gradient_checkpointing = true in the suite"
    if torch.device(device).type == "cuda" and recipe.get("mixed_precision") != "fp16":
        return f"set {table} mixed_precision = \"fp16\" in the suite"
    return f"lower {table} resolution (now {recipe['resolution']}) in the suite, or use a device with more memory"


class memory_guard:  # noqa: N801 - used as a context manager, reads as a function
    """Turn an out-of-memory error inside the block into a one-line :class:`ConceptMemoryError`.

    Args:
        kind: ``ti`` or ``lora_ti`` (names the suite table).
        what: ``step`` (a forward + backward of ``tried`` rows) or ``encode`` (a VAE call of ``tried`` images).
        tried: rows (images) per call that failed.
        recipe: the validated recipe (resolution, gradient_checkpointing, mixed_precision).
        device: the device trained on.
        total: all rows of one step (for the ``micro_batch = 0`` hint).

    The original error stays the new one's ``__cause__`` (for the run's traceback log), with the locals
    of the frames it unwound cleared so their activations are freed before the next cell.
    """

    def __init__(self, kind: str, what: str, tried: int, recipe: dict[str, Any], device: str, total: int = 0):
        self.kind, self.what, self.tried, self.recipe, self.device = kind, what, tried, recipe, str(device)
        self.total = total or tried

    def __enter__(self) -> memory_guard:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not is_out_of_memory(exc):
            return False
        traceback.clear_frames(tb)
        if torch.device(self.device).type == "cuda":
            torch.cuda.empty_cache()
        res = self.recipe["resolution"]
        action = (f"encoding {self.tried} image(s) per VAE call" if self.what == "encode"
                  else f"a forward + backward of {self.tried} row(s)")
        hint = _suggestion(self.kind, self.what, self.tried, self.recipe, self.device, self.total)
        raise ConceptMemoryError(f"concept learning ({self.kind}): out of memory on {self.device} in {action} at "
                                 f"{res} px; {hint}") from exc


def cast_frozen(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Frozen floating-point parameters of ``module`` to ``dtype`` in place; trained ones stay as they are."""
    for p in module.parameters():
        if not p.requires_grad and p.is_floating_point():
            p.data = p.data.to(dtype)


def enable_checkpointing(unet: Any, text_encoder: Any | None = None) -> None:
    """Gradient checkpointing of the UNet (and, given, the text encoder), both put in ``train()`` (see above).

    Raises:
        ValueError: a module has active dropout, so ``train()`` would change what it computes.
    """
    for module in (unet, text_encoder):
        if module is not None and (where := _active_dropout(module)):
            raise ValueError(f"gradient_checkpointing puts {type(module).__name__} in training mode, and its {where} "
                             "would then change the result; set gradient_checkpointing = false in the recipe")
    unet.enable_gradient_checkpointing()
    unet.train()
    if text_encoder is not None:
        enable = getattr(text_encoder, "activation_checkpointing_enable", None)
        if enable is not None:  # transformers >= 5.x; gradient_checkpointing_enable is its deprecated alias
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            text_encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        text_encoder.train()


def _active_dropout(module: Any) -> str | None:
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Dropout) and m.p > 0:
            return f"dropout {name} (p = {m.p})"
    config = getattr(module, "config", None)
    for key in ("attention_dropout", "dropout", "hidden_dropout"):
        rate = getattr(config, key, 0) if config is not None else 0
        if isinstance(rate, (int, float)) and rate > 0:
            return f"config {key} = {rate}"
    return None

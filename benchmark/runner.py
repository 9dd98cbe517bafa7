"""The suite runner: a grid of cells, each a chain of cached, resumable stages (DESIGN.md, "Data flow").

A *suite* (``benchmark/suites/<name>.toml``) declares datasets, protocol parameters, methods, seeds
and the classifier recipe; ``[profiles.<name>]`` overlays it for a profile. Every cell
(dataset × protocol params × method × seed × backbone) runs these stages:

1. ``subset``   — the protocol's training subset (manifest of image ids, hashed), plus the validation
   split carved from it for model selection (``selection = val_split``);
2. ``generate`` — an offline method's synthetic set (images + soft labels + provenance), generated for
   the *training part only* so validation images never reach a generator; shared by every cell that
   needs the same set (``sd_random``, ``sd_random+cutmix`` and ``sd_random+mixup`` share one);
3. ``metrics``  — synthetic-set metrics: LPIPS diversity, CLIP score, oracle-free statistics;
4. ``train``    — classifier training and evaluation (accuracy, per-class; groups where defined);
5. ``record``   — one JSON record per cell, written atomically.

Each stage's output lives under ``<run-dir>/cache/<stage>/<key>`` where ``key`` is the content hash of
everything the stage depends on (configs, subset manifest, model paths, package version). A stage whose
output exists is reused, and files are written to a temporary name and renamed, so an interrupted run
never reads a half-written file and a second run recomputes nothing that finished.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import platform
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark import __version__
from benchmark.hashing import content_hash
from benchmark.seeding import derive_seed

if TYPE_CHECKING:  # training imports torch and timm; the runner loads it only when a cell runs
    from benchmark.training import TrainConfig

SUITES_DIR = Path(__file__).resolve().parent / "suites"
RECORD_FORMAT = "augbench.record/1"


class SuiteError(ValueError):
    """A suite spec is missing or invalid."""


# --- suites ------------------------------------------------------------------------------------------

def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str, profile: str = "embedded") -> dict[str, Any]:
    """The suite spec as a dict, with the profile's overlay applied."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise SuiteError(f"unknown suite {name_or_path!r}; built-in suites: {', '.join(list_suites())} "
                         "(or pass the path of a suite TOML file)")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    spec = dict(raw.get("suite", {}))
    overlay = dict(raw.get("profiles", {}).get(profile, {}))
    # [profiles.<p>.methods_params.<family>] refines [methods_params.<family>] key by key
    suite_params, profile_params = raw.get("methods_params", {}), overlay.pop("methods_params", {})
    spec.update(overlay)
    spec["methods_params"] = {family: {**suite_params.get(family, {}), **profile_params.get(family, {})}
                              for family in {*suite_params, *profile_params}}
    spec.setdefault("name", path.stem)
    for key in ("protocol", "datasets", "methods", "seeds"):
        if key not in spec:
            raise SuiteError(f"{path}: [suite] needs {key!r}")
    if spec["protocol"] not in PROTOCOLS:
        raise SuiteError(f"{path}: unknown protocol {spec['protocol']!r}; expected one of {', '.join(PROTOCOLS)}")
    from benchmark.training import RECIPES

    if spec.get("recipe", "embedded") not in RECIPES:
        close = difflib.get_close_matches(str(spec.get("recipe")), list(RECIPES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SuiteError(f"{path} (profile {profile}): unknown recipe {spec.get('recipe')!r}{hint}; "
                         f"expected one of {', '.join(RECIPES)}")
    return spec


PROTOCOLS = ("few_shot", "long_tail", "waterbirds", "full_data")


@dataclass
class RunOptions:
    suite: str
    profile: str = "embedded"
    methods: list[str] | None = None
    seeds: list[int] | None = None
    run_dir: str | None = None
    executor: str = "local"
    data_root: str | None = None
    datasets_dir: str | None = None
    device: str | None = None
    datasets: list[str] | None = None
    shots: list[int] | None = None
    epochs: int | None = None
    batch_size: int | None = None
    # --executor ray: cluster address (None: RAY_ADDRESS or a local instance) and resources per task
    ray_address: str | None = None
    ray_cpus_per_task: float = 1
    ray_gpus_per_task: float = 0
    log: Any = None


@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    suite: str
    profile: str
    dataset: str
    protocol: str
    protocol_params: tuple[tuple[str, Any], ...]
    method: str
    seed: int

    @property
    def key(self) -> str:
        params = "-".join(f"{k}{v}" for k, v in self.protocol_params)
        return f"{self.dataset}.{self.protocol}.{params}.{self.method}.seed{self.seed}".replace("/", "_")

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "profile": self.profile, "dataset": self.dataset, "protocol": self.protocol,
                "protocol_params": dict(self.protocol_params), "method": self.method, "seed": self.seed}


def _train_key_config(train_cfg: TrainConfig, has_synthetic: bool) -> dict[str, Any]:
    """The training config as it enters the train-stage cache key.

    Without a synthetic set the replacement mode and probability change nothing (METHODS_SPEC §4 only
    mixes real and synthetic images), so they are left out: editing them in a suite does not retrain
    ``original`` or the batch mixers.
    """
    cfg = train_cfg.to_dict()
    if not has_synthetic:
        cfg.pop("replacement_mode", None)
        cfg.pop("replacement_p", None)
    return cfg


def plan_cells(spec: Mapping[str, Any], opts: RunOptions) -> list[Cell]:
    datasets = opts.datasets or spec["datasets"]
    methods = opts.methods or spec["methods"]
    seeds = opts.seeds if opts.seeds is not None else spec["seeds"]
    protocol = spec["protocol"]
    if protocol in ("few_shot", "waterbirds"):
        grid = [(("shots", k),) for k in (opts.shots or spec.get("shots", [5]))]
    elif protocol == "long_tail":
        grid = [(("imbalance_factor", f),) for f in spec.get("imbalance_factors", [100, 20, 10])]
    elif protocol == "full_data":
        grid = [()]
    else:
        raise SuiteError(f"unknown protocol {protocol!r}")
    return [Cell(spec["name"], opts.profile, d, protocol, params, m, s)
            for d in datasets for params in grid for m in methods for s in seeds]


# --- stages ------------------------------------------------------------------------------------------

def draw_subset(source, protocol: str, seed: int, shots: int | None = None, imbalance_factor: float | None = None):
    """The protocol's training subset of ``source`` (METHODS_SPEC §6)."""
    from benchmark.data import protocols as P

    if protocol in ("few_shot", "waterbirds"):
        return P.few_shot(source, shots or 5, seed)
    if protocol == "long_tail":
        return P.long_tail(source, imbalance_factor or 100, seed)
    if protocol == "full_data":
        return P.full_data(source, seed)[0]
    raise SuiteError(f"unknown protocol {protocol!r}")


class StageCache:
    """``<root>/<stage>/<key>.json`` (or a folder) with atomic writes and a reuse log."""

    def __init__(self, root: Path, log):
        self.root = root
        self.log = log
        self.reused: list[str] = []
        self.computed: list[str] = []

    def path(self, stage: str, key: str, suffix: str = ".json") -> Path:
        return self.root / stage / f"{key}{suffix}"

    def load(self, stage: str, key: str) -> Any | None:
        p = self.path(stage, key)
        if p.is_file():
            self.reused.append(f"{stage}/{key}")
            return json.loads(p.read_text(encoding="utf-8"))
        return None

    def save(self, stage: str, key: str, value: Any) -> Any:
        self.computed.append(f"{stage}/{key}")
        write_json_atomic(self.path(stage, key), value)
        return value


def write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class _Images:
    """Decoded uint8 tensors of real images, decoded once per process (PERF_NOTES §6 item 11)."""

    def __init__(self):
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, source, image_ids: list[str]):
        import torch

        missing = [i for i in image_ids if (source.card.id, i) not in self._cache]
        for i in missing:
            arr = np.asarray(source.load_image(i).convert("RGB"), dtype=np.uint8)
            self._cache[(source.card.id, i)] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
        tensors = [self._cache[(source.card.id, i)] for i in image_ids]
        if len({tuple(t.shape) for t in tensors}) == 1:
            return torch.stack(tensors)
        return tensors  # mixed sizes: the training code resizes


IMAGES = _Images()


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "augbench": __version__}
    for name in ("torch", "torchvision", "diffusers", "transformers", "timm", "peft", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _method_params(spec: Mapping[str, Any], method_id: str) -> dict[str, dict[str, Any]]:
    """Suite-level parameter overrides for every family in ``method_id`` (``a+b`` compositions)."""
    out = {}
    for part in method_id.split("+"):
        family = part.split(".")[0]
        params = dict(spec.get("methods_params", {}).get(family, {}))
        if "." in part:  # an explicit preset in the id wins over the suite's preset
            params.pop("preset", None)
        out[family] = params
    return out


def _instantiate(registry, method_id: str, params: dict[str, dict[str, Any]]):
    """Create ``method_id`` with suite overrides; a suite ``preset`` becomes part of the id."""
    parts = []
    overrides: dict[str, dict[str, Any]] = {}
    for part in method_id.split("+"):
        family = part.split(".")[0]
        p = dict(params.get(family, {}))
        preset = p.pop("preset", None)
        parts.append(f"{family}.{preset}" if preset and "." not in part else part)
        overrides[family] = p
    full_id = "+".join(parts)
    if len(parts) == 1:
        return registry.create(full_id, params=overrides[parts[0].split(".")[0]]), full_id
    return registry.create(full_id, params=overrides), full_id


def long_tail_class_groups(subset, num_classes: int, spec: Mapping[str, Any], dataset: str) -> dict[str, list[int]]:
    """Many / medium / few classes by their count in the long-tail training subset (METHODS_SPEC §5.4).

    A class with more than ``many`` images is "many", fewer than ``few`` "few", else "medium". The
    suite's ``class_group_thresholds = {<dataset> = [many, few]}`` sets them per dataset (CUB-LT
    20 / 5, Flowers-LT 30 / 10); the default is CUB's.
    """
    from benchmark.training import many_medium_few

    many, few = (spec.get("class_group_thresholds") or {}).get(dataset, (20, 5))
    counts = [0] * num_classes
    for sample in subset.samples:
        counts[sample.label] += 1
    return many_medium_few(counts, many=int(many), few=int(few))


def run_cell(cell: Cell, spec: Mapping[str, Any], opts: RunOptions, cache: StageCache, run_dir: Path,
             registry, log) -> dict[str, Any]:
    """Run (or reuse) every stage of ``cell`` and write its record."""
    import torch

    from benchmark.backbones import create_classifier
    from benchmark.contract import BatchMethod, OfflineMethod
    from benchmark.data import open_dataset
    from benchmark.data import protocols as P
    from benchmark.generate import generate_synthetic_set
    from benchmark.profiles import get_profile
    from benchmark.registry import Composition
    from benchmark.training import LabeledImages, TrainConfig, get_recipe, train_classifier

    profile = get_profile(opts.profile)
    device = opts.device or ("cuda" if torch.cuda.is_available() else "cpu")
    timings: dict[str, float] = {}
    source = open_dataset(cell.dataset, opts.data_root, opts.datasets_dir)
    params = dict(cell.protocol_params)

    # 1. subset + validation split
    t = time.time()
    selection = spec.get("selection", "val_split")
    val_fraction = float(spec.get("val_fraction", 0.2))
    if cell.protocol == "full_data":  # P1's own random 20% validation split (METHODS_SPEC §5.5)
        subset, val_part = P.full_data(source, cell.seed, val_fraction)
    else:
        subset = draw_subset(source, cell.protocol, cell.seed, params.get("shots"), params.get("imbalance_factor"))
    if cell.protocol == "full_data":
        train_subset, val_subset = (subset, val_part) if selection == "val_split" else (subset, None)
    elif selection == "val_split":
        train_subset, val_subset = P.validation_split(subset, val_fraction, cell.seed)
    else:
        train_subset, val_subset = subset, None
    timings["subset"] = time.time() - t

    # 2. method + synthetic set
    method, method_id = _instantiate(registry, cell.method, _method_params(spec, cell.method))
    offline = method.parts[0] if isinstance(method, Composition) else method
    mixer = method.parts[1] if isinstance(method, Composition) else method
    offline = offline if isinstance(offline, OfflineMethod) else None
    mixer = mixer if isinstance(mixer, BatchMethod) and getattr(mixer, "family", "") != "original" else None
    syn_info = None
    synthetic = None
    if offline is not None:
        t = time.time()
        gen_key = content_hash({"stage": "generate", "method": offline.provenance(), "subset": train_subset.manifest_hash,
                                "profile": profile.name, "pipeline": profile.pipeline, "seed": cell.seed,
                                "augbench": __version__})
        syn_dir = cache.path("synthetic", gen_key, suffix="")
        if (syn_dir / "manifest.jsonl").exists():  # written last, only when the set is complete
            cache.reused.append(f"synthetic/{gen_key}")
        else:
            log(f"  generating synthetic set {offline.id} -> {syn_dir}")
            generate_synthetic_set(offline.id, source, train_subset, profile, cell.seed, syn_dir,
                                   batch_size=opts.batch_size or 32,
                                   params_overrides=offline.config.to_dict(), device=device,
                                   cache_dir=run_dir / "cache" / "artifacts")
            cache.computed.append(f"synthetic/{gen_key}")
        timings["generate"] = time.time() - t
        synthetic, syn_rows = load_synthetic(syn_dir, source.class_names, train_subset.image_ids)
        t = time.time()
        syn_metrics = cache.load("metrics", gen_key)
        if syn_metrics is None:
            syn_metrics = cache.save("metrics", gen_key, synthetic_metrics(synthetic, source, profile, device))
        timings["metrics"] = time.time() - t
        syn_info = {"key": gen_key, "dir": str(syn_dir), "size": len(syn_rows), "metrics": syn_metrics,
                    "method": offline.provenance()}

    # 3. train + evaluate
    recipe = get_recipe(spec.get("recipe", "embedded"), dataset=cell.dataset, epochs=opts.epochs or spec.get("epochs"))
    train_cfg = TrainConfig(recipe=recipe, seed=cell.seed, replacement_mode=spec.get("replacement_mode", "concat"),
                            replacement_p=float(spec.get("replacement_p", 0.5)), selection=selection, device=device,
                            dataset=cell.dataset, input_size=profile.classifier_size)
    # Waterbirds-style protocols evaluate on another dataset with the same classes (METHODS_SPEC §6.3)
    test_source = open_dataset(spec["test_dataset"], opts.data_root, opts.datasets_dir) if spec.get("test_dataset") else source
    if test_source.class_names != source.class_names:
        raise SuiteError(f"test dataset {test_source.card.id!r} has different classes from {source.card.id!r}")
    test_split = P.default_test_split(test_source)
    class_groups = (long_tail_class_groups(subset, source.num_classes, spec, cell.dataset)
                    if cell.protocol == "long_tail" else None)
    key_inputs = {
        "stage": "train", "cell": cell.to_dict(), "subset": subset.manifest_hash,
        "train_subset": train_subset.manifest_hash, "val": val_subset.manifest_hash if val_subset else None,
        "synthetic": syn_info["key"] if syn_info else None, "mixer": mixer.provenance() if mixer else None,
        "train": _train_key_config(train_cfg, has_synthetic=syn_info is not None), "classifier": [profile.classifier, profile.classifier_weights],
        "test": [test_source.card.id, test_split], "augbench": __version__,
    }
    if class_groups is not None:
        key_inputs["class_groups"] = class_groups
    train_key = content_hash(key_inputs)
    result = cache.load("train", train_key)
    if result is None:
        t = time.time()
        with torch.random.fork_rng(devices=[]):  # the new head's init comes from the cell seed, not global state
            torch.manual_seed(derive_seed(cell.seed, "classifier-init", cell.dataset) % (2**63))
            spec_cls = create_classifier(profile.classifier, source.num_classes, profile.classifier_weights)
        train_cfg = dataclasses.replace(train_cfg, mean=spec_cls.mean, std=spec_cls.std)
        train = LabeledImages(IMAGES.get(source, train_subset.image_ids), train_subset.labels,
                              image_ids=train_subset.image_ids)
        val = (LabeledImages(IMAGES.get(source, val_subset.image_ids), val_subset.labels)
               if val_subset is not None else None)
        test_samples = test_source.samples(test_split)
        groups = [s.attrs.get("group") for s in test_samples] if cell.protocol == "waterbirds" else None
        test = LabeledImages(IMAGES.get(test_source, [s.image_id for s in test_samples]), [s.label for s in test_samples],
                             groups=groups)
        log(f"  training {profile.classifier} ({recipe.name}, {recipe.epochs} epochs) on {len(train)} real"
            + (f" + {len(synthetic)} synthetic" if synthetic is not None else "") + " images")
        out = train_classifier(spec_cls.model, train, num_classes=source.num_classes, config=train_cfg, test=test, val=val,
                               synthetic=synthetic, mixer=mixer, class_groups=class_groups)
        result = out.to_dict()
        result.pop("model", None)
        result["seconds"] = time.time() - t
        cache.save("train", train_key, result)
    timings["train"] = result.get("seconds", 0.0)

    record = {
        "format": RECORD_FORMAT,
        "cell": cell.to_dict(),
        "cell_key": cell.key,
        "method_id": method_id,
        "method": method.provenance(),
        "subset": {"hash": subset.manifest_hash, "size": len(subset.samples),
                   "train_hash": train_subset.manifest_hash, "train_size": len(train_subset.samples),
                   "val_hash": val_subset.manifest_hash if val_subset else None,
                   "val_size": len(val_subset.samples) if val_subset else 0},
        "selection": selection,
        "synthetic": syn_info,
        "train": {k: v for k, v in result.items() if k != "history"},
        "history": result.get("history"),
        "metrics": result.get("metrics"),
        "profile": profile.name,
        "models": {"pipeline": profile.pipeline, "clip": profile.clip, "classifier": profile.classifier,
                   "classifier_weights": profile.classifier_weights},
        "versions": versions(),
        "git_commit": git_commit(),
        "timings": timings,
        "stage_keys": {"train": train_key, "synthetic": syn_info["key"] if syn_info else None},
    }
    write_json_atomic(run_dir / "records" / f"{cell.key}.json", record)
    return record


def load_synthetic(syn_dir: Path, class_names: Iterable[str], real_ids: list[str]):
    """A generated set (``manifest.jsonl`` + images) as a ``training.SyntheticSet``."""
    import torch
    from PIL import Image

    from benchmark.generate import read_manifest
    from benchmark.training import SyntheticSet

    names = list(class_names)
    index = {n: i for i, n in enumerate(names)}
    rows = read_manifest(syn_dir)
    images, targets, sources = [], [], []
    id_pos = {i: k for k, i in enumerate(real_ids)}
    for row in rows:
        with Image.open(syn_dir / row["file"]) as im:
            images.append(torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1))
        vec = np.zeros(len(names), dtype=np.float32)
        for name, p in row["label"].items():
            vec[index[name]] = p
        targets.append(vec)
        src = row.get("sources") or []
        sources.append(id_pos.get(src[0], -1) if src else -1)
    imgs = torch.stack(images) if len({tuple(t.shape) for t in images}) == 1 else images
    return SyntheticSet(imgs, torch.from_numpy(np.stack(targets)), source_index=torch.tensor(sources)), rows


def synthetic_metrics(synthetic, source, profile, device: str) -> dict[str, Any]:
    """LPIPS diversity and CLIP score of a synthetic set (METHODS_SPEC §7.2, §7.3)."""
    from benchmark import metrics as M

    labels = synthetic.targets.argmax(1) if synthetic.targets.dim() == 2 else synthetic.targets
    t = time.time()
    lp = M.lpips_diversity(synthetic.images, labels, profile=profile, device=device)
    cs = M.clip_score(synthetic.images, labels, source.card, profile=profile, device=device)
    return {"lpips": lp, "clip_score": cs, "seconds": time.time() - t}


# --- the run -----------------------------------------------------------------------------------------

def default_run_dir(suite: str, profile: str) -> Path:
    return Path("runs") / f"{Path(suite).stem}-{profile}"


def run_suite(opts: RunOptions) -> dict[str, Any]:
    """Run every cell of the suite (resuming finished stages) and return a summary."""
    import torch

    from benchmark.registry import default_registry

    log = opts.log or (lambda s: print(s, flush=True))
    torch.set_num_threads(os.cpu_count() or 1)
    spec = load_suite(opts.suite, opts.profile)
    run_dir = Path(opts.run_dir) if opts.run_dir else default_run_dir(opts.suite, opts.profile)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "suite.json", {"spec": spec, "profile": opts.profile})
    cells = plan_cells(spec, opts)
    registry = default_registry()
    for method_id in dict.fromkeys(c.method for c in cells):  # fail fast, before any work, on a typo
        registry.resolve(method_id)
    if opts.executor not in EXECUTORS:
        raise SuiteError(f"unknown executor {opts.executor!r}: expected one of {', '.join(EXECUTORS)}")
    t0 = time.time()
    log(f"suite {spec['name']} ({opts.profile}): {len(cells)} cells -> {run_dir} (executor: {opts.executor})")
    if opts.executor == "ray":
        from benchmark.executors import run_cells_ray

        outcome = run_cells_ray(cells, spec, opts, run_dir, log)
    else:
        outcome = run_cells(cells, spec, opts, run_dir, log)
    wall = time.time() - t0
    summary = {"suite": spec["name"], "profile": opts.profile, "run_dir": str(run_dir), "cells": len(cells),
               "executor": opts.executor, "failed": outcome["failed"], "reused_stages": outcome["reused"],
               "computed_stages": outcome["computed"], "wall_seconds": wall}
    write_json_atomic(run_dir / "last_run.json", summary)
    log(f"done: {len(cells) - len(outcome['failed'])}/{len(cells)} cells in {wall / 60:.1f} min "
        f"({len(outcome['reused'])} stages reused, {len(outcome['computed'])} computed)")
    if outcome["failed"]:
        log(f"{len(outcome['failed'])} cells failed; see {run_dir / 'last_run.json'}")
    return summary


EXECUTORS = ("local", "ray")


def run_cells(cells: list[Cell], spec: Mapping[str, Any], opts: RunOptions, run_dir: Path, log) -> dict[str, list]:
    """Run ``cells`` one after another in this process: the local executor, and each Ray task's body.

    Returns the failed cells (``{"cell", "error"}``) and the stages reused and computed. A failing
    cell is logged and skipped so it cannot lose the others' work (``AUGBENCH_RAISE=1`` re-raises).
    """
    from benchmark.registry import default_registry

    registry = default_registry()
    cache = StageCache(run_dir / "cache", log)
    failed = []
    for i, cell in enumerate(cells, 1):
        record_path = run_dir / "records" / f"{cell.key}.json"
        log(f"[{i}/{len(cells)}] {cell.key}")
        t = time.time()
        n_reused = len(cache.reused)
        try:
            rec = run_cell(cell, spec, opts, cache, run_dir, registry, log)
        except Exception as exc:
            failed.append({"cell": cell.key, "error": f"{type(exc).__name__}: {exc}"})
            log(f"  FAILED: {type(exc).__name__}: {exc}")
            if os.environ.get("AUGBENCH_RAISE"):
                raise
            continue
        reused = cache.reused[n_reused:]
        acc = (rec.get("metrics") or {}).get("top1")
        log(f"  top-1 {acc:.2f}% in {time.time() - t:.1f}s" + (f" (reused: {', '.join(s.split('/')[0] for s in reused)})"
                                                                 if reused else "") + f" -> {record_path.name}")
    return {"failed": failed, "reused": cache.reused, "computed": cache.computed}


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - convenience
    from benchmark.cli import main as cli_main

    return cli_main(["run", *(argv or sys.argv[1:])])


__all__ = ["EXECUTORS", "Cell", "RunOptions", "SuiteError", "draw_subset", "load_suite", "plan_cells",
           "run_cell", "run_cells", "run_suite"]

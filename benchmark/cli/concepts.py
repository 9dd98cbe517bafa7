"""``augbench concepts build | show | import``: concept artifacts outside a suite run.

* ``build --kind K --dataset D --protocol P [--shots K | --imbalance-factor IF] --seed S`` trains ``K``
  on the cell's *training part* exactly as the runner does (``augbench.run.stages.subset_stage`` carves the
  validation part; same recipe, base model and key), into the shared store, so a later run reuses it.
* ``show KEY`` prints what an artifact was trained on, its recipe, time and files.
* ``import DIR --kind lora_ti --trained-on MANIFEST`` writes ``DIR/artifact.json`` for a checkpoint
  folder in the reference format (Diff-Mix / Diff-II: ``pytorch_lora_weights.safetensors`` +
  ``learned_embeds-steps-last.bin``; DA-Fusion: ``learned_embeds.bin``), naming the image ids of the
  subset manifest it was trained on (``augbench data subset ... --write``) so the leakage guard can check it.

The main CLI calls :func:`add_concepts_commands`; errors a user can fix raise ``ConfigError`` /
``ArtifactError`` (one line, exit status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_concepts_commands", "build_for_cell", "cmd_build", "cmd_import", "cmd_show", "find_artifact",
           "import_folder"]

# torch, diffusers and the artifact machinery are imported inside the handlers: building the parser stays light
CONCEPT_KINDS = ("ti", "lora_ti")
MARKER = "artifact.json"  # augbench.run.artifacts.MARKER


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def add_concepts_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``concepts {build,show,import}`` to a CLI's sub-parsers."""
    concepts = subparsers.add_parser("concepts", help="build, inspect and import concept-learning artifacts",
                                     description="Concept learning (ti: DA-Fusion textual inversion; lora_ti: "
                                                 "Diff-Mix LoRA + class tokens) as shared artifacts.")
    sub = concepts.add_subparsers(dest="concepts_command", metavar="{build,show,import}")
    sub.required = True

    b = sub.add_parser("build", help="train a concept artifact on a cell's training part (as the runner would)")
    b.add_argument("--kind", required=True, help=f"one of {', '.join(CONCEPT_KINDS)}")
    b.add_argument("--dataset", required=True, help="card id, e.g. toybirds or cub")
    b.add_argument("--protocol", default="few_shot",
                   help="a registered protocol: few_shot (default), long_tail, waterbirds, full_data or a plugin's")
    b.add_argument("--shots", type=int, default=5, help="k, where the protocol takes shots (default 5)")
    b.add_argument("--imbalance-factor", type=float, default=100,
                   help="IF, where the protocol takes imbalance factors (default 100)")
    b.add_argument("--seed", type=int, default=0, help="the cell's seed (subset and validation split)")
    b.add_argument("--profile", default="embedded", choices=["embedded", "sd15"])
    b.add_argument("--selection", default="last_epoch",
                   help="the suite's selection rule (default last_epoch, as suites; val_split trains on the subset minus "
                        "its validation part)")
    b.add_argument("--val-fraction", type=float, default=0.2, help="the suite's validation share (default 0.2)")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    b.add_argument("--cache-dir", default=None, help="shared store (default: $AUGBENCH_CACHE or ~/.cache/augbench)")
    b.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    b.add_argument("--json", action="store_true")
    _data_opts(b)
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("show", help="what an artifact was trained on, its recipe, time and files")
    s.add_argument("key", help="artifact key (or a unique prefix) in the store, or an artifact folder")
    s.add_argument("--cache-dir", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    i = sub.add_parser("import", help="write artifact.json for a checkpoint folder in the reference format")
    i.add_argument("folder", help="e.g. Diff-Mix's ft_ti_db/cub/5shot (pytorch_lora_weights.safetensors + "
                                  "learned_embeds-steps-last.bin)")
    i.add_argument("--kind", required=True, help=f"one of {', '.join(CONCEPT_KINDS)}")
    i.add_argument("--trained-on", default=None, metavar="MANIFEST",
                   help="subset manifest (augbench data subset --write) of the images the checkpoint was trained on")
    i.add_argument("--base-model", default="", help="the base model it was trained on (recorded)")
    i.add_argument("--force", action="store_true", help="overwrite an existing artifact.json")
    i.set_defaults(func=cmd_import)


def _data_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=argparse.SUPPRESS, help="root of the real datasets (or $AUGBENCH_DATA)")
    p.add_argument("--datasets-dir", default=argparse.SUPPRESS, help="extra folder of dataset cards")


def _check_kind(kind: str) -> None:
    from augbench.contract import ConfigError

    if kind not in CONCEPT_KINDS:
        from augbench.plugins import did_you_mean

        raise ConfigError(f"unknown concept kind {kind!r}{did_you_mean(kind, CONCEPT_KINDS)}; "
                          f"choices: {', '.join(CONCEPT_KINDS)}")


def _cache(args: argparse.Namespace) -> Path:
    from augbench.run.store import default_cache_root

    return Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_root()


def build_for_cell(kind: str, dataset: str, protocol: str, seed: int, *, shots: int | None = None,
                   imbalance_factor: float | None = None, profile: str = "embedded", selection: str = "last_epoch",
                   val_fraction: float = 0.2, overrides: dict[str, Any] | None = None, cache_dir: Path | None = None,
                   device: str | None = None, data_root: str | None = None, datasets_dir: str | None = None):
    """Build (or reuse) ``kind`` for one cell's training part in the shared store; returns the ``Artifact``."""
    import torch

    from augbench.contract import ArtifactSpec, ConfigError, MethodContext
    from augbench.data import open_dataset
    from augbench.diffusion.concepts.recipes import concept_recipe
    from augbench.protocols.base import ProtocolError
    from augbench.run.artifacts import build_artifacts
    from augbench.run.cells import Cell
    from augbench.run.profiles import get_profile
    from augbench.run.stages import subset_stage
    from augbench.run.store import Store, default_cache_root
    from augbench.run.suites import Suite

    _check_kind(kind)
    source = open_dataset(dataset, data_root, datasets_dir)
    suite = Suite(name="concepts", protocol=protocol, datasets=(dataset,), methods=(), seeds=(seed,),
                  selection=selection, val_fraction=val_fraction, profile=profile)
    try:  # the cell's setting as the runner's grid spells it (IF 100.0 -> 100)
        params = suite.protocol_object().setting({"shots": shots or 5, "imbalance_factor": imbalance_factor or 100},
                                                 source)
    except ProtocolError as exc:
        raise ConfigError(f"--protocol {protocol}: {exc}") from None
    cell = Cell("concepts", profile, dataset, protocol, params, "", seed)
    train_part = subset_stage(cell, suite, source).train_part
    prof = get_profile(profile)
    ctx = MethodContext(profile=prof, source=source, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    spec = ArtifactSpec(kind, concept_recipe(kind, prof, **(overrides or {})))
    store = Store(cache_dir or default_cache_root(), lambda line: print(line, file=sys.stderr))
    return build_artifacts([spec], train_part, ctx, store)[spec.slot], train_part


def cmd_build(args: argparse.Namespace) -> int:
    from augbench.contract import ConfigError

    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        overrides[k.strip()] = _value(v.strip())
    artifact, train_part = build_for_cell(
        args.kind, args.dataset, args.protocol, args.seed, shots=args.shots, imbalance_factor=args.imbalance_factor,
        profile=args.profile, selection=args.selection, val_fraction=args.val_fraction, overrides=overrides,
        cache_dir=_cache(args), device=args.device, data_root=getattr(args, "data_root", None),
        datasets_dir=getattr(args, "datasets_dir", None))
    info = {"key": artifact.key, "kind": artifact.kind, "folder": str(artifact.folder), "reused": artifact.reused,
            "seconds": artifact.seconds, "trained_on": {"hash": train_part.manifest_hash, "size": len(train_part.samples)}}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{artifact.kind} {artifact.key} ({'reused' if artifact.reused else 'built'} in {artifact.seconds:.0f} s) "
              f"trained on {len(train_part.samples)} images, manifest {train_part.manifest_hash}\n  {artifact.folder}")
    return 0


def find_artifact(key: str, cache_dir: Path) -> Path:
    """The folder of artifact ``key`` (a full key, a unique prefix, or a folder path)."""
    from augbench.run.artifacts import ArtifactError

    path = Path(key).expanduser()
    if (path / MARKER).is_file():
        return path
    root = cache_dir / "artifacts"
    matches = sorted(p for p in root.glob(f"{key}*") if (p / MARKER).is_file()) if root.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ArtifactError(f"no artifact {key!r} in {root} (build one with `augbench concepts build`, "
                            "or pass --cache-dir)")
    raise ArtifactError(f"{key!r} matches {len(matches)} artifacts: {', '.join(p.name for p in matches[:5])}")


def cmd_show(args: argparse.Namespace) -> int:
    folder = find_artifact(args.key, _cache(args))
    meta = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    files = {name: {"sha256": digest, "bytes": (folder / name).stat().st_size if (folder / name).is_file() else None}
             for name, digest in meta.get("files", {}).items()}
    ids = meta["trained_on"]["ids"]
    info = {"key": folder.name, "folder": str(folder), "kind": meta.get("kind"), "base_model": meta.get("base_model"),
            "recipe": meta.get("recipe"), "seconds": meta.get("seconds"), "imported": bool(meta.get("imported")),
            "trained_on": {"hash": meta["trained_on"]["hash"], "size": len(ids), "first_ids": ids[:5]}, "files": files}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['kind']} {info['key']}{' (imported)' if info['imported'] else ''}\n  folder: {folder}")
    print(f"  base model: {info['base_model']}")
    print(f"  trained on: {len(ids)} images, manifest {info['trained_on']['hash']} (e.g. {', '.join(ids[:3])})")
    print(f"  time: {float(info['seconds'] or 0):.1f} s")
    print("  recipe: " + ", ".join(f"{k}={v}" for k, v in sorted((info["recipe"] or {}).items())))
    for name, f in files.items():
        print(f"  file {name}: {f['bytes']} bytes, sha256 {f['sha256'][:16]}...")
    return 0


def import_folder(folder: Path, kind: str, manifest: Path | None, base_model: str = "", force: bool = False) -> Path:
    """Write ``folder/artifact.json`` for a reference-format checkpoint trained on ``manifest``'s images."""
    from augbench.data.core import Subset
    from augbench.diffusion.concepts import formats
    from augbench.run.artifacts import FORMAT, ArtifactError
    from augbench.run.hashing import file_sha256
    from augbench.run.store import write_json_atomic

    _check_kind(kind)
    folder = Path(folder)
    if manifest is None:
        raise ArtifactError(
            f"{folder}: an imported checkpoint needs --trained-on MANIFEST, the subset manifest of the images it was "
            "trained on (write one with `augbench data subset D --protocol P ... --write DIR`); without it the leakage "
            "guard cannot tell whether it saw validation or test images, so it is not imported")
    if (folder / MARKER).exists() and not force:
        raise ArtifactError(f"{folder / MARKER} exists; pass --force to overwrite it")
    missing = formats.missing_files(kind, folder)
    if missing:
        raise ArtifactError(f"{folder}: missing {', '.join(missing)}; a {kind} folder holds "
                            f"{', '.join(formats.required_files(kind))}")
    subset = Subset.read(manifest)
    try:  # the token file must at least be readable (class mapping is checked when a pipeline loads it)
        formats.read_token_embeddings(kind, folder, [])
    except ValueError as exc:
        raise ArtifactError(str(exc)) from exc
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir())
             if p.is_file() and p.name != MARKER and not p.name.startswith(".")}
    write_json_atomic(folder / MARKER, {
        "format": FORMAT, "kind": kind, "imported": True, "recipe": {"imported": True}, "base_model": base_model,
        "trained_on": {"hash": subset.manifest_hash, "ids": subset.image_ids, "dataset": subset.dataset,
                       "manifest": str(Path(manifest).resolve())},
        "files": files, "seconds": 0.0})
    return folder / MARKER


def cmd_import(args: argparse.Namespace) -> int:
    path = import_folder(Path(args.folder), args.kind, Path(args.trained_on) if args.trained_on else None,
                         args.base_model, args.force)
    print(f"wrote {path}")
    return 0

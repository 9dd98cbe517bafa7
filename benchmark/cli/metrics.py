"""``augbench metrics --synthetic DIR --dataset D``: distribution metrics of any synthetic set on disk (issue 25, 7).

Scores a set the harness did not generate as it scores its own (:mod:`augbench.metrics.distribution`: FD, KID,
precision / recall / density / coverage and Vendi, per class and pooled, on the profile's CLIP image features)
against the dataset's real images:

* ``--split train``: the protocol's training subset (``--protocol few_shot --shots 5 --seed 0``, drawn as
  ``augbench generate`` draws it; for a set written by ``augbench generate`` its ``generation.json`` must name
  the same dataset and subset, else the options it was generated with are asked for);
* ``--split test``: the protocol's test images (the official test split; ``--test-per-class N`` keeps the first
  N of each class, as a suite's ``test_per_class``);
* ``--split both`` (default): both, one result each.

Two folder layouts are read: an augbench set (``DIR/manifest.jsonl`` + ``DIR/images/``, the class an image was
generated for as its label) and a plain ImageFolder (one sub-folder per class, named by the class name as the
dataset card spells it, case and ``_``/``-``/space differences ignored, or by the label number, holding image
files at any depth). Only the classes the set has are scored; a class with fewer than two images in the set or
in the reference stops the command with one line naming the class.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from augbench.cli.options import add_data_options, print_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
#: Columns of the per-class table, in order.
COLUMNS = ("fd", "kid", "precision", "recall", "density", "coverage", "vendi")


def add_metrics_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics", help="distribution metrics (FD, KID, precision/recall/density/coverage, Vendi) of a synthetic "
                        "set on disk against the dataset's real images")
    parser.add_argument("--synthetic", required=True, metavar="DIR",
                        help="an augbench set (manifest.jsonl) or an ImageFolder (one sub-folder of images per class)")
    parser.add_argument("--dataset", required=True, help="the dataset card: class names and the real images")
    parser.add_argument("--profile", default="embedded", help="whose CLIP gives the features (embedded, sd15)")
    parser.add_argument("--split", choices=("train", "test", "both"), default="both",
                        help="the reference: the protocol's training subset, its test images, or both")
    parser.add_argument("--protocol", default="few_shot", help="the protocol that draws the training subset")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--imbalance-factor", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="the seed the training subset is drawn with")
    parser.add_argument("--test-per-class", type=int, default=None, metavar="N",
                        help="compare with the first N test images of each class only")
    parser.add_argument("--k", type=int, default=5, help="nearest neighbours of precision/recall/density/coverage")
    parser.add_argument("--device", default=None, help="where the CLIP runs (default: cuda when available)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_data_options(parser)
    parser.set_defaults(func=cmd_metrics)


def cmd_metrics(args: argparse.Namespace) -> int:
    import torch

    from augbench.data import open_dataset
    from augbench.data.image_cache import IMAGES
    from augbench.metrics.distribution import reference_distribution_metrics, require_images_per_class
    from augbench.run.profiles import get_profile

    profile = get_profile(args.profile)
    source = open_dataset(args.dataset, args.data_root, args.datasets_dir)
    folder = Path(args.synthetic)
    images, labels, spec = read_synthetic_folder(folder, source.class_names)
    wanted = set(labels)
    references = {}
    for name, subset in reference_subsets(args, source, spec).items():
        samples = [s for s in subset.samples if s.label in wanted]  # decode only the classes the set has
        require_images_per_class(labels, [s.label for s in samples], source.class_names, reference_name=name,
                                 synthetic_name=str(folder))
        references[name] = (IMAGES.get(source, [s.image_id for s in samples]), [s.label for s in samples])
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = reference_distribution_metrics(images, labels, references, profile, device, k=args.k)
    if args.json:
        print_json({"synthetic": str(folder), "dataset": source.card.id, "profile": profile.name,
                    "class_names": {str(c): source.class_names[c] for c in sorted(wanted)}, "results": results})
    else:
        for name, result in results.items():
            print(format_result(result, source.class_names, name))
    return 0


def reference_subsets(args: argparse.Namespace, source: Any, spec: dict[str, Any] | None) -> dict[str, Any]:
    """``{"train": training subset, "test": test subset}`` (those ``--split`` asks for), drawn by the protocol."""
    from augbench.contract import ConfigError
    from augbench.protocols import get_protocol
    from augbench.protocols.base import ProtocolError

    proto = get_protocol(args.protocol)()
    try:
        setting = dict(proto.setting({"shots": args.shots, "imbalance_factor": args.imbalance_factor}, source))
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None
    out = {}
    if args.split in ("train", "both"):
        train = proto.draw_training(source, args.seed, setting)[0]
        check_generation_subset(spec, source.card.id, train.manifest_hash)
        out["train"] = train
    if args.split in ("test", "both"):
        test = proto.draw_test(source, source, args.seed, setting)
        if args.test_per_class:
            from augbench.run.stages import first_per_class

            test = first_per_class(test, args.test_per_class)
        out["test"] = test.subset
    return out


def check_generation_subset(spec: dict[str, Any] | None, dataset: str, subset_hash: str) -> None:
    """An augbench set must be scored against the training subset it was generated from (its ``generation.json``)."""
    from augbench.contract import ConfigError

    if not spec:
        return
    if spec.get("dataset") not in (None, dataset):
        raise ConfigError(f"the synthetic set was generated for dataset {spec['dataset']!r}, not {dataset!r}: "
                          f"pass --dataset {spec['dataset']}")
    if spec.get("subset_hash") not in (None, subset_hash):
        raise ConfigError("the synthetic set was generated from another training subset than --protocol/--shots/"
                          "--seed draw (generation.json subset_hash differs): pass the options it was generated "
                          "with, or --split test")


def read_synthetic_folder(folder: Path, class_names: tuple[str, ...]) -> tuple[Any, list[int], dict | None]:
    """``(images, labels, generation spec or None)`` of an augbench set or an ImageFolder (module docstring)."""
    from augbench.data.core import DataError

    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass --synthetic DIR, a set written by `augbench generate` "
                                "or a folder with one sub-folder of images per class")
    if (folder / "manifest.jsonl").is_file() or (folder / "generation.json").is_file():
        return _read_augbench_set(folder, class_names)
    index = _class_index(class_names)
    files, labels = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            continue
        label = index.get(_key(sub.name))
        if label is None:
            raise DataError(f"{sub}: {sub.name!r} is not a class of the dataset (expected a class name such as "
                            f"{class_names[0]!r} or a label number 0-{len(class_names) - 1})")
        files += found
        labels += [label] * len(found)
    if not files:
        raise DataError(f"{folder} has no manifest.jsonl and no class sub-folders with images "
                        f"({', '.join(IMAGE_SUFFIXES)}): expected a set written by `augbench generate` or an "
                        "ImageFolder")
    return _decode(files), labels, None


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def _class_index(class_names: tuple[str, ...]) -> dict[str, int]:
    index = {str(i): i for i in range(len(class_names))} | {f"{i:03d}": i for i in range(len(class_names))}
    return index | {_key(name): i for i, name in enumerate(class_names)}


def _read_augbench_set(folder: Path, class_names: tuple[str, ...]) -> tuple[Any, list[int], dict | None]:
    from augbench.data.core import DataError
    from augbench.synthetic.generate import SPEC, read_manifest
    from augbench.synthetic.loading import target_class

    rows = read_manifest(folder)
    spec = json.loads((folder / SPEC).read_text(encoding="utf-8")) if (folder / SPEC).is_file() else None
    if spec and spec.get("classes") and list(spec["classes"]) != list(class_names):
        raise DataError(f"{folder / SPEC} lists other classes than the dataset card ({len(spec['classes'])} vs "
                        f"{len(class_names)}): pass the --dataset the set was generated for")
    index = {name: i for i, name in enumerate(class_names)}
    try:
        labels = [index[target_class(row)] for row in rows]
    except KeyError as exc:
        raise DataError(f"{folder}: class {exc.args[0]!r} of the manifest is not in the dataset card") from None
    return _decode([folder / row["file"] for row in rows]), labels, spec


def _decode(files: list[Path]) -> Any:
    """uint8 ``[N, 3, H, W]`` (a list when sizes differ) of image files."""
    import numpy as np
    import torch
    from PIL import Image

    from augbench.data.core import DataError

    images = []
    for path in files:
        try:
            with Image.open(path) as im:
                images.append(torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1))
        except OSError as exc:
            raise DataError(f"cannot read the image {path}: {exc}") from exc
    return torch.stack(images) if len({tuple(t.shape) for t in images}) == 1 else images


def _cell(value: Any, width: int = 9) -> str:
    return f"{'—':>{width}}" if value is None else f"{value:>{width}.4g}"


def format_result(result: dict[str, Any], class_names: tuple[str, ...], reference: str) -> str:
    """A pooled table (one row per metric, with n) and a per-class table (one column per metric)."""
    n = result["n"]
    lines = [f"reference: {reference} ({n['reference']} real images of {len(result['classes'])} classes; "
             f"{n['synthetic']} synthetic images); features: {result['config']['features']}",
             f"{'metric':<10} {'pooled':>9} {'± std':>9} {'class mean':>10} {'classes':>7}  n / notes"]
    for name in COLUMNS:
        m = result[name]
        extra = {"kid": f"subset {m.get('subset_size')} x {m.get('subsets')}", "fd": m.get("note", ""),
                 "vendi": f"reference's own: {_cell(m.get('reference_value'), 0)}"}.get(name, f"k = {m.get('k')}")
        sizes = f"n = {m['n']['synthetic']} syn" + (f" / {m['n']['reference']} ref" if "reference" in m["n"] else "")
        lines.append(f"{name:<10} {_cell(m['value'])} {_cell(m.get('std')) if name == 'kid' else ' ' * 9} "
                     f"{_cell(m['class_mean'], 10)} {m['n_classes']:>7}  {sizes}; {extra}"
                     + (f"; {m['reason']}" if m.get("reason") else ""))
    width = max([len("class")] + [len(class_names[int(c)]) for c in result["classes"]])
    lines.append("")
    lines.append(f"{'class':<{width}} {'n syn':>5} {'n ref':>5} {'k':>2} " + " ".join(f"{c:>9}" for c in COLUMNS))
    for c in result["classes"]:
        pc = result["fd"]["per_class_n"][c]
        k = result["precision"]["per_class_k"][c]
        row = " ".join(_cell(result[name]["per_class"][c]) for name in COLUMNS)
        lines.append(f"{class_names[int(c)]:<{width}} {pc['synthetic']:>5} {pc['reference']:>5} "
                     f"{'—' if k is None else k:>2} {row}")
    lines.append("(FD is biased upward at small n, KID is not; per class, KID's subsets have min(n syn, n ref) "
                 "images and k shrinks to min(n syn, n ref) - 1 where needed)")
    return "\n".join(lines) + "\n"

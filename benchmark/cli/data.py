"""Dataset commands: ``augbench datasets`` and ``augbench data verify | fetch | subset``.

The main CLI (``augbench.cli.main``) calls :func:`add_data_commands` on its sub-parsers; every command
stores its handler as ``func`` (``args.func(args)`` returns the exit status: 0 success, 1 a data
problem). The module also runs on its own: ``python -m augbench.cli.data data subset cub ...``.

Commands (DESIGN.md, "Command-line contract"; USER_NEEDS §2):

* ``augbench datasets [--json]`` — the cards on the search path and whether their data is present.
* ``augbench data verify D [--check-images]`` — counts against the card, class order against the
  release's class list, missing/extra files, checksums where the card pins them.
* ``augbench data fetch D`` — download from the card's public sources (several mirrors, checked by
  hash); datasets without one (Stanford Cars) print the manual steps.
* ``augbench data subset D --protocol P [--shots K | --imbalance-factor IF] --seed S [--json]
  [--write DIR]`` — draw a protocol's subset and print its size, per-class counts and manifest hash;
  ``--write`` saves the manifest so that others can reuse the exact images. The protocol object
  (``augbench.protocols``, built-in or a plugin's) draws it with the same code ``augbench run`` uses.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from augbench.data.cards import CardError, DatasetCard, list_cards, load_card
from augbench.data.core import DataError, ImageSource, Subset, open_dataset, resolve_data_root
from augbench.data.readers import data_status
from augbench.plugins import RegistryError
from augbench.protocols import PROTOCOLS, get_protocol, protocol_names
from augbench.protocols.base import ProtocolDraw, ProtocolError
from augbench.protocols.long_tail import ALLOWED_IMBALANCE_FACTORS
from augbench.protocols.splits import half_split, protocol_settings

#: the command-line flag of each built-in cell parameter (a plugin protocol's: ``--param NAME=VALUE``)
CELL_FLAGS = {"shots": "--shots K", "imbalance_factor": "--imbalance-factor IF (100, 50, 20 or 10)"}
Handler = Callable[[argparse.Namespace], int]


def _common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: values set on a parent parser (the main CLI's global options) are not overwritten.
    parser.add_argument("--data-root", default=argparse.SUPPRESS, metavar="DIR",
                        help="folder holding the datasets (default: $AUGBENCH_DATA)")
    parser.add_argument("--datasets-dir", default=argparse.SUPPRESS, metavar="DIR",
                        help="extra folder of dataset cards, searched first (also $AUGBENCH_DATASETS)")


def _opt(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


def _guarded(handler: Handler) -> Handler:
    """Report ``DataError``/``CardError``/``ValueError``/``RegistryError`` (an unknown protocol, a plugin
    that does not import) as ``error: ...`` on stderr with exit status 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (DataError, CardError, ValueError, RegistryError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``datasets`` and ``data {verify,fetch,subset}`` to a CLI's sub-parsers."""
    ds = subparsers.add_parser("datasets", help="list dataset cards and whether their data is present",
                               description="List the dataset cards on the search path and whether their data is present.")
    _common(ds)
    ds.add_argument("--json", action="store_true", help="machine-readable output")
    ds.set_defaults(func=cmd_datasets)

    data = subparsers.add_parser("data", help="verify, fetch and subset datasets",
                                 description="Verify, fetch and subset datasets (see docs/datasets.md).")
    sub = data.add_subparsers(dest="data_command", metavar="{verify,fetch,subset}")
    sub.required = True

    v = sub.add_parser("verify", help="check a dataset copy against its card",
                       description="Check counts, class order, files and checksums against the dataset card.")
    v.add_argument("dataset", help="card id, e.g. cub")
    _common(v)
    v.add_argument("--check-images", action="store_true", help="also decode every image (slow)")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(func=cmd_verify)

    f = sub.add_parser("fetch", help="download a dataset from its public sources",
                       description="Download a dataset from the sources on its card, verifying checksums.")
    f.add_argument("dataset", help="card id, e.g. cub")
    _common(f)
    f.add_argument("--dry-run", action="store_true", help="show what would be downloaded, download nothing")
    f.add_argument("--timeout", type=float, default=60.0, help="seconds per network read (default 60)")
    f.add_argument("--delete-archives", action="store_true", help="remove archives after extracting them")
    f.set_defaults(func=cmd_fetch)

    s = sub.add_parser("subset", help="draw a protocol's subset and print its manifest hash",
                       description="Draw a protocol's subset (METHODS_SPEC §5.5, §6) and print its total, "
                                   "per-class counts and manifest hash.")
    s.add_argument("dataset", help="card id, e.g. cub (for --protocol waterbirds: the Waterbirds card)")
    _common(s)
    s.add_argument("--protocol", required=True,
                   help="few_shot, long_tail, waterbirds, full_data, a plugin's protocol, or half_split (Diff-Mix's "
                        "Flowers split)")
    s.add_argument("--shots", type=int, help="k for few_shot / waterbirds")
    s.add_argument("--imbalance-factor", type=int, choices=ALLOWED_IMBALANCE_FACTORS, help="IF for long_tail")
    s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a cell parameter of a plugin protocol (JSON value)")
    s.add_argument("--seed", type=int, required=True, help="subset seed (the trial index)")
    s.add_argument("--val-fraction", type=float, default=0.2, help="validation share for full_data (default 0.2)")
    s.add_argument("--split", help="split to draw from (default: the card's training split)")
    s.add_argument("--train-dataset", help="waterbirds: the training dataset (default: the card's, e.g. cub)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--write", metavar="DIR", help="save each manifest as DIR/<dataset>.<protocol>.<params>.json")
    s.set_defaults(func=cmd_subset)


# --- datasets ---------------------------------------------------------------------------------------




@_guarded
def cmd_datasets(args: argparse.Namespace) -> int:
    """``augbench datasets``: one line per card."""
    root = resolve_data_root(_opt(args, "data_root"))
    rows = []
    for card in list_cards(_opt(args, "datasets_dir")):
        rows.append({
            "id": card.id, "name": card.name, "kind": card.kind, "reader": card.reader,
            "num_classes": card.num_classes, "splits": dict(card.splits),
            "fetchable": bool(card.downloads), **data_status(card, root),
        })
    if args.json:
        print(json.dumps({"data_root": str(root) if root else None, "datasets": rows}, indent=2))
        return 0
    print(f"data root: {root or '(not set: pass --data-root or set AUGBENCH_DATA)'}")
    width = max((len(r["id"]) for r in rows), default=2)
    for r in rows:
        splits = " / ".join(f"{k} {v:,}" for k, v in r["splits"].items())
        where = r["location"] if r["present"] else r.get("reason", "")
        print(f"  {r['id']:<{width}}  {r['status']:<8}  {r['num_classes']:>4} classes  {splits}")
        if where:
            print(f"  {'':<{width}}  {where}")
    return 0


# --- verify / fetch ------------------------------------------------------------------------------------


@_guarded
def cmd_verify(args: argparse.Namespace) -> int:
    """``augbench data verify D``: exit 0 when every check passes, 1 otherwise."""
    from augbench.data.verify import verify_dataset

    card = load_card(args.dataset, _opt(args, "datasets_dir"))
    report = verify_dataset(card, resolve_data_root(_opt(args, "data_root")), check_images=args.check_images)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 1


@_guarded
def cmd_fetch(args: argparse.Namespace) -> int:
    """``augbench data fetch D``: download, check, extract, then verify."""
    from augbench.data.fetch import fetch_dataset, manual_instructions, plan
    from augbench.data.verify import verify_dataset

    card = load_card(args.dataset, _opt(args, "datasets_dir"))
    if not card.downloads:
        print(f"{card.name} cannot be downloaded automatically (no public source).\n")
        print(manual_instructions(card))
        return 1
    root = resolve_data_root(_opt(args, "data_root"))
    if root is None:
        raise DataError("fetch needs a destination: pass --data-root DIR or set AUGBENCH_DATA=DIR")
    if args.dry_run:
        for item in plan(card, root):
            hashes = ", ".join(f"{k} {v}" for k, v in item["hashes"].items()) or "no pinned checksum"
            print(f"{item['file']} -> {item['target']} ({hashes})")
            for url in item["urls"]:
                print(f"    {url}")
            if item["extract_to"] is not None:
                print(f"    extract into {item['extract_to']}")
        return 0
    fetch_dataset(card, root, timeout=args.timeout, keep_archives=not args.delete_archives)
    report = verify_dataset(card, root)
    print(report.format())
    return 0 if report.ok else 1


# --- subset ---------------------------------------------------------------------------------------------


def _slug(params: dict[str, Any]) -> str:
    skip = {"part", "base", "parent", "stratified", "train_dataset"}
    return "-".join(f"{k}{v}" for k, v in sorted(params.items()) if k not in skip) or "default"


def manifest_filename(subset: Subset) -> str:
    """``<dataset>.<protocol>.<params>[.<part>].json``, e.g. ``cub.few_shot.seed0-shots5.json``."""
    part = subset.params.get("part")
    return f"{subset.dataset}.{subset.protocol}.{_slug(dict(subset.params))}" + (f".{part}" if part else "") + ".json"


def _half_split_parts(source: ImageSource, seed: int, split: str | None) -> tuple[dict[str, Subset], dict[str, Any]]:
    """Diff-Mix's 50% per-class Flowers split (METHODS_SPEC §8.1), the base of Flower-LT."""
    base_split = split or protocol_settings(source, "long_tail").get("base_split", "all")
    train, test = half_split(source, seed, split=base_split)
    return {"train": train, "test": test}, {}


#: subsets only ``data subset`` writes, next to the protocols' (no suite runs them)
EXTRA_SUBSETS = {"half_split": _half_split_parts}


def _cell_values(protocol, given: dict[str, Any], source: ImageSource):
    """The cell's setting from the flags; a missing one is named by its flag."""
    defaults = protocol.default_setting(source)
    missing = [name for name in protocol.cell_parameters if given.get(name) is None and name not in defaults]
    if missing:
        flags = ", ".join(CELL_FLAGS.get(name, f"--param {name}=VALUE") for name in missing)
        raise ValueError(f"--protocol {protocol.name} needs {flags}")
    try:
        return protocol.setting(given, source)
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None


def draw_subsets(
    source: ImageSource,
    protocol: str,
    seed: int,
    shots: int | None = None,
    imbalance_factor: int | None = None,
    val_fraction: float = 0.2,
    split: str | None = None,
    train_source: ImageSource | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[dict[str, Subset], dict[str, Any]]:
    """The named subsets a protocol produces, plus extra facts to print (class groups, group counts).

    ``source`` is the dataset named on the command line; with ``train_source`` (Waterbirds: the CUB
    card the Waterbirds card names) it is the test dataset and ``split`` its test split, otherwise
    ``split`` is the training split. The protocol object draws them (``Protocol.draw``, as a run does).
    """
    if protocol in EXTRA_SUBSETS:
        return EXTRA_SUBSETS[protocol](source, seed, split)
    if protocol not in PROTOCOLS:
        raise RegistryError(PROTOCOLS.unknown_message(protocol, [*protocol_names(), *EXTRA_SUBSETS]))
    cls = get_protocol(protocol)
    try:
        proto = cls.from_values({"val_fraction": val_fraction} if "val_fraction" in cls.parameters() else {})
    except ProtocolError as exc:
        raise ValueError(f"--val-fraction: {exc}") from None
    setting = _cell_values(proto, {"shots": shots, "imbalance_factor": imbalance_factor, **(params or {})}, source)
    trains_elsewhere = train_source is not None and train_source is not source
    draw: ProtocolDraw = proto.draw(train_source if trains_elsewhere else source, seed, dict(setting),
                                    test_source=source, split=None if trains_elsewhere else split,
                                    test_split=split if trains_elsewhere else None)
    return draw.parts(), dict(draw.facts)


def _describe(name: str, subset: Subset, card: DatasetCard) -> dict[str, Any]:
    counts = subset.class_counts(card.num_classes)
    return {
        "part": name,
        "dataset": subset.dataset,
        "split": subset.split,
        "protocol": subset.protocol,
        "params": dict(subset.params),
        "total": len(subset.samples),
        "classes": sum(1 for c in counts if c),
        "per_class": [{"label": i, "name": card.class_names[i], "count": c} for i, c in enumerate(counts)],
        "manifest_hash": subset.manifest_hash,
    }


def _params(items: list[str]) -> dict[str, Any]:
    """``--param NAME=VALUE`` pairs, values read as JSON when they parse (``5``, ``0.5``, ``"x"``)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value
    return out


@_guarded
def cmd_subset(args: argparse.Namespace) -> int:
    """``augbench data subset D --protocol P ...``: print (and optionally write) the manifests."""
    datasets_dir = _opt(args, "datasets_dir")
    root = _opt(args, "data_root")
    source = open_dataset(args.dataset, root, datasets_dir)
    train_source = None
    if args.protocol in PROTOCOLS:  # a protocol whose cells train elsewhere (Waterbirds -> CUB)
        train_id = args.train_dataset or get_protocol(args.protocol).training_dataset(source)
        if train_id and train_id != source.card.id:
            train_source = open_dataset(train_id, root, datasets_dir)
    subsets, extra = draw_subsets(
        source, args.protocol, args.seed, shots=args.shots, imbalance_factor=args.imbalance_factor,
        val_fraction=args.val_fraction, split=args.split, train_source=train_source, params=_params(args.param),
    )
    cards = {source.card.id: source.card, **({train_source.card.id: train_source.card} if train_source else {})}
    described = []
    for name, subset in subsets.items():
        info = _describe(name, subset, cards.get(subset.dataset, source.card))
        if args.write:
            info["file"] = str(subset.write(Path(args.write) / manifest_filename(subset)))
        described.append(info)
    if args.json:
        print(json.dumps({"dataset": source.card.id, "protocol": args.protocol, "subsets": described, **extra}, indent=2))
        return 0
    print(f"dataset: {source.card.id} ({source.card.name})   protocol: {args.protocol}")
    for info in described:
        params = " ".join(f"{k}={v}" for k, v in info["params"].items() if k != "part")
        print(f"\n[{info['part']}] {info['dataset']} split {info['split']!r}: {info['total']:,} images in "
              f"{info['classes']} classes   ({params})")
        print(f"  manifest_hash: {info['manifest_hash']}")
        if "file" in info:
            print(f"  written to: {info['file']}")
        print("  per-class counts (label  count  name):")
        for row in info["per_class"]:
            print(f"    {row['label']:>4}  {row['count']:>5}  {row['name']}")
    if "class_groups" in extra:
        g = extra["class_groups"]
        t = g["thresholds"]
        print(f"\nclass groups (many > {t['many_above']}, few < {t['few_below']}): "
              + ", ".join(f"{k} {v}" for k, v in g["counts"].items()))
    if "test_groups" in extra:
        print("\ntest groups: " + ", ".join(f"{k} {v:,}" for k, v in extra["test_groups"].items()))
    return 0


# --- standalone ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """A parser with only the dataset commands (``python -m augbench.cli.data``)."""
    parser = argparse.ArgumentParser(prog="augbench", description="augbench dataset commands")
    sub = parser.add_subparsers(dest="command", metavar="{datasets,data}")
    sub.required = True
    add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one dataset command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

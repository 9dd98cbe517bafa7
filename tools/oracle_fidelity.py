"""Oracle fidelity of a run's synthetic sets under two oracles, side by side (issue 24, part 3).

The embedded table's Fid. column is the share of a method's (selected) synthetic images that the world's oracle
assigns to the class they were generated for (``augbench.metrics.fidelity``; the runner's ``metrics`` stage).
When the oracle is retrained, every Fid. changes with it; this tool reads a finished run directory and prints,
for every method, the Fid. under an OLD and a NEW oracle, averaged over the run's cells (shots, seeds, ...)::

    python -m tools.oracle_fidelity runs/few_shot-embedded --old /work/old_oracle \\
        [--new benchmark/world/weights/oracle] [--cells] [--json]

Each record's ``synthetic.dir`` is the set's folder and ``synthetic.selection`` the key of the images its
select stage kept (``<store>/selections/<key>.json``, the store being the folder two levels above the set);
they are loaded with the runner's loader (:func:`augbench.synthetic.loading.load_synthetic`) and labelled as the
runner labels them for this metric (``SyntheticSet.class_of()``: the class each image was generated for --
for an inter-class image, the target of its mix, which is also its larger-weight class for the strengths the
methods use). Images are judged whole, as the profile's oracle sees them (``resize_ratio = 1``). A set shared
by several rows (``sd_random`` under ``+cutmix`` / ``+mixup``) is scored once. ``recorded`` is the value the
run stored, a check that OLD is the oracle the run was scored with.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def synthetic_cells(run_dir: Path) -> list[dict]:
    """One entry per record with a synthetic set: method, cell label, set folder, kept indices, recorded Fid."""
    records = sorted((run_dir / "records").glob("*.json"))
    if not records:
        raise SystemExit(f"no records in {run_dir / 'records'}: expected a run directory (runs/<suite>-<profile>)")
    cells = []
    for path in records:
        record = json.loads(path.read_text())
        syn = record.get("synthetic") or {}
        if not syn.get("dir"):
            continue  # a method without a synthetic set (original, mixup, ...)
        folder = Path(syn["dir"])
        kept = None
        if syn.get("selection"):
            selection = folder.parent.parent / "selections" / f"{syn['selection']}.json"
            if selection.exists():
                kept = json.loads(selection.read_text())["kept"]
        recorded = ((syn.get("metrics") or {}).get("oracle_fidelity") or {}).get("value")
        cells.append({"method": record.get("method_id") or record["method"], "cell": path.stem, "folder": folder,
                      "kept": kept, "recorded": recorded})
    return cells


def load_set(folder: Path, kept: list[int] | None):
    """The set's images (uint8 [N, 3, H, W] or a list) and the runner's fidelity labels."""
    from augbench.synthetic.loading import load_synthetic

    if not (folder / "generation.json").exists():
        raise SystemExit(f"synthetic set {folder} is gone (no generation.json): rerun the suite to regenerate it")
    classes = json.loads((folder / "generation.json").read_text())["classes"]
    synthetic, _ = load_synthetic(folder, classes, [], kept)
    return synthetic.images, synthetic.class_of()


def fidelity(oracle, images, labels, size: int) -> float:
    from augbench.metrics.fidelity import oracle_fidelity

    model, (mean, std) = oracle
    return oracle_fidelity(model, images, labels, mean=mean, std=std, input_size=size, resize_ratio=1.0)["value"]


def oracle_size(folder: Path, images) -> int:
    """The oracle's input size (its config's ``input_size``, else the images' own side)."""
    side = int(images.shape[-1]) if hasattr(images, "shape") else int(images[0].shape[-1])
    return int(json.loads((folder / "config.json").read_text()).get("input_size", side))


def score_cells(cells: list[dict], oracles: dict[str, Path]) -> list[dict]:
    """Every cell with its Fid. under each oracle (sets shared by cells scored once)."""
    import torch

    from augbench.world.check import load_oracle_folder

    loaded = {name: load_oracle_folder(folder) for name, folder in oracles.items()}
    scores: dict[tuple, dict[str, float]] = {}
    out = []
    with torch.no_grad():
        for cell in cells:
            key = (str(cell["folder"]), tuple(cell["kept"]) if cell["kept"] is not None else None)
            if key not in scores:
                images, labels = load_set(cell["folder"], cell["kept"])
                scores[key] = {name: fidelity(loaded[name], images, labels, oracle_size(oracles[name], images))
                               for name in oracles}
            out.append({**cell, **scores[key]})
    return out


def per_method(scored: list[dict], names: list[str]) -> dict[str, dict]:
    """Means over each method's cells of ``recorded`` and every oracle's Fid."""
    groups = defaultdict(list)
    for row in scored:
        groups[row["method"]].append(row)
    table = {}
    for method, rows in sorted(groups.items()):
        recorded = [r["recorded"] for r in rows if r["recorded"] is not None]
        table[method] = {"cells": len(rows), "recorded": float(np.mean(recorded)) if recorded else None,
                         **{n: float(np.mean([r[n] for r in rows])) for n in names}}
    return table


def main(argv: list[str] | None = None) -> int:
    from augbench.run.profiles import WORLD_WEIGHTS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run directory (runs/<suite>-embedded) with records/*.json")
    p.add_argument("--old", type=Path, required=True, help="the old oracle's folder (config.json + model.safetensors)")
    p.add_argument("--new", type=Path, default=WORLD_WEIGHTS / "oracle", help="the new oracle's folder (default: the "
                   "committed one)")
    p.add_argument("--cells", action="store_true", help="also print every cell")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    args = p.parse_args(argv)
    cells = synthetic_cells(args.run_dir)
    if not cells:
        raise SystemExit(f"no record in {args.run_dir} has a synthetic set: nothing to judge")
    scored = score_cells(cells, {"old": args.old, "new": args.new})
    table = per_method(scored, ["old", "new"])
    if args.json:
        print(json.dumps({"methods": table, **({"cells": [{k: (str(v) if isinstance(v, Path) else v)
                                                             for k, v in r.items() if k != "kept"} for r in scored]}
                                                 if args.cells else {})}, indent=2))
        return 0
    fmt = lambda v: "    -" if v is None else f"{v:5.1f}"  # noqa: E731
    width = max(len(m) for m in table) + 2
    print(f"oracle fidelity (%), mean over cells; old = {args.old}, new = {args.new}")
    print(f"{'method':<{width}}cells  recorded    old    new   new-old")
    for method, row in table.items():
        print(f"{method:<{width}}{row['cells']:5d}  {fmt(row['recorded']):>8}  {fmt(row['old'])}  {fmt(row['new'])}"
              f"  {row['new'] - row['old']:+7.1f}")
    if args.cells:
        print()
        for r in scored:
            print(f"{r['cell']:<{width + 30}} {fmt(r['recorded'])}  {fmt(r['old'])}  {fmt(r['new'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Study: how cheap can the embedded classifier recipe get before it measures under-training?

Issue 15 needs a cheaper few-shot cell; the README's budget table showed that halving the image
budget with the same learning rate and schedule costs 7-20 points. This study trains ``original``
(no synthetic data, so no generator is involved) on the few_shot suite's subsets under recipe
variants of ``embedded`` and prints top-1 per shot (mean ± std over seeds) and seconds per training::

    python -m tools.recipe_study --variant base: \\
        --variant b16_3k:image_budget=3000,batch_size=16 --seeds 0 1 2 --run-dir out/recipe_study

A variant is ``name:field=value,...`` (``Recipe`` fields; numbers parsed as such). Each variant runs
as its own registered recipe ``embedded@name`` in one run directory, so the subsets are the same
and finished trainings are reused.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import tempfile
from pathlib import Path

from augbench.training.recipes import RECIPES


def parse_variant(text: str) -> tuple[str, dict]:
    """``"b16:batch_size=16,lr=0.01"`` -> ``("b16", {"batch_size": 16, "lr": 0.01})``."""
    name, _, body = text.partition(":")
    fields = {f.name for f in dataclasses.fields(RECIPES["embedded"])}
    overrides = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown recipe field {key!r} in variant {text!r}")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return name, overrides


def suite_file(recipe: str, folder: Path) -> Path:
    """The few_shot suite with ``recipe`` as its classifier recipe, written to ``folder``."""
    from augbench.run.suites import suite_path

    text = suite_path("few_shot").read_text()
    if 'recipe = "embedded"' not in text:
        raise SystemExit("the few_shot suite no longer names `recipe = \"embedded\"`: update recipe_study.suite_file")
    text = text.replace('recipe = "embedded"', f'recipe = "{recipe}"', 1)
    path = folder / f"few_shot_{recipe.replace('@', '_')}.toml"
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> None:
    from augbench.run.cells import RunOptions
    from augbench.run.runner import run_suite

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--shots", nargs="+", type=int, default=[5, 10])
    p.add_argument("--run-dir", default="out/recipe_study")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for text in args.variant:
            name, overrides = parse_variant(text)
            recipe = f"embedded@{name}"
            RECIPES[recipe] = dataclasses.replace(RECIPES["embedded"], name=recipe, **overrides)
            run_suite(RunOptions(suite=str(suite_file(recipe, Path(tmp))), methods=["original"], seeds=args.seeds,
                                 shots=args.shots, run_dir=args.run_dir, progress=False))
            rows.append({"variant": name, "overrides": overrides, **_summarise(Path(args.run_dir), recipe)})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| variant | overrides | " + " | ".join(f"{k}-shot top-1" for k in args.shots) + " | s / training |")
    print("|---|---|" + "---|" * len(args.shots) + "---|")
    for row in rows:
        cells = " | ".join(row.get(f"{k}-shot", "—") for k in args.shots)
        print(f"| {row['variant']} | {row['overrides']} | {cells} | {row['seconds']} |")


def _summarise(run_dir: Path, recipe: str) -> dict:
    """Mean ± std of top-1 per shot and the mean training seconds of ``recipe``'s records."""
    import numpy as np

    from augbench.run.records import read_record

    by_shot: dict[int, list[float]] = {}
    seconds = []
    for path in run_dir.glob("records/**/*.json"):
        record = read_record(path)
        train = record.train  # a CellRecord (augbench.run.records)
        if (train.get("config") or {}).get("recipe", {}).get("name") != recipe:
            continue
        by_shot.setdefault(record.cell["protocol_params"]["shots"], []).append(record.metrics["top1"])
        seconds.append(train.get("timings", {}).get("total", float("nan")))
    out = {f"{k}-shot": f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.2f} (n={len(v)})"
           for k, v in sorted(by_shot.items())}
    return {**out, "seconds": f"{np.mean(seconds):.1f}" if seconds else "—"}


if __name__ == "__main__":
    main()

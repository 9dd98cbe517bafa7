"""The ``augbench`` command line (DESIGN.md, "Command-line contract").

::

    augbench methods [--json]
    augbench datasets [--json]
    augbench data verify|fetch|subset ...
    augbench generate --method M --dataset D [--protocol few_shot --shots K] --seed S --out DIR
    augbench run --suite SUITE [--profile embedded|sd15] [--methods ...] [--seeds ...] [--run-dir DIR]
    augbench report --suite SUITE [--run-dir DIR] [--format md,tex,csv,html]
    augbench world build|check [--json]

Heavy libraries (torch, diffusers) are imported inside the handlers, so ``augbench methods`` and
``augbench --help`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from augbench.run.suites import PROTOCOLS


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


# --- methods ----------------------------------------------------------------------------------------

def cmd_methods(args) -> int:
    from augbench.registry import default_registry

    rows = default_registry().describe_all(include_presets=True)
    if args.json:
        _print_json(rows)
        return 0
    width = max([30, *(len(row["id"]) + 1 for row in rows)])
    print(f"{'id':<{width}} {'kind':<8} {'distribution':<14} summary")
    for row in rows:
        print(f"{row['id']:<{width}} {row['kind']:<8} {row.get('distribution', ''):<14} {row.get('summary', '')}")
        if args.verbose and row.get("preset") is None:
            for p in row.get("params") or []:
                print(f"{'':<32}{p['name']} = {p['default']!r}  {p.get('help', '')}")
    return 0


# --- generate ---------------------------------------------------------------------------------------

def cmd_generate(args) -> int:
    from augbench.data import open_dataset
    from augbench.synthetic.generate import generate_synthetic_set
    from augbench.run.profiles import get_profile
    from augbench.run.stages import draw_subset

    profile = get_profile(args.profile)
    source = open_dataset(args.dataset, args.data_root, args.datasets_dir)
    subset = draw_subset(source, args.protocol, seed=args.seed, shots=args.shots,
                         imbalance_factor=args.imbalance_factor)
    overrides = dict(kv.split("=", 1) for kv in args.param or [])
    out = generate_synthetic_set(args.method, source, subset, profile, args.seed, Path(args.out),
                                 batch_size=args.batch_size, params_overrides=_parse_values(overrides))
    print(f"wrote {out}")
    return 0


def _parse_values(d: dict[str, str]) -> dict:
    out = {}
    for k, v in d.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# --- run / report -----------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from augbench.run.runner import run_suite
    from augbench.run.suites import RunOptions

    opts = RunOptions(
        suite=args.suite, profile=args.profile, methods=args.methods, seeds=args.seeds, run_dir=args.run_dir,
        cache_dir=args.cache_dir, progress=not args.no_progress, executor=args.executor, data_root=args.data_root,
        datasets_dir=args.datasets_dir, device=args.device, build_artifacts=not args.no_build_artifacts,
        workers=args.workers,
        datasets=args.datasets, shots=args.shots, epochs=args.epochs, image_budget=args.image_budget,
        batch_size=args.batch_size,
        ray_address=args.ray_address, ray_cpus_per_task=args.ray_cpus_per_task,
        ray_gpus_per_task=args.ray_gpus_per_task,
    )
    summary = run_suite(opts)
    if args.json:
        _print_json(summary)
    return 0 if not summary.get("failed") else 1


def cmd_report(args) -> int:
    from augbench.reporting.tables import render_suite_report

    paths = render_suite_report(args.suite, run_dir=args.run_dir, formats=args.format.split(","),
                                profile=args.profile)
    for p in paths:
        print(f"wrote {p}")
    return 0


# --- world ------------------------------------------------------------------------------------------

def cmd_world(args) -> int:
    from augbench.run.profiles import WORLD_WEIGHTS

    out = Path(args.weights or WORLD_WEIGHTS)
    if args.action == "build":
        from augbench.world.build import BuildConfig, build

        overrides = ({"seed": args.seed} | ({"device": args.device} if args.device else {})
                     | ({"processes": args.processes} if args.processes is not None else {})
                     | ({"init_from": args.init_from} if args.init_from else {}))
        from augbench.contract import ConfigError

        try:
            cfg = BuildConfig.smoke() if args.smoke else BuildConfig.recipe(args.recipe, **overrides)
        except ValueError as exc:  # an unknown recipe name: one line, exit 2
            raise ConfigError(str(exc)) from exc
        build(out, cfg, log=lambda s: print(s, flush=True), with_oracle=not args.no_oracle, resume=args.resume,
              keep_stages=args.keep_stages)
        return 0
    from augbench.world.check import CheckConfig, run_check

    grid = Path(args.grid) if args.grid else Path("out") / "world_check_grid.png"
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    results = run_check(CheckConfig(weights=out, grid_path=grid, guidance_scale=args.guidance_scale,
                                    num_inference_steps=args.steps, seed=args.seed), log=log)
    if args.json:
        _print_json(results)
    else:
        print(f"build time: {results['build_seconds'] / 60:.1f} min" if results.get("build_seconds") else "build time: n/a")
        for k, v in results["model_sizes_bytes"].items():
            print(f"size {k}: {v / 1e6:.2f} MB")
        for key, target in sorted((results.get("targets") or {}).items()):
            if results.get(key) is not None:
                print(f"{key}: {results[key]:.3f} (target {target})")
        print(f"check took {results['check_seconds']:.0f}s")
    return 0


# --- parser -----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="augbench", description="Benchmark harness for image data augmentation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("methods", help="list registered augmentation methods")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="also print parameters with defaults")
    p.set_defaults(func=cmd_methods)

    from augbench.cli.data import add_data_commands

    add_data_commands(sub)
    from augbench.cli.concepts import add_concepts_commands

    add_concepts_commands(sub)

    p = sub.add_parser("generate", help="generate a synthetic set: DIR/manifest.jsonl + DIR/images/")
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--protocol", default="few_shot", choices=PROTOCOLS)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--imbalance-factor", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--profile", default="embedded")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="override a method parameter")
    _data_opts(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("run", help="run a suite (resumable)")
    _run_opts(p)
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="render a suite's tables from its result records")
    p.add_argument("--suite", required=True)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--profile", default=None, help="only records of this profile (default: all)")
    p.add_argument("--format", default="md,tex,csv,html",
                   help="comma-separated: md, tex, csv, html (one self-contained page with plots and sample grids)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("world", help="build or check the embedded world's foundation models")
    p.add_argument("action", choices=["build", "check"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--weights", default=None, help="weights directory (default: the committed one)")
    p.add_argument("--grid", default=None, help="where `check` writes its sample grid PNG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device for `build` (default: the recipe's: cpu / cuda)")
    p.add_argument("--recipe", default="cpu",
                   help="`build` recipe (BuildConfig.RECIPES): cpu (default, ~35 min on 2 cores), v4 (the committed "
                        "models: a v3 world's UNet trained 6k more steps, ~1.2 h; needs --init-from), v3 (cpu trained "
                        "longer, ~1.6 h on 2 cores), v2 (the previous ones), gpu (longer schedule for a GPU)")
    p.add_argument("--init-from", default=None,
                   help="`build`: continue this built world folder (its CLIP, VAE and oracle as they are; its UNet "
                        "trained the recipe's unet_steps more) instead of starting from scratch")
    p.add_argument("--no-oracle", action="store_true", help="`build` without retraining the oracle classifier")
    p.add_argument("--processes", type=int, default=None,
                   help="`build` on CPU: data-parallel processes for the VAE and UNet (default: one per core; "
                        "1 trains in this process)")
    p.add_argument("--smoke", action="store_true", help="a few steps of every recipe (testing)")
    p.add_argument("--resume", action="store_true",
                   help="`build`: continue an interrupted build from its checkpoints (in <weights>.building), "
                        "reusing every stage whose settings are unchanged (e.g. CLIP and VAE when only the UNet "
                        "trains longer), instead of starting afresh")
    p.add_argument("--keep-stages", action="store_true",
                   help="`build`: keep the finished stages in <weights>.stages, for a later --resume")
    p.add_argument("--guidance-scale", type=float, default=7.5, help="`check`: classifier-free guidance scale")
    p.add_argument("--steps", type=int, default=25, help="`check`: sampler steps")
    p.set_defaults(func=cmd_world)
    return parser


def _data_opts(p: argparse.ArgumentParser) -> None:
    if not any(a.dest == "data_root" for a in p._actions):
        p.add_argument("--data-root", default=None, help="root of the real datasets (or $AUGBENCH_DATA)")
    if not any(a.dest == "datasets_dir" for a in p._actions):
        p.add_argument("--datasets-dir", default=None, help="extra folder of dataset cards")


def _run_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", required=True)
    p.add_argument("--profile", default="embedded", choices=["embedded", "sd15"])
    p.add_argument("--methods", nargs="+", default=None, help="restrict to these method ids")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="trial seeds (default: the suite's)")
    p.add_argument("--datasets", nargs="+", default=None, help="restrict to these datasets")
    p.add_argument("--shots", nargs="+", type=int, default=None, help="restrict to these shot counts")
    p.add_argument("--run-dir", default=None, help="records and classifier results (default: runs/<suite>-<profile>)")
    p.add_argument("--cache-dir", default=None,
                   help="shared store of artifacts and synthetic sets, reused by every run and suite "
                        "(default: $AUGBENCH_CACHE or ~/.cache/augbench)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.add_argument("--no-build-artifacts", action="store_true",
                   help="use only artifacts already in the store (concepts, inversion pools); a missing one is an "
                        "error naming the command that builds it")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local: cells one after another; ray: one Ray task per subset (pip install 'augbench[ray]')")
    p.add_argument("--workers", default="1",
                   help="local executor: run the cells' subset groups on N processes, the cores split among them; "
                        "'auto': one per core (at most 4) on the embedded profile without CUDA, else 1 (default 1)")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: RAY_ADDRESS or a local one)")
    p.add_argument("--ray-cpus-per-task", type=float, default=1, help="CPUs each Ray task asks for (default 1)")
    p.add_argument("--ray-gpus-per-task", type=float, default=0,
                   help="GPUs each Ray task asks for (sd15 on a GPU cluster: 1; default 0)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p.add_argument("--image-budget", type=int, default=None,
                   help="training images per run (epochs = budget / epoch length); default: the suite's or recipe's")
    p.add_argument("--batch-size", type=int, default=None, help="generation batch size")
    _data_opts(p)


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix (a typo, a missing dataset, a bad config): one line and exit code 2."""
    from augbench.run.artifacts import ArtifactError
    from augbench.data.cards import CardError
    from augbench.contract import ConfigError
    from augbench.data.core import DataError
    from augbench.synthetic.generate import GenerateError
    from augbench.registry import RegistryError
    from augbench.run.runner import DataMissingError
    from augbench.run.suites import SuiteError

    return (SuiteError, ConfigError, RegistryError, CardError, DataError, DataMissingError, ArtifactError,
            GenerateError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show tracebacks of expected errors")
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished stages are cached, run the same command again to resume", file=sys.stderr)
        return 130
    except expected_errors() as exc:
        if args.debug:
            raise
        print(f"augbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``augbench world build|check [--json]``: the embedded world's foundation models (DESIGN.md, "The embedded miniature world").

``build`` trains them with a recipe (:class:`augbench.world.build.BuildConfig`); ``check`` prints the
quality report (:func:`augbench.world.check.run_check`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from augbench.cli.options import print_json


def add_world_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("world", help="build or check the embedded world's foundation models")
    p.add_argument("action", choices=["build", "check"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--weights", default=None, help="weights directory (default: the committed one)")
    p.add_argument("--grid", default=None, help="where `check` writes its sample grid PNG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="torch device for `build` (default: the recipe's: cpu / cuda)")
    p.add_argument("--recipe", default="cpu",
                   help="`build` recipe (BuildConfig.RECIPES): cpu (default, ~45 min on 2 cores), v4 (the committed "
                        "models: a v3 world's UNet trained 6k more steps and the editor, ~2.5 h; needs --init-from), v3 (cpu trained "
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


def cmd_world(args: argparse.Namespace) -> int:
    from augbench.run.profiles import WORLD_WEIGHTS

    weights = Path(args.weights or WORLD_WEIGHTS)
    if args.action == "build":
        return build_world(args, weights)
    return check_world(args, weights)


def build_world(args: argparse.Namespace, weights: Path) -> int:
    from augbench.contract import ConfigError
    from augbench.world.build import BuildConfig, build

    overrides = ({"seed": args.seed} | ({"device": args.device} if args.device else {})
                 | ({"processes": args.processes} if args.processes is not None else {})
                 | ({"init_from": args.init_from} if args.init_from else {}))
    try:
        cfg = BuildConfig.smoke() if args.smoke else BuildConfig.recipe(args.recipe, **overrides)
    except ValueError as exc:  # an unknown recipe name: one line, exit 2
        raise ConfigError(str(exc)) from exc
    build(weights, cfg, log=lambda s: print(s, flush=True), with_oracle=not args.no_oracle, resume=args.resume,
          keep_stages=args.keep_stages)
    return 0


def check_world(args: argparse.Namespace, weights: Path) -> int:
    from augbench.world.check import CheckConfig, run_check

    grid = Path(args.grid) if args.grid else Path("out") / "world_check_grid.png"
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else print
    results = run_check(CheckConfig(weights=weights, grid_path=grid, guidance_scale=args.guidance_scale,
                                    num_inference_steps=args.steps, seed=args.seed), log=log)
    if args.json:
        print_json(results)
        return 0
    print(f"build time: {results['build_seconds'] / 60:.1f} min" if results.get("build_seconds") else "build time: n/a")
    for k, v in results["model_sizes_bytes"].items():
        print(f"size {k}: {v / 1e6:.2f} MB")
    for key, target in sorted((results.get("targets") or {}).items()):
        if results.get(key) is not None:
            print(f"{key}: {results[key]:.3f} (target {target})")
    print(f"check took {results['check_seconds']:.0f}s")
    return 0

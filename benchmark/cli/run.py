"""``augbench run --suite SUITE ...``: run a suite, resumable (DESIGN.md, "Command-line contract").

The parser and the handler; the work is :func:`augbench.run.runner.run_suite`, imported when the
command runs so that other commands never load torch through it.
"""

from __future__ import annotations

import argparse

from augbench.cli.options import add_data_options, print_json


def add_run_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a suite (resumable)")
    add_run_options(parser)
    parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
    parser.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Exit 0 when every cell finished, 1 when some failed (the summary names them)."""
    from augbench.run.cells import RunOptions
    from augbench.run.runner import run_suite

    opts = RunOptions(
        suite=args.suite, profile=args.profile, methods=args.methods, seeds=args.seeds, run_dir=args.run_dir,
        cache_dir=args.cache_dir, progress=not args.no_progress, executor=args.executor, data_root=args.data_root,
        datasets_dir=args.datasets_dir, device=args.device, build_artifacts=not args.no_build_artifacts,
        workers=args.workers,
        datasets=args.datasets, shots=args.shots, epochs=args.epochs, image_budget=args.image_budget,
        batch_size=args.batch_size,
        ray_address=args.ray_address, ray_cpus_per_task=args.ray_cpus_per_task,
        ray_gpus_per_task=args.ray_gpus_per_task, rehearsal=args.rehearsal,
    )
    summary = run_suite(opts)
    if args.json:
        print_json(summary)
    return 0 if not summary.get("failed") else 1


def add_run_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--rehearsal", action="store_true",
                   help="run the suite shrunk by the rehearsal overlay (benchmark/suites/overlays/rehearsal.toml: a "
                        "few classes, images, steps and epochs) through every stage and model of the real code path, "
                        "into runs/<suite>-<profile>-rehearsal; README 'Before a long sd15 run'")
    add_data_options(p)

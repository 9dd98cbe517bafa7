"""``augbench generate``: one synthetic set, ``DIR/manifest.jsonl`` + ``DIR/images/`` (DESIGN.md, "Command-line contract").

The parser and the handler; the work is :func:`augbench.synthetic.generate.generate_synthetic_set`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from augbench.cli.options import add_data_options


def add_generate_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("generate", help="generate a synthetic set: DIR/manifest.jsonl + DIR/images/")
    parser.add_argument("--method", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--protocol", default="few_shot",
                        help="a registered protocol (built-in or a plugin's; `augbench data subset --help`)")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--imbalance-factor", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--profile", default="embedded")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--param", action="append", metavar="KEY=VALUE", help="override a method parameter")
    add_data_options(parser)
    parser.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from augbench.data import open_dataset
    from augbench.run.profiles import get_profile
    from augbench.run.stages import draw_subset
    from augbench.synthetic.generate import generate_synthetic_set

    profile = get_profile(args.profile)
    source = open_dataset(args.dataset, args.data_root, args.datasets_dir)
    subset = draw_subset(source, args.protocol, seed=args.seed, shots=args.shots,
                         imbalance_factor=args.imbalance_factor)
    overrides = dict(kv.split("=", 1) for kv in args.param or [])
    out = generate_synthetic_set(args.method, source, subset, profile, args.seed, Path(args.out),
                                 batch_size=args.batch_size, params_overrides=parse_values(overrides))
    print(f"wrote {out}")
    return 0


def parse_values(values: dict[str, str]) -> dict[str, Any]:
    """``--param`` values as JSON where they parse (``0.5``, ``true``, ``[1, 2]``), else as text."""
    out: dict[str, Any] = {}
    for key, text in values.items():
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out

"""``augbench methods [--json] [-v]``: the registered augmentation methods (DESIGN.md, "Command-line contract").

The listing reads the method registry only; nothing of the run, the data or the reports is imported.
"""

from __future__ import annotations

import argparse

from augbench.cli.options import print_json


def add_methods_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("methods", help="list registered augmentation methods")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print parameters with defaults")
    parser.set_defaults(func=cmd_methods)


def cmd_methods(args: argparse.Namespace) -> int:
    """One line per method and preset: id, kind, distribution, summary (``-v``: parameters too)."""
    from augbench.registry import default_registry

    rows = default_registry().describe_all(include_presets=True)
    if args.json:
        print_json(rows)
        return 0
    width = max([30, *(len(row["id"]) + 1 for row in rows)])
    print(f"{'id':<{width}} {'kind':<8} {'distribution':<14} summary")
    for row in rows:
        print(f"{row['id']:<{width}} {row['kind']:<8} {row.get('distribution', ''):<14} {row.get('summary', '')}")
        if args.verbose and row.get("preset") is None:
            for p in row.get("params") or []:
                print(f"{'':<32}{p['name']} = {p['default']!r}  {p.get('help', '')}")
    return 0

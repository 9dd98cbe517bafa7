"""``augbench report [--run-dir DIR] [--suite SUITE] [--profile P] [--format md,tex,csv,html]`` (DESIGN.md,
"Results and reports").

The report renders what the run wrote: ``DIR/suite.json`` (the suite as it ran, profile included) and
the records (:mod:`augbench.reporting.run_report`). ``--suite`` / ``--profile`` are needed only for a
run directory without ``suite.json``, or to find the default one (``runs/<suite>-<profile>``).
"""

from __future__ import annotations

import argparse


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="render a run's tables from its suite.json and result records")
    parser.add_argument("--run-dir", default=None,
                        help="the run directory (default: runs/<suite>-<profile> of --suite / --profile)")
    parser.add_argument("--suite", default=None,
                        help="only for a run directory without suite.json (else it must name the run's suite)")
    parser.add_argument("--profile", default=None,
                        help="only for a run directory without suite.json (else it must be the run's profile)")
    parser.add_argument("--format", default="md,tex,csv,html",
                        help="comma-separated: md, tex, csv, html (one self-contained page with plots and sample grids)")
    parser.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from augbench.reporting.run_report import render_suite_report

    paths = render_suite_report(args.suite, run_dir=args.run_dir, formats=args.format.split(","),
                                profile=args.profile)
    for path in paths:
        print(f"wrote {path}")
    return 0

"""The ``augbench`` command line (DESIGN.md, "Command-line contract"): the parser and ``main``.

::

    augbench methods [--json]
    augbench datasets [--json]
    augbench data verify|fetch|subset ...
    augbench models check [--profile embedded|sd15] [--suite SUITE] [--offline] [--json]
    augbench concepts build|show|import ...
    augbench generate --method M --dataset D [--protocol few_shot --shots K] --seed S --out DIR
    augbench metrics --synthetic DIR --dataset D [--profile P] [--split train|test|both] [--json]
    augbench run --suite SUITE [--profile embedded|sd15] [--methods ...] [--seeds ...] [--run-dir DIR]
    augbench report [--run-dir DIR] [--suite SUITE] [--format md,tex,csv,html]
    augbench world build|check [--json]

Each command is one module of ``augbench.cli`` (``methods``, ``data``, ``models``, ``concepts``, ``generate``,
``metrics``, ``run``, ``report``, ``world``) that adds its sub-parser and handles it. Heavy libraries (torch,
diffusers, pandas) are imported inside the handlers, so ``augbench --help`` and one command never pay for another's.
"""

from __future__ import annotations

import argparse
import os
import sys

from augbench.cli.concepts import add_concepts_commands
from augbench.cli.data import add_data_commands
from augbench.cli.generate import add_generate_command
from augbench.cli.methods import add_methods_command
from augbench.cli.metrics import add_metrics_command
from augbench.cli.models import add_models_command
from augbench.cli.report import add_report_command
from augbench.cli.run import add_run_command
from augbench.cli.world import add_world_command

#: Sub-parser builders in ``augbench --help`` order.
COMMANDS = (add_methods_command, add_data_commands, add_models_command, add_concepts_commands, add_generate_command,
            add_metrics_command, add_run_command, add_report_command, add_world_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="augbench", description="Benchmark harness for image data augmentation.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix (a typo, a missing dataset, a bad config, an unreadable record): one line, exit 2."""
    from augbench.contract import ConfigError
    from augbench.data.cards import CardError
    from augbench.data.core import DataError
    from augbench.registry import RegistryError
    from augbench.reporting.published import PublishedError
    from augbench.reporting.run_report import ReportError
    from augbench.run.artifacts import ArtifactError
    from augbench.run.records import RecordError
    from augbench.run.runner import DataMissingError
    from augbench.run.suites import SuiteError
    from augbench.synthetic.generate import GenerateError

    return (SuiteError, ConfigError, RegistryError, CardError, DataError, DataMissingError, ArtifactError,
            GenerateError, RecordError, ReportError, PublishedError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks of expected errors; `run` stops at the first failing cell with its "
                             "traceback instead of going on (same as AUGBENCH_RAISE=1)")
    args = parser.parse_args(argv)
    if args.debug:  # the executors re-raise a failing cell's exception instead of logging it and going on
        os.environ["AUGBENCH_RAISE"] = "1"
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

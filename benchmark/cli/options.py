"""Options and output helpers shared by several ``augbench`` commands (one module per command: ``cli/*.py``)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def print_json(obj: Any) -> None:
    """``obj`` as indented, key-sorted JSON on stdout (paths and the like as text)."""
    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data-root`` and ``--datasets-dir``, unless the command already has them."""
    if not any(a.dest == "data_root" for a in parser._actions):
        parser.add_argument("--data-root", default=None, help="root of the real datasets (or $AUGBENCH_DATA)")
    if not any(a.dest == "datasets_dir" for a in parser._actions):
        parser.add_argument("--datasets-dir", default=None, help="extra folder of dataset cards")

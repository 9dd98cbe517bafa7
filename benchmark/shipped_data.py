"""Where the data folders that ship with augbench are, in a checkout and in an installed wheel.

``datasets/`` (dataset cards and class lists) and ``reports/`` (published tables) are top-level data
folders of the checkout, never Python packages: a top-level ``datasets`` package would shadow Hugging
Face ``datasets`` (DESIGN.md, "Layout"). A wheel cannot install them at the top level for the same
reason, so ``pyproject.toml`` maps them into the package (``[tool.setuptools.package-dir]``:
``augbench._data.datasets = "datasets"``, ``augbench._data.reports = "reports"``) and the wheel
carries them as ``augbench/_data/datasets/`` and ``augbench/_data/reports/``, data files only.

:func:`shipped_data_dir` finds them either way: the copy inside the installed package when there is
one (``pip install .``, a Ray worker's environment), else the checkout's folder next to
``benchmark/`` (a source checkout or an editable install, where the mapping is not materialised).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

#: The data folders a wheel carries inside the package, by their checkout name.
SHIPPED_FOLDERS = ("datasets", "reports")


def shipped_data_dir(name: str) -> Path:
    """The folder ``name`` (``datasets`` or ``reports``): ``augbench/_data/<name>`` in an installed
    wheel, else ``<checkout>/<name>``.

    The installed copy is checked first on purpose: in ``site-packages`` the folder next to
    ``benchmark/`` named ``datasets`` is Hugging Face's package, not ours.
    """
    if name not in SHIPPED_FOLDERS:
        raise ValueError(f"unknown shipped data folder {name!r}; expected one of {', '.join(SHIPPED_FOLDERS)}")
    installed = PACKAGE_DIR / "_data" / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name

"""A non-editable install carries everything augbench looks up at run time (issue 10): dataset cards
and class lists, published tables, suites and the embedded world's weights, inside the package.

``datasets/`` and ``reports/`` stay top-level data folders of the checkout and must never become
top-level packages (a ``datasets`` package would shadow Hugging Face ``datasets``; DESIGN.md
"Layout"), so the wheel maps them to ``augbench/_data/`` and ``augbench.shipped_data`` finds them
there. The wheel is built from a copy of the checkout (the build writes ``build/`` into its source
tree, which must not happen in a working tree others use) without build isolation or an index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "benchmark", "methods", "datasets", "reports")
#: In-progress world builds are never part of a release (.gitignore).
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "weights.building")

pytest.importorskip("setuptools")
pytest.importorskip("wheel")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORED)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    str(src), "-w", str(out)], check=True, capture_output=True, timeout=300)
    [built] = out.glob("augbench-*.whl")
    return built


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and "weights.building" not in p.parts}


def _committed_python() -> set[str]:
    """The committed ``.py`` files of ``benchmark/`` and ``methods/`` (all present ones outside a git
    checkout): a package still being written in the working tree is not yet a release's business."""
    try:
        out = subprocess.run(["git", "ls-files", "--", "benchmark/*.py", "methods/*.py"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
        tracked = {f for f in out.stdout.splitlines() if (ROOT / f).is_file()} if out.returncode == 0 else set()
    except OSError:
        tracked = set()
    return tracked or {f"{top}/{f}" for top in ("benchmark", "methods") for f in _files(ROOT / top) if f.endswith(".py")}


def test_wheel_carries_the_data_folders_suites_weights_and_every_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    # one import name: no generic top-level `benchmark` or `methods` (DESIGN.md, "Layout")
    assert {n.split("/")[0] for n in names} == {"augbench", "augbench-0.1.0.dist-info"}
    # the checkout's data folders, file for file, inside the package; no Python among them
    for folder in ("datasets", "reports"):
        expected = {f"augbench/_data/{folder}/{f}" for f in _files(ROOT / folder)}
        assert expected and expected <= names, sorted(expected - names)
    assert not [n for n in names if n.startswith("augbench/_data/") and n.endswith(".py")]
    assert "augbench/_data/datasets/classes/cub.txt" in names
    assert {f"augbench/suites/{p.name}" for p in (ROOT / "benchmark" / "suites").glob("*.toml")} <= names
    weights = {f"augbench/world/weights/{f}" for f in _files(ROOT / "benchmark" / "world" / "weights")}
    assert "augbench/world/weights/clip/config.json" in weights and weights <= names, sorted(weights - names)
    # every committed package of the checkout (pyproject lists them explicitly), under its installed name
    modules = {_installed_name(f) for f in _committed_python() if (ROOT / f).parent.joinpath("__init__.py").is_file()}
    assert modules <= names, f"packages missing from [tool.setuptools] packages: {sorted(modules - names)}"


def _installed_name(checkout_path: str) -> str:
    """``benchmark/run/stages.py`` -> ``augbench/run/stages.py``; ``methods/x.py`` -> ``augbench/methods/x.py``."""
    top, _, rest = checkout_path.partition("/")
    return f"augbench/{rest}" if top == "benchmark" else f"augbench/{top}/{rest}"


def test_installed_package_alone_finds_cards_published_tables_suites_and_weights(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = """
import json
import os
import augbench
from augbench.data.cards import list_cards, load_card
from augbench.run.profiles import WORLD_WEIGHTS
from augbench.reporting.published import list_published, load_published
from augbench.run.suites import list_suites
print(json.dumps({
    "package": augbench.__file__,
    "cards": {c.id: str(c.path) for c in list_cards()},
    "cub_classes": load_card("cub").num_classes,
    "published": {t: str(load_published(t).path) for t in list_published()},
    "suites": list_suites(),
    "clip": str(WORLD_WEIGHTS / "clip" / "config.json"),
}))
"""
    # -S: no site-packages (so not the checkout's editable install), -P: not the working directory
    out = subprocess.run([sys.executable, "-S", "-P", "-c", probe], cwd=elsewhere, check=True, capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": str(site)})
    found = json.loads(out.stdout)
    assert Path(found["package"]).parent == site / "augbench"
    assert set(found["cards"]) == {p.stem for p in (ROOT / "datasets").glob("*.toml")}
    assert all(Path(p).parent == site / "augbench" / "_data" / "datasets" for p in found["cards"].values())
    assert found["cub_classes"] == 200  # the class list file next to the card was found too
    assert set(found["published"]) == {p.stem for p in (ROOT / "reports" / "published").glob("*.toml")}
    assert all(Path(p).is_relative_to(site) for p in found["published"].values())
    assert set(found["suites"]) == {p.stem for p in (ROOT / "benchmark" / "suites").glob("*.toml")}
    assert Path(found["clip"]).is_relative_to(site) and Path(found["clip"]).is_file()


def test_a_checkout_finds_its_own_data_folders():
    from augbench.data.cards import SHIPPED_DATASETS_DIR
    from augbench.reporting.published import PUBLISHED_DIR

    assert SHIPPED_DATASETS_DIR == ROOT / "datasets" and PUBLISHED_DIR == ROOT / "reports" / "published"


def test_a_users_methods_folder_and_benchmark_module_do_not_shadow_the_installed_package(wheel, tmp_path):
    """``python -m`` puts the working folder first on ``sys.path``; before v3 a user's own ``methods/``
    package or ``benchmark.py`` there replaced ours and broke every entry point (issue 22 item 3)."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    project = tmp_path / "users_project"
    (project / "methods").mkdir(parents=True)
    for shadow in (project / "methods" / "__init__.py", project / "benchmark.py"):
        shadow.write_text("raise ImportError('the user’s own module was imported instead of augbench’s')\n")
    # the wheel's copy first on the path, so the checkout's editable install is not what answers
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-m", "augbench.cli.main", "methods", "--json"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    listed = {m["id"] for m in json.loads(out.stdout)}
    builtins = _entry_point_names(ROOT / "pyproject.toml", "augbench.methods")
    assert builtins and builtins <= listed, sorted(builtins - listed)
    where = subprocess.run([sys.executable, "-c", "import augbench, augbench.methods; print(augbench.methods.__file__)"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert Path(where.stdout.strip()).is_relative_to(site)


def _entry_point_names(pyproject: Path, group: str) -> set[str]:
    """The names declared in one entry-point group of ``pyproject``."""
    import tomllib

    return set(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["entry-points"][group])

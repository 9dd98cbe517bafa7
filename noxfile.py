"""nox sessions for augbench.

``nox -s tests`` is what CI runs (``.ci/run``); ``nox -s benchmark -- <args>`` is
``augbench run <args>`` followed by ``augbench report`` (DESIGN.md, "Command-line contract").

Every session installs the project from this checkout, so a fresh machine needs nothing but
``pip install nox``. PyTorch is pinned first so pip takes the wheel that ships with the
development image instead of resolving a different build.
"""

from __future__ import annotations

import os

import nox

nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]

TORCH = ("torch==2.14.1", "torchvision==0.29.1")


def install_project(session: nox.Session, extras: str = "") -> None:
    """Install pinned torch, then this checkout (editable, so edits are live; a wheel carries the same data)."""
    session.install(*TORCH)
    target = f".[{extras}]" if extras else "."
    session.install("-e", target)


def offline_env() -> dict[str, str]:
    """The environment every session runs in: no hub access, threads = cores."""
    return {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(os.cpu_count() or 1),
        "TOKENIZERS_PARALLELISM": "false",
    }


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """Run the test suite offline on CPU (what CI runs)."""
    install_project(session, "test")
    args = session.posargs or ["tests"]
    session.run("pytest", *args, env=offline_env())


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    """Lint with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "benchmark", "methods", "tests", "tools", "noxfile.py")


@nox.session(reuse_venv=True)
def benchmark(session: nox.Session) -> None:
    """Run a suite and render its report: ``nox -s benchmark -- --suite few_shot [augbench run options]``."""
    install_project(session, "report")
    args = session.posargs or ["--suite", "few_shot"]
    # serial by default: on 2 cores `--workers 2` measured no faster (a cell's training took 50 s on one
    # thread per worker vs 22 s on two threads) and twice the memory (docs/performance.md, "Running faster")
    session.run("augbench", "run", *args, env=offline_env())
    report_args = list(_forwarded(args, {"--suite", "--run-dir", "--profile"}))
    session.run("augbench", "report", *report_args, env=offline_env())


def _forwarded(args: list[str], shared: set[str]):
    """The options in ``shared`` (with their values) out of another command's arguments."""
    it = iter(args)
    for arg in it:
        key = arg.split("=", 1)[0]
        if key in shared:
            yield arg
            if "=" not in arg:
                yield next(it, "")


@nox.session(reuse_venv=True)
def report(session: nox.Session) -> None:
    """Render a run's tables from its suite.json and records: ``nox -s report -- --run-dir runs/few_shot-sd15``
    (or ``-- --suite few_shot`` for ``runs/few_shot-embedded``)."""
    install_project(session, "report")
    session.run("augbench", "report", *(session.posargs or ["--suite", "few_shot"]), env=offline_env())


@nox.session(reuse_venv=True)
def world(session: nox.Session) -> None:
    """Rebuild the embedded world's models from scratch, then check them: ``nox -s world [-- --weights DIR]``."""
    install_project(session, "report")
    session.run("augbench", "world", "build", *session.posargs, env=offline_env())
    weights = list(_forwarded(session.posargs, {"--weights"}))
    session.run("augbench", "world", "check", *weights, env=offline_env())


@nox.session(reuse_venv=True)
def perf(session: nox.Session) -> None:
    """Print performance ratios (batched vs per-image generation, Gram LPIPS vs pairwise, ...)."""
    install_project(session, "test")
    session.run("python", "-m", "tools.perf", *session.posargs, env=offline_env())


@nox.session(reuse_venv=True)
def docs(session: nox.Session) -> None:
    """Regenerate docs/methods.md from the method registry (``-- --check``: exit 1 if it is stale)."""
    install_project(session)
    session.run("python", "-m", "augbench.reporting.method_docs", *session.posargs, env=offline_env())

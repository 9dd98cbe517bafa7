"""``augbench report``: a run directory's tables, rendered from what the run wrote (DESIGN.md, "Results and reports").

A run directory holds ``suite.json``, the suite exactly as the run resolved it (its profile overlay
applied, so the sd15 profile's ``published`` tables are there), and one record per cell. The report is
rendered from those two alone: the suite file is not loaded again, the profile is not asked for, and
every record goes through the one typed reader (:func:`augbench.run.records.read_records`), which
refuses a record of an unknown or newer schema by name.

``--suite`` / ``--profile`` matter only for a run directory without ``suite.json`` (written before
runs saved it, or assembled by hand): the suite is then loaded with that profile, or with the profile
every record names. Given next to a ``suite.json`` that says otherwise, either is an error naming both,
never a silent choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from augbench.reporting.fidelity_gain import fidelity_gain_figures
from augbench.reporting.formats import report_tables, to_csv, to_latex, to_markdown
from augbench.reporting.html import to_html
from augbench.reporting.published import load_published
from augbench.reporting.tables import REPORT_FORMATS, build_table, caption, sweep_figures
from augbench.run.cells import default_run_dir
from augbench.run.records import CellRecord, read_records, read_run_suite
from augbench.run.suites import Suite, load_suite, suite_path

__all__ = ["ReportError", "RunToReport", "find_run", "render_suite_report"]


class ReportError(ValueError):
    """What to report is unclear or contradicts the run directory (the message says what to pass)."""


@dataclass(frozen=True)
class RunToReport:
    """A run directory's suite (as it ran) and its records of that suite's profile.

    ``skipped`` counts records of other profiles in the same directory (a ``--run-dir`` reused across
    profiles); they belong to another table and are left out.
    """

    run_dir: Path
    suite: Suite
    records: list[CellRecord]
    skipped: dict[str, int]

    @property
    def stem(self) -> str:
        """The report files' name: the suite file's stem (``few_shot`` -> ``reports/few_shot.md``)."""
        return Path(self.suite.path).stem if self.suite.path else self.suite.name


def find_run(run_dir: str | Path | None = None, suite: str | Path | None = None,
             profile: str | None = None) -> RunToReport:
    """The run to report: ``run_dir``'s ``suite.json`` and records (module docstring).

    Without ``run_dir`` the suite's default run directory (``runs/<suite>-<profile>``) is used.

    Raises:
        ReportError: neither a ``suite.json`` nor ``suite``; ``suite`` / ``profile`` differ from
            ``suite.json``; no records; records of several profiles and no ``profile`` to choose.
        RecordError: a record or ``suite.json`` this augbench cannot read.
    """
    if run_dir is None:
        if suite is None:
            raise ReportError("pass --run-dir DIR (a directory `augbench run` wrote) or --suite SUITE")
        run_dir = default_run_dir(str(suite), profile or "embedded")
    run_dir = Path(run_dir)
    saved = read_run_suite(run_dir)
    if saved is None and suite is None:
        raise ReportError(f"{run_dir} has no suite.json (`augbench run` writes it): pass --suite SUITE and, "
                          "unless every record names the same profile, --profile PROFILE")
    records = read_records(run_dir)
    if not records:
        name = saved.name if saved else suite
        raise ReportError(f"no result records in {run_dir / 'records'}; run `augbench run --suite {name}` first")
    if saved is not None:
        _check_agrees(saved, run_dir, suite, profile)
    ran = saved if saved is not None else load_suite(suite, profile or _only_profile(records, run_dir))
    ours = [r for r in records if r.profile == ran.profile]
    if not ours:
        raise ReportError(f"no records of profile {ran.profile} in {run_dir / 'records'} (only of "
                          f"{', '.join(sorted({r.profile for r in records}))})")
    skipped: dict[str, int] = {}
    for other in (r.profile for r in records if r.profile != ran.profile):
        skipped[other] = skipped.get(other, 0) + 1
    return RunToReport(run_dir, ran, ours, skipped)


def _check_agrees(saved: Suite, run_dir: Path, suite: str | Path | None, profile: str | None) -> None:
    """``--suite`` / ``--profile`` next to a ``suite.json``: the same suite and profile, or an error naming both."""
    where = run_dir / "suite.json"
    if profile is not None and profile != saved.profile:
        raise ReportError(f"--profile {profile} differs from the run's profile {saved.profile} ({where}); drop "
                          "--profile, or pass the run directory of that profile")
    if suite is None:
        return
    same_file = saved.path and suite_path(suite).resolve() == Path(saved.path).resolve()
    if not same_file and load_suite(suite, saved.profile).name != saved.name:
        raise ReportError(f"--suite {suite} is not the run's suite {saved.name!r} ({where}); drop --suite, or "
                          "pass the run directory of that suite")


def _only_profile(records: Sequence[CellRecord], run_dir: Path) -> str:
    profiles = sorted({r.profile for r in records})
    if len(profiles) > 1:
        raise ReportError(f"{run_dir / 'records'} holds records of profiles {', '.join(profiles)} and no "
                          "suite.json: pass --profile to choose one")
    return profiles[0]


def render_suite_report(suite: str | Path | None = None, run_dir: str | Path | None = None,
                        formats: Sequence[str] = REPORT_FORMATS, profile: str | None = None,
                        echo: Callable[[str], None] | None = print) -> list[Path]:
    """Render the run's table, followed by the published tables its suite names (``published``, side by
    side; ``augbench.reporting.tables``), into ``<run-dir>/reports/``; returns the written files.
    ``echo`` gets the Markdown (``None``: quiet). :func:`find_run` says which run and suite."""
    run = find_run(run_dir, suite, profile)
    unknown = [f for f in (f.strip() for f in formats) if f not in REPORT_FORMATS]
    if unknown:
        raise ReportError(f"unknown report format {unknown[0]!r}; expected some of {', '.join(REPORT_FORMATS)}")
    spec = run.suite.to_dict()
    table = build_table(run.suite.table_kind, run.records, method_order=list(run.suite.rows))
    cap = caption(table, spec, run.suite.profile)
    published = [load_published(t) for t in run.suite.published]
    out_dir = run.run_dir / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{run.stem}_sweep.png"
    figures = sweep_figures(table, run.records, png)
    gain_png = out_dir / f"{run.stem}_fidelity_gain.png"  # with an oracle (the embedded world) only
    figures += fidelity_gain_figures(table, run.suite.references, gain_png)
    writers = {"md": lambda: to_markdown(table, cap, published), "tex": lambda: to_latex(table, cap, published),
               "csv": lambda: to_csv(table, published),
               "html": lambda: to_html(table, run.records, run.run_dir,
                                       title=f"augbench — {run.suite.name} ({run.suite.profile})",
                                       tables=report_tables(table, cap, published), figures=figures)}
    paths = [p for p in (png, gain_png) if figures and p.is_file()]
    for fmt in (f.strip() for f in formats):
        path = out_dir / f"{run.stem}.{fmt}"
        path.write_text(writers[fmt](), encoding="utf-8")
        paths.append(path)
    if echo and "md" in [f.strip() for f in formats]:
        echo(writers["md"]())
    if echo and run.skipped:
        echo(f"left out {', '.join(f'{n} records of profile {p}' for p, n in sorted(run.skipped.items()))}: "
             f"this report is profile {run.suite.profile}'s")
    return paths

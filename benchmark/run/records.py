"""Result records: one typed, versioned JSON record per cell, the run's resolved suite, and ``results.json``.

A cell record (``<run-dir>/records/<cell>.json``, :class:`CellRecord`) holds everything a table needs
and everything needed to say where a number came from: the cell, the method and its parameters, the
subset manifests, the artifacts used (with the leakage flag), the synthetic set and what the select
stage dropped, how synthetic data joined training, the classifier result, versions, the git commit and
timings per stage. Every record carries ``schema_version`` (:data:`RECORD_SCHEMA_VERSION`); the one
reader, :func:`read_record` / :meth:`CellRecord.from_dict`, refuses a record of an unknown or newer
schema with an error naming the file and the version, so a report never guesses at an old layout.

``suite.json`` (:func:`write_run_suite` / :func:`read_run_suite`) is the suite exactly as the run
resolved it, profile overlay applied (published tables, methods, seeds, recipe): reports render from
it, so ``augbench report --run-dir DIR`` shows what ran without being told the suite or the profile.

``results.json`` (format :data:`RESULTS_FORMAT`) sums a run up the way lm-evaluation-harness writes
its results file: the suite's configuration, versions, and per-cell metrics in one place.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from augbench import __version__
from augbench.run.store import write_json_atomic
from augbench.run.suites import Suite

#: What a cell record is (its ``format``); the layout version is ``schema_version``.
RECORD_FORMAT = "augbench.record"
#: The record layout this augbench writes. 3: ``schema_version`` field (the fields of 2 otherwise);
#: 4: ``memory``, the peak memory of each stage (read as empty from records of 2 and 3).
RECORD_SCHEMA_VERSION = 4
#: Layout versions read, mapped to how they were spelled before ``schema_version`` existed. Version 1
#: (replacement mode inside the train config) is not read: rerun the cells, finished stages are reused.
_LEGACY_FORMATS = {"augbench.record/2": 2}
READABLE_SCHEMA_VERSIONS = (2, 3, RECORD_SCHEMA_VERSION)
RESULTS_FORMAT = "augbench.results/1"
SUITE_FORMAT = "augbench.suite/1"


class RecordError(ValueError):
    """A record (or a run's ``suite.json``) is not one this version can read; the message names the file."""


@dataclass
class CellRecord:
    """One cell's result (the JSON keys are the field names).

    ``cell`` is :meth:`augbench.run.cells.Cell.to_dict` (its ``method`` is the suite's entry as written,
    the table row); ``training`` is how the synthetic images joined training (METHODS_SPEC §4), ``None``
    without a synthetic set; ``metrics`` the classifier's test metrics; ``synthetic`` the synthetic set
    (key, size, selection, its LPIPS / CLIP / fidelity metrics), ``None`` for a method without one.
    """

    cell: dict[str, Any]
    cell_key: str
    method_id: str
    method: dict[str, Any]
    subset: dict[str, Any]
    selection: str
    training: dict[str, Any] | None
    artifacts: list[dict[str, Any]]
    synthetic: dict[str, Any] | None
    train: dict[str, Any]
    history: Any
    metrics: dict[str, Any] | None
    profile: str
    models: dict[str, Any]
    timings: dict[str, float]
    stage_keys: dict[str, Any]
    reused: list[str] = field(default_factory=list)
    # {stage: {"rss_gb", "cuda_gb"}}: augbench.run.memory.StageMemory of the run that wrote the record
    memory: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=lambda: versions())
    git_commit: str | None = field(default_factory=lambda: git_commit())
    format: str = RECORD_FORMAT
    schema_version: int = RECORD_SCHEMA_VERSION

    @property
    def uses_foreign_artifacts(self) -> bool:
        return any(a["foreign"] for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, run_dir: Path) -> Path:
        path = Path(run_dir) / "records" / f"{self.cell_key}.json"
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "<record>") -> CellRecord:
        """The record ``data`` (parsed JSON) describes, after checking its schema version.

        Versions in :data:`READABLE_SCHEMA_VERSIONS` are read (2 spelled its version in ``format`` as
        ``augbench.record/2``, with the same fields); anything else, a missing field or an unknown one
        raises :class:`RecordError` naming ``source`` and the version.
        """
        if not isinstance(data, Mapping):
            raise RecordError(f"{source}: a record is a JSON object, not {type(data).__name__}")
        schema = _schema_version(data, source)
        body = {k: v for k, v in data.items() if k not in ("format", "schema_version")}
        if schema < 4:
            body.setdefault("memory", {})
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("format", "schema_version")]
        unknown = sorted(set(body) - set(names))
        missing = [name for name in names if name not in body]
        if unknown or missing:
            raise RecordError(f"{source}: record schema {schema} " + "; ".join(
                ([f"has unknown fields {', '.join(unknown)}"] if unknown else [])
                + ([f"lacks fields {', '.join(missing)}"] if missing else []))
                + " (rerun the cell to rewrite it)")
        cell = body["cell"]
        if not isinstance(cell, Mapping) or not {"method", "seed", "dataset", "protocol_params"} <= set(cell):
            raise RecordError(f"{source}: record 'cell' needs method, seed, dataset and protocol_params")
        return cls(**body)


def _schema_version(data: Mapping[str, Any], source: str | Path) -> int:
    """The record's layout version: ``schema_version``, or the version a pre-3 ``format`` spells."""
    readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
    if "schema_version" in data:
        schema = data["schema_version"]
        if data.get("format") != RECORD_FORMAT or isinstance(schema, bool) or not isinstance(schema, int):
            raise RecordError(f"{source}: format {data.get('format')!r} with schema version {schema!r} is not an "
                              f"augbench record (expected format {RECORD_FORMAT!r} and an integer version)")
    elif data.get("format") in _LEGACY_FORMATS:
        schema = _LEGACY_FORMATS[data["format"]]
    else:
        raise RecordError(f"{source}: record format {data.get('format')!r} without a schema version; this augbench "
                          f"reads record schema versions {readable} (rerun the cell to rewrite it; finished stages "
                          "are reused)")
    if schema > RECORD_SCHEMA_VERSION:
        raise RecordError(f"{source}: record schema version {schema} is newer than this augbench reads "
                          f"({readable}); upgrade augbench to report this run")
    if schema not in READABLE_SCHEMA_VERSIONS:
        raise RecordError(f"{source}: record schema version {schema} is no longer read (this augbench reads "
                          f"{readable}); rerun the cell to rewrite it (finished stages are reused)")
    return schema


def read_record(path: str | Path) -> CellRecord:
    """The record at ``path``, checked by :meth:`CellRecord.from_dict` (the one way records are read)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc}); delete it and rerun the cell") from exc
    return CellRecord.from_dict(data, source=path)


def read_records(run_dir: str | Path) -> list[CellRecord]:
    """Every record of ``<run_dir>/records/``, in file-name order (an empty list when there is none)."""
    return [read_record(p) for p in sorted((Path(run_dir) / "records").glob("*.json"))]


def write_run_suite(run_dir: str | Path, suite: Suite) -> Path:
    """``<run-dir>/suite.json``: the suite as the run resolved it (profile overlay applied), for reports."""
    path = Path(run_dir) / "suite.json"
    write_json_atomic(path, {"format": SUITE_FORMAT, "profile": suite.profile, "spec": suite.to_dict()})
    return path


#: Suite fields stored as tuples (JSON gives lists), from the annotations so a new field needs no edit here.
_TUPLE_FIELDS = tuple(f.name for f in dataclasses.fields(Suite) if str(f.type).startswith("tuple["))


def read_run_suite(run_dir: str | Path) -> Suite | None:
    """The suite ``<run-dir>/suite.json`` holds, ``None`` when the run directory has none.

    Runs before :data:`SUITE_FORMAT` wrote the same ``{"spec", "profile"}`` object without ``format``.
    """
    path = Path(run_dir) / "suite.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format", SUITE_FORMAT) != SUITE_FORMAT or not {"spec", "profile"} <= set(data):
        raise RecordError(f"{path}: suite format {data.get('format')!r}; this augbench reads {SUITE_FORMAT!r} "
                          "with 'spec' and 'profile' (rerun `augbench run` to rewrite it)")
    spec = dict(data["spec"])
    known = {f.name for f in dataclasses.fields(Suite)}
    if set(spec) - known:
        raise RecordError(f"{path}: unknown suite fields {', '.join(sorted(set(spec) - known))} (written by a "
                          "newer augbench?)")
    spec.update({k: tuple(spec[k]) for k in _TUPLE_FIELDS if k in spec})
    spec["class_group_thresholds"] = {k: tuple(v) for k, v in spec.get("class_group_thresholds", {}).items()}
    spec["profile"] = data["profile"]
    return Suite(**spec)


def write_results(run_dir: Path, suite: dict[str, Any], summary: dict[str, Any], records: Iterable[CellRecord]) -> Path:
    """``<run-dir>/results.json``: configuration, versions and per-cell metrics of the whole run."""
    cells = {}
    for rec in records:
        cells[rec.cell_key] = {
            "method_id": rec.method_id, "cell": rec.cell, "metrics": rec.metrics,
            "synthetic_metrics": rec.synthetic["metrics"] if rec.synthetic else None, "training": rec.training,
            "foreign_artifacts": rec.uses_foreign_artifacts, "record": f"records/{rec.cell_key}.json",
        }
    path = Path(run_dir) / "results.json"
    write_json_atomic(path, {"format": RESULTS_FORMAT, "suite": suite, "summary": summary,
                             "versions": versions(), "git_commit": git_commit(), "results": cells})
    return path


STAGE_ORDER = ("subset", "artifacts", "generate", "select", "metrics", "train", "evaluate")


def stage_seconds(records: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent per stage over ``records`` (``CellRecord.to_dict()``), counting only work the records' run did.

    A reused stage's timing is its store lookup, except ``train``, whose cached result carries the
    seconds of the run that computed it: a reused ``train`` therefore counts zero. (The record's
    ``reused`` list is not a guide for the other stages: ``artifacts`` is listed when one artifact was
    reused while another, e.g. Diff-II's inversion pool, was built.) ``evaluate`` is the test-set
    evaluation inside training (``train`` excludes it). Keys follow the cell's chain
    (:data:`STAGE_ORDER`); ``total`` is their sum.
    """
    totals = dict.fromkeys(STAGE_ORDER, 0.0)
    for rec in records:
        trained = "train" not in (rec.get("reused") or [])
        for stage, seconds in (rec.get("timings") or {}).items():
            if stage != "train" or trained:
                totals[stage] = totals.get(stage, 0.0) + float(seconds)
        if trained:
            evaluation = float(((rec.get("train") or {}).get("timings") or {}).get("eval", 0.0))
            totals["evaluate"] += evaluation
            totals["train"] -= evaluation
    totals["total"] = sum(totals.values())
    return {k: round(v, 1) for k, v in totals.items()}


def stage_peak_memory(records: list[dict[str, Any]]) -> dict[str, float]:
    """The highest resident memory (GB) each stage reached over ``records`` (their ``memory``), in chain order;
    ``anon:<stage>`` its anonymous part (``augbench.run.memory``) and ``cuda:<stage>`` where it ran on CUDA."""
    peaks: dict[str, float] = {}
    for rec in records:
        for stage, peak in (rec.get("memory") or {}).items():
            for prefix, key in (("", "rss_gb"), ("anon:", "anon_gb"), ("cuda:", "cuda_gb")):
                if peak.get(key) is not None:
                    name = f"{prefix}{stage}"
                    peaks[name] = max(peaks.get(name, 0.0), float(peak[key]))
    order = ["prepare", *STAGE_ORDER]
    kinds = ("", "anon:", "cuda:")

    def rank(name: str) -> tuple[int, int]:
        kind = next(k for k in reversed(kinds) if name.startswith(k))
        stage = name.removeprefix(kind)
        return kinds.index(kind), order.index(stage) if stage in order else len(order)

    return dict(sorted(peaks.items(), key=lambda kv: rank(kv[0])))


def format_stage_seconds(totals: dict[str, float]) -> str:
    """``"subset 2 s, artifacts 3.1 min, generate 12.0 min, ..."`` (stages under half a second left out)."""
    parts = [f"{stage} {seconds:.0f} s" if seconds < 60 else f"{stage} {seconds / 60:.1f} min"
             for stage, seconds in totals.items() if stage != "total" and seconds >= 0.5]
    return ", ".join(parts) or "nothing computed"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "augbench": __version__}
    for name in ("torch", "torchvision", "diffusers", "transformers", "timm", "peft", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


__all__ = ["RECORD_FORMAT", "RECORD_SCHEMA_VERSION", "RESULTS_FORMAT", "SUITE_FORMAT", "CellRecord", "RecordError",
           "read_record", "read_records", "read_run_suite", "write_results", "write_run_suite"]

"""The grid a run covers: what ``augbench run`` was asked (:class:`RunOptions`), its cells (dataset ×
protocol parameters × method × seed, :func:`plan_cells`) and where their records go (:func:`default_run_dir`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augbench.protocols.base import ProtocolError
from augbench.run.suites import Suite, SuiteError


@dataclass
class RunOptions:
    """What ``augbench run`` was asked to do (CLI flags; ``None`` = the suite's value)."""

    suite: str
    profile: str = "embedded"
    methods: list[str] | None = None
    seeds: list[int] | None = None
    run_dir: str | None = None
    cache_dir: str | None = None
    executor: str = "local"
    # local executor: >1 runs the subset groups on a pool of this many processes (cores split among them);
    # "auto": augbench.run.runner.resolve_workers
    workers: int | str = 1
    data_root: str | None = None
    datasets_dir: str | None = None
    device: str | None = None
    datasets: list[str] | None = None
    shots: list[int] | None = None
    epochs: int | None = None
    image_budget: int | None = None
    batch_size: int | None = None
    progress: bool = True
    # False (--no-build-artifacts): a missing artifact is an error instead of a build (e.g. on a GPU-less
    # login node, where concept learning would take hours)
    build_artifacts: bool = True
    # --executor ray: cluster address (None: RAY_ADDRESS or a local instance) and resources per task
    ray_address: str | None = None
    ray_cpus_per_task: float = 1
    ray_gpus_per_task: float = 0
    # --rehearsal: the suite with REHEARSAL_OVERLAY on top (load_suite), in its own run directory
    rehearsal: bool = False
    log: Any = None


@dataclass(frozen=True)
class Cell:
    """One point of the grid: dataset × protocol parameters × method × seed."""

    suite: str
    profile: str
    dataset: str
    protocol: str
    protocol_params: tuple[tuple[str, Any], ...]
    method: str
    seed: int

    @property
    def key(self) -> str:
        params = "-".join(f"{k}{v}" for k, v in self.protocol_params)
        return f"{self.dataset}.{self.protocol}.{params}.{self.method}.seed{self.seed}".replace("/", "_")

    @property
    def subset_group(self) -> tuple:
        """Cells with the same group train on the same real subset (and share its stages)."""
        return (self.dataset, self.protocol, self.protocol_params, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "profile": self.profile, "dataset": self.dataset, "protocol": self.protocol,
                "protocol_params": dict(self.protocol_params), "method": self.method, "seed": self.seed}


def plan_cells(suite: Suite, opts: RunOptions) -> list[Cell]:
    """The grid of cells, in the order they run (datasets, protocol parameters, methods, seeds)."""
    datasets = opts.datasets or suite.datasets
    methods = opts.methods or suite.rows
    seeds = opts.seeds if opts.seeds is not None else suite.seeds
    protocol = suite.protocol_object()
    if opts.shots:
        if "shots" not in protocol.parameters():
            raise SuiteError(f"--shots: protocol {suite.protocol!r} does not take shots; its parameters: "
                             f"{', '.join(protocol.parameters()) or '(none)'}")
        try:
            protocol = protocol.with_values(shots=tuple(opts.shots))
        except ProtocolError as exc:
            raise SuiteError(f"--shots: {exc}") from None
    grid = protocol.settings()
    return [Cell(suite.name, opts.profile, d, suite.protocol, params, m, s)
            for d in datasets for params in grid for m in methods for s in seeds]


def default_run_dir(suite: str, profile: str, rehearsal: bool = False) -> Path:
    """``runs/<suite>-<profile>``; a rehearsal's records never join the real run's: ``...-rehearsal``."""
    return Path("runs") / f"{Path(suite).stem}-{profile}{'-rehearsal' if rehearsal else ''}"


__all__ = ["Cell", "RunOptions", "default_run_dir", "plan_cells"]

"""Sampler steps of the embedded profile: generation time, oracle fidelity and CLIP score at 25 DPM-Solver++ steps
(the default) against fewer (issue 26, item 3), for every generating method of the few-shot suite.

Each method is built as the suite's cell builds it (its presets and parameters), on toybirds at ``shots``
shots; the steps are set on the profile (``num_inference_steps``) and on every method whose config pins its
own (DA-Fusion's ``dpm25``), so an editing method runs ``floor(strength × steps)`` of them (METHODS_SPEC §1.3).
The default is also generated with a second seed: the seed-to-seed difference of Fid. and CLIP at 25 steps
is the noise a change of steps is read against. Artifacts (concepts, inversion pools) come from the shared
store and are not timed; the generation seconds are those of ``generate_synthetic_set`` alone.

    python -m tools.sampler_steps [--steps 25 12] [--shots 5] [--methods sd_random real_guidance ...]

Never time this beside another heavy process (a CPU run beside another one was measured 30× slower).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def generating_methods(suite) -> list[str]:
    """The suite's rows that generate a synthetic set (their offline part), each once."""
    from augbench.method_ids import method_family
    from augbench.registry import default_registry

    registry, out = default_registry(), []
    for row in suite.methods:
        first = row.split("+")[0]
        if registry.get_class(method_family(first)).__name__ != "Original" and _is_offline(registry, first):
            out.append(first) if first not in out else None
    return out


def _is_offline(registry, method_id: str) -> bool:
    from augbench.contract import OfflineMethod
    from augbench.method_ids import method_family

    return issubclass(registry.get_class(method_family(method_id)), OfflineMethod)


def _measure(method_id: str, suite, profile, steps: int, seed: int, shots: int, out: Path) -> dict[str, Any]:
    from augbench.data import open_dataset
    from augbench.metrics.synthetic_set import synthetic_set_metrics
    from augbench.registry import default_registry
    from augbench.run.cells import Cell
    from augbench.run.stages import draw_subset, resolve_method
    from augbench.synthetic.generate import build_method_artifacts, generate_synthetic_set
    from augbench.synthetic.loading import load_synthetic

    source = open_dataset("toybirds")
    subset = draw_subset(source, "few_shot", seed=seed, shots=shots)
    cell = Cell(suite.name, "embedded", "toybirds", "few_shot", (("shots", shots),), method_id, seed)
    resolved = resolve_method(cell, suite, default_registry())
    method = resolved.offline
    if getattr(method.config, "num_inference_steps", None) is not None:  # a preset pins its own steps
        method = type(method)(dataclasses.replace(method.config, num_inference_steps=steps), method_id=method.id)
    from augbench.contract import MethodContext

    ctx = MethodContext(profile=profile, source=source)
    artifacts = build_method_artifacts(method, subset, ctx)  # shared store: built once, not timed
    t = time.perf_counter()
    folder = generate_synthetic_set(method, source, subset, profile, seed, out, artifacts=artifacts)
    seconds = time.perf_counter() - t
    synthetic, _ = load_synthetic(folder, source.class_names, subset.image_ids, integration=resolved.training)
    metrics = synthetic_set_metrics(synthetic.images, synthetic.class_of(), source.card, profile)
    fid = metrics["oracle_fidelity"]
    return {"seconds": round(seconds, 1), "images": len(synthetic),
            "fidelity": fid["value"] if fid else None, "clip": metrics["clip_score"]["value"]}


def sampler_steps(steps: tuple[int, ...] = (25, 12), shots: int = 5, methods: list[str] | None = None,
                  seeds: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Per method: seconds, Fid. and CLIP at each step count (seed ``seeds[0]``) and at the first count with seed
    ``seeds[1]`` (the noise); the ratio of generation seconds, fewer steps over the first."""
    from augbench.run.profiles import get_profile
    from augbench.run.suites import load_suite

    suite = load_suite("few_shot")
    base = get_profile("embedded")
    rows = []
    with tempfile.TemporaryDirectory(prefix="augbench-steps-") as tmp:
        for method_id in methods or generating_methods(suite):
            row: dict[str, Any] = {"method": method_id}
            for n in steps:
                profile = dataclasses.replace(base, num_inference_steps=n)
                row[str(n)] = _measure(method_id, suite, profile, n, seeds[0], shots, Path(tmp) / f"{method_id}-{n}")
            profile = dataclasses.replace(base, num_inference_steps=steps[0])
            row["noise"] = _measure(method_id, suite, profile, steps[0], seeds[1], shots, Path(tmp) / f"{method_id}-s")
            rows.append(row)
            print(json.dumps(row), flush=True)
    first, last = str(steps[0]), str(steps[-1])
    total = {k: sum(r[k]["seconds"] for r in rows) for k in (first, last)}
    return {"section": "sampler_steps", "steps": list(steps), "shots": shots, "rows": rows,
            "seconds": total, "ratio_fewer_over_default": round(total[last] / total[first], 2) if total[first] else None}


def markdown(result: dict[str, Any]) -> str:
    """The study as a table: per method, seconds / Fid. / CLIP at each step count and the seed noise."""
    a, b = (str(s) for s in (result["steps"][0], result["steps"][-1]))
    head = (f"| method | s @{a} | s @{b} | Fid. @{a} | Fid. @{b} | Fid. seed noise | CLIP @{a} | CLIP @{b} | "
            "CLIP seed noise |")
    lines = [head, "|" + "---|" * 9]

    def f(v):
        return "—" if v is None else f"{v:.1f}"

    for r in result["rows"]:
        noise_fid = None if r[a]["fidelity"] is None else abs(r[a]["fidelity"] - r["noise"]["fidelity"])
        lines.append(f"| {r['method']} | {r[a]['seconds']} | {r[b]['seconds']} | {f(r[a]['fidelity'])} | "
                     f"{f(r[b]['fidelity'])} | {f(noise_fid)} | {f(r[a]['clip'])} | {f(r[b]['clip'])} | "
                     f"{f(abs(r[a]['clip'] - r['noise']['clip']))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sampler_steps", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 12])
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=None)
    args = parser.parse_args(argv)
    result = sampler_steps(tuple(args.steps), args.shots, args.methods)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``augbench generate``: write one offline method's synthetic set to a folder (DESIGN.md, CLI contract).

Output layout::

    DIR/generation.json      what was generated (method, params, seed, subset hash, profile)
    DIR/manifest.jsonl       one row per image, in request order:
                             {"file", "label": {class name: probability}, "sources", "seed", "params",
                              "method", "preset", "index", "target_class", "provenance"}
    DIR/images/000000.png    the images (RGB PNG)

Writing is atomic and resumable: every image and its row are written to temporary files and renamed
into place, per chunk of requests; a killed run restarted with the same arguments regenerates only the
missing requests and never reads a half-written file; ``manifest.jsonl`` appears (atomically) only when
the set is complete. The same arguments give byte-identical files (request seeds come from ``(seed,
method id, request index)``, PNG encoding and the canonical JSON rows are deterministic). NOTE: a
resumed run chunks the remaining requests differently, which can move a few pixels by one grey level
(batched vs single float noise; see the batch-independence contract test).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from augbench.contract import MethodContext, OfflineMethod, PipelineCache, SyntheticSample
from augbench.data.core import ImageSource, Subset
from augbench.registry import Composition, Registry, default_registry
from augbench.run.profiles import Profile
from augbench.run.store import Store, default_cache_root, write_bytes_atomic

__all__ = ["GenerateError", "build_method_artifacts", "generate_synthetic_set", "offline_method", "read_manifest"]

FORMAT = "augbench.synthetic/1"
MANIFEST = "manifest.jsonl"
SPEC = "generation.json"
IMAGES = "images"
PARTS = ".parts"


class GenerateError(RuntimeError):
    """The synthetic set cannot be generated into this folder (the message says why and what to do)."""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _png_bytes(image: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buf, format="PNG")
    return buf.getvalue()


def _row(sample: SyntheticSample, file: str, class_names: tuple[str, ...]) -> dict[str, Any]:
    label = np.asarray(sample.label, dtype=np.float64)
    if label.shape != (len(class_names),):
        raise GenerateError(f"label has shape {label.shape}; expected ({len(class_names)},)")
    if not np.all(np.isfinite(label)) or label.min() < 0 or label.sum() <= 0:
        raise GenerateError(f"label {label.tolist()} is not a non-negative vector with positive mass")
    label = label / label.sum()  # stored normalised; recipe transforms (Diff-Mix's σ, γ) apply at load time
    prov = dict(sample.provenance)
    row = {
        "file": file,
        "label": {class_names[i]: float(label[i]) for i in np.flatnonzero(label > 0)},
        "sources": list(prov.pop("sources", [])),
        "seed": int(prov.pop("seed")),
        "params": prov.pop("params", {}),
        "method": prov.pop("method"),
        "preset": prov.pop("preset", None),
        "index": int(prov.pop("request_index")),
    }
    target = prov.pop("target_class", None)
    row["target_class"] = class_names[target] if target is not None else None
    row["mix"] = _mixing_metadata(prov, row["target_class"], class_names)
    row["provenance"] = prov
    return row


def _mixing_metadata(prov: dict[str, Any], target: str | None, class_names: tuple[str, ...]) -> dict | None:
    """``{a: source class, b: target class, s: strength or λ}`` for images edited from a source image."""
    sources = prov.get("source_classes") or []
    s = prov.get("strength", prov.get("lam"))
    if not sources or s is None or target is None:
        return None
    return {"a": class_names[int(sources[0])], "b": target, "s": float(s)}


def generate_synthetic_set(
    method_id: str | OfflineMethod,
    source: ImageSource,
    subset: Subset,
    profile: Profile,
    seed: int,
    out_dir: str | Path,
    batch_size: int = 8,
    params_overrides: Mapping[str, Any] | None = None,
    *,
    budget: int | None = None,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    registry: Registry | None = None,
    pipelines: PipelineCache | None = None,
    artifacts: Mapping[str, Any] | None = None,
    max_images: int | None = None,
) -> Path:
    """Generate the synthetic set of ``method_id`` for ``subset`` into ``out_dir``.

    Args:
        method_id: an offline method id (``sd_random``, ``sd_random.p1_article``), a composition
            (``sd_random+cutmix``: its offline part is generated; the mixer acts at training time), or
            an already created offline method (then ``params_overrides`` must be ``None``).
        source: the dataset's image source (real images for editing methods; the card for prompts).
        subset: the real training subset the set is generated for.
        profile: foundation models and scale.
        seed: run seed; request ``i`` uses ``derive_seed(seed, method id, i)``.
        out_dir: output folder (created; an existing complete set with the same spec is reused).
        batch_size: requests per model call (does not change the images beyond float noise).
        params_overrides: config overrides (for a composition: ``{family: {param: value}}``).
        budget: number of images (default: the method's, e.g. ``expansion * |subset|``).
        device: torch device.
        cache_dir: the method's own cache folder (``ctx.cache_dir``; default ``out_dir/.cache``).
        registry: registry to resolve ``method_id`` (default: installed entry points).
        pipelines: warm-model cache (default: the process-wide one).
        artifacts: the built artifacts the method declared (``augbench.run.artifacts``); when ``None``
            they are built or reused as the runner's artifacts stage does (:func:`build_method_artifacts`).
        max_images: at most this many images (``[suite] max_synthetic``): where the method plans more (and no
            ``budget`` is given), it plans again with this budget, so it spreads them as it spreads a budget.

    Returns:
        ``out_dir`` as a ``Path``; ``out_dir/manifest.jsonl`` lists the images.

    Raises:
        GenerateError: ``method_id`` is a batch method, or ``out_dir`` holds a different set.
        ArtifactError: an artifact was trained on images outside ``subset`` (the leakage guard).
    """
    method = offline_method(method_id, params_overrides, registry)
    out = Path(out_dir)
    ctx = MethodContext(profile=profile, source=source, device=device, batch_size=batch_size,
                        cache_dir=Path(cache_dir) if cache_dir else out / ".cache",
                        **({"pipelines": pipelines} if pipelines is not None else {}))
    class_names = ctx.require_card().class_names
    ctx.artifacts = dict(build_method_artifacts(method, subset, ctx) if artifacts is None else artifacts)
    method.setup(subset, ctx)
    requests = method.plan(subset, budget, seed, ctx=ctx)
    if max_images and budget is None and len(requests) > max_images:
        budget = max_images
        requests = method.plan(subset, budget, seed, ctx=ctx)
    spec = _generation_spec(method, subset, seed, budget, len(requests), ctx)
    if _open_folder(out, _dumps(spec) + "\n"):
        return out  # complete
    _write_missing(method, requests, ctx, class_names, out)
    lines = [(out / PARTS / f"{r.index:06d}.json").read_text(encoding="utf-8") for r in requests]
    write_bytes_atomic(out / MANIFEST, "".join(lines).encode("utf-8"))
    shutil.rmtree(out / PARTS, ignore_errors=True)
    return out


def offline_method(method_id: str | OfflineMethod, params_overrides: Mapping[str, Any] | None = None,
                   registry: Registry | None = None) -> OfflineMethod:
    """The offline method ``method_id`` names (a composition's offline part); a batch method is refused."""
    if isinstance(method_id, OfflineMethod):
        method = method_id
    else:
        method = (registry or default_registry()).create(method_id, params_overrides)
    if isinstance(method, Composition):
        method = method.offline
    if not isinstance(method, OfflineMethod):
        raise GenerateError(
            f"{method_id!r} is a {method.kind} method: it mixes training batches and has no synthetic set. "
            "Generate with an offline method (e.g. sd_random) and pass the mixer to `augbench run`."
        )
    return method


def build_method_artifacts(method: OfflineMethod, subset: Subset, ctx: MethodContext,
                           store: Store | None = None) -> dict[str, Any]:
    """Build or reuse the artifacts ``method`` declares for ``subset``, as the runner's artifacts stage does.

    It calls what ``augbench.run.stages.artifacts_stage`` calls, ``augbench.run.artifacts.build_artifacts``
    on the method's specs: the same leakage guard refuses an artifact trained on any image outside
    ``subset``, and the same shared store (default: ``$AUGBENCH_CACHE``, the store of ``augbench run``
    without ``--cache-dir``) holds it under the same key, so a set generated here and a run's cell of the
    same subset share one build. ``subset`` has no validation part carved from it, so a spec with
    ``trained_on = "full_split"`` is built on ``subset`` too (the stage's ``full_split=None``).
    """
    from augbench.run.artifacts import build_artifacts

    return build_artifacts(method.artifacts(subset, ctx), subset, ctx, store or Store(default_cache_root()))


def _generation_spec(method: OfflineMethod, subset: Subset, seed: int, budget: int | None, num_images: int,
                    ctx: MethodContext) -> dict[str, Any]:
    """What ``generation.json`` records: the method, seed, subset, profile and artifacts of the set."""
    profile = ctx.profile
    return {
        "format": FORMAT,
        **method.provenance(),
        "seed": int(seed),
        "budget": budget,
        "num_images": num_images,
        "dataset": subset.dataset,
        "subset_hash": subset.manifest_hash,
        "classes": list(ctx.require_card().class_names),
        "profile": {"name": profile.name, "pipeline": profile.pipeline, "revision": profile.pipeline_revision},
        "artifacts": sorted(a.key for a in ctx.artifacts.values()),
    }


def _open_folder(out: Path, spec_text: str) -> bool:
    """Create ``out`` with ``generation.json``, or check that it holds this set; True when the set is complete."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / SPEC
    if spec_path.is_file():
        if spec_path.read_text(encoding="utf-8") != spec_text:
            raise GenerateError(
                f"{out} already holds a synthetic set generated with different settings ({spec_path}); "
                "choose another output folder or delete it"
            )
    else:
        write_bytes_atomic(spec_path, spec_text.encode("utf-8"))
    return (out / MANIFEST).is_file()


def _write_missing(method: OfflineMethod, requests: list, ctx: MethodContext, class_names: tuple[str, ...],
                   out: Path) -> None:
    """Generate every request without both its image and its row, ``ctx.batch_size`` requests per call."""
    images_dir, parts_dir = out / IMAGES, out / PARTS
    images_dir.mkdir(exist_ok=True)
    parts_dir.mkdir(exist_ok=True)

    def done(index: int) -> bool:
        return (parts_dir / f"{index:06d}.json").is_file() and (images_dir / f"{index:06d}.png").is_file()

    todo = [r for r in requests if not done(r.index)]
    progress = tqdm(total=len(requests), initial=len(requests) - len(todo), desc=f"generate {method.id}",
                    unit="img", leave=False, disable=None)  # disable=None: only on a terminal
    for start in range(0, len(todo), ctx.batch_size):
        chunk = todo[start : start + ctx.batch_size]
        samples = generate_guarded(method, chunk, ctx, class_names)
        for request, sample in zip(chunk, samples, strict=True):
            name = f"{request.index:06d}"
            write_bytes_atomic(images_dir / f"{name}.png", _png_bytes(sample.image_array()))
            row = _row(sample, f"{IMAGES}/{name}.png", class_names)
            write_bytes_atomic(parts_dir / f"{name}.json", (_dumps(row) + "\n").encode("utf-8"))
        progress.update(len(chunk))
    progress.close()


MAX_ATTEMPTS = 4


def blank_image(image: np.ndarray) -> bool:
    """A constant image: what a NaN/inf latent decodes to once clipped, or a dead generator's output."""
    return int(image.max()) == int(image.min())


def generate_guarded(method: OfflineMethod, requests: list, ctx: MethodContext,
                     class_names: tuple[str, ...]) -> list[SyntheticSample]:
    """``method.generate(requests)``, with blank images regenerated (issue 11 "Generation guard").

    A blank (constant) image is regenerated with the seed ``derive_seed(request seed, "retry", attempt)``
    up to ``MAX_ATTEMPTS`` times; the number of retries is kept in the sample's provenance
    (``regenerated``) and counted in the record. A request that keeps failing fails the stage with a
    message naming the method, class and seed; the set is then never marked complete.
    """
    from augbench.run.seeding import derive_seed

    samples = _checked(method, requests, method.generate(requests, ctx))
    for i, request in enumerate(requests):
        attempt = 0
        while blank_image(samples[i].image_array()):
            attempt += 1
            if attempt >= MAX_ATTEMPTS:
                raise GenerateError(
                    f"{method.id} produced a blank image for request {request.index} (class "
                    f"{class_names[request.target_class]!r}, seed {request.seed}) {MAX_ATTEMPTS} times, the last "
                    "with a re-derived seed; check the model and sampler settings (e.g. a dtype that overflows)")
            retry = dataclasses.replace(request, seed=derive_seed(request.seed, "retry", attempt))
            (samples[i],) = _checked(method, [request], method.generate([retry], ctx))
            samples[i].provenance = {**samples[i].provenance, "seed": request.seed, "retry_seed": retry.seed}
        if attempt:
            samples[i].provenance["regenerated"] = attempt
    return samples


def _checked(method: OfflineMethod, requests: list, samples: list[SyntheticSample]) -> list[SyntheticSample]:
    if len(samples) != len(requests):
        raise GenerateError(f"{method.id}.generate returned {len(samples)} samples for {len(requests)} requests")
    if [s.request_index for s in samples] != [r.index for r in requests]:
        raise GenerateError(f"{method.id}.generate returned samples out of request order")
    return list(samples)


def read_manifest(out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of ``out_dir/manifest.jsonl`` (raises ``GenerateError`` if the set is incomplete)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise GenerateError(f"{path} does not exist: the synthetic set is missing or incomplete")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

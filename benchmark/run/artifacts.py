"""The artifact stage: build or reuse what offline methods need before generating, with a leakage guard.

An offline method declares ``artifacts(subset, ctx) -> [ArtifactSpec]`` (DESIGN.md, "Stages,
artifacts and training integration"). Each spec is built by its *kind*'s builder on the cell's
training part, in the shared store under the hash of (kind, kind version, recipe, base model, the
manifest it is trained on), so every method and suite that needs the same artifact shares one build.
The folder's ``artifact.json`` is written last and says what the artifact is: kind, recipe, base
model, the image ids it was trained on, the sha256 of every file, and how long it took.

Leakage guard: an artifact trained on any image outside the cell's training part (validation or test
images, another subset, a full-split checkpoint) is refused with both manifests named, unless the suite
sets ``allow_foreign_artifacts = true``; the record and the table caption then flag it.

Kinds live in :data:`ARTIFACT_KINDS`, the project's one registry type (``augbench.plugins``): built-ins,
the ``augbench.artifact_kinds`` entry-point group, and :func:`register_artifact_kind`. ``class_mean``
(the per-class mean image) is a cheap, exact kind that exercises the whole path in tests and shows how a
kind is written; the concept-learning kinds (``ti``, ``lora_ti``), Diff-II's inversion pool and suffixes
are imported on first use.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augbench.contract import ArtifactSpec, ConfigError, MethodContext
from augbench.plugins import DuplicateNameError, Registry, UnknownNameError
from augbench.run.hashing import content_hash, file_sha256
from augbench.run.store import Store, write_json_atomic

MARKER = "artifact.json"
FORMAT = "augbench.artifact/1"


class ArtifactError(RuntimeError):
    """An artifact cannot be used: foreign training images, a corrupt or missing file, an unknown kind."""


@dataclass(frozen=True)
class ArtifactKind:
    """A builder ``(spec, subset, ctx, folder) -> None`` that writes the artifact's files into ``folder``.

    ``version`` is part of the key: bump it when the builder's output changes, so a fix is never masked
    by a stale artifact.
    """

    name: str
    build: Callable[[ArtifactSpec, Any, MethodContext, Path], None]
    version: int = 1
    summary: str = ""


def register_artifact_kind(kind: ArtifactKind, replace: bool = False) -> ArtifactKind:
    """Register ``kind`` in-process (third-party packages can use the ``augbench.artifact_kinds`` entry points).

    Raises:
        ArtifactError: a kind of that name exists and ``replace`` is false.
    """
    try:
        ARTIFACT_KINDS.register(kind.name, kind, replace=replace)
    except DuplicateNameError as exc:
        raise ArtifactError(str(exc)) from None
    return kind


@dataclass(frozen=True)
class Artifact:
    """A built (or imported) artifact as a method receives it in ``ctx.artifacts``."""

    kind: str
    key: str
    folder: Path
    recipe: Mapping[str, Any]
    base_model: str
    trained_on_hash: str
    trained_on_ids: tuple[str, ...]
    files: Mapping[str, str]
    seconds: float
    reused: bool
    foreign: bool = False
    foreign_ids: tuple[str, ...] = field(default=())

    def path(self, name: str) -> Path:
        return self.folder / name

    def record(self) -> dict[str, Any]:
        """What a cell record says about the artifact (DESIGN.md: key, kind, manifest, file hashes, time)."""
        return {"key": self.key, "kind": self.kind, "recipe": dict(self.recipe), "base_model": self.base_model,
                "trained_on": {"hash": self.trained_on_hash, "size": len(self.trained_on_ids)},
                "files": dict(self.files), "seconds": self.seconds, "reused": self.reused,
                "foreign": self.foreign, "foreign_examples": list(self.foreign_ids[:5]),
                "folder": str(self.folder)}


def artifact_key(spec: ArtifactSpec, subset, base_model: str) -> str:
    kind = _kind(spec.kind)
    return content_hash({"stage": "artifact", "kind": spec.kind, "version": kind.version,
                         "recipe": dict(spec.recipe), "base_model": base_model, "trained_on": subset.manifest_hash})


def build_artifacts(specs: list[ArtifactSpec], train_part, ctx: MethodContext, store: Store,
                    allow_foreign: bool = False, allow_build: bool = True, full_split=None) -> dict[str, Artifact]:
    """Build or reuse every spec on ``train_part`` (the cell's training part) and guard against leakage.

    A spec with ``trained_on = "full_split"`` is built on ``full_split`` instead (the training part plus the
    validation part carved from it, P1's full-data generator, METHODS_SPEC §5.5; ``None``: there is no
    validation part, so the training part itself) and meets the same guard: refused, or with
    ``allow_foreign`` flagged, when it saw validation images.

    With ``allow_build=False`` (``augbench run --no-build-artifacts``) an artifact missing from the store
    is an :class:`ArtifactError` naming its kind and the command that builds it.

    Specs are built in order, and each builder sees the artifacts built before it in ``ctx.artifacts``:
    a spec whose recipe names ``"requires": [slot, ...]`` (Diff-II's inversion pool needs the
    ``lora_ti`` concepts, METHODS_SPEC §3.10.1) must come after those slots, and their keys replace the
    list in its recipe, so its own key changes whenever a dependency does (a retrained or imported
    checkpoint gives a new inversion pool).
    """
    out: dict[str, Artifact] = {}
    for spec in specs:
        spec = _with_requirements(spec, out)
        build_ctx = dataclasses.replace(ctx, artifacts={**ctx.artifacts, **out}) if out else ctx
        images = full_split if spec.trained_on == "full_split" and full_split is not None else train_part
        artifact = _import(spec) if spec.path else _build(spec, images, build_ctx, store, allow_build)
        out[spec.slot] = guard(artifact, train_part, allow_foreign)
    return out


def _with_requirements(spec: ArtifactSpec, built: Mapping[str, Artifact]) -> ArtifactSpec:
    """``spec`` with ``recipe["requires"]`` (slots) replaced by ``{slot: key}`` of the artifacts built before it."""
    requires = spec.recipe.get("requires")
    if not requires:
        return spec
    if isinstance(requires, Mapping):  # already resolved
        return spec
    missing = [slot for slot in requires if slot not in built]
    if missing:
        raise ArtifactError(f"artifact {spec.kind} requires {', '.join(map(repr, missing))}, which must be declared "
                            f"before it in the method's artifacts() (declared before it: {', '.join(built) or 'none'})")
    return dataclasses.replace(spec, recipe={**spec.recipe, "requires": {slot: built[slot].key for slot in requires}})


def guard(artifact: Artifact, train_part, allow_foreign: bool) -> Artifact:
    """Refuse (or, when allowed, flag) an artifact trained on images outside ``train_part``."""
    allowed = set(train_part.image_ids)
    foreign = tuple(i for i in artifact.trained_on_ids if i not in allowed)
    if not foreign:
        return artifact
    if not allow_foreign:
        raise ArtifactError(
            f"artifact {artifact.kind} {artifact.key} ({artifact.folder}) was trained on manifest "
            f"{artifact.trained_on_hash} ({len(artifact.trained_on_ids)} images), which includes {len(foreign)} "
            f"images outside this cell's training part {train_part.manifest_hash} ({len(allowed)} images), "
            f"e.g. {', '.join(foreign[:3])}. Using it would leak validation/test or other-subset images into "
            "generation; set allow_foreign_artifacts = true in the suite to use it anyway (flagged in the table)")
    return Artifact(**{**artifact.__dict__, "foreign": True, "foreign_ids": foreign})


def _kind(name: str) -> ArtifactKind:
    try:
        return ARTIFACT_KINDS.get(name)
    except UnknownNameError as exc:
        raise ConfigError(str(exc)) from None


def _build(spec: ArtifactSpec, train_part, ctx: MethodContext, store: Store, allow_build: bool = True) -> Artifact:
    kind = _kind(spec.kind)
    ctx = spec.context(ctx)
    base_model = ctx.profile.pipeline
    key = artifact_key(spec, train_part, ctx.profile.pipeline_key)

    def build(folder: Path) -> None:
        if not allow_build:
            how = ("`augbench concepts build --kind " + spec.kind + " --dataset <id> --shots <k> --seed <s>`"
                   if spec.kind in ("ti", "lora_ti") else "`augbench run` without --no-build-artifacts")
            raise ArtifactError(
                f"artifact {spec.kind} (key {key}) for this cell's training part {train_part.manifest_hash} is not "
                f"in the store {store.root} and building artifacts is disabled (--no-build-artifacts); build it "
                f"with {how} using the same --cache-dir, or import a checkpoint with `augbench concepts import`")
        t = time.time()
        kind.build(spec, train_part, ctx, folder)
        files = {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MARKER
                 and not p.name.startswith(".")}
        write_json_atomic(folder / MARKER, {
            "format": FORMAT, "kind": spec.kind, "kind_version": kind.version, "recipe": dict(spec.recipe),
            "base_model": base_model, "trained_on": {"hash": train_part.manifest_hash,
                                                     "ids": list(train_part.image_ids)},
            "files": files, "seconds": time.time() - t})

    folder, reused = store.build_folder("artifacts", key, MARKER, build)
    artifact = _read(folder, key, reused)
    if reused:
        _verify_files(artifact)
    return artifact


def _import(spec: ArtifactSpec) -> Artifact:
    folder = Path(spec.path)
    if not (folder / MARKER).is_file():
        raise ArtifactError(f"{folder}: no {MARKER}; an imported artifact folder needs one that names its kind and "
                            "the image ids it was trained on (so the leakage guard can check them)")
    artifact = _read(folder, key="imported:", reused=True)
    # keyed by content (kind, training manifest, file hashes), not by folder name: two imported folders
    # called "5shot" must not share a synthetic set
    content = content_hash({"kind": artifact.kind, "trained_on": artifact.trained_on_hash, "files": dict(artifact.files)})
    artifact = Artifact(**{**artifact.__dict__, "key": f"imported:{content}"})
    if artifact.kind != spec.kind:
        raise ArtifactError(f"{folder}: artifact of kind {artifact.kind!r}, but the method asked for {spec.kind!r}")
    _verify_files(artifact)
    return artifact


def _read(folder: Path, key: str, reused: bool) -> Artifact:
    meta = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    return Artifact(kind=meta["kind"], key=key, folder=folder, recipe=meta.get("recipe", {}),
                    base_model=meta.get("base_model", ""), trained_on_hash=meta["trained_on"]["hash"],
                    trained_on_ids=tuple(meta["trained_on"]["ids"]), files=meta.get("files", {}),
                    seconds=float(meta.get("seconds", 0.0)), reused=reused)


def _verify_files(artifact: Artifact) -> None:
    """A file missing or changed since the build: drop the marker (so the next run rebuilds) and fail."""
    imported = artifact.key.startswith("imported:")
    for name, digest in artifact.files.items():
        path = artifact.folder / name
        if path.is_file() and file_sha256(path) == digest:
            continue
        if not imported:
            (artifact.folder / MARKER).unlink(missing_ok=True)
        what, then = ("imported artifact file", "") if imported else ("artifact file", "; it is rebuilt on the next run")
        raise ArtifactError(f"{what} {path} is missing or corrupt (its sha256 differs from {MARKER}){then}")


# --- built-in kinds -----------------------------------------------------------------------------------

def _build_class_mean(spec: ArtifactSpec, train_part, ctx: MethodContext, folder: Path) -> None:
    """``class_mean.npy``: float32 ``[C, size, size, 3]``, the mean of each class's training images."""
    from PIL import Image

    size = int(spec.recipe.get("size", 32))
    sums = np.zeros((ctx.num_classes, size, size, 3), dtype=np.float64)
    counts = np.zeros(ctx.num_classes, dtype=np.int64)
    for image_id, label in zip(train_part.image_ids, train_part.labels):
        image = ctx.source.load_image(image_id).convert("RGB").resize((size, size), Image.BILINEAR)
        sums[label] += np.asarray(image, dtype=np.float64)
        counts[label] += 1
    means = sums / np.maximum(counts, 1)[:, None, None, None]
    np.save(folder / "class_mean.npy", means.astype(np.float32))


def _from_builtin_table(name: str, obj: Any) -> ArtifactKind:
    """A lazily imported module's ``BUILTIN_KINDS`` (``{name: (builder, version, summary)}``) -> ``name``'s kind.

    Those modules never import this one (no cycle), so they hand over plain tuples.
    """
    if isinstance(obj, Mapping):
        if name not in obj:
            raise ValueError(f"its BUILTIN_KINDS has no {name!r} (it has {', '.join(obj) or 'none'})")
        build, version, summary = obj[name]
        return ArtifactKind(name, build, version=version, summary=summary)
    return obj


def _check_kind(name: str, kind: Any) -> None:
    if not isinstance(kind, ArtifactKind):
        raise TypeError(f"expected an augbench.run.artifacts.ArtifactKind, got {kind!r}")
    if kind.name != name:
        raise ValueError(f"the kind registered as {name!r} calls itself {kind.name!r}")


#: Every artifact kind. The diffusion kinds are listed by name and imported on first use (their modules
#: import diffusers when a build runs): ``ti``, ``lora_ti`` (augbench.diffusion.concepts), Diff-II's
#: ``ddim_inversion`` pool and ``suffixes``, DistDiff's CLIP prototypes (``distdiff_prototypes``).
ARTIFACT_KINDS: Registry[ArtifactKind] = Registry(
    "artifact kind",
    "augbench.artifact_kinds",
    builtins={
        "class_mean": ArtifactKind("class_mean", _build_class_mean, version=1,
                                   summary="per-class mean image of the training part (tests, example)"),
        "ti": "augbench.diffusion.concepts.kinds:BUILTIN_KINDS",
        "lora_ti": "augbench.diffusion.concepts.kinds:BUILTIN_KINDS",
        "ddim_inversion": "augbench.diffusion.inversion:BUILTIN_KINDS",
        "suffixes": "augbench.diffusion.suffixes:BUILTIN_KINDS",
        "distdiff_prototypes": "augbench.diffusion.prototype_guidance:BUILTIN_KINDS",
    },
    adapt=_from_builtin_table,
    validate=_check_kind,
)

__all__ = ["ARTIFACT_KINDS", "Artifact", "ArtifactError", "ArtifactKind", "artifact_key", "build_artifacts",
           "guard", "register_artifact_kind"]

"""Artifact, select and training-integration stages through a real run, with a tiny artifact method.

``ClassMeanImages`` declares a ``class_mean`` artifact (the per-class mean image of the training
part), generates one noisy class-mean image per training image and can drop images in the select
stage: small enough for CI, and every line of the runner's artifact path runs for real.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from augbench import registry as registry_module
from augbench.contract import (
    ArtifactSpec,
    GenerationRequest,
    MethodCard,
    MethodConfig,
    OfflineMethod,
    SyntheticSample,
    TrainingIntegration,
    one_hot,
    param,
)
from augbench.registry import Registry
from augbench.run import runner
from augbench.run.cells import RunOptions


@dataclass(frozen=True)
class ClassMeanConfig(MethodConfig):
    keep_every: int = param(1, "the select stage keeps every n-th image (1: all)")
    artifact_path: str | None = param(None, "import this artifact folder instead of building one")


class ClassMeanImages(OfflineMethod):
    family: ClassVar[str] = "class_mean_images"
    Config = ClassMeanConfig
    presets: ClassVar[dict] = {"half": {"keep_every": 2}}
    card: ClassVar[MethodCard] = MethodCard(
        summary="noisy class-mean images (test method)",
        training=TrainingIntegration(replacement_mode="same_class", labels="hard"))

    def artifacts(self, subset, ctx):
        return [ArtifactSpec("class_mean", {"size": 16}, path=self.config.artifact_path)]

    def plan(self, subset, budget, seed, *, ctx=None):
        return [GenerationRequest(index=i, seed=self.request_seed(seed, i), target_class=label)
                for i, label in enumerate(subset.labels)]

    def generate(self, requests, ctx):
        means = np.load(ctx.artifacts["class_mean"].path("class_mean.npy"))
        out = []
        for r in requests:
            noise = np.random.default_rng(r.seed).normal(0, 8, (64, 64, 3))
            image = np.kron(means[r.target_class], np.ones((4, 4, 1))) + noise
            out.append(SyntheticSample(np.clip(image, 0, 255).astype(np.uint8), one_hot(r.target_class, ctx.num_classes),
                                       self.sample_provenance(r)))
        return out

    def select(self, rows, load_image, ctx):
        if self.config.keep_every == 1:
            return None
        assert load_image(0).shape == (64, 64, 3)
        return list(range(0, len(rows), self.config.keep_every))


@pytest.fixture
def with_test_method(monkeypatch):
    reg = Registry()
    reg.register("class_mean_images", ClassMeanImages)
    monkeypatch.setattr(registry_module, "_DEFAULT", reg)
    return reg


def _suite(tmp_path: Path, methods: list[str], extra: str = "") -> Path:
    path = tmp_path / "artifact_suite.toml"
    path.write_text(f'[suite]\nname = "artifact_suite"\nprotocol = "few_shot"\ndatasets = ["minibirds"]\nshots = [5]\n'
                    f'seeds = [0]\nmethods = {json.dumps(methods)}\nrecipe = "embedded"\nepochs = 1\n'
                    # val_split: artifacts must see the training part only (20 images minus the 4 validation ones)
                    f'selection = "val_split"\n{extra}')
    return path


def _run(suite: Path, run_dir: Path, cards: Path, cache: Path, **kw) -> dict:
    return runner.run_suite(RunOptions(suite=str(suite), run_dir=str(run_dir), datasets_dir=str(cards),
                                       cache_dir=str(cache), progress=False, log=lambda s: None, **kw))


def _record(run_dir: Path, method: str) -> dict:
    return json.loads((run_dir / "records" / f"minibirds.few_shot.shots5.{method}.seed0.json").read_text())


def test_an_artifact_is_built_once_shared_and_recorded(mini, with_test_method, tmp_path):
    _, cards, _ = mini
    suite = _suite(tmp_path, ["class_mean_images", "class_mean_images.half"])
    assert _run(suite, tmp_path / "run", cards, tmp_path / "cache")["failed"] == []
    full, half = _record(tmp_path / "run", "class_mean_images"), _record(tmp_path / "run", "class_mean_images.half")
    (a_full,), (a_half,) = full["artifacts"], half["artifacts"]
    assert a_full["key"] == a_half["key"] and a_full["kind"] == "class_mean"
    assert (a_full["reused"], a_half["reused"]) == (False, True)
    assert a_full["trained_on"] == {"hash": full["subset"]["train_hash"], "size": 16} and not a_full["foreign"]
    assert set(a_full["files"]) == {"class_mean.npy"} and len(a_full["files"]["class_mean.npy"]) == 64
    means = np.load(Path(a_full["folder"]) / "class_mean.npy")
    assert means.shape == (4, 16, 16, 3) and 0 < means.mean() < 255
    # the select stage dropped every other image of the second set; the record says so
    assert full["synthetic"]["size"] == 16 and full["synthetic"]["dropped_by_select"] == 0
    assert half["synthetic"]["size"] == 8 and half["synthetic"]["dropped_by_select"] == 8
    # the card's training integration is what the cell used
    assert full["training"]["replacement_mode"] == "same_class" and full["training"]["labels"] == "hard"
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["results"]) == {"minibirds.few_shot.shots5.class_mean_images.seed0",
                                       "minibirds.few_shot.shots5.class_mean_images.half.seed0"}


def test_with_building_disabled_a_missing_artifact_is_an_error_naming_kind_and_command(mini, with_test_method,
                                                                                       tmp_path):
    _, cards, _ = mini
    suite = _suite(tmp_path, ["class_mean_images"])
    refused = _run(suite, tmp_path / "run", cards, tmp_path / "cache", build_artifacts=False)
    (failure,) = refused["failed"]
    assert "ArtifactError" in failure["error"] and "class_mean" in failure["error"]
    assert "--no-build-artifacts" in failure["error"] and "augbench run" in failure["error"]
    # once built, the same run with building disabled reuses it
    assert _run(suite, tmp_path / "built", cards, tmp_path / "cache")["failed"] == []
    assert _run(suite, tmp_path / "again", cards, tmp_path / "cache", build_artifacts=False)["failed"] == []


def test_a_suite_overrides_the_cards_training_integration(mini, with_test_method, tmp_path):
    _, cards, _ = mini
    suite = _suite(tmp_path, ["class_mean_images"], '[training.class_mean_images]\nreplacement_mode = "concat"\n')
    assert _run(suite, tmp_path / "run", cards, tmp_path / "cache")["failed"] == []
    rec = _record(tmp_path / "run", "class_mean_images")
    assert rec["training"]["replacement_mode"] == "concat" and rec["training"]["labels"] == "hard"
    assert rec["train"]["config"]["replacement_mode"] == "concat"


def _foreign_artifact(tmp_path: Path, mini_cards: Path) -> Path:
    """A class_mean artifact whose manifest includes test images (as a checkpoint trained on a full split)."""
    from augbench.data import open_dataset

    source = open_dataset("minibirds", datasets_dir=mini_cards)
    folder = tmp_path / "foreign_artifact"
    folder.mkdir()
    np.save(folder / "class_mean.npy", np.full((4, 16, 16, 3), 128, np.float32))
    from augbench.run.hashing import file_sha256

    ids = [s.image_id for s in source.samples("test")]
    (folder / "artifact.json").write_text(json.dumps({
        "kind": "class_mean", "recipe": {"size": 16}, "trained_on": {"hash": "full-test-split", "ids": ids},
        "files": {"class_mean.npy": file_sha256(folder / "class_mean.npy")}}))
    return folder


def test_an_artifact_trained_on_other_images_is_refused_unless_allowed(mini, with_test_method, tmp_path):
    _, cards, _ = mini
    folder = _foreign_artifact(tmp_path, cards)
    params = f'[methods_params.class_mean_images]\nartifact_path = "{folder}"\n'
    refused = _run(_suite(tmp_path, ["class_mean_images"], params), tmp_path / "refused", cards, tmp_path / "cache")
    (failure,) = refused["failed"]
    assert "ArtifactError" in failure["error"] and "full-test-split" in failure["error"]
    assert "allow_foreign_artifacts" in failure["error"]
    train_hash = failure["error"].split("training part ")[1].split(" ")[0]
    assert len(train_hash) == 64  # both manifests are named

    allowed = _run(_suite(tmp_path, ["class_mean_images"], "allow_foreign_artifacts = true\n" + params),
                   tmp_path / "allowed", cards, tmp_path / "cache")
    assert allowed["failed"] == []
    (artifact,) = _record(tmp_path / "allowed", "class_mean_images")["artifacts"]
    assert artifact["foreign"] and artifact["foreign_examples"]


def test_a_corrupt_artifact_file_is_named_and_rebuilt_on_the_next_run(mini, with_test_method, tmp_path):
    _, cards, _ = mini
    suite = _suite(tmp_path, ["class_mean_images"])
    assert _run(suite, tmp_path / "run", cards, tmp_path / "cache")["failed"] == []
    (artifact,) = _record(tmp_path / "run", "class_mean_images")["artifacts"]
    npy = Path(artifact["folder"]) / "class_mean.npy"
    npy.write_bytes(b"garbage")
    second = _run(_suite(tmp_path, ["class_mean_images.half"]), tmp_path / "run", cards, tmp_path / "cache")
    (failure,) = second["failed"]
    assert str(npy) in failure["error"] and "rebuilt on the next run" in failure["error"]
    third = _run(_suite(tmp_path, ["class_mean_images.half"]), tmp_path / "run", cards, tmp_path / "cache")
    assert third["failed"] == [] and np.load(npy).shape == (4, 16, 16, 3)

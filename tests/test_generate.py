"""``generate_synthetic_set``: manifest, images, byte-identical reruns, resume, artifacts (augbench.synthetic.generate)."""

from __future__ import annotations

import json
import os

import pytest

from augbench.contract import PipelineCache
from augbench.synthetic.generate import GenerateError, generate_synthetic_set, read_manifest
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile, tiny_subset


@pytest.fixture(scope="module")
def setup():
    source = TinySource(per_class={"train": [2, 1, 1]})
    profile = tiny_profile(cached_tiny_sd_pipeline(), image_size=16)
    return source, tiny_subset(source), profile, PipelineCache()


def _gen(setup, out, method="sd_random", **kw):
    source, subset, profile, pipelines = setup
    kw.setdefault("batch_size", 2)
    return generate_synthetic_set(method, source, subset, profile, 5, out, pipelines=pipelines, **kw)


def _files(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.parts
    }


def test_manifest_and_images(setup, tmp_path):
    out = _gen(setup, tmp_path / "a")
    rows = read_manifest(out)
    assert len(rows) == 4
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["file"] == "images/000000.png" and (out / rows[0]["file"]).is_file()
    assert rows[0]["label"] == {"Tiny_class_0": 1.0}
    assert [r["target_class"] for r in rows] == ["Tiny_class_0", "Tiny_class_0", "Tiny_class_1", "Tiny_class_2"]
    assert rows[0]["sources"] == [] and rows[0]["method"] == "sd_random"
    assert rows[0]["params"]["prompt_template"] == "a photo of a {name} {meta}"
    assert isinstance(rows[0]["seed"], int) and rows[0]["seed"] != rows[1]["seed"]
    assert rows[0]["provenance"]["prompt"] == "a photo of a Tiny class 0 bird"
    spec = json.loads((out / "generation.json").read_text())
    assert spec["num_images"] == 4 and spec["subset_hash"] == setup[1].manifest_hash
    assert not (out / ".parts").exists()
    from PIL import Image

    assert Image.open(out / rows[3]["file"]).size == (16, 16)


def test_same_seed_byte_identical(setup, tmp_path):
    a = _files(_gen(setup, tmp_path / "a"))
    b = _files(_gen(setup, tmp_path / "b"))
    assert a == b and len(a) == 6  # 4 images + manifest + generation.json


def test_complete_set_is_reused_and_resume_regenerates_only_missing(setup, tmp_path):
    out = _gen(setup, tmp_path / "a")
    full = _files(out)
    stamp = os.stat(out / "images/000000.png").st_mtime_ns
    _gen(setup, out)  # complete: nothing regenerated
    assert os.stat(out / "images/000000.png").st_mtime_ns == stamp

    # simulate a run killed after the first chunk: no manifest, parts for 0 and 1 only
    (out / "manifest.jsonl").unlink()
    parts = out / ".parts"
    parts.mkdir()
    for i, line in enumerate(full["manifest.jsonl"].decode().splitlines()[:2]):
        (parts / f"{i:06d}.json").write_text(line + "\n")
    (out / "images/000002.png").unlink()
    (out / "images/000003.png").write_bytes(b"half-written garbage")  # no part file: regenerated
    _gen(setup, out)
    assert os.stat(out / "images/000000.png").st_mtime_ns == stamp
    assert _files(out) == full


def test_different_settings_in_same_folder_refused(setup, tmp_path):
    out = _gen(setup, tmp_path / "a")
    with pytest.raises(GenerateError, match="different settings"):
        _gen(setup, out, params_overrides={"prompt_template": "a photo of a {name}"})


def test_composition_generates_offline_part_and_batch_methods_refused(setup, tmp_path):
    a = _files(_gen(setup, tmp_path / "a"))
    b = _files(_gen(setup, tmp_path / "b", method="sd_random+cutmix"))
    assert a == b
    with pytest.raises(GenerateError, match="batch method"):
        _gen(setup, tmp_path / "c", method="cutmix")


def test_budget_and_preset(setup, tmp_path):
    out = _gen(setup, tmp_path / "a", method="sd_random.p1_article", budget=2, batch_size=8)
    rows = read_manifest(out)
    assert len(rows) == 2 and rows[0]["method"] == "sd_random.p1_article" and rows[0]["preset"] == "p1_article"
    assert rows[0]["provenance"]["prompt"] == "a photo of a Tiny class 0"
    with pytest.raises(GenerateError, match="incomplete"):
        read_manifest(tmp_path / "nothing")


class _SometimesBlank:
    """An offline method whose first attempt at some requests decodes to a constant image."""

    @staticmethod
    def make(blank_indices, always=False):
        import numpy as np

        from augbench.contract import GenerationRequest, MethodCard, OfflineMethod, SyntheticSample, one_hot

        class Method(OfflineMethod):
            family = "sometimes_blank"
            card = MethodCard(summary="test method")
            seen_seeds: list = []

            def plan(self, subset, budget, seed, *, ctx=None):
                return [GenerationRequest(index=i, seed=self.request_seed(seed, i), target_class=label)
                        for i, label in enumerate(subset.labels)]

            def generate(self, requests, ctx):
                out = []
                for r in requests:
                    Method.seen_seeds.append(r.seed)
                    first_try = r.seed == self.request_seed(5, r.index)
                    blank = r.index in blank_indices and (first_try or always)
                    image = np.zeros((8, 8, 3), np.uint8) if blank else \
                        np.random.default_rng(r.seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
                    out.append(SyntheticSample(image, one_hot(r.target_class, ctx.num_classes), self.sample_provenance(r)))
                return out

        return Method


def test_blank_images_are_regenerated_with_derived_seeds_and_counted(setup, tmp_path):
    from augbench.registry import Registry

    reg = Registry(discover=False)
    reg.register("sometimes_blank", _SometimesBlank.make({1, 3}))
    out = _gen(setup, tmp_path / "a", method="sometimes_blank", registry=reg)
    rows = read_manifest(out)
    assert [r["provenance"].get("regenerated", 0) for r in rows] == [0, 1, 0, 1]
    assert rows[1]["seed"] != rows[1]["provenance"]["retry_seed"]  # the request's seed stays the recorded one


def test_a_request_that_keeps_failing_names_method_class_and_seed(setup, tmp_path):
    from augbench.registry import Registry

    reg = Registry(discover=False)
    reg.register("sometimes_blank", _SometimesBlank.make({2}, always=True))
    with pytest.raises(GenerateError, match=r"sometimes_blank produced a blank image for request 2 \(class 'Tiny_class_1', seed \d+\) 4 times"):
        _gen(setup, tmp_path / "b", method="sometimes_blank", registry=reg)
    assert not (tmp_path / "b" / "manifest.jsonl").exists()  # never marked complete


def _class_mean_method(family, artifact_path=None):
    """An offline method that declares a ``class_mean`` artifact and draws noisy class means from it."""
    import numpy as np

    from augbench.contract import (
        ArtifactSpec,
        GenerationRequest,
        MethodCard,
        OfflineMethod,
        SyntheticSample,
        one_hot,
    )

    class Method(OfflineMethod):
        card = MethodCard(summary="noisy class-mean images (test method)")
        reused: list = []

        def artifacts(self, subset, ctx):
            return [ArtifactSpec("class_mean", {"size": 8}, path=artifact_path)]

        def setup(self, subset, ctx):
            Method.reused.append(ctx.artifacts["class_mean"].reused)

        def plan(self, subset, budget, seed, *, ctx=None):
            return [GenerationRequest(index=i, seed=self.request_seed(seed, i), target_class=label)
                    for i, label in enumerate(subset.labels)]

        def generate(self, requests, ctx):
            means = np.load(ctx.artifacts["class_mean"].path("class_mean.npy"))
            noisy = [means[r.target_class] + np.random.default_rng(r.seed).normal(0, 8, (8, 8, 3)) for r in requests]
            return [SyntheticSample(np.clip(image, 0, 255).astype(np.uint8), one_hot(r.target_class, ctx.num_classes),
                                    self.sample_provenance(r))
                    for image, r in zip(noisy, requests, strict=True)]

    Method.family = family
    return Method


def test_declared_artifacts_are_built_in_the_runners_store_reused_and_leakage_guarded(setup, tmp_path, monkeypatch):
    from augbench.contract import ArtifactSpec
    from augbench.registry import Registry
    from augbench.run.artifacts import ArtifactError, artifact_key

    monkeypatch.setenv("AUGBENCH_CACHE", str(tmp_path / "cache"))
    _, subset, profile, _ = setup
    method = _class_mean_method("class_mean_images")
    reg = Registry(discover=False)
    reg.register("class_mean_images", method)
    a = _gen(setup, tmp_path / "a", method="class_mean_images", registry=reg)
    _gen(setup, tmp_path / "b", method="class_mean_images", registry=reg)
    key = artifact_key(ArtifactSpec("class_mean", {"size": 8}), subset, profile.pipeline_key)  # the runner's key
    assert json.loads((a / "generation.json").read_text())["artifacts"] == [key]
    built = tmp_path / "cache" / "artifacts" / key
    assert (built / "artifact.json").is_file() and method.reused == [False, True]  # one build, then reused

    foreign = tmp_path / "foreign"  # the same artifact, but it claims to have seen an image outside the subset
    foreign.mkdir()
    for f in built.iterdir():
        (foreign / f.name).write_bytes(f.read_bytes())
    meta = json.loads((foreign / "artifact.json").read_text())
    meta["trained_on"]["ids"].append("a-test-image")
    (foreign / "artifact.json").write_text(json.dumps(meta))
    reg.register("class_mean_foreign", _class_mean_method("class_mean_foreign", str(foreign)))
    with pytest.raises(ArtifactError, match="a-test-image.*allow_foreign_artifacts"):
        _gen(setup, tmp_path / "c", method="class_mean_foreign", registry=reg)
    assert not (tmp_path / "c" / "manifest.jsonl").exists()

"""The suite's scale knobs and the rehearsal overlay (issue 23): what a rehearsal shrinks is suite keys."""

from __future__ import annotations

import pytest

from augbench.data.views import FirstClasses, first_classes
from augbench.protocols.base import EvaluationSet
from augbench.run import cells, suites
from augbench.run.profiles import get_profile
from augbench.run.stages import first_per_class
from augbench.testing.tiny import TinySource, tiny_card, tiny_subset


def _suite(tmp_path, body: str):
    path = tmp_path / "s.toml"
    path.write_text('[suite]\nprotocol = "few_shot"\ndatasets = ["toybirds"]\nmethods = ["original"]\nseeds = [0]\n'
                    + body)
    return path


def test_rehearsal_overlay_shrinks_every_builtin_suite_in_both_profiles():
    for name in suites.list_suites():
        for profile in ("embedded", "sd15"):
            full, rehearsal = suites.load_suite(name, profile), suites.load_suite(name, profile, rehearsal=True)
            assert rehearsal.rehearsal and not full.rehearsal
            assert rehearsal.published == () and rehearsal.seeds == (0,)
            assert rehearsal.classes == 3 and rehearsal.epochs == 2 and rehearsal.max_synthetic == 12
            assert rehearsal.methods == full.methods  # every method of the real run is rehearsed
    few = suites.load_suite("few_shot", "sd15", rehearsal=True)
    assert few.shots == (5,) and few.profile_overrides["image_size"] == 128
    assert few.concepts["ti"]["steps"] == 2
    # the rehearsal's values beat the suite's own [profiles.sd15] overlay (edits_per_image = 5 there)
    assert few.methods_params["da_fusion"]["edits_per_image"] == 1
    assert few.methods_params["da_fusion"]["preset"] == "dpm25"
    # the world keeps its own resolution; the long tail takes imbalance factors, not shots
    assert "image_size" not in suites.load_suite("few_shot", "embedded", rehearsal=True).profile_overrides
    assert suites.load_suite("long_tail", "sd15", rehearsal=True).imbalance_factors == (100,)


def test_rehearsal_runs_into_its_own_run_directory():
    assert str(cells.default_run_dir("few_shot", "sd15", rehearsal=True)).endswith("few_shot-sd15-rehearsal")
    assert str(cells.default_run_dir("few_shot", "sd15")).endswith("few_shot-sd15")


def test_unknown_profile_and_concept_keys_are_refused_with_hints(tmp_path):
    path = _suite(tmp_path, "[profile]\nimage_sise = 128\n[concepts.ti]\nstep = 3\n[concepts.lora]\nsteps = 1\n")
    with pytest.raises(suites.SuiteError) as err:
        suites.load_suite(str(path))
    message = str(err.value)
    assert "'image_sise' (did you mean 'image_size'?)" in message
    assert "'step' (did you mean 'steps'?)" in message
    assert "[concepts.lora] (did you mean 'lora_ti'?)" in message


def test_scale_counts_must_be_whole_numbers(tmp_path):
    from augbench.registry import default_registry

    suite = suites.load_suite(str(_suite(tmp_path, "classes = 0\nmax_synthetic = 2.5\n")))
    with pytest.raises(suites.SuiteError, match="classes = 0: expected a whole number >= 1.*max_synthetic = 2.5"):
        suites.validate_suite(suite, default_registry())


def test_suite_refines_its_profile_and_every_model_key(tmp_path):
    from augbench.diffusion.concepts import concept_recipe

    path = _suite(tmp_path, "[profile]\nimage_size = 96\nnum_inference_steps = 3\n"
                            "[concepts.lora_ti]\nsteps = 7\nresolution = 96\n")
    suite = suites.load_suite(str(path), "sd15")
    base = get_profile("sd15", environ={})
    refined = suite.apply_to_profile(base)
    assert (refined.image_size, refined.num_inference_steps) == (96, 3)
    assert concept_recipe("lora_ti", refined)["steps"] == 7 and concept_recipe("lora_ti", base)["steps"] == 35_000
    # a set or pool made at 96 px is never reused at 512 px: the model keys differ
    assert refined.pipeline_key != base.pipeline_key and refined.clip_key != base.clip_key
    plain = suites.load_suite(str(_suite(tmp_path, "")), "sd15")
    assert plain.apply_to_profile(base) is base and plain.profile_key is None


def test_first_classes_view_restricts_card_splits_and_manifests():
    from augbench.data.core import Subset

    source = TinySource(tiny_card(4))
    view = first_classes(source, 2)
    assert isinstance(view, FirstClasses) and view.class_names == source.class_names[:2]
    assert {s.label for s in view.samples("train")} == {0, 1}
    assert len(view.samples("train")) < len(source.samples("train"))
    # the same images of the first two classes, but another manifest: keys built on the view differ
    ids = [s for s in source.samples("train") if s.label < 2]
    whole = Subset.of_source(source, "train", "full", {}, tuple(ids))
    viewed = Subset.of_source(view, "train", "full", {}, tuple(view.samples("train")))
    assert whole.image_ids == viewed.image_ids and whole.manifest_hash != viewed.manifest_hash
    assert view.load_image(ids[0].image_id).size == source.load_image(ids[0].image_id).size
    assert first_classes(source, 4) is source and first_classes(source, 9) is source
    assert first_classes(source, None) is source


def test_test_per_class_keeps_the_first_images_of_each_class():
    source = TinySource(tiny_card(3), per_class={"test": 4})
    test = EvaluationSet(tiny_subset(source, "test"))
    capped = first_per_class(test, 2)
    labels = [s.label for s in capped.subset.samples]
    assert sorted(labels) == [0, 0, 1, 1, 2, 2] and not capped.whole_split
    first_ids = [s.image_id for s in test.subset.samples if s.label == 0][:2]
    assert [s.image_id for s in capped.subset.samples if s.label == 0] == first_ids
    assert first_per_class(test, 4) is test


def test_max_synthetic_caps_a_method_that_plans_more(tmp_path, one_thread):
    from augbench.synthetic.generate import generate_synthetic_set, read_manifest
    from augbench.testing.tiny import cached_tiny_sd_pipeline, tiny_profile

    source = TinySource(tiny_card(3), per_class={"train": 2})
    subset = tiny_subset(source)
    profile = tiny_profile(cached_tiny_sd_pipeline())
    capped = generate_synthetic_set("sd_random", source, subset, profile, 0, tmp_path / "capped", max_images=4)
    rows = read_manifest(capped)
    assert len(rows) == 4
    loose = generate_synthetic_set("sd_random", source, subset, profile, 0, tmp_path / "loose", max_images=100)
    assert len(read_manifest(loose)) == len(subset.samples)  # expansion 1: fewer than the cap, as planned


def test_bad_concept_values_are_refused_at_load(tmp_path):
    path = _suite(tmp_path, "[concepts.ti]\nmicro_batch = -1\n")
    with pytest.raises(suites.SuiteError, match=r"\[concepts.ti\]: .*micro_batch"):
        suites.load_suite(str(path), "sd15")


def test_concept_learning_load_errors_name_the_profile_variable(tmp_path):
    import dataclasses

    from augbench.diffusion.concepts.training import load_base_components
    from augbench.diffusion.pipelines import ModelLoadError

    profile = dataclasses.replace(get_profile("sd15", environ={}), pipeline=str(tmp_path), local_files_only=True)
    with pytest.raises(ModelLoadError, match="concept learning: .*AUGBENCH_SD15_PIPELINE"):
        load_base_components(profile, "cpu")

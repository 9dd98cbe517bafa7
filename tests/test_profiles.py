"""Profiles: model locations and offline flags."""

from __future__ import annotations

import pytest


def test_profile_model_locations_come_from_the_environment(tmp_path):
    from augbench.run.profiles import PROFILES, get_profile

    sd, clip = tmp_path / "sd-v1-5", tmp_path / "clip-b32"
    sd.mkdir()
    clip.mkdir()
    assert get_profile("sd15", environ={}) == PROFILES["sd15"]
    local = get_profile("sd15", environ={"AUGBENCH_SD15_PIPELINE": str(sd), "AUGBENCH_SD15_CLIP": str(clip)})
    assert (local.pipeline, local.clip, local.local_files_only) == (str(sd), str(clip), True)
    # one local folder and one hub id: downloads stay allowed for the hub id
    mixed = get_profile("sd15", environ={"AUGBENCH_SD15_PIPELINE": str(sd)})
    assert mixed.pipeline == str(sd) and mixed.clip == PROFILES["sd15"].clip and not mixed.local_files_only
    with pytest.raises(ValueError, match="AUGBENCH_SD15_CLIP=.*not a directory"):
        get_profile("sd15", environ={"AUGBENCH_SD15_CLIP": str(tmp_path / "missing")})


def test_world_models_are_identified_by_their_build_record_in_cache_keys(tmp_path):
    """A rebuilt world lives at the same path: its build.json fingerprint must reach the cache keys."""
    import dataclasses

    from augbench.run.profiles import PROFILES, get_profile, world_fingerprint

    embedded = PROFILES["embedded"]
    assert embedded.models_fingerprint == world_fingerprint() is not None
    assert embedded.pipeline_key.startswith(embedded.pipeline) and embedded.pipeline_key != embedded.pipeline
    assert embedded.clip_key.endswith(embedded.models_fingerprint)
    # models that are not a world build (a hub id) keep their plain name
    assert PROFILES["sd15"].pipeline_key == PROFILES["sd15"].pipeline
    # a world built elsewhere: its own record, and a rebuild there changes the key
    for part in ("sd", "clip"):
        (tmp_path / part).mkdir()
    (tmp_path / "build.json").write_text('{"build_seconds": 1}')
    env = {"AUGBENCH_EMBEDDED_PIPELINE": str(tmp_path / "sd"), "AUGBENCH_EMBEDDED_CLIP": str(tmp_path / "clip")}
    first = get_profile("embedded", environ=env)
    (tmp_path / "build.json").write_text('{"build_seconds": 2}')
    second = get_profile("embedded", environ=env)
    assert first.models_fingerprint != second.models_fingerprint != embedded.models_fingerprint
    assert first.pipeline_key != second.pipeline_key
    other = dataclasses.replace(embedded, models_fingerprint="abc")
    assert other.pipeline_key != embedded.pipeline_key


def test_weight_files_and_sd14_come_from_the_environment_too(tmp_path):
    import dataclasses

    from augbench.run.profiles import PROFILES, get_profile, profile_env_var

    weights, alexnet = tmp_path / "resnet50.safetensors", tmp_path / "alexnet.pth"
    weights.write_bytes(b"x")
    alexnet.write_bytes(b"x")
    profile = get_profile("sd15", environ={"AUGBENCH_SD15_CLASSIFIER_WEIGHTS": str(weights),
                                           "AUGBENCH_SD15_ALEXNET": str(alexnet), "AUGBENCH_SD15_SD14": str(tmp_path)})
    assert (profile.classifier_weights_file, profile.alexnet_weights) == (str(weights), str(alexnet))
    assert profile.extra["sd14_pipeline"] == str(tmp_path) and PROFILES["sd15"].classifier_weights_file is None
    assert profile.local_files_only is False  # weight files alone do not switch the hub models to local-only
    with pytest.raises(ValueError, match="AUGBENCH_SD15_ALEXNET=.*no such file"):
        get_profile("sd15", environ={"AUGBENCH_SD15_ALEXNET": str(tmp_path)})  # a folder is not the .pth
    with pytest.raises(ValueError, match="AUGBENCH_SD15_SD14=.*not a directory"):
        get_profile("sd15", environ={"AUGBENCH_SD15_SD14": str(tmp_path / "sd14")})
    renamed = dataclasses.replace(PROFILES["sd15"], name="my-sd.2")
    assert profile_env_var("my-sd.2", "clip") == renamed.env_var("clip") == "AUGBENCH_MY_SD_2_CLIP"

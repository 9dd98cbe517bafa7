"""Profiles: model locations and offline flags."""

from __future__ import annotations

import pytest


def test_profile_model_locations_come_from_the_environment(tmp_path):
    from benchmark.profiles import PROFILES, get_profile

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

"""``augbench models check`` and the check before a run (issue 23): every model a suite needs on a profile, where
it is looked for, whether it is there (folders of the right kind, complete), and the variable that fixes it."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from augbench.run.cells import RunOptions, plan_cells
from augbench.run.models import ModelsMissingError, check_models, describe_folder, inspect_model, suite_models
from augbench.run.profiles import PROFILES, get_profile
from augbench.run.suites import load_suite
from augbench.testing.tiny import cached_tiny_clip, cached_tiny_sd_pipeline


@pytest.fixture()
def empty_caches(tmp_path, monkeypatch):
    """Nothing in the Hugging Face or torch hub caches, no summariser endpoint: only local folders count."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("AUGBENCH_SUFFIX_LLM_URL", raising=False)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch-hub"))
    yield tmp_path
    torch.hub.set_dir(old)


def _cells(suite, profile: str, methods=None):
    return plan_cells(suite, RunOptions(suite=suite.name, profile=profile, methods=methods))


def test_tiny_pipeline_and_clip_folders_are_present():
    profile = PROFILES["embedded"]
    pipe = inspect_model("pipeline", str(cached_tiny_sd_pipeline()), profile)
    clip = inspect_model("clip", str(cached_tiny_clip()), profile)
    assert pipe.present and "StableDiffusionPipeline" in pipe.detail
    assert clip.present and "CLIPModel" in clip.detail


def test_missing_incomplete_and_wrong_kind_folders_say_what_they_hold(tmp_path):
    profile = PROFILES["sd15"]
    missing = inspect_model("pipeline", str(tmp_path / "sd-v1-5"), profile)
    assert not missing.present and not missing.downloadable and "sd-v1-5 does not exist" in missing.detail

    incomplete = tmp_path / "sd-incomplete"
    shutil.copytree(cached_tiny_sd_pipeline(), incomplete)
    (incomplete / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    found = inspect_model("pipeline", str(incomplete), profile)
    assert not found.present
    assert f"{incomplete} is an incomplete StableDiffusionPipeline folder: unet/ has no weights" in found.detail

    clip = str(cached_tiny_clip())
    wrong = inspect_model("pipeline", clip, profile)
    assert not wrong.present
    assert wrong.detail.startswith(f"{clip} holds a transformers CLIPModel (config.json: model_type 'clip'); expected "
                                   "a diffusers StableDiffusionPipeline")
    reverse = inspect_model("clip", str(cached_tiny_sd_pipeline()), profile)
    assert "holds a diffusers StableDiffusionPipeline (model_index.json); expected a transformers CLIPModel" \
        in reverse.detail
    unet = inspect_model("clip", str(cached_tiny_sd_pipeline() / "unet"), profile)
    assert "holds a diffusers UNet2DConditionModel (config.json), one component of a pipeline" in unet.detail
    assert describe_folder(tmp_path / "nothing") == "nothing (no such folder)"


def test_hub_ids_are_looked_up_in_the_cache_only(empty_caches, monkeypatch):
    import huggingface_hub.constants

    offline = dataclasses.replace(PROFILES["sd15"], local_files_only=True)
    gone = inspect_model("pipeline", "org/sd-not-cached", offline)
    assert (gone.present, gone.downloadable) == (False, False) and "not in the Hugging Face cache" in gone.detail
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert inspect_model("pipeline", "org/sd-not-cached", PROFILES["sd15"]).downloadable  # the run fetches it
    # a cached snapshot (the hub cache layout) is checked like a folder
    repo = empty_caches / "hf" / "models--org--tiny-sd"
    shutil.copytree(cached_tiny_sd_pipeline(), repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    cached = inspect_model("pipeline", "org/tiny-sd", offline)
    assert cached.present and "in the Hugging Face cache" in cached.detail


def test_methods_declare_the_models_they_load():
    from augbench.registry import default_registry

    registry, sd15 = default_registry(), PROFILES["sd15"]
    assert registry.create("sd_random").required_models(sd15) == {"pipeline": sd15.pipeline}
    assert registry.create("da_fusion").required_models(sd15) == {"pipeline": sd15.pipeline}
    assert registry.create("da_fusion.daf_sd14").required_models(sd15) == {
        "sd14_pipeline": "CompVis/stable-diffusion-v1-4"}
    assert registry.create("real_filter").required_models(sd15) == {"pipeline": sd15.pipeline, "clip": sd15.clip}


def test_daf_sd14_adds_sd14_to_the_suite_s_models(empty_caches):
    suite = load_suite("few_shot", "sd15")
    entries = {e.role: e for e in suite_models(suite, _cells(suite, "sd15", ["da_fusion.daf_sd14", "cutmix"]),
                                               PROFILES["sd15"])}
    assert set(entries) == {"sd14_pipeline", "clip", "lpips_linear", "lpips_alexnet", "classifier"}
    assert entries["sd14_pipeline"].needed_by == ("da_fusion.daf_sd14",)
    assert entries["classifier"].needed_by == ("da_fusion.daf_sd14", "cutmix.noisecutmix_paper")  # ids as resolved
    assert entries["lpips_linear"].present  # shipped inside the lpips package
    assert "AUGBENCH_SD15_SD14=DIR" in entries["sd14_pipeline"].fix


def test_a_missing_model_stops_the_check_with_one_message(empty_caches):
    suite = load_suite("few_shot", "sd15")
    profile = dataclasses.replace(get_profile("sd15", environ={}), local_files_only=True)
    with pytest.raises(ModelsMissingError) as info:
        check_models(suite, _cells(suite, "sd15", ["sd_random", "original"]), profile)
    message = str(info.value)
    assert "\n" not in message and "suite few_shot (profile sd15) needs 4 model(s)" in message
    for fix in ("AUGBENCH_SD15_PIPELINE=DIR", "AUGBENCH_SD15_CLIP=DIR", "AUGBENCH_SD15_ALEXNET=FILE",
                "AUGBENCH_SD15_CLASSIFIER_WEIGHTS=FILE", "augbench models check --profile sd15 --suite few_shot"):
        assert fix in message


def test_the_embedded_profile_s_check_passes_on_the_committed_world():
    suite = load_suite("few_shot", "embedded")
    entries = check_models(suite, _cells(suite, "embedded"), get_profile("embedded", environ={}))
    assert {e.role for e in entries} == {"pipeline", "clip", "lpips_effnet", "oracle", "classifier", "instruct_pix2pix"}
    assert all(e.present for e in entries), [e.detail for e in entries if not e.present]


def test_env_vars_point_every_model_at_a_local_copy(tmp_path, empty_caches):
    weights = tmp_path / "resnet50"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"x")
    alexnet = tmp_path / "alexnet-owt-7be5be79.pth"
    alexnet.write_bytes(b"x")
    env = {"AUGBENCH_SD15_CLASSIFIER_WEIGHTS": str(weights), "AUGBENCH_SD15_ALEXNET": str(alexnet),
           "AUGBENCH_SD15_SD14": str(cached_tiny_sd_pipeline())}
    profile = get_profile("sd15", environ=env)
    assert (profile.classifier_weights_file, profile.alexnet_weights) == (str(weights), str(alexnet))
    assert profile.extra["sd14_pipeline"] == str(cached_tiny_sd_pipeline())
    suite = load_suite("few_shot", "sd15")
    entries = {e.role: e for e in suite_models(suite, _cells(suite, "sd15", ["da_fusion.daf_sd14"]), profile)}
    assert entries["classifier"].present and str(weights / "model.safetensors") in entries["classifier"].detail
    assert entries["lpips_alexnet"].present and entries["lpips_alexnet"].location == str(alexnet)
    assert entries["sd14_pipeline"].present
    for variable in ("AUGBENCH_SD15_CLASSIFIER_WEIGHTS", "AUGBENCH_SD15_ALEXNET"):
        with pytest.raises(ValueError, match=f"{variable}=.*no such file"):
            get_profile("sd15", environ={variable: str(tmp_path / "missing.pth")})


def test_cli_models_check_exit_codes_and_table(empty_caches, capsys):
    from augbench.cli.main import main

    assert main(["models", "check", "--suite", "few_shot"]) == 0
    out = capsys.readouterr().out
    assert "models of suite few_shot on profile embedded" in out and "all 6 models available" in out
    assert "pipeline" in out and "present" in out
    assert main(["models", "check", "--profile", "sd15", "--suite", "few_shot", "--offline"]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and "fix: AUGBENCH_SD15_PIPELINE=DIR" in out and "models missing" in out
    assert main(["models", "check", "--profile", "sd15", "--suite", "few_shot", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    roles = {m["role"]: m for m in report["models"]}
    assert not report["ok"] and roles["pipeline"]["state"] == "missing"
    assert {"captioner", "summariser:openai"} <= set(roles)  # Diff-II's captioner suffixes on sd15


def test_load_errors_name_the_variable_and_the_check(empty_caches, tmp_path):
    """Each model that fails to load says, in one line, which variable points it at a local copy."""
    from augbench.diffusion.pipelines import ModelLoadError, _load_pipeline
    from augbench.metrics.clip import CLIPLoadError, profile_clip_scorer
    from augbench.metrics.perceptual import perceptual_for_profile
    from augbench.training.backbones import WeightsNotFoundError

    offline = dataclasses.replace(PROFILES["sd15"], local_files_only=True, clip="augbench-test/no-such-clip")
    with pytest.raises(CLIPLoadError) as clip:
        profile_clip_scorer(offline)
    assert "\n" not in str(clip.value) and "AUGBENCH_SD15_CLIP" in str(clip.value)
    assert "augbench models check --profile sd15" in str(clip.value)
    with pytest.raises(CLIPLoadError, match="holds a diffusers StableDiffusionPipeline .*expected a transformers CLIP"):
        profile_clip_scorer(dataclasses.replace(offline, clip=str(cached_tiny_sd_pipeline())))
    with pytest.raises(WeightsNotFoundError, match="allows no downloads. Point AUGBENCH_SD15_ALEXNET at a local copy"):
        perceptual_for_profile(offline)

    incomplete = tmp_path / "sd"
    shutil.copytree(cached_tiny_sd_pipeline(), incomplete)
    shutil.rmtree(incomplete / "unet")
    for name, world in (("sd15", False), ("embedded", True)):
        profile = dataclasses.replace(PROFILES[name], pipeline=str(incomplete), local_files_only=True)
        with pytest.raises(ModelLoadError) as info:
            _load_pipeline(profile, "cpu", torch.float32)
        message = str(info.value)
        assert f"point AUGBENCH_{name.upper()}_PIPELINE at a complete copy" in message and "\n" not in message
        assert ("augbench world build" in message) is world
    sd14 = dataclasses.replace(offline, pipeline="augbench-test/no-such-sd14",
                               extra={"sd14_pipeline": "augbench-test/no-such-sd14"})
    with pytest.raises(ModelLoadError, match="Point AUGBENCH_SD15_SD14 at a local diffusers copy"):
        _load_pipeline(sd14, "cpu", torch.float32)


def test_the_check_loads_no_model_library():
    """Cheap: configs and file names only, so neither diffusers nor transformers is imported."""
    import subprocess
    import sys

    code = ("import contextlib, io, sys; from augbench.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): code = main(['models', 'check', '--suite', 'few_shot'])\n"
            "print(code, [m for m in ('diffusers', 'transformers', 'lpips') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "0 []"


def test_diff_ii_captioner_and_summariser_roles(monkeypatch):
    profile = PROFILES["sd15"]
    clip = str(cached_tiny_clip())
    assert "expected a transformers BlipForConditionalGeneration folder" in inspect_model("captioner", clip,
                                                                                          profile).detail
    assert "expected a transformers causal LM folder" in inspect_model("summariser:transformers", clip, profile).detail
    monkeypatch.delenv("AUGBENCH_SUFFIX_LLM_URL", raising=False)
    assert not inspect_model("summariser:openai", "gpt-4", profile).present
    monkeypatch.setenv("AUGBENCH_SUFFIX_LLM_URL", "https://llm.example/v1?token=secret")
    found = inspect_model("summariser:openai", "gpt-4", profile)
    assert found.present and "https://llm.example/v1" in found.detail and "secret" not in found.detail

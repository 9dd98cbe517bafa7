"""Diff-II specifics (METHODS_SPEC §3.10): the interpolation math, the two stages, auto split ratio, single-image
classes, paired ablation presets and the output format. The inversion artifact: tests/test_inversion.py."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from augbench.contract import ConfigError, MethodContext, PipelineCache
from augbench.data.core import Subset
from augbench.methods.diff_ii import (
    circle_point,
    class_budgets,
    ddim_scheduler,
    encode_output,
    interpolate,
    lam_range,
    lerp,
    request_draws,
    resolve_split_ratio,
    slerp,
    suffix_path,
    suffixed_steps,
    theta_between,
)
from augbench.registry import default_registry
from augbench.run.artifacts import build_artifacts
from augbench.run.store import Store
from augbench.synthetic.generate import generate_synthetic_set
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile

WORLD_SCHEDULER = Path(__file__).resolve().parents[1] / "benchmark/world/weights/sd/scheduler/scheduler_config.json"


def _pair(seed: int = 0, shape=(4, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


# --- the math (§3.10.2) ----------------------------------------------------------------------------

def test_circle_endpoints_are_the_two_inversions():
    a, b = _pair()
    theta = theta_between(a, b)
    torch.testing.assert_close(circle_point(a, b, 0.0, theta), a)
    torch.testing.assert_close(circle_point(a, b, 2 * math.pi / theta - 1, theta), b)
    torch.testing.assert_close(circle_point(a, b, -1.0, theta), b)
    torch.testing.assert_close(circle_point(a, b, 2 * math.pi / theta, theta), a)  # the circle closes


def test_circle_preserves_equal_norms_and_stays_in_the_plane():
    a, b = _pair(1)
    b = b * (a.norm() / b.norm())
    theta = theta_between(a, b)
    for lam in np.linspace(0, 2 * math.pi / theta, 17):
        z = circle_point(a, b, float(lam), theta)
        assert float(z.norm()) == pytest.approx(float(a.norm()), rel=1e-9)
        # z = alpha a + beta b: the least-squares residual in span(a, b) is zero
        basis = torch.stack([a.flatten(), b.flatten()], 1)
        coef = torch.linalg.lstsq(basis, z.flatten()[:, None]).solution
        assert float((basis @ coef - z.flatten()[:, None]).norm()) < 1e-8 * float(z.norm())


def test_the_short_arc_share_of_draws_is_theta_over_two_pi():
    a, b = _pair(2)
    theta = theta_between(a, b)
    rng = np.random.default_rng(0)
    on_short_arc = 0
    draws = 4000
    for u in rng.random(draws):
        z, info = interpolate("circle", a, b, float(u))
        # between a and b on the short arc: the angles to both ends add up to theta
        on_short_arc += abs(theta_between(z, a) + theta_between(z, b) - theta) < 1e-6
    assert on_short_arc / draws == pytest.approx(theta / (2 * math.pi), abs=0.02)
    assert 0.2 < theta / (2 * math.pi) < 0.3  # nearly orthogonal Gaussian latents: ~25 % (P2 Fig.6)


def test_slerp_is_the_short_arc_of_the_circle_and_lerp_is_linear():
    a, b = _pair(3)
    theta = theta_between(a, b)
    for mu in (0.0, 0.25, 0.7, 1.0):
        torch.testing.assert_close(slerp(a, b, mu, theta), circle_point(a, b, 2 * math.pi / theta - mu, theta))
        torch.testing.assert_close(lerp(a, b, mu), (1 - mu) * a + mu * b)
    torch.testing.assert_close(slerp(a, b, 0.0, theta), a)
    torch.testing.assert_close(slerp(a, b, 1.0, theta), b)


def test_lam_ranges_and_paired_draws():
    a, b = _pair(4)
    theta = theta_between(a, b)
    assert lam_range("circle", theta) == pytest.approx(2 * math.pi / theta)
    assert lam_range("se", theta) == pytest.approx(2 * math.pi / theta - 1)
    assert lam_range("si", theta) == lam_range("li", theta) == 1.0
    # one uniform u gives every variant's lam: presets are paired
    infos = {k: interpolate(k, a, b, 0.4)[1] for k in ("circle", "se", "si", "li")}
    assert infos["circle"]["lam"] == pytest.approx(0.4 * 2 * math.pi / theta)
    assert infos["se"]["lam"] == pytest.approx(0.4 * (2 * math.pi / theta - 1))
    assert infos["si"]["lam"] == infos["li"]["lam"] == pytest.approx(0.4)
    # se never reaches the short arc (it ends at b)
    for u in np.linspace(0, 0.999, 50):
        z, _ = interpolate("se", a, b, float(u))
        assert abs(theta_between(z, a) + theta_between(z, b) - theta) > 1e-6 or u == 0


def test_degenerate_pairs_fall_back_to_the_first_inversion():
    a, _ = _pair(5)
    for b in (a.clone(), 2.0 * a, -a):
        z, info = interpolate("circle", a, b, 0.3)
        assert info["fallback"] and torch.equal(z, a)
    z, info = interpolate("li", a, 2.0 * a, 0.5)  # linear needs no guard
    assert not info["fallback"] and torch.allclose(z, 1.5 * a)


def test_request_draws_come_from_the_seed_only():
    assert request_draws(7, 5) == request_draws(7, 5)
    assert request_draws(7, 5).u_lam == request_draws(7, 1).u_lam  # the class size changes only the pair index
    assert request_draws(7, 1).pair is None and request_draws(7, 2).pair == 0
    pairs = [request_draws(s, 4).pair for s in range(600)]
    counts = np.bincount(pairs, minlength=6)
    assert counts.min() > 60  # uniform over the 6 unordered pairs of 4 images, with replacement


# --- two-stage denoising (§3.10.3) -------------------------------------------------------------------

def _sd15_ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")


@pytest.mark.parametrize("s, expected", [(0.0, 0), (0.1, 2), (0.3, 7), (1.0, 25)])
def test_stage_counts_on_the_sd15_schedule(s, expected):
    sched = ddim_scheduler(_sd15_ddim().config)
    sched.set_timesteps(25)
    timesteps = sched.timesteps.tolist()
    assert timesteps[0] == 961 and timesteps[-1] == 1
    mask = suffixed_steps(timesteps, s)
    assert sum(mask) == expected
    assert mask == sorted(mask, reverse=True)  # the suffixed steps come first (t from T down)


def test_the_embedded_world_samples_on_sd15s_leading_schedule():
    config = json.loads(WORLD_SCHEDULER.read_text())
    assert config["timestep_spacing"] == "linspace"
    sched = ddim_scheduler(config)
    sched.set_timesteps(25)
    assert sched.timesteps.tolist()[:2] == [961, 921] and sched.timesteps.tolist()[-1] == 1
    assert [sum(suffixed_steps(sched.timesteps.tolist(), s)) for s in (0.1, 0.3, 1.0)] == [2, 7, 25]


# --- config ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [1.5, -0.1, "half", True])
def test_split_ratio_outside_the_unit_interval_is_refused(bad):
    with pytest.raises(ConfigError, match=r"'auto' or a number in \[0, 1\]"):
        default_registry().create("diff_ii", {"split_ratio": bad})


def test_unknown_interpolation_suggests_the_close_one():
    with pytest.raises(ConfigError, match="did you mean 'circle'"):
        default_registry().create("diff_ii", {"interpolation": "circel"})


def _subset(protocol: str, params: dict, per_class=(3, 2, 1)) -> Subset:
    source = TinySource(per_class={"train": list(per_class)})
    return Subset(source.card.id, "train", protocol, params, tuple(source.samples("train")))


def test_auto_split_ratio_follows_the_protocol():
    assert resolve_split_ratio("auto", _subset("few_shot", {"shots": 5, "seed": 0})) == 0.3
    assert resolve_split_ratio("auto", _subset("few_shot", {"shots": 10, "seed": 0, "part": "train"})) == 0.1
    assert resolve_split_ratio("auto", _subset("long_tail", {"imbalance_factor": 100})) == 1.0
    assert resolve_split_ratio(0.5, _subset("full", {})) == 0.5
    with pytest.raises(ConfigError, match="set split_ratio"):
        resolve_split_ratio("auto", _subset("few_shot", {"shots": 3}))
    method = default_registry().create("diff_ii")
    requests = method.plan(_subset("few_shot", {"shots": 5, "seed": 0}), None, seed=0)
    assert {r.params["split_ratio"] for r in requests} == {0.3}  # recorded
    no_td = default_registry().create("diff_ii.cl_si_se").plan(_subset("few_shot", {"shots": 5}), None, seed=0)
    assert {r.params["split_ratio"] for r in no_td} == {0.0}


def test_budget_is_floor_of_expansion_times_class_size():
    assert class_budgets([3, 2, 1, 0], 5.0) == [15, 10, 5, 0]
    assert class_budgets([3, 3], 2.5) == [7, 7]
    method = default_registry().create("diff_ii")
    requests = method.plan(_subset("few_shot", {"shots": 5}), None, seed=0)
    assert [sum(r.target_class == c for r in requests) for c in range(3)] == [15, 10, 5]
    assert method.card.training.replacement_mode == "same_class" and method.card.training.labels == "hard"


def test_presets_are_the_table_4_rows():
    reg = default_registry()
    cfg = {p: reg.create(f"diff_ii.{p}").config for p in reg.presets("diff_ii")}
    assert {"vanilla_t2i", "cl_only", "cl_li", "cl_li_td", "cl_si", "cl_si_se", "cl_td", "jpeg_q75"} <= set(cfg)
    assert (cfg["vanilla_t2i"].concepts, cfg["vanilla_t2i"].interpolation, cfg["vanilla_t2i"].two_stage) == (
        "none", "none", False)
    assert [(cfg[p].interpolation, cfg[p].two_stage) for p in ("cl_only", "cl_li", "cl_li_td", "cl_si", "cl_si_se",
                                                                 "cl_td")] == [
        ("none", False), ("li", False), ("li", True), ("si", False), ("circle", False), ("none", True)]
    full = reg.create("diff_ii").config
    assert (full.concepts, full.interpolation, full.two_stage) == ("lora_ti", "circle", True)


def test_jpeg_q75_round_trip():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert encode_output(image, "png") is image
    jpeg = encode_output(image, "jpeg_q75")
    assert jpeg.shape == image.shape and jpeg.dtype == np.uint8 and not np.array_equal(jpeg, image)
    assert np.abs(encode_output(jpeg, "jpeg_q95").astype(int) - jpeg).mean() < np.abs(jpeg.astype(int) - image).mean()


# --- generation on the tiny model ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-class tiny source (3, 2, 1 images), a 5-shot-like subset and the default preset's artifacts."""
    source = TinySource(per_class={"train": [3, 2, 1]})
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=source, batch_size=8,
                        pipelines=PipelineCache())
    subset = Subset(source.card.id, "train", "few_shot", {"shots": 5, "seed": 0}, tuple(source.samples("train")))
    store = Store(tmp_path_factory.mktemp("dii-store"))
    method = default_registry().create("diff_ii", {"suffix_source": "world", "num_inference_steps": 25})
    ctx.artifacts = build_artifacts(method.artifacts(subset, ctx), subset, ctx, store)
    return ctx, subset, store


def _generate(method_id: str, tiny, **params):
    ctx, subset, _ = tiny
    method = default_registry().create(method_id, {"suffix_source": "world", "num_inference_steps": 25, **params})
    requests = method.plan(subset, None, seed=0)
    keep = [r for r in requests if r.params["class_request"] < 2]  # two per class keeps it fast
    return keep, method.generate(keep, ctx)


def test_full_method_provenance_pairs_and_single_image_classes(tiny):
    requests, samples = _generate("diff_ii", tiny)
    ctx, subset, _ = tiny
    by_class = {c: [i for i, lbl in zip(subset.image_ids, subset.labels) if lbl == c] for c in range(3)}
    for r, s in zip(requests, samples, strict=True):
        prov = s.provenance
        assert prov["split_ratio"] == 0.3 and prov["suffixed_steps"] == 7
        assert prov["prompt"].startswith("a photo of a <class_") and prov["suffix"] in TinySource.SCENES
        assert np.argmax(s.label) == r.target_class
        if r.target_class == 2:  # one image: Gaussian noise, counted (§3.10.5)
            assert prov["single_image_class"] and prov["sources"] == [] and prov["interpolation"] == {"kind": "noise"}
        else:
            assert not prov.get("single_image_class")
            assert len(prov["sources"]) == 2 and set(prov["sources"]) <= set(by_class[r.target_class])
            assert prov["sources"] == list(r.source_ids)  # the plan names the same pair
            assert by_class[r.target_class].index(prov["sources"][0]) < by_class[r.target_class].index(prov["sources"][1])
            assert prov["interpolation"]["kind"] == "circle"


def test_ablation_presets_share_pairs_lams_suffixes_and_noise(tiny):
    full_req, full = _generate("diff_ii", tiny)
    _, no_td = _generate("diff_ii.cl_si_se", tiny)
    _, si = _generate("diff_ii.cl_si", tiny)
    _, cl_td = _generate("diff_ii.cl_td", tiny)
    _, cl_only = _generate("diff_ii.cl_only", tiny)
    for a, b, c in zip(full, no_td, si, strict=True):
        assert a.provenance["seed"] == b.provenance["seed"] == c.provenance["seed"]
        assert a.provenance["sources"] == b.provenance["sources"] == c.provenance["sources"]
        if a.provenance["sources"]:
            assert a.provenance["interpolation"]["lam"] == b.provenance["interpolation"]["lam"]
            theta = a.provenance["interpolation"]["theta"]
            assert c.provenance["interpolation"]["lam"] == pytest.approx(
                a.provenance["interpolation"]["lam"] * theta / (2 * math.pi))  # the same u
        assert b.provenance["suffix"] is None and b.provenance["suffixed_steps"] == 0
    # the suffix stage changes the images (same start, same seed)
    assert any(not np.array_equal(a.image_array(), b.image_array()) for a, b in zip(full, no_td, strict=True))
    # cl_td and cl_only start from the same noise; cl_td's suffix equals the full method's
    assert [s.provenance["suffix"] for s in cl_td] == [s.provenance["suffix"] for s in full]
    assert all(s.provenance["suffixed_steps"] == 0 for s in cl_only)
    assert any(not np.array_equal(a.image_array(), b.image_array()) for a, b in zip(cl_td, cl_only, strict=True))


def test_split_ratio_zero_is_the_plain_prompt_throughout(tiny):
    _, zero = _generate("diff_ii", tiny, split_ratio=0.0)
    _, no_td = _generate("diff_ii.cl_si_se", tiny)
    for a, b in zip(zero, no_td, strict=True):
        assert np.array_equal(a.image_array(), b.image_array())


def test_same_seed_same_images_and_retry_seed_draws_again(tiny):
    requests, first = _generate("diff_ii", tiny)
    _, again = _generate("diff_ii", tiny)
    assert all(np.array_equal(a.image_array(), b.image_array()) for a, b in zip(first, again, strict=True))
    ctx = tiny[0]
    method = default_registry().create("diff_ii", {"suffix_source": "world", "num_inference_steps": 25})
    two = [r for r in requests if r.target_class == 0]
    retried = method.generate([dataclasses.replace(r, seed=r.seed + 1) for r in two], ctx)
    assert any(a.provenance["interpolation"] != b.provenance["interpolation"] for a, b in
               zip(first[:len(two)], retried, strict=True))


def test_vanilla_row_needs_no_artifact_and_uses_class_names(tiny):
    ctx, subset, _ = tiny
    method = default_registry().create("diff_ii.vanilla_t2i")
    assert method.artifacts(subset, ctx) == []
    requests = method.plan(subset, 2, seed=0)
    samples = method.generate(requests, dataclasses.replace(ctx, artifacts={}))
    assert samples[0].provenance["prompt"] == "a photo of a Tiny class 0 bird"
    assert samples[0].provenance["interpolation"] == {"kind": "noise"}


def test_suffix_file_placeholders_come_from_the_subset(tmp_path):
    few = _subset("few_shot", {"shots": 5, "seed": 0})
    assert suffix_path("/s/{dataset}/{shots}shot.txt", few) == "/s/tiny/5shot.txt"
    lt = _subset("long_tail", {"imbalance_factor": 100})
    assert suffix_path("/s/imb_{dataset}_{rho}/suffix.txt", lt) == "/s/imb_tiny_0.01/suffix.txt"
    with pytest.raises(ConfigError, match="does not have"):
        suffix_path("/s/{shots}.txt", lt)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        suffix_path("/s/{split}.txt", lt)
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "5shot.txt").write_text("on a branch\nin the snow\n")
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=TinySource())
    method = default_registry().create("diff_ii.cl_td", {"suffix_file": str(tmp_path / "{dataset}" / "{shots}shot.txt")})
    (spec,) = [s for s in method.artifacts(few, ctx) if s.kind == "suffixes"]
    assert spec.recipe["source"] == "file" and spec.recipe["suffixes"] == ["on a branch", "in the snow"]


def test_a_class_without_images_is_an_error_naming_it():
    from augbench.contract import ConfigError, MethodContext
    from augbench.registry import default_registry
    from augbench.testing import TinySource, tiny_profile, tiny_subset

    source = TinySource(per_class={"train": [2, 0, 1]})
    ctx = MethodContext(profile=tiny_profile("x"), source=source)
    method = default_registry().create("diff_ii", {"split_ratio": 0.3})
    with pytest.raises(ConfigError, match=repr(ctx.card.class_names[1])):
        method.plan(tiny_subset(source), None, 0, ctx=ctx)


# --- the method's image size, captioner parameters and models (issue 23) -------------------------------------

def test_the_methods_image_size_governs_pool_generation_and_single_image_classes(tmp_path):
    """image_size = 48 on the 32 px tiny profile: the pool is inverted at 48 px (another key) and every
    image, interpolated or (the one-image class) from noise, comes out 48 x 48, as generation.json says."""
    from PIL import Image

    from augbench.diffusion.inversion import INVERSION_KIND
    from augbench.synthetic.generate import read_manifest

    source = TinySource(per_class={"train": [3, 2, 1]})
    profile = tiny_profile(cached_tiny_sd_pipeline())
    subset = Subset(source.card.id, "train", "few_shot", {"shots": 5, "seed": 0}, tuple(source.samples("train")))
    params = {"suffix_source": "world", "num_inference_steps": 3, "expansion": 1.0}
    ctx = MethodContext(profile=profile, source=source)
    method = default_registry().create("diff_ii", {**params, "image_size": 48})
    default = default_registry().create("diff_ii", params)
    pool_spec = {s.kind: s for s in method.artifacts(subset, ctx)}[INVERSION_KIND]
    assert pool_spec.recipe["size"] == 48
    default_pool = {s.kind: s for s in default.artifacts(subset, ctx)}[INVERSION_KIND]
    assert default_pool.recipe["size"] == profile.image_size == 32
    out = generate_synthetic_set(method, source, subset, profile, 0, tmp_path / "set", batch_size=8,
                                 cache_dir=tmp_path / "cache")
    spec = json.loads((out / "generation.json").read_text())
    assert spec["params"]["image_size"] == 48
    rows = read_manifest(out)
    assert len(rows) == 6 and any(r["provenance"].get("single_image_class") for r in rows)
    for row in rows:
        with Image.open(out / row["file"]) as im:
            assert im.size == (48, 48)
        assert row["provenance"]["sampler"]["image_size"] == 48


def test_a_pool_of_another_size_is_refused_in_one_line(tiny):
    from augbench.diffusion.inversion import INVERSION_KIND, load_inversion_pool
    from augbench.methods.diff_ii import check_pool_size

    ctx, _, _ = tiny
    pool = load_inversion_pool(ctx.artifacts[INVERSION_KIND])  # 32 px: 16 x 16 latents
    pipe = type("Pipe", (), {"vae_scale_factor": 2})()
    check_pool_size(pool, pipe, 32)
    with pytest.raises(ConfigError, match=r"16x16 latents \(32 px\) but generation runs at 48 px"):
        check_pool_size(pool, pipe, 48)


def test_captioner_parameters_reach_the_suffix_recipe_from_the_config(tmp_path):
    few = _subset("few_shot", {"shots": 5, "seed": 0})
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=TinySource())
    lm = tmp_path / "lm"
    method = default_registry().create("diff_ii", {"suffix_source": "captioner", "captioner": str(tmp_path / "blip"),
                                                   "llm": "transformers", "llm_model": str(lm)})
    (spec,) = [s for s in method.artifacts(few, ctx) if s.kind == "suffixes"]
    assert (spec.recipe["captioner"], spec.recipe["llm"], spec.recipe["llm_model"]) == (
        str(tmp_path / "blip"), "transformers", str(lm))
    assert method.artifacts(few, ctx)[0].kind == "suffixes"  # first: a bad captioner fails before concept learning
    with pytest.raises(ConfigError, match="unknown suffix summariser llm = 'openia'.*did you mean 'openai'"):
        default_registry().create("diff_ii", {"llm": "openia"})
    with pytest.raises(ConfigError, match="only apply to suffix_source = 'captioner'"):
        default_registry().create("diff_ii", {"suffix_source": "world", "llm": "openai"})


def test_required_models_name_the_pipeline_and_the_captioners_models(tmp_path, monkeypatch):
    from augbench.diffusion.suffixes import CAPTIONER_DEFAULT, CAPTIONER_ENV, LLM_ENV

    monkeypatch.delenv(CAPTIONER_ENV, raising=False)
    monkeypatch.delenv(LLM_ENV["model"], raising=False)
    profile = tiny_profile(cached_tiny_sd_pipeline())
    sd15 = dataclasses.replace(profile, name="sd15")
    reg = default_registry()
    assert reg.create("diff_ii", {"suffix_source": "world"}).required_models(profile) == {"pipeline": profile.pipeline}
    assert reg.create("diff_ii.cl_si_se").required_models(sd15) == {"pipeline": profile.pipeline}  # no suffixes
    assert reg.create("diff_ii").required_models(sd15) == {  # auto on a non-embedded profile: the captioner
        "pipeline": profile.pipeline, "captioner": CAPTIONER_DEFAULT, "summariser:openai": "gpt-4"}
    local = reg.create("diff_ii", {"captioner": "~/blip", "llm": "transformers", "llm_model": str(tmp_path / "lm")})
    assert local.required_models(sd15) == {"pipeline": profile.pipeline, "captioner": str(Path("~/blip").expanduser()),
                                           "summariser:transformers": str(tmp_path / "lm")}

"""Concept learning as artifacts (augbench.diffusion.concepts): ``ti`` and ``lora_ti`` on a tiny random SD.

Both kinds are built once per module through ``augbench.run.artifacts.build_artifacts`` (the runner's
artifact stage) on a 3-class in-memory source, with the ``tiny`` recipes (3 steps), then checked:
reference file formats, untouched non-class embedding rows, LoRA only on attention projections, a
vanilla pipeline that generates byte-identical images before and after an adapted one was used, a
Diff-Mix-format folder (old ``LoRAAttnProcessor`` keys) imported and loaded through the same path,
and the leakage guard refusing an imported folder trained on other images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from augbench.cli.concepts import import_folder
from augbench.contract import ArtifactSpec, ConfigError, MethodContext, PipelineCache
from augbench.data.core import Subset
from augbench.diffusion.concepts import formats
from augbench.diffusion.concepts.adapted import concept_prompt, load_adapted_pipeline
from augbench.diffusion.concepts.recipes import RECIPES, concept_recipe
from augbench.diffusion.pipelines import load_warm_pipeline, pipeline_view, text_to_image
from augbench.run.artifacts import ArtifactError, artifact_key, build_artifacts
from augbench.run.seeding import make_generator
from augbench.run.store import Store
from augbench.testing import TinySource, cached_tiny_sd_pipeline, tiny_profile, tiny_subset

ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("concepts")
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()),
                        source=TinySource(per_class={"train": [3, 2, 1], "test": 1}), pipelines=PipelineCache())
    subset = tiny_subset(ctx.source)
    rng_before = torch.get_rng_state()
    specs = [ArtifactSpec("lora_ti", concept_recipe("lora_ti", ctx.profile)),
             ArtifactSpec("ti", concept_recipe("ti", ctx.profile))]
    artifacts = build_artifacts(specs, subset, ctx, Store(tmp / "store"))
    assert torch.equal(rng_before, torch.get_rng_state()), "concept learning touched the global RNG"
    ctx.artifacts = artifacts
    return ctx, subset, artifacts, tmp


def _images(warm, prompts, seed=0):
    view = pipeline_view(warm, "dpmsolver++")
    return text_to_image(view, warm.embeddings.get(prompts), warm.embeddings.get([""] * len(prompts)),
                         [make_generator(seed + i) for i in range(len(prompts))], num_inference_steps=2,
                         guidance_scale=7.5, height=32, width=32)


def test_both_kinds_write_the_reference_formats(built):
    ctx, subset, artifacts, _ = built
    lora = artifacts["lora_ti"]
    assert {formats.LORA_FILE, formats.TI_EMBEDS_FILE} <= set(lora.files)
    assert lora.trained_on_ids == tuple(subset.image_ids) and not lora.foreign
    state = load_file(str(lora.path(formats.LORA_FILE)))
    assert state and all(k.startswith("unet.") and ".lora" in k for k in state)
    embeds = torch.load(lora.path(formats.TI_EMBEDS_FILE), weights_only=True)
    assert set(embeds) == {"learned_embeds_dict", "name2placeholder", "placeholder2name"}
    assert list(embeds["learned_embeds_dict"]) == ["<class_0>", "<class_1>", "<class_2>"]
    assert embeds["name2placeholder"]["Tiny_class_1"] == "<class_1>"
    assert embeds["placeholder2name"]["<class_2>"] == "Tiny_class_2"
    assert all(v.shape == (32,) for v in embeds["learned_embeds_dict"].values())

    ti = artifacts["ti"]
    assert formats.TI_FILE in ti.files and formats.LORA_FILE not in ti.files
    vectors = torch.load(ti.path(formats.TI_FILE), weights_only=True)
    assert list(vectors) == ["<tiny_class_0>", "<tiny_class_1>", "<tiny_class_2>"]
    # the tokens moved away from their initialisation (the word "the") during training
    base = load_warm_pipeline(ctx).pipe
    the = base.text_encoder.get_input_embeddings().weight[base.tokenizer("the", add_special_tokens=False).input_ids[0]]
    assert all(not torch.allclose(v, the) for v in vectors.values())


def test_only_class_rows_and_attention_loras_change(built):
    ctx, _, artifacts, _ = built
    vanilla = load_warm_pipeline(ctx).pipe
    base_rows = vanilla.text_encoder.get_input_embeddings().weight
    for slot in ("lora_ti", "ti"):
        adapted = load_adapted_pipeline(ctx, artifacts[slot]).pipe
        rows = adapted.text_encoder.get_input_embeddings().weight
        assert rows.shape[0] == base_rows.shape[0] + 3
        assert torch.equal(rows[: base_rows.shape[0]], base_rows)  # non-class rows untouched
    # LoRA: exactly the q/k/v/out projections of every attention of the UNet, nothing else
    state = load_file(str(artifacts["lora_ti"].path(formats.LORA_FILE)))
    modules = {k.split(".lora")[0].removeprefix("unet.") for k in state}
    assert all(m.endswith(ATTENTION_PROJECTIONS) for m in modules)
    from diffusers.models.attention_processor import Attention

    attentions = [n for n, m in vanilla.unet.named_modules() if isinstance(m, Attention)]
    assert modules == {f"{a}.{p}" for a in attentions for p in ATTENTION_PROJECTIONS}
    assert any(float(v.abs().max()) > 0 for k, v in state.items() if "lora.up" in k or "lora_B" in k)


def test_vanilla_pipeline_is_unchanged_by_adapted_ones(built):
    ctx, _, artifacts, _ = built
    card = ctx.require_card()
    vanilla = load_warm_pipeline(ctx)
    prompts = ["a photo of a Tiny class 0 bird", "a photo of a Tiny class 2 bird"]
    before = _images(vanilla, prompts)
    for slot in ("lora_ti", "ti"):
        warm = load_warm_pipeline(ctx, artifact=slot)
        assert warm is load_adapted_pipeline(ctx, artifacts[slot])  # one warm pipeline per artifact
        assert warm.pipe.unet is not vanilla.pipe.unet and warm.pipe.text_encoder is not vanilla.pipe.text_encoder
        assert warm.pipe.tokenizer is not vanilla.pipe.tokenizer
        adapted = _images(warm, [concept_prompt(warm, card, 0), concept_prompt(warm, card, 2)])
        assert not np.array_equal(adapted, before)
    assert np.array_equal(before, _images(load_warm_pipeline(ctx), prompts))
    assert len(vanilla.pipe.tokenizer) == 49408


def test_concept_prompts_use_the_learned_tokens(built):
    ctx, _, artifacts, _ = built
    card = ctx.require_card()
    lora, ti = load_adapted_pipeline(ctx, artifacts["lora_ti"]), load_adapted_pipeline(ctx, artifacts["ti"])
    assert lora.class_tokens == {0: "<class_0>", 1: "<class_1>", 2: "<class_2>"}
    assert concept_prompt(lora, card, 1) == "a photo of a <class_1> bird"
    assert concept_prompt(ti, card, 2, "a photo of a {token}") == "a photo of a <tiny_class_2>"
    ids = lora.pipe.tokenizer(concept_prompt(lora, card, 1)).input_ids
    assert lora.pipe.tokenizer.convert_tokens_to_ids("<class_1>") in ids


def _dm_folder(src: Path, dst: Path) -> Path:
    """A Diff-Mix-format copy: diffusers-0.25 ``LoRAAttnProcessor`` keys, class-name keys with underscores."""
    dst.mkdir()
    state = load_file(str(src / formats.LORA_FILE))
    old = {}
    for k, v in state.items():
        module, rest = k.split(".lora.")  # "unet.<attention>.to_q", "down.weight"
        attn, proj = (module.removesuffix(".to_out.0"), "to_out") if module.endswith(".to_out.0") \
            else module.rsplit(".", 1)
        old[f"{attn}.processor.{proj}_lora.{rest}"] = v
    save_file(old, str(dst / formats.LORA_FILE))
    # tokens reached through name2placeholder only (class names with spaces), saved as Diff-II names the file
    embeds = torch.load(src / formats.TI_EMBEDS_FILE, weights_only=True)
    tokens = {f"<class_{i}>": f"<dm_{i}>" for i in range(3)}
    torch.save({"learned_embeds_dict": {tokens[t]: v for t, v in embeds["learned_embeds_dict"].items()},
                "name2placeholder": {n.replace("_", " "): tokens[t] for n, t in embeds["name2placeholder"].items()},
                "placeholder2name": {tokens[t]: n.replace("_", " ") for t, n in embeds["placeholder2name"].items()}},
               dst / "learned_embeds-steps-35000.bin")
    return dst


def test_an_imported_diff_mix_folder_loads_like_the_built_one(built):
    ctx, subset, artifacts, tmp = built
    folder = _dm_folder(artifacts["lora_ti"].folder, tmp / "dm_checkpoint")
    assert any(".processor.to_out_lora.down" in k for k in load_file(str(folder / formats.LORA_FILE)))
    with pytest.raises(ArtifactError, match="--trained-on MANIFEST"):
        import_folder(folder, "lora_ti", None)
    manifest = subset.write(tmp / "train_manifest.json")
    import_folder(folder, "lora_ti", manifest)
    (imported,) = build_artifacts([ArtifactSpec("lora_ti", {}, path=str(folder))], subset, ctx,
                                  Store(tmp / "store")).values()
    assert imported.key.startswith("imported:") and imported.trained_on_ids == tuple(subset.image_ids)
    card = ctx.require_card()
    warm_dm, warm_built = load_adapted_pipeline(ctx, imported), load_adapted_pipeline(ctx, artifacts["lora_ti"])
    assert warm_dm.class_tokens == {0: "<dm_0>", 1: "<dm_1>", 2: "<dm_2>"}
    dm = _images(warm_dm, [concept_prompt(warm_dm, card, c) for c in range(3)])
    ours = _images(warm_built, [concept_prompt(warm_built, card, c) for c in range(3)])
    np.testing.assert_allclose(dm.astype(int), ours.astype(int), atol=1)  # same weights, other key format


def test_the_leakage_guard_refuses_an_import_trained_on_other_images(built):
    ctx, subset, artifacts, tmp = built
    folder = tmp / "leaky_checkpoint"
    shutil.copytree(artifacts["lora_ti"].folder, folder)
    (folder / "artifact.json").unlink()
    full = Subset(subset.dataset, "train+test", "full", {}, (*subset.samples, *ctx.source.samples("test")))
    import_folder(folder, "lora_ti", full.write(tmp / "full_manifest.json"))
    spec = ArtifactSpec("lora_ti", {}, path=str(folder))
    with pytest.raises(ArtifactError, match="allow_foreign_artifacts") as err:
        build_artifacts([spec], subset, ctx, Store(tmp / "store"))
    assert full.manifest_hash in str(err.value) and subset.manifest_hash in str(err.value)
    (flagged,) = build_artifacts([spec], subset, ctx, Store(tmp / "store"), allow_foreign=True).values()
    assert flagged.foreign and flagged.foreign_ids[0].startswith("test/")


def test_bad_input_is_named(built):
    ctx, subset, artifacts, tmp = built
    with pytest.raises(ConfigError, match="lora_ti"):
        artifact_key(ArtifactSpec("lora_tii", {}), subset, "x")
    with pytest.raises(ConfigError, match=r"'stepz'.*did you mean 'steps'.*valid keys: .*batch_size"):
        concept_recipe("lora_ti", "tiny", stepz=3)
    with pytest.raises(ConfigError, match="valid keys"):
        build_artifacts([ArtifactSpec("ti", {**concept_recipe("ti", "tiny"), "rank": 4})], subset, ctx,
                        Store(tmp / "bad"))
    with pytest.raises(ConfigError, match="recipes exist for"):
        concept_recipe("ti", "sd21")
    folder = tmp / "corrupt_checkpoint"
    shutil.copytree(artifacts["ti"].folder, folder)
    (folder / formats.TI_FILE).write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match=formats.TI_FILE):
        build_artifacts([ArtifactSpec("ti", {}, path=str(folder))], subset, ctx, Store(tmp / "store"))
    with pytest.raises(ValueError, match=formats.TI_FILE):
        formats.read_token_embeddings("ti", folder, ["a"])


def test_same_recipe_same_files(built):
    ctx, subset, artifacts, tmp = built
    again = build_artifacts([ArtifactSpec("lora_ti", concept_recipe("lora_ti", "tiny"))], subset, ctx,
                            Store(tmp / "second_store"))["lora_ti"]
    assert not again.reused and again.key == artifacts["lora_ti"].key
    assert {k: v for k, v in again.files.items() if k != "losses.json"} == \
        {k: v for k, v in artifacts["lora_ti"].files.items() if k != "losses.json"}


def test_long_tail_subsets_are_sampled_class_balanced():
    from augbench.diffusion.concepts.training import batch_sampler

    labels = torch.tensor([0] * 8 + [1] * 2 + [2])
    draw = batch_sampler(labels, "auto", 3000, make_generator(0))
    assert draw.balanced
    counts = torch.bincount(labels[draw()], minlength=3) / 3000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.04)  # weights 1/N_c
    epochs = batch_sampler(labels, "uniform", 11, make_generator(0))
    assert not epochs.balanced and sorted(epochs().tolist()) == list(range(11))  # shuffled epochs
    assert not batch_sampler(torch.tensor([0, 0, 1, 1]), "auto", 2, make_generator(0)).balanced
    with pytest.raises(ConfigError, match="sampler"):
        batch_sampler(labels, "weighted", 2, make_generator(0))


def test_recipes_cover_both_kinds_and_the_reference_values():
    assert set(RECIPES) == {"ti", "lora_ti"}
    dm = concept_recipe("lora_ti", "sd15")
    assert (dm["steps"], dm["rank"], dm["lr"], dm["ti_lr"], dm["resolution"], dm["init_token_id"]) == \
        (35_000, 10, 5e-5, 5e-5, 512, 42170)
    assert dm["caption"] == "a photo of a {token} {meta}" and dm["grad_clip"] == 1.0
    daf = concept_recipe("ti", "sd15")
    assert (daf["steps"], daf["batch_size"], daf["lr"], daf["init_word"]) == (1000, 4, 2e-3, "the")
    assert concept_recipe("lora_ti", "embedded")["resolution"] == 64


def test_cli_import_without_a_manifest_exits_2_and_show_prints(built, capsys):
    from augbench.cli.main import main

    ctx, subset, artifacts, tmp = built
    folder = tmp / "cli_checkpoint"
    shutil.copytree(artifacts["lora_ti"].folder, folder)
    (folder / "artifact.json").unlink()
    assert main(["concepts", "import", str(folder), "--kind", "lora_ti"]) == 2
    assert "--trained-on MANIFEST" in capsys.readouterr().err
    key = artifacts["ti"].key
    assert main(["concepts", "show", key[:8], "--cache-dir", str(tmp / "store"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "ti" and shown["trained_on"]["size"] == len(subset.samples)
    assert set(shown["files"]) == set(artifacts["ti"].files)


def test_cli_build_trains_on_the_cells_training_part(mini, tmp_path, capsys):
    """``concepts build`` keys and trains exactly as the runner's artifact stage for the cell."""
    from augbench.cli.main import main
    from augbench.data import open_dataset
    from augbench.run.cells import Cell
    from augbench.run.profiles import get_profile
    from augbench.run.stages import subset_stage
    from augbench.run.suites import Suite

    _, cards, _ = mini
    argv = ["concepts", "build", "--kind", "ti", "--dataset", "minibirds", "--shots", "5", "--seed", "0",
            "--set", "steps=1", "--set", "batch_size=1", "--cache-dir", str(tmp_path), "--datasets-dir", str(cards),
            "--device", "cpu", "--json"]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out)
    assert not info["reused"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["reused"]
    source = open_dataset("minibirds", datasets_dir=cards)
    suite = Suite(name="s", protocol="few_shot", datasets=("minibirds",), methods=(), seeds=(0,))
    train_part = subset_stage(Cell("s", "embedded", "minibirds", "few_shot", (("shots", 5),), "m", 0), suite,
                              source).train_part
    spec = ArtifactSpec("ti", concept_recipe("ti", "embedded", steps=1, batch_size=1))
    assert info["key"] == artifact_key(spec, train_part, get_profile("embedded").pipeline_key)
    # suites and `concepts build` both default to last_epoch: the whole 4 × 5-shot subset is the training part
    assert info["trained_on"] == {"hash": train_part.manifest_hash, "size": 20}
    meta = json.loads((Path(info["folder"]) / "artifact.json").read_text())
    assert meta["trained_on"]["ids"] == train_part.image_ids
    assert main([*argv[:2], "--kind", "lorati", *argv[4:]]) == 2
    assert "did you mean 'lora_ti'" in capsys.readouterr().err

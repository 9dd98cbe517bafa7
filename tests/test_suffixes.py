"""Diff-II suffix sources (METHODS_SPEC §3.10.4): the ``suffixes`` artifact from a file, the world's captions
or BLIP + a text model; tiny BLIP built from a config, the text model replaced by a recorded fake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from augbench.contract import ConfigError, MethodContext
from augbench.data import open_dataset
from augbench.data.core import Subset
from augbench.diffusion.suffixes import (
    LLM_ENV,
    SUMMARISERS,
    parse_llm_suffixes,
    parse_suffix_text,
    read_suffixes,
    sample_captions,
    suffix_prefix,
    suffix_spec,
    summary_messages,
    world_suffixes,
)
from augbench.protocols.few_shot import few_shot
from augbench.run.artifacts import artifact_key, build_artifacts
from augbench.run.profiles import get_profile
from augbench.run.store import Store
from augbench.testing import TinySource, block_network, tiny_card, tiny_subset
from augbench.world.render import CONTEXTS

# --- file ------------------------------------------------------------------------------------------------


def test_last_line_without_newline_keeps_its_last_character(tmp_path):
    # Diff-II's loader did line[:-1]: "in a river at night" without "\n" would become "in a river at nigh"
    path = tmp_path / "5shot.txt"
    path.write_bytes(b"on a branch\r\nflying over a city\nin a river at night")
    spec = suffix_spec("file", path=str(path))
    assert spec.kind == "suffixes"
    assert spec.recipe["suffixes"] == ["on a branch", "flying over a city", "in a river at night"]
    assert parse_suffix_text("  on a branch \n") == ["on a branch"]


@pytest.mark.parametrize("text, match", [("", "empty"), ("\n\n", "empty"), ("on a branch\n\nin water\n", "line.* 2"),
                                         ("on a branch\n   \n", "line.* 2")])
def test_empty_files_and_blank_lines_are_config_errors_saying_what_is_expected(tmp_path, text, match):
    path = tmp_path / "suffix.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as err:
        suffix_spec("file", path=str(path))
    assert "one" in str(err.value) and "suffix" in str(err.value)


def test_missing_file_and_missing_path_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*one suffix per line"):
        suffix_spec("file", path=str(tmp_path / "nope.txt"))
    with pytest.raises(ConfigError, match="suffix_file"):
        suffix_spec("file")
    with pytest.raises(ConfigError, match="unknown suffix source 'gpt'.*world, file, captioner"):
        suffix_spec("gpt")
    with pytest.raises(ConfigError, match="only read with source = 'file'"):
        suffix_spec("world", path=str(tmp_path / "x.txt"))
    with pytest.raises(ConfigError, match="takes no option"):
        suffix_spec("world", llm="openai")


def test_the_files_sha256_is_in_the_key_and_its_location_is_not(tmp_path):
    subset = tiny_subset(TinySource())
    a, b = tmp_path / "a" / "suffix.txt", tmp_path / "b" / "suffix.txt"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("on a branch\nin water\n", encoding="utf-8")
    spec_a, spec_b = suffix_spec("file", path=str(a)), suffix_spec("file", path=str(b))
    assert len(spec_a.recipe["sha256"]) == 64
    assert artifact_key(spec_a, subset, "sd") == artifact_key(spec_b, subset, "sd")
    b.write_text("on a branch\nin waters\n", encoding="utf-8")  # one edited character regenerates
    assert artifact_key(spec_a, subset, "sd") != artifact_key(suffix_spec("file", path=str(b)), subset, "sd")


def test_file_artifact_round_trips_through_the_store(tmp_path):
    path = tmp_path / "suffix.txt"
    path.write_text("on a branch\nflying over water", encoding="utf-8")
    source = TinySource()
    ctx = MethodContext(profile=get_profile("embedded"), source=source)
    artifact = build_artifacts([suffix_spec("file", path=str(path))], tiny_subset(source), ctx,
                               Store(tmp_path / "store"))["suffixes"]
    assert read_suffixes(artifact) == ["on a branch", "flying over water"]
    origin = json.loads(artifact.path("suffixes.json").read_text())
    assert origin["source"] == "file" and origin["sha256"] == artifact.recipe["sha256"]
    assert set(artifact.files) == {"suffixes.txt", "suffixes.json"}


# --- world ------------------------------------------------------------------------------------------------


def test_world_suffixes_are_the_scene_phrases_most_frequent_first():
    captions = ["a photo of a red bird, perched on a branch", "a small bird with a long tail, flying over water",
                "a picture of a bird, flying over water", "an image of a bird, standing on rocks"]
    assert world_suffixes(captions) == ["flying over water", "perched on a branch", "standing on rocks"]
    assert world_suffixes(captions, max_suffixes=2) == ["flying over water", "perched on a branch"]


def test_world_source_reads_the_cells_own_training_captions(tmp_path):
    source = open_dataset("toybirds")
    subset = few_shot(source, 5, seed=0)
    ctx = MethodContext(profile=get_profile("embedded"), source=source)
    spec = suffix_spec("world", profile=ctx.profile)
    assert spec.recipe["oracle_captioner"] is True
    artifact = build_artifacts([spec], subset, ctx, Store(tmp_path / "store"))["suffixes"]
    suffixes = read_suffixes(artifact)
    contexts = [s.attrs["context"] for s in subset.samples]
    assert set(suffixes) == set(contexts) and set(suffixes) <= set(CONTEXTS) and len(suffixes) <= 10
    counts = [contexts.count(s) for s in suffixes]
    assert counts == sorted(counts, reverse=True)
    # a tiny subset of three images gives only its own scenes
    small = Subset(subset.dataset, subset.split, "manual", {}, subset.samples[:3])
    own = read_suffixes(build_artifacts([spec], small, ctx, Store(tmp_path / "store"))["suffixes"])
    assert set(own) == {s.attrs["context"] for s in small.samples}
    assert json.loads(artifact.path("suffixes.json").read_text())["oracle_captioner"] is True


class UncaptionedSource(TinySource):
    captions = None  # a real dataset: no captions


def test_world_source_on_a_dataset_without_captions_says_what_to_use(tmp_path):
    source = UncaptionedSource()
    ctx = MethodContext(profile=get_profile("embedded"), source=source)
    with pytest.raises(ConfigError, match="no(ne)? .*captions|has none.*'file'"):
        build_artifacts([suffix_spec("world")], tiny_subset(source), ctx, Store(tmp_path))


# --- captioner ----------------------------------------------------------------------------------------------


def save_tiny_blip(path: Path) -> Path:
    """A tiny random ``BlipForConditionalGeneration`` + ``BlipProcessor`` (BERT word-piece vocabulary of 16)."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "bird", "on", "branch", "water", "flying",
             "over", "photo", "of", "the"]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(path / "vocab.txt"), bos_token="[DEC]")
    config = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=5, sep_token_id=3,
                         eos_token_id=3, pad_token_id=0),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BlipForConditionalGeneration(config).save_pretrained(path)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> Path:
    return save_tiny_blip(tmp_path_factory.mktemp("blip") / "blip")


class FakeSummariser:
    """Records what it was asked and answers like a chat model (a preamble, numbered lines, a remark)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.calls: list[tuple[list[dict], dict]] = []

    def __call__(self, messages, recipe):
        self.calls.append((messages, dict(recipe)))
        p = self.prefix
        return (f"Here are the descriptions:\n1. {p.capitalize()} perched on a branch.\n"
                f"2. {p} flying with a city skyline behind\n- \"{p} in a river at night\"\n"
                "These cover the captions.")


def test_captioner_captions_the_training_images_and_caches_the_summary(tmp_path, tiny_blip, monkeypatch):
    block_network(monkeypatch)
    fake = FakeSummariser("a photo of an aircraft")
    monkeypatch.setitem(SUMMARISERS, "fake", fake)
    source = TinySource(tiny_card(meta="aircraft"), per_class={"train": 4})
    subset = tiny_subset(source)
    ctx = MethodContext(profile=get_profile("embedded"), source=source)
    spec = suffix_spec("captioner", captioner=str(tiny_blip), llm="fake", llm_model="fake-1", max_captions=5)
    assert not spec.recipe.get("oracle_captioner")
    store = Store(tmp_path / "store")
    artifact = build_artifacts([spec], subset, ctx, store)["suffixes"]
    assert read_suffixes(artifact) == ["perched on a branch", "flying with a city skyline behind",
                                       "in a river at night"]
    (messages, recipe), = fake.calls
    prompt = messages[-1]["content"]
    assert "a photo of an aircraft" in prompt and "at most 10" in prompt
    origin = json.loads(artifact.path("suffixes.json").read_text())
    assert len(origin["captions"]) == 12 and origin["sent_captions"] == 5 and origin["llm_model"] == "fake-1"
    assert sum(f"- {c}" in prompt for c in set(origin["captions"])) >= 1
    # the store entry is the cache: the text model is never asked again for the same recipe
    again = build_artifacts([spec], subset, ctx, store)["suffixes"]
    assert again.reused and again.key == artifact.key and len(fake.calls) == 1
    other = suffix_spec("captioner", captioner=str(tiny_blip), llm="fake", llm_model="fake-2", max_captions=5)
    assert build_artifacts([other], subset, ctx, store)["suffixes"].key != artifact.key and len(fake.calls) == 2


def test_openai_summariser_posts_the_messages_and_reads_the_answer(tmp_path, tiny_blip, monkeypatch):
    import io
    import urllib.error
    import urllib.request

    block_network(monkeypatch)
    source = TinySource(per_class={"train": 1})
    ctx = MethodContext(profile=get_profile("embedded"), source=source)
    spec = suffix_spec("captioner", captioner=str(tiny_blip), llm_model="gpt-test")
    assert spec.recipe["llm"] == "openai"
    monkeypatch.delenv(LLM_ENV["url"], raising=False)
    with pytest.raises(ConfigError, match=LLM_ENV["url"]):
        build_artifacts([spec], tiny_subset(source), ctx, Store(tmp_path / "a"))

    sent = []

    def refused(request, timeout):
        sent.append(request)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setenv(LLM_ENV["url"], "http://llm.invalid/v1")
    monkeypatch.setenv(LLM_ENV["key"], "sk-test")
    monkeypatch.setattr(urllib.request, "urlopen", refused)
    with pytest.raises(ConfigError, match="unreachable.*suffix_source = 'file'"):
        build_artifacts([spec], tiny_subset(source), ctx, Store(tmp_path / "b"))
    assert not list((tmp_path / "b").rglob("suffixes.txt"))  # nothing cached after a failure
    request = sent[0]
    assert request.full_url == "http://llm.invalid/v1/chat/completions"
    assert request.get_header("Authorization") == "Bearer sk-test"
    body = json.loads(request.data)
    assert body["model"] == "gpt-test" and "a photo of a bird" in body["messages"][-1]["content"]

    answer = {"choices": [{"message": {"content": "1. a photo of a bird on a pier"}}]}
    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout: io.BytesIO(json.dumps(answer).encode()))
    artifact = build_artifacts([spec], tiny_subset(source), ctx, Store(tmp_path / "b"))["suffixes"]
    assert read_suffixes(artifact) == ["on a pier"]
    assert "sk-test" not in artifact.path("suffixes.json").read_text()


def test_llm_model_name_comes_from_the_option_or_the_environment(monkeypatch):
    monkeypatch.setenv(LLM_ENV["model"], "my-model")
    assert suffix_spec("captioner").recipe["llm_model"] == "my-model"
    assert suffix_spec("captioner", llm_model="gpt-4o").recipe["llm_model"] == "gpt-4o"
    assert "KEY" not in json.dumps(suffix_spec("captioner").recipe)  # credentials never enter a key


def test_response_parsing_keeps_prefixed_lines_only():
    prefix = suffix_prefix("bird")
    assert prefix == "a photo of a bird" and suffix_prefix("aircraft") == "a photo of an aircraft"
    answer = ("Sure!\n1) A photo of a bird on a branch.\n2. a photo of a birdhouse in a garden\n"
              "* a photo of a bird on a branch\n- 'a photo of a bird flying over a lake',\n"
              "**a photo of a bird in the snow**")
    assert parse_llm_suffixes(answer, prefix) == ["on a branch", "flying over a lake", "in the snow"]
    assert parse_llm_suffixes(answer, prefix, max_suffixes=1) == ["on a branch"]
    with pytest.raises(ConfigError, match="no line starting with 'a photo of a bird'"):
        parse_llm_suffixes("I cannot help with that.", prefix)


def test_prompt_lists_captions_and_three_examples_and_sampling_is_seeded():
    messages = summary_messages(["a bird on a tree", "a bird in water"], "a photo of a bird", 10)
    text = messages[-1]["content"]
    assert "- a bird on a tree" in text and "- a bird in water" in text
    assert "a photo of a bird on a branch" in text and "a photo of a bird in a river at night" in text
    captions = [f"c{i}" for i in range(300)]
    first = sample_captions(captions, 200, seed=0)
    assert len(first) == 200 == len(set(first)) and first == sample_captions(captions, 200, seed=0)
    assert first != sample_captions(captions, 200, seed=1)
    assert sample_captions(captions[:5], 200, seed=0) == captions[:5]


def test_a_local_causal_lm_summarises_from_a_folder(tmp_path, monkeypatch):
    """``llm = "transformers"``: AutoTokenizer + AutoModelForCausalLM from ``llm_model`` (a tiny random GPT-2
    with the CLIP BPE tokenizer here), greedy, only the continuation returned."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from augbench.diffusion.suffixes import _summarise_transformers
    from augbench.diffusion.tokenizer import build_clip_tokenizer

    block_network(monkeypatch)
    folder = tmp_path / "lm"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config(vocab_size=49408, n_embd=16, n_layer=1, n_head=2, n_positions=2048)).save_pretrained(
            folder)
    build_clip_tokenizer().save_pretrained(folder)
    spec = suffix_spec("captioner", llm="transformers", llm_model=str(folder), max_new_tokens=4)
    messages = summary_messages(["a bird on a branch"], "a photo of a bird")
    answer = _summarise_transformers(messages, spec.recipe)
    assert isinstance(answer, str) and "Summarise" not in answer  # the continuation, not the prompt
    assert answer == _summarise_transformers(messages, spec.recipe)  # greedy: reproducible
    with pytest.raises(ConfigError, match="needs llm_model"):
        suffix_spec("captioner", llm="transformers")


# --- the captioner's models are checked before any work (issue 23) ----------------------------------------

class CountingSource(TinySource):
    """A tiny source that counts decoded images: a check that fails early decodes none."""

    loaded = 0

    def load_image(self, image_id):
        type(self).loaded += 1
        return super().load_image(image_id)


def _fails_before_captioning(tmp_path, spec, match, profile="embedded"):
    CountingSource.loaded = 0
    source = CountingSource(per_class={"train": 2})
    ctx = MethodContext(profile=get_profile(profile), source=source)
    with pytest.raises(ConfigError, match=match) as err:
        build_artifacts([spec], tiny_subset(source), ctx, Store(tmp_path / "store"))
    assert CountingSource.loaded == 0 and "\n" not in str(err.value)
    return str(err.value)


def test_a_missing_or_wrong_captioner_fails_before_any_image_is_captioned(tmp_path, tiny_blip, monkeypatch):
    from augbench.diffusion.suffixes import CAPTIONER_ENV, captioner_problem

    block_network(monkeypatch)
    monkeypatch.setitem(SUMMARISERS, "fake", FakeSummariser("a photo of a bird"))
    missing = suffix_spec("captioner", captioner=str(tmp_path / "no-blip"), llm="fake", llm_model="m")
    text = _fails_before_captioning(tmp_path / "a", missing, "BLIP captioner folder .*no-blip does not exist")
    assert CAPTIONER_ENV in text and "suffix_source = 'file'" in text
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "config.json").write_text(json.dumps({"model_type": "clip", "architectures": ["CLIPModel"]}))
    wrong = suffix_spec("captioner", captioner=str(clip), llm="fake", llm_model="m")
    _fails_before_captioning(tmp_path / "b", wrong, "holds a clip model, not BLIP")
    # a hub id: fine when it may be downloaded; local files only needs it in the Hugging Face cache
    assert captioner_problem("augbench-tests/no-such-blip", local_files_only=False) is None
    assert "not in the Hugging Face cache" in captioner_problem("augbench-tests/no-such-blip")
    assert captioner_problem(str(tiny_blip)) is None


def test_an_unreachable_summariser_fails_before_any_image_is_captioned(tmp_path, tiny_blip, monkeypatch):
    block_network(monkeypatch)
    monkeypatch.delenv(LLM_ENV["url"], raising=False)
    openai = suffix_spec("captioner", captioner=str(tiny_blip), llm_model="gpt-test")
    _fails_before_captioning(tmp_path / "a", openai, f"{LLM_ENV['url']}.*llm = 'transformers'")
    local = suffix_spec("captioner", captioner=str(tiny_blip), llm="transformers", llm_model=str(tmp_path / "no-lm"))
    _fails_before_captioning(tmp_path / "b", local, "no-lm has no config.json")


def test_diff_ii_fails_on_its_captioner_before_concept_learning(tmp_path, monkeypatch):
    from augbench.registry import default_registry
    from augbench.testing import cached_tiny_sd_pipeline, tiny_profile

    block_network(monkeypatch)
    monkeypatch.delenv(LLM_ENV["url"], raising=False)
    source = TinySource(per_class={"train": 2})
    subset = Subset(source.card.id, "train", "few_shot", {"shots": 2, "seed": 0}, tuple(source.samples("train")))
    ctx = MethodContext(profile=tiny_profile(cached_tiny_sd_pipeline()), source=source)
    method = default_registry().create("diff_ii", {"suffix_source": "captioner", "split_ratio": 0.3,
                                                   "captioner": str(tmp_path / "blip")})
    store = Store(tmp_path / "store")
    both = "BLIP captioner folder .* does not exist.*; and the openai suffix summariser"
    with pytest.raises(ConfigError, match=both):
        build_artifacts(method.artifacts(subset, ctx), subset, ctx, store)
    assert not list(store.root.rglob("lora_ti*")) and not list(store.root.rglob("*.safetensors"))


def test_captioner_models_are_the_roles_the_models_check_knows(tmp_path, monkeypatch):
    from augbench.diffusion.suffixes import CAPTIONER_DEFAULT, CAPTIONER_ENV, captioner_models

    monkeypatch.delenv(CAPTIONER_ENV, raising=False)
    monkeypatch.delenv(LLM_ENV["model"], raising=False)
    assert captioner_models() == {"captioner": CAPTIONER_DEFAULT, "summariser:openai": "gpt-4"}
    monkeypatch.setenv(CAPTIONER_ENV, str(tmp_path / "blip"))
    assert captioner_models(llm="transformers", llm_model="/m/lm") == {"captioner": str(tmp_path / "blip"),
                                                                       "summariser:transformers": "/m/lm"}
    monkeypatch.setitem(SUMMARISERS, "fake", FakeSummariser("a photo of a bird"))
    assert set(captioner_models(llm="fake", llm_model="x")) == {"captioner"}

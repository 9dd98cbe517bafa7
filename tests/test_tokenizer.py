"""The offline CLIP tokenizer equals open_clip's SimpleTokenizer (benchmark/tokenizer.py)."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

from augbench.diffusion.tokenizer import (
    BOS_TOKEN,
    EOS_TOKEN,
    VOCAB_SIZE,
    build_clip_tokenizer,
    write_clip_vocab,
)

PROMPTS = [
    "a photo of a Black footed Albatross bird",
    "a photo of a F-16A B aircraft",
    "A PHOTO OF a   Samoyed pet, perched on a branch.",
    "a photo of a red-winged blackbird flying over water at 3 pm",
    "a phot of a <class_7> bird",
    "it's a bird's nest; they've seen 12 birds!",
    "Boeing 737-800",
    "café naïve",
    "",
    "a",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_clip_tokenizer(cache_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def simple():
    return SimpleTokenizer()


def test_vocab_equals_simple_tokenizer(tmp_path, simple):
    folder = write_clip_vocab(tmp_path / "v")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == VOCAB_SIZE == 49408
    assert vocab[BOS_TOKEN] == 49406 and vocab[EOS_TOKEN] == 49407
    # open_clip names the specials differently but gives them the same ids.
    expected = dict(simple.encoder)
    expected[BOS_TOKEN] = expected.pop("<start_of_text>")
    expected[EOS_TOKEN] = expected.pop("<end_of_text>")
    assert vocab == expected
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    assert len(merges) - 1 == 49152 - 256 - 2
    assert [tuple(m.split()) for m in merges[1:]] == sorted(simple.bpe_ranks, key=simple.bpe_ranks.get)


def test_files_are_cached_and_reused(tmp_path):
    folder = write_clip_vocab(tmp_path / "v")
    stamp = (folder / "vocab.json").stat().st_mtime_ns
    assert write_clip_vocab(tmp_path / "v") == folder
    assert (folder / "vocab.json").stat().st_mtime_ns == stamp


def test_encode_matches_simple_tokenizer(tok, simple):
    for text in PROMPTS:
        ours = tok(text, add_special_tokens=False).input_ids
        assert ours == simple.encode(text), text


def test_padded_ids_match_open_clip_tokenize(tok):
    batch = tok(PROMPTS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
    ref = open_clip.tokenize(PROMPTS)
    assert batch.input_ids.shape == ref.shape == (len(PROMPTS), 77)
    # Same padding positions; open_clip pads with id 0, SD-style tokenizers with <|endoftext|>.
    assert torch.equal(batch.attention_mask == 0, ref == 0)
    assert torch.equal(batch.input_ids.masked_fill(batch.attention_mask == 0, 0), ref)
    assert (batch.input_ids[batch.attention_mask == 0] == tok.pad_token_id).all()
    assert tok.pad_token_id == 49407


def test_truncation_to_context_length(tok):
    long = [" ".join(["bird"] * 100), "a photo of " + "very " * 80 + "small bird"]
    ids = tok(long, padding="max_length", truncation=True, return_tensors="pt").input_ids
    ref = open_clip.tokenize(long)
    assert ids.shape == (2, 77)
    assert torch.equal(ids, ref)
    assert (ids[:, 0] == 49406).all() and (ids[:, -1] == 49407).all()


def test_model_max_length_and_save_round_trip(tmp_path):
    tok = build_clip_tokenizer(model_max_length=16, cache_dir=tmp_path / "v")
    assert tok.model_max_length == 16
    batch = tok(PROMPTS, padding="max_length", truncation=True, return_tensors="pt")
    assert batch.input_ids.shape == (len(PROMPTS), 16)
    ours = batch.input_ids.masked_fill(batch.attention_mask == 0, 0)
    assert torch.equal(ours, open_clip.tokenize(PROMPTS, context_length=16))

    from transformers import CLIPTokenizer

    tok.save_pretrained(tmp_path / "saved")
    again = CLIPTokenizer.from_pretrained(tmp_path / "saved", local_files_only=True)
    assert again.model_max_length == 16
    assert again(PROMPTS, padding="max_length", truncation=True).input_ids == tok(
        PROMPTS, padding="max_length", truncation=True
    ).input_ids

"""The real CLIP BPE tokenizer, built offline from the vocabulary open_clip ships.

The embedded profile's tiny text tower and every test pipeline use the same byte-level BPE
tokenizer as OpenAI CLIP / Stable Diffusion (DESIGN.md, "Profiles": "the real CLIP BPE tokenizer
(open_clip ships its vocabulary)"). Hub downloads are not allowed, so the transformers
``CLIPTokenizer`` files (``vocab.json`` + ``merges.txt``) are derived from
``open_clip/bpe_simple_vocab_16e6.txt.gz`` exactly the way OpenAI CLIP's ``SimpleTokenizer`` builds
its vocabulary [EXT OpenAI CLIP ``clip/simple_tokenizer.py``]:

1. the 256 byte symbols of ``bytes_to_unicode()`` (ids 0..255),
2. the same symbols with the end-of-word marker ``</w>`` (ids 256..511),
3. the first 48 894 merges of the BPE file (file lines ``1 .. 49152-256-2``; line 0 is a version
   header), each contributing its merged token (ids 512..49405),
4. ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407); 49 408 tokens in total.

The resulting ids equal ``open_clip.tokenize`` (which names the specials ``<start_of_text>`` /
``<end_of_text>`` but gives them the same ids 49406/49407) on ordinary text, including
truncation to the context length (the last kept position becomes ``<|endoftext|>``). Padding follows
Stable Diffusion v1.x: ``<|endoftext|>`` (49407), whereas ``open_clip.tokenize`` pads with id 0; the
positions are the same (``attention_mask == 0``). The pad id cannot be 0 here: a pad token ``"!"``
becomes a special token that transformers also splits out of ordinary text (``"!!"`` would become
two pad ids), so the SD convention is the only one that survives ``save_pretrained`` /
``from_pretrained`` unchanged. CLIP's causal text tower makes the pooled (end-of-text) feature
independent of the padding id.

NOTE: text normalisation differs in corner cases only: open_clip runs ``ftfy.fix_text`` and HTML
unescaping before lower-casing, the transformers tokenizer applies NFC, whitespace collapsing and
lower-casing. Plain prompts (letters, digits, punctuation) tokenise identically.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from augbench.run.store import write_text_atomic

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "VOCAB_SIZE",
    "build_clip_tokenizer",
    "bytes_to_unicode",
    "clip_bpe_path",
    "write_clip_vocab",
]

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
VOCAB_SIZE = 49408
_NUM_MERGES = 49152 - 256 - 2  # 48894, as in OpenAI CLIP's SimpleTokenizer
_FORMAT_VERSION = "1"  # bump when the derivation below changes (invalidates cached files)
CACHE_ENV = "AUGBENCH_CACHE"


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the other bytes (whitespace, control characters)
    map to ``chr(256 + n)`` in increasing byte order, so BPE never sees whitespace.

    Returns:
        A dict ``{byte: character}`` with 256 entries, in CLIP's vocabulary order.
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def clip_bpe_path() -> Path:
    """Path of ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip`` package.

    Raises:
        FileNotFoundError: open_clip is not installed or does not ship the file.
    """
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the CLIP BPE vocabulary comes from the open_clip package; install it with "
            "`pip install open-clip-torch`"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "bpe_simple_vocab_16e6.txt.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"open_clip is installed at {list(spec.submodule_search_locations)} but has no "
        "bpe_simple_vocab_16e6.txt.gz; reinstall open-clip-torch"
    )


def _vocab_and_merges(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1 : _NUM_MERGES + 1]
    if len(merges) != _NUM_MERGES:
        raise ValueError(f"{bpe_path}: expected at least {_NUM_MERGES + 1} lines, found {len(lines)}")
    pairs = [tuple(m.split()) for m in merges]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"{bpe_path}: malformed merge line (expected two symbols per line)")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(p) for p in pairs] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"derived CLIP vocabulary has {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab, [" ".join(p) for p in pairs]


def _default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path(tempfile.gettempdir()) / "augbench-cache"
    return base / "clip_tokenizer"


def write_clip_vocab(out_dir: str | Path | None = None, bpe_path: str | Path | None = None) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` for a transformers ``CLIPTokenizer``.

    Files are written atomically and reused when already present (keyed by the BPE file's hash),
    so concurrent processes and repeated calls are safe and cheap.

    Args:
        out_dir: target folder; default ``$AUGBENCH_CACHE/clip_tokenizer/<hash>`` or the same under
            the system temp dir.
        bpe_path: the gzipped BPE merges file; default: open_clip's shipped copy.

    Returns:
        The folder holding ``vocab.json`` and ``merges.txt``.
    """
    bpe = Path(bpe_path) if bpe_path else clip_bpe_path()
    if out_dir is None:
        digest = hashlib.sha256(bpe.read_bytes()).hexdigest()[:16]
        out_dir = _default_cache_dir() / f"v{_FORMAT_VERSION}-{digest}"
    out = Path(out_dir)
    vocab_file, merges_file = out / "vocab.json", out / "merges.txt"
    if vocab_file.is_file() and merges_file.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _vocab_and_merges(bpe)
    # The "#version" header is what transformers' slow tokenizer and the original CLIP file both skip.
    texts = {
        merges_file: "#version: 0.2\n" + "\n".join(merges) + "\n",
        vocab_file: json.dumps(vocab, ensure_ascii=False),
    }
    for path, text in texts.items():
        write_text_atomic(path, text)
    return out


def build_clip_tokenizer(
    model_max_length: int = 77,
    *,
    cache_dir: str | Path | None = None,
):
    """A transformers ``CLIPTokenizer`` with OpenAI CLIP's real 49 408-token BPE vocabulary, offline.

    Args:
        model_max_length: context length; ``padding="max_length", truncation=True`` pads/truncates
            to it (77 for CLIP / Stable Diffusion).
        cache_dir: where ``vocab.json``/``merges.txt`` are written (see ``write_clip_vocab``).

    Returns:
        A ``transformers.CLIPTokenizer``; ``save_pretrained`` writes it in the usual format so a
        pipeline saved with it loads back with ``from_pretrained``.

    Example:
        >>> tok = build_clip_tokenizer()
        >>> tok("a photo of a bird", padding="max_length", truncation=True).input_ids[:3]
        [49406, 320, 1125]
    """
    from transformers import CLIPTokenizer

    folder = write_clip_vocab(cache_dir)
    with open(folder / "vocab.json", encoding="utf-8") as fh:
        vocab = json.load(fh)
    merges = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    merges = [tuple(m.split()) for m in merges if m]
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=model_max_length,
    )
    return tok

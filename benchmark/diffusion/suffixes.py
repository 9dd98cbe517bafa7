"""Diff-II's prompt suffixes as an artifact of kind ``suffixes`` (METHODS_SPEC §3.10.3-3.10.4).

Diff-II's first denoising stage uses ``a photo of a <class_i> [meta] {suffix}`` with a suffix drawn per
image from a short list of scene descriptions ("perched on a branch", "flying over water", ...). The list
is a *versioned input*: it is an artifact (``augbench.run.artifacts``) whose recipe is hashed into the
artifact key and therefore into the key of every synthetic set generated with it. A method asks for it
with :func:`suffix_spec` and reads it back with :func:`read_suffixes`. Three sources:

* ``file`` -- one suffix per line (the released Diff-II ``suffix/{dataset}/{shot}.txt`` files load as
  they are). The reference loader drops the last character of every line to strip the newline, so a
  final line without a newline loses a real character (METHODS_SPEC §3.10.4, §10 item 23); this loader
  strips line endings and surrounding whitespace only. The recipe carries the parsed suffixes and the
  file's sha256, so editing the file makes a new artifact (and new synthetic sets); where the file lies
  is not part of the key. Every line of the file is kept (``max_suffixes`` bounds the generated sources).
* ``world`` (the embedded profile's default) -- the distinct scene phrases of the captions of the cell's
  own training images (the embedded world's captions end with the scene, ``..., perched on a branch``),
  most frequent first, ties alphabetical, at most ``max_suffixes``. These are ground-truth captions, a
  captioner that never errs: the recipe says ``oracle_captioner: true`` and report captions flag it.
* ``captioner`` -- the papers' procedure (METHODS_SPEC §3.10.4): caption every training image with BLIP
  (``BlipForConditionalGeneration`` + ``BlipProcessor`` from a local path or hub id, unconditional, default
  ``generate`` settings), keep at most 200 captions (a sample drawn with a seeded generator when there are
  more), and ask a text model to summarise them into at most 10 descriptions ``{prefix} ...`` with the
  prefix ``a photo of a bird`` / ``an aircraft`` / ... from the dataset card's meta word; the suffix is the
  text after the prefix. The text model is an OpenAI-compatible chat endpoint (``llm = "openai"``; URL and
  key from ``AUGBENCH_SUFFIX_LLM_URL`` / ``AUGBENCH_SUFFIX_LLM_KEY``, model from the ``llm_model`` option or
  ``AUGBENCH_SUFFIX_LLM_MODEL``, default ``gpt-4``) or a local transformers causal LM (``llm =
  "transformers"``, ``llm_model`` = its folder). The LLM step is not reproducible, so its result is cached:
  the artifact's store entry *is* the cache, reused by every later run with the same recipe and never
  regenerated unless the recipe (captioner, model name, prefix, seed, ...) changes or its files are
  corrupted (then the run fails first, naming the file). Its ``suffixes.txt`` can be copied out and
  used with ``source = "file"`` to pin it across stores. An unreachable endpoint or missing credentials
  fail with the variable names and the ``file`` alternative.

Files of the artifact: ``suffixes.txt`` (one suffix per line, newline-terminated) and ``suffixes.json``
(source, where the suffixes came from, captions and raw LLM response for ``captioner``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augbench.contract import ArtifactSpec, ConfigError
from augbench.run.hashing import file_sha256

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["BUILTIN_KINDS", "CAPTIONER_DEFAULT", "KIND", "KIND_VERSION", "LLM_ENV", "SUFFIX_SOURCES", "SUMMARISERS",
           "caption_images", "captioner_models", "captioner_problem", "check_captioner_recipe", "default_suffix_source",
           "parse_llm_suffixes", "parse_suffix_file", "parse_suffix_text", "read_suffixes", "sample_captions",
           "suffix_path", "suffix_prefix", "suffix_spec", "summariser_problem", "summary_messages", "world_suffixes"]

log = logging.getLogger(__name__)

KIND = "suffixes"
#: bump when the builder's output changes, so a fix is never masked by a stale artifact
KIND_VERSION = 1
SUFFIX_SOURCES = ("world", "file", "captioner")
SUFFIXES_FILE = "suffixes.txt"
ORIGIN_FILE = "suffixes.json"

#: METHODS_SPEC §3.10.4: Diff-II captioned with BLIP large.
CAPTIONER_DEFAULT = "Salesforce/blip-image-captioning-large"
#: METHODS_SPEC §3.10.4: at most 200 captions are sent to the text model.
MAX_CAPTIONS = 200
#: The environment variables of the ``openai`` summariser (credentials never enter a recipe or a record).
LLM_ENV = {"url": "AUGBENCH_SUFFIX_LLM_URL", "key": "AUGBENCH_SUFFIX_LLM_KEY", "model": "AUGBENCH_SUFFIX_LLM_MODEL"}
CAPTIONER_ENV = "AUGBENCH_SUFFIX_CAPTIONER"


def default_suffix_source(profile: Any = None) -> str:
    """``world`` on the embedded profile (its datasets have captions), ``captioner`` elsewhere."""
    return "world" if profile is None or getattr(profile, "name", "embedded") == "embedded" else "captioner"


# --- the spec a method declares --------------------------------------------------------------------------

def suffix_spec(source: str, *, path: str | None = None, profile: Any = None, max_suffixes: int = 10,
                **options: Any) -> ArtifactSpec:
    """The ``ArtifactSpec`` of kind ``suffixes`` for ``source`` (one of :data:`SUFFIX_SOURCES`).

    ``path`` is the suffix file of ``source = "file"`` (parsed now, so a bad file fails before any work).
    ``options`` (``captioner`` only): ``captioner`` (BLIP folder or hub id; default ``$AUGBENCH_SUFFIX_CAPTIONER``
    or :data:`CAPTIONER_DEFAULT`), ``captioner_revision``, ``llm`` (``openai`` | ``transformers`` or a name
    registered in :data:`SUMMARISERS`), ``llm_model``, ``prefix`` (default from the card's meta word),
    ``max_captions`` (200), ``caption_seed`` (0), ``max_new_tokens`` (``transformers``: 512).
    """
    if source not in SUFFIX_SOURCES:
        raise ConfigError(f"unknown suffix source {source!r}; expected one of {', '.join(SUFFIX_SOURCES)} "
                          "(METHODS_SPEC §3.10.4)")
    if not isinstance(max_suffixes, int) or isinstance(max_suffixes, bool) or max_suffixes < 1:
        raise ConfigError(f"max_suffixes must be a positive integer, got {max_suffixes!r}")
    allowed = {"file": set(), "world": set(),
               "captioner": {"captioner", "captioner_revision", "llm", "llm_model", "prefix", "max_captions",
                             "caption_seed", "max_new_tokens"}}[source]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"suffix source {source!r} takes no option(s) {', '.join(unknown)}"
                          + (f"; its options: {', '.join(sorted(allowed))}" if allowed else ""))
    if source != "file" and path is not None:
        raise ConfigError(f"a suffix file ({path}) is only read with source = 'file', not {source!r}")
    if source == "file":
        if not path:
            raise ConfigError("suffix source 'file' needs a suffix file: set suffix_file = 'path/to/suffix.txt' "
                              "(one suffix per line, e.g. Diff-II's released suffix/{dataset}/{shot}.txt)")
        suffixes = parse_suffix_file(path)
        recipe: dict[str, Any] = {"source": "file", "file_name": Path(path).name, "sha256": file_sha256(Path(path)),
                                  "suffixes": suffixes}
    elif source == "world":
        recipe = {"source": "world", "max_suffixes": max_suffixes, "oracle_captioner": True}
    else:
        recipe = _captioner_recipe(profile, max_suffixes, options)
    return ArtifactSpec(KIND, recipe)


def _captioner_recipe(profile: Any, max_suffixes: int, options: Mapping[str, Any]) -> dict[str, Any]:
    llm = str(options.get("llm", "openai"))
    model = options.get("llm_model") or (os.environ.get(LLM_ENV["model"], "").strip() or "gpt-4"
                                         if llm == "openai" else None)
    if not model:
        raise ConfigError(f"suffix summariser {llm!r} needs llm_model (for 'transformers': the folder of a causal LM)")
    max_captions = int(options.get("max_captions", MAX_CAPTIONS))
    if max_captions < 1:
        raise ConfigError(f"max_captions must be >= 1, got {max_captions}")
    captioner = options.get("captioner") or os.environ.get(CAPTIONER_ENV, "").strip() or CAPTIONER_DEFAULT
    return {"source": "captioner", "max_suffixes": max_suffixes, "captioner": str(captioner),
            "captioner_revision": options.get("captioner_revision"), "llm": llm, "llm_model": str(model), "prefix": options.get("prefix"),
            "max_captions": max_captions, "caption_seed": int(options.get("caption_seed", 0)),
            "max_new_tokens": int(options.get("max_new_tokens", 512))}


def suffix_path(template: str, subset: Subset) -> str:
    """``template`` with ``{dataset}``, ``{shots}``, ``{imbalance_factor}`` and ``{rho}`` (1 / IF) of ``subset``
    filled in, so one suite line names DII's per-dataset, per-shot suffix files (§3.10.4)."""
    params = dict(getattr(subset, "params", None) or {})
    factor = params.get("imbalance_factor")
    values = {"dataset": subset.dataset, "shots": params.get("shots"), "imbalance_factor": factor,
              "rho": (1.0 / float(factor)) if factor else None}
    try:
        path = template.format(**values)
    except (KeyError, IndexError) as exc:
        raise ConfigError(f"suffix_file {template!r} uses an unknown placeholder {exc}; known: "
                          f"{', '.join('{' + k + '}' for k in values)}") from exc
    missing = [k for k, v in values.items() if v is None and "{" + k + "}" in template]
    if missing:
        raise ConfigError(f"suffix_file {template!r} uses {', '.join(missing)}, which subset {subset.dataset} "
                          f"({subset.protocol}) does not have")
    return path


# --- the models of the captioner source, checked before any work ----------------------------------------

def captioner_models(profile: Any = None, **options: Any) -> dict[str, str]:
    """The models the ``captioner`` source loads, as ``OfflineMethod.required_models`` roles: ``captioner``
    (BLIP folder or hub id), and ``summariser:openai`` (the model name; needs ``AUGBENCH_SUFFIX_LLM_URL``) or
    ``summariser:transformers`` (the causal LM's folder). A plugin summariser adds no role.

    ``options`` are :func:`suffix_spec`'s captioner options (``captioner``, ``llm``, ``llm_model``, ...).
    """
    recipe = _captioner_recipe(profile, 10, options)
    models = {"captioner": _captioner_location(recipe["captioner"])}
    if recipe["llm"] in ("openai", "transformers"):
        models[f"summariser:{recipe['llm']}"] = recipe["llm_model"]
    return models


def _captioner_location(name: str) -> str:
    return str(Path(name).expanduser()) if _looks_like_path(name) else name


def _looks_like_path(name: str) -> bool:
    """A folder (absolute, ``~``, ``./``, more than one ``/`` or existing), not an ``org/name`` hub id."""
    return name.startswith(("/", "~", ".")) or name.count("/") > 1 or "\\" in name or Path(name).expanduser().exists()


def captioner_problem(location: str, *, local_files_only: bool = True, revision: str | None = None) -> str | None:
    """Why the BLIP captioner at ``location`` cannot be loaded, or ``None`` when it looks loadable.

    A folder must hold a ``config.json`` of a BLIP model; a hub id must be in the Hugging Face cache when
    nothing may be downloaded (``local_files_only``). Cheap: reads one JSON file, loads no weights.
    """
    fix = (f"point the captioner option ([methods_params.diff_ii] captioner = '/path/to/blip') or {CAPTIONER_ENV} "
           f"at a local copy of {CAPTIONER_DEFAULT} (BlipForConditionalGeneration + BlipProcessor, save_pretrained "
           "format), or use suffix_source = 'file'")
    if _looks_like_path(location):
        folder = Path(location).expanduser()
        if not folder.is_dir():
            return f"the BLIP captioner folder {folder} does not exist; {fix}"
        config = folder / "config.json"
    else:
        if not local_files_only:
            return None  # from_pretrained downloads it
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(location, "config.json", revision=revision)
        if not isinstance(cached, str):
            return (f"the BLIP captioner {location!r} is not in the Hugging Face cache and this profile loads local "
                    f"files only; {fix}")
        config = Path(cached)
    if not config.is_file():
        return f"the BLIP captioner folder {config.parent} has no config.json; {fix}"
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"the BLIP captioner's {config} is not readable JSON ({err}); {fix}"
    kind = raw.get("model_type")
    if kind != "blip" and "BlipForConditionalGeneration" not in (raw.get("architectures") or []):
        return f"{config.parent} holds a {kind or 'unknown'!s} model, not BLIP (model_type 'blip'); {fix}"
    return None


def summariser_problem(llm: str, llm_model: str | None) -> str | None:
    """Why the summariser cannot run, or ``None``: ``openai`` needs ``AUGBENCH_SUFFIX_LLM_URL`` (not contacted
    here), ``transformers`` a folder with ``config.json``; a plugin summariser is not checked."""
    if llm == "openai" and not os.environ.get(LLM_ENV["url"], "").strip():
        return (f"the openai suffix summariser needs {LLM_ENV['url']} (e.g. https://api.openai.com/v1) and "
                f"{LLM_ENV['key']}; without a network set llm = 'transformers' and llm_model = '/path/to/causal-lm' "
                "in [methods_params.diff_ii], or use suffix_source = 'file'")
    if llm == "transformers":
        folder = Path(str(llm_model or "")).expanduser()
        if not (folder / "config.json").is_file():
            return (f"the transformers suffix summariser needs llm_model = the folder of a causal LM "
                    f"(config.json + weights, save_pretrained format); {folder} has no config.json")
    return None


def check_captioner_recipe(recipe: Mapping[str, Any], *, local_files_only: bool = True) -> None:
    """Fail in one line, before any image is captioned, when the captioner or the summariser of a
    ``captioner`` recipe cannot be loaded or reached (issue 23: the BLIP error came after minutes of work)."""
    if recipe["llm"] not in SUMMARISERS:
        raise ConfigError(f"unknown suffix summariser {recipe['llm']!r}; expected one of {', '.join(SUMMARISERS)}")
    local = local_files_only or Path(recipe["captioner"]).expanduser().is_dir()
    problems = [p for p in (captioner_problem(recipe["captioner"], local_files_only=local,
                                              revision=recipe.get("captioner_revision")),
                            summariser_problem(recipe["llm"], recipe.get("llm_model"))) if p]
    if problems:
        raise ConfigError("; and ".join(problems))


# --- reading ----------------------------------------------------------------------------------------------

def read_suffixes(artifact: Any) -> list[str]:
    """The suffixes of a built ``suffixes`` artifact (``augbench.run.artifacts.Artifact``), in file order."""
    if getattr(artifact, "kind", KIND) != KIND:
        raise ConfigError(f"read_suffixes needs an artifact of kind {KIND!r}, got {artifact.kind!r}")
    return parse_suffix_file(Path(artifact.folder) / SUFFIXES_FILE)


def parse_suffix_file(path: str | Path) -> list[str]:
    """The suffixes of a suffix file: one per line; a missing or empty file or a blank line is a ConfigError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"suffix file {path} does not exist: expected a text file with one suffix per line "
                          "(e.g. 'perched on a branch'); fix suffix_file or use suffix_source = 'world' / 'captioner'")
    return parse_suffix_text(path.read_text(encoding="utf-8"), origin=str(path))


def parse_suffix_text(text: str, origin: str = "suffix text") -> list[str]:
    """One suffix per line, surrounding whitespace and the line ending removed -- and nothing else.

    Diff-II's loader cut the last character of every line (``line[:-1]``) to drop ``\\n``, which eats a real
    character of a final line without a newline (METHODS_SPEC §3.10.4); here ``on a branch`` stays whole.
    """
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the first suffix
    lines = text.splitlines()
    if not lines or not text.strip():
        raise ConfigError(f"{origin} is empty: expected one suffix per line, e.g. 'perched on a branch' "
                          "(the text appended to 'a photo of a <class> <meta>' in Diff-II's first stage)")
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise ConfigError(f"{origin}: line(s) {', '.join(map(str, blank[:10]))} are blank; a suffix file has one "
                          "non-empty suffix per line -- delete the blank lines")
    return [line.strip() for line in lines]


def _write_suffixes(folder: Path, suffixes: Sequence[str], origin: Mapping[str, Any]) -> None:
    (folder / SUFFIXES_FILE).write_text("".join(f"{s}\n" for s in suffixes), encoding="utf-8")
    (folder / ORIGIN_FILE).write_text(json.dumps({**origin, "suffixes": list(suffixes)}, indent=2, ensure_ascii=False)
                                      + "\n", encoding="utf-8")


# --- world --------------------------------------------------------------------------------------------

def world_suffixes(captions: Sequence[str], max_suffixes: int = 10) -> list[str]:
    """The distinct scene phrases of world captions (the clause after the last comma), most frequent first,
    ties alphabetical, at most ``max_suffixes``."""
    counts = Counter(c.rsplit(",", 1)[1].strip() for c in captions if "," in c)
    counts.pop("", None)
    return [phrase for phrase, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:max_suffixes]


def _train_captions(train_part: Any, ctx: Any) -> list[str]:
    captions = [s.attrs.get("caption") for s in train_part.samples]
    if all(isinstance(c, str) for c in captions):
        return captions
    source = getattr(ctx, "source", None)
    if callable(getattr(source, "captions", None)):
        return list(source.captions(train_part.image_ids))
    dataset = getattr(train_part, "dataset", "?")
    raise ConfigError(f"suffix source 'world' reads the captions of the training images, and dataset {dataset!r} has "
                      "none (only the embedded world's datasets do); use suffix_source = 'file' with a suffix file "
                      "or 'captioner' (BLIP + a text model)")


# --- captioner ------------------------------------------------------------------------------------------

def suffix_prefix(meta: str | None) -> str:
    """``a photo of a bird`` / ``a photo of an aircraft`` / ... (METHODS_SPEC §3.10.4) from a card's meta word."""
    word = (meta or "object").strip()
    return f"a photo of {'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def sample_captions(captions: Sequence[str], max_captions: int, seed: int) -> list[str]:
    """At most ``max_captions`` captions: all when there are fewer, else a sample without replacement drawn with
    ``numpy.random.default_rng(seed)`` (Diff-II sampled 200 with unseeded numpy), in their original order."""
    import numpy as np

    if len(captions) <= max_captions:
        return list(captions)
    keep = np.sort(np.random.default_rng(seed).choice(len(captions), size=max_captions, replace=False))
    return [captions[int(i)] for i in keep]


def caption_images(images: Sequence[Any], model_path: str, *, revision: str | None = None, device: str = "cpu",
                   local_files_only: bool = True, batch_size: int = 16) -> list[str]:
    """Unconditional BLIP captions of PIL images, default ``generate`` settings (METHODS_SPEC §3.10.4)."""
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        processor = BlipProcessor.from_pretrained(model_path, revision=revision, local_files_only=local_files_only)
        model = BlipForConditionalGeneration.from_pretrained(model_path, revision=revision,
                                                             local_files_only=local_files_only).to(device).eval()
    except OSError as err:
        raise ConfigError(f"cannot load the BLIP captioner {model_path!r} ({err}); point the captioner option or "
                          f"{CAPTIONER_ENV} at a local copy of {CAPTIONER_DEFAULT} (BlipForConditionalGeneration "
                          "+ BlipProcessor, save_pretrained format)") from err
    captions: list[str] = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = [im.convert("RGB") for im in images[start:start + batch_size]]
            inputs = processor(images=batch, return_tensors="pt").to(device)
            out = model.generate(**inputs)
            captions += [c.strip() for c in processor.batch_decode(out, skip_special_tokens=True)]
    return captions


def summary_messages(captions: Sequence[str], prefix: str, max_suffixes: int = 10) -> list[dict[str, str]]:
    """The chat messages asking a text model to summarise captions into scene descriptions (METHODS_SPEC
    §3.10.4: at most 10 objective descriptions of scene, action, camera pose, zoom, each ``{prefix} ...``,
    with three examples)."""
    examples = [f"{prefix} on a branch", f"{prefix} flying with a city skyline behind",
                f"{prefix} in a river at night"]
    listing = "\n".join(f"- {c}" for c in captions)
    instruction = (
        f"Here are captions of photos:\n{listing}\n\n"
        f"Summarise them into at most {max_suffixes} short, objective descriptions of the scene, the action, the "
        f"camera pose, the zoom and similar conditions, covering the variety in the captions. Do not describe the "
        f"appearance of the subject itself. Write one description per line, each starting with \"{prefix}\", for "
        f"example:\n" + "\n".join(examples) + "\nAnswer with the descriptions only.")
    return [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": instruction}]


_BULLET = re.compile(r"^\s*(?:[-*•]+|\(?\d+[.):]|\d+\s*-)\s*")


def parse_llm_suffixes(response: str, prefix: str, max_suffixes: int = 10) -> list[str]:
    """The suffixes in a text model's answer: lines that start with ``prefix`` (after list markers and quotes,
    case-insensitive), the text after it without trailing ``.``/``,``, distinct, at most ``max_suffixes``.

    Lines without the prefix (preambles, remarks) are skipped; an answer without any such line is an error.
    """
    out: list[str] = []
    for raw in response.splitlines():
        line = _BULLET.sub("", raw).strip().strip("\"'`*").strip()
        rest = line[len(prefix):]
        if not line.lower().startswith(prefix.lower()) or (rest[:1].isalnum()):  # "a photo of a birdhouse" is not
            continue
        suffix = rest.strip().rstrip(".,;:\"'`* ").strip()
        if suffix and suffix not in out:
            out.append(suffix)
    if not out:
        raise ConfigError(f"the suffix summariser's answer has no line starting with {prefix!r}; answer was:\n"
                          f"{response[:2000]}")
    return out[:max_suffixes]


def _summarise_openai(messages: list[dict[str, str]], recipe: Mapping[str, Any]) -> str:
    """An OpenAI-compatible ``/chat/completions`` call; URL and key from the environment (:data:`LLM_ENV`)."""
    import urllib.error
    import urllib.request

    url, key = os.environ.get(LLM_ENV["url"], "").strip(), os.environ.get(LLM_ENV["key"], "").strip()
    if not url:
        raise ConfigError(f"suffix source 'captioner' summarises captions with an OpenAI-compatible endpoint: set "
                          f"{LLM_ENV['url']} (e.g. https://api.openai.com/v1) and {LLM_ENV['key']}; without a network "
                          "use llm = 'transformers' with a local model, or suffix_source = 'file'")
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")
    body = json.dumps({"model": recipe["llm_model"], "messages": messages}).encode("utf-8")
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 - the user's configured URL
            answer = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise ConfigError(f"suffix LLM endpoint {endpoint} is unreachable or refused the request ({err}); check "
                          f"{LLM_ENV['url']} / {LLM_ENV['key']}, or use suffix_source = 'file' with a suffix file "
                          "(nothing was cached; the next run tries again)") from err
    try:
        return str(answer["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError) as err:
        raise ConfigError(f"suffix LLM endpoint {endpoint} answered without choices[0].message.content: "
                          f"{str(answer)[:500]}") from err


def _summarise_transformers(messages: list[dict[str, str]], recipe: Mapping[str, Any]) -> str:
    """A local transformers causal LM (greedy decoding), loaded with ``from_pretrained`` from ``llm_model``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = recipe["llm_model"]
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=int(recipe.get("max_new_tokens", 512)), do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


#: Text models that turn captions into suffixes: name -> ``(messages, recipe) -> answer text``. Tests and
#: plugins may add one (the name is the recipe's ``llm``, part of the artifact key).
SUMMARISERS: dict[str, Callable[[list[dict[str, str]], Mapping[str, Any]], str]] = {
    "openai": _summarise_openai, "transformers": _summarise_transformers}


# --- the builder ----------------------------------------------------------------------------------------

def _build(spec: Any, train_part: Any, ctx: Any, folder: Path) -> None:
    recipe = dict(spec.recipe)
    source = recipe.get("source")
    if source == "file":
        _write_suffixes(folder, recipe["suffixes"], {"source": "file", "file_name": recipe["file_name"],
                                                     "sha256": recipe["sha256"]})
    elif source == "world":
        captions = _train_captions(train_part, ctx)
        suffixes = world_suffixes(captions, int(recipe["max_suffixes"]))
        if not suffixes:
            raise ConfigError(f"no scene phrase in the captions of {len(captions)} training images (expected "
                              "'..., perched on a branch'); use suffix_source = 'file'")
        _write_suffixes(folder, suffixes, {"source": "world", "oracle_captioner": True, "images": len(captions),
                                           "note": "scene phrases of the world's ground-truth captions"})
    elif source == "captioner":
        _build_captioned(recipe, train_part, ctx, folder)
    else:
        raise ConfigError(f"unknown suffix source {source!r} in the recipe; expected one of {', '.join(SUFFIX_SOURCES)}")


def _build_captioned(recipe: Mapping[str, Any], train_part: Any, ctx: Any, folder: Path) -> None:
    model_path = _captioner_location(recipe["captioner"])
    local_only = Path(model_path).is_dir() or bool(getattr(getattr(ctx, "profile", None), "local_files_only", True))
    check_captioner_recipe(recipe, local_files_only=local_only)  # before captioning a single image
    prefix = recipe.get("prefix") or suffix_prefix(getattr(getattr(ctx, "card", None), "meta", None))
    from augbench.data.image_cache import load_rgb

    images = [load_rgb(ctx.source, i) for i in train_part.image_ids]
    log.info("suffixes: captioning %d training images with %s", len(images), recipe["captioner"])
    captions = caption_images(images, model_path, revision=recipe.get("captioner_revision"),
                              device=getattr(ctx, "device", "cpu"), local_files_only=local_only)
    sent = sample_captions(captions, int(recipe["max_captions"]), int(recipe["caption_seed"]))
    messages = summary_messages(sent, prefix, int(recipe["max_suffixes"]))
    log.info("suffixes: summarising %d captions with %s %s", len(sent), recipe["llm"], recipe["llm_model"])
    answer = SUMMARISERS[recipe["llm"]](messages, recipe)
    suffixes = parse_llm_suffixes(answer, prefix, int(recipe["max_suffixes"]))
    origin = {"source": "captioner", "oracle_captioner": False, "captioner": recipe["captioner"],
              "llm": recipe["llm"], "llm_model": recipe["llm_model"], "prefix": prefix,
              "llm_url": os.environ.get(LLM_ENV["url"]) if recipe["llm"] == "openai" else None,
              "captions": captions, "sent_captions": len(sent), "response": answer}
    _write_suffixes(folder, suffixes, origin)


#: name -> (builder, version, summary), registered lazily by ``augbench.run.artifacts`` (no import cycle).
BUILTIN_KINDS: dict[str, tuple[Any, int, str]] = {
    KIND: (_build, KIND_VERSION, "Diff-II prompt suffixes from a file, the world's captions or BLIP + a text "
                                 "model (METHODS_SPEC §3.10.4)"),
}

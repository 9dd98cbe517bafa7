"""Species of the embedded world: fine-grained attribute combinations with incomplete names.

The benchmark species come in *genera* of four. Within a genus the species differ from the genus's
common form in one or two attributes, and the name mentions at most one of them
("Red-crowned Gull", "Striped-winged Gull", "Fork-tailed Gull", "Common Gull"): names are descriptive
but incomplete, and the genus word itself ("Gull", "Finch") never occurs in the pretraining captions,
just as real species names are rare in web captions. So a plain-name prompt is only partly faithful
and concept learning matters, as with Stable Diffusion on CUB (DESIGN.md).

The species table is generated once from a fixed seed and written into the dataset cards
(``datasets/toybirds.toml``); the cards are the source of truth that the renderer reads.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from augbench.world.render import ATTRIBUTES, COLOURS, BirdSpec

WATER_GENERA = ("Gull", "Tern", "Grebe")
LAND_GENERA = ("Finch", "Warbler", "Sparrow")
_TAIL_WORD = {"short": "Short-tailed", "long": "Long-tailed", "forked": "Fork-tailed", "fan": "Fan-tailed"}


def _random_spec(rng: np.random.Generator) -> BirdSpec:
    return BirdSpec(**{k: str(rng.choice(v)) for k, v in ATTRIBUTES.items()})


def _other(rng: np.random.Generator, key: str, current: str, avoid: tuple[str, ...] = ()) -> str:
    choices = [v for v in ATTRIBUTES[key] if v != current and v not in avoid]
    return str(rng.choice(choices))


def generate_species(seed: int = 2024) -> list[dict]:
    """The benchmark species table: name, habitat and attributes, in label order.

    Six genera (three water, three land) of four species each; every genus's common form differs
    from every other genus's in at least three attributes.
    """
    rng = np.random.default_rng(seed)
    bases: list[BirdSpec] = []
    while len(bases) < 6:
        cand = _random_spec(rng)
        if cand.crown == cand.body or cand.wing == cand.body:
            continue  # keep crown and wing visible against the body
        if all(len(cand.differences(b)) >= 3 for b in bases):
            bases.append(cand)
    species: list[dict] = []
    for g, base in enumerate(bases):
        genus = (WATER_GENERA + LAND_GENERA)[g]
        habitat = "water" if g < 3 else "land"
        d = base.as_dict()
        crown = _other(rng, "crown", base.crown, avoid=(base.body,))
        extra_key = str(rng.choice(["beak", "size"]))
        red_crowned = dict(d, crown=crown, **{extra_key: _other(rng, extra_key, d[extra_key])})
        pattern = _other(rng, "pattern", base.pattern, avoid=("plain",))
        patterned = dict(d, pattern=pattern)
        tail = _other(rng, "tail", base.tail)
        tailed = dict(d, tail=tail, wing=_other(rng, "wing", base.wing, avoid=(base.body,)))
        members = [
            (f"{crown.capitalize()}-crowned {genus}", red_crowned),
            (f"{pattern.capitalize()}-winged {genus}", patterned),
            (f"{_TAIL_WORD[tail]} {genus}", tailed),
            (f"Common {genus}", d),
        ]
        for name, attrs in members:
            species.append({"name": name, "habitat": habitat, **attrs})
    names = [s["name"] for s in species]
    assert len(set(names)) == len(names), names
    return species


def spec_of(entry: dict) -> BirdSpec:
    """The ``BirdSpec`` of a species-table entry (a card's ``[[world.species]]`` table)."""
    return BirdSpec(**{k: entry[k] for k in ATTRIBUTES})


# What a genus word conveys: the build of the genus' common form. Web captions name common birds
# ("a gull flying over water") far more often than species, so genus words carry meaning for the
# foundation models while the species-level details (crown, wing pattern, tail) must come from the name's
# modifier or from concept learning -- as "Gull" does for Stable Diffusion on CUB.
GENUS_KEYS = ("body", "size", "beak")


@lru_cache(maxsize=4)
def genus_forms(seed: int = 2024) -> dict[str, tuple[BirdSpec, str]]:
    """``{genus word: (common form, habitat)}`` of the benchmark genera (the ``Common <genus>`` species)."""
    return {e["name"].split()[-1]: (spec_of(e), e["habitat"])
            for e in generate_species(seed) if e["name"].startswith("Common ")}


def genus_of(spec: BirdSpec) -> str | None:
    """The one genus whose common form shares ``GENUS_KEYS`` with ``spec`` (None if none or several do)."""
    matches = [g for g, (form, _) in genus_forms().items()
               if all(getattr(spec, k) == getattr(form, k) for k in GENUS_KEYS)]
    return matches[0] if len(matches) == 1 else None


def random_corpus_bird(rng: np.random.Generator, genus_share: float = 0.25) -> tuple[BirdSpec, str | None, str | None]:
    """A pretraining-corpus bird as ``(spec, genus word or None, habitat or None)``.

    With probability ``genus_share`` it is a variant of a genus' common form (1-3 of crown, wing,
    pattern, tail re-drawn) living in the genus' habitat; otherwise an arbitrary attribute combination
    (named after a genus only when it unambiguously has that genus' build).
    """
    if rng.random() >= genus_share:
        spec = _random_spec(rng)
        return spec, genus_of(spec), None
    forms = genus_forms()
    genus = str(rng.choice(sorted(forms)))
    form, habitat = forms[genus]
    d = form.as_dict()
    free = ["crown", "wing", "pattern", "tail"]
    for key in rng.choice(free, size=int(rng.integers(1, 4)), replace=False):
        d[str(key)] = str(rng.choice(ATTRIBUTES[str(key)]))
    return BirdSpec(**d), genus, habitat


__all__ = ["COLOURS", "GENUS_KEYS", "generate_species", "genus_forms", "genus_of", "random_corpus_bird", "spec_of"]

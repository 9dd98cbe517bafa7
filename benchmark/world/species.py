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

import numpy as np

from benchmark.world.render import ATTRIBUTES, COLOURS, BirdSpec

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


def random_corpus_spec(rng: np.random.Generator) -> BirdSpec:
    """An arbitrary attribute combination for the pretraining corpus (crown/wing may equal body)."""
    return _random_spec(rng)


__all__ = ["COLOURS", "generate_species", "random_corpus_spec", "spec_of"]

"""The embedded world's datasets as ``ImageSource`` objects (reader id ``world``).

A world card (``datasets/toybirds.toml``, ``toywaterbirds.toml``, ``toycorpus.toml``) declares the
species table, the image size, the per-class split sizes and how contexts are drawn per split.
Every image is rendered on the fly from a seed derived from ``(card id, split, label, index)``:
the same id always gives the same pixels on every machine, and nothing is downloaded.

Context policies per split (``[world.splits.<split>]``):

* ``habitat_consistency = q``: with probability ``q`` the context matches the species' habitat
  (water species on water backgrounds), otherwise it is drawn from the other habitat. Natural
  photos of birds are strongly habitat-consistent; the Waterbirds analogue uses q = 0.95 for
  training (METHODS_SPEC §6.3, group_DRO's 95% correlation).
* ``balanced_places = true``: background type alternates with the image index, so every species
  appears equally on land and water (the Waterbirds test split: four balanced groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from augbench.data.cards import DatasetCard
from augbench.data.core import DataError, ImageSource, Sample
from augbench.run.seeding import derive_seed
from augbench.world.render import (
    LAND_CONTEXTS,
    RENDER_VERSION,
    WATER_CONTEXTS,
    Scene,
    caption,
    render_scene,
    sample_scene,
)
from augbench.world.species import random_corpus_bird, spec_of


@dataclass(frozen=True)
class WorldItem:
    """Everything known about one world image: its scene, caption and labels."""

    image_id: str
    label: int
    scene: Scene
    caption: str

    @property
    def attrs(self) -> dict:
        y = 1 if self.habitat == "water" else 0
        place = 1 if self.scene.background == "water" else 0
        return {"y": y, "place": place, "group": f"{y}{place}", "context": self.scene.context,
                "caption": self.caption}

    habitat: str = "land"


class WorldSource(ImageSource):
    """Procedural dataset described by a world card."""

    revision = f"render-{RENDER_VERSION}"

    def __init__(self, card: DatasetCard, data_root: Path | None = None, image_size: int | None = None):
        super().__init__(card)
        world = card.raw.get("world")
        if not isinstance(world, dict):
            raise DataError(f"{card.path}: a card with reader 'world' needs a [world] table")
        self.world = world
        self.mode = world.get("mode", "species")
        self.image_size = int(image_size or world.get("image_size", 64))
        self.split_cfg: dict[str, dict] = dict(world.get("splits", {}))
        if not self.split_cfg:
            raise DataError(f"{card.path}: [world.splits.<name>] tables are missing")
        if self.mode == "species":
            table = world.get("species", [])
            if [s["name"] for s in table] != list(card.class_names):
                raise DataError(f"{card.path}: [[world.species]] names must equal the class list, in order")
            self.species = [spec_of(s) for s in table]
            self.habitats = [s["habitat"] for s in table]
        elif self.mode != "corpus":
            raise DataError(f"{card.path}: world.mode must be 'species' or 'corpus', not {self.mode!r}")
        self._item = lru_cache(maxsize=4096)(self._make_item)

    # --- ImageSource ------------------------------------------------------------------------
    def split_names(self) -> list[str]:
        return list(self.split_cfg)

    def split_size(self, split: str) -> int:
        self._check_split(split)
        cfg = self.split_cfg[split]
        if self.mode == "corpus":
            return int(cfg["size"])
        return int(cfg["per_class"]) * self.num_classes

    def samples(self, split: str) -> list[Sample]:
        self._check_split(split)
        out = []
        if self.mode == "corpus":
            for i in range(self.split_size(split)):
                out.append(Sample(f"{split}/{i:06d}", 0, {}))
            return out
        per_class = int(self.split_cfg[split]["per_class"])
        for label in range(self.num_classes):  # class-major order, documented and stable
            for i in range(per_class):
                item = self.item(f"{split}/{label:03d}/{i:04d}")
                out.append(Sample(item.image_id, label, item.attrs))
        return out

    def load_image(self, image_id: str) -> Image.Image:
        return Image.fromarray(self.render(image_id))

    # --- world specifics --------------------------------------------------------------------
    def item(self, image_id: str) -> WorldItem:
        return self._item(image_id)

    def render(self, image_id: str, size: int | None = None) -> np.ndarray:
        """The image as an HxWx3 uint8 array (optionally at another size)."""
        return render_scene(self.item(image_id).scene, size or self.image_size)

    def captions(self, image_ids) -> list[str]:
        return [self.item(i).caption for i in image_ids]

    def _parse_id(self, image_id: str) -> tuple[str, int, int]:
        parts = image_id.split("/")
        try:
            if self.mode == "corpus" and len(parts) == 2:
                return parts[0], 0, int(parts[1])
            if self.mode == "species" and len(parts) == 3:
                return parts[0], int(parts[1]), int(parts[2])
        except ValueError:
            pass
        raise DataError(f"{self.card.id}: malformed image id {image_id!r}")

    def _make_item(self, image_id: str) -> WorldItem:
        split, label, index = self._parse_id(image_id)
        self._check_split(split)
        seed = derive_seed("augbench-world", self.card.id, split, label, index)
        rng = np.random.default_rng(seed)
        cfg = self.split_cfg[split]
        if self.mode == "corpus":
            spec, genus, habitat = random_corpus_bird(rng, float(self.world.get("genus_share", 0.25)))
            context = None
            if habitat is not None:  # genus birds mostly appear in their habitat, as gulls do over water
                own = WATER_CONTEXTS if habitat == "water" else LAND_CONTEXTS
                other = LAND_CONTEXTS if habitat == "water" else WATER_CONTEXTS
                context = str(rng.choice(list(own if rng.random() < 0.9 else other)))
            scene = sample_scene(spec, rng, context)
            return WorldItem(image_id, 0, scene, caption(scene, rng, genus), habitat=habitat or "none")
        if not (0 <= label < self.num_classes and 0 <= index < int(cfg["per_class"])):
            raise DataError(f"{self.card.id}: image id {image_id!r} is out of range for split {split!r}")
        scene = self._species_scene(label, rng, cfg, index)
        return WorldItem(image_id, label, scene, caption(scene), habitat=self.habitats[label])

    def _species_scene(self, label: int, rng: np.random.Generator, cfg: dict, index: int) -> Scene:
        """A scene of species ``label`` with the context policy of a split's ``cfg`` (module docstring)."""
        habitat = self.habitats[label]
        own = WATER_CONTEXTS if habitat == "water" else LAND_CONTEXTS
        other = LAND_CONTEXTS if habitat == "water" else WATER_CONTEXTS
        if cfg.get("balanced_places"):
            pool = own if index % 2 == 0 else other
        else:
            pool = own if rng.random() < float(cfg.get("habitat_consistency", 1.0)) else other
        context = str(rng.choice(list(pool)))
        return sample_scene(self.species[label], rng, context)

    def fresh_scene(self, label: int, rng: np.random.Generator, split: str = "train") -> Scene:
        """A new scene of species ``label`` drawn from ``rng`` with ``split``'s context policy (its habitat
        consistency: Waterbirds' training correlation), for a generator that renders the world itself
        (``augbench.methods.world_renders``): no image of any split is reused, since the split items' seeds
        come from their own namespace (``derive_seed("augbench-world", card, split, label, index)``)."""
        self._check_split(split)
        if self.mode != "species" or not 0 <= label < self.num_classes:
            raise DataError(f"{self.card.id}: no species {label} to render (mode {self.mode!r}, "
                            f"{self.num_classes} classes)")
        return self._species_scene(label, rng, self.split_cfg[split], int(rng.integers(0, 2**31)))

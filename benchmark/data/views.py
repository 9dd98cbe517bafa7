"""Views of a dataset that a suite's scale knobs ask for (``[suite] classes``; README "Before a long sd15 run").

:class:`FirstClasses` is a dataset restricted to its first ``n`` classes in official label order: the
card lists only those names, every split only their images (labels unchanged, so ``0 .. n-1``), and
the pixel revision names the restriction. The revision is written into every subset manifest, so every
stage key built on the view differs from the whole dataset's (a concept artifact with 3 class tokens
is never mistaken for one with 200). A rehearsal uses it to run every stage of the real code path on
a few classes in minutes; the protocols, methods and classifier see an ordinary ``ImageSource``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PIL import Image

from augbench.data.core import DataError, ImageSource, Sample

__all__ = ["FirstClasses", "first_classes"]


class FirstClasses(ImageSource):
    """``source`` restricted to its first ``n`` classes (module docstring)."""

    def __init__(self, source: ImageSource, n: int):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise DataError(f"classes = {n!r}: expected a whole number >= 1 (the first N classes of the dataset)")
        if n >= source.num_classes:
            raise DataError(f"FirstClasses({source.card.id!r}, {n}): the dataset has {source.num_classes} classes; "
                            "use first_classes(), which returns the dataset itself then")
        card = dataclasses.replace(source.card, class_names=tuple(source.card.class_names[:n]))
        super().__init__(card)
        self.base, self.n = source, n
        self.revision = f"{source.revision}+first{n}classes" if source.revision else f"first{n}classes"

    def split_names(self) -> list[str]:
        return self.base.split_names()

    def samples(self, split: str) -> list[Sample]:
        return [s for s in self.base.samples(split) if s.label < self.n]

    def load_image(self, image_id: str) -> Image.Image:
        return self.base.load_image(image_id)

    def __getattr__(self, name: str) -> Any:
        # reader-specific extras (the world's ground-truth ``captions``, a card's layout helpers)
        if name in ("base", "n"):
            raise AttributeError(name)
        return getattr(self.base, name)


def first_classes(source: ImageSource, n: int | None) -> ImageSource:
    """At most the first ``n`` classes of ``source``: ``source`` itself when ``n`` is ``None`` or the dataset
    has no more than ``n`` classes (Waterbirds' two under a rehearsal's ``classes = 3``), else :class:`FirstClasses`."""
    if n is None or (isinstance(n, int) and not isinstance(n, bool) and n >= source.num_classes):
        return source
    return FirstClasses(source, n)

"""World renders: the embedded world's own renderer as the generator -- the table's ceiling row (issue 24).

Not an augmentation method. Every image is a *fresh* render of the requested class by the renderer that
made the dataset (``augbench.world.datasets.WorldSource.fresh_scene``: the species' own drawing, a context
drawn with the training split's habitat policy, a seed from the request -- never an image of any split),
so it is what a perfect generator would add: the gain a method could reach on this world. ``wrong = q``
renders a share ``q`` of the images from another class (uniform over the others) while labelling them as
the requested class -- a generator whose images are right ``1 - q`` of the time, the dose-response of label
noise beside which the methods' oracle fidelity (Fid.) reads. Presets ``wrong10`` ... ``wrong50``.

Only world cards can be rendered: another dataset (or a profile without the world, such as sd15) is a
``ConfigError`` naming the dataset and the profile. Training integration as the issue's measurement:
same-class replacement, p = 0.5, hard labels (METHODS_SPEC §4 (a)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from augbench.contract import (
    ConfigError,
    GenerationRequest,
    MethodCard,
    MethodConfig,
    MethodContext,
    OfflineMethod,
    SyntheticSample,
    TrainingIntegration,
    param,
)
from augbench.diffusion.sampling import ALLOCATIONS, plan_text_to_image

if TYPE_CHECKING:
    from augbench.data.core import Subset

__all__ = ["WRONG_PRESETS", "WorldRenders", "WorldRendersConfig"]

#: the label-noise doses of the reference curve: preset ``wrong<percent>`` renders that share from another class
WRONG_PRESETS = (0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class WorldRendersConfig(MethodConfig):
    expansion: float = param(1.0, "synthetic set size as a multiple of the real subset size")
    allocation: str = param("proportional", "how images are allotted to classes", choices=ALLOCATIONS)
    wrong: float = param(0.0, "share of images rendered from another class but labelled as the requested one")
    split: str = param("train", "the split whose context policy fresh renders follow (Waterbirds: 95 % habitat)")

    def validate(self) -> None:
        super().validate()
        if self.expansion < 0:
            raise ValueError(f"expansion must be >= 0, got {self.expansion}")
        if not 0.0 <= self.wrong <= 1.0:
            raise ValueError(f"wrong = {self.wrong}: expected a share in [0, 1] (e.g. 0.3: 30 % wrong-class renders)")


class WorldRenders(OfflineMethod):
    """Fresh ground-truth renders of each class (the ceiling reference; module docstring)."""

    family: ClassVar[str] = "world_renders"
    Config: ClassVar[type[MethodConfig]] = WorldRendersConfig
    presets: ClassVar[dict] = {f"wrong{round(q * 100)}": {"wrong": q} for q in WRONG_PRESETS}
    card: ClassVar[MethodCard] = MethodCard(
        summary="Ceiling reference (not an augmentation method): fresh renders of each class by the embedded "
                "world's own renderer, a perfect generator; wrong = q makes a share q of them wrong-class",
        changes="adds new, correctly drawn images of every class (a share `wrong` from another class)",
        labels="hard: the requested class (also for the wrong-class renders: label noise)",
        cost="the world's procedural renderer only (milliseconds per image, no model)",
        references=("issue 24", "DESIGN.md 'The embedded world'", "METHODS_SPEC §4 (a)"),
        training=TrainingIntegration(replacement_mode="same_class", replacement_p=0.5, labels="hard"),
    )

    @staticmethod
    def contract_test_source():
        """The contract tests' dataset: the first 3 species of toybirds (the renderer needs a world card)."""
        from augbench.data import open_dataset
        from augbench.data.views import first_classes

        return first_classes(open_dataset("toybirds"), 3)

    def required_models(self, profile) -> dict[str, str]:
        return {}  # the renderer is code, not a model

    def setup(self, subset: Subset, ctx: MethodContext) -> None:
        self._world(ctx)

    def _world(self, ctx: MethodContext):
        source = ctx.source
        if source is None or not callable(getattr(source, "fresh_scene", None)):
            dataset = getattr(getattr(source, "card", None), "id", None) or getattr(ctx.card, "id", "?")
            raise ConfigError(f"world_renders renders the embedded world's own images; dataset {dataset!r} "
                              f"(profile {ctx.profile.name!r}) is not a world card -- run it on the embedded "
                              "profile's world datasets (toybirds, toywaterbirds, ...)")
        return source

    def plan(self, subset: Subset, budget: int | None, seed: int, *,
             ctx: MethodContext | None = None) -> list[GenerationRequest]:
        """Requests ordered by class, ``budget`` (default ``round(expansion * |subset|)``) in total."""
        num_classes = ctx.num_classes if ctx is not None and ctx.card is not None else max(subset.labels, default=-1) + 1
        return plan_text_to_image(lambda i: self.request_seed(seed, i), subset, budget,
                                  expansion=self.config.expansion, allocation=self.config.allocation,
                                  num_classes=num_classes)

    def generate(self, requests: Sequence[GenerationRequest], ctx: MethodContext) -> list[SyntheticSample]:
        from augbench.world.render import render_scene

        world = self._world(ctx)
        size = int(getattr(world, "image_size", None) or ctx.profile.image_size)
        out = []
        for request in requests:
            rng = np.random.default_rng(request.seed)
            rendered, wrong = self.rendered_class(request.target_class, ctx.num_classes, rng)
            image = render_scene(world.fresh_scene(rendered, rng, self.config.split), size)
            label = np.zeros(ctx.num_classes, dtype=np.float32)
            label[request.target_class] = 1.0
            out.append(SyntheticSample(image, label, self.sample_provenance(
                request, rendered_class=rendered, wrong_class=wrong)))
        return out

    def rendered_class(self, target: int, num_classes: int, rng: np.random.Generator) -> tuple[int, bool]:
        """The class drawn for a request of ``target``: itself, or with probability ``wrong`` another one.

        Two draws per request whatever ``wrong`` is, so the presets are paired: the same requests are wrong
        in ``wrong30`` as in ``wrong50`` wherever the smaller share marks them, and the scene draws after
        them are the same."""
        u, pick = rng.random(), int(rng.integers(0, max(num_classes - 1, 1)))
        if u >= self.config.wrong or num_classes < 2:
            return target, False
        return (pick if pick < target else pick + 1), True

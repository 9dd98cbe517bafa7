"""Sampler study (issue 14, item 1): faithfulness against sampler steps and guidance scale.

Text-to-image faithfulness (the world's oracle recognises the prompted species) and img2img fidelity
at strength 0.5 for a grid of DPM-Solver++ step counts and classifier-free guidance scales, with the
same prompts, seeds and oracle as ``augbench world check``. It also answers issue 15's question of
how few sampler steps the tiny UNet needs (generation cost is linear in the steps).

    python -m tools.world_studies.sampler [--weights DIR] [--steps 10 15 25] [--guidance 3 5 7.5 10]

Results are appended to ``out/studies/sampler.jsonl``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from augbench.run.profiles import WORLD_WEIGHTS
from augbench.run.seeding import derive_seed
from tools.world_studies.common import Results


def main(argv: list[str] | None = None) -> None:
    from augbench.data import open_dataset
    from augbench.world.check import (
        classify,
        evenly_spaced,
        generate,
        img2img,
        load_oracle,
        load_world_pipeline,
    )
    from augbench.world.render import describe
    from augbench.world.species import spec_of

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=WORLD_WEIGHTS)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 15, 25])
    p.add_argument("--guidance", type=float, nargs="+", default=[3.0, 5.0, 7.5, 10.0])
    p.add_argument("--per-species", type=int, default=4, help="generated images per species and prompt kind")
    p.add_argument("--img2img-images", type=int, default=96)
    p.add_argument("--out", type=Path, default=Path("out/studies/sampler.jsonl"))
    args = p.parse_args(argv)

    toy = open_dataset("toybirds")
    pipe = load_world_pipeline(args.weights)
    oracle, norm = load_oracle(args.weights)
    table = toy.card.raw["world"]["species"]
    names = [toy.card.prompt(c) for c in range(toy.num_classes)]
    descriptions = [f"a photo of a {describe(spec_of(s))}" for s in table]
    k = args.per_species
    labels = np.repeat(np.arange(toy.num_classes), k)
    seeds = [derive_seed(0, "world-check", int(c), j) for c in range(toy.num_classes) for j in range(k)]
    test = toy.samples("test")
    pick = evenly_spaced(len(test), args.img2img_images)
    real = np.stack([toy.render(test[i].image_id) for i in pick])
    real_labels = np.array([test[i].label for i in pick])
    i2i_seeds = [derive_seed(0, "world-check-img2img", int(i)) for i in range(len(pick))]
    results = Results(args.out)
    for steps in args.steps:
        for guidance in args.guidance:
            row = {"weights": str(args.weights), "steps": steps, "guidance": guidance, "images": len(labels)}
            t = time.time()
            for kind, prompts in (("plain_name", names), ("description", descriptions)):
                imgs = generate(pipe, [prompts[c] for c in labels], seeds, steps, guidance, 48, toy.image_size)
                row[f"faithfulness_{kind}"] = float((classify(oracle, norm, imgs) == labels).mean())
            edits = img2img(pipe, real, [names[c] for c in real_labels], i2i_seeds, 0.5, steps, guidance, 48)
            row["img2img_fidelity_0.5"] = float((classify(oracle, norm, edits) == real_labels).mean())
            row["seconds"] = time.time() - t
            results.add(**row)


if __name__ == "__main__":
    main()

"""Random weights in the sd15 profile's real architectures, and a CUB-layout dataset, for a rehearsal on a CPU.

Writes, under ``--out`` (default ``runs/random_sd15``):

* ``sd15/`` -- a diffusers ``StableDiffusionPipeline`` in SD1.5's architecture (UNet 320/640/1280/1280,
  cross-attention 768, SD's ``AutoencoderKL``, a CLIP-L text encoder with the real tokenizer, PNDM),
  random weights (``augbench.testing.sd15_shaped``, size ``full``; ~4.3 GB fp32);
* ``clip/`` -- a random OpenAI CLIP ViT-B/32 (``CLIPModel``), the profile's scorer;
* ``resnet50.safetensors`` -- random timm ``resnet50`` weights (the classifier's "pretrained" weights);
* ``alexnet.pth`` -- random torchvision AlexNet weights (lpips' backbone; its linear layers ship in lpips);
* ``data/CUB_200_2011/`` -- the official CUB layout with the real class list, ``--classes`` classes of
  ``--train`` + ``--test`` random 320x240 JPEGs each (a rehearsal uses the first 3 classes);
* ``few_shot.toml`` -- the built-in few_shot suite with one change: Diff-II reads its prompt suffixes from
  ``suffixes.txt`` (``suffix_source = "file"``), because its sd15 default, BLIP captions summarised by a
  text model, needs models no offline CPU box has (``augbench models check`` lists them for a real run);

and prints the environment variables that point the sd15 profile at them. Then, on 2 CPU cores::

    python -m tools.make_random_sd15 --out runs/random_sd15
    eval "$(python -m tools.make_random_sd15 --out runs/random_sd15 --print-env)"
    augbench run --suite runs/random_sd15/few_shot.toml --profile sd15 --rehearsal --datasets cub --device cpu \
        --data-root runs/random_sd15/data

Nothing is downloaded; building takes a few minutes (most of it initialising 1.1 B random parameters).
Numbers of such a run mean nothing -- it shows that every stage, model and method of the sd15 path runs,
how long each stage takes and how much memory it needs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ENV = {
    "AUGBENCH_SD15_PIPELINE": "sd15",
    "AUGBENCH_SD15_CLIP": "clip",
    "AUGBENCH_SD15_CLASSIFIER_WEIGHTS": "resnet50.safetensors",
    "AUGBENCH_SD15_ALEXNET": "alexnet.pth",
    "AUGBENCH_SD15_INSTRUCT_PIPELINE": "instruct_pix2pix",
}


def build(out: Path, classes: int, train: int, test: int) -> None:
    import timm
    import torch
    import torchvision
    from safetensors.torch import save_file

    from augbench.testing.sd15_shaped import (
        save_sd15_shaped_clip,
        save_sd15_shaped_instruct_pipeline,
        save_sd15_shaped_pipeline,
    )

    out.mkdir(parents=True, exist_ok=True)
    steps = [
        ("sd15", lambda: save_sd15_shaped_pipeline(out / "sd15", "full")),
        ("instruct_pix2pix", lambda: save_sd15_shaped_instruct_pipeline(out / "instruct_pix2pix", "full")),
        ("clip", lambda: save_sd15_shaped_clip(out / "clip", "full")),
        ("resnet50", lambda: (out / "resnet50.safetensors").is_file() or save_file(
            timm.create_model("resnet50", pretrained=False).state_dict(), str(out / "resnet50.safetensors"))),
        ("alexnet", lambda: (out / "alexnet.pth").is_file() or torch.save(
            torchvision.models.alexnet(weights=None).state_dict(), out / "alexnet.pth")),
        ("cub", lambda: _cub(out / "data", classes, train, test)),
        ("suite", lambda: write_rehearsal_suite(out / "few_shot.toml", out / "suffixes.txt")),
    ]
    for name, step in steps:
        t = time.time()
        step()
        print(f"{name}: {time.time() - t:.1f} s", file=sys.stderr)


def _cub(data_root: Path, classes: int, train: int, test: int) -> None:
    if (data_root / "CUB_200_2011" / "images.txt").is_file():
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fixtures_real import make_cub  # the tests' writer of the official layout

    make_cub(data_root, n_classes=classes, train_per_class=train, test_per_class=test, image_size=(320, 240))


#: scene phrases for Diff-II's first denoising stage in a rehearsal without a captioner (METHODS_SPEC §3.10.4)
REHEARSAL_SUFFIXES = ("perched on a branch", "standing on the ground", "flying in the sky", "swimming in water")
_DIFF_II_SD15 = "[profiles.sd15.methods_params.diff_ii]\n"


def write_rehearsal_suite(path: Path, suffix_file: Path) -> Path:
    """The built-in few_shot suite with Diff-II's sd15 suffixes read from ``suffix_file`` (written here)."""
    from augbench.run.suites import suite_path

    suffix_file.write_text("".join(f"{s}\n" for s in REHEARSAL_SUFFIXES), encoding="utf-8")
    text = suite_path("few_shot").read_text(encoding="utf-8")
    if text.count(_DIFF_II_SD15) != 1:
        raise SystemExit(f"few_shot.toml has no single {_DIFF_II_SD15.strip()} table to add the suffix file to")
    lines = f'suffix_source = "file"\nsuffix_file = "{suffix_file.resolve()}"\n'
    path.write_text(text.replace(_DIFF_II_SD15, _DIFF_II_SD15 + lines), encoding="utf-8")
    return path


def env_lines(out: Path) -> list[str]:
    return [f"export {name}={(out / rel).resolve()}" for name, rel in ENV.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", default="runs/random_sd15", help="output folder (default runs/random_sd15)")
    p.add_argument("--classes", type=int, default=3, help="CUB classes with images (default 3)")
    p.add_argument("--train", type=int, default=6, help="training images per class (default 6)")
    p.add_argument("--test", type=int, default=4, help="test images per class (default 4)")
    p.add_argument("--print-env", action="store_true", help="only print the export lines (for eval)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.print_env:
        build(out, args.classes, args.train, args.test)
    print("\n".join(env_lines(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

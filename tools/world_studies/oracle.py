"""Oracle robustness study (issue 14): is "the VAE loses the species" the VAE's fault or the oracle's?

The committed oracle was fine-tuned on sharp rendered images only. This study measures it, and an
oracle fine-tuned with the same recipe plus mild photometric degradations (random 2x down/up
sampling, 3x3 box blur, Gaussian noise; never VAE outputs, never generated images), on real test
images, on degraded test images and on reconstructions by the committed VAE.

    python -m tools.world_studies.oracle [--epochs 4] [--per-class 200]

Results are appended to ``out/studies/oracle.jsonl``; the trained oracle is saved to
``out/studies/oracle_robust.pt``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tools.world_studies.common import Results, psnr, single_thread, test_set


def degrade(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """``build.degrade_images`` (moved there; same draws)."""
    from augbench.world.build import degrade_images

    return degrade_images(x, gen, p)


def train_robust(per_class: int, epochs: int, batch: int = 64, lr: float = 2e-3, seed: int = 0):
    """``build.train_oracle``'s recipe plus :func:`degrade` on half the images."""
    from augbench.training.backbones import create_classifier
    from augbench.world.build.loops import cosine_with_warmup
    from augbench.world.build.oracle import oracle_images

    images, labels = oracle_images(per_class, 64)
    torch.manual_seed(seed)
    spec = create_classifier("tf_efficientnet_lite0", int(labels.max()) + 1, "efficientnet_lite0_pypi")
    model = spec.model.train()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (spec.mean, spec.std))
    steps = epochs * math.ceil(len(images) / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = cosine_with_warmup(opt, steps, warmup=max(1, steps // 20))
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), batch):
            idx = perm[i:i + batch]
            x = images[idx].float() / 255.0
            if torch.rand((), generator=gen) < 0.5:
                x = x.flip(3)
            x = degrade(x, gen)
            loss = F.cross_entropy(model((x - mean) / std), labels[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        print(f"[oracle_robust] epoch {epoch + 1}/{epochs} loss {float(loss):.3f} ({time.time() - t0:.0f}s)", flush=True)
    return model.eval(), (tuple(spec.mean), tuple(spec.std)), time.time() - t0


@torch.no_grad()
def probes(test_imgs: np.ndarray) -> dict[str, np.ndarray]:
    from augbench.run.profiles import WORLD_WEIGHTS
    from augbench.world.check import load_world_pipeline, vae_reconstruct

    x = torch.from_numpy(test_imgs).permute(0, 3, 1, 2).float()

    def u8(y):
        return y.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    out = {"real": test_imgs}
    for f in (2, 4):
        down = F.interpolate(x, scale_factor=1 / f, mode="bilinear", antialias=True)
        out[f"down{f}_up"] = u8(F.interpolate(down, scale_factor=f, mode="bilinear"))
    out["box_blur_3x3"] = u8(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), torch.ones(3, 1, 3, 3) / 9, groups=3))
    g = torch.Generator().manual_seed(0)
    out["gaussian_noise_16"] = u8(x + 16 * torch.randn(x.shape, generator=g))
    out["committed_vae"] = vae_reconstruct(load_world_pipeline(WORLD_WEIGHTS).vae, test_imgs)
    for path in sorted(Path("out/studies").glob("vae_*.pt")):
        from tools.world_studies.vae import load_trained

        out[f"study_{path.stem}"] = vae_reconstruct(load_trained(path), test_imgs)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--test-images", type=int, default=240)
    ap.add_argument("--out", default="out/studies/oracle.jsonl")
    ap.add_argument("--load", default=None, help="evaluate a saved robust oracle instead of training one")
    args = ap.parse_args(argv)
    single_thread()
    from augbench.run.profiles import WORLD_WEIGHTS
    from augbench.world.check import classify, load_oracle
    from tools.world_studies.vae import attribute_errors

    results = Results(args.out)
    test_imgs, test_labels = test_set(args.test_images)
    sets = probes(test_imgs)
    oracles = {"committed": load_oracle(WORLD_WEIGHTS)}
    if args.load:
        model, norm = load_oracle(WORLD_WEIGHTS)
        model.load_state_dict(torch.load(args.load, weights_only=True))
        oracles["robust"] = (model.eval(), norm)
    else:
        model, norm, seconds = train_robust(args.per_class, args.epochs)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), Path(args.out).parent / "oracle_robust.pt")
        oracles["robust"] = (model, norm)
        results.add(study="oracle", run="robust_train", seconds=round(seconds, 1), epochs=args.epochs,
                    per_class=args.per_class)
    for name, (model, norm) in oracles.items():
        for probe, imgs in sets.items():
            pred = classify(model, norm, imgs)
            results.add(study="oracle", oracle=name, probe=probe, accuracy=float((pred == test_labels).mean()),
                        psnr=psnr(imgs, test_imgs), attributes=attribute_errors(pred, test_labels),
                        n=len(test_labels))


if __name__ == "__main__":
    main()

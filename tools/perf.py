"""Performance ratios of the harness's default optimisations (PERF_NOTES §6); ``nox -s perf``.

Each section is a function that measures one optimisation against its naive reference on the
current machine and returns a JSON-ready dict; ``main`` prints them. No section asserts anything
about time: the numbers are for humans (tests check equivalence, never speed).

Usage::

    python -m tools.perf                 # all sections
    python -m tools.perf --section lpips --lpips-n 32 --lpips-size 64
    python -m tools.perf --section noisecutmix_step --ncm-batch 8 --threads 1
    python -m tools.perf --section sd15_unet          # on a CUDA machine: SD1.5 UNet images/s and MFU
    python -m tools.perf --section stage_memory --memory-suite few_shot --memory-profile sd15 --rehearsal \
        --memory-datasets cub --data-root /data   # peak memory and seconds of each stage of a run

The last line printed is a Markdown table of every section's headline ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from augbench.testing.sd15_shaped import unet_config

__all__ = ["SECTIONS", "generation_batched_vs_single", "lpips_gram_vs_naive", "main", "noisecutmix_step_vs_cfg_step",
           "process_pool_vs_serial", "sd15_unet_throughput", "stage_memory", "summary_table"]


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def lpips_gram_vs_naive(n: int = 32, size: int = 64, repeats: int = 1, device: str = "cpu") -> dict[str, Any]:
    """All-pairs LPIPS for ``n`` images: per-image features + Gram matrices vs one pass per pair.

    Uses the ``lpips`` package AlexNet with a random trunk (no download; the calibrated linear
    layers shipped with the package), METHODS_SPEC §7.2 / PERF_NOTES §6 item 12.

    Args:
        n: number of images (``n (n - 1) / 2`` pairs).
        size: image side fed to the network.
        repeats: timing repeats (best of).
        device: ``cpu`` or ``cuda``.

    Returns:
        Times of both methods, their ratio (naive / Gram, i.e. the speed-up) and the max difference.
    """
    from augbench.metrics.perceptual import lpips_alex, lpips_pairwise_naive
    from augbench.run.seeding import make_generator

    with torch.random.fork_rng():
        torch.manual_seed(0)
        dist = lpips_alex(pretrained_trunk=False, size=size, device=device)
    g = make_generator(0)
    x = (torch.rand(n, 3, size, size, generator=g) * 255).round().to(torch.uint8)
    t_gram, gram = _best_of(lambda: dist.pairwise(x), repeats)
    t_naive, naive = _best_of(lambda: lpips_pairwise_naive(dist.module, x, size=size), repeats)
    return {
        "section": "lpips",
        "n_images": n,
        "n_pairs": n * (n - 1) // 2,
        "size": size,
        "device": device,
        "gram_s": round(t_gram, 4),
        "naive_s": round(t_naive, 4),
        "speedup_naive_over_gram": round(t_naive / t_gram, 2),
        "ratio_gram_over_naive": round(t_gram / t_naive, 4),
        "max_abs_diff": float((gram - naive).abs().max()),
    }


def generation_batched_vs_single(n: int = 32, steps: int = 10, batch: int | None = None, repeats: int = 1,
                                 device: str = "cpu") -> dict[str, Any]:
    """Text-to-image: the harness's path vs the anchors' per-image loop (PERF_NOTES §6 items 1-3).

    Harness: requests batched ``batch`` at a time, prompt embeddings encoded once and cached, CFG's
    unconditional and conditional branches in one UNet call. Naive: one image per call with the prompt
    re-encoded every time (what Diff-Mix / DA-Fusion / Diff-II do). Uses the embedded world's pipeline
    when it is committed, else a tiny pipeline built from configs. Both give the same images (one
    generator per image), so the ratio is pure overhead. ``batch`` defaults to the runner's
    (``stages.GENERATION_BATCH``): the ratio is the one a suite run gets.
    """
    from augbench.diffusion.pipelines import PromptEmbeddingCache, text_to_image, to_uint8
    from augbench.run.seeding import make_generator
    from augbench.run.stages import GENERATION_BATCH

    batch = batch or GENERATION_BATCH

    pipe, size, source = _perf_pipeline(device)
    prompts = [f"a photo of a bird number {i % 4}" for i in range(n)]

    def harness():
        cache = PromptEmbeddingCache(pipe)
        out = []
        for i in range(0, n, batch):
            chunk = prompts[i:i + batch]
            out.append(text_to_image(pipe, cache.get(chunk), cache.get([""] * len(chunk)),
                                     [make_generator(k) for k in range(i, i + len(chunk))],
                                     num_inference_steps=steps, guidance_scale=7.5, height=size, width=size))
        return np.concatenate(out)

    def naive():
        out = []
        for k, prompt in enumerate(prompts):
            img = pipe(prompt, num_inference_steps=steps, guidance_scale=7.5, height=size, width=size,
                       generator=make_generator(k), output_type="np").images
            out.append(to_uint8(img))
        return np.concatenate(out)

    t_h, a = _best_of(harness, repeats)
    t_n, b = _best_of(naive, repeats)
    return {
        "section": "generation", "pipeline": source, "n_images": n, "steps": steps, "batch": batch, "size": size,
        "harness_s": round(t_h, 3), "naive_s": round(t_n, 3), "harness_img_per_s": round(n / t_h, 2),
        "speedup_naive_over_harness": round(t_n / t_h, 2),
        "max_abs_pixel_diff": int(np.abs(a.astype(int) - b.astype(int)).max()),
    }


def _perf_pipeline(device: str):
    """The embedded world's pipeline when it is committed (64 px), else the tiny one from configs (32 px)."""
    from diffusers import StableDiffusionPipeline

    from augbench.diffusion.pipelines import ready_for_sampling
    from augbench.run.profiles import WORLD_WEIGHTS

    if (WORLD_WEIGHTS / "sd" / "model_index.json").exists():
        path, size, source = WORLD_WEIGHTS / "sd", 64, "embedded world"
    else:
        from augbench.testing import cached_tiny_sd_pipeline

        path, size, source = cached_tiny_sd_pipeline(), 32, "tiny random pipeline"
    pipe = StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True, torch_dtype=torch.float32,
                                                   safety_checker=None, requires_safety_checker=False)
    return ready_for_sampling(pipe, device), size, source


def noisecutmix_step_vs_cfg_step(batch: int = 8, repeats: int = 10, device: str = "cpu") -> dict[str, Any]:
    """One NoiseCutMix denoising step against one plain CFG step on the same batch and pipeline.

    NoiseCutMix (METHODS_SPEC §3.9) evaluates ``[uncond, prompt_A, prompt_B]`` in one UNet call and mixes
    ``M eps_A + (1 - M) eps_B`` before guidance; plain CFG (SD-random, §1.2) evaluates ``[uncond, prompt]``.
    Both run one DPM-Solver++ step through ``augbench.diffusion.pipelines.denoise`` from the same latents, so the
    ratio is the cost of the third branch plus the mixing (1.5 if the UNet scaled linearly; target <= 1.6).
    Best of ``repeats`` after one warm-up call each; the two are interleaved so load drifts hit both.
    """
    from augbench.diffusion.pipelines import PromptEmbeddingCache, denoise, make_scheduler
    from augbench.run.seeding import make_generator

    pipe, size, source = _perf_pipeline(device)
    pipe.scheduler = make_scheduler("dpmsolver++", pipe.scheduler.config)
    cache = PromptEmbeddingCache(pipe)
    emb_a = cache.get([f"a photo of a bird number {i % 4}" for i in range(batch)])
    emb_b = cache.get([f"a photo of a bird number {(i + 1) % 4}" for i in range(batch)])
    negative = cache.get([""] * batch)
    factor = pipe.vae_scale_factor
    g = make_generator(0)
    latents = torch.randn(batch, pipe.unet.config.in_channels, size // factor, size // factor, generator=g).to(device)
    masks = torch.zeros(batch, 1, size // factor, size // factor, device=device)
    masks[:, :, : size // factor // 2] = 1.0  # the mask's values do not change the cost

    def mix(step):
        eps_a, eps_b = step.eps_cond
        return step.guided(masks * eps_a + (1 - masks) * eps_b)

    def noisecutmix_step():
        return denoise(pipe, latents, [emb_a, emb_b], negative, num_inference_steps=1, guidance_scale=7.5,
                       noise_hook=mix)

    def cfg_step():
        return denoise(pipe, latents, emb_a, negative, num_inference_steps=1, guidance_scale=7.5)

    unet_started: list[float] = []
    unet_seconds: list[float] = []
    hooks = [pipe.unet.register_forward_pre_hook(lambda *_: unet_started.append(time.perf_counter())),
             pipe.unet.register_forward_hook(lambda *_: unet_seconds.append(time.perf_counter() - unet_started[-1]))]
    noisecutmix_step(), cfg_step()  # warm-up (allocator, kernels)
    best = {"noisecutmix": (float("inf"), 0.0), "cfg": (float("inf"), 0.0)}
    for _ in range(repeats):  # interleaved, best of repeats; the UNet's share is timed inside the same call
        for name, fn in (("noisecutmix", noisecutmix_step), ("cfg", cfg_step)):
            unet_seconds.clear()
            seconds = _best_of(fn, 1)[0]
            best[name] = min(best[name], (seconds, unet_seconds[0]))
    for hook in hooks:
        hook.remove()
    (t_ncm, unet_ncm), (t_cfg, unet_cfg) = best["noisecutmix"], best["cfg"]
    return {
        "section": "noisecutmix_step", "pipeline": source, "batch": batch, "size": size, "device": device,
        "threads": torch.get_num_threads(), "repeats": repeats,
        "unet_rows": {"noisecutmix": 3 * batch, "cfg": 2 * batch},
        "noisecutmix_step_s": round(t_ncm, 4), "cfg_step_s": round(t_cfg, 4),
        "ratio_noisecutmix_over_cfg": round(t_ncm / t_cfg, 3), "target_ratio": 1.6,
        "unet_s": {"noisecutmix": round(unet_ncm, 4), "cfg": round(unet_cfg, 4)},
        "outside_unet_s": {"noisecutmix": round(t_ncm - unet_ncm, 4), "cfg": round(t_cfg - unet_cfg, 4)},
        "unet_ratio": round(unet_ncm / unet_cfg, 3),
    }


def process_pool_vs_serial(seeds: int = 2, workers: int = 2, suite: str = "smoke") -> dict[str, Any]:
    """``augbench run --workers N`` vs the serial local executor on ``suite`` with ``seeds`` subsets.

    Both runs start from empty caches (in a temporary folder) and use every usable core: serial as
    one process with all threads, the pool as N processes sharing them. The records must agree on
    what every cell computed (accuracies may differ in the last bits across thread counts, see
    ``tests/test_runner.py``), so the ratio is pure scheduling.
    """
    import tempfile
    from pathlib import Path

    from augbench.run.cells import RunOptions
    from augbench.run.runner import run_suite

    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="augbench-perf-") as tmp:
        for name, n in (("serial", 1), ("pool", workers)):
            opts = RunOptions(suite=suite, seeds=list(range(seeds)), run_dir=str(Path(tmp) / name / "run"),
                              cache_dir=str(Path(tmp) / name / "cache"), progress=False, workers=n,
                              log=lambda line: None)
            t = time.perf_counter()
            summary = run_suite(opts)
            walls[name] = time.perf_counter() - t
            if summary["failed"]:
                raise RuntimeError(f"perf: the {name} run of {suite} failed: {summary['failed']}")
    return {"section": "process_pool", "suite": suite, "seeds": seeds, "workers": workers,
            "serial_s": round(walls["serial"], 1), "pool_s": round(walls["pool"], 1),
            "speedup_pool_over_serial": round(walls["serial"] / walls["pool"], 2)}


def stage_memory(suite: str = "smoke", profile: str = "embedded", rehearsal: bool = False,
                 datasets: list[str] | None = None, data_root: str | None = None) -> dict[str, Any]:
    """Peak memory and time of each stage of ``suite`` on ``profile`` (``--rehearsal``: the rehearsal overlay),
    from empty caches in a temporary folder: the run's own per-stage peaks (``augbench.run.memory``; RSS,
    and CUDA allocated on a GPU) and seconds, as its records hold them."""
    import tempfile
    from pathlib import Path

    from augbench.run.cells import RunOptions
    from augbench.run.runner import run_suite

    with tempfile.TemporaryDirectory(prefix="augbench-perf-") as tmp:
        opts = RunOptions(suite=suite, profile=profile, rehearsal=rehearsal, datasets=datasets, data_root=data_root,
                          run_dir=str(Path(tmp) / "run"), cache_dir=str(Path(tmp) / "cache"), progress=False,
                          log=lambda line: None)
        summary = run_suite(opts)
    peaks = summary["stage_peak_memory_gb"]
    return {"section": "stage_memory", "suite": suite, "profile": profile, "rehearsal": rehearsal,
            "cells": summary["cells"], "failed": len(summary["failed"]), "peak_gb": peaks,
            "max_peak_gb": max((gb for stage, gb in peaks.items() if ":" not in stage), default=None),
            "stage_seconds": summary["stage_seconds"]}


#: SD v1.5's UNet configuration (stable-diffusion-v1-5 ``unet/config.json``), so the CUDA section needs
#: no download: random weights, the real architecture (the one config ``augbench.testing.sd15_shaped`` builds).
SD15_UNET_CONFIG = unet_config("full")

#: Dense bf16/fp16 tensor-core peak (FLOP/s) per GPU name fragment, for model FLOP utilisation.
GPU_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


def sd15_unet_throughput(batch: int = 8, steps: int = 25, repeats: int = 3, device: str = "cuda") -> dict[str, Any]:
    """SD1.5-architecture UNet throughput for 25-step CFG text-to-image at 512 px, and model FLOP utilisation.

    Random weights from :data:`SD15_UNET_CONFIG` in fp16 (throughput does not depend on the weights);
    one UNet call per step at batch ``2 x batch`` (CFG branches in one call, PERF_NOTES §6). FLOPs of
    one call are counted with ``torch.utils.flop_counter``; MFU = achieved / the GPU's dense peak.
    Skipped (with the reason) without CUDA.
    """
    if not torch.cuda.is_available() or not str(device).startswith("cuda"):
        return {"section": "sd15_unet", "skipped": "no CUDA device (this section measures GPUs only)"}
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    unet = UNet2DConditionModel(**SD15_UNET_CONFIG).to(device, torch.float16).eval()
    x = torch.randn(2 * batch, 4, 64, 64, device=device, dtype=torch.float16)
    text = torch.randn(2 * batch, 77, 768, device=device, dtype=torch.float16)
    t = torch.tensor(500, device=device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            unet(x, t, encoder_hidden_states=text)
        flops = counter.get_total_flops()

        def run() -> None:
            for _ in range(steps):
                unet(x, t, encoder_hidden_states=text)
            torch.cuda.synchronize()

        run()  # warm-up (kernel selection)
        seconds, _ = _best_of(run, repeats)
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in GPU_PEAK_FLOPS.items() if k in name), None)
    achieved = flops * steps / seconds
    return {"section": "sd15_unet", "gpu": name, "batch": batch, "steps": steps, "dtype": "float16",
            "images_per_s": round(batch / seconds, 2), "unet_call_ms": round(1000 * seconds / steps, 2),
            "tflops_per_call": round(flops / 1e12, 2), "achieved_tflops": round(achieved / 1e12, 1),
            "mfu": round(achieved / peak, 3) if peak else None}


SECTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "lpips": lpips_gram_vs_naive,
    "generation": generation_batched_vs_single,
    "noisecutmix_step": noisecutmix_step_vs_cfg_step,
    "process_pool": process_pool_vs_serial,
    "sd15_unet": sd15_unet_throughput,
    "stage_memory": stage_memory,
}

#: The headline number of each section for the summary table: (key, what it compares, target).
HEADLINES = {
    "lpips": ("speedup_naive_over_gram", "LPIPS: all pairs via Gram matrices vs one pass per pair", None),
    "generation": ("speedup_naive_over_harness", "text-to-image: batched + cached embeddings vs per image", 4.0),
    "noisecutmix_step": ("ratio_noisecutmix_over_cfg", "one NoiseCutMix step (3 branches) / one CFG step", 1.6),
    "process_pool": ("speedup_pool_over_serial", "suite wall time: serial / --workers 2", None),
    "sd15_unet": ("images_per_s", "SD1.5 UNet, 25-step CFG at 512 px (images/s; MFU)", None),
    "stage_memory": ("max_peak_gb", "highest per-stage peak memory of a run (GB; every stage: the JSON line)", None),
}


def summary_table(results: list[dict[str, Any]]) -> str:
    """One Markdown table of every section's headline ratio (docs/performance.md's table)."""
    lines = ["| section | compares | value | target |", "|---|---|---|---|"]
    for res in results:
        key, what, target = HEADLINES[res["section"]]
        value = res.get("skipped") or res.get(key)
        if res["section"] == "sd15_unet" and res.get("mfu") is not None:
            value = f"{value} (MFU {res['mfu']:.0%})"
        bound = "—" if target is None else (f"≤ {target}" if "ratio" in key else f"≥ {target}")
        lines.append(f"| {res['section']} | {what} | {value} | {bound} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the requested sections and print one JSON line each."""
    parser = argparse.ArgumentParser(prog="python -m tools.perf", description=__doc__.splitlines()[0])
    parser.add_argument("--section", action="append", choices=sorted(SECTIONS), help="default: all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--lpips-n", type=int, default=32)
    parser.add_argument("--lpips-size", type=int, default=64)
    parser.add_argument("--gen-batch", type=int, default=None,
                        help="requests per call in the generation section (default: the runner's, 32)")
    parser.add_argument("--gen-n", type=int, default=32, help="images generated each way in the generation section")
    parser.add_argument("--ncm-batch", type=int, default=8, help="requests per step in the noisecutmix_step section")
    parser.add_argument("--workers", type=int, default=2, help="processes of the process_pool section")
    parser.add_argument("--memory-suite", default="smoke", help="suite of the stage_memory section (default smoke)")
    parser.add_argument("--memory-profile", default="embedded", help="profile of the stage_memory section")
    parser.add_argument("--memory-datasets", nargs="+", default=None, help="restrict the stage_memory run's datasets")
    parser.add_argument("--data-root", default=None, help="data root of the stage_memory run (sd15)")
    parser.add_argument("--rehearsal", action="store_true", help="stage_memory: run the suite as a rehearsal")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs: dict[str, dict[str, Any]] = {
        "lpips": {"n": args.lpips_n, "size": args.lpips_size, "repeats": args.repeats, "device": args.device},
        "generation": {"n": args.gen_n, "batch": args.gen_batch, "repeats": args.repeats, "device": args.device},
        "noisecutmix_step": {"batch": args.ncm_batch, "repeats": max(args.repeats, 10), "device": args.device},
        "process_pool": {"workers": args.workers},
        "sd15_unet": {"device": "cuda" if args.device == "cpu" else args.device},
        "stage_memory": {"suite": args.memory_suite, "profile": args.memory_profile, "rehearsal": args.rehearsal,
                         "datasets": args.memory_datasets, "data_root": args.data_root},
    }
    results = []
    for name in args.section or list(SECTIONS):
        results.append(SECTIONS[name](**kwargs.get(name, {})))
        print(json.dumps(results[-1]), flush=True)
    print(summary_table(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

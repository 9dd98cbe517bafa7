"""The recipes of ``augbench world build``: :class:`BuildConfig` and its named variants.

A recipe fixes everything a build's weights depend on (seed, corpus, model sizes, steps, learning
rates) plus how it runs (threads, data-parallel processes, device, checkpoint interval); which fields
each stage reads is :func:`augbench.world.build.stages.stage_identities`'s business.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: the committed editor's settings (``v4``; ``python -m augbench.world.build.editor`` on a built world): 6,000
#: steps x 32 on 12,000 edit pairs; measured on 2 quiet cores: 0.72 s per step (two single-threaded processes),
#: 5.5 min to render and encode the pairs, so ~78 min in all (the committed one: 5,500 steps in an earlier session
#: beside other work, the last 500 resumed on a quiet machine)
COMMITTED_EDITOR = {"editor_steps": 6000, "editor_pairs": 12000}


@dataclass
class BuildConfig:
    """Recipe of ``augbench world build``; the defaults are the ``cpu`` recipe (``nox -s world``), the
    committed models are ``v4`` (the same models trained longer, :meth:`v3` then :meth:`v4`).

    On 2 CPU cores the ``cpu`` recipe takes 35 minutes (measured with the world-v4 code: CLIP 10.7,
    VAE 4.2, UNet 15.6, oracle 1.9, rendering and encoding the rest), plus ~3 for the oracle's
    longer recipe and ~7 for the instruction editor (estimated from their measured rates, not yet measured whole). The VAE and UNet train data-parallel over single-threaded processes (see
    ``processes``): one process on two threads took 57 minutes for the same recipe (UNet 30).
    Channels-last and ``torch.compile`` measured no faster for the UNet step. See docs/world.md
    (the embedded world).
    """

    seed: int = 0
    image_size: int = 64
    corpus_size: int = 20000
    # tiny CLIP (contrastive)
    clip_steps: int = 1500
    clip_batch: int = 128
    clip_lr: float = 1e-3
    # share of each batch's captions that also bring a hard negative: the same caption with one
    # attribute changed (render.contradict; NegCLIP). Measured at 1.0 (docs/world_v2.md section 00):
    # no gain -- the vision tower cannot tell stripes from bars (pair accuracy ~0.5 either way), so
    # the text tower has nothing to align the pattern word with -- at +40 % CLIP time; off by default
    clip_hard_negatives: float = 0.0
    text_hidden: int = 64
    text_layers: int = 3
    vision_hidden: int = 96
    vision_layers: int = 4
    projection_dim: int = 64
    # tiny AutoencoderKL
    vae_steps: int = 1200
    vae_batch: int = 32
    vae_crop: int = 32  # train on random crops (convolutional: generalises to full images; 4x cheaper)
    vae_channels: tuple[int, ...] = (32, 48, 64)
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-6
    vae_latent_channels: int = 8
    vae_layers: int = 1  # resnet blocks per VAE level
    # weight of an LPIPS-style loss on generic ImageNet features (PyPI EfficientNet-Lite0, strides
    # 2-8; never the oracle); 0 = L1 + MSE only (the committed models)
    vae_perceptual: float = 0.0
    # fold a per-channel standardisation of the latents into the VAE's 1x1 quant convs (zero mean,
    # unit std per channel, scaling_factor 1) instead of one global scaling factor; see
    # standardize_latents. False = the committed models (per-channel means up to -0.77 and stds
    # 0.56..1.19 in scaled units, docs/world_v2.md)
    vae_standardize: bool = True
    # tiny UNet2DConditionModel
    unet_steps: int = 1800
    unet_batch: int = 64
    unet_lr: float = 1e-3
    # cross-attention at the 8x8 and 4x4 levels only: attention at 16x16 costs ~5x the whole step on CPU
    unet_channels: tuple[int, ...] = (48, 96, 96)
    caption_dropout: float = 0.1
    # "epsilon" (the committed models) or "v_prediction"; the saved scheduler config says which
    unet_prediction: str = "epsilon"
    # min-SNR-gamma loss weighting (Hang et al. 2023); 0 = uniform (the committed models)
    unet_min_snr_gamma: float = 5.0
    ema_decay: float = 0.998
    # instruction editor (DiffuseMix's InstructPix2Pix, augbench.world.build.editor): the trained UNet with its
    # input widened to take the source image's latent (extra channels zero-initialised, InstructPix2Pix §3.2),
    # fine-tuned on renderer-made edit pairs (augbench.world.build.edits); 0 steps = no editor. The cpu recipe's
    # 500 steps x 32 on 2,000 pairs keep the cpu recipe near 45 min of 2 cores (~7 min: 0.72 s per step and
    # ~0.9 min of pairs, from the committed editor's measured rates); the committed editor is COMMITTED_EDITOR's
    # longer run.
    editor_steps: int = 500
    editor_pairs: int = 2000
    editor_batch: int = 32
    editor_lr: float = 3e-4
    editor_ema_decay: float = 0.998
    # InstructPix2Pix §3.2.1: the image latent alone, the instruction alone and both dropped, each for this share
    # of the samples (image and text guidance at sampling time)
    editor_dropout: float = 0.05
    # the editor's check after its stage (not part of its identity): toybirds test images edited with the README
    # prompts
    check_editor_images: int = 96
    check_editor_steps: int = 20
    # oracle classifier
    oracle_per_class: int = 200
    oracle_epochs: int = 8
    oracle_batch: int = 64
    oracle_lr: float = 2e-3
    # share of oracle training renders degraded by one of oracle_degradations drawn uniformly (and by a
    # second one with probability oracle_second_degradation): "vae" = a round trip through the world's
    # own frozen VAE, "blur" = Gaussian of std uniform in oracle_blur_sigma pixels, "jpeg" = quality
    # uniform in oracle_jpeg_quality, "down_up" = bilinear by 1.5-3x, "noise" = Gaussian up to 12/255.
    # Real renders only, never generated images: a judge of species, not of sharpness (issue 24 part 3;
    # build.oracle, docs/world.md "The oracle"). The world-v4 oracle: 0.5, 4 epochs, down_up / 3x3 box
    # blur / noise only (98.7 % clean, 92.2 % on VAE reconstructions); these: 99.8 / 98.8 %
    oracle_degrade: float = 0.7
    oracle_degradations: tuple[str, ...] = ("vae", "blur", "jpeg", "down_up", "noise")
    oracle_second_degradation: float = 0.3
    oracle_blur_sigma: tuple[float, float] = (0.5, 2.0)
    oracle_jpeg_quality: tuple[int, int] = (20, 90)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    # Data-parallel processes for the VAE and UNet on CPU (0 = one per thread, each single-threaded).
    # These small conv nets barely use a second intra-op thread (UNet step, batch 64: 0.94 s on one
    # thread, 0.84 s on two) but two single-threaded processes each on half the batch take 0.49 s.
    # Every process draws the whole batch from the same generator and keeps its slice, so batches,
    # noise and timesteps do not depend on the process count; only float summation order does.
    processes: int = 0
    device: str = "cpu"
    # The VAE and UNet save a resumable checkpoint (weights, EMA, optimizer, LR schedule, batch
    # generator) every this many steps; ``build(resume=True)`` continues from the last one.
    checkpoint_every: int = 500
    # A built world folder (``clip/``, ``sd/``, ``oracle/``) to continue from instead of training from
    # scratch: its CLIP, VAE and oracle are taken as they are and its UNet initialises the UNet stage,
    # which then trains ``unet_steps`` more steps on a fresh warm-up + cosine schedule (a warm
    # restart). The folder's content hash enters every stage's identity and build.json.
    init_from: str | None = None

    @classmethod
    def gpu(cls, **overrides) -> BuildConfig:
        """A longer recipe for a GPU: ~33x more UNet samples, same model sizes (so the same budget).

        The CPU default fits the 2-core time budget but leaves the UNet under-trained: body colour
        and habitat come out right, fine attributes (crown colour, wing pattern) as blobs. The
        committed models are the CPU recipe's; this one has not been run yet (no GPU was at hand).
        """
        values = dict(corpus_size=30000, clip_steps=5000, clip_batch=256, vae_steps=4000, vae_batch=64,
                      unet_steps=15000, unet_batch=256, ema_decay=0.9995, device="cuda")
        return cls(**{**values, **overrides})

    @classmethod
    def v2(cls, **overrides) -> BuildConfig:
        """The previous committed models' recipe (issue 14, part 2): ``cpu`` trained longer, 1.5 h on 2 cores.

        VAE 3000 steps (1200 in ``cpu``): on the first world's renders the 8-channel VAE's
        reconstructions went from 35% to 56% oracle accuracy between 600 and 3000 steps (PSNR 23.6 ->
        28.5 dB). UNet 6000 steps x 64 (1800): the measured faithfulness curve gains ~0.1 per doubling
        of samples (docs/world_v2.md section 5). Both loops checkpoint, so an interrupted build continues
        with ``augbench world build --recipe v2 --resume``.
        """
        values = dict(vae_steps=3000, unet_steps=6000, clip_hard_negatives=0.0)
        return cls(**{**values, **overrides})

    @classmethod
    def v3(cls, **overrides) -> BuildConfig:
        """The previous models' recipe (issue 14, part 3), continued by ``v4``: ``v2`` with the VAE trained 6000 steps.

        On v2 renders the oracle read 60 / 68 / 83 % of VAE reconstructions at 600 / 1200 / 3000 steps,
        ~+11 points per doubling (docs/world_v2.md section 0). The CLIP is v2's (same settings), so
        ``--resume`` from a kept v2 build retrains only the VAE and UNet.
        """
        values = dict(vae_steps=6000, unet_steps=6000, clip_hard_negatives=0.0)
        return cls(**{**values, **overrides})

    @classmethod
    def v4(cls, **overrides) -> BuildConfig:
        """The committed models (issue 14, part 4): v3's models with the UNet trained 6,000 more steps.

        After v3 the remaining generator targets (img2img fidelity at strength 0.5, description
        faithfulness) depend on the UNet; part 1's learning curve gained ~0.1 faithfulness per
        doubling of UNet samples. Rather than 12,000 steps from scratch (~2.3 h with CLIP and VAE),
        this recipe continues a built v3 world (``init_from``, required: ``augbench world build
        --recipe v4 --init-from <v3 weights>``): same CLIP, VAE and oracle (so checks compare
        generators under one judge), the v3 UNet warm-restarted for 6,000 steps at half v3's peak
        learning rate (~1 h on 2 quiet cores, estimated; 71.8 min measured beside other work), and the
        instruction editor of ``COMMITTED_EDITOR`` (~78 min). The committed v4 continued
        the v3 weights of commit 95de242 (``git show 95de242:benchmark/world/weights/...``; build.json
        records their sha256): from scratch, build ``v3`` then ``v4`` on it, ~2.6 h on 2 cores.
        """
        values = dict(vae_steps=6000, unet_steps=6000, unet_lr=5e-4, clip_hard_negatives=0.0, **COMMITTED_EDITOR)
        cfg = cls(**{**values, **overrides})
        if not cfg.init_from:
            raise ValueError("recipe v4 continues a built v3 world: pass --init-from <weights folder> "
                             "(e.g. the committed benchmark/world/weights of the v3 commit)")
        return cfg

    RECIPES = ("cpu", "gpu", "v2", "v3", "v4")

    @classmethod
    def recipe(cls, name: str, **overrides) -> BuildConfig:
        """``cpu`` (the default, what ``nox -s world`` runs), ``v4`` (the committed models: a ``v3`` world
        trained further, :meth:`v4`), ``v3`` and ``v2`` (the previous ones) or ``gpu`` (longer, :meth:`gpu`)."""
        if name == "cpu":
            return cls(**overrides)
        if name == "gpu":
            return cls.gpu(**overrides)
        if name == "v2":
            return cls.v2(**overrides)
        if name == "v3":
            return cls.v3(**overrides)
        if name == "v4":
            return cls.v4(**overrides)
        raise ValueError(f"unknown world recipe {name!r}: expected one of {', '.join(cls.RECIPES)}")

    @classmethod
    def smoke(cls) -> BuildConfig:
        """A few-step version of every recipe (tests)."""
        return cls(image_size=32, corpus_size=64, clip_steps=2, clip_batch=16, vae_steps=2, vae_batch=8,
                   vae_crop=16, vae_channels=(16, 32, 32), unet_steps=2, unet_batch=8, unet_channels=(32, 32, 32), oracle_per_class=2, oracle_epochs=1,
                   oracle_batch=16, text_layers=1, vision_layers=1, processes=1,
                   editor_steps=2, editor_pairs=4, editor_batch=2, check_editor_images=2, check_editor_steps=1)

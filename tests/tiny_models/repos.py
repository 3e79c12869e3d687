"""Whole tiny Kandinsky repo folders in the real diffusers layout, saved with save_pretrained.

Each builder returns the repo path; `reference_*` helpers load the diffusers pipeline back from disk
(eval mode), exactly as a user gets it.
"""
from __future__ import annotations

import os
from pathlib import Path

DDPM_22 = dict(  # kandinsky-2-2-decoder*/scheduler (spec §3.1)
    num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
    prediction_type="epsilon", clip_sample=False, steps_offset=1, timestep_spacing="leading",
    variance_type="fixed_small", thresholding=False,
)
DDPM_LEARNED = dict(  # kandinsky-2-1/ddpm_scheduler (spec §3.1): learned-range variance, thresholding
    num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
    variance_type="learned_range", prediction_type="epsilon", clip_sample=True, clip_sample_range=2.0,
    thresholding=True, sample_max_value=None, steps_offset=1,
)
DDIM_KANDINSKY = dict(  # kandinsky-2-1/scheduler and diffusers' dummy decoder scheduler
    num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
    set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon", thresholding=False,
)
UNCLIP_PRIOR = dict(
    variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000, clip_sample=True,
    clip_sample_range=10.0,
)

DECODER_REPOS = {  # repo name -> (UNet kind, MoVQ kind, pipeline class)
    "decoder22": ("22", "2level", "KandinskyV22Pipeline"),
    "inpaint22": ("22_inpaint", "2level", "KandinskyV22InpaintPipeline"),
    "depth22": ("22_depth", "4level", "KandinskyV22ControlnetPipeline"),
}


def build_prior_repo(path: str | os.PathLike, pipeline: str = "KandinskyV22PriorPipeline") -> Path:
    """kandinsky-2-2-prior layout (or kandinsky-2-1-prior with `KandinskyPriorPipeline`) with diffusers'
    dummy prior components (spec §5.1): both versions' dummies share the tiny prior and CLIP towers."""
    import diffusers
    from tiny_models.prior import (build_reference_clip_text, build_reference_clip_vision,
                                   build_reference_prior, make_clip_image_processor)
    from tiny_models.tokenizers import make_clip_tokenizer
    from transformers import CLIPTokenizer

    path = Path(path)
    parts = path / "_parts"
    pipe = getattr(diffusers, pipeline)(
        prior=build_reference_prior(parts / "prior"),
        image_encoder=build_reference_clip_vision(parts / "image_encoder"),
        text_encoder=build_reference_clip_text(parts / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(make_clip_tokenizer(parts / "tokenizer")),
        scheduler=diffusers.UnCLIPScheduler(**UNCLIP_PRIOR),
        image_processor=make_clip_image_processor(parts / "image_processor"),
    )
    pipe.save_pretrained(path / "repo")
    return path / "repo"


def build_decoder_repo(path: str | os.PathLike, name: str) -> Path:
    """A 2.2 decoder repo (`name` in DECODER_REPOS) with the real DDPM scheduler config."""
    import diffusers
    from tiny_models.movq import build_reference_movq
    from tiny_models.unet import build_reference_unet

    unet_kind, movq_kind, pipeline = DECODER_REPOS[name]
    path = Path(path)
    pipe = getattr(diffusers, pipeline)(
        unet=build_reference_unet(unet_kind, path / "_parts" / "unet"),
        scheduler=diffusers.DDPMScheduler(**DDPM_22),
        movq=build_reference_movq(movq_kind, path / "_parts" / "movq"),
    )
    pipe.save_pretrained(path / "repo")
    return path / "repo"


def reference_pipeline(pipeline_class: str, repo: Path, scheduler=None):
    """Load a diffusers pipeline from a saved repo (eval mode), optionally with another scheduler."""
    import diffusers

    pipe = getattr(diffusers, pipeline_class).from_pretrained(repo)
    if scheduler is not None:
        pipe.scheduler = scheduler
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_scheduler(sampler: str, learned: bool = False):
    """The diffusers scheduler our sampler name maps to for a 2.2 repo (DDPM config in scheduler/)."""
    import diffusers

    if sampler == "ddim":
        return diffusers.DDIMScheduler.from_config({**DDPM_22, "set_alpha_to_one": False})
    return diffusers.DDPMScheduler(**(DDPM_LEARNED if learned else DDPM_22))

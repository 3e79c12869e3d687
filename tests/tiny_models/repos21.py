"""Tiny Kandinsky 2.1 repo folders in the real diffusers layout, saved with save_pretrained.

kandinsky-2-1-prior (KandinskyPriorPipeline), kandinsky-2-1 (KandinskyPipeline: M-CLIP + XLM-R tokenizer,
text_image UNet, DDIM scheduler/ plus the learned-range ddpm_scheduler/ folder, MoVQ) and
kandinsky-2-1-inpaint (KandinskyInpaintPipeline, 9-channel UNet), all with diffusers' dummy components
(spec §5.1). Tokenizers are built offline.
"""
from __future__ import annotations

import os
from pathlib import Path

from tiny_models.repos import DDIM_KANDINSKY, DDPM_LEARNED, build_prior_repo

DECODER21_REPOS = {  # repo name -> (UNet kind, pipeline class)
    "decoder21": ("21", "KandinskyPipeline"),
    "inpaint21": ("21_inpaint", "KandinskyInpaintPipeline"),
}


def build_prior21_repo(path: str | os.PathLike) -> Path:
    """kandinsky-2-1-prior layout: the dummy prior (embedding_dim 32) with the tiny CLIP towers."""
    return build_prior_repo(path, "KandinskyPriorPipeline")


def build_decoder21_repo(path: str | os.PathLike, name: str) -> Path:
    """A 2.1 decoder repo (`name` in DECODER21_REPOS): DDIM in scheduler/, learned-range DDPM in ddpm_scheduler/."""
    import diffusers
    from tiny_models.mclip import build_reference_mclip, make_xlmr_tokenizer
    from tiny_models.movq import build_reference_movq
    from tiny_models.unet import build_reference_unet

    unet_kind, pipeline = DECODER21_REPOS[name]
    path = Path(path)
    parts = path / "_parts"
    pipe = getattr(diffusers, pipeline)(
        text_encoder=build_reference_mclip(parts / "text_encoder"),
        tokenizer=make_xlmr_tokenizer(parts / "tokenizer"),
        unet=build_reference_unet(unet_kind, parts / "unet"),
        scheduler=diffusers.DDIMScheduler(**DDIM_KANDINSKY),
        movq=build_reference_movq("2level", parts / "movq"),
    )
    pipe.save_pretrained(path / "repo")
    diffusers.DDPMScheduler(**DDPM_LEARNED).save_pretrained(path / "repo" / "ddpm_scheduler")
    return path / "repo"


def reference_scheduler21(repo: Path, sampler: str):
    """The diffusers scheduler a 2.1 repo runs for our sampler name: scheduler/ (DDIM) or ddpm_scheduler/."""
    import diffusers

    if sampler == "ddim":
        return diffusers.DDIMScheduler.from_pretrained(repo, subfolder="scheduler")
    return diffusers.DDPMScheduler.from_pretrained(repo, subfolder="ddpm_scheduler")

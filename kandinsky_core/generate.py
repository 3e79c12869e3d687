"""Command-line Kandinsky generation without ComfyUI (the core's own runtime).

    python -m kandinsky_core.generate --prior models/kandinsky/kandinsky-2-2-prior \
        --decoder models/kandinsky/kandinsky-2-2-decoder --prompt "red cat, 4k photo" --out cat.png
    python -m kandinsky_core.generate --decoder models/kandinsky/kandinsky-3 --prompt "red cat, 4k photo"

A Kandinsky 3 folder as --decoder (no --prior: its own T5 text encoder reads the prompt) runs Kandinsky 3;
its defaults are 25 steps, guidance 3.0, 1024x1024 (2.x: 50 steps, guidance 4.0, 512x512). For a 12 GB GPU
add --dtype fp8_e4m3fn --memory-mode model_offload (or lowvram).

--init-image turns on image-to-image (with --denoise), --mask inpainting (white = repaint; use an
inpaint decoder), --hint a depth map (use kandinsky-2-2-controlnet-depth). --download fetches missing
model folders from the Hugging Face Hub first (kandinsky_core.download); without it nothing touches the
network. A progress bar per stage goes to stderr (--quiet: none, and only warnings and errors).
"""
from __future__ import annotations

import argparse
import logging
import sys

import numpy as np
import torch
from PIL import Image

from . import download, fp8
from .cli_progress import StageBars
from .loading.components import load_decoder, load_prior, load_text_encoder
from .loading.repo import read_model_index
from .memory import MEMORY_MODES
from .runtime import DTYPE_CHOICES, LocalRuntime, resolve_dtype
from .stages import decoder, prior, text3
from .stages import movq as movq_stage
from .stages.hints import depth_hint

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kandinsky_core.generate", description=__doc__.split("\n")[0])
    p.add_argument("--prior", help="prior repo folder (kandinsky-2-2-prior layout); 2.x only")
    p.add_argument("--decoder", required=True,
                   help="decoder repo folder (kandinsky-2-2-decoder layout), or a kandinsky-3 folder (then no --prior)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="",
                   help="empty = diffusers' None (2.x: the zero-image negative; 3: zero embeds)")
    p.add_argument("--width", type=int, default=None, help="default 512 (2.x), 1024 (3)")
    p.add_argument("--height", type=int, default=None, help="default 512 (2.x), 1024 (3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior-steps", type=int, default=25)
    p.add_argument("--prior-guidance", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=None, help="default 50 (2.x), 25 (3)")
    p.add_argument("--guidance", type=float, default=None,
                   help="default 4.0 (2.x), 3.0 (3: diffusers' K3 guidance, (g + 1) cond - g uncond)")
    p.add_argument("--sampler", choices=decoder.SAMPLERS, default="ddpm")
    p.add_argument("--denoise", type=float, default=1.0, help="img2img strength (needs --init-image)")
    p.add_argument("--init-image", help="image for image-to-image or inpainting")
    p.add_argument("--mask", help="inpainting mask image, white = repaint")
    p.add_argument("--hint", help="depth map image for the depth ControlNet decoder")
    p.add_argument("--dtype", choices=[*DTYPE_CHOICES, fp8.CHOICE], default="auto",
                   help="fp8_e4m3fn (Kandinsky 3 only): T5 and UNet weights stored in 8 bits, MoVQ as auto")
    p.add_argument("--memory-mode", choices=MEMORY_MODES, default="gpu",
                   help="gpu: all on the device; model_offload: one stage's models at a time; lowvram: blocks "
                        "streamed one at a time (see kandinsky_core/memory.py)")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--out", default="kandinsky.png")
    p.add_argument("--download", action="store_true",
                   help="fetch missing model folders from the Hugging Face Hub (named after their repo, e.g. "
                        "models/kandinsky/kandinsky-2-2-prior); resumable, complete folders are skipped")
    p.add_argument("--quiet", action="store_true", help="no progress bars; only warnings and errors")
    return p


def model_folders(args: argparse.Namespace) -> list[str]:
    """The model folders this command needs (what --download fetches; Kandinsky 3 has no prior)."""
    return [folder for folder in (args.prior, args.decoder) if folder]


def _read_image(path: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A file as a ComfyUI IMAGE (1, H, W, 3) in [0, 1], optionally resized (bicubic) to (width, height)."""
    image = Image.open(path).convert("RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


_DEFAULTS = {"3": dict(steps=25, guidance=3.0, width=1024, height=1024),  # per Kandinsky version
             "2.x": dict(steps=50, guidance=4.0, width=512, height=512)}


def _load_k3(args: argparse.Namespace, runtime: LocalRuntime, bars: StageBars):
    """A kandinsky-3 folder: (prompt embeds, UNet, MoVQ)."""
    if args.prior:
        raise ValueError(f"{args.decoder} is a Kandinsky 3 folder: Kandinsky 3 has no prior, leave out --prior.")
    device = runtime.device()
    te_dtype, te_fp8 = fp8.resolve_weights(args.dtype, device, "text_encoder")
    unet_dtype, unet_fp8 = fp8.resolve_weights(args.dtype, device, "unet")
    movq_dtype = resolve_dtype("auto" if unet_fp8 else args.dtype, device, "movq")
    logger.info("Loading the text encoder from %s", args.decoder)
    text_encoder = load_text_encoder(args.decoder, te_dtype)
    if te_fp8:
        fp8.store_fp8(text_encoder.text_encoder)
    bars.stage("text encoder")
    embeds = text3.encode_prompts(text_encoder, [args.prompt], args.negative_prompt or None, runtime)
    del text_encoder  # 8.7 B parameters: free them before the UNet loads
    bars.close()
    logger.info("Loading the decoder from %s", args.decoder)
    unet, movq = load_decoder(args.decoder, unet_dtype, movq_dtype)
    if unet_fp8:
        fp8.store_unet_fp8(unet)
    return embeds, unet, movq


def _load_2x(args: argparse.Namespace, runtime: LocalRuntime, bars: StageBars):
    """A 2.x prior and decoder: (image embeds, UNet, MoVQ)."""
    if not args.prior:
        raise ValueError(f"{args.decoder} is a Kandinsky 2.x decoder: give its prior with --prior "
                         "(e.g. models/kandinsky/kandinsky-2-2-prior).")
    if args.dtype == fp8.CHOICE:
        raise ValueError("--dtype fp8_e4m3fn is for Kandinsky 3 only; choose auto, fp16, bf16 or fp32 for 2.x.")
    device = runtime.device()
    logger.info("Loading the prior from %s", args.prior)
    prior_models = load_prior(args.prior, resolve_dtype(args.dtype, device))
    logger.info("Loading the decoder from %s", args.decoder)
    unet, movq = load_decoder(args.decoder, resolve_dtype(args.dtype, device), resolve_dtype(args.dtype, device, "movq"))
    bars.stage("prior")
    embeds = prior.prior_encode(prior_models, args.prompt, args.negative_prompt or None,
                                generator=torch.Generator("cpu").manual_seed(args.seed), steps=args.prior_steps,
                                guidance_scale=args.prior_guidance, runtime=runtime)
    return embeds, unet, movq


def run(args: argparse.Namespace, bars: StageBars | None = None) -> Image.Image:
    bars = bars or StageBars(enabled=False)
    download.ensure_repos(model_folders(args), args.download, progress=bars.enabled)
    runtime = LocalRuntime(args.device, on_progress=bars, memory_mode=args.memory_mode)
    version = "3" if read_model_index(args.decoder).version == "3" else "2.x"
    for name, value in _DEFAULTS[version].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    embeds, unet, movq = (_load_k3 if version == "3" else _load_2x)(args, runtime, bars)
    f = movq.scale_factor
    if args.width % f or args.height % f:
        raise ValueError(f"--width and --height must be multiples of {f} (the MoVQ factor), got {args.width}x{args.height}.")
    size = (args.width, args.height)
    bars.close()
    if args.init_image:
        logger.info("MoVQ: encoding %s", args.init_image)
        latents = movq_stage.encode(movq, _read_image(args.init_image, size), runtime=runtime)
    else:
        latents = torch.zeros(1, 4, args.height // f, args.width // f)
    mask = _read_image(args.mask, size)[..., 0] if args.mask else None
    hint = depth_hint(_read_image(args.hint, size)) if args.hint else None
    bars.stage("decoder")
    latents = decoder.sample(unet, embeds, latents, generator=torch.Generator("cpu").manual_seed(args.seed),
                             steps=args.steps, guidance_scale=args.guidance, sampler=args.sampler,
                             denoise=args.denoise, hint=hint, mask=mask, runtime=runtime)
    bars.close()
    logger.info("MoVQ: decoding the image")
    image = movq_stage.decode(movq, latents, runtime=runtime)[0]
    runtime.offload_all()
    return Image.fromarray((image.numpy() * 255).round().astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kandinsky_core").setLevel(logging.WARNING if args.quiet else logging.INFO)
    bars = StageBars(enabled=not args.quiet)
    from transformers.utils import logging as transformers_logging

    transformers_bars = transformers_logging.is_progress_bar_enabled()
    if args.quiet:  # its weight-loading bars
        transformers_logging.disable_progress_bar()
    try:
        image = run(args, bars)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        logger.error("%s", e)
        return 1
    finally:
        bars.close()
        if transformers_bars:
            transformers_logging.enable_progress_bar()
    image.save(args.out)
    logger.info("Saved %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

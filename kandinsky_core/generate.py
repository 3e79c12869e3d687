"""Command-line Kandinsky generation without ComfyUI (the core's own runtime).

    python -m kandinsky_core.generate --prior models/kandinsky/kandinsky-2-2-prior \
        --decoder models/kandinsky/kandinsky-2-2-decoder --prompt "red cat, 4k photo" --out cat.png

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

from . import download
from .cli_progress import StageBars
from .loading.components import load_decoder, load_prior
from .runtime import DTYPE_CHOICES, LocalRuntime, resolve_dtype
from .stages import decoder, prior
from .stages import movq as movq_stage
from .stages.hints import depth_hint

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kandinsky_core.generate", description=__doc__.split("\n")[0])
    p.add_argument("--prior", required=True, help="prior repo folder (kandinsky-2-2-prior layout)")
    p.add_argument("--decoder", required=True, help="decoder repo folder (kandinsky-2-2-decoder layout)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="", help="empty = the zero-image negative (diffusers' None)")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior-steps", type=int, default=25)
    p.add_argument("--prior-guidance", type=float, default=4.0)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--sampler", choices=decoder.SAMPLERS, default="ddpm")
    p.add_argument("--denoise", type=float, default=1.0, help="img2img strength (needs --init-image)")
    p.add_argument("--init-image", help="image for image-to-image or inpainting")
    p.add_argument("--mask", help="inpainting mask image, white = repaint")
    p.add_argument("--hint", help="depth map image for the depth ControlNet decoder")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--out", default="kandinsky.png")
    p.add_argument("--download", action="store_true",
                   help="fetch missing model folders from the Hugging Face Hub (named after their repo, e.g. "
                        "models/kandinsky/kandinsky-2-2-prior); resumable, complete folders are skipped")
    p.add_argument("--quiet", action="store_true", help="no progress bars; only warnings and errors")
    return p


def model_folders(args: argparse.Namespace) -> list[str]:
    """The model folders this command needs (what --download fetches)."""
    return [args.prior, args.decoder]


def _read_image(path: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A file as a ComfyUI IMAGE (1, H, W, 3) in [0, 1], optionally resized (bicubic) to (width, height)."""
    image = Image.open(path).convert("RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]


def run(args: argparse.Namespace, bars: StageBars | None = None) -> Image.Image:
    bars = bars or StageBars(enabled=False)
    download.ensure_repos(model_folders(args), args.download, progress=bars.enabled)
    runtime = LocalRuntime(args.device, on_progress=bars)
    device = runtime.device()
    logger.info("Loading the prior from %s", args.prior)
    prior_models = load_prior(args.prior, resolve_dtype(args.dtype, device))
    logger.info("Loading the decoder from %s", args.decoder)
    unet, movq = load_decoder(args.decoder, resolve_dtype(args.dtype, device), resolve_dtype(args.dtype, device, "movq"))
    f = movq.scale_factor
    if args.width % f or args.height % f:
        raise ValueError(f"--width and --height must be multiples of {f} (the MoVQ factor), got {args.width}x{args.height}.")
    bars.stage("prior")
    embeds = prior.prior_encode(prior_models, args.prompt, args.negative_prompt or None,
                                generator=torch.Generator("cpu").manual_seed(args.seed), steps=args.prior_steps,
                                guidance_scale=args.prior_guidance, runtime=runtime)
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

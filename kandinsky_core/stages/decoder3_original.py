"""Kandinsky 3 / 3.1 sampling as the original ai-forever release does it (samplers "k3_original" and "flash").

For the UNets of an original release folder (`loading.originals`): the base and inpainting UNets with the
original sampler (`schedulers.k3_original`: guided against the learned null_embedding, dynamic
thresholding), the Flash UNet with its 4-step unguided update. The text context is built as the original
text encoder builds it: projected by the UNet's own projection first, then zeroed at padded positions.

Inpainting (the 9-channel 3.1 UNet) follows Kandinsky3InpaintingPipeline: the UNet reads
[latent, keep-mask, latent of the image with the repaint area set to 0] at every step; keep = 1 - mask
(ComfyUI's 1 = repaint) resized to the latent by nearest neighbour. As in the original, the kept area is
not pasted back: the UNet redraws the whole image conditioned on it.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ..components import DecoderUNet
from ..payloads import TextEmbeds
from ..runtime import Runtime
from ..schedulers import k3_original as orig
from ..schedulers.noise import randn
from .sizes import crop_to, pad_to, padded_size
from .validation import check_guidance, check_steps

logger = logging.getLogger(__name__)

SAMPLERS = ["k3_original", "flash"]


def check_combination(unet: DecoderUNet, sampler: str) -> None:
    """The Flash UNet only with `flash`, `flash` and `k3_original` only with original-release UNets."""
    kind = unet.original_kind
    if sampler == "flash" and kind != "flash":
        raise ValueError(
            f"The flash sampler is the 4-step update of the Kandinsky 3.1 Flash UNet, but '{unet.name}' is "
            f"{'not from an original release' if kind is None else f'the {kind} UNet'}: choose the "
            "'<release> / flash' UNet in the decoder loader, or another sampler (k3_original, ddpm, ddim)."
        )
    if kind == "flash" and sampler != "flash":
        raise ValueError(
            f"'{unet.name}' is the Kandinsky 3.1 Flash UNet, distilled to draw in 4 unguided steps: it only works "
            f"with the flash sampler (steps and guidance are ignored), not with {sampler!r}."
        )
    if sampler == "k3_original" and unet.null_embedding is None:
        raise ValueError(
            f"The k3_original sampler guides against the learned null_embedding of the original release files, "
            f"which '{unet.name}' does not have: load a UNet from an original Kandinsky3.0/3.1 folder "
            "(weights/kandinsky3*.pt), or use ddpm/ddim with a diffusers kandinsky-3 folder."
        )
    if unet.variant.task == "inpaint" and sampler != "k3_original":
        raise ValueError(f"The 3.1 inpainting UNet '{unet.name}' samples with k3_original, not {sampler!r}.")


def _contexts(unet: DecoderUNet, embeds: TextEmbeds, rows: torch.Tensor, device: torch.device):
    """(cond, uncond) as (context, mask) pairs in the UNet's context width (already projected)."""
    model, dtype = unet.unet, unet.dtype

    def project(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx = model.encoder_hid_proj(states.to(device=device, dtype=dtype))
        return ctx * mask.to(device=device, dtype=dtype)[:, :, None]  # padded positions become 0

    mask = embeds.mask[rows].to(device)
    cond = (project(embeds.embeds[rows], mask), mask)
    neg_mask = embeds.negative_mask[rows].to(device)
    if bool(neg_mask.any()):  # a negative prompt replaces the null embedding, as in the original
        return cond, (project(embeds.negative_embeds[rows], neg_mask), neg_mask)
    null_ctx = torch.zeros_like(cond[0])
    null_ctx[:, 0] = unet.null_embedding.to(device=device, dtype=dtype)
    null_mask = torch.zeros_like(mask)
    null_mask[:, 0] = True
    return cond, (null_ctx, null_mask)


def _inpaint_inputs(mask: torch.Tensor | None, masked_latents: torch.Tensor | None, batch: int,
                    size: tuple[int, int], unet: DecoderUNet) -> torch.Tensor:
    """(B, 5, h, w): keep-mask and masked-image latent, the extra input channels of the 3.1 inpainting UNet."""
    if mask is None or masked_latents is None:
        raise ValueError(
            f"'{unet.name}' is the Kandinsky 3.1 inpainting UNet: give it a latent from KandinskyMoVQEncode with "
            "a mask and the MoVQ of a Kandinsky 3 folder (the latent then carries the mask and the masked image)."
        )
    if masked_latents.shape[0] not in (1, batch) or tuple(masked_latents.shape[-2:]) != size:
        raise ValueError(
            f"The masked-image latent is {tuple(masked_latents.shape)} but the latent is {batch}x4x{size[0]}x{size[1]}:"
            " encode image and mask together in one KandinskyMoVQEncode."
        )
    keep = F.interpolate(1.0 - mask.float(), size=size)  # nearest, as the original
    if keep.shape[0] not in (1, batch):
        raise ValueError(f"The mask holds {keep.shape[0]} masks for {batch} latents: give 1 or {batch}.")
    return torch.cat([keep.expand(batch, -1, -1, -1), masked_latents.float().expand(batch, -1, -1, -1)], dim=1)


def sample(unet: DecoderUNet, embeds: TextEmbeds, latents: torch.Tensor, *, generator: torch.Generator,
           steps: int, guidance_scale: float, sampler: str, denoise: float = 1.0, mask: torch.Tensor | None = None,
           masked_latents: torch.Tensor | None = None, runtime: Runtime) -> torch.Tensor:
    """Draw (B, 4, h, w) latents the way the original release does; float32 on the CPU.

    The latent gives the size (and, for inpainting, carries mask and masked image); the original has no
    image-to-image for these samplers, so denoise must be 1.
    """
    check_combination(unet, sampler)
    check_steps(steps)
    check_guidance(guidance_scale)
    if denoise != 1.0:
        raise ValueError(f"The {sampler} sampler starts from noise (denoise 1.0), as the original; got {denoise}.")
    from .decoder3 import _batch_latents

    latents = _batch_latents(latents, embeds)
    batch, _, h, w = latents.shape
    size = padded_size(h, w, unet.latent_multiple)
    extra = None
    if unet.variant.task == "inpaint":
        extra = pad_to(_inpaint_inputs(mask, masked_latents, batch, (h, w), unet), size)
    elif mask is not None:
        raise ValueError(f"A mask was given but '{unet.name}' is not an inpainting UNet: load the "
                         "'<release> / inpainting' UNet, or encode the image without a mask.")

    runtime.load(unet.modules())
    device, dtype = runtime.device(), unet.dtype
    rows = torch.arange(batch) % embeds.batch
    with torch.no_grad():
        cond, uncond = _contexts(unet, embeds, rows, device)
        extra = None if extra is None else extra.to(device=device, dtype=dtype)
        x = randn((batch, 4, *size), generator, device, dtype)
        if sampler == "flash":
            x = _flash(unet, x, cond, generator, runtime)
        else:
            x = _original(unet, x, cond, uncond, extra, steps, guidance_scale, generator, runtime)
    return crop_to(x, (h, w)).float().cpu()


def _original(unet, x, cond, uncond, extra, steps, guidance_scale, generator, runtime):
    acp = orig.alphas_cumprod()
    percentile = orig.INPAINT_PERCENTILE if extra is not None else orig.T2I_PERCENTILE
    guided = guidance_scale != 0
    context = torch.cat([cond[0], uncond[0]]) if guided else cond[0]
    context_mask = torch.cat([cond[1], uncond[1]]) if guided else cond[1]
    times = orig.sample_times(steps)
    for i, (t, prev_t) in enumerate(zip(times, times[1:] + [0])):
        model_in = x if extra is None else torch.cat([x, extra], dim=1)
        if guided:
            model_in = torch.cat([model_in, model_in])
        t_in = torch.full((model_in.shape[0],), float(t), device=x.device, dtype=x.dtype)
        eps = unet.unet(model_in, t_in, context, context_mask, project_context=False)
        if guided:
            eps = orig.guide(*eps.chunk(2), guidance_scale)
        noise = randn(x.shape, generator, x.device, x.dtype)  # drawn every step, as the original
        x = orig.ddim_step(x, eps, t, prev_t, noise, acp, percentile)
        runtime.progress(i + 1, len(times))
    return x


def _flash(unet, x, cond, generator, runtime):
    acp = orig.alphas_cumprod()
    for i, t in enumerate(orig.FLASH_TIMES):
        x_t = orig.flash_noised(x, t, randn(x.shape, generator, x.device, x.dtype), acp)
        t_in = torch.full((x.shape[0],), float(t), device=x.device, dtype=x.dtype)
        eps = unet.unet(x_t, t_in, cond[0], cond[1], project_context=False)
        x = orig.flash_estimate(x_t, eps, t, acp)
        runtime.progress(i + 1, len(orig.FLASH_TIMES))
    return x

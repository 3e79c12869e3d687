"""Kandinsky in ComfyUI's own sampling stack: MODEL (BaseModel + ModelPatcher) and VAE around the core's
modules. Imported only inside ComfyUI (by the bridge nodes' functions).

* MODEL: `KandinskyModel` is a comfy BaseModel whose `diffusion_model` calls our UNet and returns eps only
  (the learned-variance half dropped), and whose `model_sampling` is ComfyUI's discrete-eps sampling with
  exactly our sigmas, sqrt((1 - abar) / abar) of the repo's scheduler_config.json. Its `model_config`
  describes the same schedule in ComfyUI's names, so a stock ModelSamplingDiscrete node (which rebuilds
  model_sampling from model_config.sampling_settings) keeps it; see docs/COMFY_SAMPLING.md.
* Conditioning (from KandinskyConditioning) arrives in `extra_conds`: image embeds as the cross-attention
  tensor, the 2.1 prompts (encoded here by the UNet's M-CLIP), the depth hint; inpainting channels
  [masked image latents, keep mask] come from the LATENT's noise_mask and the input latents. Kandinsky 3:
  the T5 states as the cross-attention tensor and their mask, padded together when ComfyUI batches conds
  of different token lengths (see `text_mask_cond`).
* VAE: `MoVQVAE` is a comfy.sd.VAE around the MoVQ, so VAEDecode / VAEDecodeTiled / VAEEncode /
  VAEEncodeForInpaint work on MoVQ latents.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_management as mm
import comfy.model_patcher
import comfy.model_sampling
import comfy.sd
import comfy.supported_models_base
import comfy.utils
import torch
from torch import nn

from ..kandinsky_core.components import DecoderUNet, MoVQModel
from ..kandinsky_core.preview import LatentRGB
from ..kandinsky_core.stages import conditioning as core_conditioning
from ..kandinsky_core.stages.conditioning import DecoderConditioning
from ..kandinsky_core.stages.denoiser import unet_eps
from ..kandinsky_core.stages.hints import hint_for_latent
from ..kandinsky_core.stages.masks import latent_keep_mask
from ..kandinsky_core.stages.sizes import crop_to, pad_to, padded_size
from . import bridge, previews

logger = logging.getLogger(__name__)

LATENT_CHANNELS = 4  # MoVQ latents

class KandinskyLatentFormat(comfy.latent_formats.LatentFormat):
    """MoVQ latents: 4 channels, no scaling factor; preview factors fitted from the paired MoVQ."""

    scale_factor = 1.0
    latent_channels = LATENT_CHANNELS

    def __init__(self, rgb: LatentRGB | None = None, downscale: int = 8) -> None:
        self.spacial_downscale_ratio = downscale
        if rgb is not None:
            self.latent_rgb_factors = [list(row) for row in rgb.factors]
            self.latent_rgb_factors_bias = list(rgb.bias)


class KandinskyModelConfig(comfy.supported_models_base.BASE):
    """The model_config ComfyUI code reads: no UNet of its own, our schedule in ComfyUI's names."""

    unet_config = {}
    unet_extra_config = {}
    latent_format = KandinskyLatentFormat
    supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]

    def __init__(self, unet: DecoderUNet, memory_usage_factor: float) -> None:
        super().__init__({"disable_unet_model_creation": True})
        self.sampling_settings = bridge.comfy_sampling_settings(bridge.training_config(unet))
        self.memory_usage_factor = memory_usage_factor


class KandinskySampling(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    """Discrete eps sampling over our own sigma table (float32, as the core and diffusers compute it)."""

    def __init__(self, model_config: KandinskyModelConfig, sigmas: torch.Tensor) -> None:
        super().__init__(model_config)
        self.set_sigmas(sigmas)


def text_mask_cond(mask: torch.Tensor) -> comfy.conds.CONDCrossAttn:
    """Kandinsky 3's text mask (B, L) as a (B, L, 1) CONDCrossAttn: batched exactly like the states' stock
    CONDCrossAttn, which repeats a shorter token sequence to the common (LCM) length. Repeating states and mask
    together leaves K3's masked cross-attention and its attention pooling (query = mean over all tokens)
    unchanged; zero-padding with mask 0 would not (it shrinks that mean): tests/test_bridge.py measures both."""
    return comfy.conds.CONDCrossAttn(mask[..., None])


class KandinskyEps(nn.Module):
    """ComfyUI's `diffusion_model`: (x_in, timestep, context=image embeds, ...) -> eps (variance dropped).

    Pads the latent (and the inpaint channels, hint) to the UNet's multiple and crops eps back, as the core does.
    """

    def __init__(self, unet: DecoderUNet) -> None:
        super().__init__()
        self.unet = unet.unet
        self.text_encoder = unet.text_encoder  # 2.1: encodes the prompts in extra_conds, moved with the UNet
        self.bundle = unet

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def forward(self, x, timesteps, context=None, control=None, transformer_options={}, hint=None,
                text_embeds=None, text_hidden_states=None, text_mask=None, **kwargs):
        """x (B, 4 [+ 5 inpaint channels], h, w) already scaled by 1/sqrt(sigma^2 + 1); context (B, 1, D),
        Kandinsky 3: (B, L, D) text states with text_mask (B, L)."""
        h, w = x.shape[-2:]
        x = pad_to(x, padded_size(h, w, self.bundle.latent_multiple))
        if self.bundle.version == "3":  # text_mask (B, L, 1) from text_mask_cond
            cond = DecoderConditioning(None, text_hidden_states=context, text_mask=text_mask[..., 0])
        else:
            cond = DecoderConditioning(context[:, 0], text_embeds, text_hidden_states)
        extra = x[:, LATENT_CHANNELS:] if x.shape[1] > LATENT_CHANNELS else None
        eps = unet_eps(self.bundle, x[:, :LATENT_CHANNELS], timesteps, cond, extra, hint)  # variance half dropped
        return crop_to(eps, (h, w))


class KandinskyModel(comfy.model_base.BaseModel):
    """A Kandinsky decoder UNet as a ComfyUI MODEL."""

    def __init__(self, unet: DecoderUNet, rgb: LatentRGB | None, downscale: int) -> None:
        config = KandinskyModelConfig(unet, bridge.memory_usage_factor(unet))
        config.latent_format = KandinskyLatentFormat(rgb, downscale)
        super().__init__(config, model_type=comfy.model_base.ModelType.EPS)
        self.kandinsky = unet
        self.diffusion_model = KandinskyEps(unet)
        self.model_sampling = KandinskySampling(config, bridge.training_sigmas(unet))

    def extra_conds(self, **kwargs):
        out = super().extra_conds(**kwargs)  # the image embeds (cross_attn) -> c_crossattn
        unet, noise = self.kandinsky, kwargs["noise"]
        bridge.check_conditioning(unet, kwargs)
        if unet.version == "3":  # the states are the stock c_crossattn; their mask pads along with them
            out["text_mask"] = text_mask_cond(kwargs[bridge.TEXT_MASK])
        if unet.version == "2.1":
            pooled, hidden = core_conditioning._encode_texts(unet, list(kwargs[bridge.TEXTS]))
            out["text_embeds"] = comfy.conds.CONDRegular(pooled)
            out["text_hidden_states"] = comfy.conds.CONDRegular(hidden)
        h, w = noise.shape[-2:]
        if unet.variant.task == "depth":
            ph, pw = padded_size(h, w, unet.latent_multiple)
            f = 8  # the hint encoder downsamples 8x
            out["hint"] = comfy.conds.CONDRegular(hint_for_latent(kwargs[bridge.HINT], (h * f, w * f), (ph * f, pw * f)))
        if unet.variant.task == "inpaint":
            out["c_concat"] = comfy.conds.CONDNoiseShape(self._inpaint_channels(kwargs, noise))
        return out

    def _inpaint_channels(self, kwargs: dict, noise: torch.Tensor) -> torch.Tensor:
        """[masked image latents, keep mask] (B, 5, h, w) from the LATENT's noise_mask and input latents
        (or InpaintModelConditioning's concat_mask / concat_latent_image when given)."""
        mask = kwargs.get("concat_mask", kwargs.get("denoise_mask"))
        image = kwargs.get("concat_latent_image", kwargs.get("latent_image"))
        if mask is None:
            raise ValueError(
                f"The UNet '{self.kandinsky.name}' is an inpainting model: give KSampler a LATENT with a noise_mask "
                "(VAEEncodeForInpaint, SetLatentNoiseMask or KandinskyMoVQEncode with a mask)."
            )
        h, w = noise.shape[-2:]
        mask = mask[:, :1] if mask.ndim == 4 else mask.reshape(-1, 1, *mask.shape[-2:])
        keep = latent_keep_mask(mask.float().clamp(0, 1), (h, w)).to(noise.device)
        if image.shape[-2:] != (h, w):
            image = comfy.utils.common_upscale(image, w, h, "bilinear", "center")
        image = comfy.utils.resize_to_batch_size(image.to(noise.device), noise.shape[0])
        keep = comfy.utils.resize_to_batch_size(keep, noise.shape[0])
        return torch.cat([image * keep, keep], dim=1)

    def memory_required(self, input_shape, cond_shapes={}):
        """Measured activation bytes of one UNet call on this input (see bridge.ACTIVATION_BYTES)."""
        batch, _, h, w = input_shape[0], input_shape[1], input_shape[2], input_shape[3]
        return bridge.activation_bytes(self.kandinsky, batch, h, w, mm.dtype_size(self.kandinsky.dtype))


def model_patcher(unet: DecoderUNet) -> comfy.model_patcher.ModelPatcher:
    """The MODEL for a KANDINSKY_UNET (ComfyUI's node cache keeps it while the loader's output stays)."""
    bridge.check_bridgeable(unet)
    movq = previews.movq_for(unet)
    model = KandinskyModel(unet, previews.latent_rgb(unet), movq.scale_factor if movq is not None else 8)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


class MoVQCoder(nn.Module):
    """The VAE's first_stage_model: encode (B, 3, H, W) in -1..1 -> latents, decode latents -> -1..1 images."""

    def __init__(self, movq: MoVQModel) -> None:
        super().__init__()
        self.movq = movq.movq

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.movq.encode(x)

    def decode(self, z: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.movq.decode(z, force_not_quantize=True)


@contextmanager
def _quiet_vae_init():
    """comfy.sd.VAE.__init__ without weights sets its defaults and warns "No VAE weights detected"."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


class MoVQVAE(comfy.sd.VAE):
    """A comfy VAE whose first_stage_model is the MoVQ: ComfyUI's VAE defaults, then our model and devices."""

    def __init__(self, movq: MoVQModel) -> None:
        with _quiet_vae_init():
            super().__init__(sd={})  # no weights: only the attribute defaults are set
        self.first_stage_model = MoVQCoder(movq).eval()
        self.downscale_ratio = self.upscale_ratio = movq.scale_factor
        self.latent_channels = LATENT_CHANNELS
        self.working_dtypes = [movq.dtype]
        self.disable_offload = True  # whole-module loads: the MoVQ has plain torch layers, not ComfyUI's cast ones
        self.memory_used_decode = lambda shape, dtype: bridge.movq_decode_bytes(shape, movq.scale_factor, dtype)
        self.memory_used_encode = lambda shape, dtype: bridge.movq_encode_bytes(shape, dtype)
        self.device = mm.vae_device()
        self.vae_dtype = movq.dtype
        self.output_device = mm.intermediate_device()
        self.patcher = comfy.model_patcher.ModelPatcher(self.first_stage_model, load_device=self.device,
                                                        offload_device=mm.vae_offload_device())
        self.size = None

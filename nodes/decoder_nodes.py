"""KandinskyUNetSampler: embeddings + latent -> denoised latent (text-to-image, img2img, inpaint, depth)."""
from __future__ import annotations

from ..kandinsky_core.stages import decoder as decoder_stage
from . import runtime
from .common import CATEGORY, EMBEDS, HINT, UNET, generator, guidance_input, seed_input, steps_input
from .latents import latent_samples, sampler_output


class KandinskyUNetSampler:
    DESCRIPTION = (
        "Denoises a latent with the decoder UNet, conditioned on image embeddings. An empty latent "
        "(EmptyLatentImage) gives text-to-image; KandinskyMoVQEncode's latent with denoise < 1 gives image-to-image; "
        "a latent with a noise_mask and an inpainting UNet inpaints; a depth ControlNet UNet needs a hint. Any "
        "size that is a multiple of 8 pixels comes back exactly. The output LATENT drops noise_mask (the "
        "inpainting is done)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The denoised MoVQ latents, for KandinskyMoVQDecode.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "unet": (UNET, {"tooltip": "The UNet from KandinskyDecoderLoader."}),
                "embeds": (EMBEDS, {
                    "tooltip": "Image embeddings from a prior node of the same Kandinsky version; a latent batch "
                               "larger than the embeds batch reuses the embeds cyclically.",
                }),
                "latent": ("LATENT", {
                    "tooltip": "Start latent: EmptyLatentImage (size only) for text-to-image, KandinskyMoVQEncode for "
                               "image-to-image, or KandinskyMoVQEncode with a mask (noise_mask) for inpainting.",
                }),
                "seed": seed_input("initial noise"),
                "steps": steps_input(50, 1, "Number of steps of the full schedule (diffusers' num_inference_steps)."),
                "guidance_scale": guidance_input(4.0, "Classifier-free guidance scale; 1 or less turns guidance off."),
                "sampler": (decoder_stage.SAMPLERS, {
                    "default": "ddpm",
                    "tooltip": "ddpm: the scheduler the 2.2 decoder repos ship; ddim: deterministic DDIM with the "
                               "same training schedule. Both match the diffusers pipelines with that scheduler. "
                               "euler, euler_ancestral, heun, dpmpp_2m (plain, _karras, _sde_karras): k-diffusion "
                               "samplers over the repo's own sigmas, equal to diffusers' Euler / Euler a / Heun / "
                               "DPM-Solver++ schedulers (heun: 2 UNet calls per step).",
                }),
                "denoise": ("FLOAT", {
                    "default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                    "tooltip": "diffusers' img2img `strength`: with S steps and denoise d the last floor(S x d) "
                               "steps of the S-step schedule run, starting from the latent noised to that point. "
                               "1.0 = start from pure noise (the latent only gives the size).",
                }),
            },
            "optional": {
                "hint": (HINT, {"tooltip": "Depth hint (KandinskyDepthHint); required by, and only for, the depth "
                                           "ControlNet UNet (kandinsky-2-2-controlnet-depth)."}),
            },
        }

    def sample(self, unet, embeds, latent, seed: int, steps: int, guidance_scale: float, sampler: str,
               denoise: float, hint=None):
        samples = decoder_stage.sample(
            unet, embeds, latent_samples(latent), generator=generator(seed), steps=steps,
            guidance_scale=guidance_scale, sampler=sampler, denoise=denoise, hint=hint,
            mask=latent.get("noise_mask"), runtime=runtime.runtime_for(unet, "unet"),
        )
        return (sampler_output(latent, samples.to(runtime.output_device())),)

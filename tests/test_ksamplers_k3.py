"""k-diffusion-style samplers on a tiny Kandinsky 3 model vs diffusers' σ schedulers.

As tests/test_ksamplers.py for 2.x: the reference loop is written from diffusers' parts (Kandinsky3UNet loaded
from the same saved folder, `scheduler.scale_model_input`, `scheduler.step`, K3's guidance (g + 1)·c - g·u),
with the scheduler of the same algorithm built from the repo's own scheduler config (squaredcos_cap_v2).
Same text states and mask, same CPU generator: images must agree to 1e-4.

K3's config sets clip_sample (DDPM's x₀ clipping to [-1, 1]); of the σ schedulers only diffusers' Heun reads
it, and neither k-diffusion nor ComfyUI clips, so the reference schedulers get clip_sample off.
"""
import pytest
import torch
from test_k3 import ours, pipe, repo  # noqa: F401  (the tiny K3 repo, our models, diffusers' pipeline; module-scoped)
from test_ksamplers import STEPS, reference_image, reference_latents, reference_scheduler
from tiny_models.parity import as_comfy_image, gen, max_diff, random_image

from kandinsky_core.payloads import Embeds, TextEmbeds
from kandinsky_core.runtime import LocalRuntime
from kandinsky_core.stages import decoder, ksampling, text3
from kandinsky_core.stages import movq as movq_stage
from kandinsky_core.stages.masked_img2img import masked_img2img

IMG_TOL = 1e-4
SEED = 3
GUIDANCE = 3.0  # K3's guidance_scale g: eps = (g + 1)·c - g·u
RT = LocalRuntime("cpu")
SAMPLER_NAMES = list(ksampling.SAMPLERS)


@pytest.fixture(scope="module")
def embeds(ours):
    """Prompt and negative of different lengths: the shorter rows carry mask-0 padding."""
    return text3.encode_prompts(ours.text_encoder, ["a red cat in the forest"], "blurry", RT)


def k3_scheduler(sampler, pipe):
    """The reference scheduler, walking its σ grid from the first entry: on K3's cosine table the Karras
    DPM-Solver grid has a repeated timestep (998, 998, 983, 0 for 4 steps), and diffusers' step-index lookup by
    timestep would start at the second 998 and skip a step (a pipeline without set_begin_index does that)."""
    scheduler = reference_scheduler(sampler, {**pipe.scheduler.config, "clip_sample": False})
    set_timesteps = scheduler.set_timesteps

    def set_timesteps_from_the_start(*args, **kwargs):
        set_timesteps(*args, **kwargs)
        scheduler.set_begin_index(0)

    scheduler.set_timesteps = set_timesteps_from_the_start
    return scheduler


def k3_model(pipe, embeds):
    """diffusers' K3 UNet with K3's guidance on the [negative, positive] batch."""
    states = torch.cat([embeds.negative_embeds, embeds.embeds])
    mask = torch.cat([embeds.negative_mask, embeds.mask])

    def model(latents_in, t):
        eps = pipe.unet(torch.cat([latents_in] * 2), t, encoder_hidden_states=states,
                        encoder_attention_mask=mask, return_dict=False)[0]
        uncond, cond = eps.chunk(2)
        return (GUIDANCE + 1.0) * cond - GUIDANCE * uncond

    return model


def run_ours(ours, embeds, latents, sampler, **kwargs):
    """Our latents and image (B, H, W, 3)."""
    out = decoder.sample(ours.unet, embeds, latents, generator=gen(SEED), steps=kwargs.pop("steps", STEPS),
                         guidance_scale=GUIDANCE, sampler=sampler, runtime=RT, **kwargs)
    return out, movq_stage.decode(ours.movq, out, runtime=RT)


def assert_image_matches(got, ref_latents, pipe, sampler):
    """Images to IMG_TOL; the latents too, relative to their size (the random tiny MoVQ saturates images made
    from the huge latents of a Karras DPM-Solver run, σ_max = 20291 on K3's cosine table)."""
    latents, image = got
    diff = max_diff(image, reference_image(pipe.movq, ref_latents))
    latent_rdiff = max_diff(latents, ref_latents) / float(ref_latents.abs().max())
    print(f"[k3 {sampler}] image max diff {diff:.3g}, latent max diff / max |latent| {latent_rdiff:.3g}")
    assert diff <= IMG_TOL and latent_rdiff <= IMG_TOL


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_text2img_k3_matches_diffusers_scheduler(ours, pipe, embeds, sampler):
    assert embeds.mask.sum() != embeds.negative_mask.sum()  # the padding is exercised
    ref = reference_latents(k3_model(pipe, embeds), k3_scheduler(sampler, pipe),
                            (1, 4, 16, 16), seed=SEED)
    got = run_ours(ours, embeds, torch.zeros(1, 4, 16, 16), sampler)
    assert_image_matches(got, ref, pipe, sampler)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m_karras"])
def test_img2img_k3_starts_partway_along_the_schedule(ours, pipe, embeds, sampler):
    init = movq_stage.encode(ours.movq, as_comfy_image(random_image(64, 4)), runtime=RT)
    ref = reference_latents(k3_model(pipe, embeds), k3_scheduler(sampler, pipe),
                            tuple(init.shape), steps=8, seed=SEED, init=init, strength=0.5)
    got = run_ours(ours, embeds, init, sampler, steps=8, denoise=0.5)
    assert_image_matches(got, ref, pipe, sampler)


def test_mask_with_the_k3_unet_is_masked_img2img(ours, pipe, embeds):
    """As for 2.x UNets without mask channels (ComfyUI's noise_mask): the kept area is re-imposed, noised to σ,
    at every model call and clean at the end."""
    init = movq_stage.encode(ours.movq, as_comfy_image(random_image(64, 5)), runtime=RT)
    h, w = init.shape[-2:]
    mask = torch.zeros(1, 8 * h, 8 * w)
    mask[:, : 4 * h, : 5 * w] = 1.0  # repaint the top-left block
    noise = torch.randn(init.shape, generator=gen(SEED))
    keep = 1 - masked_img2img(init, noise, mask, (h, w), (h, w)).repaint
    ref = reference_latents(k3_model(pipe, embeds), k3_scheduler("euler", pipe),
                            tuple(init.shape), seed=SEED, blend=(init, keep))
    got = run_ours(ours, embeds, init, "euler", mask=mask)
    assert_image_matches(got, ref, pipe, "euler masked")
    assert 0 < float(keep.mean()) < 1 and torch.equal(got[0] * keep, init * keep)


def test_k3_ksamplers_errors(ours, embeds):
    with pytest.raises(ValueError, match=r"Kandinsky 2\.2 prior.*Kandinsky 3"):
        decoder.sample(ours.unet, Embeds(torch.zeros(1, 32), torch.zeros(1, 32), "2.2"), torch.zeros(1, 4, 8, 8),
                       generator=gen(0), steps=2, sampler="euler", runtime=RT)
    with pytest.raises(ValueError, match="steps must be an integer"):
        decoder.sample(ours.unet, embeds, torch.zeros(1, 4, 8, 8), generator=gen(0), steps=0, sampler="heun",
                       runtime=RT)
    with pytest.raises(ValueError, match="ddpm.*without a mask|without a mask.*euler"):
        decoder.sample(ours.unet, embeds, torch.zeros(1, 4, 8, 8), generator=gen(0), steps=2, sampler="ddpm",
                       mask=torch.ones(1, 64, 64), runtime=RT)
    narrow = TextEmbeds(torch.zeros(1, 3, 8), torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 3, 8),
                        torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="8 wide.*32-wide"):
        decoder.sample(ours.unet, narrow, torch.zeros(1, 4, 8, 8), generator=gen(0), steps=2, sampler="euler",
                       runtime=RT)

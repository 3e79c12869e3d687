"""End-to-end seed parity with the diffusers Kandinsky 2.2 pipelines on tiny models (spec §4, §5).

Same saved weights (diffusers save_pretrained -> our loader), same inputs, same CPU generator seed:
images must agree to 1e-4 in [0, 1], embeddings to 1e-5.
"""
import dataclasses

import pytest
import torch

from kandinsky_core.configs.scheduler import SchedulerConfig
from kandinsky_core.loading.components import load_decoder, load_prior
from kandinsky_core.runtime import LocalRuntime
from kandinsky_core.stages import decoder, prior
from kandinsky_core.stages import movq as movq_stage
from kandinsky_core.stages.hints import depth_hint
from tiny_models import parity
from tiny_models.parity import as_comfy_image, max_diff, random_image
from tiny_models.repos import (DDPM_LEARNED, build_decoder_repo, build_prior_repo, reference_pipeline,
                               reference_scheduler)

SEED = 7
IMG_TOL = 1e-4
EMB_TOL = 1e-5
RT = LocalRuntime("cpu")


def gen(seed=SEED):
    return parity.gen(seed)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos22")
    built = {"prior": build_prior_repo(root / "prior")}
    for name in ("decoder22", "inpaint22", "depth22"):
        built[name] = build_decoder_repo(root / name, name)
    return built


@pytest.fixture(scope="module")
def ours(repos):
    loaded = {"prior": load_prior(repos["prior"])}
    for name in ("decoder22", "inpaint22", "depth22"):
        loaded[name] = load_decoder(repos[name])
    return loaded


def with_sampler(unet, sampler, learned=False):
    if not learned:
        return unet
    configs = {"scheduler": SchedulerConfig.from_dict({"_class_name": "DDPMScheduler", **DDPM_LEARNED})}
    return dataclasses.replace(unet, scheduler_configs=configs)


def embeds_from(pos, neg):
    from kandinsky_core.payloads import Embeds
    return Embeds(pos.float(), neg.float(), "2.2")


# --- prior ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("negative", [None, "low quality"])
def test_prior_encode_matches_diffusers(repos, ours, negative):
    pipe = reference_pipeline("KandinskyV22PriorPipeline", repos["prior"])
    ref = pipe("horse", negative_prompt=negative, num_images_per_prompt=2, num_inference_steps=3,
               guidance_scale=4.0, generator=gen())
    got = prior.prior_encode(ours["prior"], "horse", negative, generator=gen(), steps=3, guidance_scale=4.0,
                             num_images_per_prompt=2, runtime=RT)
    assert got.image_embeds.shape == (2, 32)
    assert max_diff(got.image_embeds, ref.image_embeds) <= EMB_TOL
    assert max_diff(got.negative_image_embeds, ref.negative_image_embeds) <= EMB_TOL


def test_interpolate_matches_diffusers(repos, ours):
    pipe = reference_pipeline("KandinskyV22PriorPipeline", repos["prior"])
    picture = random_image(96, 3)
    weights = [0.3, 0.5, 0.2]
    ref = pipe.interpolate(["horse", "a red cat", picture], weights, num_inference_steps=3, generator=gen())
    g = gen()
    parts = [
        prior.prior_encode(ours["prior"], "horse", None, generator=g, steps=3, runtime=RT),
        prior.prior_encode(ours["prior"], "a red cat", None, generator=g, steps=3, runtime=RT),
        prior.image_embed(ours["prior"], as_comfy_image(picture), runtime=RT),
    ]
    got = prior.interpolate(parts, weights)
    assert max_diff(got.image_embeds, ref.image_embeds) <= EMB_TOL
    assert max_diff(got.negative_image_embeds, ref.negative_image_embeds) <= EMB_TOL


@pytest.mark.parametrize("negative", [None, "blurry"])
def test_emb2emb_matches_diffusers(repos, ours, negative):
    import diffusers

    base = reference_pipeline("KandinskyV22PriorPipeline", repos["prior"])
    pipe = diffusers.KandinskyV22PriorEmb2EmbPipeline(**base.components)
    picture = random_image(128, 5)
    ref = pipe("horse", picture, strength=0.5, negative_prompt=negative, num_inference_steps=4, generator=gen())
    got = prior.emb2emb(ours["prior"], as_comfy_image(picture), "horse", negative, strength=0.5, generator=gen(),
                        steps=4, runtime=RT)
    assert max_diff(got.image_embeds, ref.image_embeds) <= EMB_TOL
    assert max_diff(got.negative_image_embeds, ref.negative_image_embeds) <= EMB_TOL


# --- decoders ------------------------------------------------------------------------------------

def decoder_embeds(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 32, generator=g), torch.rand(1, 32, generator=g)


@pytest.mark.parametrize("sampler,learned", [("ddim", False), ("ddpm", False), ("ddpm", True)])
def test_text2img_matches_diffusers(repos, ours, sampler, learned):
    pos, neg = decoder_embeds()
    pipe = reference_pipeline("KandinskyV22Pipeline", repos["decoder22"], reference_scheduler(sampler, learned))
    ref = pipe(image_embeds=pos, negative_image_embeds=neg, height=64, width=64, num_inference_steps=3,
               guidance_scale=4.0, generator=gen(), output_type="np").images
    unet, movq = ours["decoder22"]
    latents = decoder.sample(with_sampler(unet, sampler, learned), embeds_from(pos, neg), torch.zeros(1, 4, 32, 32),
                             generator=gen(), steps=3, guidance_scale=4.0, sampler=sampler, runtime=RT)
    image = movq_stage.decode(movq, latents, runtime=RT)
    assert image.shape == (1, 64, 64, 3)
    assert max_diff(image, ref) <= IMG_TOL


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_img2img_matches_diffusers(repos, ours, sampler):
    pos, neg = decoder_embeds(1)
    picture = random_image(64, 11)
    pixels = as_comfy_image(picture)
    pipe = reference_pipeline("KandinskyV22Img2ImgPipeline", repos["decoder22"], reference_scheduler(sampler))
    ref = pipe(image=pixels.permute(0, 3, 1, 2).contiguous(), image_embeds=pos, negative_image_embeds=neg, height=64, width=64,
               num_inference_steps=10, strength=0.35, guidance_scale=7.0, generator=gen(), output_type="np").images
    unet, movq = ours["decoder22"]
    init = movq_stage.encode(movq, pixels, runtime=RT)
    latents = decoder.sample(unet, embeds_from(pos, neg), init, generator=gen(), steps=10, guidance_scale=7.0,
                             sampler=sampler, denoise=0.35, runtime=RT)
    assert max_diff(movq_stage.decode(movq, latents, runtime=RT), ref) <= IMG_TOL


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_inpaint_matches_diffusers(repos, ours, sampler):
    pos, neg = decoder_embeds(2)
    pixels = as_comfy_image(random_image(64, 13))
    mask = torch.zeros(1, 64, 64)
    mask[:, :32, :40] = 1.0  # repaint the top-left block
    pipe = reference_pipeline("KandinskyV22InpaintPipeline", repos["inpaint22"], reference_scheduler(sampler))
    ref = pipe(image=pixels.permute(0, 3, 1, 2).contiguous() * 2 - 1, mask_image=mask.clone(), image_embeds=pos,
               negative_image_embeds=neg, height=64, width=64, num_inference_steps=3, guidance_scale=4.0,
               generator=gen(), output_type="np").images
    unet, movq = ours["inpaint22"]
    init = movq_stage.encode(movq, pixels, runtime=RT)
    latents = decoder.sample(unet, embeds_from(pos, neg), init, generator=gen(), steps=3, guidance_scale=4.0,
                             sampler=sampler, mask=mask, runtime=RT)
    assert max_diff(movq_stage.decode(movq, latents, runtime=RT), ref) <= IMG_TOL


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_controlnet_matches_diffusers(repos, ours, sampler):
    pos, neg = decoder_embeds(3)
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    pipe = reference_pipeline("KandinskyV22ControlnetPipeline", repos["depth22"], reference_scheduler(sampler))
    ref = pipe(image_embeds=pos, negative_image_embeds=neg, hint=hint, height=64, width=64, num_inference_steps=3,
               guidance_scale=4.0, generator=gen(), output_type="np").images
    unet, movq = ours["depth22"]
    latents = decoder.sample(unet, embeds_from(pos, neg), torch.zeros(1, 4, 8, 8), generator=gen(), steps=3,
                             guidance_scale=4.0, sampler=sampler, hint=depth_hint(hint.permute(0, 2, 3, 1)),
                             runtime=RT)
    assert max_diff(movq_stage.decode(movq, latents, runtime=RT), ref) <= IMG_TOL


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_controlnet_img2img_matches_diffusers(repos, ours, sampler):
    import diffusers

    pos, neg = decoder_embeds(4)
    pixels = as_comfy_image(random_image(64, 17))
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    pipe = reference_pipeline("KandinskyV22ControlnetPipeline", repos["depth22"])
    pipe = diffusers.KandinskyV22ControlnetImg2ImgPipeline(**{**pipe.components, "scheduler": reference_scheduler(sampler)})
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(image=pixels.permute(0, 3, 1, 2).contiguous(), image_embeds=pos, negative_image_embeds=neg, hint=hint, height=64,
               width=64, num_inference_steps=10, strength=0.5, guidance_scale=4.0, generator=gen(),
               output_type="np").images
    unet, movq = ours["depth22"]
    init = movq_stage.encode(movq, pixels, runtime=RT)
    latents = decoder.sample(unet, embeds_from(pos, neg), init, generator=gen(), steps=10, guidance_scale=4.0,
                             sampler=sampler, denoise=0.5, hint=depth_hint(hint.permute(0, 2, 3, 1)), runtime=RT)
    assert max_diff(movq_stage.decode(movq, latents, runtime=RT), ref) <= IMG_TOL


def test_emb2emb_of_an_image_batch_gives_one_row_per_image(ours):
    pictures = torch.cat([as_comfy_image(random_image(64, s)) for s in (1, 2)])
    got = prior.emb2emb(ours["prior"], pictures, "horse", "blurry", strength=0.5, generator=gen(), steps=3, runtime=RT)
    assert got.image_embeds.shape == got.negative_image_embeds.shape == (2, 32)
    assert not torch.allclose(got.image_embeds[0], got.image_embeds[1])

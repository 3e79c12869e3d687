"""End-to-end seed parity with the diffusers Kandinsky 2.1 pipelines on tiny models (spec §4.1-4.2, §4.6-4.8).

Same saved weights (diffusers save_pretrained -> our loaders), same inputs, same CPU generator seed:
images must agree to 1e-4 in [0, 1], embeddings to 1e-5. Also: mixing 2.1 and 2.2 components is an error
that names both versions.
"""
import shutil

import pytest
import torch

from kandinsky_core.loading.components import load_decoder, load_prior
from kandinsky_core.payloads import Embeds
from kandinsky_core.runtime import LocalRuntime
from kandinsky_core.stages import decoder, prior
from kandinsky_core.stages import movq as movq_stage
from tiny_models import parity
from tiny_models.parity import as_comfy_image, max_diff, random_image
from tiny_models.repos import build_decoder_repo, reference_pipeline
from tiny_models.repos21 import build_decoder21_repo, build_prior21_repo, reference_scheduler21

SEED = 5
IMG_TOL = 1e-4
EMB_TOL = 1e-5
RT = LocalRuntime("cpu")


def gen(seed=SEED):
    return parity.gen(seed)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos21")
    return {
        "prior": build_prior21_repo(root / "prior"),
        "decoder21": build_decoder21_repo(root / "decoder21", "decoder21"),
        "inpaint21": build_decoder21_repo(root / "inpaint21", "inpaint21"),
    }


@pytest.fixture(scope="module")
def ours(repos):
    return {
        "prior": load_prior(repos["prior"]),
        "decoder21": load_decoder(repos["decoder21"]),
        "inpaint21": load_decoder(repos["inpaint21"]),
    }


def decoder_embeds(seed):
    """diffusers' 2.1 dummy tests feed (1, cross_attention_dim = 32) image embeddings."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 32, generator=g), torch.rand(1, 32, generator=g)


def embeds21(pos, neg, prompt, negative_prompt=""):
    """What KandinskyPriorEncode hands the decoder: embeddings plus the texts the 2.1 UNet reads."""
    return Embeds(pos.float(), neg.float(), "2.1", (prompt,) * pos.shape[0], (negative_prompt,) * pos.shape[0])


def reference_decoder(pipeline_class, repo, sampler):
    return reference_pipeline(pipeline_class, repo, reference_scheduler21(repo, sampler))


# --- prior ---------------------------------------------------------------------------------------

def test_loaders_detect_21(ours):
    assert ours["prior"].version == "2.1" and ours["prior"].embed_dim == 32
    unet, movq = ours["decoder21"]
    assert (unet.version, unet.variant.task, movq.version) == ("2.1", "text2img", "2.1")
    assert unet.text_encoder is not None and unet.tokenizer is not None
    assert set(unet.scheduler_configs) == {"scheduler", "ddpm_scheduler"}
    assert unet.scheduler_configs["ddpm_scheduler"].variance_type == "learned_range"
    assert ours["inpaint21"][0].variant.task == "inpaint"
    # diffusers' MultilingualCLIP runs XLM-R with eager attention; SDPA's rounding breaks pixel parity
    assert unet.text_encoder.transformer.config._attn_implementation == "eager"


def test_text_encoder_with_legacy_index_buffers_loads(repos, ours, tmp_path):
    """Checkpoints saved by older transformers carry XLM-R's position/token-type id buffers as tensors."""
    from safetensors.torch import load_file, save_file

    repo = tmp_path / "kandinsky-2-1"
    shutil.copytree(repos["decoder21"], repo)
    weights = repo / "text_encoder" / "model.safetensors"
    state = load_file(weights)
    state["transformer.embeddings.position_ids"] = torch.arange(512)[None]
    state["transformer.embeddings.token_type_ids"] = torch.zeros(1, 512, dtype=torch.long)
    save_file(state, weights)
    loaded = load_decoder(repo)[0].text_encoder
    ids, mask = torch.tensor([[0, 5, 9, 2, 1]]), torch.tensor([[1, 1, 1, 1, 0]])
    with torch.no_grad():
        for a, b in zip(loaded(ids, mask), ours["decoder21"][0].text_encoder(ids, mask)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("negative", [None, "low quality"])
def test_prior_encode_matches_diffusers(repos, ours, negative):
    pipe = reference_pipeline("KandinskyPriorPipeline", repos["prior"])
    ref = pipe("horse", negative_prompt=negative, num_images_per_prompt=2, num_inference_steps=3,
               guidance_scale=4.0, generator=gen())
    got = prior.prior_encode(ours["prior"], "horse", negative, generator=gen(), steps=3, guidance_scale=4.0,
                             num_images_per_prompt=2, runtime=RT)
    assert got.version == "2.1" and got.image_embeds.shape == (2, 32)
    assert got.prompts == ("horse", "horse") and got.negative_prompts == (negative or "",) * 2
    assert max_diff(got.image_embeds, ref.image_embeds) <= EMB_TOL
    assert max_diff(got.negative_image_embeds, ref.negative_image_embeds) <= EMB_TOL


def test_interpolate_matches_diffusers(repos, ours):
    pipe = reference_pipeline("KandinskyPriorPipeline", repos["prior"])
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
    assert got.version == "2.1" and got.image_embeds.shape == (1, 32)
    assert max_diff(got.image_embeds, ref.image_embeds) <= EMB_TOL
    assert max_diff(got.negative_image_embeds, ref.negative_image_embeds) <= EMB_TOL


# --- decoders ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler,negative_prompt,n", [("ddim", None, 1), ("ddpm", "blurry", 2)])
def test_text2img_matches_diffusers(repos, ours, sampler, negative_prompt, n):
    """DDIM from scheduler/ (the repo default) and the learned-range DDPM of ddpm_scheduler/."""
    pos, neg = decoder_embeds(0)
    pipe = reference_decoder("KandinskyPipeline", repos["decoder21"], sampler)
    ref = pipe("horse", image_embeds=pos, negative_image_embeds=neg, negative_prompt=negative_prompt, height=64,
               width=64, num_inference_steps=3, guidance_scale=4.0, num_images_per_prompt=n, generator=gen(),
               output_type="np").images
    unet, movq = ours["decoder21"]
    latents = decoder.sample(unet, embeds21(pos, neg, "horse", negative_prompt or ""), torch.zeros(n, 4, 32, 32),
                             generator=gen(), steps=3, guidance_scale=4.0, sampler=sampler, runtime=RT)
    image = movq_stage.decode(movq, latents, runtime=RT)
    assert image.shape == (n, 64, 64, 3)
    assert max_diff(image, ref) <= IMG_TOL


def test_text2img_without_guidance_matches_diffusers(repos, ours):
    pos, neg = decoder_embeds(1)
    pipe = reference_decoder("KandinskyPipeline", repos["decoder21"], "ddim")
    ref = pipe("a red cat", image_embeds=pos, negative_image_embeds=neg, height=64, width=64, num_inference_steps=2,
               guidance_scale=1.0, generator=gen(), output_type="np").images
    unet, movq = ours["decoder21"]
    latents = decoder.sample(unet, embeds21(pos, neg, "a red cat"), torch.zeros(1, 4, 32, 32), generator=gen(),
                             steps=2, guidance_scale=1.0, sampler="ddim", runtime=RT)
    assert max_diff(movq_stage.decode(movq, latents, runtime=RT), ref) <= IMG_TOL


@pytest.mark.parametrize("sampler,strength", [("ddim", 0.35), ("ddpm", 0.6)])
def test_img2img_matches_diffusers(repos, ours, sampler, strength):
    """2.1 img2img noises with its own 1e-4..0.02 schedule at t = int(1000 strength) - 2 (spec §4.7)."""
    pos, neg = decoder_embeds(2)
    pixels = as_comfy_image(random_image(64, 11))
    pipe = reference_pipeline("KandinskyImg2ImgPipeline", repos["decoder21"],
                              reference_scheduler21(repos["decoder21"], sampler))
    ref = pipe("horse", image=pixels.permute(0, 3, 1, 2).contiguous(), image_embeds=pos, negative_image_embeds=neg,
               height=64, width=64, num_inference_steps=10, strength=strength, guidance_scale=7.0, generator=gen(),
               output_type="np").images
    unet, movq = ours["decoder21"]
    init = movq_stage.encode(movq, pixels, runtime=RT)
    latents = decoder.sample(unet, embeds21(pos, neg, "horse"), init, generator=gen(), steps=10, guidance_scale=7.0,
                             sampler=sampler, denoise=strength, runtime=RT)
    assert max_diff(movq_stage.decode(movq, latents, runtime=RT), ref) <= IMG_TOL


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_inpaint_matches_diffusers(repos, ours, sampler):
    """2.1 inpainting never re-imposes the known region: the output is the plain decode."""
    pos, neg = decoder_embeds(3)
    pixels = as_comfy_image(random_image(64, 13))
    mask = torch.zeros(1, 64, 64)
    mask[:, :32, :40] = 1.0  # repaint the top-left block
    pipe = reference_decoder("KandinskyInpaintPipeline", repos["inpaint21"], sampler)
    ref = pipe("horse", image=pixels.permute(0, 3, 1, 2).contiguous() * 2 - 1, mask_image=mask.clone(),
               image_embeds=pos, negative_image_embeds=neg, height=64, width=64, num_inference_steps=3,
               guidance_scale=4.0, generator=gen(), output_type="np").images
    unet, movq = ours["inpaint21"]
    init = movq_stage.encode(movq, pixels, runtime=RT)
    latents = decoder.sample(unet, embeds21(pos, neg, "horse"), init, generator=gen(), steps=3, guidance_scale=4.0,
                             sampler=sampler, mask=mask, runtime=RT)
    assert max_diff(movq_stage.decode(movq, latents, runtime=RT), ref) <= IMG_TOL


# --- mixing versions -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unet22(tmp_path_factory):
    return load_decoder(build_decoder_repo(tmp_path_factory.mktemp("mixed") / "decoder22", "decoder22"))[0]


def test_21_embeds_into_22_unet_names_both_versions(ours, unet22):
    embeds = prior.prior_encode(ours["prior"], "horse", None, generator=gen(), steps=2, runtime=RT)
    with pytest.raises(ValueError, match=r"(?s)Kandinsky 2\.1.*Kandinsky 2\.2"):
        decoder.sample(unet22, embeds, torch.zeros(1, 4, 32, 32), generator=gen(), steps=2, runtime=RT)


def test_22_embeds_into_21_unet_names_both_versions(ours):
    pos, neg = decoder_embeds(4)
    embeds = Embeds(pos, neg, "2.2")
    for name in ("decoder21", "inpaint21"):
        with pytest.raises(ValueError, match=r"(?s)Kandinsky 2\.2.*Kandinsky 2\.1"):
            decoder.sample(ours[name][0], embeds, torch.zeros(1, 4, 32, 32), generator=gen(), steps=2,
                           mask=torch.ones(1, 64, 64) if name == "inpaint21" else None, runtime=RT)


def test_interpolating_21_with_22_names_both_versions():
    pos, neg = decoder_embeds(5)
    with pytest.raises(ValueError, match=r"2\.1.*2\.2"):
        prior.interpolate([Embeds(pos, neg, "2.1"), Embeds(pos, neg, "2.2")], [0.5, 0.5])

"""Kandinsky 3 through the nodes: KandinskyTextEncoderLoader + KandinskyTextEncode stand where the prior stands,
KandinskyDecoderLoader loads the K3 UNet and MoVQ; the node graphs reproduce Kandinsky3Pipeline and
Kandinsky3Img2ImgPipeline seed for seed; fp8 storage and the memory modes through the loaders; mixed-version
graphs are clear errors naming both versions, after which the next run works."""
import importlib
from io import BytesIO

import pytest
import torch
from tiny_models.node_repos import (DECODER, K3, PRIOR, assert_same, call, gen, models, nodes,  # noqa: F401
                                    rand_image, tiny_model_dir)

DIFFUSERS_TOL = 1e-4  # images in [0, 1] (spec parity criterion)
PROMPT = "a painting of squirrel eating burger"
FP8_TOL = 0.1  # fp8 T5 weights vs fp32: relative L2 error of the embeds (measured ~0.04 on the tiny T5)
FP8_IMAGE_TOL = 0.05  # fp8 UNet weights vs fp32: mean abs pixel difference (measured ~0.015 on the tiny UNet)


@pytest.fixture(scope="module")
def k3(nodes):
    loaders = nodes["KandinskyTextEncoderLoader"](), nodes["KandinskyDecoderLoader"]()
    text_encoder = call(loaders[0], text_encoder_name=K3, dtype="fp32")[0]
    unet, movq = call(loaders[1], decoder_name=K3, dtype="fp32")
    return {"text_encoder": text_encoder, "unet": unet, "movq": movq, "loaders": loaders}


def encode(nodes, text_encoder, prompt=PROMPT, negative=""):
    return call(nodes["KandinskyTextEncode"], text_encoder=text_encoder, prompt=prompt, negative_prompt=negative)[0]


def sample(nodes, k3, embeds, latent, seed, steps, gs, sampler="ddpm", denoise=1.0, unet=None):
    return call(nodes["KandinskyUNetSampler"], unet=unet or k3["unet"], embeds=embeds, latent=latent, seed=seed,
                steps=steps, guidance_scale=gs, sampler=sampler, denoise=denoise)[0]


def decode(nodes, k3, latent, movq=None):
    return call(nodes["KandinskyMoVQDecode"], movq=movq or k3["movq"], latent=latent)[0]


def reference(pipeline="Kandinsky3Pipeline", sampler="ddpm"):
    import diffusers
    from tiny_models.k3 import K3_DDPM, reference_k3

    scheduler = diffusers.DDIMScheduler.from_config({**K3_DDPM, "set_alpha_to_one": False}) if sampler == "ddim" \
        else None
    return reference_k3(tiny_model_dir() / K3, pipeline, scheduler)


def test_loaders_give_k3_bundles(k3):
    assert k3["text_encoder"].version == "3" and k3["text_encoder"].name == K3
    assert k3["unet"].version == "3" and k3["movq"].version == "3"
    assert k3["text_encoder"].text_encoder.training is False


def test_empty_negative_prompt_is_diffusers_none(nodes, k3):
    embeds = encode(nodes, k3["text_encoder"])
    assert embeds.version == "3" and embeds.batch == 1
    assert not embeds.negative_mask.any() and not embeds.negative_embeds.any()
    assert embeds.mask.any()
    negative = encode(nodes, k3["text_encoder"], negative="blurry, low quality")
    assert negative.negative_mask.any() and torch.equal(negative.embeds, embeds.embeds)


@pytest.mark.parametrize("negative,images,sampler,gs", [
    ("", 1, "ddpm", 3.0),  # no negative prompt
    ("low quality", 2, "ddpm", 6.0),  # negative prompt, num_images_per_prompt=2 (latent batch 2)
    ("", 1, "ddim", 3.0),
    ("", 1, "ddpm", 1.0),  # guidance off
], ids=["t2i", "negative-batch2", "ddim", "no-guidance"])
def test_t2i_graph_matches_diffusers(nodes, k3, negative, images, sampler, gs):
    pipe = reference(sampler=sampler)
    ref = pipe(PROMPT, negative_prompt=negative or None, num_images_per_prompt=images, height=64, width=64,  # 8x8 latents (K3 sizes step by 64 px)
               num_inference_steps=2, guidance_scale=gs, generator=gen(5), output_type="np").images
    embeds = encode(nodes, k3["text_encoder"], negative=negative)
    latent = sample(nodes, k3, embeds, {"samples": torch.zeros(images, 4, 8, 8)}, 5, 2, gs, sampler)
    assert_same(decode(nodes, k3, latent), torch.from_numpy(ref), DIFFUSERS_TOL)


def test_i2i_graph_matches_diffusers(nodes, k3):
    from PIL import Image

    picture = (rand_image(16, 16, 11)[0] * 255).round().to(torch.uint8)
    pil = Image.fromarray(picture.numpy())
    ref = reference("Kandinsky3Img2ImgPipeline")(PROMPT, image=pil, strength=0.5, num_inference_steps=4,
                                                 guidance_scale=3.0, generator=gen(6), output_type="np").images
    embeds = encode(nodes, k3["text_encoder"])
    latent = call(nodes["KandinskyMoVQEncode"], movq=k3["movq"], image=picture[None].float() / 255)[0]
    out = sample(nodes, k3, embeds, latent, 6, 4, 3.0, denoise=0.5)
    assert_same(decode(nodes, k3, out), torch.from_numpy(ref), DIFFUSERS_TOL)


def rel_error(a, b):
    return float((a - b).norm() / b.norm())


def test_fp8_loaders(nodes, k3):
    fp8 = importlib.import_module("kandinsky_pack.kandinsky_core.fp8")
    text_encoder = call(nodes["KandinskyTextEncoderLoader"], text_encoder_name=K3, dtype="fp8_e4m3fn")[0]
    assert fp8.is_fp8(text_encoder.text_encoder) and text_encoder.dtype == torch.float32  # computes in fp32 on CPU
    embeds, ref_embeds = encode(nodes, text_encoder), encode(nodes, k3["text_encoder"])
    assert torch.equal(embeds.mask, ref_embeds.mask)
    assert 0 < rel_error(embeds.embeds, ref_embeds.embeds) < FP8_TOL

    loader = nodes["KandinskyDecoderLoader"]()
    unet, movq = call(loader, decoder_name=K3, dtype="fp8_e4m3fn")
    assert fp8.is_fp8(unet.unet) and not fp8.is_fp8(movq.movq) and movq.dtype == torch.float32
    assert unet.unet.conv_in.weight.dtype == torch.float32
    fp8_bytes = sum(t.numel() * t.element_size() for t in unet.unet.state_dict().values())
    fp32_bytes = sum(t.numel() * t.element_size() for t in k3["unet"].unet.state_dict().values())
    assert fp8_bytes < 0.35 * fp32_bytes
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    image = decode(nodes, k3, sample(nodes, k3, ref_embeds, latent, 5, 2, 3.0, unet=unet))
    ref = decode(nodes, k3, sample(nodes, k3, ref_embeds, latent, 5, 2, 3.0))
    diff = float((image - ref).abs().mean())
    assert torch.isfinite(image).all() and 0 < diff < FP8_IMAGE_TOL, diff

    with pytest.raises(ValueError, match="fp8_e4m3fn .*Kandinsky 3 only.*Kandinsky 2.2"):
        call(nodes["KandinskyDecoderLoader"], decoder_name=DECODER, dtype="fp8_e4m3fn")


def test_memory_modes_give_the_same_image(nodes, k3):
    memory = importlib.import_module("kandinsky_pack.kandinsky_core.memory")
    images = {}
    for mode in ("auto", "model_offload", "lowvram"):
        loaders = nodes["KandinskyTextEncoderLoader"](), nodes["KandinskyDecoderLoader"]()
        text_encoder = call(loaders[0], text_encoder_name=K3, dtype="fp32", memory_mode=mode)[0]
        unet, movq = call(loaders[1], decoder_name=K3, dtype="fp32", memory_mode=mode)
        assert text_encoder.memory_mode == unet.memory_mode == mode
        embeds = encode(nodes, text_encoder, negative="blurry")
        images[mode] = decode(nodes, k3, sample(nodes, k3, embeds, {"samples": torch.zeros(1, 4, 8, 8)}, 5, 2,
                                                3.0, unet=unet), movq=movq)
        streamed = [memory.is_streamed(m) for m in (text_encoder.text_encoder, unet.unet)]
        assert streamed == [mode == "lowvram"] * 2, mode
        if mode == "lowvram":
            assert memory.stream_stats(text_encoder.text_encoder).peak_loaded == 1
            assert memory.stream_stats(unet.unet).peak_loaded == 1
    for mode in ("model_offload", "lowvram"):
        assert torch.equal(images[mode], images["auto"]), mode


def test_mixed_versions_are_clear_errors_and_the_next_run_works(nodes, k3, models):
    k3_embeds = encode(nodes, k3["text_encoder"])
    prior_embeds = call(nodes["KandinskyPriorEncode"], prior=models["prior"], prompt="a red cat", negative_prompt="",
                        seed=1, steps=2, guidance_scale=4.0, batch_size=1)[0]
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    with pytest.raises(ValueError, match=r"Kandinsky 3.*Kandinsky 2\.2|Kandinsky 2\.2.*Kandinsky 3"):
        sample(nodes, k3, k3_embeds, latent, 1, 2, 3.0, unet=models["decoder"][0])
    with pytest.raises(ValueError, match=r"Kandinsky 2\.2.*Kandinsky 3|Kandinsky 3.*Kandinsky 2\.2"):
        sample(nodes, k3, prior_embeds, latent, 1, 2, 3.0)
    with pytest.raises(ValueError, match="Kandinsky 3 has no prior.*KandinskyTextEncoderLoader"):
        call(nodes["KandinskyPriorLoader"], prior_name=K3, dtype="fp32")
    with pytest.raises(ValueError, match="Kandinsky 2.2 decoder .*takes a Kandinsky 3"):
        call(nodes["KandinskyTextEncoderLoader"], text_encoder_name=DECODER, dtype="fp32")
    with pytest.raises(ValueError, match="Kandinsky 2.2 prior .*takes a Kandinsky 3"):
        call(nodes["KandinskyTextEncoderLoader"], text_encoder_name=PRIOR, dtype="fp32")
    out = sample(nodes, k3, k3_embeds, latent, 1, 2, 3.0)
    assert torch.isfinite(decode(nodes, k3, out)).all()

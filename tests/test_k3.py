"""Kandinsky 3 on tiny models (spec §1.8, §4.13, §4.14, §5): UNet module parity, prompt encoding and
sampling seed parity with diffusers' Kandinsky3Pipeline / Kandinsky3Img2ImgPipeline, loading errors.

Same saved weights (diffusers save_pretrained -> our loaders), same inputs, same CPU generator seed:
UNet outputs and text states agree to 1e-5, images to 1e-4 in [0, 1].
"""
from types import SimpleNamespace

import pytest
import torch
from tiny_models.k3 import K3_DDPM, build_k3_repo, reference_k3
from tiny_models.parity import as_comfy_image, gen, max_diff, random_image

from kandinsky_core.configs.unet3 import K3_UNET, UNet3Config
from kandinsky_core.loading.components import load_decoder, load_text_encoder
from kandinsky_core.models.unet3 import Kandinsky3UNet
from kandinsky_core.payloads import Embeds, TextEmbeds
from kandinsky_core.runtime import LocalRuntime
from kandinsky_core.stages import decoder, text3
from kandinsky_core.stages import movq as movq_stage

PROMPT = "A painting of a squirrel eating a burger"
UNET_TOL = 1e-5
EMB_TOL = 1e-5
IMG_TOL = 1e-4
RT = LocalRuntime("cpu")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return build_k3_repo(tmp_path_factory.mktemp("k3"))


@pytest.fixture(scope="module")
def ours(repo):
    unet, movq = load_decoder(repo)
    return SimpleNamespace(text_encoder=load_text_encoder(repo), unet=unet, movq=movq)


@pytest.fixture(scope="module")
def pipe(repo):
    return reference_k3(repo)


# --- UNet --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("timestep", [torch.tensor(981), torch.tensor([3, 999]), 17, 500.5])
def test_unet_matches_diffusers(pipe, ours, timestep):
    g = gen(3)
    sample = torch.randn(2, 4, 8, 12, generator=g)  # batch 2, non-square
    states = torch.randn(2, 7, 32, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)  # padding; all-zero row
    with torch.no_grad():
        ref = pipe.unet(sample, timestep, encoder_hidden_states=states, encoder_attention_mask=mask).sample
        got = ours.unet.unet(sample, timestep, states, mask)
    assert got.shape == (2, 4, 8, 12)
    assert max_diff(got, ref) <= UNET_TOL


def test_full_size_unet_preset_on_meta():
    from diffusers import Kandinsky3UNet as Reference

    with torch.device("meta"):
        ref, got = Reference(), Kandinsky3UNet(K3_UNET)
    assert UNet3Config.from_dict(dict(ref.config)) == K3_UNET
    assert sum(p.numel() for p in got.parameters()) == sum(p.numel() for p in ref.parameters()) == 3_055_348_228
    shapes = {k: tuple(v.shape) for k, v in got.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert len(shapes) == 1071


def test_unet_config_validation():
    with pytest.raises(ValueError, match="groups"):
        UNet3Config(groups=0)
    with pytest.raises(ValueError, match="layers_per_block"):
        UNet3Config.from_dict({"layers_per_block": 100000})
    with pytest.raises(ValueError, match="block_out_channels"):
        UNet3Config.from_dict({"block_out_channels": [384, 768, 1536, 3072, 6144]})
    with pytest.raises(ValueError, match="not a Kandinsky 3 UNet"):
        UNet3Config.from_dict({"_class_name": "UNet2DConditionModel"})
    assert UNet3Config(in_channels=9, out_channels=4).output_channels == 4


# --- prompt encoding ------------------------------------------------------------------------------------

@pytest.mark.parametrize("negative", [None, "blurry, low quality"])
def test_encode_prompts_matches_diffusers(pipe, ours, negative):
    prompts = [PROMPT, "red cat"]
    ref, ref_neg, ref_mask, ref_neg_mask = pipe.encode_prompt(
        prompts, True, device="cpu", negative_prompt=None if negative is None else [negative] * 2, _cut_context=True)
    got = text3.encode_prompts(ours.text_encoder, prompts, negative, RT)
    assert isinstance(got, TextEmbeds) and got.batch == 2 and got.embeds.shape == ref.shape
    assert max_diff(got.embeds, ref) <= EMB_TOL and max_diff(got.negative_embeds, ref_neg) <= EMB_TOL
    assert torch.equal(got.mask, ref_mask.bool()) and torch.equal(got.negative_mask, ref_neg_mask.bool())
    if negative is None:
        assert not got.negative_mask.any() and not got.negative_embeds.any()


# --- sampling ------------------------------------------------------------------------------------------

def _decode(ours, latents):
    return movq_stage.decode(ours.movq, latents, runtime=RT)


@pytest.mark.parametrize(
    "negative, n, guidance, sampler",
    [(None, 1, 6.0, "ddpm"), ("low quality", 2, 6.0, "ddpm"), (None, 1, 6.0, "ddim"), (None, 1, 1.0, "ddpm")],
    ids=["no-negative", "negative-batch2", "ddim", "guidance-off"],
)
def test_text2img_matches_diffusers(repo, ours, negative, n, guidance, sampler):
    import diffusers

    scheduler = diffusers.DDIMScheduler(**K3_DDPM, set_alpha_to_one=False) if sampler == "ddim" else None
    ref = reference_k3(repo, scheduler=scheduler)(
        PROMPT, negative_prompt=negative, num_images_per_prompt=n, guidance_scale=guidance, num_inference_steps=3,
        height=16, width=72, output_type="np", generator=gen(0)).images
    embeds = text3.encode_prompts(ours.text_encoder, [PROMPT], negative, RT)
    empty = torch.zeros(n, 4, 8, 16)  # diffusers' latent size for 16 x 72 (rounded up to multiples of 64 / 8)
    latents = decoder.sample(ours.unet, embeds, empty, generator=gen(0), steps=3, guidance_scale=guidance,
                             sampler=sampler, runtime=RT)
    image = _decode(ours, latents)
    assert image.shape == ref.shape == (n, 16, 32, 3)
    assert max_diff(image, ref) <= IMG_TOL


def test_img2img_matches_diffusers(repo, ours):
    picture = random_image(64, 5).resize((64, 48))
    ref = reference_k3(repo, "Kandinsky3Img2ImgPipeline")(
        PROMPT, image=picture, strength=0.5, num_inference_steps=10, guidance_scale=3.0, output_type="np",
        generator=gen(0)).images
    init = movq_stage.encode(ours.movq, as_comfy_image(picture), runtime=RT)
    embeds = text3.encode_prompts(ours.text_encoder, [PROMPT], None, RT)
    latents = decoder.sample(ours.unet, embeds, init, generator=gen(0), steps=10, guidance_scale=3.0, denoise=0.5,
                             runtime=RT)
    image = _decode(ours, latents)
    assert image.shape == ref.shape == (1, 48, 64, 3)
    assert max_diff(image, ref) <= IMG_TOL


def test_versions_do_not_mix(ours):
    k3 = text3.encode_prompts(ours.text_encoder, [PROMPT], None, RT)
    k22 = Embeds(torch.zeros(1, 32), torch.zeros(1, 32), "2.2")
    with pytest.raises(ValueError, match=r"Kandinsky 2\.2 prior.*Kandinsky 3"):
        decoder.sample(ours.unet, k22, torch.zeros(1, 4, 8, 8), generator=gen(0), steps=2, runtime=RT)
    k22_unet = SimpleNamespace(version="2.2", name="kandinsky-2-2-decoder")
    with pytest.raises(ValueError, match=r"Kandinsky 3 text encoder.*Kandinsky 2\.2"):
        decoder.sample(k22_unet, k3, torch.zeros(1, 4, 8, 8), generator=gen(0), steps=2, runtime=RT)


def test_text_embeds_are_validated():
    states, mask = torch.zeros(2, 5, 32), torch.ones(2, 5, dtype=torch.bool)
    assert TextEmbeds(states, mask, states, ~mask).batch == 2
    with pytest.raises(ValueError, match="same"):
        TextEmbeds(states, mask, torch.zeros(1, 5, 32), mask)
    with pytest.raises(ValueError, match="bool"):
        TextEmbeds(states, mask.long(), states, mask)
    with pytest.raises(ValueError, match="version"):
        TextEmbeds(states, mask, states, mask, version="2.2")


def test_k3_sampler_refuses_hints_and_masks(ours):
    from kandinsky_core.payloads import Hint

    embeds = text3.encode_prompts(ours.text_encoder, [PROMPT], None, RT)
    with pytest.raises(ValueError, match="hint"):
        decoder.sample(ours.unet, embeds, torch.zeros(1, 4, 8, 8), generator=gen(0), steps=2, runtime=RT,
                       hint=Hint(torch.zeros(1, 3, 64, 64)))
    with pytest.raises(ValueError, match="without a mask"):
        decoder.sample(ours.unet, embeds, torch.zeros(1, 4, 8, 8), generator=gen(0), steps=2, runtime=RT,
                       mask=torch.ones(1, 16, 16))


def test_unet_with_separate_out_channels():
    """The original 3.1 inpainting UNet layout: 9 channels in (latent, masked latent, mask), eps (4) out."""
    from tiny_models.k3 import K3_UNET

    config = UNet3Config(**{**K3_UNET, "block_out_channels": (32, 64), "in_channels": 9}, out_channels=4)
    unet = Kandinsky3UNet(config).eval()
    assert unet.conv_in.weight.shape[1] == 9 and unet.conv_out.weight.shape[0] == 4
    with torch.no_grad():
        out = unet(torch.randn(1, 9, 8, 8), 10, torch.randn(1, 3, 32), torch.ones(1, 3, dtype=torch.bool))
    assert out.shape == (1, 4, 8, 8)


def test_encode_prompts_bf16_matches_diffusers(repo):
    """A bf16 encoder gives diffusers' bf16 states exactly (returned as float32, which holds them losslessly)."""
    pipe = reference_k3(repo)
    pipe.text_encoder.to(torch.bfloat16)
    ref, ref_neg, _, _ = pipe.encode_prompt([PROMPT], True, device="cpu", negative_prompt=["red cat"],
                                           _cut_context=True)
    got = text3.encode_prompts(load_text_encoder(repo, torch.bfloat16), [PROMPT], "red cat", RT)
    assert ref.dtype == torch.bfloat16 and got.embeds.dtype == torch.float32
    assert torch.equal(got.embeds, ref.float()) and torch.equal(got.negative_embeds, ref_neg.float())

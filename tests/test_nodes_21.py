"""Kandinsky 2.1 through the same nodes: node graphs reproduce the diffusers 2.1 pipelines seed for seed.

A 2.1 graph differs from a 2.2 graph only in the folders picked in the loaders; the prior node carries
its prompt to the 2.1 decoder in KANDINSKY_EMBEDS.
"""
import shutil

import pytest
import torch
from tiny_models.node_repos import block_mask, call, gen, rand_image
from tiny_models.parity import max_diff
from tiny_models.repos import reference_pipeline
from tiny_models.repos21 import build_decoder21_repo, build_prior21_repo, reference_scheduler21

TOL = 1e-4  # images in [0, 1] (spec parity criterion); embeddings 1e-5
PRIOR, DECODER, INPAINT = "kandinsky-2-1-prior", "kandinsky-2-1", "kandinsky-2-1-inpaint"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nodes21")
    models = root / "models" / "kandinsky"
    models.mkdir(parents=True)
    shutil.move(str(build_prior21_repo(root / "b" / "prior")), str(models / PRIOR))
    shutil.move(str(build_decoder21_repo(root / "b" / "dec", "decoder21")), str(models / DECODER))
    shutil.move(str(build_decoder21_repo(root / "b" / "inp", "inpaint21")), str(models / INPAINT))
    return models


@pytest.fixture(scope="module")
def nodes(pack, model_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KANDINSKY_MODEL_DIR", str(model_dir))
        mp.setenv("KANDINSKY_DEVICE", "cpu")
        yield pack.NODE_CLASS_MAPPINGS


@pytest.fixture(scope="module")
def loaded(nodes):
    loaders = {"prior": nodes["KandinskyPriorLoader"](), "dec": nodes["KandinskyDecoderLoader"](),
               "inp": nodes["KandinskyDecoderLoader"]()}
    return {
        "prior": call(loaders["prior"], prior_name=PRIOR, dtype="fp32")[0],
        "decoder": call(loaders["dec"], decoder_name=DECODER, dtype="fp32"),
        "inpaint": call(loaders["inp"], decoder_name=INPAINT, dtype="fp32"),
        "loaders": loaders,
    }


def encode(nodes, loaded, prompt, seed):
    return call(nodes["KandinskyPriorEncode"], prior=loaded["prior"], prompt=prompt, negative_prompt="", seed=seed,
                steps=3, guidance_scale=4.0, batch_size=1)[0]


def sample_and_decode(nodes, unet, movq, embeds, latent, seed, steps, sampler, denoise=1.0):
    out = call(nodes["KandinskyUNetSampler"], unet=unet, embeds=embeds, latent=latent, seed=seed, steps=steps,
               guidance_scale=4.0, sampler=sampler, denoise=denoise)[0]
    return call(nodes["KandinskyMoVQDecode"], movq=movq, latent=out)[0]


def diffusers_decoder(pipeline, repo, sampler):
    return reference_pipeline(pipeline, repo, reference_scheduler21(repo, sampler))


def test_loaders_give_21_models(loaded):
    assert loaded["prior"].version == "2.1"
    assert loaded["decoder"][0].variant.version == "2.1" and loaded["inpaint"][0].variant.task == "inpaint"


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_prior_and_t2i_graph_match_diffusers(nodes, loaded, model_dir, sampler):
    ref_embeds = reference_pipeline("KandinskyPriorPipeline", model_dir / PRIOR)(
        "horse", num_inference_steps=3, guidance_scale=4.0, generator=gen(3))
    embeds = encode(nodes, loaded, "horse", 3)
    assert max_diff(embeds.image_embeds, ref_embeds.image_embeds) <= 1e-5
    assert max_diff(embeds.negative_image_embeds, ref_embeds.negative_image_embeds) <= 1e-5
    ref = diffusers_decoder("KandinskyPipeline", model_dir / DECODER, sampler)(
        "horse", image_embeds=ref_embeds.image_embeds, negative_image_embeds=ref_embeds.negative_image_embeds,
        height=64, width=64, num_inference_steps=3, guidance_scale=4.0, generator=gen(5), output_type="np").images
    unet, movq = loaded["decoder"]
    image = sample_and_decode(nodes, unet, movq, embeds, {"samples": torch.zeros(1, 4, 32, 32)}, 5, 3, sampler)
    assert max_diff(image, ref) <= TOL


def test_i2i_graph_matches_diffusers(nodes, loaded, model_dir):
    embeds = encode(nodes, loaded, "horse", 4)
    picture = rand_image(64, 64, 11)
    ref = diffusers_decoder("KandinskyImg2ImgPipeline", model_dir / DECODER, "ddim")(
        "horse", image=picture.permute(0, 3, 1, 2).contiguous(), image_embeds=embeds.image_embeds,
        negative_image_embeds=embeds.negative_image_embeds, height=64, width=64, num_inference_steps=10,
        strength=0.35, guidance_scale=4.0, generator=gen(6), output_type="np").images
    unet, movq = loaded["decoder"]
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=picture)[0]
    assert max_diff(sample_and_decode(nodes, unet, movq, embeds, latent, 6, 10, "ddim", 0.35), ref) <= TOL


def test_inpaint_graph_matches_diffusers(nodes, loaded, model_dir):
    embeds = encode(nodes, loaded, "horse", 2)
    picture, mask = rand_image(64, 64, 13), block_mask(64, 64)
    ref = diffusers_decoder("KandinskyInpaintPipeline", model_dir / INPAINT, "ddim")(
        "horse", image=picture.permute(0, 3, 1, 2).contiguous() * 2 - 1, mask_image=mask.clone(),
        image_embeds=embeds.image_embeds, negative_image_embeds=embeds.negative_image_embeds, height=64, width=64,
        num_inference_steps=3, guidance_scale=4.0, generator=gen(7), output_type="np").images
    unet, movq = loaded["inpaint"]
    latent = call(nodes["KandinskyMoVQEncode"], movq=movq, image=picture, mask=mask)[0]
    assert max_diff(sample_and_decode(nodes, unet, movq, embeds, latent, 7, 3, "ddim"), ref) <= TOL


def test_interpolate_graph_matches_diffusers(nodes, loaded, model_dir):
    from PIL import Image

    picture = rand_image(96, 96, 21)
    pil = Image.fromarray((picture[0].numpy() * 255).round().astype("uint8"))
    ref_embeds = reference_pipeline("KandinskyPriorPipeline", model_dir / PRIOR).interpolate(
        ["horse", pil], [0.6, 0.4], num_inference_steps=3, generator=gen(8))
    text = encode(nodes, loaded, "horse", 8)
    image = call(nodes["KandinskyImageEmbed"], prior=loaded["prior"], image=picture)[0]
    mixed = call(nodes["KandinskyInterpolate"], embeds_1=text, weight_1=0.6, embeds_2=image, weight_2=0.4)[0]
    assert max_diff(mixed.image_embeds, ref_embeds.image_embeds) <= 1e-5
    assert max_diff(mixed.negative_image_embeds, ref_embeds.negative_image_embeds) <= 1e-5
    ref = diffusers_decoder("KandinskyPipeline", model_dir / DECODER, "ddim")(
        "", image_embeds=ref_embeds.image_embeds, negative_image_embeds=ref_embeds.negative_image_embeds,
        height=64, width=64, num_inference_steps=3, guidance_scale=4.0, generator=gen(9), output_type="np").images
    unet, movq = loaded["decoder"]
    image = sample_and_decode(nodes, unet, movq, mixed, {"samples": torch.zeros(1, 4, 32, 32)}, 9, 3, "ddim")
    assert max_diff(image, ref) <= TOL


def test_21_embeds_into_22_decoder_names_both_versions(nodes, loaded, pack):
    from tiny_models.node_repos import DECODER as DECODER22
    from tiny_models.node_repos import tiny_model_dir

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KANDINSKY_MODEL_DIR", str(tiny_model_dir()))
        unet22, _ = call(pack.NODE_CLASS_MAPPINGS["KandinskyDecoderLoader"], decoder_name=DECODER22, dtype="fp32")
    embeds = encode(nodes, loaded, "horse", 1)
    with pytest.raises(ValueError, match=r"2\.1.*2\.2"):
        call(nodes["KandinskyUNetSampler"], unet=unet22, embeds=embeds, latent={"samples": torch.zeros(1, 4, 8, 8)},
             seed=0, steps=2, guidance_scale=4.0, sampler="ddpm", denoise=1.0)

"""A LATENT with noise_mask into a UNet without inpainting channels: masked img2img as ComfyUI's samplers do
(issue 10, item 11): the kept area is re-noised from the input each step and ends as the input."""
import torch
from tiny_models.node_repos import DECODER, block_mask, call, core, gen, models, nodes, rand_image  # noqa: F401


def _sample(nodes, unet, latent, denoise):
    embeds = core_embeds()
    return call(nodes["KandinskyUNetSampler"], unet=unet, embeds=embeds, latent=latent, seed=3, steps=4,
                guidance_scale=4.0, sampler="ddim", denoise=denoise)[0]["samples"]


def core_embeds():
    import importlib

    payloads = importlib.import_module("kandinsky_pack.kandinsky_core.payloads")
    return payloads.Embeds(torch.rand(1, 32, generator=gen(1)), torch.rand(1, 32, generator=gen(2)), "2.2")


def test_noise_mask_into_a_plain_unet_is_masked_img2img(nodes, models):
    unet, movq = models["decoder"]
    image = rand_image(16, 16, 3)
    plain = call(nodes["KandinskyMoVQEncode"], movq=movq, image=image)[0]
    mask = block_mask(16, 16)  # repaint the top-left block
    masked = call(nodes["KandinskyMoVQEncode"], movq=movq, image=image, mask=mask)[0]
    for denoise in (1.0, 0.5):
        out = _sample(nodes, unet, masked, denoise)
        keep = torch.nn.functional.interpolate(mask[:, None], size=out.shape[-2:], mode="bilinear") == 0
        keep = keep.expand_as(out)
        assert torch.equal(out[keep], plain["samples"][keep])  # the kept area is the input
        assert not torch.allclose(out[~keep], plain["samples"][~keep], atol=1e-3)  # the rest is repainted
        everywhere = dict(masked, noise_mask=torch.ones_like(masked["noise_mask"]))  # repaint all: plain img2img
        assert torch.equal(_sample(nodes, unet, everywhere, denoise), _sample(nodes, unet, plain, denoise))

"""Kandinsky 3.1 from the original release files, against the original code and diffusers.

Tiny UNets / MoVQ are built with the ORIGINAL classes (KANDINSKY3_ORIGINAL_PATH, skipped with the reason when
unset), saved in the original file layout, then (1) the key mapping is checked against diffusers' own
converter and the loaded modules against diffusers' Kandinsky3UNet / the original classes, and (2) the
original t2i, Flash and inpainting pipelines run next to our nodes on the same files and seed.
"""
from __future__ import annotations

import importlib
import types

import numpy as np
import pytest
import torch
from k3_original import (TINY_MOVQ, TINY_TEXT_WIDTH, TINY_UNET, original_or_skip, save_release, tiny_original_movq,
                         tiny_original_unet, tiny_projection)

from conftest import load_pack

# the pack's own copy of the core (the nodes check payload classes by identity)
_core = "kandinsky_pack.kandinsky_core"
load_pack()
original_unet_to_diffusers = importlib.import_module(f"{_core}.loading.original_keys").original_unet_to_diffusers
_originals = importlib.import_module(f"{_core}.loading.originals")
list_original_unets, load_original_movq = _originals.list_original_unets, _originals.load_original_movq
load_original_unet, text_encoder_dir = _originals.load_original_unet, _originals.text_encoder_dir
TextEmbeds = importlib.import_module(f"{_core}.payloads").TextEmbeds

MODULE_TOL = 1e-5
IMAGE_TOL = 1e-4
TOKENS = 12  # tokenizer length of the stand-in prompt (the original pads to 128; the cut keeps n + 1)


@pytest.fixture(scope="module")
def orig():
    return original_or_skip()


@pytest.fixture(scope="module")
def release(orig, tmp_path_factory):
    """A tiny 'Kandinsky3.1' folder with base, inpainting and flash UNets, their projections and the MoVQ."""
    ctx = TINY_UNET["context_dim"]
    unets = {"base": tiny_original_unet(orig, 4, 10), "inpainting": tiny_original_unet(orig, 9, 11),
             "flash": tiny_original_unet(orig, 4, 12)}
    projections = {kind: tiny_projection(20 + i) for i, kind in enumerate(unets)}
    nulls = {kind: torch.randn(ctx, generator=torch.Generator().manual_seed(30 + i)) for i, kind in enumerate(unets)}
    folder = save_release(tmp_path_factory.mktemp("orig") / "Kandinsky3.1", unets, projections,
                          tiny_original_movq(orig), nulls)
    return types.SimpleNamespace(folder=folder, unets=unets, projections=projections, nulls=nulls)


def _original_unet_from_file(orig, folder, kind, in_channels):
    UNET_FILES = _originals.UNET_FILES
    unet = orig.unet.UNet(num_channels=in_channels, **TINY_UNET).eval()
    payload = torch.load(folder / "weights" / UNET_FILES[kind][0], weights_only=True)
    unet.load_state_dict(payload["unet"])
    proj = tiny_projection()
    proj.load_state_dict(torch.load(folder / "weights" / UNET_FILES[kind][1], weights_only=True))
    return unet, proj, payload["null_embedding"]


def _text(n_tokens: int = 5, batch: int = 1, seed: int = 3):
    """Random T5 states (B, TOKENS, D) and a mask with n_tokens ones (what the tokenizer + encoder would give)."""
    states = torch.randn(batch, TOKENS, TINY_TEXT_WIDTH, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(batch, TOKENS, dtype=torch.long)
    mask[:, :n_tokens] = 1
    return states, mask


# --- acceptance 1: key mapping and modules -------------------------------------------------------------------

def test_listing_and_text_encoder_dir(release):
    assert [e.choice for e in list_original_unets(release.folder)] == [
        "Kandinsky3.1 / base", "Kandinsky3.1 / inpainting", "Kandinsky3.1 / flash"]
    assert text_encoder_dir(release.folder) is None  # no flan_ul2_encoder/ in the tiny folder


def test_key_mapping_equals_diffusers_converter(release):
    from diffusers import Kandinsky3UNet
    from diffusers.pipelines.kandinsky3.convert_kandinsky3_unet import convert_state_dict

    sd, proj = release.unets["base"].state_dict(), release.projections["base"]
    merged = dict(sd, **{"projection_lin.weight": proj[0].weight, "projection_ln.weight": proj[1].weight,
                         "projection_ln.bias": proj[1].bias})
    theirs = convert_state_dict(merged)
    ours = original_unet_to_diffusers(sd, proj.state_dict())
    assert list(ours) != [] and set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    reference = Kandinsky3UNet(in_channels=4, time_embedding_dim=64, groups=32, attention_head_dim=64,
                               layers_per_block=2, block_out_channels=(64, 128, 128, 128), cross_attention_dim=64,
                               encoder_hid_dim=TINY_TEXT_WIDTH).eval()
    assert {k: tuple(v.shape) for k, v in reference.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.items()}


def test_base_unet_matches_diffusers(release):
    from diffusers import Kandinsky3UNet
    from diffusers.pipelines.kandinsky3.convert_kandinsky3_unet import convert_state_dict

    ours = load_original_unet(release.folder, "base")
    proj = release.projections["base"]
    merged = dict(release.unets["base"].state_dict(), **{
        "projection_lin.weight": proj[0].weight, "projection_ln.weight": proj[1].weight,
        "projection_ln.bias": proj[1].bias})
    reference = Kandinsky3UNet(in_channels=4, time_embedding_dim=64, groups=32, attention_head_dim=64,
                               layers_per_block=2, block_out_channels=(64, 128, 128, 128), cross_attention_dim=64,
                               encoder_hid_dim=TINY_TEXT_WIDTH).eval()
    reference.load_state_dict(convert_state_dict(merged))
    g = torch.Generator().manual_seed(0)
    x, (states, mask) = torch.randn(2, 4, 16, 16, generator=g), _text(batch=2)
    t = torch.tensor([999, 421])
    with torch.no_grad():
        want = reference(x, t, states, mask.bool()).sample
        got = ours.unet(x, t, states, mask.bool())
    assert torch.allclose(got, want, atol=MODULE_TOL, rtol=0), (got - want).abs().max()
    assert torch.equal(ours.null_embedding, release.nulls["base"])


def test_inpainting_unet_matches_original_class(orig, release):
    theirs, proj, _ = _original_unet_from_file(orig, release.folder, "inpainting", 9)
    ours = load_original_unet(release.folder, "inpainting")
    assert ours.variant.task == "inpaint" and ours.unet.conv_in.in_channels == 9
    g = torch.Generator().manual_seed(1)
    x, (states, mask) = torch.randn(2, 9, 16, 16, generator=g), _text(batch=2)
    with torch.no_grad():
        context = proj(states) * mask[..., None]
        want = theirs(x, torch.tensor([500.0, 17.0]), context, mask.bool())
        got = ours.unet(x, torch.tensor([500.0, 17.0]), context, mask.bool(), project_context=False)
    assert torch.allclose(got, want, atol=MODULE_TOL, rtol=0), (got - want).abs().max()


def test_movq_matches_original_class(orig, release):
    theirs = orig.movq.MoVQ(TINY_MOVQ).eval()
    theirs.load_state_dict(torch.load(release.folder / "weights" / "movq.pt", weights_only=True))
    ours = load_original_movq(release.folder)
    image = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        z_want, z_got = theirs.encode(image), ours.movq.encode(image)
        assert torch.allclose(z_got, z_want, atol=MODULE_TOL, rtol=0)
        want, got = theirs.decode(z_want), ours.movq.decode(z_want)
    assert torch.allclose(got, want, atol=MODULE_TOL, rtol=0), (got - want).abs().max()


# --- acceptance 2: the original pipelines vs our nodes -----------------------------------------------------------

class _Processor:
    """Stands in for T5TextConditionProcessor: the prompt is already tokenized (a mask of TOKENS positions)."""

    def __init__(self, mask):
        self.mask = mask

    def encode(self, text=None, negative_text=None):
        return {"input_ids": torch.zeros(TOKENS, dtype=torch.long), "attention_mask": self.mask[0].clone()}, None


def _original_encoder(orig, states, projection):
    """The original T5TextConditionEncoder.forward (projection, zeroing, cut) over fixed T5 states."""
    import importlib

    encoder_cls = importlib.import_module("kandinsky3.condition_encoders").T5TextConditionEncoder
    fake = types.SimpleNamespace(encoder=lambda **kw: types.SimpleNamespace(last_hidden_state=states.clone()),
                                 projection=projection)
    return lambda model_input: encoder_cls.forward(fake, model_input)


def _embeds(states, mask) -> TextEmbeds:
    _cut_context = importlib.import_module(f"{_core}.stages.text3")._cut_context

    hidden, cut = _cut_context(states, mask)
    embeds = hidden * cut[:, :, None]
    return TextEmbeds(embeds, cut.bool(), torch.zeros_like(embeds), torch.zeros_like(cut, dtype=torch.bool))


def _our_t2i(pack, release, kind, sampler, seed, steps, guidance, size):
    nodes = pack.NODE_CLASS_MAPPINGS
    unet, movq = load_original_unet(release.folder, kind), load_original_movq(release.folder)
    latent = {"samples": torch.zeros(1, 4, size[0] // 8, size[1] // 8)}
    (out,) = nodes["KandinskyUNetSampler"]().sample(unet, _embeds(*_text()), latent, seed, steps, guidance,
                                                     sampler, 1.0)
    (image,) = nodes["KandinskyMoVQDecode"]().decode(movq, out)
    return image


def _original_t2i(orig, release, kind, gan, seed, steps, guidance, size):
    unet, proj, null = _original_unet_from_file(orig, release.folder, kind, 4)
    movq = orig.movq.MoVQ(TINY_MOVQ).eval()
    movq.load_state_dict(torch.load(release.folder / "weights" / "movq.pt", weights_only=True))
    states, mask = _text()
    cpu = {"unet": "cpu", "text_encoder": "cpu", "movq": "cpu"}
    f32 = dict.fromkeys(cpu, torch.float32)
    pipe = orig.t2i_pipeline.Kandinsky3T2IPipeline(cpu, f32, unet, null, _Processor(mask),
                                                   _original_encoder(orig, states, proj), movq, gan)
    pipe.to_pil = lambda x: x  # keep float images (the original converts to 8-bit PIL here)
    torch.manual_seed(seed)
    images = pipe("prompt", width=size[1], height=size[0], guidance_scale=guidance, steps=steps)
    return torch.stack(images).permute(0, 2, 3, 1)  # B, 3, H, W -> B, H, W, 3


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_base_t2i_matches_original_pipeline(orig, release, pack):
    want = _original_t2i(orig, release, "base", False, 7, 3, 3.0, (64, 128))
    got = _our_t2i(pack, release, "base", "k3_original", 7, 3, 3.0, (64, 128))
    assert got.shape == want.shape and torch.allclose(got, want, atol=IMAGE_TOL, rtol=0), (got - want).abs().max()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_flash_matches_original_pipeline(orig, release, pack):
    want = _original_t2i(orig, release, "flash", True, 8, 50, 3.0, (64, 64))
    got = _our_t2i(pack, release, "flash", "flash", 8, 4, 0.0, (64, 64))
    assert got.shape == want.shape and torch.allclose(got, want, atol=IMAGE_TOL, rtol=0), (got - want).abs().max()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_inpainting_matches_original_pipeline(orig, release, pack):
    from PIL import Image

    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)  # multiples of 64 px: no resize in the original
    repaint = np.zeros((64, 64), dtype=np.float32)
    repaint[10:40, 20:50] = 1.0  # 1 = repaint (ComfyUI); the original takes the same convention
    unet, proj, null = _original_unet_from_file(orig, release.folder, "inpainting", 9)
    movq = orig.movq.MoVQ(TINY_MOVQ).eval()
    movq.load_state_dict(torch.load(release.folder / "weights" / "movq.pt", weights_only=True))
    states, mask = _text()
    cpu = {"unet": "cpu", "text_encoder": "cpu", "movq": "cpu"}
    processor = _Processor(mask)
    pipe = orig.inpainting_pipeline.Kandinsky3InpaintingPipeline(
        cpu, dict.fromkeys(cpu, torch.float32), unet, null, processor, _original_encoder(orig, states, proj), movq)
    pipe.to_pil = lambda x: x
    processor.encode = lambda text=None, negative_text=None: (
        {"input_ids": torch.zeros(TOKENS, dtype=torch.long), "attention_mask": mask[0].clone()}, None)
    torch.manual_seed(9)
    want = torch.stack(pipe("prompt", Image.fromarray(pixels), repaint, steps=3, guidance_weight_text=4.0))
    want = want.permute(0, 2, 3, 1)

    nodes = pack.NODE_CLASS_MAPPINGS
    ours_unet, ours_movq = load_original_unet(release.folder, "inpainting"), load_original_movq(release.folder)
    image = torch.from_numpy(pixels).float()[None] / 255.0
    (latent,) = nodes["KandinskyMoVQEncode"]().encode(ours_movq, image, torch.from_numpy(repaint)[None])
    (out,) = nodes["KandinskyUNetSampler"]().sample(ours_unet, _embeds(states, mask), latent, 9, 3, 4.0,
                                                     "k3_original", 1.0)
    (got,) = nodes["KandinskyMoVQDecode"]().decode(ours_movq, out)
    assert got.shape == want.shape and torch.allclose(got, want, atol=IMAGE_TOL, rtol=0), (got - want).abs().max()


# --- wrong combinations ----------------------------------------------------------------------------------------

def test_flash_and_sampler_combinations_are_errors(release, pack):
    LocalRuntime = importlib.import_module(f"{_core}.runtime").LocalRuntime
    decoder = importlib.import_module(f"{_core}.stages.decoder")

    embeds, latent = _embeds(*_text()), torch.zeros(1, 4, 8, 8)
    run = dict(generator=torch.Generator().manual_seed(0), steps=2, guidance_scale=3.0, runtime=LocalRuntime())
    flash, base = load_original_unet(release.folder, "flash"), load_original_unet(release.folder, "base")
    with pytest.raises(ValueError, match="only works with the flash sampler"):
        decoder.sample(flash, embeds, latent, sampler="k3_original", **run)
    with pytest.raises(ValueError, match="only works with the flash sampler"):
        decoder.sample(flash, embeds, latent, sampler="ddpm", **run)
    with pytest.raises(ValueError, match="flash sampler is the 4-step update"):
        decoder.sample(base, embeds, latent, sampler="flash", **run)
    inpaint = load_original_unet(release.folder, "inpainting")
    with pytest.raises(ValueError, match="give it a latent from KandinskyMoVQEncode with a mask"):
        decoder.sample(inpaint, embeds, latent, sampler="k3_original", **run)


def test_decoder_loader_offers_each_original_unet(release, pack, monkeypatch):
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", str(release.folder.parent))
    monkeypatch.setenv("KANDINSKY_DEVICE", "cpu")
    loader = pack.NODE_CLASS_MAPPINGS["KandinskyDecoderLoader"]
    choices = loader.INPUT_TYPES()["required"]["decoder_name"][0]
    assert [c for c in choices if c.startswith("Kandinsky3.1")] == [
        "Kandinsky3.1 / base", "Kandinsky3.1 / inpainting", "Kandinsky3.1 / flash"]
    unet, movq = loader().load("Kandinsky3.1 / flash", "fp32")
    assert unet.original_kind == "flash" and unet.version == "3" and movq.version == "3"
    with pytest.raises(ValueError, match="expected a choice as listed"):
        loader().load("Kandinsky3.1 / turbo", "fp32")


def test_schedule_and_times_match_original(orig):
    from_orig = orig.diffusion.BaseDiffusion(orig.diffusion.get_named_beta_schedule("cosine", 1000), 0.99)
    k3 = importlib.import_module(f"{_core}.schedulers.k3_original")
    assert torch.equal(k3.alphas_cumprod(), from_orig.alphas_cumprod)
    for steps in range(1, 1001):
        assert k3.sample_times(steps) == list(range(999, 0, -1000 // steps)), steps
    x0 = torch.randn(3, 4, 8, 8) * 3
    assert torch.equal(k3.dynamic_threshold(x0, 0.99), from_orig.process_x_start(x0))

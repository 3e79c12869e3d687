"""Loading original Kandinsky 3 release files safely (acceptance 3): no code runs, clear errors, no oracle needed."""
from __future__ import annotations

import pickle

import pytest
import torch

from kandinsky_core.loading.original_keys import original_unet_key, projection_state_dict
from kandinsky_core.loading.originals import (is_original_release, list_original_unets, load_original_movq,
                                              load_original_unet)

MARKER = "k31_pickle_payload_ran"


class _Payload:
    """Unpickling this runs code that sets torch.<MARKER>: the side effect a refused pickle must not have."""

    def __reduce__(self):
        return (exec, (f"import torch; torch.{MARKER} = True",))


def _release(tmp_path, unet_payload, projection=None, movq=None):
    weights = tmp_path / "Kandinsky3.1" / "weights"
    weights.mkdir(parents=True)
    torch.save(unet_payload, weights / "kandinsky3.pt")
    if projection is not None:
        torch.save(projection, weights / "projection.pt")
    if movq is not None:
        torch.save(movq, weights / "movq.pt")
    return weights.parent


def test_code_executing_pickle_is_refused_and_runs_nothing(tmp_path):
    folder = _release(tmp_path, {"unet": {"in_layer.weight": torch.zeros(1)}, "null_embedding": _Payload()})
    assert is_original_release(folder)
    with pytest.raises(ValueError, match="refused for safety"):
        load_original_unet(folder, "base")
    assert not hasattr(torch, MARKER)
    pickle.loads(pickle.dumps(_Payload()))  # a plain unpickle does run it: the check above could fail
    assert getattr(torch, MARKER) is True
    delattr(torch, MARKER)


def test_truncated_file_says_redownload(tmp_path):
    folder = _release(tmp_path, {"unet": {"in_layer.weight": torch.zeros(64, 4, 3, 3)}, "null_embedding": torch.zeros(8)},
                      projection={"0.weight": torch.zeros(8, 8)})
    path = folder / "weights" / "kandinsky3.pt"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="corrupt or incompletely downloaded"):
        load_original_unet(folder, "base")


def test_wrong_files_in_the_wrong_loader(tmp_path):
    movq_like = {"encoder.conv_in.weight": torch.zeros(32, 3, 3, 3)}
    folder = _release(tmp_path, movq_like, movq={"unet": {}, "null_embedding": torch.zeros(4)})
    with pytest.raises(ValueError, match="not an original Kandinsky 3 UNet file"):
        load_original_unet(folder, "base")
    with pytest.raises(ValueError, match="holds a UNet, not the MoVQ"):
        load_original_movq(folder)
    with pytest.raises(FileNotFoundError, match="has no flash UNet"):
        load_original_unet(folder, "flash")


def test_projection_must_be_linear_and_layernorm():
    with pytest.raises(ValueError, match="wrong file for the projection"):
        projection_state_dict({"encoder.conv_in.weight": torch.zeros(1)})
    three_oh = projection_state_dict({"t5.0.weight": torch.zeros(2, 2), "t5.1.weight": torch.zeros(2),
                                      "t5.1.bias": torch.zeros(2)})
    assert sorted(three_oh) == ["encoder_hid_proj.projection_linear.weight", "encoder_hid_proj.projection_norm.bias",
                                "encoder_hid_proj.projection_norm.weight"]


def test_unet_key_mapping_examples():
    assert original_unet_key("to_time_embed.1.weight") == "time_embedding.linear_1.weight"
    assert original_unet_key("out_layer.2.bias") == "conv_out.bias"
    assert (original_unet_key("down_samples.1.resnet_attn_blocks.2.1.attention.to_query.weight")
            == "down_blocks.1.attentions.3.attention.to_q.weight")
    assert (original_unet_key("up_samples.0.self_attention_block.attention.output_layer.weight")
            == "up_blocks.0.attentions.0.attention.to_out.0.weight")
    assert original_unet_key("feature_pooling.attention.to_key.weight") == "add_time_condition.attention.to_k.weight"


def test_diffusers_folder_is_not_an_original_release(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / "weights").mkdir()
    torch.save({}, tmp_path / "weights" / "kandinsky3.pt")
    assert not is_original_release(tmp_path) and list_original_unets(tmp_path) == []


# --- a tiny release folder in the original layout (no original code needed) -------------------------------------

TINY_DIFFUSERS = dict(in_channels=4, time_embedding_dim=64, groups=32, attention_head_dim=64, layers_per_block=2,
                      block_out_channels=(64, 128, 128, 128), cross_attention_dim=64, encoder_hid_dim=32)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from tiny_models.k3_original_release import build_original_release

    return build_original_release(tmp_path_factory.mktemp("release"))


def test_converter_and_diffusers_unet_agree_with_our_loader(release):
    from diffusers import Kandinsky3UNet
    from diffusers.pipelines.kandinsky3.convert_kandinsky3_unet import convert_state_dict

    from kandinsky_core.loading.originals import find_original_unet, read_original_unet

    entry = find_original_unet(release, "base")
    payload = torch.load(entry.unet_file, weights_only=True)
    proj = torch.load(entry.projection_file, weights_only=True)
    merged = dict(payload["unet"], **{"projection_lin.weight": proj["0.weight"], "projection_ln.weight": proj["1.weight"],
                                      "projection_ln.bias": proj["1.bias"]})
    theirs = convert_state_dict(merged)
    ours, null = read_original_unet(entry)
    reference = Kandinsky3UNet(**TINY_DIFFUSERS).eval()
    assert set(ours) == set(theirs) == set(reference.state_dict())
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    reference.load_state_dict(theirs)
    unet = load_original_unet(release, "base")
    g = torch.Generator().manual_seed(0)
    x, states = torch.randn(2, 4, 16, 8, generator=g), torch.randn(2, 6, 32, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    with torch.no_grad():
        want = reference(x, torch.tensor([999, 3]), states, mask).sample
        got = unet.unet(x, torch.tensor([999, 3]), states, mask)
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()
    assert torch.equal(unet.null_embedding, null)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cast_to_the_loader_dtype(release, dtype):
    unet = load_original_unet(release, "inpainting", dtype)
    assert unet.variant.task == "inpaint" and unet.dtype == dtype
    assert {p.dtype for p in unet.unet.parameters()} == {dtype}
    assert load_original_movq(release, dtype).movq.dtype == dtype


def test_text_encoder_of_the_release(release):
    from kandinsky_core.loading.originals import load_original_text_encoder, text_encoder_dir
    from kandinsky_core.runtime import LocalRuntime
    from kandinsky_core.stages.text3 import encode_prompts

    assert text_encoder_dir(release) == release / "weights" / "flan_ul2_encoder"
    encoder = load_original_text_encoder(release)
    embeds = encode_prompts(encoder, ["a red cat"], None, LocalRuntime("cpu"))
    assert embeds.width == 32 and torch.isfinite(embeds.embeds).all()


@pytest.mark.parametrize("kind,sampler", [("base", "k3_original"), ("flash", "flash"), ("inpainting", "k3_original")])
def test_core_samples_every_original_unet(release, kind, sampler):
    from kandinsky_core.payloads import TextEmbeds
    from kandinsky_core.runtime import LocalRuntime
    from kandinsky_core.stages import decoder

    unet = load_original_unet(release, kind)
    states = torch.randn(1, 4, 32)
    mask = torch.tensor([[True, True, True, False]])
    embeds = TextEmbeds(states * mask[..., None], mask, torch.zeros_like(states), torch.zeros_like(mask))
    extra = {}
    if kind == "inpainting":
        repaint = torch.zeros(1, 1, 64, 72)
        repaint[..., 8:40, 16:48] = 1
        extra = dict(mask=repaint, masked_latents=torch.randn(1, 4, 8, 9))
    out = decoder.sample(unet, embeds, torch.zeros(1, 4, 8, 9), generator=torch.Generator().manual_seed(1), steps=2,
                         guidance_scale=3.0, sampler=sampler, runtime=LocalRuntime("cpu"), **extra)
    assert out.shape == (1, 4, 8, 9) and torch.isfinite(out).all()


def test_release_files_are_memory_mapped(release, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append((kwargs.get("weights_only"), kwargs.get("mmap")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_original_unet(release, "flash")
    load_original_movq(release)
    assert calls and all(c == (True, True) for c in calls)


def test_legacy_format_pickles_load_without_mmap(tmp_path):
    from kandinsky_core.loading.weights import load_pickle_safely

    path = tmp_path / "legacy.pt"
    torch.save({"a": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(load_pickle_safely(path, mmap=True)["a"], torch.ones(2))


def test_nodes_inpaint_with_the_original_release(release, pack, monkeypatch):
    """Loader -> MoVQEncode(image, mask) -> UNetSampler(k3_original) -> MoVQDecode on the original files."""
    import importlib

    monkeypatch.setenv("KANDINSKY_MODEL_DIR", str(release.parent))
    monkeypatch.setenv("KANDINSKY_DEVICE", "cpu")
    nodes = pack.NODE_CLASS_MAPPINGS
    paths = importlib.import_module("kandinsky_pack.nodes.paths")
    assert paths.list_original_text_encoders() == ["Kandinsky3.1 / flan_ul2_encoder"]
    loader = nodes["KandinskyDecoderLoader"]
    assert [c for c in loader.INPUT_TYPES()["required"]["decoder_name"][0] if c.startswith("Kandinsky3.1")] == [
        "Kandinsky3.1 / base", "Kandinsky3.1 / inpainting", "Kandinsky3.1 / flash"]
    unet, movq = loader().load("Kandinsky3.1 / inpainting", "fp32")
    image = torch.rand(1, 64, 72, 3, generator=torch.Generator().manual_seed(2))
    repaint = torch.zeros(1, 64, 72)
    repaint[:, 16:48, 8:40] = 1.0
    (latent,) = nodes["KandinskyMoVQEncode"]().encode(movq, image, repaint)
    assert latent["masked_samples"].shape == latent["samples"].shape == (1, 4, 8, 9)
    payloads = importlib.import_module("kandinsky_pack.kandinsky_core.payloads")
    states, mask = torch.randn(1, 4, 32), torch.tensor([[True, True, False, False]])
    embeds = payloads.TextEmbeds(states * mask[..., None], mask, torch.zeros_like(states), torch.zeros_like(mask))
    (out,) = nodes["KandinskyUNetSampler"]().sample(unet, embeds, latent, 0, 2, 4.0, "k3_original", 1.0)
    assert set(out) == {"samples"}
    (decoded,) = nodes["KandinskyMoVQDecode"]().decode(movq, out)
    assert decoded.shape == (1, 64, 72, 3) and torch.isfinite(decoded).all()


def test_base_unet_also_samples_with_diffusers_ddpm(release):
    from kandinsky_core.payloads import TextEmbeds
    from kandinsky_core.runtime import LocalRuntime
    from kandinsky_core.stages import decoder

    unet = load_original_unet(release, "base")
    states, mask = torch.randn(1, 3, 32), torch.tensor([[True, True, False]])
    embeds = TextEmbeds(states * mask[..., None], mask, torch.zeros_like(states), torch.zeros_like(mask))
    out = decoder.sample(unet, embeds, torch.zeros(1, 4, 8, 8), generator=torch.Generator().manual_seed(1), steps=2,
                         guidance_scale=3.0, sampler="ddpm", runtime=LocalRuntime("cpu"))
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()

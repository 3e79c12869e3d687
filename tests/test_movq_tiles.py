"""MoVQ in tiles (issue 10, items 11 and 16d): explicit tile_size, the fallback when the device runs out of
memory, and Cancel checked per block instead of after the whole stage."""
import pytest
import torch

from kandinsky_core.components import MoVQModel
from kandinsky_core.configs.movq import MoVQConfig
from kandinsky_core.models.movq import MoVQ
from kandinsky_core.runtime import LocalRuntime
from kandinsky_core.stages import movq as movq_stage
from tiny_models.movq import movq_config


@pytest.fixture(scope="module")
def movq():
    torch.manual_seed(0)
    model = MoVQ(MoVQConfig.from_dict(movq_config("2level"))).eval()  # scale factor 2
    return MoVQModel(name="tiny", version="2.2", movq=model, dtype=torch.float32)


def smooth_image(h, w):
    """A photo-like IMAGE (1, H, W, 3): smooth gradients and blobs, values in 0..1."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    channels = [0.5 + 0.4 * torch.sin(3 * x + 2 * y), x * y, 0.5 + 0.3 * torch.cos(4 * y - x)]
    return torch.stack(channels, -1)[None]


def test_tiled_decode_and_encode_are_close_to_whole(movq):
    rt = LocalRuntime("cpu")
    latents = movq_stage.encode(movq, smooth_image(96, 80), runtime=rt)  # (1, 4, 48, 40)
    whole = movq_stage.decode(movq, latents, runtime=rt)
    tiled = movq_stage.decode(movq, latents, runtime=rt, tile_size=48)  # 24-cell tiles, 6-cell overlap
    assert tiled.shape == whole.shape == (1, 96, 80, 3)
    assert (tiled - whole).abs().mean() < 0.03  # GroupNorm sees one tile: close, not equal (as ComfyUI tiles)
    tiled_latents = movq_stage.encode(movq, smooth_image(96, 80), runtime=rt, tile_size=48)
    assert tiled_latents.shape == latents.shape
    # tiny random encoder: its GroupNorm statistics per tile move the latents more than a trained one's would
    assert (tiled_latents - latents).abs().mean() < 0.35 * latents.std()
    with pytest.raises(ValueError, match="tile_size"):
        movq_stage.decode(movq, latents, runtime=rt, tile_size=4)


def test_out_of_memory_falls_back_to_tiles(movq, monkeypatch, caplog):
    rt = LocalRuntime("cpu")
    latents = movq_stage.encode(movq, smooth_image(96, 80), runtime=rt)
    expected = movq_stage.decode(movq, latents, runtime=rt, tile_size=32)
    decoder, sizes = movq.movq.decoder, []
    forward = decoder.forward

    def small_device(x, zq):  # a device that holds a 16x16-cell tile, not the whole 48x40 latent
        sizes.append(tuple(x.shape[-2:]))
        if x.shape[-1] * x.shape[-2] > 16 * 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(x, zq)

    monkeypatch.setattr(decoder, "forward", small_device)
    monkeypatch.setattr(movq_stage, "OOM_TILE_PIXELS", 32)  # tiles of 16 latent cells
    got = movq_stage.decode(movq, latents, runtime=rt)
    assert sizes[0] == (48, 40) and all(s == (16, 16) for s in sizes[1:]) and len(sizes) > 2
    assert torch.equal(got, expected)
    assert "ran out of device memory" in caplog.text


@pytest.mark.parametrize("stage", ["encode", "decode"])
def test_cancel_is_checked_after_every_block(movq, stage):
    class Cancelled(Exception):
        pass

    seen = []

    def progress(step, total):
        seen.append((step, total))
        raise Cancelled()  # the user pressed Cancel during the first block

    rt = LocalRuntime("cpu", on_progress=progress)
    later = movq.movq.decoder.up_blocks[-1] if stage == "decode" else movq.movq.encoder.mid_block
    calls = []
    handle = later.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(Cancelled):
            if stage == "encode":
                movq_stage.encode(movq, smooth_image(32, 32), runtime=rt)
            else:
                movq_stage.decode(movq, torch.zeros(1, 4, 16, 16), runtime=rt)
    finally:
        handle.remove()
    assert seen == [(1, 3)] and calls == []  # stopped after the first of 3 blocks; the last never ran
    rt_tiled = LocalRuntime("cpu", on_progress=lambda s, t: seen.append((s, t)))
    seen.clear()
    movq_stage.decode(movq, torch.zeros(1, 4, 40, 40), runtime=rt_tiled, tile_size=32)  # 3 x 3 tiles
    assert seen == [(i, 27) for i in range(1, 28)]


def test_tiles_of_a_cellwise_function_blend_back_to_the_whole():
    from kandinsky_core.stages import tiles

    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    down = lambda t: torch.nn.functional.avg_pool2d(t, 8)  # noqa: E731 (encode-like: 8 pixels per cell)
    up = lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2) * 2  # noqa: E731 (decode-like)
    assert torch.allclose(tiles.tiled(down, x, 40, 1 / 8), down(x), atol=1e-6)  # 16-px stride: aligned to cells
    assert torch.allclose(tiles.tiled(up, x, 12, 2), up(x), atol=1e-6)
    assert tiles.tile_count(40, 56, 12, 2) == 5 * 6  # stride 9: rows start at 0, 9, 18, 27, 28

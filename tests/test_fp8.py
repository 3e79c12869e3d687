"""fp8 weight storage (kandinsky_core.fp8) for the Kandinsky 3 T5 encoder and UNet-style conv stacks, and the
T5 under the memory modes: bytes, closeness to fp32, and lowvram streaming one block at a time."""
import copy

import pytest
import torch
from torch import nn

from kandinsky_core import fp8, memory
from kandinsky_core.runtime import LocalRuntime

# Measured on these tiny random models: relative L2 error of the outputs ~0.04 for the T5, ~0.03 for the conv
# stack (e4m3fn keeps 3 mantissa bits: 2^-4 relative error per weight at most). Asserted with headroom.
REL_TOLERANCE = 0.08


def tiny_t5(num_layers=2):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=100, d_model=64, d_kv=16, d_ff=128, num_layers=num_layers, num_heads=4,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    return T5EncoderModel(config).eval()


def tiny_convnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(),
                         nn.Flatten(1), nn.Linear(32 * 8 * 8, 16)).eval()


def weight_bytes(module):
    return sum(m.weight.numel() * m.weight.element_size() for m in module.modules()
               if isinstance(m, (nn.Linear, nn.Conv2d)))


def rel_error(out, ref):
    return float((out - ref).norm() / ref.norm())


def test_fp8_storage_halves_fp16_weight_bytes():
    for build in (tiny_t5, tiny_convnet):
        fp32 = build()
        fp16 = copy.deepcopy(fp32).half()
        stored = fp8.store_fp8(copy.deepcopy(fp32))
        assert fp8.is_fp8(stored) and not fp8.is_fp8(fp32)
        assert weight_bytes(stored) * 2 == weight_bytes(fp16)
        assert weight_bytes(stored) * 4 == weight_bytes(fp32)
        assert all(m.weight.dtype == fp8.FP8_DTYPE for m in stored.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))


def test_fp8_t5_stays_close_to_fp32():
    model = tiny_t5()
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        ref = model(ids, attention_mask=mask).last_hidden_state
        out = fp8.store_fp8(copy.deepcopy(model))(ids, attention_mask=mask).last_hidden_state
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    err = rel_error(out, ref)
    assert 0 < err < REL_TOLERANCE, err


def test_fp8_conv_stack_stays_close_to_fp32_in_fp32_and_bf16():
    model = tiny_convnet()
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
        stored = fp8.store_fp8(copy.deepcopy(model))
        assert rel_error(stored(x), ref) < REL_TOLERANCE
        bf16 = fp8.store_fp8(copy.deepcopy(model).to(torch.bfloat16))  # biases in the compute dtype
        out = bf16(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert rel_error(out.float(), ref) < REL_TOLERANCE


def test_fp8_skip_and_idempotence():
    model = fp8.store_fp8(tiny_convnet(), skip=("0",))
    assert model[0].weight.dtype == torch.float32 and type(model[0]) is nn.Conv2d
    before = model[2].weight.clone()
    fp8.store_fp8(model)
    assert torch.equal(model[2].weight.view(torch.uint8), before.view(torch.uint8))  # not re-quantized


def test_fp8_quantize_keeps_tiny_and_zero_rows():
    weight = torch.tensor([[1e-4, -2e-4, 3e-4], [0.0, 0.0, 0.0], [100.0, -50.0, 1.0]])
    q, scale = fp8.quantize(weight)
    back = q.float() * scale
    assert torch.equal(back[1], weight[1])
    assert torch.allclose(back, weight, rtol=2 ** -4, atol=0)


def test_full_size_t5_fp8_bytes_about_half_of_fp16():
    """Flan-UL2's encoder (spec §1.8) on the meta device: all parameter bytes, fp8 vs fp16 storage."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=32128, d_model=4096, d_kv=256, d_ff=16384, num_layers=32, num_heads=16,
                      feed_forward_proj="gated-silu", is_encoder_decoder=False, use_cache=False)
    with torch.device("meta"):
        model = T5EncoderModel(config).to(torch.float16)
    fp16_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    fp8.store_fp8(model)
    fp8_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    assert 8.5e9 < fp16_bytes / 2 < 8.8e9  # 8.7 B parameters
    assert 0.5 < fp8_bytes / fp16_bytes < 0.52  # the embedding stays fp16: 1.5% of the encoder


@pytest.mark.parametrize("store", [False, True], ids=["fp32", "fp8"])
def test_t5_lowvram_streams_one_block_at_a_time(store):
    model = tiny_t5(num_layers=3)
    if store:
        fp8.store_fp8(model)
    ids = torch.randint(0, 100, (1, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(ids).last_hidden_state
    manager = memory.MemoryManager("cpu", "lowvram", max_unit_params=20_000)  # splits each T5 block
    manager.load([model])
    units = memory.plan_units(model, 20_000)
    assert len(units) > 3 and model.shared not in units  # several units per T5 block; the embedding stays
    with torch.no_grad():
        out = model(ids).last_hidden_state
    stats = memory.stream_stats(model)
    assert stats.peak_loaded == 1 and stats.loaded == 0
    assert stats.copies == len(units)
    assert torch.equal(out, ref)
    manager.offload_all()
    memory.unstream(model)


@pytest.mark.parametrize("mode", memory.MEMORY_MODES)
def test_t5_fp8_in_every_memory_mode(mode):
    model = fp8.store_fp8(tiny_t5())
    ids = torch.randint(0, 100, (1, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(ids).last_hidden_state
        rt = LocalRuntime("cpu", memory_mode=mode)
        rt.load([model])
        out = model(ids).last_hidden_state
    rt.offload_all()
    memory.unstream(model)
    assert torch.equal(out, ref)
    assert model.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == fp8.FP8_DTYPE

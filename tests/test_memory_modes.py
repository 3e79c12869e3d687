"""Memory modes (kandinsky_core.memory) through LocalRuntime: same images in every mode, models where they
should be after each stage, lowvram streams one block at a time; a GPU test checks real devices."""
import dataclasses

import pytest
import torch

from benchmarks.build_models import TINY, build_repos
from kandinsky_core import memory
from kandinsky_core.configs.prior import K22_PRIOR
from kandinsky_core.configs.unet import K22_DECODER
from kandinsky_core.loading.components import load_decoder, load_prior
from kandinsky_core.models.prior import KandinskyPrior
from kandinsky_core.models.unet import KandinskyUNet
from kandinsky_core.runtime import LocalRuntime
from kandinsky_core.stages import decoder, prior
from kandinsky_core.stages import movq as movq_stage

SIDE = 64
STEPS = 2


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    return build_repos(TINY, tmp_path_factory.mktemp("tiny_bench_repos"))


def load_models(repos):
    prior_repo, decoder_repo = repos
    unet, movq = load_decoder(decoder_repo)
    return load_prior(prior_repo), unet, movq


def t2i(models, rt, on_stage=None):
    prior_models, unet, movq = models
    embeds = prior.prior_encode(prior_models, "a red cat", "blurry", generator=torch.Generator().manual_seed(1),
                                steps=STEPS, guidance_scale=4.0, runtime=rt)
    if on_stage:
        on_stage("prior")
    latents = decoder.sample(unet, embeds, torch.zeros(1, 4, SIDE // 8, SIDE // 8),
                             generator=torch.Generator().manual_seed(2), steps=STEPS, guidance_scale=4.0, runtime=rt)
    if on_stage:
        on_stage("decoder")
    image = movq_stage.decode(movq, latents, runtime=rt)
    if on_stage:
        on_stage("movq")
    return image


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="lowvram"):
        LocalRuntime("cpu", memory_mode="disk")


def test_modes_give_identical_images(repos):
    images = {}
    for mode in memory.MEMORY_MODES:
        models = load_models(repos)
        rt = LocalRuntime("cpu", memory_mode=mode)
        assert rt.memory_mode == mode
        images[mode] = t2i(models, rt)
        rt.offload_all()
    assert images["gpu"].shape == (1, SIDE, SIDE, 3)
    for mode in ("model_offload", "lowvram"):
        assert torch.equal(images[mode], images["gpu"]), mode


@pytest.mark.parametrize("mode", ["model_offload", "lowvram"])
def test_offload_keeps_only_the_running_stage(repos, mode):
    models = load_models(repos)
    prior_models, unet, movq = models
    rt = LocalRuntime("cpu", memory_mode=mode)
    manager = memory.manager_for("cpu", mode)
    seen = {}

    def on_stage(stage):
        seen[stage] = {name: manager.on_device(m) for name, m in
                       [("prior", prior_models.prior), ("text", prior_models.text_encoder), ("unet", unet.unet),
                        ("movq", movq.movq)]}

    t2i(models, rt, on_stage)
    assert seen["prior"] == {"prior": True, "text": True, "unet": False, "movq": False}
    assert seen["decoder"] == {"prior": False, "text": False, "unet": True, "movq": False}
    assert seen["movq"] == {"prior": False, "text": False, "unet": False, "movq": True}
    rt.offload_all()
    assert not any(manager.on_device(m) for m in (prior_models.prior, unet.unet, movq.movq))


def test_lowvram_streams_one_block_at_a_time(repos):
    models = load_models(repos)
    unet = models[1].unet
    rt = LocalRuntime("cpu", memory_mode="lowvram")
    t2i(models, rt)
    stats = memory.stream_stats(unet)
    units = memory.plan_units(unet)
    assert memory.is_streamed(unet) and stats is not None
    assert stats.peak_loaded == 1 and stats.loaded == 0
    assert stats.copies == len(units) * STEPS  # one UNet forward per step, every block copied in once
    streamed = sum(count(u) for u in units)
    assert streamed / count(unet) > 0.9
    assert unet.conv_in not in units and unet.encoder_hid_proj not in units  # read directly by forward: resident

    memory.unstream(unet)
    assert not memory.is_streamed(unet)
    assert all(not u._forward_pre_hooks and not u._forward_hooks for u in units)


def test_lowvram_plan_for_full_size_models_fits_8_gib():
    """Largest streamed block + everything resident, in fp16, for the published 2.2 sizes (meta device)."""
    with torch.device("meta"):
        unet = KandinskyUNet(K22_DECODER)
        prior_model = KandinskyPrior(dataclasses.replace(K22_PRIOR))
    for model, resident_limit in ((unet, 40e6), (prior_model, 30e6)):
        units = memory.plan_units(model)
        largest = max(count(u) for u in units)
        resident = count(model) - sum(count(u) for u in units)
        assert largest <= memory.DEFAULT_UNIT_PARAMS
        assert resident <= resident_limit, (type(model).__name__, resident)
        assert 2 * (largest + resident) < 0.5 * 2**30  # < 0.5 GiB of weights on the GPU at any time


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_modes_on_gpu_move_weights(repos):
    device = torch.device("cuda")
    images = {}
    for mode in memory.MEMORY_MODES:
        models = load_models(repos)
        prior_models, unet, movq = models
        rt = LocalRuntime(device, memory_mode=mode)
        devices = {}

        def on_stage(stage):
            devices[stage] = {"prior": prior_models.prior.proj_in.weight.device.type,
                              "unet_block": unet.unet.down_blocks[1].resnets[0].conv1.weight.device.type,
                              "unet_conv_in": unet.unet.conv_in.weight.device.type}

        images[mode] = t2i(models, rt, on_stage)
        if mode == "gpu":
            assert devices["movq"] == {"prior": "cuda", "unet_block": "cuda", "unet_conv_in": "cuda"}
        elif mode == "model_offload":
            assert devices["decoder"] == {"prior": "cpu", "unet_block": "cuda", "unet_conv_in": "cuda"}
            assert devices["movq"]["unet_conv_in"] == "cpu"
        else:
            assert devices["decoder"] == {"prior": "cpu", "unet_block": "cpu", "unet_conv_in": "cuda"}
        rt.offload_all()
    for mode in ("model_offload", "lowvram"):
        assert torch.allclose(images[mode], images["gpu"], atol=1e-5), mode


def test_managed_models_can_be_freed(repos):
    """The residency registries hold models weakly: dropping the bundles frees them."""
    import gc
    import weakref

    models = load_models(repos)
    for mode in ("model_offload", "lowvram"):
        LocalRuntime("cpu", memory_mode=mode).load([models[0].prior, models[1].unet])
    refs = [weakref.ref(models[0].prior), weakref.ref(models[1].unet)]
    del models
    gc.collect()
    assert all(r() is None for r in refs)

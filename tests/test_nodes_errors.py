"""Errors users can cause (issue 3, scope 5), Cancel mid-sampling, and recovery of the loaded models."""
import importlib
import shutil

import pytest
import torch
from tiny_models.node_repos import (DECODER, NOT_A_REPO, OTHER_PIPELINE, PRIOR, block_mask, call, core, gen,  # noqa: F401
                                    models, nodes, rand_image, tiny_model_dir)


def fixed_embeds(core, width=32, version="2.2", batch=1):
    return core.payloads.Embeds(torch.rand(batch, width, generator=gen(1)), torch.rand(batch, width, generator=gen(2)),
                                version)


def sample(nodes, unet, embeds, latent, steps=2, denoise=1.0, hint=None, seed=1):
    extra = {"hint": hint} if hint is not None else {}
    return call(nodes["KandinskyUNetSampler"], unet=unet, embeds=embeds, latent=latent, seed=seed, steps=steps,
                guidance_scale=4.0, sampler="ddim", denoise=denoise, **extra)[0]


def outputs_of(nodes, models, core):
    """One small run of every loaded model through the nodes (images, and the prior's embeddings)."""
    embeds = fixed_embeds(core)
    hint = call(nodes["KandinskyDepthHint"], image=rand_image(32, 32, 4))[0]
    inpaint_latent = call(nodes["KandinskyMoVQEncode"], movq=models["inpaint"][1], image=rand_image(8, 8, 3),
                          mask=block_mask(8, 8))[0]
    latents = {
        "decoder": sample(nodes, models["decoder"][0], embeds, {"samples": torch.zeros(1, 4, 4, 4)}),
        "inpaint": sample(nodes, models["inpaint"][0], embeds, inpaint_latent),
        "depth": sample(nodes, models["depth"][0], embeds, {"samples": torch.zeros(1, 4, 4, 4)}, hint=hint),
    }
    out = {k: call(nodes["KandinskyMoVQDecode"], movq=models[k][1], latent=v)[0] for k, v in latents.items()}
    out["prior"] = call(nodes["KandinskyPriorEncode"], prior=models["prior"], prompt="a cat", negative_prompt="",
                        seed=1, steps=2, guidance_scale=4.0, batch_size=1)[0].image_embeds
    return out


@pytest.fixture(scope="module")
def healthy(nodes, models, core):
    return outputs_of(nodes, models, core)


def assert_models_still_work(nodes, models, core, healthy):
    again = outputs_of(nodes, models, core)
    for key, value in healthy.items():
        assert torch.equal(again[key], value), f"{key} changed after the error"


# Each case: (id, node call raising the error, expected exception type, text the message must contain).
def _sampler(key, **kw):
    return lambda nodes, models, core: sample(nodes, models[key][0], fixed_embeds(core),
                                              {"samples": torch.zeros(1, 4, 8, 8)}, **kw)


def _load(node_id, **kw):
    return lambda nodes, models, core: call(nodes[node_id], **kw)


def _prior(node_id, **kw):
    def run(nodes, models, core):
        base = dict(prior=models["prior"], prompt="a cat", negative_prompt="", seed=1, steps=2, guidance_scale=4.0)
        if node_id == "KandinskyPriorEncode":
            base["batch_size"] = 1
        else:
            base.update(image=rand_image(16, 16, 1), strength=0.5)
        return call(nodes[node_id], **{**base, **kw})
    return run


def _interpolate(**kw):
    def run(nodes, models, core):
        e = fixed_embeds(core)
        inputs = {k: e if v == "embeds" else v for k, v in kw.items()}
        return call(nodes["KandinskyInterpolate"], embeds_1=e, embeds_2=e, **inputs)
    return run



def _hint_into(key):
    def run(nodes, models, core):
        hint = call(nodes["KandinskyDepthHint"], image=rand_image(64, 64, 4))[0]
        return sample(nodes, models[key][0], fixed_embeds(core), {"samples": torch.zeros(1, 4, 8, 8)}, hint=hint)
    return run


def _embeds(key, **kw):
    return lambda nodes, models, core: sample(nodes, models[key][0], fixed_embeds(core, **kw),
                                              {"samples": torch.zeros(2, 4, 8, 8)})


CASES = [
    ("hint into a non-depth UNet", _hint_into("decoder"), ValueError, "not a depth ControlNet"),
    ("depth UNet without hint", _sampler("depth"), ValueError, "KandinskyDepthHint"),
    ("inpaint UNet without mask", _sampler("inpaint"), ValueError, "inpainting model"),
    ("embeds from Kandinsky 2.1", _embeds("decoder", width=768, version="2.1"), ValueError, "Kandinsky 2.1 prior"),
    ("embeds of another width", _embeds("decoder", width=64), ValueError, "expects width 32"),
    ("embeds batch vs latent batch", _embeds("decoder", batch=3), ValueError, "embeds hold 3 samples"),
    ("not a LATENT", lambda n, m, c: sample(n, m["decoder"][0], fixed_embeds(c), torch.zeros(1, 4, 8, 8)),
     ValueError, "ComfyUI LATENT"),
    ("folder without model_index.json", _load("KandinskyDecoderLoader", decoder_name=NOT_A_REPO, dtype="fp32"),
     ValueError, "not a Kandinsky repo folder"),
    ("folder of another pipeline", _load("KandinskyDecoderLoader", decoder_name=OTHER_PIPELINE, dtype="fp32"),
     ValueError, "StableDiffusionPipeline"),
    ("decoder folder in the prior loader", _load("KandinskyPriorLoader", prior_name=DECODER, dtype="fp32"),
     ValueError, "KandinskyDecoderLoader"),
    ("prior folder in the decoder loader", _load("KandinskyDecoderLoader", decoder_name=PRIOR, dtype="fp32"),
     ValueError, "KandinskyPriorLoader"),
    ("unknown model name", _load("KandinskyPriorLoader", prior_name="kandinsky-9", dtype="fp32"),
     ValueError, "Unknown Kandinsky prior model"),
    ("path outside the model folder", _load("KandinskyPriorLoader", prior_name="../kandinsky", dtype="fp32"),
     ValueError, "Invalid Kandinsky model name"),
    ("unknown dtype", _load("KandinskyPriorLoader", prior_name=PRIOR, dtype="fp8"), ValueError, "Unknown dtype"),
    ("sampler steps 0", _sampler("decoder", steps=0), ValueError, "steps must be an integer from 1 to 999"),
    ("sampler steps 1000", _sampler("decoder", steps=1000), ValueError, "steps must be an integer from 1 to 999"),
    ("prior steps 1", _prior("KandinskyPriorEncode", steps=1), ValueError, "at least 2"),
    ("denoise 0", _sampler("decoder", denoise=0.0), ValueError, "denoise must be in (0, 1]"),
    ("denoise 1.5", _sampler("decoder", denoise=1.5), ValueError, "denoise must be in (0, 1]"),
    ("denoise runs no step", _sampler("decoder", steps=3, denoise=0.2), ValueError, "0 steps"),
    ("strength 0", _prior("KandinskyPriorEmb2Emb", strength=0.0), ValueError, "strength must be in (0, 1]"),
    ("strength 1.5", _prior("KandinskyPriorEmb2Emb", strength=1.5), ValueError, "strength must be in (0, 1]"),
    ("all interpolation weights zero", _interpolate(weight_1=0.0, weight_2=0.0), ValueError, "weights are zero"),
    ("interpolation weights cancel out", _interpolate(weight_1=0.5, weight_2=-0.5), ValueError, "cancel out"),
    ("interpolation input without weight", _interpolate(weight_1=0.5, weight_2=0.5, embeds_3="embeds"),
     ValueError, "weight_3 is missing"),
]


@pytest.mark.parametrize("make_error,exc,text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_error_is_clear_and_models_recover(nodes, models, core, healthy, make_error, exc, text):
    with pytest.raises(exc) as info:
        make_error(nodes, models, core)
    assert text in str(info.value)
    assert_models_still_work(nodes, models, core, healthy)


def test_corrupt_weight_file(nodes, models, core, healthy, tmp_path, monkeypatch):
    shutil.copytree(tiny_model_dir() / DECODER, tmp_path / "broken-decoder")
    weights = next((tmp_path / "broken-decoder" / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="corrupt or incompletely downloaded|the download is incomplete"):
        call(nodes["KandinskyDecoderLoader"], decoder_name="broken-decoder", dtype="fp32")
    monkeypatch.setenv("KANDINSKY_MODEL_DIR", str(tiny_model_dir()))
    assert_models_still_work(nodes, models, core, healthy)


# --- progress and Cancel -------------------------------------------------------------------------

@pytest.fixture
def node_runtime(nodes):
    module = importlib.import_module("kandinsky_pack.nodes.runtime")
    yield module
    module.set_progress_hook(None)


def test_progress_hook_sees_every_step(nodes, models, core, node_runtime):
    seen = []
    node_runtime.set_progress_hook(lambda step, total: seen.append((step, total)))
    sample(nodes, models["decoder"][0], fixed_embeds(core), {"samples": torch.zeros(1, 4, 8, 8)}, steps=10,
           denoise=0.45)
    assert seen == [(i, 4) for i in range(1, 5)]  # floor(10 x 0.45) = 4 steps of the 10-step schedule
    seen.clear()
    call(nodes["KandinskyPriorEncode"], prior=models["prior"], prompt="a cat", negative_prompt="", seed=1, steps=3,
         guidance_scale=4.0, batch_size=1)
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_interrupt_from_progress_hook_stops_sampling(nodes, models, core, healthy, node_runtime):
    class Cancelled(Exception):
        pass

    steps = []

    def hook(step, total):
        steps.append(step)
        if step == 2:
            raise Cancelled()

    node_runtime.set_progress_hook(hook)
    with pytest.raises(Cancelled):
        sample(nodes, models["decoder"][0], fixed_embeds(core), {"samples": torch.zeros(1, 4, 8, 8)}, steps=5)
    assert steps == [1, 2]  # stopped within one step
    node_runtime.set_progress_hook(None)
    assert_models_still_work(nodes, models, core, healthy)


def test_interrupt_request_stops_the_next_step(nodes, models, core, healthy, node_runtime):
    interrupted = importlib.import_module("kandinsky_pack.kandinsky_core.runtime").Interrupted
    node_runtime.set_progress_hook(lambda step, total: node_runtime.interrupt() if step == 1 else None)
    with pytest.raises(interrupted, match="interrupted at step 2/3"):
        call(nodes["KandinskyPriorEncode"], prior=models["prior"], prompt="a cat", negative_prompt="", seed=1,
             steps=3, guidance_scale=4.0, batch_size=1)
    node_runtime.set_progress_hook(None)
    assert_models_still_work(nodes, models, core, healthy)

"""The ComfyUI bridge without ComfyUI: CONDITIONING payloads, the sigma table and its ComfyUI names, the
MoVQ preview fit and the memory estimate. The bridge inside real ComfyUI hosts: tests/test_bridge_comfy.py."""
import importlib

import pytest
import torch
from tiny_models.node_repos import call, core, gen, models, nodes  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def bridge(nodes):
    return importlib.import_module("kandinsky_pack.nodes.bridge")


@pytest.fixture(scope="module")
def embeds(nodes, models):
    return call(nodes["KandinskyPriorEncode"], prior=models["prior"], prompt="a cat", negative_prompt="blurry",
                seed=1, steps=2, guidance_scale=4.0, batch_size=2)[0]


def test_conditioning_positive_is_the_embeds_negative_the_priors_negative(nodes, embeds):
    positive, negative = call(nodes["KandinskyConditioning"], embeds=embeds)
    assert len(positive) == len(negative) == 1
    (pos_tensor, pos_extra), (neg_tensor, neg_extra) = positive[0], negative[0]
    assert pos_tensor.shape == (2, 1, embeds.width) and pos_tensor.dtype == torch.float32
    assert torch.equal(pos_tensor[:, 0], embeds.image_embeds.float())
    assert torch.equal(neg_tensor[:, 0], embeds.negative_image_embeds.float())
    assert neg_tensor.abs().sum() > 0, "the negative is the prior's negative embedding, not zeros"
    assert pos_extra == neg_extra == {"kandinsky_version": "2.2"}


def test_conditioning_carries_the_hint_in_both(nodes, embeds):
    hint = call(nodes["KandinskyDepthHint"], image=torch.rand(1, 32, 32, 3, generator=gen(0)))[0]
    positive, negative = call(nodes["KandinskyConditioning"], embeds=embeds, hint=hint)
    assert positive[0][1]["kandinsky_hint"] is hint and negative[0][1]["kandinsky_hint"] is hint


def test_conditioning_21_carries_prompts_and_negative_prompts(nodes, core):
    e = core.payloads.Embeds(torch.randn(3, 768), torch.randn(3, 768), "2.1", prompts=("a", "b"),
                             negative_prompts=("n",))
    positive, negative = call(nodes["KandinskyConditioning"], embeds=e)
    assert positive[0][1]["kandinsky_texts"] == ("a", "b", "a")  # one per row, reused cyclically like the core
    assert negative[0][1]["kandinsky_texts"] == ("n", "n", "n")
    from_images = core.payloads.Embeds(torch.randn(1, 768), torch.randn(1, 768), "2.1")
    assert call(nodes["KandinskyConditioning"], embeds=from_images)[0][0][1]["kandinsky_texts"] == ("",)


def test_check_conditioning_names_each_mismatch(bridge, models, embeds):
    unet, depth = models["decoder"][0], models["depth"][0]
    positive, _ = bridge.conditioning_pair(embeds)
    entry = dict(positive[0][1], cross_attn=positive[0][0])
    bridge.check_conditioning(unet, entry)
    with pytest.raises(ValueError, match="KandinskyConditioning did not make"):
        bridge.check_conditioning(unet, {"cross_attn": torch.zeros(1, 77, 768)})
    with pytest.raises(ValueError, match="same version"):
        bridge.check_conditioning(unet, dict(entry, kandinsky_version="2.1"))
    with pytest.raises(ValueError, match="depth ControlNet: connect a hint"):
        bridge.check_conditioning(depth, entry)
    with pytest.raises(ValueError, match="not a depth ControlNet"):
        bridge.check_conditioning(unet, dict(entry, kandinsky_hint=object()))


def _comfy_make_beta_schedule(schedule, n, linear_start, linear_end):
    """ComfyUI's make_beta_schedule for the names the bridge uses (comfy/ldm/modules/diffusionmodules/util.py)."""
    if schedule == "linear":  # ComfyUI's "linear" is scaled-linear
        return torch.linspace(linear_start**0.5, linear_end**0.5, n, dtype=torch.float64) ** 2
    if schedule == "sqrt_linear":
        return torch.linspace(linear_start, linear_end, n, dtype=torch.float64)
    raise AssertionError(schedule)


def test_sigmas_are_the_repos_schedule_and_comfy_names_rebuild_it(bridge, models):
    unet = models["decoder"][0]
    config = bridge.training_config(unet)
    assert config.beta_schedule == "linear"
    abar = torch.cumprod(1 - torch.linspace(config.beta_start, config.beta_end, 1000, dtype=torch.float32), 0)
    assert torch.equal(bridge.training_sigmas(unet), ((1 - abar) / abar) ** 0.5)
    settings = bridge.comfy_sampling_settings(config)
    assert settings["beta_schedule"] == "sqrt_linear", "ComfyUI's 'linear' would be the scaled-linear schedule"
    betas = _comfy_make_beta_schedule(settings["beta_schedule"], settings["timesteps"], settings["linear_start"],
                                      settings["linear_end"])
    abar64 = torch.cumprod(1 - betas, 0)
    rebuilt = (((1 - abar64) / abar64) ** 0.5).float()  # what ModelSamplingDiscrete computes from model_config
    ours = bridge.training_sigmas(unet)
    assert ((rebuilt - ours).abs() / ours).max() < 1e-4  # float64 rebuild vs the float32 (diffusers) table
    wrong = _comfy_make_beta_schedule("linear", 1000, config.beta_start, config.beta_end)
    wrong_abar = torch.cumprod(1 - wrong, 0)
    assert (((1 - wrong_abar) / wrong_abar) ** 0.5).float()[-1] < 0.6 * ours[-1]  # "linear": sigma_max 14.6, ours 25.1


def test_preview_fit_on_a_tiny_movq_predicts_decoded_colours(models):
    preview = importlib.import_module("kandinsky_pack.kandinsky_core.preview")
    movq = models["decoder"][1].movq
    fit = preview.latent_rgb_for(movq)
    assert preview.latent_rgb_for(movq) is fit, "cached per MoVQ module"
    assert len(fit.factors) == 4 and all(len(row) == 3 for row in fit.factors) and len(fit.bias) == 3
    # held-out smooth images: the fitted map explains the decoded colours better than their mean does
    images = preview._fit_images(4, 16, torch.Generator().manual_seed(123))
    with torch.no_grad():
        latents = movq.encode(images)
        target = torch.nn.functional.avg_pool2d(movq.decode(latents).float(), movq.scale_factor)
    predicted = fit.apply(latents).movedim(-1, 1)  # B, h, w, 3 -> B, 3, h, w
    residual = (predicted - target).pow(2).mean()
    baseline = (target - target.mean(dim=(0, 2, 3), keepdim=True)).pow(2).mean()
    assert residual < baseline, (float(residual), float(baseline))
    other = models["depth"][1].movq  # the 4-level tiny MoVQ (the 2-level ones share their weights)
    assert preview.latent_rgb_for(other).factors != fit.factors, "fitted per model, not a constant table"


def test_memory_estimate_numbers(bridge, models):
    unet = models["decoder"][0]
    per_pixel = bridge.ACTIVATION_BYTES_PER_LATENT_PIXEL["2.2"]
    fixed = bridge.ACTIVATION_FIXED_BYTES["2.2"]
    # KSampler asks for cond + uncond of one 768 px image: batch 2, 96 x 96 latent, fp16 (2 bytes)
    assert bridge.activation_bytes(unet, 2, 96, 96, 2) == int((per_pixel * 2 * 96 * 96 + fixed) / 2)
    assert 150e6 < bridge.activation_bytes(unet, 2, 96, 96, 2) < 2e9  # hundreds of MB, not the SD-default guess
    assert bridge.activation_bytes(unet, 4, 96, 96, 4) > bridge.activation_bytes(unet, 2, 96, 96, 4)
    # memory_usage_factor reproduces the per-pixel part in ComfyUI's own formula (area x dtype x 0.01 x factor MiB)
    area, dtype_size = 2 * 96 * 96, 2
    comfy_formula = area * dtype_size * 0.01 * bridge.memory_usage_factor(unet) * 1024 * 1024
    assert comfy_formula == pytest.approx(per_pixel * area * dtype_size / 4)


def test_bridge_nodes_outside_comfyui_say_where_they_run(nodes, models):
    with pytest.raises(RuntimeError, match="only inside ComfyUI"):
        call(nodes["KandinskyUNetToModel"], unet=models["decoder"][0])
    with pytest.raises(RuntimeError, match="only inside ComfyUI"):
        call(nodes["KandinskyMoVQToVAE"], movq=models["decoder"][1])


# --- Kandinsky 3 ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k3(nodes):
    from tiny_models.node_repos import K3

    loaders = nodes["KandinskyTextEncoderLoader"](), nodes["KandinskyDecoderLoader"]()
    text_encoder = call(loaders[0], text_encoder_name=K3, dtype="fp32")[0]
    unet, movq = call(loaders[1], decoder_name=K3, dtype="fp32")
    embeds = call(nodes["KandinskyTextEncode"], text_encoder=text_encoder, prompt="a red cat in the forest",
                  negative_prompt="blurry")[0]
    return {"unet": unet, "movq": movq, "embeds": embeds, "loaders": loaders}


def test_k3_conditioning_is_the_text_states_and_mask(nodes, k3):
    e = k3["embeds"]
    positive, negative = call(nodes["KandinskyConditioning"], embeds=e)
    (pos_states, pos_extra), (neg_states, neg_extra) = positive[0], negative[0]
    assert pos_states.shape == neg_states.shape == e.embeds.shape and pos_states.dtype == torch.float32
    assert torch.equal(pos_states, e.embeds) and torch.equal(neg_states, e.negative_embeds)
    assert pos_extra["kandinsky_version"] == neg_extra["kandinsky_version"] == "3"
    assert torch.equal(pos_extra["kandinsky_text_mask"], e.mask)
    assert torch.equal(neg_extra["kandinsky_text_mask"], e.negative_mask)
    assert neg_states.abs().sum() > 0  # the negative prompt's states, not zeros
    assert neg_extra["kandinsky_text_mask"].sum() < pos_extra["kandinsky_text_mask"].sum()
    with pytest.raises(ValueError, match="no depth hint"):
        call(nodes["KandinskyConditioning"], embeds=e, hint=object())


def test_k3_check_conditioning_names_each_mismatch(bridge, models, embeds, k3):
    unet = k3["unet"]
    positive, _ = bridge.conditioning_pair(k3["embeds"])
    entry = dict(positive[0][1], cross_attn=positive[0][0])
    bridge.check_conditioning(unet, entry)
    two_x, _ = bridge.conditioning_pair(embeds)
    with pytest.raises(ValueError, match=r"Kandinsky 2\.2 embeds \(a prior\).*is Kandinsky 3.*KandinskyTextEncode"):
        bridge.check_conditioning(unet, dict(two_x[0][1], cross_attn=two_x[0][0]))
    with pytest.raises(ValueError, match=r"Kandinsky 3 text embeds.*is Kandinsky 2\.2.*KandinskyPriorEncode"):
        bridge.check_conditioning(models["decoder"][0], entry)
    with pytest.raises(ValueError, match="width 32"):
        bridge.check_conditioning(unet, dict(entry, cross_attn=torch.zeros(1, 5, 16)))
    with pytest.raises(ValueError, match="ConditioningConcat"):
        bridge.check_conditioning(unet, dict(entry, cross_attn=torch.cat([entry["cross_attn"]] * 2, dim=1)))
    with pytest.raises(ValueError, match="takes none"):
        bridge.check_conditioning(unet, dict(entry, kandinsky_hint=object()))


def test_k3_repeat_padding_keeps_eps_zero_padding_does_not(k3):
    """How ComfyUI may batch K3 conds of different token lengths: its CONDCrossAttn repeats the shorter states to
    the common (LCM) length and the bridge's text mask is repeated the same way (comfy_bridge.text_mask_cond).
    Repeating states and mask together leaves eps unchanged; zero-padding with mask 0, although masked out of
    every cross-attention, moves the attention pooling's query (the mean over all tokens). States of a realistic
    size (T5 states are O(1) per channel, the tiny encoder's ~0.1) make that visible."""
    unet, e = k3["unet"].unet, k3["embeds"]
    x = torch.randn(1, 4, 8, 8, generator=gen(0))
    states, mask = e.embeds * 20, e.mask
    with torch.no_grad():
        eps = unet(x, 500, states, mask)
        repeated = unet(x, 500, states.repeat(1, 3, 1), mask.repeat(1, 3))
        zero_padded = unet(x, 500, torch.cat([states, torch.zeros_like(states)], 1),
                           torch.cat([mask, torch.zeros_like(mask)], 1))
    repeat_diff, zero_diff = float((repeated - eps).abs().max()), float((zero_padded - eps).abs().max())
    print(f"[k3 padding] eps max diff: repeated {repeat_diff:.3g}, zero-padded {zero_diff:.3g}")
    assert repeat_diff <= 1e-5 < 1e-3 < zero_diff


def test_k3_sigmas_are_the_cosine_schedule_and_comfy_names_rebuild_it(bridge, k3):
    import numpy as np

    unet = k3["unet"]
    config = bridge.training_config(unet)
    assert config.beta_schedule == "squaredcos_cap_v2"
    settings = bridge.comfy_sampling_settings(config)
    assert settings["beta_schedule"] == "cosine" and settings["timesteps"] == 1000
    # ComfyUI's make_beta_schedule("cosine", cosine_s=8e-3), float64, then ModelSamplingDiscrete's sigmas
    t = torch.arange(1001, dtype=torch.float64) / 1000 + 8e-3
    alphas = torch.cos(t / (1 + 8e-3) * np.pi / 2).pow(2)
    alphas = alphas / alphas[0]
    betas = torch.clamp(1 - alphas[1:] / alphas[:-1], min=0, max=0.999)
    abar64 = torch.cumprod(1 - betas, 0)
    rebuilt = (((1 - abar64) / abar64) ** 0.5).float()
    ours = bridge.training_sigmas(unet)
    assert ours[0] == pytest.approx(0.0064, rel=1e-2) and ours[-1] == pytest.approx(20291, rel=1e-3)
    relative = ((rebuilt - ours).abs() / ours)
    print(f"[k3 sigmas] ComfyUI float64 rebuild vs our float32 table: max relative diff {float(relative.max()):.3g} "
          f"(t = {int(relative.argmax())}), from t = 100 on {float(relative[100:].max()):.3g}")
    # the float32 cumprod (diffusers', ours) loses digits of 1 - abar where abar ~ 1 (sigma_0 = 0.0064): measured
    # 2.6e-4 at t = 0; the MODEL sets our exact float32 table anyway (KandinskySampling.set_sigmas)
    assert float(relative.max()) < 5e-4 and float(relative[100:].max()) < 1e-5


def test_k3_memory_estimate_row(bridge, k3):
    unet = k3["unet"]
    assert set(bridge.ACTIVATION_BYTES_PER_LATENT_PIXEL) == set(bridge.ACTIVATION_FIXED_BYTES) >= {"2.1", "2.2", "3"}
    per_pixel, fixed = bridge.ACTIVATION_BYTES_PER_LATENT_PIXEL["3"], bridge.ACTIVATION_FIXED_BYTES["3"]
    assert bridge.activation_bytes(unet, 2, 128, 128, 2) == int((per_pixel * 2 * 128 * 128 + fixed) / 2)
    assert bridge.memory_usage_factor(unet) == per_pixel / 4 / (0.01 * 1024 * 1024)


def test_k3_flash_and_inpainting_unets_are_not_bridged(bridge, k3):
    from dataclasses import replace

    bridge.check_bridgeable(k3["unet"])
    with pytest.raises(ValueError, match="3.1 flash UNet.*KandinskyUNetSampler"):
        bridge.check_bridgeable(replace(k3["unet"], original_kind="flash"))

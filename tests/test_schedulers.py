"""Parity of the native schedulers with diffusers' DDPMScheduler / DDIMScheduler / UnCLIPScheduler."""
from types import SimpleNamespace

import diffusers
import pytest
import torch
from diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_img2img import KandinskyV22Img2ImgPipeline

from kandinsky_core.configs.scheduler import (
    KANDINSKY_2_1_DDIM_SCHEDULER,
    KANDINSKY_PRIOR_SCHEDULER,
    SchedulerConfig,
)
from kandinsky_core.schedulers import (
    DDIMScheduler,
    DDPMScheduler,
    UnCLIPScheduler,
    make_scheduler,
    randn,
    scheduler_class_for,
    timesteps_for_strength,
)

TOL = 1e-6
LINEAR = {"beta_schedule": "linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}

# Spec §3.1 rows, the §5.1 dummies, and the other options the classes offer.
CONFIGS = {
    "prior_unclip": {"_class_name": "UnCLIPScheduler", "clip_sample": True, "clip_sample_range": 10.0,
                     "num_train_timesteps": 1000, "prediction_type": "sample", "variance_type": "fixed_small_log"},
    "unclip_learned_range_eps": {"_class_name": "UnCLIPScheduler", "variance_type": "learned_range",
                                 "clip_sample_range": 5.0},
    "k21_ddim": {"_class_name": "DDIMScheduler", **LINEAR, "clip_sample": False, "set_alpha_to_one": False,
                 "steps_offset": 1, "prediction_type": "epsilon", "thresholding": False,
                 "timestep_spacing": "leading", "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0,
                 "clip_sample_range": 1.0},
    "k21_ddpm": {"_class_name": "DDPMScheduler", **LINEAR, "variance_type": "learned_range",
                 "prediction_type": "epsilon", "clip_sample": True, "clip_sample_range": 2.0,
                 "thresholding": True, "sample_max_value": None, "steps_offset": 1},
    "k21_ddpm_clip_only": {"_class_name": "DDPMScheduler", **LINEAR, "variance_type": "learned_range",
                           "clip_sample": True, "clip_sample_range": 2.0, "steps_offset": 1},
    "k22_ddpm": {"_class_name": "DDPMScheduler", **LINEAR, "prediction_type": "epsilon", "clip_sample": False,
                 "steps_offset": 1, "timestep_spacing": "leading", "variance_type": "fixed_small",
                 "thresholding": False},
    "k3_ddpm": {"_class_name": "DDPMScheduler", **LINEAR, "beta_schedule": "squaredcos_cap_v2",
                "prediction_type": "epsilon", "clip_sample": True, "thresholding": False, "steps_offset": 1,
                "timestep_spacing": "leading", "variance_type": "fixed_small"},
    "dummy_ddim_offset1": {"_class_name": "DDIMScheduler", **LINEAR, "clip_sample": False,
                           "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
                           "thresholding": False},
    "dummy_ddim_offset0": {"_class_name": "DDIMScheduler", **LINEAR, "clip_sample": False,
                           "set_alpha_to_one": False, "steps_offset": 0, "prediction_type": "epsilon",
                           "thresholding": False},
    "ddim_defaults_sample_pred": {"_class_name": "DDIMScheduler", "prediction_type": "sample",
                                  "thresholding": True, "sample_max_value": 1.5},
    "ddim_v_scaled_linear": {"_class_name": "DDIMScheduler", **LINEAR, "beta_schedule": "scaled_linear",
                             "prediction_type": "v_prediction", "clip_sample": True},
    "ddpm_fixed_small_log": {"_class_name": "DDPMScheduler", **LINEAR, "variance_type": "fixed_small_log",
                             "clip_sample": False, "steps_offset": 1},
    "ddpm_fixed_large_v": {"_class_name": "DDPMScheduler", "variance_type": "fixed_large",
                           "prediction_type": "v_prediction"},
    "ddpm_learned_sample": {"_class_name": "DDPMScheduler", **LINEAR, "variance_type": "learned",
                            "prediction_type": "sample", "clip_sample": False},
    "ddpm_trained_betas": {"_class_name": "DDPMScheduler", "num_train_timesteps": 50,
                           "trained_betas": [0.001 + 0.004 * i for i in range(50)], "clip_sample": False},
    "ddpm_zero_snr_trailing": {"_class_name": "DDPMScheduler", **LINEAR, "rescale_betas_zero_snr": True,
                               "prediction_type": "v_prediction", "timestep_spacing": "trailing"},
}
for _spacing in ("leading", "linspace", "trailing"):
    for _cls in ("DDPMScheduler", "DDIMScheduler"):
        CONFIGS[f"{_cls}_{_spacing}"] = {"_class_name": _cls, **LINEAR, "clip_sample": False, "steps_offset": 1,
                                         "set_alpha_to_one": False, "timestep_spacing": _spacing}


def reference(config: dict):
    return getattr(diffusers, config["_class_name"]).from_config(config)


def sample_shape(config: dict):
    return (2, 32) if config["_class_name"] == "UnCLIPScheduler" else (2, 4, 6, 6)


def model_outputs(config: dict, n: int, shape):
    """Random model outputs per step (2x channels, variance half in [-1, 1], for learned variances)."""
    learned = config.get("variance_type") in ("learned", "learned_range")
    g = torch.Generator().manual_seed(1234)
    outs = []
    for _ in range(n):
        eps = torch.randn(shape, generator=g)
        if learned:
            var = torch.rand(shape, generator=g)
            var = var * 2 - 1 if config["variance_type"] == "learned_range" else var * 0.01
            eps = torch.cat([eps, var], dim=1)
        outs.append(eps)
    return outs


def run_ours(sched, timesteps, x, outs, gen, unclip: bool):
    """All intermediate samples, stacked (the final one alone can hide the noise, e.g. x̂₀-prediction)."""
    ts, xs = [int(t) for t in timesteps], []
    for i, t in enumerate(ts):
        prev = (ts[i + 1] if i + 1 < len(ts) else None) if unclip else None
        x = sched.step(outs[i], t, x, prev_timestep=prev, generator=gen)
        xs.append(x)
    return torch.stack(xs)


def run_reference(sched, timesteps, x, outs, gen, unclip: bool):
    xs = []
    for i, t in enumerate(timesteps):  # tensors, exactly as the diffusers pipelines iterate
        kwargs = {"generator": gen}
        if unclip:
            kwargs["prev_timestep"] = None if i + 1 == len(timesteps) else timesteps[i + 1]
        x = sched.step(outs[i], t, x, **kwargs).prev_sample
        xs.append(x)
    return torch.stack(xs)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_timesteps_and_full_schedule_parity(name):
    cfg = CONFIGS[name]
    ref, ours = reference(cfg), make_scheduler(cfg)
    assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod)
    unclip = cfg["_class_name"] == "UnCLIPScheduler"
    for n in (2, 5, 7, 25):
        ref.set_timesteps(n)
        ts = ours.set_timesteps(n)
        assert ts.dtype == torch.int64 and ts.device.type == "cpu"
        assert torch.equal(ts, ref.timesteps.to(torch.int64)), (name, n)
        assert torch.equal(ours.timesteps, ts)

    n = 5
    ref.set_timesteps(n)
    ours.set_timesteps(n)
    shape = sample_shape(cfg)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    outs = model_outputs(cfg, n, shape)
    g_ours, g_ref = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    got = run_ours(ours, ours.timesteps, x0, outs, g_ours, unclip)
    want = run_reference(ref, ref.timesteps, x0, outs, g_ref, unclip)
    assert torch.isfinite(want).all()
    diff = (got - want).abs().max().item()
    assert diff <= TOL, (name, diff)
    # same number and order of RNG draws: the generators end in the same state
    assert torch.equal(g_ours.get_state(), g_ref.get_state()), name


@pytest.mark.parametrize("name", ["prior_unclip", "k21_ddim", "k22_ddpm", "k3_ddpm", "ddpm_trained_betas"])
def test_add_noise_parity(name):
    cfg = CONFIGS[name]
    ref, ours = reference(cfg), make_scheduler(cfg)
    shape = sample_shape(cfg)
    g = torch.Generator().manual_seed(3)
    x, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    total = cfg.get("num_train_timesteps", 1000)
    for t in (torch.tensor([total - 1, 0]), torch.tensor([total // 3])):
        diff = (ours.add_noise(x, noise, t) - ref.add_noise(x, noise, t)).abs().max().item()
        assert diff <= TOL, (name, diff)
    # fp16: ᾱ is cast to the sample dtype first, so the result matches diffusers bit for bit
    t = torch.tensor([total * 2 // 5, total * 9 // 10])
    got = ours.add_noise(x.half(), noise.half(), t)
    assert got.dtype == torch.float16
    assert torch.equal(got, ref.add_noise(x.half(), noise.half(), t))
    # a Python int timestep broadcasts over the batch
    t = total // 2
    assert torch.equal(ours.add_noise(x, noise, t), ours.add_noise(x, noise, torch.tensor([t, t])))


def test_ddim_eta_parity():
    cfg = CONFIGS["k21_ddim"]
    ref, ours = reference(cfg), DDIMScheduler(SchedulerConfig.from_dict(cfg), eta=0.7)
    ref.set_timesteps(4)
    ours.set_timesteps(4)
    shape = sample_shape(cfg)
    x = y = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    outs = model_outputs(cfg, 4, shape)
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for i, t in enumerate(ref.timesteps):
        x = ours.step(outs[i], int(t), x, generator=g1)
        y = ref.step(outs[i], t, y, eta=0.7, generator=g2).prev_sample
    assert (x - y).abs().max().item() <= TOL
    assert torch.equal(g1.get_state(), g2.get_state())


def test_ddim_fp16_matches_diffusers_exactly():
    """Deterministic steps in fp16: the type promotion (fp32 0-dim tables x fp16 samples) is diffusers'."""
    cfg = CONFIGS["k21_ddim"]
    ref, ours = reference(cfg), make_scheduler(cfg)
    ref.set_timesteps(4)
    ours.set_timesteps(4)
    x = y = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(5)).half()
    for i, t in enumerate(ref.timesteps):
        out = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(i)).half()
        x = ours.step(out, int(t), x)
        y = ref.step(out, t, y).prev_sample
        assert x.dtype == torch.float16
        assert torch.equal(x, y)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ddpm_low_precision_close_to_fp32(dtype):
    """Low-precision DDPM (thresholding + learned range): noise is the fp32 draw cast, result stays close."""
    ours = make_scheduler(CONFIGS["k21_ddpm"])
    ours.set_timesteps(4)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(5))
    outs = model_outputs(CONFIGS["k21_ddpm"], 4, (2, 4, 6, 6))
    ref = run_ours(ours, ours.timesteps, x, outs, torch.Generator().manual_seed(0), False)
    low = run_ours(ours, ours.timesteps, x.to(dtype), [o.to(dtype) for o in outs],
                   torch.Generator().manual_seed(0), False)
    assert low.dtype == dtype
    assert (low[-1].float() - ref[-1]).abs().max().item() < 0.1


def test_randn_helper():
    g = torch.Generator().manual_seed(42)
    want = torch.randn((2, 3), generator=torch.Generator().manual_seed(42), dtype=torch.float32)
    assert torch.equal(randn((2, 3), g, "cpu", torch.float32), want)
    half = randn((2, 3), torch.Generator().manual_seed(42), "cpu", torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half, want.half())  # fp32 draw, then cast
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    per_item = randn((2, 3), gens, "cpu", torch.float32)
    assert torch.equal(per_item[1:], torch.randn((1, 3), generator=torch.Generator().manual_seed(2)))


def test_ddpm_final_step_t1_draws_noise_and_t0_does_not():
    sched = make_scheduler(CONFIGS["k22_ddpm"])
    assert sched.set_timesteps(2).tolist() == [501, 1]
    x = torch.zeros(1, 4, 2, 2)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    sched.step(x, 1, x, generator=g)
    assert not torch.equal(state, g.get_state())  # t = 1 > 0 still consumes RNG (spec §7.2 item 14)
    state = g.get_state()
    make_scheduler(CONFIGS["dummy_ddim_offset0"] | {"_class_name": "DDPMScheduler"}).step(x, 0, x, generator=g)
    assert torch.equal(state, g.get_state())


def test_fixed_large_log_is_finite_and_equals_fixed_large():
    """diffusers returns sqrt(log β) (NaN) for fixed_large_log; we use its intended std √β."""
    base = {"_class_name": "DDPMScheduler", **LINEAR, "clip_sample": False}
    large = make_scheduler(base | {"variance_type": "fixed_large"})
    large_log = make_scheduler(base | {"variance_type": "fixed_large_log"})
    x = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    a = large.step(x, 500, x, generator=torch.Generator().manual_seed(1))
    b = large_log.step(x, 500, x, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(b).all() and torch.equal(a, b)


def test_variance_channels_dropped_when_not_learned():
    """An 8-channel UNet output stepped by DDIM / fixed-variance DDPM uses only the ε half (as the pipelines)."""
    x = torch.randn(1, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    out = torch.randn(1, 8, 3, 3, generator=torch.Generator().manual_seed(1))
    for name in ("k21_ddim", "k22_ddpm"):
        sched = make_scheduler(CONFIGS[name])
        sched.set_timesteps(3)
        t = int(sched.timesteps[0])
        a = sched.step(out, t, x, generator=torch.Generator().manual_seed(2))
        b = sched.step(out[:, :4], t, x, generator=torch.Generator().manual_seed(2))
        assert torch.equal(a, b)
    learned = make_scheduler(CONFIGS["k21_ddpm"])
    assert learned.learned_variance and not make_scheduler(CONFIGS["k22_ddpm"]).learned_variance
    with pytest.raises(ValueError, match="2x"):
        learned.step(out[:, :4], 500, x)


@pytest.mark.parametrize("n,strength", [(10, 0.3), (100, 0.29), (10, 0.2), (25, 0.5), (7, 1.0), (3, 0.34),
                                        (100, 0.3)])
def test_timesteps_for_strength_matches_get_timesteps(n, strength):
    ref = reference(CONFIGS["k22_ddpm"])
    ref.set_timesteps(n)
    want, _ = KandinskyV22Img2ImgPipeline.get_timesteps(SimpleNamespace(scheduler=ref), n, strength, "cpu")
    ours = make_scheduler(CONFIGS["k22_ddpm"])
    got = timesteps_for_strength(ours.set_timesteps(n), n, strength)
    assert torch.equal(got, want)


@pytest.mark.parametrize("strength", [-0.1, 1.5, 0.0, 0.05])
def test_timesteps_for_strength_rejects(strength):
    ts = make_scheduler(CONFIGS["k22_ddpm"]).set_timesteps(10)
    with pytest.raises(ValueError, match="strength"):
        timesteps_for_strength(ts, 10, strength)


@pytest.mark.parametrize("name,bad", [("prior_unclip", 1), ("prior_unclip", 0), ("prior_unclip", 1001),
                                      ("k21_ddim", 0), ("k21_ddim", 1001), ("k22_ddpm", 0), ("k22_ddpm", -3),
                                      ("k22_ddpm", 2.0), ("k22_ddpm", True)])
def test_invalid_step_counts_raise(name, bad):
    with pytest.raises(ValueError, match="num_inference_steps"):
        make_scheduler(CONFIGS[name]).set_timesteps(bad)


def test_valid_edge_step_counts():
    assert make_scheduler(CONFIGS["prior_unclip"]).set_timesteps(2).tolist() == [999, 0]
    assert make_scheduler(CONFIGS["k22_ddpm"]).set_timesteps(1).tolist() == [1]
    assert len(make_scheduler(CONFIGS["k21_ddim"]).set_timesteps(999)) == 999  # 1000 would reach t = 1000


def test_spec_reference_values():
    prior = make_scheduler(KANDINSKY_PRIOR_SCHEDULER)
    assert prior.set_timesteps(25).tolist()[:5] == [999, 957, 916, 874, 832]
    assert prior.set_timesteps(5).tolist() == [999, 749, 500, 250, 0]
    ddim = make_scheduler(KANDINSKY_2_1_DDIM_SCHEDULER)
    assert ddim.set_timesteps(50).tolist()[:2] == [981, 961] and ddim.timesteps[-1] == 1
    assert abs(ddim.alphas_cumprod[0].item() - 0.99915) < 1e-6
    assert abs(ddim.alphas_cumprod[-1].item() - 0.0015790) < 1e-6
    assert ddim.final_alpha_cumprod == ddim.alphas_cumprod[0]


@pytest.mark.parametrize("class_name", ["DDPMScheduler", "DDIMScheduler", "UnCLIPScheduler"])
def test_defaults_match_diffusers(class_name):
    ours = SchedulerConfig.from_dict({"_class_name": class_name})
    ref = getattr(diffusers, class_name)().config
    for key, value in ref.items():
        if not key.startswith("_"):
            assert getattr(ours, key) == value, (class_name, key)
    assert scheduler_class_for(ours) is {"DDPMScheduler": DDPMScheduler, "DDIMScheduler": DDIMScheduler,
                                         "UnCLIPScheduler": UnCLIPScheduler}[class_name]


def test_keys_a_class_ignores_are_ignored():
    """diffusers' DDPM ignores set_alpha_to_one; UnCLIP ignores thresholding / steps_offset / betas."""
    ddpm = SchedulerConfig.from_dict(CONFIGS["k22_ddpm"] | {"set_alpha_to_one": False})
    assert ddpm.set_alpha_to_one is True
    unclip = SchedulerConfig.from_dict(CONFIGS["prior_unclip"] | {"thresholding": True, "steps_offset": 1,
                                                                  "beta_start": 0.1})
    assert unclip == KANDINSKY_PRIOR_SCHEDULER


@pytest.mark.parametrize("cfg,match", [
    ({"_class_name": "EulerDiscreteScheduler"}, "DDPMScheduler, DDIMScheduler, UnCLIPScheduler"),
    ({}, "_class_name"),
    ({"_class_name": "DDPMScheduler", "beta_schedule": "sigmoid"}, "beta_schedule"),
    ({"_class_name": "DDIMScheduler", "prediction_type": "flow"}, "prediction_type"),
    ({"_class_name": "DDPMScheduler", "variance_type": "wide"}, "variance_type"),
    ({"_class_name": "DDIMScheduler", "timestep_spacing": "karras"}, "timestep_spacing"),
    ({"_class_name": "UnCLIPScheduler", "beta_schedule": "linear"}, "beta_schedule"),
    ({"_class_name": "UnCLIPScheduler", "variance_type": "fixed_small"}, "variance_type"),
    ({"_class_name": "UnCLIPScheduler", "prediction_type": "v_prediction"}, "prediction_type"),
    ({"_class_name": "DDPMScheduler", "trained_betas": [0.1, 0.2]}, "trained_betas"),
    ({"_class_name": "DDPMScheduler", "num_train_timesteps": 0}, "num_train_timesteps"),
    ({"_class_name": "DDPMScheduler", "clip_sample": "yes"}, "clip_sample"),
])
def test_unsupported_configs_raise(cfg, match):
    with pytest.raises(ValueError, match=match):
        SchedulerConfig.from_dict(cfg)


def test_steps_beyond_the_training_schedule_are_a_clear_error():
    from kandinsky_core.configs.scheduler import KANDINSKY_2_2_DDPM_SCHEDULER
    from kandinsky_core.schedulers import make_scheduler

    scheduler = make_scheduler(KANDINSKY_2_2_DDPM_SCHEDULER)
    assert int(scheduler.set_timesteps(999).max()) == 999
    with pytest.raises(ValueError, match="at most 999"):
        scheduler.set_timesteps(1000)

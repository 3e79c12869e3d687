"""The sampler of the original ai-forever Kandinsky 3 / 3.1 release (`kandinsky3/model/diffusion.py`).

It differs from diffusers' Kandinsky3Pipeline:
- the cosine schedule of 1000 training steps is kept; `steps` only picks the times 999, 999 - s, ... (down
  to > 0) with s = -((-1000) // steps), each followed by the next (the last by 0), and the UNet sees those
  times as they are (the code's `time_scale` is 1000 // 1000 = 1);
- each step is DDIM with eta = 1 between the picked times: x0 from eps, x0 dynamically thresholded (the
  `percentile` quantile of |x0| per sample, at least 1, clip and divide), eps recomputed from the clipped
  x0, then x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s z with
  s^2 = eta (1 - a_t / a_prev)(1 - a_prev)/(1 - a_t); the step to time 0 uses a_0 (not 1) and adds no noise
  (its z is still drawn);
- Flash (the adversarially distilled 3.1 UNet): 4 steps at 979, 729, 479, 229; each noises the current
  estimate to time t (`q_sample`, fresh noise), predicts eps without guidance and takes
  x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) unclipped as the new estimate. The first estimate is the
  initial noise itself.
Noise is drawn in the original's order: the initial latent, then one draw per step.
"""
from __future__ import annotations

import math

import torch

TRAIN_STEPS = 1000
T2I_PERCENTILE = 0.99  # Kandinsky3T2IPipeline
INPAINT_PERCENTILE = 0.95  # Kandinsky3InpaintingPipeline
FLASH_TIMES = (979, 729, 479, 229)  # range(979, 0, -250)


def cosine_betas(train_steps: int = TRAIN_STEPS) -> torch.Tensor:
    """get_named_beta_schedule('cosine'): betas from alpha_bar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2."""
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / train_steps) / alpha_bar(i / train_steps), 0.999) for i in range(train_steps)]
    return torch.tensor(betas, dtype=torch.float32)


def alphas_cumprod(train_steps: int = TRAIN_STEPS) -> torch.Tensor:
    """Cumulative products of 1 - beta, in float32 as the original computes them."""
    return torch.cumprod(1.0 - cosine_betas(train_steps), dim=0)


def sample_times(steps: int) -> list[int]:
    """The times the original visits for `steps`: range(999, 0, -1000 // steps), where Python reads the stride as
    (-1000) // steps, so steps that do not divide 1000 stride one further (3 steps: 999, 665, 331)."""
    if not 1 <= steps <= TRAIN_STEPS:
        raise ValueError(f"The original Kandinsky 3 sampler takes 1 to {TRAIN_STEPS} steps, got {steps}.")
    return list(range(TRAIN_STEPS - 1, 0, (-TRAIN_STEPS) // steps))


def dynamic_threshold(x0: torch.Tensor, percentile: float | None) -> torch.Tensor:
    """process_x_start: per sample, clip |x0| to max(quantile, 1) and divide by it (percentile None: clip to +-1)."""
    if percentile is None:
        return x0.clamp(-1.0, 1.0)
    q = torch.quantile(x0.reshape(x0.shape[0], -1).abs(), percentile, dim=-1).clamp(min=1.0)
    q = q.reshape(-1, *([1] * (x0.ndim - 1)))
    return torch.maximum(torch.minimum(x0, q), -q) / q


def _at(table: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
    return table[t].to(device=like.device, dtype=like.dtype)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, t: int, prev_t: int, noise: torch.Tensor, acp: torch.Tensor,
              percentile: float | None, eta: float = 1.0) -> torch.Tensor:
    """One original p_sample step from time t to prev_t (see the module doc)."""
    a_t, a_prev = _at(acp, t, x), _at(acp, prev_t, x)
    x0 = (x - torch.sqrt(1.0 - a_t) * eps) / torch.sqrt(a_t)
    x0 = dynamic_threshold(x0, percentile)
    eps = (x - torch.sqrt(a_t) * x0) / torch.sqrt(1.0 - a_t)
    sigma = torch.sqrt(eta * (1.0 - a_t / a_prev) * (1.0 - a_prev) / (1.0 - a_t))
    mean = torch.sqrt(a_prev) * x0 + torch.sqrt(1.0 - a_prev - sigma**2) * eps
    return mean + sigma * noise if prev_t != 0 else mean


def flash_noised(estimate: torch.Tensor, t: int, noise: torch.Tensor, acp: torch.Tensor) -> torch.Tensor:
    """q_sample: the current estimate noised to time t."""
    a_t = _at(acp, t, estimate)
    return torch.sqrt(a_t) * estimate + torch.sqrt(1.0 - a_t) * noise


def flash_estimate(x_t: torch.Tensor, eps: torch.Tensor, t: int, acp: torch.Tensor) -> torch.Tensor:
    """get_x_start: the clean latent the Flash UNet's eps implies (not thresholded)."""
    a_t = _at(acp, t, x_t)
    return (x_t - torch.sqrt(1.0 - a_t) * eps) / torch.sqrt(a_t)


def guide(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """The original (and diffusers') K3 guidance: (g + 1) c - g u."""
    return (scale + 1.0) * eps_cond - scale * eps_uncond

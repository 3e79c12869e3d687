"""β tables (fp32, computed exactly as diffusers does)."""
from __future__ import annotations

import math

import torch

from ..configs.scheduler import SchedulerConfig


def cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """squaredcos_cap_v2: β_i = min(1 - ᾱ((i+1)/T)/ᾱ(i/T), max_beta), in float64 Python, stored fp32."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = []
    for i in range(num_train_timesteps):
        t1, t2 = i / num_train_timesteps, (i + 1) / num_train_timesteps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return torch.tensor(betas, dtype=torch.float32)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale √ᾱ so that ᾱ_T = 0 while ᾱ_0 is kept (arXiv 2305.08891, Algorithm 1)."""
    alphas_bar_sqrt = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt -= last
    alphas_bar_sqrt *= first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


def make_betas(config: SchedulerConfig) -> torch.Tensor:
    """The β table of a scheduler config (fp32, CPU)."""
    n = config.num_train_timesteps
    if config.class_name == "UnCLIPScheduler":
        return cosine_betas(n)  # UnCLIP only has the cosine schedule
    if config.trained_betas is not None:
        betas = torch.tensor(config.trained_betas, dtype=torch.float32)
    elif config.beta_schedule == "linear":
        betas = torch.linspace(config.beta_start, config.beta_end, n, dtype=torch.float32)
    elif config.beta_schedule == "scaled_linear":
        betas = torch.linspace(config.beta_start**0.5, config.beta_end**0.5, n, dtype=torch.float32) ** 2
    elif config.beta_schedule == "squaredcos_cap_v2":
        betas = cosine_betas(n)
    else:
        raise ValueError(f"beta_schedule {config.beta_schedule!r} is not supported")
    if config.rescale_betas_zero_snr:
        betas = rescale_zero_terminal_snr(betas)
    return betas

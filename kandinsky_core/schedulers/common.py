"""Shared parts of the discrete-time schedulers: ᾱ tables, timestep grids, x̂₀ handling, add_noise.

Tables stay fp32 on the CPU and are indexed with Python ints, so a step never syncs with the device;
0-dim fp32 coefficients combined with fp16/bf16 samples keep the arithmetic in the sample dtype,
exactly as diffusers does (parity target).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..configs.scheduler import SchedulerConfig
from .betas import make_betas

logger = logging.getLogger(__name__)


def spaced_timesteps(config: SchedulerConfig, num_inference_steps: int) -> np.ndarray:
    """diffusers' DDPM/DDIM timestep grid (descending int64) for leading / linspace / trailing spacing."""
    n, total = num_inference_steps, config.num_train_timesteps
    if config.timestep_spacing == "linspace":
        return np.linspace(0, total - 1, n).round()[::-1].copy().astype(np.int64)
    if config.timestep_spacing == "leading":
        ratio = total // n
        return (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64) + config.steps_offset
    if config.timestep_spacing == "trailing":
        return np.round(np.arange(total, 0, -total / n)).astype(np.int64) - 1
    raise ValueError(f"timestep_spacing {config.timestep_spacing!r} is not supported")


def timesteps_for_strength(timesteps: torch.Tensor, num_inference_steps: int, strength: float) -> torch.Tensor:
    """The tail of the schedule an img2img / emb2emb run denoises (diffusers' get_timesteps)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength (denoise) must be in [0, 1], got {strength}")
    init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
    start = max(num_inference_steps - init_timestep, 0)
    if init_timestep == 0 or start >= len(timesteps):
        raise ValueError(
            f"strength {strength} with {num_inference_steps} steps runs no denoising step "
            f"(int(steps * strength) = {init_timestep}); raise the steps or the strength"
        )
    return timesteps[start:]


def threshold_sample(sample: torch.Tensor, ratio: float, max_value: float | None) -> torch.Tensor:
    """Dynamic thresholding (Imagen): s = clamp(quantile(|x|, ratio), 1, max_value) per sample; x = clamp(x, ±s)/s."""
    dtype = sample.dtype
    shape = sample.shape
    if dtype not in (torch.float32, torch.float64):
        sample = sample.float()  # quantile needs fp32
    flat = sample.reshape(shape[0], -1)  # B, ... -> B, N
    s = torch.quantile(flat.abs(), ratio, dim=1)
    s = torch.clamp(s, min=1, max=max_value).unsqueeze(1)  # B, 1
    flat = torch.clamp(flat, -s, s) / s
    return flat.reshape(shape).to(dtype)


class DiscreteScheduler:
    """Base of DDPM / DDIM / UnCLIP: β, α, ᾱ tables (fp32, CPU), timesteps, x̂₀ prediction, add_noise."""

    order = 1
    init_noise_sigma = 1.0  # no input scaling: scale_model_input is the identity
    min_steps = 1

    def __init__(self, config: SchedulerConfig):
        self.config = config
        self.betas = make_betas(config)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.one = torch.tensor(1.0)
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(config.num_train_timesteps - 1, -1, -1, dtype=torch.int64)
        self._timestep_list: list[int] = self.timesteps.tolist()

    @property
    def learned_variance(self) -> bool:
        """True when `step` consumes a 2x-channel model output (ε and variance halves)."""
        return self.config.learned_variance

    def _grid(self, num_inference_steps: int) -> np.ndarray:
        return spaced_timesteps(self.config, num_inference_steps)

    def set_timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """Choose the inference timesteps (descending int64, CPU); also stored as `.timesteps`."""
        total = self.config.num_train_timesteps
        n = num_inference_steps
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not self.min_steps <= n <= total:
            raise ValueError(
                f"{self.config.class_name}: num_inference_steps must be an integer in "
                f"[{self.min_steps}, {total}], got {n!r}"
            )
        grid = self._grid(int(n))
        if grid.max() >= total:  # e.g. leading spacing with steps_offset 1 and n = total reaches t = total
            raise ValueError(
                f"{self.config.class_name}: {n} steps with steps_offset={self.config.steps_offset} reach timestep "
                f"{int(grid.max())}, beyond the {total}-step training schedule; use fewer steps (at most {n - 1})."
            )
        self.num_inference_steps = int(n)
        self.timesteps = torch.from_numpy(grid)
        self._timestep_list = grid.tolist()
        return self.timesteps

    def scale_model_input(self, sample: torch.Tensor, timestep: int | None = None) -> torch.Tensor:
        return sample

    def _split_output(
        self, model_output: torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Split a 2x-channel output into (ε-part, variance-part); the variance part is dropped (as the
        Kandinsky pipelines do) when this scheduler does not learn the variance."""
        channels = sample.shape[1]
        if model_output.ndim == sample.ndim and model_output.shape[1] == 2 * channels:
            eps, variance = torch.split(model_output, channels, dim=1)
            return eps, (variance if self.learned_variance else None)
        return model_output, None

    def _predict_original(
        self, model_output: torch.Tensor, sample: torch.Tensor, alpha_prod_t: torch.Tensor, beta_prod_t: torch.Tensor
    ) -> torch.Tensor:
        """x̂₀ from the model output per prediction_type."""
        kind = self.config.prediction_type
        if kind == "epsilon":
            return (sample - beta_prod_t ** (0.5) * model_output) / alpha_prod_t ** (0.5)
        if kind == "sample":
            return model_output
        if kind == "v_prediction":
            return (alpha_prod_t**0.5) * sample - (beta_prod_t**0.5) * model_output
        raise ValueError(f"prediction_type {kind!r} is not supported")

    def predict_original(self, model_output: torch.Tensor, sample: torch.Tensor, timestep: int) -> torch.Tensor:
        """x̂₀ at training timestep `timestep` (no clipping), e.g. for a host's preview."""
        alpha_prod_t = self.alphas_cumprod[int(timestep)]
        return self._predict_original(model_output, sample, alpha_prod_t, 1 - alpha_prod_t)

    def _limit_original(self, x0: torch.Tensor) -> torch.Tensor:
        """Dynamic thresholding, else clipping to ±clip_sample_range (thresholding wins, as in diffusers)."""
        cfg = self.config
        if cfg.thresholding:
            return threshold_sample(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
        if cfg.clip_sample:
            return x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        return x0

    def add_noise(
        self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | Sequence[int] | int
    ) -> torch.Tensor:
        """x_t = √ᾱ_t·x₀ + √(1-ᾱ_t)·ε with ᾱ cast to x₀'s dtype first (as diffusers), t per batch element."""
        alphas_cumprod = self.alphas_cumprod.to(device=original.device, dtype=original.dtype)
        timesteps = torch.as_tensor(timesteps, dtype=torch.int64).to(original.device)
        sqrt_alpha = (alphas_cumprod[timesteps] ** 0.5).flatten()
        sqrt_one_minus_alpha = ((1 - alphas_cumprod[timesteps]) ** 0.5).flatten()
        view = (-1,) + (1,) * (original.ndim - 1)  # B -> B, 1, ..., 1
        return sqrt_alpha.view(view) * original + sqrt_one_minus_alpha.view(view) * noise

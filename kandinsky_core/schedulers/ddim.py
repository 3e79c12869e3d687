"""DDIM (diffusers' DDIMScheduler): deterministic for eta = 0, ancestral noise for eta > 0."""
from __future__ import annotations

import torch

from ..configs.scheduler import SchedulerConfig
from .common import DiscreteScheduler
from .noise import randn


class DDIMScheduler(DiscreteScheduler):
    """DDIM step x_t -> x_t′ with t′ = t - T // N; ᾱ after the end is `final_alpha_cumprod`."""

    def __init__(self, config: SchedulerConfig, eta: float = 0.0):
        if config.class_name != "DDIMScheduler":
            raise ValueError(f"DDIMScheduler got a {config.class_name} config")
        if eta < 0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        super().__init__(config)
        self.eta = float(eta)
        self.final_alpha_cumprod = torch.tensor(1.0) if config.set_alpha_to_one else self.alphas_cumprod[0]

    def previous_timestep(self, timestep: int) -> int:
        """t - T // N (diffusers' rule, used for every spacing)."""
        if self.num_inference_steps is None:
            raise ValueError("DDIMScheduler: call set_timesteps before step")
        return timestep - self.config.num_train_timesteps // self.num_inference_steps

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        *,
        prev_timestep: int | None = None,
        generator: torch.Generator | None = None,
        eta: float | None = None,
    ) -> torch.Tensor:
        """One DDIM step; draws noise only when eta > 0 (then on every step, as diffusers)."""
        eta = self.eta if eta is None else float(eta)
        t = int(timestep)
        prev_t = self.previous_timestep(t) if prev_timestep is None else int(prev_timestep)
        model_output, _ = self._split_output(model_output, sample)

        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev

        kind = self.config.prediction_type
        x0 = self._predict_original(model_output, sample, alpha_prod_t, beta_prod_t)
        if kind == "epsilon":
            eps = model_output
        elif kind == "sample":
            eps = (sample - alpha_prod_t ** (0.5) * x0) / beta_prod_t ** (0.5)
        else:  # v_prediction
            eps = (alpha_prod_t**0.5) * model_output + (beta_prod_t**0.5) * sample
        x0 = self._limit_original(x0)

        variance = (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        std_dev_t = eta * variance ** (0.5)
        direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) * eps
        prev_sample = alpha_prod_t_prev ** (0.5) * x0 + direction
        if eta > 0:
            noise = randn(model_output.shape, generator, model_output.device, model_output.dtype)
            prev_sample = prev_sample + std_dev_t * noise
        return prev_sample

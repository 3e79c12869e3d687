"""DDPM ancestral sampling (diffusers' DDPMScheduler), incl. learned / learned-range variance."""
from __future__ import annotations

import torch

from ..configs.scheduler import SchedulerConfig
from .common import DiscreteScheduler
from .noise import randn


class DDPMScheduler(DiscreteScheduler):
    """DDPM posterior step x_t -> x_t′ with the variance rule of `config.variance_type`."""

    def __init__(self, config: SchedulerConfig):
        if config.class_name != "DDPMScheduler":
            raise ValueError(f"DDPMScheduler got a {config.class_name} config")
        super().__init__(config)

    def previous_timestep(self, timestep: int) -> int:
        """The entry after `timestep` in the inference schedule (-1 after the last); t-1 before set_timesteps."""
        if self.num_inference_steps is None:
            return timestep - 1
        try:
            index = self._timestep_list.index(timestep)
        except ValueError:
            raise ValueError(
                f"timestep {timestep} is not in the schedule set by set_timesteps; pass prev_timestep explicitly"
            ) from None
        return self._timestep_list[index + 1] if index + 1 < len(self._timestep_list) else -1

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        *,
        prev_timestep: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One DDPM step; draws noise (from `generator`, fp32 on its device) only when t > 0."""
        t = int(timestep)
        prev_t = self.previous_timestep(t) if prev_timestep is None else int(prev_timestep)
        model_output, predicted_variance = self._split_output(model_output, sample)

        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t

        x0 = self._limit_original(self._predict_original(model_output, sample, alpha_prod_t, beta_prod_t))
        x0_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
        sample_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
        prev_sample = x0_coeff * x0 + sample_coeff * sample
        if t > 0:
            noise = randn(model_output.shape, generator, model_output.device, model_output.dtype)
            std = self._noise_std(beta_prod_t, beta_prod_t_prev, current_beta_t, predicted_variance)
            prev_sample = prev_sample + std * noise
        return prev_sample

    def _noise_std(
        self,
        beta_prod_t: torch.Tensor,
        beta_prod_t_prev: torch.Tensor,
        current_beta_t: torch.Tensor,
        predicted_variance: torch.Tensor | None,
    ) -> torch.Tensor:
        """Standard deviation of the added noise, computed with diffusers' exact operations."""
        kind = self.config.variance_type
        # posterior variance β̃_t, clamped so its log stays finite (the clamp is done on the fp32 scalar)
        variance = torch.clamp(beta_prod_t_prev / beta_prod_t * current_beta_t, min=1e-20)
        if kind == "fixed_small":
            return variance**0.5
        if kind == "fixed_small_log":
            return torch.exp(0.5 * torch.log(variance))
        if kind in ("fixed_large", "fixed_large_log"):
            # fixed_large_log means log σ² = log β_t, i.e. the same std as fixed_large; diffusers returns
            # sqrt(log β) there (NaN), which we deliberately do not reproduce.
            return current_beta_t**0.5
        if predicted_variance is None:
            raise ValueError(
                f"variance_type {kind!r} needs a model output with 2x the sample's channels "
                "(ε and variance halves); pass the UNet's full output"
            )
        if kind == "learned":
            return predicted_variance**0.5
        # learned_range: interpolate log σ² between log β̃_t and log β_t with frac = (v + 1) / 2
        min_log = torch.log(variance)
        max_log = torch.log(current_beta_t)
        frac = (predicted_variance + 1) / 2
        return torch.exp(0.5 * (frac * max_log + (1 - frac) * min_log))

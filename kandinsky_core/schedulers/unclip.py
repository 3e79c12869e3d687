"""UnCLIP / Karlo DDPM variant used by the Kandinsky priors (diffusers' UnCLIPScheduler)."""
from __future__ import annotations

import numpy as np
import torch

from ..configs.scheduler import SchedulerConfig
from .common import DiscreteScheduler
from .noise import randn


class UnCLIPScheduler(DiscreteScheduler):
    """DDPM step with β recomputed for the skipped span t -> t′ (t′ passed by the caller, None -> t-1)."""

    min_steps = 2  # the spacing divides by N - 1

    def __init__(self, config: SchedulerConfig):
        if config.class_name != "UnCLIPScheduler":
            raise ValueError(f"UnCLIPScheduler got a {config.class_name} config")
        super().__init__(config)

    def _grid(self, num_inference_steps: int) -> np.ndarray:
        """t_k = round(k·(T-1)/(N-1)), reversed: both ends (T-1 and 0) are always visited."""
        ratio = (self.config.num_train_timesteps - 1) / (num_inference_steps - 1)
        return (np.arange(0, num_inference_steps) * ratio).round()[::-1].copy().astype(np.int64)

    def previous_timestep(self, timestep: int) -> int:
        """The pipeline's rule: the next entry of the schedule (-1 after the last)."""
        try:
            index = self._timestep_list.index(timestep)
        except ValueError:
            raise ValueError(f"timestep {timestep} is not in the schedule; pass prev_timestep explicitly") from None
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
        """One UnCLIP step to `prev_timestep` (None -> t-1 with the table β_t); noise only when t > 0."""
        t = int(timestep)
        prev_t = t - 1 if prev_timestep is None else int(prev_timestep)
        model_output, predicted_variance = self._split_output(model_output, sample)

        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        if prev_t == t - 1:
            beta, alpha = self.betas[t], self.alphas[t]
        else:
            beta = 1 - alpha_prod_t / alpha_prod_t_prev
            alpha = 1 - beta

        x0 = self._predict_original(model_output, sample, alpha_prod_t, beta_prod_t)
        if self.config.clip_sample:
            x0 = torch.clamp(x0, -self.config.clip_sample_range, self.config.clip_sample_range)
        x0_coeff = (alpha_prod_t_prev ** (0.5) * beta) / beta_prod_t
        sample_coeff = alpha ** (0.5) * beta_prod_t_prev / beta_prod_t
        prev_sample = x0_coeff * x0 + sample_coeff * sample
        if t > 0:
            noise = randn(model_output.shape, generator, model_output.device, model_output.dtype)
            variance = beta_prod_t_prev / beta_prod_t * beta
            if self.config.variance_type == "fixed_small_log":
                std = torch.exp(0.5 * torch.log(torch.clamp(variance, min=1e-20)))
            else:  # learned_range (diffusers does not clamp here)
                if predicted_variance is None:
                    raise ValueError(
                        "variance_type 'learned_range' needs a model output with 2x the sample's channels"
                    )
                frac = (predicted_variance + 1) / 2
                std = (0.5 * (frac * beta.log() + (1 - frac) * variance.log())).exp()
            prev_sample = prev_sample + std * noise
        return prev_sample

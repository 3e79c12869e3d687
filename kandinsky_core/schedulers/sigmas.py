"""σ view of a discrete-time (DDPM-trained) model, for the k-diffusion-style samplers.

A model trained on ᾱ_t (t = 0..T-1) is an ε-predictor in x_σ = x₀ + σ·ε with σ_t = √((1 - ᾱ_t) / ᾱ_t),
computed from the repo's own β table (2.x: linear 0.00085..0.012, K3: squaredcos_cap_v2). The inference
schedules reproduce what diffusers' σ schedulers compute from the same config, float for float:
EulerDiscrete / EulerAncestralDiscrete / HeunDiscrete (`discrete_schedule`) and DPMSolverMultistep
(`dpm_solver_schedule`), each optionally with Karras et al.'s (2022) ρ = 7 spacing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..configs.scheduler import SchedulerConfig
from .betas import make_betas

KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5


@dataclass(frozen=True)
class SigmaSchedule:
    """The σ grid a sampler walks, with what diffusers' scheduler of the same config feeds around it."""

    sigmas: torch.Tensor  # N + 1, fp32 CPU, descending, last entry 0
    timesteps: torch.Tensor  # N, fp32: the model timestep diffusers passes at each σ (fractional for Euler-Karras)
    init_noise_sigma: float  # std of the pure-noise start x = ε·init_noise_sigma (text-to-image)

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def timestep_at(self, sigma: torch.Tensor | float) -> float:
        """The model timestep of one of this schedule's σ (a σ not on the grid is an error)."""
        hits = (self.sigmas[:-1] == torch.as_tensor(sigma, dtype=torch.float32)).nonzero()
        if len(hits) == 0:
            raise ValueError(f"sigma {float(sigma)} is not on this schedule")
        return float(self.timesteps[hits[0, 0]])


def alphas_cumprod_for(config: SchedulerConfig) -> torch.Tensor:
    """ᾱ_t (T,) fp32, as diffusers' σ schedulers hold it (zero-SNR rescaling keeps ᾱ_T-1 at 2⁻²⁴, not 0)."""
    alphas_cumprod = torch.cumprod(1.0 - make_betas(config), dim=0)
    if config.rescale_betas_zero_snr:
        alphas_cumprod[-1] = 2**-24  # a finite first σ
    return alphas_cumprod


def sigmas_for(config: SchedulerConfig) -> torch.Tensor:
    """The training σ table (T,) fp32, ascending with t: σ_t = √((1 - ᾱ_t) / ᾱ_t) of the config's own β."""
    alphas_cumprod = alphas_cumprod_for(config)
    return ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5


def timestep_for(sigma: torch.Tensor | float, table: torch.Tensor) -> torch.Tensor:  # float64
    """Continuous timestep of σ: linear interpolation in log σ between the table's neighbours (diffusers'
    `_sigma_to_t`, ComfyUI's model_sampling), clipped to [0, T-1]. Rounding it gives the nearest table entry."""
    # log of the fp32 table in fp32 with numpy's rounding, as diffusers (torch's log differs by an ulp at places)
    log_table = torch.from_numpy(np.log(table.detach().float().cpu().numpy())).double()
    log_sigma = torch.as_tensor(sigma, dtype=torch.float64).clamp(min=1e-10).log()
    dists = log_sigma - log_table[:, None]  # T, S
    low = (dists >= 0).cumsum(dim=0).argmax(dim=0).clamp(max=len(table) - 2)
    high = low + 1
    w = ((log_table[low] - log_sigma) / (log_table[low] - log_table[high])).clamp(0, 1)
    return ((1 - w) * low + w * high).reshape(log_sigma.shape)  # float64: diffusers truncates some of these


def sigma_for(timestep: torch.Tensor | float, table: torch.Tensor) -> torch.Tensor:
    """σ at a (possibly fractional) timestep: linear interpolation of log σ (ComfyUI's model_sampling.sigma)."""
    t = torch.as_tensor(timestep, dtype=torch.float32).clamp(0, len(table) - 1)
    low = t.floor().long().clamp(max=len(table) - 2)
    w = t - low
    log_table = table.log()
    return ((1 - w) * log_table[low] + w * log_table[low + 1]).exp()


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = KARRAS_RHO) -> np.ndarray:
    """n σ from sigma_max down to sigma_min, uniform in σ^(1/ρ) (Karras et al. 2022, eq. 5), float64."""
    ramp = np.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def _table_np(config: SchedulerConfig) -> np.ndarray:
    return sigmas_for(config).numpy()  # fp32, as diffusers' np.array(((1 - ᾱ) / ᾱ) ** 0.5)


def _timestep_np(sigmas: np.ndarray, table: np.ndarray) -> np.ndarray:
    return timestep_for(torch.from_numpy(np.asarray(sigmas, dtype=np.float64)), torch.from_numpy(table)).numpy()


def _check_steps(config: SchedulerConfig, steps: int) -> None:
    total = config.num_train_timesteps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= total:
        raise ValueError(f"steps must be an integer from 1 to {total}, got {steps!r}.")


def _with_final_zero(sigmas: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))


def _fp32(timesteps: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(timesteps, dtype=np.float32))


def discrete_schedule(config: SchedulerConfig, steps: int, karras: bool = False) -> SigmaSchedule:
    """The σ grid of diffusers' EulerDiscrete / EulerAncestralDiscrete / HeunDiscrete `set_timesteps(steps)`
    for this config: timesteps by `timestep_spacing` (+ `steps_offset` for leading), σ interpolated at them
    (linear in σ), optionally re-spaced per Karras between the first and last of those σ. The pure-noise
    start is √(σ_max² + 1) for leading spacing and σ_max otherwise (as diffusers' init_noise_sigma)."""
    _check_steps(config, steps)
    total = config.num_train_timesteps
    if config.timestep_spacing == "linspace":
        timesteps = np.linspace(0, total - 1, steps, dtype=np.float32)[::-1].copy()
    elif config.timestep_spacing == "leading":
        ratio = total // steps
        timesteps = (np.arange(0, steps) * ratio).round()[::-1].copy().astype(np.float32) + config.steps_offset
    elif config.timestep_spacing == "trailing":
        timesteps = np.arange(total, 0, -total / steps).round().copy().astype(np.float32) - 1
    else:
        raise ValueError(f"timestep_spacing {config.timestep_spacing!r} is not supported")
    table = _table_np(config)
    sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
    if karras:
        sigmas = karras_sigmas(sigmas[-1].item(), sigmas[0].item(), steps)
        timesteps = _timestep_np(sigmas, table)
    sigmas = _with_final_zero(sigmas)
    sigma_max = sigmas.max()
    init = sigma_max if config.timestep_spacing in ("linspace", "trailing") else (sigma_max**2 + 1) ** 0.5
    return SigmaSchedule(sigmas, _fp32(timesteps), float(init))


def dpm_solver_schedule(config: SchedulerConfig, steps: int, karras: bool = False) -> SigmaSchedule:
    """The σ grid of diffusers' DPMSolverMultistepScheduler `set_timesteps(steps)` for this config (final σ 0):
    timesteps by `timestep_spacing` over steps + 1 points (the last dropped), σ interpolated at them; with
    Karras, σ re-spaced over the whole training table and the model timesteps rounded (except for
    squaredcos_cap_v2). diffusers' solver works in x / √(σ² + 1) and starts from the noise itself: √(σ_0² + 1)
    in x, this schedule's init_noise_sigma."""
    _check_steps(config, steps)
    total = config.num_train_timesteps
    if config.timestep_spacing == "linspace":
        timesteps = np.linspace(0, total - 1, steps + 1).round()[::-1][:-1].copy().astype(np.int64)
    elif config.timestep_spacing == "leading":
        ratio = total // (steps + 1)
        if ratio == 0:
            raise ValueError(f"{steps} steps is too many for a {total}-step model with leading spacing: use at "
                             f"most {total - 1}.")
        timesteps = (np.arange(0, steps + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64) + config.steps_offset
    elif config.timestep_spacing == "trailing":
        timesteps = np.arange(total, 0, -total / steps).round().copy().astype(np.int64) - 1
    else:
        raise ValueError(f"timestep_spacing {config.timestep_spacing!r} is not supported")
    table = _table_np(config)
    if karras:
        sigmas = karras_sigmas(float(table[0]), float(table[-1]), steps)
        timesteps = _timestep_np(sigmas, table)
        if config.beta_schedule != "squaredcos_cap_v2":
            timesteps = timesteps.round()
    else:
        sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
    sigmas = _with_final_zero(sigmas)
    timesteps = np.asarray(timesteps).astype(np.int64)  # diffusers casts (truncates the cosine ones)
    return SigmaSchedule(sigmas, _fp32(timesteps), float((sigmas[0] ** 2 + 1) ** 0.5))


def truncate(schedule: SigmaSchedule, strength: float) -> SigmaSchedule:
    """The tail an img2img run with `strength` (ComfyUI's denoise) walks: the last floor(N·strength) steps,
    starting from the clean latents noised to its first σ (diffusers' get_timesteps + add_noise)."""
    n = schedule.steps
    start = n - min(int(n * strength), n)
    if start >= n:
        raise ValueError(f"strength {strength} with {n} steps runs no denoising step; raise the steps or the strength")
    return SigmaSchedule(schedule.sigmas[start:], schedule.timesteps[start:], schedule.init_noise_sigma)

"""k-diffusion-style samplers: small pure functions over a σ schedule, all with one signature.

`sampler(denoiser, x, sigmas, generator, callback) -> x` walks x from σ = sigmas[0] to sigmas[-1] (0) in
x = x₀ + σ·ε space. `denoiser(x, σ)` returns the x₀ estimate (guidance, conditioning and the model's
parametrization live there, not here); `callback(i, denoised)` is called after step i (may be None);
noise is drawn in fp32 from `generator` (on its device, the CPU) like the rest of the pack.

The `*_vp` samplers walk the variance-preserving variable x / √(σ² + 1) = α·x₀ + σ_vp·ε instead (with
α = 1 / √(σ² + 1), σ_vp = σ·α), and their denoiser takes that variable too: the same algorithm as the
sampler without the suffix, in the variable and with the arithmetic of diffusers' DPMSolverMultistepScheduler
(the plain ones are k-diffusion's, as ComfyUI runs them). Each matches diffusers' scheduler of the same
algorithm given the same σ grid and generator.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .noise import randn

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Optional[Callable[[int, torch.Tensor], None]]


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return randn(x.shape, generator, x.device, x.dtype)


def _report(callback: Callback, i: int, denoised: torch.Tensor) -> None:
    if callback is not None:
        callback(i, denoised)


def euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
          callback: Callback = None) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn)."""
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i])
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
        _report(callback, i, denoised)
    return x


def euler_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                    generator: torch.Generator | None = None, callback: Callback = None) -> torch.Tensor:
    """Ancestral Euler: an Euler step down to σ_down, then fresh noise up to σ_{i+1} (k-diffusion euler_a)."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        d = (x - denoised) / sigma
        x = x + d * (sigma_down - sigma)
        if sigma_next > 0:
            x = x + _noise_like(x, generator) * sigma_up
        _report(callback, i, denoised)
    return x


def heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
         callback: Callback = None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1); the step to σ = 0 is an Euler step."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        d = (x - denoised) / sigma
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = (x_2 - denoiser(x_2, sigma_next)) / sigma_next
            x = x + (d + d_2) / 2 * dt
        _report(callback, i, denoised)
    return x


def dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
             callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M), multistep second order in λ = -log σ (Lu et al. 2022); first order at both ends."""
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = sigma.log() - sigma_next.log()
            if old_denoised is not None:
                r = h_last / h
                denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            else:
                denoised_d = denoised
            x = (sigma_next / sigma) * x - torch.expm1(-h) * denoised_d
            h_last = h
        old_denoised = denoised
        _report(callback, i, denoised)
    return x


def dpmpp_2m_sde(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                 generator: torch.Generator | None = None, callback: Callback = None) -> torch.Tensor:
    """SDE DPM-Solver++(2M), midpoint, η = 1 (Lu et al. 2022; diffusers' sde-dpmsolver++), Gaussian noise."""
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = sigma.log() - sigma_next.log()
            decay = -torch.expm1(-2 * h)  # 1 - e^(-2h)
            x = (sigma_next / sigma * torch.exp(-h)) * x + decay * denoised
            if old_denoised is not None:
                r = h_last / h
                x = x + 0.5 * decay * (1 / r) * (denoised - old_denoised)
            x = x + _noise_like(x, generator) * (sigma_next * decay.sqrt())
            h_last = h
        old_denoised = denoised
        _report(callback, i, denoised)
    return x


def vp_coefficients(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(α, σ_vp) of x_vp = α·x₀ + σ_vp·ε at σ, computed as diffusers' DPM-Solver computes them."""
    alpha = 1 / ((sigma**2 + 1) ** 0.5)
    return alpha, sigma * alpha


def _log_snr(sigma: torch.Tensor) -> torch.Tensor:
    """λ = log α - log σ_vp (= -log σ; +inf at σ = 0)."""
    alpha, sigma_vp = vp_coefficients(sigma)
    return torch.log(alpha) - torch.log(sigma_vp)


def _dpmpp_vp(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None,
              callback: Callback, sde: bool) -> torch.Tensor:
    """DPM-Solver++(2M) midpoint (ODE, or SDE with η = 1) in x_vp; first order at the first and last step."""
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = denoiser(x, sigmas[i])
        alpha_t, sigma_t = vp_coefficients(sigmas[i + 1])
        _, sigma_s = vp_coefficients(sigmas[i])
        h = _log_snr(sigmas[i + 1]) - _log_snr(sigmas[i])
        second_order = old_denoised is not None and sigmas[i + 1] > 0
        if second_order:
            r = (_log_snr(sigmas[i]) - _log_snr(sigmas[i - 1])) / h
            d1 = (1.0 / r) * (denoised - old_denoised)
        if sde:
            gain = alpha_t * (1 - torch.exp(-2.0 * h))
            x = (sigma_t / sigma_s * torch.exp(-h)) * x + gain * denoised
            if second_order:
                x = x + 0.5 * gain * d1
            x = x + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * _noise_like(x, generator)
        else:
            gain = alpha_t * (torch.exp(-h) - 1.0)
            x = (sigma_t / sigma_s) * x - gain * denoised
            if second_order:
                x = x - 0.5 * gain * d1
        old_denoised = denoised
        _report(callback, i, denoised)
    return x


def dpmpp_2m_vp(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None = None,
                callback: Callback = None) -> torch.Tensor:
    """DPM-Solver++(2M) in x / √(σ² + 1), as diffusers' DPMSolverMultistepScheduler (dpmsolver++, midpoint)."""
    return _dpmpp_vp(denoiser, x, sigmas, generator, callback, sde=False)


def dpmpp_2m_sde_vp(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                    generator: torch.Generator | None = None, callback: Callback = None) -> torch.Tensor:
    """SDE DPM-Solver++(2M) in x / √(σ² + 1), as diffusers' DPMSolverMultistepScheduler (sde-dpmsolver++)."""
    return _dpmpp_vp(denoiser, x, sigmas, generator, callback, sde=True)


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": euler,
    "euler_ancestral": euler_ancestral,
    "heun": heun,
    "dpmpp_2m": dpmpp_2m,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_2m_vp": dpmpp_2m_vp,
    "dpmpp_2m_sde_vp": dpmpp_2m_sde_vp,
}

"""Scheduler configuration read from a diffusers `scheduler_config.json`.

One dataclass covers the three classes the Kandinsky repos ship (DDPMScheduler, DDIMScheduler,
UnCLIPScheduler). Each class has its own defaults and its own set of accepted keys; keys a class does
not accept are ignored exactly as diffusers ignores them, and their fields hold the value that
reproduces that class's fixed behaviour (e.g. DDPM always uses ᾱ = 1 before the first step).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

SUPPORTED_CLASSES = ("DDPMScheduler", "DDIMScheduler", "UnCLIPScheduler")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
DDPM_VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")
UNCLIP_VARIANCE_TYPES = ("fixed_small_log", "learned_range")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
UNCLIP_PREDICTION_TYPES = ("epsilon", "sample")
TIMESTEP_SPACINGS = ("leading", "linspace", "trailing")
MAX_TRAIN_TIMESTEPS = 100_000  # every Kandinsky schedule has 1000; bounds the β tables' size

# diffusers' __init__ defaults per class (they differ: DDIM has set_alpha_to_one, UnCLIP has few keys).
_COMMON_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "clip_sample": True,
    "clip_sample_range": 1.0,
    "prediction_type": "epsilon",
    "thresholding": False,
    "dynamic_thresholding_ratio": 0.995,
    "sample_max_value": 1.0,
    "steps_offset": 0,
    "timestep_spacing": "leading",
    "rescale_betas_zero_snr": False,
}
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "DDPMScheduler": {**_COMMON_DEFAULTS, "variance_type": "fixed_small"},
    "DDIMScheduler": {**_COMMON_DEFAULTS, "set_alpha_to_one": True},
    "UnCLIPScheduler": {
        "num_train_timesteps": 1000,
        "variance_type": "fixed_small_log",
        "clip_sample": True,
        "clip_sample_range": 1.0,
        "prediction_type": "epsilon",
        "beta_schedule": "squaredcos_cap_v2",
    },
}
# Values that reproduce a class's fixed behaviour for options it does not have (keys it ignores).
_FIXED: dict[str, dict[str, Any]] = {
    "DDPMScheduler": {"set_alpha_to_one": True},  # DDPM uses ᾱ_prev = 1 after the last step
    "DDIMScheduler": {"variance_type": None},  # DDIM has no variance type (eta decides)
    "UnCLIPScheduler": {
        "beta_start": None,
        "beta_end": None,
        "trained_betas": None,
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "set_alpha_to_one": True,
        "steps_offset": 0,
        "timestep_spacing": None,  # UnCLIP has its own spacing: round(k * (T-1)/(N-1))
        "rescale_betas_zero_snr": False,
    },
}


def _fail(class_name: str, key: str, value: Any, supported: Any, fix: str = "") -> None:
    msg = f"{class_name} scheduler_config.json: {key}={value!r} is not supported; supported: {supported}."
    raise ValueError(msg + (f" {fix}" if fix else ""))


def _as_bool(class_name: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(class_name, key, value, "true or false")
    return value


def _as_float(class_name: str, key: str, value: Any, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(class_name, key, value, "a finite number" + (" or null" if allow_none else ""))
    return float(value)


def _positive(class_name: str, key: str, value: float | None) -> float | None:
    if value is not None and value <= 0:
        _fail(class_name, key, value, "a number > 0")
    return value


def _as_beta(class_name: str, key: str, value: Any) -> float:
    """A noise variance β: strictly between 0 and 1 (β >= 1 makes ᾱ zero or negative: NaN samples)."""
    beta = _as_float(class_name, key, value)
    if not 0.0 < beta < 1.0:
        _fail(class_name, key, value, "a number in (0, 1)", "Kandinsky schedules use 0.00085 to 0.012.")
    return beta


def _as_int(class_name: str, key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    too_big = maximum is not None and isinstance(value, int) and value > maximum
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or too_big:
        upper = f" and <= {maximum}" if maximum is not None else ""
        _fail(class_name, key, value, f"an integer >= {minimum}{upper}")
    return value


def _choice(class_name: str, key: str, value: Any, choices: tuple[str, ...], fix: str = "") -> str:
    if value not in choices:
        _fail(class_name, key, value, ", ".join(choices), fix)
    return value


@dataclass(frozen=True)
class SchedulerConfig:
    class_name: str  # "DDPMScheduler" | "DDIMScheduler" | "UnCLIPScheduler" (the json's _class_name)
    num_train_timesteps: int  # length of the training schedule (β table), 1000 for every Kandinsky model
    beta_start: float | None  # first β of linear / scaled_linear schedules (None: class has no such key)
    beta_end: float | None  # last β of linear / scaled_linear schedules
    beta_schedule: str  # linear | scaled_linear | squaredcos_cap_v2 (ignored when trained_betas is set)
    trained_betas: tuple[float, ...] | None  # explicit β table overriding beta_schedule
    variance_type: str | None  # DDPM/UnCLIP noise std rule; None for DDIM (eta controls its noise)
    clip_sample: bool  # clamp x̂₀ to ±clip_sample_range (skipped when thresholding is on)
    clip_sample_range: float  # bound of the x̂₀ clamp
    prediction_type: str  # what the model predicts: epsilon | sample | v_prediction
    thresholding: bool  # dynamic thresholding of x̂₀ (takes precedence over clip_sample)
    dynamic_thresholding_ratio: float  # quantile of |x̂₀| used as the threshold s
    sample_max_value: float | None  # upper clamp of s (None: no upper bound)
    set_alpha_to_one: bool  # ᾱ after the final step is 1 (else ᾱ₀); only DDIM can set it False
    steps_offset: int  # added to "leading" timesteps (1 for Kandinsky: 1000//N spacing ends at t=1)
    timestep_spacing: str | None  # leading | linspace | trailing (None: UnCLIP's own spacing)
    rescale_betas_zero_snr: bool  # rescale β so that the terminal SNR is zero (arXiv 2305.08891)

    @property
    def learned_variance(self) -> bool:
        """True when the model must output 2x channels (ε and a variance part) for this scheduler."""
        return self.variance_type in ("learned", "learned_range")

    @classmethod
    def from_dict(cls, d: dict, class_name: str | None = None) -> "SchedulerConfig":
        """Read a diffusers scheduler_config.json dict; `class_name` overrides its `_class_name`."""
        name = class_name if class_name is not None else d.get("_class_name")
        if name not in SUPPORTED_CLASSES:
            raise ValueError(
                f"scheduler_config.json: _class_name={name!r} is not supported; supported: "
                f"{', '.join(SUPPORTED_CLASSES)}. Use the scheduler folder shipped with the Kandinsky repo."
            )
        accepted = _CLASS_DEFAULTS[name]
        ignored = sorted(k for k in d if not k.startswith("_") and k not in accepted)
        if ignored:
            logger.debug("%s ignores config keys %s (as diffusers does)", name, ignored)
        v = {**accepted, **{k: d[k] for k in d if k in accepted}, **_FIXED[name]}

        v["num_train_timesteps"] = _as_int(name, "num_train_timesteps", v["num_train_timesteps"], 1,
                                           MAX_TRAIN_TIMESTEPS)
        for key in ("clip_sample", "thresholding", "set_alpha_to_one", "rescale_betas_zero_snr"):
            v[key] = _as_bool(name, key, v[key])
        for key in ("clip_sample_range", "dynamic_thresholding_ratio"):
            v[key] = _as_float(name, key, v[key])
        v["clip_sample_range"] = _positive(name, "clip_sample_range", v["clip_sample_range"])
        v["sample_max_value"] = _positive(name, "sample_max_value",
                                          _as_float(name, "sample_max_value", v["sample_max_value"], allow_none=True))
        if v["thresholding"] and not 0.0 <= v["dynamic_thresholding_ratio"] <= 1.0:
            _fail(name, "dynamic_thresholding_ratio", v["dynamic_thresholding_ratio"], "a quantile in [0, 1]")
        v["steps_offset"] = _as_int(name, "steps_offset", v["steps_offset"], 0, v["num_train_timesteps"] - 1)

        if name == "UnCLIPScheduler":
            _choice(name, "beta_schedule", v["beta_schedule"], ("squaredcos_cap_v2",))
            _choice(name, "variance_type", v["variance_type"], UNCLIP_VARIANCE_TYPES)
            _choice(name, "prediction_type", v["prediction_type"], UNCLIP_PREDICTION_TYPES)
        else:
            for key in ("beta_start", "beta_end"):
                v[key] = _as_float(name, key, v[key])
            if v["trained_betas"] is not None:
                betas = v["trained_betas"]
                if not isinstance(betas, (list, tuple)) or len(betas) != v["num_train_timesteps"]:
                    _fail(name, "trained_betas", "<table>", f"a list of num_train_timesteps="
                          f"{v['num_train_timesteps']} numbers")
                v["trained_betas"] = tuple(_as_beta(name, f"trained_betas[{i}]", b) for i, b in enumerate(betas))
            else:
                _choice(name, "beta_schedule", v["beta_schedule"], BETA_SCHEDULES)
                if v["beta_schedule"] != "squaredcos_cap_v2":  # the cosine schedule ignores beta_start / beta_end
                    for key in ("beta_start", "beta_end"):
                        _as_beta(name, key, v[key])
            if name == "DDPMScheduler":
                _choice(name, "variance_type", v["variance_type"], DDPM_VARIANCE_TYPES)
            _choice(name, "prediction_type", v["prediction_type"], PREDICTION_TYPES)
            _choice(name, "timestep_spacing", v["timestep_spacing"], TIMESTEP_SPACINGS)
        return cls(class_name=name, **v)


# Full-size presets (spec §3.1).
KANDINSKY_PRIOR_SCHEDULER = SchedulerConfig.from_dict({  # kandinsky-2-{1,2}-prior/scheduler
    "_class_name": "UnCLIPScheduler", "num_train_timesteps": 1000, "prediction_type": "sample",
    "variance_type": "fixed_small_log", "clip_sample": True, "clip_sample_range": 10.0,
})
KANDINSKY_2_1_DDIM_SCHEDULER = SchedulerConfig.from_dict({  # kandinsky-2-1{,-inpaint}/scheduler
    "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
    "beta_start": 0.00085, "beta_end": 0.012, "clip_sample": False, "set_alpha_to_one": False,
    "steps_offset": 1, "prediction_type": "epsilon", "thresholding": False, "timestep_spacing": "leading",
    "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0, "clip_sample_range": 1.0,
})
KANDINSKY_2_1_DDPM_SCHEDULER = SchedulerConfig.from_dict({  # kandinsky-2-1/ddpm_scheduler
    "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
    "beta_start": 0.00085, "beta_end": 0.012, "variance_type": "learned_range", "prediction_type": "epsilon",
    "clip_sample": True, "clip_sample_range": 2.0, "thresholding": True, "sample_max_value": None,
    "steps_offset": 1,
})
KANDINSKY_2_2_DDPM_SCHEDULER = SchedulerConfig.from_dict({  # kandinsky-2-2-decoder*/scheduler
    "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
    "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "epsilon", "clip_sample": False,
    "steps_offset": 1, "timestep_spacing": "leading", "variance_type": "fixed_small", "thresholding": False,
})
KANDINSKY_3_DDPM_SCHEDULER = SchedulerConfig.from_dict({  # kandinsky-3/scheduler
    "_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
    "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "epsilon", "clip_sample": True,
    "clip_sample_range": 1.0, "thresholding": False, "steps_offset": 1, "timestep_spacing": "leading",
    "variance_type": "fixed_small",
})

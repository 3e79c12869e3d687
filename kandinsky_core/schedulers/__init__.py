"""Native DDPM / DDIM / UnCLIP schedulers matching diffusers, plus the shared noise helper."""
from __future__ import annotations

from ..configs.scheduler import SchedulerConfig
from .common import DiscreteScheduler, threshold_sample, timesteps_for_strength
from .ddim import DDIMScheduler
from .ddpm import DDPMScheduler
from .noise import randn
from .unclip import UnCLIPScheduler

SCHEDULER_CLASSES: dict[str, type[DiscreteScheduler]] = {
    "DDPMScheduler": DDPMScheduler,
    "DDIMScheduler": DDIMScheduler,
    "UnCLIPScheduler": UnCLIPScheduler,
}


def scheduler_class_for(config: SchedulerConfig) -> type[DiscreteScheduler]:
    """The scheduler class named by `config.class_name`."""
    try:
        return SCHEDULER_CLASSES[config.class_name]
    except KeyError:
        raise ValueError(
            f"scheduler class {config.class_name!r} is not supported; supported: {', '.join(SCHEDULER_CLASSES)}"
        ) from None


def make_scheduler(config: SchedulerConfig | dict) -> DiscreteScheduler:
    """Build the scheduler for a SchedulerConfig or a raw scheduler_config.json dict."""
    if isinstance(config, dict):
        config = SchedulerConfig.from_dict(config)
    return scheduler_class_for(config)(config)


__all__ = [
    "DDIMScheduler",
    "DDPMScheduler",
    "DiscreteScheduler",
    "SCHEDULER_CLASSES",
    "SchedulerConfig",
    "UnCLIPScheduler",
    "make_scheduler",
    "randn",
    "scheduler_class_for",
    "threshold_sample",
    "timesteps_for_strength",
]

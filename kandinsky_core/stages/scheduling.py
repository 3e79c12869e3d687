"""Which scheduler config a decoder sampler name runs with."""
from __future__ import annotations

import dataclasses
import logging

from ..components import DecoderUNet
from ..configs.scheduler import SchedulerConfig

logger = logging.getLogger(__name__)

_CLASS_FOR_SAMPLER = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler"}


def scheduler_config_for(unet: DecoderUNet, sampler: str) -> SchedulerConfig:
    """The repo's own config of the sampler's class if it ships one (`scheduler/`, then `ddpm_scheduler/`,
    ...); otherwise one derived from the repo's `scheduler/` config with the same training schedule and
    spacing. A derived DDIM keeps alpha-bar_0 as the final alpha (set_alpha_to_one false), like the
    original Kandinsky DDIM sampler; a derived DDPM uses DDPM's defaults for the keys DDIM lacks."""
    wanted = _CLASS_FOR_SAMPLER[sampler]
    for config in unet.scheduler_configs.values():
        if config.class_name == wanted:
            return config
    base = unet.scheduler_configs["scheduler"]
    if wanted == "DDIMScheduler":
        return dataclasses.replace(base, class_name=wanted, variance_type=None, set_alpha_to_one=False)
    return dataclasses.replace(base, class_name=wanted, variance_type="fixed_small", set_alpha_to_one=True)

"""Which MoVQ previews a UNet's latents: the decoder loader pairs each UNet with the MoVQ of its repo.

The pairing is weak (it goes when either bundle goes); the latent -> RGB map itself is fitted from that
MoVQ by kandinsky_core.preview and cached per MoVQ module.
"""
from __future__ import annotations

import logging
import weakref

from ..kandinsky_core.components import DecoderUNet, MoVQModel
from ..kandinsky_core.preview import LatentRGB, latent_rgb_for

logger = logging.getLogger(__name__)

_movq_of: "weakref.WeakKeyDictionary[DecoderUNet, weakref.ref]" = weakref.WeakKeyDictionary()


def pair(unet: DecoderUNet, movq: MoVQModel) -> None:
    """Remember that `unet` and `movq` come from the same repo (called by the decoder loader)."""
    _movq_of[unet] = weakref.ref(movq)


def movq_for(unet: DecoderUNet) -> MoVQModel | None:
    ref = _movq_of.get(unet)
    return ref() if ref is not None else None


def latent_rgb(unet: DecoderUNet) -> LatentRGB | None:
    """The preview map for this UNet's latents, or None (no paired MoVQ, or the fit failed)."""
    movq = movq_for(unet)
    if movq is None:
        return None
    try:
        return latent_rgb_for(movq.movq)
    except RuntimeError as exc:  # e.g. out of memory: previews are optional, sampling goes on
        logger.warning("No latent previews for %s: fitting the MoVQ preview map failed (%s).", unet.name, exc)
        return None

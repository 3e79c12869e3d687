"""MoVQ autoencoder of Kandinsky 2.x / 3 (diffusers `VQModel` with norm_type="spatial").

Encoder: conv_in, levels of GroupNorm resnets (+ single-head attention on attention levels) with
pad-and-stride-2 downsamplers, a resnet/attention/resnet mid block, GroupNorm, SiLU, conv_out, then
`quant_conv`. Decoder: `post_quant_conv` maps the latent z to the decoder input while every norm is a
SpatialNorm conditioned on z itself. Attribute names mirror the diffusers state-dict keys.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..configs.movq import SPATIAL_NORM_GROUPS, MoVQConfig

logger = logging.getLogger(__name__)

NORM_EPS = 1e-6  # eps of every GroupNorm in the MoVQ


class SpatialNorm(nn.Module):
    """GroupNorm(32, 1e-6)(f) * conv_y(zq) + conv_b(zq), zq resized (nearest) to f's size."""

    def __init__(self, channels: int, zq_channels: int):
        super().__init__()
        self.norm_layer = nn.GroupNorm(SPATIAL_NORM_GROUPS, channels, eps=NORM_EPS, affine=True)
        self.conv_y = nn.Conv2d(zq_channels, channels, kernel_size=1)
        self.conv_b = nn.Conv2d(zq_channels, channels, kernel_size=1)

    def forward(self, f: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        zq = F.interpolate(zq, size=f.shape[-2:], mode="nearest")
        if torch.is_grad_enabled():
            return self.norm_layer(f) * self.conv_y(zq) + self.conv_b(zq)
        # inference: scale and shift the norm's fresh output in place (one full-size temporary at a time)
        return self.norm_layer(f).mul_(self.conv_y(zq)).add_(self.conv_b(zq))


def _norm(channels: int, groups: int, zq_channels: int | None) -> nn.Module:
    """GroupNorm for the encoder (zq_channels None), SpatialNorm for the decoder."""
    if zq_channels is None:
        return nn.GroupNorm(groups, channels, eps=NORM_EPS, affine=True)
    return SpatialNorm(channels, zq_channels)


def _apply_norm(norm: nn.Module, x: torch.Tensor, zq: torch.Tensor | None) -> torch.Tensor:
    return norm(x, zq) if isinstance(norm, SpatialNorm) else norm(x)


class ResnetBlock(nn.Module):
    """norm1 -> SiLU -> conv3x3 -> norm2 -> SiLU -> conv3x3, plus a 1x1 shortcut when channels change."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, zq_channels: int | None):
        super().__init__()
        self.norm1 = _norm(in_channels, groups, zq_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = _norm(out_channels, groups, zq_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        shortcut = in_channels != out_channels
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if shortcut else None

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()  # inference: the activation overwrites the fresh norm output
        h = self.conv1(F.silu(_apply_norm(self.norm1, x, zq), inplace=inplace))
        h = self.conv2(F.silu(_apply_norm(self.norm2, h, zq), inplace=inplace))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions, with a norm in front and a residual."""

    def __init__(self, channels: int, groups: int, zq_channels: int | None):
        super().__init__()
        # diffusers names the encoder norm `group_norm` and the decoder norm `spatial_norm`
        self.group_norm = nn.GroupNorm(groups, channels, eps=NORM_EPS, affine=True) if zq_channels is None else None
        self.spatial_norm = SpatialNorm(channels, zq_channels) if zq_channels is not None else None
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.spatial_norm is not None:
            y = self.spatial_norm(x, zq)
        else:
            y = self.group_norm(x)
        y = y.view(b, c, h * w).transpose(1, 2)  # B, C, H, W -> B, HW, C
        q, k, v = (proj(y).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))  # B, 1, HW, C
        y = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # B, HW, C
        y = self.to_out[0](y)
        y = y.transpose(1, 2).reshape(b, c, h, w)  # B, HW, C -> B, C, H, W
        return y + x


class Downsample(nn.Module):
    """Zero-pad right/bottom by one, then conv3x3 stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2, then conv3x3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One encoder ("down") or decoder ("up") level: resnets, each followed by attention if any, then resampling."""

    def __init__(
        self,
        kind: str,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        attention: bool,
        resample: bool,
        groups: int,
        zq_channels: int | None,
    ):
        super().__init__()
        ins = [in_channels] + [out_channels] * (num_layers - 1)
        self.resnets = nn.ModuleList(ResnetBlock(i, out_channels, groups, zq_channels) for i in ins)
        self.attentions = (
            nn.ModuleList(AttentionBlock(out_channels, groups, zq_channels) for _ in ins) if attention else None
        )
        resampler = nn.ModuleList([(Downsample if kind == "down" else Upsample)(out_channels)]) if resample else None
        # diffusers keys: down_blocks.{i}.downsamplers.0.conv / up_blocks.{i}.upsamplers.0.conv
        self.downsamplers = resampler if kind == "down" else None
        self.upsamplers = resampler if kind == "up" else None

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, zq)
            if self.attentions is not None:
                x = self.attentions[i](x, zq)
        for resampler in (self.downsamplers, self.upsamplers):
            if resampler is not None:
                x = resampler[0](x)
        return x


class MidBlock(nn.Module):
    """resnet -> (single-head attention) -> resnet at the lowest resolution."""

    def __init__(self, channels: int, groups: int, zq_channels: int | None, add_attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(channels, channels, groups, zq_channels) for _ in range(2))
        attentions = [AttentionBlock(channels, groups, zq_channels)] if add_attention else []
        self.attentions = nn.ModuleList(attentions)

    def forward(self, x: torch.Tensor, zq: torch.Tensor | None = None) -> torch.Tensor:
        x = self.resnets[0](x, zq)
        for attn in self.attentions:
            x = attn(x, zq)
        return self.resnets[1](x, zq)


class Encoder(nn.Module):
    def __init__(self, cfg: MoVQConfig):
        super().__init__()
        ch, groups, n = cfg.block_out_channels, cfg.norm_num_groups, len(cfg.block_out_channels)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(
            Level(
                "down",
                ch[max(i - 1, 0)],
                ch[i],
                cfg.layers_per_block,
                attention=block_type == "AttnDownEncoderBlock2D",
                resample=i < n - 1,
                groups=groups,
                zq_channels=None,
            )
            for i, block_type in enumerate(cfg.down_block_types)
        )
        self.mid_block = MidBlock(ch[-1], groups, None, cfg.mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(groups, ch[-1], eps=NORM_EPS, affine=True)
        self.conv_out = nn.Conv2d(ch[-1], cfg.latent_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: MoVQConfig):
        super().__init__()
        ch, groups, n = cfg.block_out_channels[::-1], cfg.norm_num_groups, len(cfg.block_out_channels)
        zq = cfg.latent_channels
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], kernel_size=3, padding=1)
        self.mid_block = MidBlock(ch[0], groups, zq, cfg.mid_block_add_attention)
        self.up_blocks = nn.ModuleList(
            Level(
                "up",
                ch[max(i - 1, 0)],
                ch[i],
                cfg.layers_per_block + 1,
                attention=block_type == "AttnUpDecoderBlock2D",
                resample=i < n - 1,
                groups=groups,
                zq_channels=zq,
            )
            for i, block_type in enumerate(cfg.up_block_types)
        )
        self.conv_norm_out = SpatialNorm(ch[-1], zq)
        self.conv_out = nn.Conv2d(ch[-1], cfg.out_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        x = self.mid_block(x, zq)
        for block in self.up_blocks:
            x = block(x, zq)
        return self.conv_out(F.silu(self.conv_norm_out(x, zq)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantizer (Euclidean distance, as diffusers' VectorQuantizer)."""

    def __init__(self, num_embeddings: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(b * h * w, c)  # B, C, H, W -> BHW, C
        codebook = self.embedding.weight
        indices = torch.cdist(flat, codebook.to(flat.dtype)).argmin(dim=1)  # BHW
        zq = codebook[indices].to(z.dtype)  # BHW, C
        zq = flat + (zq - flat)  # diffusers' straight-through form; rounds like its output
        return zq.view(b, h, w, c).permute(0, 3, 1, 2).contiguous()  # BHW, C -> B, C, H, W


class MoVQ(nn.Module):
    """Kandinsky MoVQ autoencoder; latents are unscaled (the config's scaling_factor is never applied)."""

    def __init__(self, config: MoVQConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(config.latent_channels, config.vq_embed_dim, kernel_size=1)
        if config.has_quantizer:
            self.quantize = VectorQuantizer(config.num_vq_embeddings, config.vq_embed_dim)
        else:
            self.quantize = None
        self.post_quant_conv = nn.Conv2d(config.vq_embed_dim, config.latent_channels, kernel_size=1)
        self.decoder = Decoder(config)

    @property
    def scale_factor(self) -> int:
        """Pixels per latent cell along each side (8 for the real MoVQ)."""
        return self.config.scale_factor

    @property
    def dtype(self) -> torch.dtype:
        return self.post_quant_conv.weight.dtype

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, 3, H, W) in [-1, 1] -> latent (B, 4, H/s, W/s), not quantized; in the weights' dtype."""
        x = x.to(self.encoder.conv_in.weight.dtype)
        return self.quant_conv(self.encoder(x))

    def quantize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Replace every latent vector by its nearest codebook entry."""
        if self.quantize is None:
            raise RuntimeError(
                "This MoVQ was built without a quantizer (has_quantizer=False, e.g. a Kandinsky 3 movq whose "
                "weights lack quantize.embedding.weight); decode with force_not_quantize=True instead."
            )
        return self.quantize(z.to(self.quantize.embedding.weight.dtype))

    def decode(self, z: torch.Tensor, force_not_quantize: bool = True) -> torch.Tensor:
        """Latent (B, 4, h, w) -> image (B, 3, h*s, w*s), nominally [-1, 1], unclamped; in the weights' dtype.

        All Kandinsky pipelines decode with force_not_quantize=True (the latent is used as-is); False first
        snaps z to the nearest codebook entries, as diffusers' VQModel.decode does.
        """
        z = z.to(self.dtype)
        if not force_not_quantize:
            z = self.quantize_latents(z).to(self.dtype)
        return self.decoder(self.post_quant_conv(z), z)


def rename_legacy_attention_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map pre-0.15 diffusers attention names (query/key/value/proj_attn) to to_q/to_k/to_v/to_out.0.

    diffusers does this on load for old single-file MoVQ checkpoints; returns a new dict.
    """
    renames = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
    out = {}
    for key, tensor in state_dict.items():
        if ".attentions." in key:
            for old, new in renames.items():
                if old in key:
                    key = key.replace(old, new)
                    break
        out[key] = tensor
    return out

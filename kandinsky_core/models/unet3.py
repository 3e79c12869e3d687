"""Kandinsky 3 UNet (diffusers `Kandinsky3UNet`, spec §1.8).

Module attribute names mirror the diffusers state-dict keys, so a diffusers checkpoint loads with
`load_state_dict(strict=True)`; parameter-free slots (`nn.Identity`) keep the list indices aligned
(e.g. `attentions.0` is the self-attention slot of every level, empty on level 0). Numerics follow
diffusers: conditional GroupNorms, bottleneck ResNets, SDPA attention with an additive -10000 text mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs.unet3 import UNet3Config
from .layers import broadcast_timesteps, timestep_embedding

EXPANSION_RATIO = 4  # attention feed-forward width = 4 x channels (hard-coded in diffusers)
COMPRESSION_RATIO = 2  # ResNet bottleneck width = max(in, out) / 2
MASK_FILL = -10000.0  # additive bias at masked text positions (diffusers)


# Self- and cross-attention per down level, hard-coded in diffusers; the up levels read the REVERSED
# tuple by their own index, so with fewer than 4 levels (the tiny test UNet) every up level attends.
ATTENTION_LEVELS = (False, True, True, True)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class EncoderProjection(nn.Module):
    """Text encoder states -> UNet context: Linear (no bias) then LayerNorm."""

    def __init__(self, encoder_hid_dim: int, cross_attention_dim: int):
        super().__init__()
        self.projection_linear = nn.Linear(encoder_hid_dim, cross_attention_dim, bias=False)
        self.projection_norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_norm(self.projection_linear(x))


class Attention(nn.Module):
    """Multi-head attention without biases; heads = out_dim / head_dim; scale 1/sqrt(head_dim)."""

    def __init__(self, query_dim: int, context_dim: int, out_dim: int, head_dim: int):
        super().__init__()
        self.heads = out_dim // head_dim
        self.to_q = nn.Linear(query_dim, out_dim, bias=False)
        self.to_k = nn.Linear(context_dim, out_dim, bias=False)
        self.to_v = nn.Linear(context_dim, out_dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(out_dim, out_dim, bias=False)])

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        return t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # B, N, C -> B, heads, N, d

    def forward(self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, query_dim); context: (B, L, context_dim); bias: (B, 1, 1, L) additive or None."""
        q = self._split_heads(self.to_q(x))
        k = self._split_heads(self.to_k(context))
        v = self._split_heads(self.to_v(context))
        if bias is not None:
            bias = bias.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # B, heads, N, d
        b, _, n, _ = out.shape
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, -1))  # B, heads, N, d -> B, N, C


class AttentionPooling(nn.Module):
    """Adds attention-pooled text (query = mean of all context tokens) to the time embedding."""

    def __init__(self, time_dim: int, context_dim: int, head_dim: int):
        super().__init__()
        self.attention = Attention(context_dim, context_dim, time_dim, head_dim)

    def forward(self, time_embed: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        pooled = self.attention(context.mean(dim=1, keepdim=True), context, bias)  # B, 1, T
        return time_embed + pooled.squeeze(1)


class ConditionalGroupNorm(nn.Module):
    """GroupNorm without affine, then x (1 + scale) + shift from the time embedding."""

    def __init__(self, groups: int, channels: int, time_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, affine=False)
        self.context_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * channels))

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor) -> torch.Tensor:
        scale, shift = self.context_mlp(time_embed)[:, :, None, None].chunk(2, dim=1)  # 2 x (B, C, 1, 1)
        return self.norm(x) * (scale + 1.0) + shift


class Block(nn.Module):
    """Conditional norm -> SiLU -> [2x transposed-conv up] -> conv -> [2x strided-conv down]."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, kernel_size: int, groups: int,
                 resample: bool | None = None):
        super().__init__()
        self.group_norm = ConditionalGroupNorm(groups, in_ch, time_dim)
        self.up_sample = nn.ConvTranspose2d(in_ch, in_ch, 2, stride=2) if resample is True else nn.Identity()
        self.projection = nn.Conv2d(in_ch, out_ch, kernel_size, padding=int(kernel_size > 1))
        self.down_sample = nn.Conv2d(out_ch, out_ch, 2, stride=2) if resample is False else nn.Identity()

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.group_norm(x, time_embed))
        return self.down_sample(self.projection(self.up_sample(x)))


class ResNetBlock(nn.Module):
    """Bottleneck ResNet (kernels 1, 3, 3, 1). `resample`: True = upsample in sub-block 1, False =
    downsample in sub-block 2, None = neither; the shortcut resamples likewise."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, groups: int, resample: bool | None = None):
        super().__init__()
        hidden = max(in_ch, out_ch) // COMPRESSION_RATIO
        widths = [(in_ch, hidden), (hidden, hidden), (hidden, hidden), (hidden, out_ch)]
        resamples = [None, True if resample is True else None, False if resample is False else None, None]
        self.resnet_blocks = nn.ModuleList(
            [Block(i, o, time_dim, k, groups, r) for (i, o), k, r in zip(widths, (1, 3, 3, 1), resamples)]
        )
        self.shortcut_up_sample = nn.ConvTranspose2d(in_ch, in_ch, 2, stride=2) if resample is True else nn.Identity()
        self.shortcut_projection = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.shortcut_down_sample = nn.Conv2d(out_ch, out_ch, 2, stride=2) if resample is False else nn.Identity()

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor) -> torch.Tensor:
        out = x
        for block in self.resnet_blocks:
            out = block(out, time_embed)
        return self.shortcut_down_sample(self.shortcut_projection(self.shortcut_up_sample(x))) + out


class AttentionBlock(nn.Module):
    """x + Attn(norm(x), context) then x + FFN(norm(x)); self-attention when context_dim is None."""

    def __init__(self, channels: int, time_dim: int, context_dim: int | None, groups: int, head_dim: int):
        super().__init__()
        self.in_norm = ConditionalGroupNorm(groups, channels, time_dim)
        self.attention = Attention(channels, context_dim or channels, channels, head_dim)
        self.out_norm = ConditionalGroupNorm(groups, channels, time_dim)
        hidden = EXPANSION_RATIO * channels
        self.feed_forward = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.SiLU(), nn.Conv2d(hidden, channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.in_norm(x, time_embed).reshape(b, c, h * w).transpose(1, 2)  # B, C, H, W -> B, HW, C
        out = self.attention(tokens, tokens if context is None else context, bias)
        x = x + out.transpose(1, 2).reshape(b, c, h, w)  # B, HW, C -> B, C, H, W
        return x + self.feed_forward(self.out_norm(x, time_embed))


class DownBlock(nn.Module):
    """[self-attention] then `n` x (ResNet, [cross-attention], ResNet); the last ResNet may downsample."""

    def __init__(self, cfg: UNet3Config, in_ch: int, out_ch: int, attention: bool, downsample: bool):
        super().__init__()
        t, g, n = cfg.time_embedding_dim, cfg.groups, cfg.layers_per_block
        ctx = cfg.cross_attention_dim
        self.attention = attention
        self.attentions = nn.ModuleList(
            [AttentionBlock(in_ch, t, None, g, cfg.attention_head_dim) if attention else nn.Identity()]
            + [AttentionBlock(out_ch, t, ctx, g, cfg.attention_head_dim) if attention else nn.Identity()
               for _ in range(n)]
        )
        self.resnets_in = nn.ModuleList([ResNetBlock(in_ch if i == 0 else out_ch, out_ch, t, g) for i in range(n)])
        self.resnets_out = nn.ModuleList(
            [ResNetBlock(out_ch, out_ch, t, g, False if downsample and i == n - 1 else None) for i in range(n)]
        )

    def forward(self, x, time_embed, context, bias):
        if self.attention:
            x = self.attentions[0](x, time_embed)
        for attention, resnet_in, resnet_out in zip(self.attentions[1:], self.resnets_in, self.resnets_out):
            x = resnet_in(x, time_embed)
            if self.attention:
                x = attention(x, time_embed, context, bias)
            x = resnet_out(x, time_embed)
        return x


class UpBlock(nn.Module):
    """`n` x (ResNet, [cross-attention], ResNet) then [self-attention]; the first ResNet may upsample.

    in_ch + skip_ch channels come in (the skip is concatenated before the block), out_ch go out."""

    def __init__(self, cfg: UNet3Config, in_ch: int, skip_ch: int, out_ch: int, attention: bool, upsample: bool):
        super().__init__()
        t, g, n = cfg.time_embedding_dim, cfg.groups, cfg.layers_per_block
        ctx = cfg.cross_attention_dim
        # (ResNet-in width, ResNet-out width) per triple; diffusers' list, cut to n entries as its zip does
        widths = ([(in_ch + skip_ch, in_ch)] + [(in_ch, in_ch)] * (n - 2) + [(in_ch, out_ch)])[:n]
        self.attention = attention
        self.attentions = nn.ModuleList(
            [AttentionBlock(out_ch, t, None, g, cfg.attention_head_dim) if attention else nn.Identity()]
            + [AttentionBlock(w_in, t, ctx, g, cfg.attention_head_dim) if attention else nn.Identity()
               for w_in, _ in widths]
        )
        self.resnets_in = nn.ModuleList(
            [ResNetBlock(w_in, w_in, t, g, True if upsample and i == 0 else None) for i, (w_in, _) in enumerate(widths)]
        )
        self.resnets_out = nn.ModuleList([ResNetBlock(w_in, w_out, t, g) for w_in, w_out in widths])

    def forward(self, x, time_embed, context, bias):
        for attention, resnet_in, resnet_out in zip(self.attentions[1:], self.resnets_in, self.resnets_out):
            x = resnet_in(x, time_embed)
            if self.attention:
                x = attention(x, time_embed, context, bias)
            x = resnet_out(x, time_embed)
        if self.attention:
            x = self.attentions[0](x, time_embed)
        return x


class Kandinsky3UNet(nn.Module):
    """Predicts eps (B, out_channels, h, w) from a noisy latent, a timestep and masked text states."""

    def __init__(self, cfg: UNet3Config):
        super().__init__()
        self.config = cfg
        c0, t = cfg.init_channels, cfg.time_embedding_dim
        self.time_embedding = TimestepEmbedding(c0, t)
        self.add_time_condition = AttentionPooling(t, cfg.cross_attention_dim, cfg.attention_head_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)
        self.encoder_hid_proj = EncoderProjection(cfg.encoder_hid_dim, cfg.cross_attention_dim)
        widths = (c0,) + cfg.block_out_channels
        n_levels = len(cfg.block_out_channels)
        self.down_blocks = nn.ModuleList(
            [DownBlock(cfg, widths[i], widths[i + 1], ATTENTION_LEVELS[i], i < n_levels - 1) for i in range(n_levels)]
        )
        self.up_blocks = nn.ModuleList()
        for k in range(n_levels):  # mirror order: level = n_levels - 1 - k
            level = n_levels - 1 - k
            skip = widths[level + 1] if k > 0 else 0  # the down level's output, concatenated before the block
            self.up_blocks.append(
                UpBlock(cfg, widths[level + 1], skip, widths[level], ATTENTION_LEVELS[::-1][k], upsample=k > 0)
            )
        self.conv_norm_out = nn.GroupNorm(cfg.groups, c0)
        self.conv_out = nn.Conv2d(c0, cfg.output_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor | None = None, project_context: bool = True) -> torch.Tensor:
        """sample (B, C, h, w); timestep int/float/0-d/(B,); encoder_hidden_states (B, L, D) text states;
        encoder_attention_mask (B, L) bool or 0/1 (None = attend everywhere). Returns eps (B, out, h, w)."""
        bias = None
        if encoder_attention_mask is not None:
            bias = (1 - encoder_attention_mask.to(sample.dtype)) * MASK_FILL
            bias = bias[:, None, None, :]  # B, L -> B, 1, 1, L (broadcast over heads and queries)
        t = broadcast_timesteps(timestep, sample.shape[0], sample.device)
        time_embed = self.time_embedding(timestep_embedding(t, self.config.init_channels, False, 1).to(sample.dtype))
        # project_context=False: the states are already UNet context (the original K3 sampler projects first)
        context = self.encoder_hid_proj(encoder_hidden_states) if project_context else encoder_hidden_states
        time_embed = self.add_time_condition(time_embed, context, bias)

        skips = []
        x = self.conv_in(sample)
        for level, block in enumerate(self.down_blocks):
            x = block(x, time_embed, context, bias)
            if level < len(self.down_blocks) - 1:
                skips.append(x)
        for level, block in enumerate(self.up_blocks):
            if level > 0:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x, time_embed, context, bias)
        return self.conv_out(F.silu(self.conv_norm_out(x)))

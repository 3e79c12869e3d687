"""Kandinsky 2.1 / 2.2 decoder UNet: the `UNet2DConditionModel` subset those checkpoints use.

Module attribute names mirror the diffusers state-dict keys, so a diffusers checkpoint loads with
`load_state_dict(strict=True)`. Numerics follow diffusers (spec §1.9): scale-shift ResNets, added-KV
attention with the context keys/values first, SDPA.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs.unet import HINT_CHANNELS, IMAGE_TOKENS_21, IMAGE_TOKENS_22, UNetConfig
from .layers import broadcast_timesteps, timestep_embedding

ATTN_NORM_EPS = 1e-5  # diffusers' Attention GroupNorm eps (independent of config.norm_eps)


class ResnetBlock2D(nn.Module):
    """Pre-norm ResNet with scale-shift time conditioning; `down` avg-pools, `up` nearest-upsamples by 2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        groups: int,
        eps: float,
        output_scale_factor: float = 1.0,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        self.up, self.down, self.output_scale_factor = up, down, output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """x: (B, Cin, H, W); temb: (B, T), already passed through SiLU (unless skip_time_act)."""
        h = F.silu(self.norm1(x))
        h, x = self._resample(h), self._resample(x)
        h = self.conv1(h)
        scale, shift = self.time_emb_proj(temb)[:, :, None, None].chunk(2, dim=1)  # 2 x (B, Cout, 1, 1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        out = x + h
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return out


class AddedKVAttention(nn.Module):
    """Self-attention over group-normed spatial tokens, with projected context tokens prepended to K/V."""

    def __init__(self, channels: int, head_dim: int, context_dim: int, groups: int):
        super().__init__()
        self.heads = channels // head_dim
        self.group_norm = nn.GroupNorm(groups, channels, eps=ATTN_NORM_EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.add_k_proj = nn.Linear(context_dim, channels)
        self.add_v_proj = nn.Linear(context_dim, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        return t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # B, N, C -> B, heads, N, d

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) feature map; context: (B, L, context_dim). Returns (B, C, H, W)."""
        b, c, hgt, wid = x.shape
        tokens = self.group_norm(x.reshape(b, c, hgt * wid)).transpose(1, 2)  # B, C, HW -> B, HW, C
        q = self._split_heads(self.to_q(tokens))
        k = torch.cat([self._split_heads(self.add_k_proj(context)), self._split_heads(self.to_k(tokens))], dim=2)
        v = torch.cat([self._split_heads(self.add_v_proj(context)), self._split_heads(self.to_v(tokens))], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)  # B, heads, HW, d
        out = self.to_out[0](out.transpose(1, 2).reshape(b, hgt * wid, c))  # B, heads, HW, d -> B, HW, C
        return out.transpose(1, 2).reshape(b, c, hgt, wid) + x  # B, HW, C -> B, C, H, W


class DownBlock(nn.Module):
    """ResnetDownsampleBlock2D (no attention) or SimpleCrossAttnDownBlock2D; every layer output is a skip."""

    def __init__(self, cfg: UNetConfig, in_ch: int, out_ch: int, attention: bool, add_downsample: bool):
        super().__init__()
        res = dict(temb_channels=cfg.time_embed_dim, groups=cfg.norm_num_groups, eps=cfg.norm_eps,
                   output_scale_factor=cfg.resnet_out_scale_factor)
        n = cfg.layers_per_block
        self.resnets = nn.ModuleList([ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, **res) for i in range(n)])
        self.attentions = None
        if attention:
            self.attentions = nn.ModuleList(
                [AddedKVAttention(out_ch, cfg.attention_head_dim, cfg.cross_attention_dim, cfg.norm_num_groups)
                 for _ in range(n)]
            )
        self.downsamplers = nn.ModuleList([ResnetBlock2D(out_ch, out_ch, down=True, **res)]) if add_downsample else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, list]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x, temb)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """UNetMidBlock2DSimpleCrossAttn: ResNet, attention, ResNet."""

    def __init__(self, cfg: UNetConfig, ch: int):
        super().__init__()
        res = dict(temb_channels=cfg.time_embed_dim, groups=cfg.norm_num_groups, eps=cfg.norm_eps,
                   output_scale_factor=cfg.mid_block_scale_factor)
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, **res), ResnetBlock2D(ch, ch, **res)])
        self.attentions = nn.ModuleList(
            [AddedKVAttention(ch, cfg.attention_head_dim, cfg.cross_attention_dim, cfg.norm_num_groups)]
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)


class UpBlock(nn.Module):
    """SimpleCrossAttnUpBlock2D or ResnetUpsampleBlock2D: each ResNet eats one skip (last in, first out)."""

    def __init__(self, cfg: UNetConfig, prev_ch: int, out_ch: int, skip_in_ch: int, attention: bool,
                 add_upsample: bool):
        super().__init__()
        res = dict(temb_channels=cfg.time_embed_dim, groups=cfg.norm_num_groups, eps=cfg.norm_eps,
                   output_scale_factor=cfg.resnet_out_scale_factor)
        n = cfg.layers_per_block + 1
        resnets = []
        for i in range(n):
            running = prev_ch if i == 0 else out_ch
            skip = skip_in_ch if i == n - 1 else out_ch
            resnets.append(ResnetBlock2D(running + skip, out_ch, **res))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = None
        if attention:
            self.attentions = nn.ModuleList(
                [AddedKVAttention(out_ch, cfg.attention_head_dim, cfg.cross_attention_dim, cfg.norm_num_groups)
                 for _ in range(n)]
            )
        self.upsamplers = nn.ModuleList([ResnetBlock2D(out_ch, out_ch, up=True, **res)]) if add_upsample else None

    def forward(self, x: torch.Tensor, skips: list, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips[-1 - i]], dim=1), temb)  # running tensor first, then the skip
            if self.attentions is not None:
                x = self.attentions[i](x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, temb)
        return x


class TimestepEmbedding(nn.Module):
    """Sinusoid -> Linear -> SiLU -> Linear."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, t_emb: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(t_emb)))


class ImageProjection(nn.Module):
    """2.2 context: image embed -> 32 tokens, LayerNorm."""

    def __init__(self, image_dim: int, cross_dim: int):
        super().__init__()
        self.image_embeds = nn.Linear(image_dim, IMAGE_TOKENS_22 * cross_dim)
        self.norm = nn.LayerNorm(cross_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        tokens = self.image_embeds(image_embeds).reshape(image_embeds.shape[0], IMAGE_TOKENS_22, -1)  # B, 32, X
        return self.norm(tokens)


class TextImageProjection(nn.Module):
    """2.1 context: [10 image tokens, projected text tokens]."""

    def __init__(self, text_dim: int, cross_dim: int):
        super().__init__()
        self.image_embeds = nn.Linear(cross_dim, IMAGE_TOKENS_21 * cross_dim)
        self.text_proj = nn.Linear(text_dim, cross_dim)

    def forward(self, text_hidden_states: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        image_tokens = self.image_embeds(image_embeds).reshape(image_embeds.shape[0], IMAGE_TOKENS_21, -1)
        return torch.cat([image_tokens, self.text_proj(text_hidden_states)], dim=1)  # B, 10 + L, X


class ImageTimeEmbedding(nn.Module):
    """2.2 added embedding: Linear + LayerNorm of the image embed."""

    def __init__(self, image_dim: int, time_dim: int):
        super().__init__()
        self.image_proj = nn.Linear(image_dim, time_dim)
        self.image_norm = nn.LayerNorm(time_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.image_norm(self.image_proj(image_embeds))


class ImageHintTimeEmbedding(ImageTimeEmbedding):
    """2.2 depth: image added embedding plus a conv encoder taking the RGB hint to 4 channels at 1/8 size."""

    def __init__(self, image_dim: int, time_dim: int):
        super().__init__(image_dim, time_dim)
        widths = [(3, 16, 1), (16, 16, 1), (16, 32, 2), (32, 32, 1), (32, 96, 2), (96, 96, 1), (96, 256, 2)]
        layers: list[nn.Module] = []
        for cin, cout, stride in widths:
            layers += [nn.Conv2d(cin, cout, 3, padding=1, stride=stride), nn.SiLU()]
        layers.append(nn.Conv2d(256, HINT_CHANNELS, 3, padding=1))
        self.input_hint_block = nn.Sequential(*layers)  # state-dict indices 0, 2, ..., 14

    def forward(self, image_embeds: torch.Tensor, hint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(image_embeds), self.input_hint_block(hint)


class TextImageTimeEmbedding(nn.Module):
    """2.1 added embedding: LayerNorm(Linear(pooled text)) + Linear(image)."""

    def __init__(self, text_dim: int, image_dim: int, time_dim: int):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, time_dim)
        self.text_norm = nn.LayerNorm(time_dim)
        self.image_proj = nn.Linear(image_dim, time_dim)

    def forward(self, text_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.image_proj(image_embeds) + self.text_norm(self.text_proj(text_embeds))


class KandinskyUNet(nn.Module):
    """Kandinsky 2.1 / 2.2 (text2img, inpaint, depth ControlNet) decoder UNet predicting eps + variance."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        self.variant = config.variant
        cfg, chans = config, config.block_out_channels
        t_dim, x_dim = cfg.time_embed_dim, cfg.cross_attention_dim
        self.conv_in = nn.Conv2d(cfg.in_channels, chans[0], cfg.conv_in_kernel, padding=cfg.conv_in_kernel // 2)
        self.time_embedding = TimestepEmbedding(chans[0], t_dim)
        if cfg.encoder_hid_dim_type == "image_proj":
            self.encoder_hid_proj = ImageProjection(cfg.encoder_hid_dim, x_dim)
        else:
            self.encoder_hid_proj = TextImageProjection(cfg.encoder_hid_dim, x_dim)
        if cfg.addition_embed_type == "image":
            self.add_embedding = ImageTimeEmbedding(cfg.encoder_hid_dim, t_dim)
        elif cfg.addition_embed_type == "image_hint":
            self.add_embedding = ImageHintTimeEmbedding(cfg.encoder_hid_dim, t_dim)
        else:
            self.add_embedding = TextImageTimeEmbedding(x_dim, x_dim, t_dim)

        n = len(chans)
        self.down_blocks = nn.ModuleList(
            DownBlock(cfg, chans[max(i - 1, 0)], chans[i], kind == "SimpleCrossAttnDownBlock2D", i < n - 1)
            for i, kind in enumerate(cfg.down_block_types)
        )
        self.mid_block = MidBlock(cfg, chans[-1])
        rev = list(reversed(chans))
        self.up_blocks = nn.ModuleList(
            UpBlock(cfg, rev[max(i - 1, 0)], rev[i], rev[min(i + 1, n - 1)], kind == "SimpleCrossAttnUpBlock2D",
                    i < n - 1)
            for i, kind in enumerate(cfg.up_block_types)
        )
        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, chans[0], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(chans[0], cfg.out_channels, cfg.conv_out_kernel, padding=cfg.conv_out_kernel // 2)

    @property
    def latent_channels(self) -> int:
        """Channels of the `sample` argument (the depth hint's 4 channels are added inside)."""
        extra = HINT_CHANNELS if self.config.addition_embed_type == "image_hint" else 0
        return self.config.in_channels - extra

    def forward(
        self,
        sample: torch.Tensor,
        timestep: int | float | torch.Tensor,
        image_embeds: torch.Tensor,
        *,
        hint: torch.Tensor | None = None,
        text_embeds: torch.Tensor | None = None,
        text_hidden_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict (B, out_channels, h, w) from latents (B, Cin, h, w) and the variant's conditioning.

        2.2: image_embeds (B, 1280); 2.2 depth: also hint (B, 3, 8h, 8w) in [0, 1]; 2.1: image_embeds
        (B, 768), text_embeds (B, 768) pooled and text_hidden_states (B, L, 1024) from M-CLIP.
        """
        cfg = self.config
        dtype = self.conv_in.weight.dtype
        self._check_inputs(sample, image_embeds, hint, text_embeds, text_hidden_states)
        batch = sample.shape[0]
        sample, image_embeds = sample.to(dtype), image_embeds.to(dtype)

        t = _timesteps(timestep, batch, sample.device)
        t_emb = timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        emb = self.time_embedding(t_emb.to(dtype))  # B, T

        if cfg.addition_embed_type == "text_image":
            text_embeds, text_hidden_states = text_embeds.to(dtype), text_hidden_states.to(dtype)
            emb = emb + self.add_embedding(text_embeds, image_embeds)
            context = self.encoder_hid_proj(text_hidden_states, image_embeds)  # B, 10 + L, X
        else:
            if cfg.addition_embed_type == "image_hint":
                aug, hint_feat = self.add_embedding(image_embeds, hint.to(dtype))
                sample = torch.cat([sample, hint_feat], dim=1)  # latent channels first, then the 4 hint channels
            else:
                aug = self.add_embedding(image_embeds)
            emb = emb + aug
            context = self.encoder_hid_proj(image_embeds)  # B, 32, X
        temb = emb if cfg.resnet_skip_time_act else F.silu(emb)  # every ResNet applies SiLU before its projection

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, block_skips = block(x, temb, context)
            skips.extend(block_skips)
        x = self.mid_block(x, temb, context)
        for block in self.up_blocks:
            n = len(block.resnets)
            x = block(x, skips[-n:], temb, context)
            del skips[-n:]
        return self.conv_out(F.silu(self.conv_norm_out(x)))

    def _check_inputs(self, sample, image_embeds, hint, text_embeds, text_hidden_states) -> None:
        """Raise a ValueError that says what is wrong with the conditioning and what likely caused it."""
        cfg, v = self.config, self.variant
        name = v.name
        if sample.ndim != 4:
            raise ValueError(f"{name}: sample must be (B, C, h, w), got shape {tuple(sample.shape)}.")
        b, c, h, w = sample.shape
        if c != self.latent_channels:
            why = {
                "inpaint": "an inpaint UNet needs the noisy latent (4), the masked-image latent (4) and the mask (1)",
                "text2img": "a text2img UNet takes the 4-channel latent only (an inpaint latent given to a "
                            "non-inpaint UNet?)",
                "depth": "the depth UNet takes the 4-channel latent; the hint goes in `hint`",
            }[v.task]
            raise ValueError(f"{name}: sample has {c} channels, expected {self.latent_channels}: {why}.")
        factor = 2 ** (len(cfg.block_out_channels) - 1)
        if h % factor or w % factor:
            raise ValueError(
                f"{name}: latent size {h}x{w} must be a multiple of {factor} on both sides (image sides a multiple "
                f"of {8 * factor} pixels)."
            )

        if image_embeds is None:
            raise ValueError(f"{name}: image_embeds (B, {v.image_embed_dim}) are required (from the prior).")
        if image_embeds.ndim != 2 or image_embeds.shape[1] != v.image_embed_dim:
            got = tuple(image_embeds.shape)
            cause = "embeddings from a different model"
            if v.version == "2.2" and got[-1] == 768:
                cause = "a Kandinsky 2.1 prior was wired into a 2.2 decoder"
            elif v.version == "2.1" and got[-1] == 1280:
                cause = "a Kandinsky 2.2 prior was wired into a 2.1 decoder"
            raise ValueError(
                f"{name}: image_embeds of shape {got} given, expected (B, {v.image_embed_dim}): {cause}."
            )
        if image_embeds.shape[0] != b:
            raise ValueError(f"{name}: image_embeds batch {image_embeds.shape[0]} does not match sample batch {b}.")

        if v.task == "depth":
            want = (b, 3, 8 * h, 8 * w)
            if hint is None:
                raise ValueError(
                    f"{name}: a depth hint (B, 3, H, W) in [0, 1] at image size is required; connect a depth hint "
                    "or load a non-ControlNet decoder."
                )
            if tuple(hint.shape) != want:
                raise ValueError(
                    f"{name}: hint of shape {tuple(hint.shape)} given, expected {want} (RGB, 8x the latent size "
                    f"{h}x{w}, same batch); resize the depth map to the image size."
                )
        elif hint is not None:
            raise ValueError(
                f"{name}: a hint was given but this UNet is not a depth ControlNet; remove the hint or load "
                "kandinsky-2-2-controlnet-depth."
            )

        if v.version == "2.1":
            if text_embeds is None or text_hidden_states is None:
                raise ValueError(
                    f"{name}: needs text_embeds (B, {v.text_embed_dim}) and text_hidden_states (B, L, "
                    f"{v.text_hidden_dim}) from the 2.1 M-CLIP text encoder; embeddings from a 2.2 prior carry none."
                )
            if tuple(text_embeds.shape) != (b, v.text_embed_dim):
                raise ValueError(
                    f"{name}: text_embeds of shape {tuple(text_embeds.shape)} given, expected ({b}, "
                    f"{v.text_embed_dim}) (the pooled M-CLIP prompt embedding)."
                )
            if text_hidden_states.ndim != 3 or text_hidden_states.shape[0] != b or \
                    text_hidden_states.shape[2] != v.text_hidden_dim:
                raise ValueError(
                    f"{name}: text_hidden_states of shape {tuple(text_hidden_states.shape)} given, expected ({b}, L, "
                    f"{v.text_hidden_dim}) (the M-CLIP token states)."
                )
        elif text_embeds is not None or text_hidden_states is not None:
            raise ValueError(
                f"{name}: text_embeds / text_hidden_states were given, but a Kandinsky 2.2 UNet takes no text; "
                "were Kandinsky 2.1 embeddings wired into a 2.2 decoder?"
            )


def _timesteps(timestep: int | float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """int / 0-d / (1,) / (B,) timestep -> (B,) tensor."""
    if torch.is_tensor(timestep) and timestep.ndim == 1 and timestep.shape[0] not in (1, batch):
        raise ValueError(f"timestep has {timestep.shape[0]} entries but the batch has {batch}.")
    if torch.is_tensor(timestep) and timestep.ndim > 1:
        raise ValueError(f"timestep must be a number, a 0-d or a (B,) tensor, got shape {tuple(timestep.shape)}.")
    return broadcast_timesteps(timestep, batch, device)

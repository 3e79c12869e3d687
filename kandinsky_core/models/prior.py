"""Kandinsky 2.1 / 2.2 prior: a causal transformer that denoises a normalized CLIP image embedding
conditioned on CLIP text features (diffusers `PriorTransformer`, Kandinsky layout).

Token sequence (length num_embeddings + 4 = 81):
    [text hidden states (77), pooled text embedding, time, noisy latent, prd] + positional embedding.
The prediction (the clean normalized embedding) is read from the last token ("prd").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs.prior import PriorConfig
from .layers import broadcast_timesteps, timestep_embedding

MASK_VALUE = -10000.0  # additive mask value used by diffusers for padding and causality

_ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU, "relu": nn.ReLU}


class PriorTimestepEmbedding(nn.Module):
    """Time MLP: Linear -> activation -> Linear (diffusers TimestepEmbedding keys)."""

    def __init__(self, dim: int, hidden: int, act_fn: str):
        super().__init__()
        self.linear_1 = nn.Linear(dim, hidden)
        self.act = _ACTIVATIONS[act_fn]()
        self.linear_2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class PriorAttention(nn.Module):
    """Multi-head self-attention with biased q/k/v/out projections and an additive mask."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = x.shape
        # B, N, H*Dh -> B, H, N, Dh
        q, k, v = (p(x).view(b, n, self.heads, -1).transpose(1, 2) for p in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(b, n, -1)  # B, H, N, Dh -> B, N, H*Dh
        return self.to_out[0](out)


class PriorGELU(nn.Module):
    """Linear followed by exact (erf) GELU."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class PriorFeedForward(nn.Module):
    """MLP dim -> 4*dim -> dim; `net.1` stands in for diffusers' (inactive) dropout."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(PriorGELU(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PriorTransformerBlock(nn.Module):
    """Pre-LN block: x + attn(norm1(x)); x + ff(norm3(x)) (diffusers BasicTransformerBlock keys)."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = PriorAttention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = PriorFeedForward(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), mask)
        return x + self.ff(self.norm3(x))


class KandinskyPrior(nn.Module):
    """Predicts the clean normalized CLIP image embedding from a noisy one and the CLIP text features."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        self.config = config
        inner, dim = config.inner_dim, config.embedding_dim
        self.time_embedding = PriorTimestepEmbedding(inner, config.time_embed_dim, config.time_embed_act_fn)
        self.proj_in = nn.Linear(dim, inner)
        if config.embedding_proj_norm_type == "layer":
            self.embedding_proj_norm = nn.LayerNorm(config.embedding_proj_dim)
        self.embedding_proj = nn.Linear(config.embedding_proj_dim, inner)
        self.encoder_hidden_states_proj = nn.Linear(dim, inner)
        self.positional_embedding = nn.Parameter(torch.zeros(1, config.seq_len, inner))
        self.prd_embedding = nn.Parameter(torch.zeros(1, 1, inner))
        self.transformer_blocks = nn.ModuleList(
            [PriorTransformerBlock(inner, config.num_attention_heads, config.attention_head_dim)
             for _ in range(config.num_layers)]
        )
        if config.norm_in_type == "layer":
            self.norm_in = nn.LayerNorm(inner)
        self.norm_out = nn.LayerNorm(inner)
        self.proj_to_clip_embeddings = nn.Linear(inner, config.clip_embed_dim)
        self.clip_mean = nn.Parameter(torch.zeros(1, config.clip_embed_dim))
        self.clip_std = nn.Parameter(torch.zeros(1, config.clip_embed_dim))

    def _attention_mask(self, text_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive mask (B, 1, L, L): -10000 at padded text keys plus -10000 above the diagonal."""
        n = self.config.seq_len
        pad = (1 - text_mask.to(dtype)) * MASK_VALUE  # B, 77
        pad = F.pad(pad, (0, self.config.additional_embeddings), value=0.0)  # B, 77 -> B, L
        causal = torch.full((n, n), MASK_VALUE, device=text_mask.device).triu_(1)  # L, L (fp32, as diffusers)
        # B, L -> B, 1, L, L (broadcast over heads == diffusers' per-head repeat)
        return (pad[:, None, :] + causal).to(dtype)[:, None]

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | float | int,
        proj_embedding: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """hidden_states (B, D) noisy latent, proj_embedding (B, D) pooled text embedding,
        encoder_hidden_states (B, 77, D) text hidden states, attention_mask (B, 77) bool text mask
        (None = no mask at all, not even causal, like diffusers) -> (B, clip_embed_dim)."""
        cfg = self.config
        b = hidden_states.shape[0]
        dtype, device = self.proj_in.weight.dtype, self.proj_in.weight.device
        if encoder_hidden_states.shape[1] != cfg.num_embeddings:
            raise ValueError(
                f"Prior expects {cfg.num_embeddings} text tokens, got encoder_hidden_states of shape "
                f"{tuple(encoder_hidden_states.shape)}; tokenize with padding to max_length={cfg.num_embeddings}."
            )
        t = broadcast_timesteps(timestep, b, device)
        time = self.time_embedding(timestep_embedding(t, cfg.inner_dim, True, 0).to(dtype))  # B, W

        proj_embedding = proj_embedding.to(device, dtype)
        if cfg.embedding_proj_norm_type == "layer":
            proj_embedding = self.embedding_proj_norm(proj_embedding)
        tokens = torch.cat(
            [
                self.encoder_hidden_states_proj(encoder_hidden_states.to(device, dtype)),  # B, 77, W
                self.embedding_proj(proj_embedding)[:, None],  # B, 1, W
                time[:, None],  # B, 1, W
                self.proj_in(hidden_states.to(device, dtype))[:, None],  # B, 1, W
                self.prd_embedding.to(dtype).expand(b, -1, -1),  # B, 1, W
            ],
            dim=1,
        )
        x = tokens + self.positional_embedding.to(dtype)

        mask = None if attention_mask is None else self._attention_mask(attention_mask.to(device), dtype)
        if cfg.norm_in_type == "layer":
            x = self.norm_in(x)
        for block in self.transformer_blocks:
            x = block(x, mask)
        x = self.norm_out(x)
        return self.proj_to_clip_embeddings(x[:, -1])  # prd token -> B, D

    def post_process_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Map a normalized embedding back to CLIP space: x * clip_std + clip_mean."""
        return x * self.clip_std.to(x.device) + self.clip_mean.to(x.device)

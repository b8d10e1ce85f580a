"""The diffusion transformer (DiT) of GR00T N1's action head, also used by the DiT reward head.

Tokens [B, S, D] are modulated by a timestep embedding (AdaLayerNorm), and each block either
cross-attends to the vision-language tokens (even blocks) or self-attends (odd blocks), followed by
a GELU(tanh) feed-forward of 4x width. Attention runs through PyTorch SDPA. Parameter names match
the official checkpoint (``timestep_encoder.timestep_embedder.linear_{1,2}``,
``transformer_blocks.N.{norm1.linear, attn1.to_q/k/v, attn1.to_out.0, ff.net.0.proj, ff.net.2}``,
``proj_out_{1,2}``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_features(t: torch.Tensor, channels: int) -> torch.Tensor:
    """Sinusoidal features of (discrete) timesteps: t [B] -> [B, channels], cosines first."""
    half = channels // 2
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1)
    angles = t.float()[:, None] * torch.exp(exponent)[None, :]       # [B, half]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # [B, channels]


class TimestepEmbedder(nn.Module):
    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(features)))


class TimestepEncoder(nn.Module):
    """Discrete timestep [B] -> embedding [B, dim]."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.channels = channels
        self.timestep_embedder = TimestepEmbedder(channels, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        dtype = self.timestep_embedder.linear_1.weight.dtype
        return self.timestep_embedder(timestep_features(t, self.channels).to(dtype))  # [B, dim]


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine weights, scaled and shifted by a projection of the timestep embedding."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)       # [B, D] each
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]     # [B, S, D]


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections (keys may come from another width)."""

    def __init__(self, dim: int, heads: int, head_dim: int, kv_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        kv_dim = kv_dim or dim
        self.heads, self.dropout = heads, dropout
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(kv_dim, inner)
        self.to_v = nn.Linear(kv_dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, S, D]; context [B, L, Dk] (None: self-attention); context_mask [B, L] bool, True = attend."""
        context = x if context is None else context
        b, s, _ = x.shape
        q = self.to_q(x).view(b, s, self.heads, -1).transpose(1, 2)                   # [B, H, S, d]
        k = self.to_k(context).view(b, context.shape[1], self.heads, -1).transpose(1, 2)  # [B, H, L, d]
        v = self.to_v(context).view(b, context.shape[1], self.heads, -1).transpose(1, 2)  # [B, H, L, d]
        mask = None if context_mask is None else context_mask[:, None, None, :].bool()  # [B, 1, 1, L]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(b, s, -1)                                    # [B, S, H*d]
        return self.to_out[1](self.to_out[0](out))                                     # [B, S, D]


class GeluTanhProj(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GeluTanhProj(dim, dim * mult), nn.Dropout(dropout),
                                  nn.Linear(dim * mult, dim), nn.Dropout(dropout)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """AdaLN -> (cross- or self-) attention -> LN -> FFN, both with residuals."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross_attention_dim: int | None, dropout: float):
        super().__init__()
        self.cross = cross_attention_dim is not None
        self.norm1 = AdaLayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim, kv_dim=cross_attention_dim, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=False)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None,
                context_mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm1(x, temb)                                             # [B, S, D]
        if self.cross:
            x = x + self.attn1(h, context, context_mask)                    # [B, S, D]
        else:
            x = x + self.attn1(h)                                           # [B, S, D]
        return x + self.ff(self.norm3(x))                                   # [B, S, D]


class DiT(nn.Module):
    """Interleaved cross/self-attention DiT: tokens [B, S, D] -> [B, S, output_dim]."""

    def __init__(self, num_layers: int, heads: int, head_dim: int, output_dim: int, cross_attention_dim: int,
                 timestep_channels: int = 256, dropout: float = 0.0):
        super().__init__()
        dim = heads * head_dim
        self.timestep_encoder = TimestepEncoder(timestep_channels, dim)
        self.transformer_blocks = nn.ModuleList([
            TransformerBlock(dim, heads, head_dim, cross_attention_dim if i % 2 == 0 else None, dropout)
            for i in range(num_layers)
        ])
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, output_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, timestep: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, S, D]; context [B, L, Dc]; timestep [B] (integer buckets); context_mask [B, L]."""
        temb = self.timestep_encoder(timestep)                              # [B, D]
        for block in self.transformer_blocks:
            x = block(x, temb, context, context_mask)                       # [B, S, D]
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)       # [B, D] each
        x = self.norm_out(x) * (1 + scale[:, None]) + shift[:, None]        # [B, S, D]
        return self.proj_out_2(x)                                           # [B, S, output_dim]

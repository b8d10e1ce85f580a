"""The diffusion transformer (DiT) of GR00T N1's action head, also used by the DiT reward head.

Tokens [B, S, D] are modulated by a timestep embedding (AdaLayerNorm), and each block either
cross-attends to the vision-language tokens (even blocks) or self-attends (odd blocks), followed by
a GELU(tanh) feed-forward of 4x width. Attention runs through PyTorch SDPA. Parameter names match
the official checkpoint (``timestep_encoder.timestep_embedder.linear_{1,2}``,
``transformer_blocks.N.{norm1.linear, attn1.to_q/k/v, attn1.to_out.0, ff.net.0.proj, ff.net.2}``,
``proj_out_{1,2}``).

Cross-attention and padding: the official ``cross_attention_dit.DiT`` (Isaac-GR00T,
gr00t/model/action_head/cross_attention_dit.py, ``DiT.forward`` / ``BasicTransformerBlock.forward``) never
masks the backbone's padding tokens (``encoder_attention_mask`` is accepted and dropped). ``DiT(mask_context=False)``
does the same; ``mask_context=True`` (what this package did before, kept for the checkpoints written then)
hides padded VL tokens from the cross-attention. With batch 1 and no padding both are identical.

Inference speed-up (``DiT.inference_context``): the keys and values of the VL tokens in every cross-attention
block depend only on the backbone features, not on the denoising step, so within one action chunk they are
projected once and reused by every step (identical results: the same matmuls, done once).
"""
from __future__ import annotations

import math
from contextlib import contextmanager

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

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context [B, L, Dk] -> keys, values [B, H, L, d] (what a cross-attention cache holds)."""
        b, length, _ = context.shape
        k = self.to_k(context).view(b, length, self.heads, -1).transpose(1, 2)      # [B, H, L, d]
        v = self.to_v(context).view(b, length, self.heads, -1).transpose(1, 2)      # [B, H, L, d]
        return k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x [B, S, D]; context [B, L, Dk] (None: self-attention); context_mask [B, L] bool, True = attend;
        ``kv``: keys and values already projected from ``context`` (``keys_values``), used instead of it."""
        b, s, _ = x.shape
        q = self.to_q(x).view(b, s, self.heads, -1).transpose(1, 2)                   # [B, H, S, d]
        k, v = kv if kv is not None else self.keys_values(x if context is None else context)  # [B, H, L, d]
        mask = None if context_mask is None else context_mask[:, None, None, :].bool()  # [B, 1, 1, L]
        # no dropout on the attention weights (official: diffusers' AttnProcessor2_0 passes dropout_p=0.0);
        # dropout acts on the output projection (to_out[1]) and in the block (final_dropout)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
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
    """AdaLN -> (cross- or self-) attention -> dropout -> LN -> FFN, both with residuals.

    Dropout as the official block with ``final_dropout=True`` (N1's DiT config; Isaac-GR00T
    cross_attention_dit.py ``BasicTransformerBlock``): the attention output passes the projection's dropout
    (``attn1.to_out[1]``) and then the block's ``final_dropout`` before the residual; the feed-forward has
    two (after the GELU and after the output projection); the attention weights have none. Training only:
    in eval mode every dropout is the identity, so inference is unchanged."""

    def __init__(self, dim: int, heads: int, head_dim: int, cross_attention_dim: int | None, dropout: float):
        super().__init__()
        self.cross = cross_attention_dim is not None
        self.norm1 = AdaLayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim, kv_dim=cross_attention_dim, dropout=dropout)
        self.final_dropout = nn.Dropout(dropout)                            # no parameters: files unchanged
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=False)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: torch.Tensor | None,
                context_mask: torch.Tensor | None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        h = self.norm1(x, temb)                                             # [B, S, D]
        if self.cross:
            x = x + self.final_dropout(self.attn1(h, context, context_mask, kv))   # [B, S, D]
        else:
            x = x + self.final_dropout(self.attn1(h))                       # [B, S, D]
        return x + self.ff(self.norm3(x))                                   # [B, S, D]


class DiT(nn.Module):
    """Interleaved cross/self-attention DiT: tokens [B, S, D] -> [B, S, output_dim].

    ``mask_context``: whether the cross-attention hides padded VL tokens (``context_mask``); False is the
    official behaviour (see the module docstring)."""

    def __init__(self, num_layers: int, heads: int, head_dim: int, output_dim: int, cross_attention_dim: int,
                 timestep_channels: int = 256, dropout: float = 0.0, mask_context: bool = True):
        super().__init__()
        if not isinstance(mask_context, bool):
            raise ValueError(f"DiT mask_context = {mask_context!r}: must be true or false")
        self.mask_context = mask_context
        self._cache: tuple[torch.Tensor, list] | None = None   # (context, per-block K/V) inside cached_context
        self._caching = self._unpadded = False
        dim = heads * head_dim
        self.timestep_encoder = TimestepEncoder(timestep_channels, dim)
        self.transformer_blocks = nn.ModuleList([
            TransformerBlock(dim, heads, head_dim, cross_attention_dim if i % 2 == 0 else None, dropout)
            for i in range(num_layers)
        ])
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, output_dim)

    @contextmanager
    def inference_context(self, cache_kv: bool = True, unpadded: bool = False):
        """Inference settings for the forwards inside this block (eval mode only):

        ``cache_kv``: the cross-attention keys/values of a context tensor are projected on its first forward
        and reused by later forwards given the *same tensor object* (every denoising step of one chunk).
        ``unpadded``: the caller knows (on the host) that no context token is padding, so the mask is dropped
        and SDPA may pick its flash / memory-efficient kernels (identical results).
        Host-side checks only: safe inside a CUDA-graph capture. The cache is dropped on exit."""
        was = (self._caching, self._unpadded)
        self._caching, self._unpadded = cache_kv, unpadded
        try:
            yield self
        finally:
            self._caching, self._unpadded = was
            if not self._caching:
                self._cache = None                                  # the K/V of this chunk are not kept

    def context_keys_values(self, context: torch.Tensor) -> list:
        """context [B, L, Dc] -> per block: (keys, values) [B, H, L, d] for cross-attention blocks, else None."""
        return [block.attn1.keys_values(context) if block.cross else None for block in self.transformer_blocks]

    def _keys_values(self, context: torch.Tensor) -> list:
        if not self._caching or self.training:
            return [None] * len(self.transformer_blocks)
        if self._cache is None or self._cache[0] is not context:
            self._cache = (context, self.context_keys_values(context))
        return self._cache[1]

    def forward(self, x: torch.Tensor, context: torch.Tensor, timestep: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, S, D]; context [B, L, Dc]; timestep [B] (integer buckets); context_mask [B, L] (1 = token; read
        only when ``mask_context``)."""
        temb = self.timestep_encoder(timestep)                              # [B, D]
        mask = context_mask if self.mask_context and not (self._unpadded and not self.training) else None
        for block, kv in zip(self.transformer_blocks, self._keys_values(context)):
            x = block(x, temb, context, mask, kv)                           # [B, S, D]
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)       # [B, D] each
        x = self.norm_out(x) * (1 + scale[:, None]) + shift[:, None]        # [B, S, D]
        return self.proj_out_2(x)                                           # [B, S, output_dim]

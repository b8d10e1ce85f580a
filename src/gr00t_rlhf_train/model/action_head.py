"""GR00T N1's flow-matching action head.

The robot state and a noisy action chunk are embedded by embodiment-specific MLPs (one weight slab
per embodiment id), the action tokens get a learned position embedding, and the DiT, conditioned
on the flow time, cross-attends to the backbone's vision-language tokens; the decoder maps its
output back to action velocities. Training: t = (s - Beta(a, b)) / s, x_t = (1 - t) noise + t action,
target velocity = action - noise, MSE masked to the robot's real action dims. Inference: Euler
integration from noise in ``num_inference_steps`` steps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import ActionHeadConfig
from .dit import DiT


class CategorySpecificLinear(nn.Module):
    """A linear layer with one weight slab per category: W [C, in, out], b [C, out]."""

    def __init__(self, num_categories: int, in_dim: int, out_dim: int):
        super().__init__()
        self.W = nn.Parameter(0.02 * torch.randn(num_categories, in_dim, out_dim))
        self.b = nn.Parameter(torch.zeros(num_categories, out_dim))

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """x [B, S, in]; category [B] long -> [B, S, out]."""
        return torch.bmm(x, self.W[category]) + self.b[category].unsqueeze(1)


class CategorySpecificMLP(nn.Module):
    def __init__(self, num_categories: int, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, in_dim, hidden_dim)
        self.layer2 = CategorySpecificLinear(num_categories, hidden_dim, out_dim)

    def forward(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, category)), category)


def sinusoidal_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t [B, S] -> [B, S, dim] (sines then cosines)."""
    half = dim // 2
    exponent = -torch.arange(half, dtype=torch.float32, device=t.device) * (math.log(10000.0) / half)
    angles = t.float().unsqueeze(-1) * torch.exp(exponent)            # [B, S, half]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # [B, S, dim]


class MultiEmbodimentActionEncoder(nn.Module):
    """Noisy actions + flow time -> action tokens: W1(a) ++ sin(t) -> swish(W2) -> W3."""

    def __init__(self, action_dim: int, dim: int, num_embodiments: int):
        super().__init__()
        self.dim = dim
        self.W1 = CategorySpecificLinear(num_embodiments, action_dim, dim)
        self.W2 = CategorySpecificLinear(num_embodiments, 2 * dim, dim)
        self.W3 = CategorySpecificLinear(num_embodiments, dim, dim)

    def forward(self, actions: torch.Tensor, timestep: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """actions [B, T, A]; timestep [B] (buckets) -> [B, T, dim]."""
        b, horizon, _ = actions.shape
        a = self.W1(actions, category)                                                  # [B, T, dim]
        tau = sinusoidal_features(timestep[:, None].expand(b, horizon), self.dim).to(a.dtype)  # [B, T, dim]
        x = F.silu(self.W2(torch.cat([a, tau], dim=-1), category))                      # [B, T, dim]
        return self.W3(x, category)                                                     # [B, T, dim]


class FlowMatchingActionHead(nn.Module):
    def __init__(self, config: ActionHeadConfig):
        super().__init__()
        c = config
        self.config = c
        self.model = DiT(c.num_layers, c.num_heads, c.head_dim, output_dim=c.hidden_size,
                         cross_attention_dim=c.backbone_embedding_dim, timestep_channels=c.timestep_channels,
                         dropout=c.dropout)
        self.state_encoder = CategorySpecificMLP(c.max_num_embodiments, c.max_state_dim, c.hidden_size,
                                                 c.input_embedding_dim)
        self.action_encoder = MultiEmbodimentActionEncoder(c.action_dim, c.input_embedding_dim,
                                                           c.max_num_embodiments)
        self.action_decoder = CategorySpecificMLP(c.max_num_embodiments, c.hidden_size, c.hidden_size, c.action_dim)
        self.position_embedding = nn.Embedding(c.max_seq_len, c.input_embedding_dim)

    def velocity(self, features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor,
                 noisy_actions: torch.Tensor, t_bucket: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        """features [B, L, Dvl]; state [B, 1, S]; noisy_actions [B, T, A]; t_bucket [B] -> velocity [B, T, A]."""
        horizon = noisy_actions.shape[1]
        state_tokens = self.state_encoder(state, embodiment_id)                             # [B, 1, D]
        action_tokens = self.action_encoder(noisy_actions, t_bucket, embodiment_id)         # [B, T, D]
        positions = torch.arange(horizon, device=noisy_actions.device)
        action_tokens = action_tokens + self.position_embedding(positions).unsqueeze(0)     # [B, T, D]
        tokens = torch.cat([state_tokens, action_tokens], dim=1)                            # [B, 1+T, D]
        out = self.model(tokens, features, t_bucket, features_mask)                         # [B, 1+T, hidden]
        return self.action_decoder(out, embodiment_id)[:, -horizon:]                        # [B, T, A]

    def sample_time(self, batch: int, device: torch.device) -> torch.Tensor:
        """Flow time t in (0, 1], concentrated near 1 (clean actions): t = (s - Beta(a, b)) / s."""
        c = self.config
        beta = torch.distributions.Beta(torch.tensor(c.noise_beta_alpha), torch.tensor(c.noise_beta_beta))
        return ((c.noise_s - beta.sample((batch,))) / c.noise_s).to(device)                 # [B]

    def loss(self, features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor, actions: torch.Tensor,
             action_mask: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        """Flow-matching loss; actions [B, T, A] normalised and padded, action_mask [B, T, A] (1 = real)."""
        b = actions.shape[0]
        noise = torch.randn_like(actions)                                                   # [B, T, A]
        t = self.sample_time(b, actions.device).to(actions.dtype)                           # [B]
        noisy = (1 - t[:, None, None]) * noise + t[:, None, None] * actions                 # [B, T, A]
        target = actions - noise                                                            # [B, T, A]
        t_bucket = (t * self.config.num_timestep_buckets).long()                            # [B]
        pred = self.velocity(features, features_mask, state, noisy, t_bucket, embodiment_id)  # [B, T, A]
        mask = action_mask.to(pred.dtype)
        return ((pred - target) ** 2 * mask).sum() / mask.sum().clamp_min(1)

    def initial_noise(self, batch: int, device: torch.device, dtype: torch.dtype,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The Gaussian start of the flow, [B, T, A]: drawn in float32 on the generator's device, then cast."""
        c = self.config
        shape = (batch, c.action_horizon, c.action_dim)
        x = torch.randn(shape, generator=generator, device=generator.device if generator else device,
                        dtype=torch.float32)
        return x.to(device=device, dtype=dtype)                                            # [B, T, A]

    @torch.no_grad()
    def sample(self, features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor,
               embodiment_id: torch.Tensor, num_steps: int | None = None,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Euler-integrate the flow from Gaussian noise (``noise`` [B, T, A], else drawn) -> normalised actions [B, T, A]."""
        c = self.config
        steps = num_steps or c.num_inference_steps
        b = features.shape[0]
        x = noise if noise is not None else self.initial_noise(b, features.device, features.dtype, generator)
        dt = 1.0 / steps
        for k in range(steps):
            t_bucket = torch.full((b,), int(k / steps * c.num_timestep_buckets), device=x.device, dtype=torch.long)
            x = x + dt * self.velocity(features, features_mask, state, x, t_bucket, embodiment_id)  # [B, T, A]
        return x

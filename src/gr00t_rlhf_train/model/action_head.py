"""GR00T N1's flow-matching action head.

The robot state and a noisy action chunk are embedded by embodiment-specific MLPs (one weight slab
per embodiment id), the action tokens get a learned position embedding, and the DiT, conditioned
on the flow time, cross-attends to the backbone's vision-language tokens; the decoder maps its
output back to action velocities. Training: t = (s - Beta(a, b)) / s, x_t = (1 - t) noise + t action,
target velocity = action - noise, MSE masked to the robot's real action dims. Inference: Euler
integration from noise in ``num_inference_steps`` steps.

Training details follow official ``FlowmatchingActionHead`` (Isaac-GR00T N1,
gr00t/model/action_head/flow_matching_action_head.py; docs/official_layout.md): the position embedding starts
N(0, 0.02); noise is drawn before t, and the Beta draw is cast to the actions' dtype before t is computed; the
loss is sum(mse * action_mask) / sum(action_mask); a part without trainable parameters stays in eval mode
while training (``set_frozen_modules_to_eval_mode``); the DiT does not mask padded VL tokens unless
``ActionHeadConfig.mask_context`` (checkpoints written before that field).

Advantage conditioning (``ActionHeadConfig.advantage_conditioning``, stage 3 / RECAP style): a learned
embedding of the condition {unconditioned, good, bad} is added to the DiT's timestep embedding (the
AdaLayerNorm signal of every block). It starts at zero, so a policy that gains it behaves exactly as
before until trained. Sampling conditions on a name (default: the config's ``default_condition``) with
classifier-free guidance ``w`` (default ``default_guidance``): v = v_uncond + w (v_cond - v_uncond);
w = 1 is the plain conditional velocity (one pass), other w run the conditional and unconditional
halves as one doubled batch. Without the flag nothing of this exists (same modules, keys and outputs).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration import ADVANTAGE_CONDITIONS, ActionHeadConfig
from .dit import DiT, TimestepEncoder

UNCONDITIONED = ADVANTAGE_CONDITIONS.index("unconditioned")   # 0


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


class ConditionedTimestepEncoder(TimestepEncoder):
    """The DiT's timestep encoder plus a learned advantage-condition embedding (rows: ADVANTAGE_CONDITIONS).

    Takes the timestep buckets [B] (unconditioned) or [B, 2] (bucket, condition index): the DiT passes its
    timestep argument straight to this encoder, so the condition travels with it and the DiT itself is
    unchanged. The embedding starts at zero (the conditioned model starts as the unconditioned one)."""

    def __init__(self, channels: int, dim: int):
        super().__init__(channels, dim)
        self.condition_embedding = nn.Embedding(len(ADVANTAGE_CONDITIONS), dim)
        nn.init.zeros_(self.condition_embedding.weight)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 1:
            t = torch.stack([t, torch.full_like(t, UNCONDITIONED)], dim=1)               # [B, 2]
        temb = super().forward(t[:, 0])                                                  # [B, dim]
        return temb + self.condition_embedding(t[:, 1]).to(temb.dtype)                  # [B, dim]


def condition_index(condition: str) -> int:
    """A condition name -> its embedding row; ValueError naming the allowed ones."""
    if condition not in ADVANTAGE_CONDITIONS:
        raise ValueError(f"condition = {condition!r}: allowed {ADVANTAGE_CONDITIONS}")
    return ADVANTAGE_CONDITIONS.index(condition)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Flow-matching MSE over the real action dims: sum(w_b * mask * (pred - target)^2) / sum(mask).

    pred, target, mask [B, T, A]; ``weights`` [B] per-sample (None: all 1, bit-identical to no weights)."""
    mask = mask.to(pred.dtype)
    sq = (pred - target) ** 2 * mask                                                     # [B, T, A]
    if weights is not None:
        sq = sq * weights.to(pred.dtype)[:, None, None]
    return sq.sum() / mask.sum().clamp_min(1)


class FlowMatchingActionHead(nn.Module):
    def __init__(self, config: ActionHeadConfig):
        super().__init__()
        c = config
        self.config = c
        self.model = DiT(c.num_layers, c.num_heads, c.head_dim, output_dim=c.hidden_size,
                         cross_attention_dim=c.backbone_embedding_dim, timestep_channels=c.timestep_channels,
                         dropout=c.dropout, mask_context=c.mask_context)
        self.state_encoder = CategorySpecificMLP(c.max_num_embodiments, c.max_state_dim, c.hidden_size,
                                                 c.input_embedding_dim)
        self.action_encoder = MultiEmbodimentActionEncoder(c.action_dim, c.input_embedding_dim,
                                                           c.max_num_embodiments)
        self.action_decoder = CategorySpecificMLP(c.max_num_embodiments, c.hidden_size, c.hidden_size, c.action_dim)
        self.position_embedding = nn.Embedding(c.max_seq_len, c.input_embedding_dim)
        nn.init.normal_(self.position_embedding.weight, mean=0.0, std=0.02)   # as official (not N(0, 1))
        if c.advantage_conditioning:
            self.model.timestep_encoder = ConditionedTimestepEncoder(c.timestep_channels, c.input_embedding_dim)

    def frozen_parts(self) -> list[str]:
        """Names of the parts with no trainable parameter (official ``set_frozen_modules_to_eval_mode``)."""
        parts = {"model": self.model, "state_encoder": self.state_encoder, "action_encoder": self.action_encoder,
                 "action_decoder": self.action_decoder, "position_embedding": self.position_embedding}
        return [n for n, m in parts.items() if not any(p.requires_grad for p in m.parameters())]

    def train(self, mode: bool = True) -> "FlowMatchingActionHead":
        """As official GR00T N1: a frozen part (e.g. the DiT with ``--no-tune-diffusion-model``) stays in eval
        mode while the head trains, so its dropout is off; a part with any trainable parameter (LoRA too) trains."""
        super().train(mode)
        if mode:
            for name in self.frozen_parts():
                getattr(self, name).eval()
        return self

    @property
    def conditioned(self) -> bool:
        return isinstance(self.model.timestep_encoder, ConditionedTimestepEncoder)

    def enable_advantage_conditioning(self) -> None:
        """Add the (zero) condition embedding to a head built without it, keeping every trained weight;
        sets ``config.advantage_conditioning``. A head that has it already is left as it is."""
        if self.conditioned:
            return
        old = self.model.timestep_encoder
        new = ConditionedTimestepEncoder(old.channels, old.timestep_embedder.linear_2.out_features)
        new.timestep_embedder = old.timestep_embedder
        ref = old.timestep_embedder.linear_2.weight
        new.condition_embedding.to(device=ref.device, dtype=ref.dtype)
        self.model.timestep_encoder = new
        self.config.advantage_conditioning = True

    def _timestep_input(self, t_bucket: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """What the DiT gets as its timestep: the buckets [B], or (bucket, condition) [B, 2] when conditioned."""
        if not self.conditioned:
            if condition is not None:
                raise ValueError("condition given, but this policy has no advantage conditioning "
                                 "(ActionHeadConfig.advantage_conditioning = False)")
            return t_bucket
        if condition is None:
            condition = torch.full_like(t_bucket, UNCONDITIONED)
        return torch.stack([t_bucket, condition.to(t_bucket.device, torch.long)], dim=1)   # [B, 2]

    def velocity(self, features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor,
                 noisy_actions: torch.Tensor, t_bucket: torch.Tensor, embodiment_id: torch.Tensor,
                 condition: torch.Tensor | None = None) -> torch.Tensor:
        """features [B, L, Dvl]; state [B, 1, S]; noisy_actions [B, T, A]; t_bucket [B] -> velocity [B, T, A].

        ``condition`` [B] condition indices (ADVANTAGE_CONDITIONS), only for a conditioned head (None there:
        unconditioned)."""
        horizon = noisy_actions.shape[1]
        state_tokens = self.state_encoder(state, embodiment_id)                             # [B, 1, D]
        action_tokens = self.action_encoder(noisy_actions, t_bucket, embodiment_id)         # [B, T, D]
        positions = torch.arange(horizon, device=noisy_actions.device)
        action_tokens = action_tokens + self.position_embedding(positions).unsqueeze(0)     # [B, T, D]
        tokens = torch.cat([state_tokens, action_tokens], dim=1)                            # [B, 1+T, D]
        out = self.model(tokens, features, self._timestep_input(t_bucket, condition), features_mask)  # [B, 1+T, hidden]
        return self.action_decoder(out, embodiment_id)[:, -horizon:]                        # [B, T, A]

    def sample_time(self, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Flow time t in (0, 1], concentrated near 1 (clean actions): t = (s - Beta(a, b)) / s.

        As official ``FlowmatchingActionHead.sample_time``: the Beta draw (float32, global torch RNG, on the
        CPU) is cast to ``dtype`` first and t is computed in ``dtype`` (identical for float32 actions)."""
        c = self.config
        beta = torch.distributions.Beta(torch.tensor(float(c.noise_beta_alpha)), torch.tensor(float(c.noise_beta_beta)))
        sample = beta.sample((batch,)).to(device=device, dtype=dtype)                     # [B]
        return (c.noise_s - sample) / c.noise_s                                           # [B]

    def flow_terms(self, features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor,
                   actions: torch.Tensor, embodiment_id: torch.Tensor,
                   condition: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One flow-matching draw: noise and t, the noisy input and the predicted velocity.

        -> {"pred", "target", "noisy" [B, T, A], "t_bucket" [B]} (the anchor of stage 3 reuses noisy/t_bucket)."""
        b = actions.shape[0]
        noise = torch.randn_like(actions)                                                   # [B, T, A]
        t = self.sample_time(b, actions.device, actions.dtype)                              # [B]
        noisy = (1 - t[:, None, None]) * noise + t[:, None, None] * actions                 # [B, T, A]
        target = actions - noise                                                            # [B, T, A]
        t_bucket = (t * self.config.num_timestep_buckets).long()                            # [B]
        pred = self.velocity(features, features_mask, state, noisy, t_bucket, embodiment_id, condition)  # [B, T, A]
        return {"pred": pred, "target": target, "noisy": noisy, "t_bucket": t_bucket}

    def loss(self, features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor, actions: torch.Tensor,
             action_mask: torch.Tensor, embodiment_id: torch.Tensor, weights: torch.Tensor | None = None,
             condition: torch.Tensor | None = None) -> torch.Tensor:
        """Flow-matching loss; actions [B, T, A] normalised and padded, action_mask [B, T, A] (1 = real);
        ``weights`` [B] per-sample loss weights (reward-weighted FM; None = plain FM); ``condition`` [B]
        advantage-condition indices (conditioned heads only)."""
        terms = self.flow_terms(features, features_mask, state, actions, embodiment_id, condition)
        return masked_mse(terms["pred"], terms["target"], action_mask, weights)

    def initial_noise(self, batch: int, device: torch.device, dtype: torch.dtype,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The Gaussian start of the flow, [B, T, A]: drawn in float32 on the generator's device, then cast."""
        c = self.config
        shape = (batch, c.action_horizon, c.action_dim)
        x = torch.randn(shape, generator=generator, device=generator.device if generator else device,
                        dtype=torch.float32)
        return x.to(device=device, dtype=dtype)                                            # [B, T, A]

    def sampling_condition(self, condition: str | None, guidance: float | None) -> tuple[int | None, float]:
        """(condition name or None, guidance or None) -> (condition index or None, guidance): the config's
        defaults for a conditioned head; a plain head takes neither (one-line ValueError)."""
        c = self.config
        if not self.conditioned:
            if condition is not None or (guidance is not None and guidance != 1.0):
                raise ValueError(f"condition = {condition!r}, guidance = {guidance!r}: this policy has no advantage "
                                 "conditioning (train it with `train rl --method acfm`)")
            return None, 1.0
        name = c.default_condition if condition is None else condition
        g = c.default_guidance if guidance is None else guidance
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
            raise ValueError(f"guidance = {g!r}: must be a finite number >= 0")
        return condition_index(name), float(g)

    @staticmethod
    def two_pass(condition: int | None, guidance: float) -> bool:
        """Whether sampling runs classifier-free guidance (a conditional and an unconditional half per step)."""
        return condition is not None and not (guidance == 1.0 or condition == UNCONDITIONED or guidance == 0.0)

    @staticmethod
    def doubled_context(features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor,
                        embodiment_id: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The per-chunk inputs of a guided step, each repeated for the two halves: features [2B, L, D],
        mask [2B, L], state [2B, 1, S], embodiment [2B]. Built once per chunk, so the same features tensor
        reaches every step and the DiT's cross-attention K/V cache (``DiT.inference_context``) hits."""
        return (torch.cat([features, features]), torch.cat([features_mask, features_mask]),
                torch.cat([state, state]), torch.cat([embodiment_id, embodiment_id]))

    def guided_velocity(self, features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor,
                        x: torch.Tensor, t_bucket: torch.Tensor, embodiment_id: torch.Tensor,
                        condition: int | None, guidance: float,
                        doubled: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """The sampling velocity [B, T, A]: plain, conditional (w = 1 or condition "unconditioned": one pass),
        or classifier-free guided v_u + w (v_c - v_u) (both halves in one doubled batch; ``doubled``: the
        ``doubled_context`` of this chunk, built here when not given)."""
        if condition is None:
            return self.velocity(features, features_mask, state, x, t_bucket, embodiment_id)
        b = x.shape[0]
        if not self.two_pass(condition, guidance):
            idx = UNCONDITIONED if guidance == 0.0 else condition
            cond = torch.full((b,), idx, device=x.device, dtype=torch.long)
            return self.velocity(features, features_mask, state, x, t_bucket, embodiment_id, cond)
        cond = torch.cat([torch.full((b,), condition, device=x.device, dtype=torch.long),
                          torch.full((b,), UNCONDITIONED, device=x.device, dtype=torch.long)])      # [2B]
        f2, m2, s2, e2 = doubled if doubled is not None else self.doubled_context(features, features_mask, state,
                                                                                  embodiment_id)
        v = self.velocity(f2, m2, s2, torch.cat([x, x]), torch.cat([t_bucket, t_bucket]), e2, cond)  # [2B, T, A]
        v_cond, v_uncond = v[:b], v[b:]
        return v_uncond + guidance * (v_cond - v_uncond)                                           # [B, T, A]

    @torch.no_grad()
    def sample(self, features: torch.Tensor, features_mask: torch.Tensor, state: torch.Tensor,
               embodiment_id: torch.Tensor, num_steps: int | None = None,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               condition: str | None = None, guidance: float | None = None) -> torch.Tensor:
        """Euler-integrate the flow from Gaussian noise (``noise`` [B, T, A], else drawn) -> normalised actions [B, T, A].

        A conditioned head samples under ``condition`` (a name of ADVANTAGE_CONDITIONS) with classifier-free
        ``guidance`` (defaults: the config's ``default_condition`` / ``default_guidance``)."""
        c = self.config
        cond, g = self.sampling_condition(condition, guidance)
        steps = num_steps or c.num_inference_steps
        b = features.shape[0]
        x = noise if noise is not None else self.initial_noise(b, features.device, features.dtype, generator)
        dt = 1.0 / steps
        doubled = None                                          # CFG: the doubled context, once per chunk
        if self.two_pass(cond, g):
            doubled = self.doubled_context(features, features_mask, state, embodiment_id)
        for k in range(steps):
            t_bucket = torch.full((b,), int(k / steps * c.num_timestep_buckets), device=x.device, dtype=torch.long)
            x = x + dt * self.guided_velocity(features, features_mask, state, x, t_bucket, embodiment_id, cond, g,
                                              doubled)
        return x

"""Reward heads on top of the GR00T N1 backbone: the seed's MLP head and the diagram's DiT head.

Both score a clip of H consecutive frames (H = reward horizon, 1 = one frame) from the backbone's
vision-language tokens of each frame (prompt = the task instruction, never the feedback text of
the frame being scored) and the robot state of each frame.

* ``MLPRewardHead`` — the seed's design: one pooled token per frame (``pool="first"`` is the seed's
  first-token choice; note that in a causal LLM the first token sees nothing but itself, so it
  carries no image information — ``"mean"``, the masked mean over the prompt, is the default),
  concatenated with a state projection over the H frames, then an MLP to one number.
* ``DiTRewardHead`` — the seed diagram: state tokens (embodiment state encoder, initialisable from
  the policy's and frozen) plus a reward token (reward encoder of the current estimate) go through
  a DiT that cross-attends to the VL tokens of all H frames; the reward decoder reads the reward
  token. The estimate is fed back ``refine_steps`` times (the diagram's loop), starting from 0; the
  refinement step plays the role of the DiT's timestep.

Actions (``action_horizon`` = K > 0): the head also reads the first K actions of a chunk (normalised
with the processor's action statistics, zero-padded to the model's action width A), so the reward
tells apart candidate chunks from the same observation (best-of-N). The MLP head flattens the K x A
actions through a small projection that joins its input; the DiT head embeds each action with an
embodiment-specific MLP (the style of the policy's state encoder) plus a learned position, as K
action tokens between the state tokens and the reward token. With K = 0 (the default) neither head
has an action module: checkpoints written before actions existed load and score unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .action_head import CategorySpecificMLP
from .configuration import ConfigError
from .dit import DiT

HEAD_KINDS = ("mlp", "dit")
POOLS = ("first", "mean", "last")
OUTPUTS = ("value", "logit")


@dataclass
class RewardHeadConfig:
    kind: str = "dit"
    horizon: int = 1               # frames per scored clip (the reward horizon H)
    pool: str = "mean"             # mlp head: which token of each frame's sequence to use
    hidden_size: int = 512         # mlp head hidden width; dit head state-encoder hidden width
    use_state: bool = True
    num_layers: int = 4            # dit head
    num_heads: int = 8
    head_dim: int = 64
    refine_steps: int = 2
    dropout: float = 0.0
    output: str = "value"          # the head's number is the reward itself, or a logit (trained with BCE/focal)
    reward_range: tuple = (0.0, 1.0)   # "logit": sigmoid mapped onto this range (binary 0..1, scores -1..1)
    action_horizon: int = 0        # K: actions of a chunk the head reads (0 = none: frames + state + instruction)

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ConfigError(f"RewardHeadConfig.output = {self.output!r}: allowed {OUTPUTS}")
        try:
            lo, hi = (float(v) for v in self.reward_range)
        except (TypeError, ValueError):
            raise ConfigError(f"RewardHeadConfig.reward_range = {self.reward_range!r}: expected (low, high)") from None
        if not lo < hi:
            raise ConfigError(f"RewardHeadConfig.reward_range = {self.reward_range!r}: low must be below high")
        self.reward_range = (lo, hi)
        if self.kind not in HEAD_KINDS:
            raise ConfigError(f"RewardHeadConfig.kind = {self.kind!r}: allowed {HEAD_KINDS}")
        if self.pool not in POOLS:
            raise ConfigError(f"RewardHeadConfig.pool = {self.pool!r}: allowed {POOLS}")
        for name in ("horizon", "hidden_size", "num_layers", "num_heads", "head_dim", "refine_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError(f"RewardHeadConfig.{name} = {v!r}: must be a positive integer")
        k = self.action_horizon
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f"RewardHeadConfig.action_horizon = {k!r}: must be an integer >= 0 (0 = no actions)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reward_range"] = list(self.reward_range)
        return d

    def to_reward(self, raw: torch.Tensor) -> torch.Tensor:
        """The head's raw output -> a reward on the target's scale (identity for ``value``;
        ``low + (high - low) * sigmoid(raw)`` for ``logit``)."""
        if self.output == "value":
            return raw
        lo, hi = self.reward_range
        return lo + (hi - lo) * torch.sigmoid(raw)


def pool_tokens(features: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
    """features [N, L, D], mask [N, L] (1 = real token) -> [N, D].

    ``first``: the first REAL token of each row (``mask.argmax``: position 0 with right padding, the first
    unpadded position with the official format's left padding); ``mean``: the mean over real tokens;
    ``last``: the last real token."""
    rows = torch.arange(features.shape[0], device=features.device)
    if pool == "first":
        return features[rows, mask.long().argmax(1)]                               # first 1 of each row
    m = mask.to(features.dtype)
    if pool == "mean":
        return (features * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
    last = (mask.long().cumsum(1).argmax(1))                                   # index of the last real token
    return features[rows, last]


ACTION_FEATURES = 64   # width of the MLP head's action projection


def check_actions(actions: torch.Tensor | None, config: RewardHeadConfig, batch: int, action_dim: int) -> None:
    """The head's action input matches its config: None for K = 0, else [B, K, A] (shapes known at trace time)."""
    k = config.action_horizon
    if k == 0:
        if actions is not None:
            raise ValueError("actions: this reward head takes no actions (action_horizon = 0)")
        return
    if actions is None:
        raise ValueError(f"actions: this reward head needs [B, {k}, {action_dim}] actions (action_horizon = {k})")
    if tuple(actions.shape) != (batch, k, action_dim):
        raise ValueError(f"actions: expected [{batch}, {k}, {action_dim}] (B, action_horizon, padded action width), "
                         f"got {list(actions.shape)}")


class MLPRewardHead(nn.Module):
    def __init__(self, config: RewardHeadConfig, feature_dim: int, state_dim: int, action_dim: int = 32, **_):
        super().__init__()
        self.config, self.action_dim = config, action_dim
        s = 64 if config.use_state else 0
        a = ACTION_FEATURES if config.action_horizon else 0
        self.state_proj = nn.Linear(state_dim, s) if config.use_state else None
        self.action_proj = (nn.Sequential(nn.Linear(config.action_horizon * action_dim, a), nn.GELU())
                            if config.action_horizon else None)
        self.mlp = nn.Sequential(nn.Linear(config.horizon * (feature_dim + s) + a, config.hidden_size), nn.GELU(),
                                 nn.Dropout(config.dropout), nn.Linear(config.hidden_size, 1))

    def forward(self, features: torch.Tensor, mask: torch.Tensor, state: torch.Tensor,
                embodiment_id: torch.Tensor, actions: torch.Tensor | None = None) -> list[torch.Tensor]:
        """features [B, H, L, D]; mask [B, H, L]; state [B, H, S]; actions [B, K, A] (K > 0) -> [reward [B]]."""
        b, h, l, d = features.shape
        check_actions(actions, self.config, b, self.action_dim)
        x = pool_tokens(features.reshape(b * h, l, d), mask.reshape(b * h, l), self.config.pool)  # [B*H, D]
        x = x.reshape(b, h, d)                                                                  # [B, H, D]
        if self.state_proj is not None:
            x = torch.cat([x, self.state_proj(state.to(x.dtype))], dim=-1)                      # [B, H, D+64]
        x = x.reshape(b, -1)                                                                    # [B, H*(D+64)]
        if self.action_proj is not None:
            x = torch.cat([x, self.action_proj(actions.to(x.dtype).reshape(b, -1))], dim=-1)    # [B, H*(D+64)+64]
        return [self.mlp(x).squeeze(-1)]                                                       # [B]


class DiTRewardHead(nn.Module):
    def __init__(self, config: RewardHeadConfig, feature_dim: int, state_dim: int, num_embodiments: int = 32,
                 timestep_channels: int = 256, action_dim: int = 32):
        super().__init__()
        self.config, self.action_dim = config, action_dim
        dim = config.num_heads * config.head_dim
        self.state_encoder = CategorySpecificMLP(num_embodiments, state_dim, config.hidden_size, dim)
        if config.action_horizon:
            self.action_encoder = CategorySpecificMLP(num_embodiments, action_dim, config.hidden_size, dim)
            self.action_position = nn.Embedding(config.action_horizon, dim)
        self.reward_encoder = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.reward_query = nn.Parameter(0.02 * torch.randn(dim))
        self.frame_embedding = nn.Embedding(config.horizon + 1, dim)
        self.model = DiT(config.num_layers, config.num_heads, config.head_dim, output_dim=dim,
                         cross_attention_dim=feature_dim, timestep_channels=timestep_channels, dropout=config.dropout)
        self.reward_decoder = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 1))

    def forward(self, features: torch.Tensor, mask: torch.Tensor, state: torch.Tensor,
                embodiment_id: torch.Tensor, actions: torch.Tensor | None = None) -> list[torch.Tensor]:
        """features [B, H, L, D]; mask [B, H, L]; state [B, H, S]; actions [B, K, A] (K > 0)
        -> rewards of each refinement step, [B] each."""
        b, h, l, d = features.shape
        check_actions(actions, self.config, b, self.action_dim)
        context = features.reshape(b, h * l, d)                                     # [B, H*L, D]
        context_mask = mask.reshape(b, h * l).bool()                                # [B, H*L]
        positions = self.frame_embedding(torch.arange(h + 1, device=features.device))  # [H+1, dim]
        if self.config.use_state:
            state_tokens = self.state_encoder(state.to(features.dtype), embodiment_id)  # [B, H, dim]
        else:
            state_tokens = torch.zeros(b, h, positions.shape[-1], device=features.device, dtype=features.dtype)
        state_tokens = state_tokens + positions[:h]                                # [B, H, dim]
        if actions is not None:
            steps = torch.arange(actions.shape[1], device=features.device)           # [K]
            action_tokens = self.action_encoder(actions.to(features.dtype), embodiment_id)  # [B, K, dim]
            action_tokens = action_tokens + self.action_position(steps)
            state_tokens = torch.cat([state_tokens, action_tokens], dim=1)          # [B, H+K, dim]
        reward = torch.zeros(b, 1, device=features.device, dtype=features.dtype)   # [B, 1]
        outputs = []
        for k in range(self.config.refine_steps):
            reward_token = self.reward_encoder(reward) + self.reward_query + positions[h]     # [B, dim]
            tokens = torch.cat([state_tokens, reward_token[:, None]], dim=1)               # [B, H(+K)+1, dim]
            step = torch.full((b,), k, device=features.device, dtype=torch.long)
            out = self.model(tokens, context, step, context_mask)                          # [B, H(+K)+1, dim]
            reward = self.reward_decoder(out[:, -1])                                        # [B, 1]
            outputs.append(reward.squeeze(-1))
        return outputs


def build_reward_head(config: RewardHeadConfig, feature_dim: int, state_dim: int, num_embodiments: int,
                      action_dim: int = 32) -> nn.Module:
    """``action_dim``: the model's padded action width (the actions the head reads when ``action_horizon`` > 0)."""
    cls = MLPRewardHead if config.kind == "mlp" else DiTRewardHead
    return cls(config, feature_dim, state_dim, num_embodiments=num_embodiments, action_dim=action_dim)


def reward_loss(outputs: list[torch.Tensor], target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean over refinement steps of MSE (``mse``) or BCE-with-logits (``bce``, targets in [0, 1])."""
    fn = F.mse_loss if kind == "mse" else F.binary_cross_entropy_with_logits
    return torch.stack([fn(o.float(), target.float()) for o in outputs]).mean()

"""Model configuration of GR00T N1: validated dataclasses and the two presets.

``gr00t-n1-2b`` is the official architecture (nvidia/GR00T-N1-2B, 2,190,016,752 parameters):
an Eagle2 backbone (SigLIP-so400m vision tower at 224 px, pixel shuffle, MLP projector,
SmolLM2-1.7B truncated to 12 layers, 2048 -> 1536 projection) and a flow-matching action head
(embodiment-specific MLPs and a 16-block DiT). ``tiny`` is the same architecture shrunk to a few
million parameters for tests and the CPU demo. Every field is checked on construction; an error
names the field, the value and what is allowed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# the advantage conditions of ActionHeadConfig.advantage_conditioning, in embedding-row order
ADVANTAGE_CONDITIONS = ("unconditioned", "good", "bad")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what is allowed."""


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{type(obj).__name__}.{name} = {value!r}: must be a positive integer")


def _divides(obj: Any, big: str, small: str) -> None:
    if getattr(obj, big) % getattr(obj, small):
        raise ConfigError(f"{type(obj).__name__}.{big} = {getattr(obj, big)} must be divisible by "
                          f"{small} = {getattr(obj, small)}")


@dataclass
class VisionConfig:
    """SigLIP vision tower (no pooling head: GR00T uses every patch token)."""

    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_layers: int = 27
    num_heads: int = 16
    layer_norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        _positive(self, "image_size", "patch_size", "hidden_size", "intermediate_size", "num_layers", "num_heads")
        _divides(self, "image_size", "patch_size")
        _divides(self, "hidden_size", "num_heads")

    @property
    def grid(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size


@dataclass
class LanguageConfig:
    """Llama LLM (SmolLM2 family), kept only up to ``select_layer`` layers."""

    vocab_size: int = 49164          # SmolLM2's 49,152 + 12 Eagle tokens (<img>, <IMG_CONTEXT>, ...)
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_layers: int = 24             # layers of the full LLM (for reference; only select_layer are built)
    select_layer: int = 12           # layers kept; their output (after the final RMSNorm) is the VL feature
    num_heads: int = 32
    num_kv_heads: int = 32
    rope_theta: float = 130000.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 8192

    def __post_init__(self) -> None:
        _positive(self, "vocab_size", "hidden_size", "intermediate_size", "num_layers", "select_layer",
                  "num_heads", "num_kv_heads", "max_position_embeddings")
        if self.select_layer > self.num_layers:
            raise ConfigError(f"LanguageConfig.select_layer = {self.select_layer} must be <= num_layers = "
                              f"{self.num_layers}")
        _divides(self, "hidden_size", "num_heads")
        _divides(self, "num_heads", "num_kv_heads")


@dataclass
class BackboneConfig:
    """Eagle2 vision-language backbone: vision -> pixel shuffle -> mlp1 -> LLM -> linear."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    downsample_ratio: float = 0.5    # pixel shuffle: 2x2 patches -> one token of 4x the width
    project_to_dim: int = 1536       # width of backbone_features

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.language, dict):
            self.language = LanguageConfig(**self.language)
        if self.downsample_ratio != 0.5:
            raise ConfigError(f"BackboneConfig.downsample_ratio = {self.downsample_ratio}: only 0.5 is supported")
        if self.vision.grid % 2:
            raise ConfigError(f"BackboneConfig.vision: image_size / patch_size = {self.vision.grid} must be even "
                              "for the 0.5 pixel shuffle")
        _positive(self, "project_to_dim")

    @property
    def num_image_tokens(self) -> int:
        """Tokens one image contributes to the LLM sequence (64 for 224 px, patch 14)."""
        return (self.vision.grid // 2) ** 2


@dataclass
class ActionHeadConfig:
    """Flow-matching action head: embodiment MLPs around a DiT that cross-attends to VL tokens."""

    action_dim: int = 32             # padded action width (robot actions are zero-padded to it)
    action_horizon: int = 16         # actions per chunk
    max_state_dim: int = 64          # padded state width
    hidden_size: int = 1024          # state-encoder hidden width and DiT output width
    input_embedding_dim: int = 1536  # token width inside the DiT (= num_heads * head_dim)
    backbone_embedding_dim: int = 1536  # width of the VL tokens the DiT cross-attends to
    max_num_embodiments: int = 32
    num_layers: int = 16
    num_heads: int = 32
    head_dim: int = 48
    dropout: float = 0.2
    max_seq_len: int = 1024          # rows of the learned action position embedding
    timestep_channels: int = 256     # sinusoidal features fed to the DiT timestep MLP
    num_timestep_buckets: int = 1000
    num_inference_steps: int = 4
    noise_beta_alpha: float = 1.5
    noise_beta_beta: float = 1.0
    noise_s: float = 0.999
    # advantage conditioning (stage 3, RECAP style): a learned {unconditioned, good, bad} embedding is added
    # to the DiT's timestep embedding; off for every preset and for checkpoints written before it existed
    advantage_conditioning: bool = False
    default_condition: str = "good"  # what sampling conditions on when the caller does not say
    default_guidance: float = 1.0    # classifier-free guidance w: v_uncond + w (v_cond - v_uncond); 1 = plain

    def __post_init__(self) -> None:
        if not isinstance(self.advantage_conditioning, bool):
            raise ConfigError(f"ActionHeadConfig.advantage_conditioning = {self.advantage_conditioning!r}: must be "
                              "true or false")
        if self.default_condition not in ADVANTAGE_CONDITIONS:
            raise ConfigError(f"ActionHeadConfig.default_condition = {self.default_condition!r}: allowed "
                              f"{ADVANTAGE_CONDITIONS}")
        g = self.default_guidance
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
            raise ConfigError(f"ActionHeadConfig.default_guidance = {g!r}: must be a finite number >= 0")
        self.default_guidance = float(g)
        _positive(self, "action_dim", "action_horizon", "max_state_dim", "hidden_size", "input_embedding_dim",
                  "backbone_embedding_dim", "max_num_embodiments", "num_layers", "num_heads", "head_dim",
                  "max_seq_len", "timestep_channels", "num_timestep_buckets", "num_inference_steps")
        if self.num_heads * self.head_dim != self.input_embedding_dim:
            raise ConfigError(f"ActionHeadConfig: num_heads * head_dim = {self.num_heads} * {self.head_dim} must "
                              f"equal input_embedding_dim = {self.input_embedding_dim}")
        if self.action_horizon > self.max_seq_len:
            raise ConfigError(f"ActionHeadConfig.action_horizon = {self.action_horizon} must be <= max_seq_len = "
                              f"{self.max_seq_len}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ActionHeadConfig.dropout = {self.dropout}: must be in [0, 1)")
        if self.timestep_channels % 2 or self.input_embedding_dim % 2:
            raise ConfigError("ActionHeadConfig: timestep_channels and input_embedding_dim must be even")


@dataclass
class ModelConfig:
    """A whole GR00T N1 network: backbone + action head."""

    name: str = "gr00t-n1-2b"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if isinstance(self.action_head, dict):
            self.action_head = ActionHeadConfig(**self.action_head)
        if self.backbone.project_to_dim != self.action_head.backbone_embedding_dim:
            raise ConfigError(f"backbone.project_to_dim = {self.backbone.project_to_dim} must equal "
                              f"action_head.backbone_embedding_dim = {self.action_head.backbone_embedding_dim}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"ModelConfig: unknown fields {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**data)


# Vocabulary of the built-in tiny tokenizer (tokenizer.build_tiny_tokenizer) fits in this.
TINY_VOCAB_SIZE = 512


def _gr00t_n1_2b() -> ModelConfig:
    return ModelConfig(name="gr00t-n1-2b")


def _tiny() -> ModelConfig:
    return ModelConfig(
        name="tiny",
        backbone=BackboneConfig(
            vision=VisionConfig(image_size=56, patch_size=14, hidden_size=64, intermediate_size=128,
                                num_layers=2, num_heads=4),
            language=LanguageConfig(vocab_size=TINY_VOCAB_SIZE, hidden_size=64, intermediate_size=128,
                                    num_layers=2, select_layer=2, num_heads=4, num_kv_heads=2,
                                    max_position_embeddings=512),
            project_to_dim=64,
        ),
        action_head=ActionHeadConfig(hidden_size=64, input_embedding_dim=64, backbone_embedding_dim=64,
                                     num_layers=4, num_heads=4, head_dim=16, dropout=0.0, max_seq_len=32,
                                     timestep_channels=32),
    )


def _small() -> ModelConfig:
    """Sized for the seed data (96 px caches, ~10k frames per dataset, minutes on one GPU): 84 px images
    (36 patches), 4-layer 128-wide vision and language towers, the tiny tokenizer; 5.5 M parameters (1.4 M backbone)."""
    return ModelConfig(
        name="small",
        backbone=BackboneConfig(
            vision=VisionConfig(image_size=84, patch_size=14, hidden_size=128, intermediate_size=256,
                                num_layers=4, num_heads=4),
            language=LanguageConfig(vocab_size=TINY_VOCAB_SIZE, hidden_size=128, intermediate_size=256,
                                    num_layers=4, select_layer=4, num_heads=4, num_kv_heads=2,
                                    max_position_embeddings=512),
            project_to_dim=128,
        ),
        action_head=ActionHeadConfig(hidden_size=128, input_embedding_dim=128, backbone_embedding_dim=128,
                                     num_layers=4, num_heads=4, head_dim=32, dropout=0.0, max_seq_len=32,
                                     timestep_channels=64),
    )


PRESETS = {"gr00t-n1-2b": _gr00t_n1_2b, "tiny": _tiny, "small": _small}

# The official parameter count of nvidia/GR00T-N1-2B (architecture doc, section 5).
OFFICIAL_N1_2B_PARAMETERS = 2_190_016_752


def preset(name: str) -> ModelConfig:
    """Return a fresh configuration for a preset name (``gr00t-n1-2b``, ``small`` or ``tiny``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown model preset {name!r}; allowed: {sorted(PRESETS)}") from None

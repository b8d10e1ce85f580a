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

from .normalization import LEGACY, OFFICIAL, SEMANTICS, StatsError, check_mode

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
    # whether the DiT's cross-attention hides padded VL tokens: False as official N1 (its DiT passes no mask);
    # checkpoints written before this field masked them and keep doing so (ModelConfig.from_dict)
    mask_context: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.mask_context, bool):
            raise ConfigError(f"ActionHeadConfig.mask_context = {self.mask_context!r}: must be true or false")
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


_GROUPS = ("video", "state", "action")


def _key_list(value: Any, group: str) -> list[str] | None:
    """None, or a list of "<group>.<name>" keys (a comma-separated string is split); ConfigError otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"DataConfig.{group}_keys = {value!r}: must be a non-empty list of '{group}.<name>' keys "
                          "(or null for every key of modality.json in its order)")
    out = []
    for key in value:
        if not isinstance(key, str) or not key.startswith(f"{group}.") or len(key) <= len(group) + 1:
            raise ConfigError(f"DataConfig.{group}_keys: {key!r} is not a '{group}.<name>' key")
        if key in out:
            raise ConfigError(f"DataConfig.{group}_keys: {key!r} is given twice")
        out.append(key)
    return out


@dataclass
class DataConfig:
    """Which modality keys, in which order, make the model's state and action vectors and its cameras.

    The role of the official data config (Isaac-GR00T ``gr00t/experiment/data_config.py``: each class lists
    ``video_keys``, ``state_keys``, ``action_keys``; ``ConcatTransform`` concatenates in exactly that order).
    ``None`` for a group keeps this project's default: every key of the dataset's ``meta/modality.json``, in
    its order. ``state_mode`` / ``action_mode`` (None: the ModalityConfig default, min_max) pick the
    normalisation of every key of the group. ``normalization`` is the semantics of normalization.py:
    ``"official"`` for new models, ``"legacy"`` for checkpoints written before the field existed (see
    ``ModelConfig.from_dict``). Saved in the checkpoint's JSON as ``model.data``.
    """

    video_keys: list[str] | None = None
    state_keys: list[str] | None = None
    action_keys: list[str] | None = None
    state_mode: str | None = None
    action_mode: str | None = None
    normalization: str = OFFICIAL

    def __post_init__(self) -> None:
        for group in _GROUPS:
            setattr(self, f"{group}_keys", _key_list(getattr(self, f"{group}_keys"), group))
        if self.normalization not in SEMANTICS:
            raise ConfigError(f"DataConfig.normalization = {self.normalization!r}: allowed {SEMANTICS}")
        for group in ("state", "action"):
            mode = getattr(self, f"{group}_mode")
            if mode is not None:
                try:
                    check_mode(mode, f"DataConfig.{group}_mode", self.normalization, invertible=group == "action")
                except StatsError as e:
                    raise ConfigError(str(e)) from None

    def resolve(self, available: dict, source: str = "meta/modality.json") -> dict:
        """The dataset's modality -> this config's selection, in this config's order.

        ``available`` is ``{"video": [name, ...], "state": {name: dim}, "action": {name: dim}}`` (what
        ``FrameCache.modality_dims()`` returns, names without the group prefix); the result has the same
        shape (+ ``state_mode`` / ``action_mode`` when set), ready for ``ModalityConfig(**result, ...)``.
        An unknown key is a one-line ConfigError naming the key, ``source`` and the keys it has."""
        out: dict = {}
        for group in _GROUPS:
            have = available.get(group) or ({} if group != "video" else [])
            names = list(have)
            wanted = getattr(self, f"{group}_keys")
            if wanted is None:
                chosen = names
            else:
                chosen = []
                for key in wanted:
                    name = key.split(".", 1)[1]
                    if name not in names:
                        listed = ", ".join(f"{group}.{n}" for n in names) or "none"
                        raise ConfigError(f"{group}_keys: {key} is not in {source} (its {group} keys: {listed})")
                    chosen.append(name)
            out[group] = chosen if group == "video" else {n: int(have[n]) for n in chosen}
        for group in ("state", "action"):
            if getattr(self, f"{group}_mode") is not None:
                out[f"{group}_mode"] = getattr(self, f"{group}_mode")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "DataConfig":
        """From a checkpoint / YAML mapping; a missing ``normalization`` means the legacy semantics."""
        if data is None:
            return cls(normalization=LEGACY)
        if not isinstance(data, dict):
            raise ConfigError(f"DataConfig: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"DataConfig: unknown fields {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**({"normalization": LEGACY} | data))


# Official data configs that map onto this project's processor (one camera list, concatenated state and
# action, one normalisation mode per group): Isaac-GR00T gr00t/experiment/data_config.py, N1 era.
# ``gr1_arms_only`` and the panda configs are left out: their states are sin/cos-encoded or rotation-converted
# and unnormalised, which this processor does not do.
DATA_CONFIGS: dict[str, dict] = {
    "wheeled": dict(video_keys=["video.ego_view"],
                    state_keys=["state.left_wheel", "state.right_wheel", "state.acceleration"],
                    action_keys=["action.wheel_commands"], state_mode="min_max", action_mode="min_max"),
    "so100": dict(video_keys=["video.webcam"], state_keys=["state.single_arm", "state.gripper"],
                  action_keys=["action.single_arm", "action.gripper"], state_mode="min_max", action_mode="min_max"),
    "so100_dualcam": dict(video_keys=["video.front", "video.wrist"], state_keys=["state.single_arm", "state.gripper"],
                          action_keys=["action.single_arm", "action.gripper"], state_mode="min_max",
                          action_mode="min_max"),
    "unitree_g1": dict(video_keys=["video.rs_view"],
                       state_keys=["state.left_arm", "state.right_arm", "state.left_hand", "state.right_hand"],
                       action_keys=["action.left_arm", "action.right_arm", "action.left_hand", "action.right_hand"],
                       state_mode="min_max", action_mode="min_max"),
}


def data_config(name: str) -> DataConfig:
    """A named data config of DATA_CONFIGS (official semantics)."""
    try:
        return DataConfig(**DATA_CONFIGS[name])
    except KeyError:
        raise ConfigError(f"unknown data config {name!r}; allowed: {sorted(DATA_CONFIGS)} or a YAML/JSON file") from None


@dataclass
class ModelConfig:
    """A whole GR00T N1 network: backbone + action head, and the data layout / normalisation it was trained on."""

    name: str = "gr00t-n1-2b"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    action_head: ActionHeadConfig = field(default_factory=ActionHeadConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if isinstance(self.action_head, dict):
            self.action_head = ActionHeadConfig(**self.action_head)
        if self.data is None or isinstance(self.data, dict):
            self.data = DataConfig.from_dict(self.data)
        if not isinstance(self.data, DataConfig):
            raise ConfigError(f"ModelConfig.data = {self.data!r}: must be a DataConfig or a mapping")
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
        # a checkpoint written before ``data`` existed normalised with the legacy semantics, and one written
        # before ``action_head.mask_context`` masked the padded VL tokens: both keep what they did
        data = {"data": None} | data
        if isinstance(data.get("action_head"), dict):
            data["action_head"] = {"mask_context": True} | data["action_head"]
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


# -- the data config on a command line ----------------------------------------------------------
def add_data_config_arguments(parser) -> None:
    """``--data-config NAME|FILE``, ``--video-keys``, ``--state-keys``, ``--action-keys``, ``--state-mode``,
    ``--action-mode`` on an argparse parser (a training command's); read back with ``data_config_from_args``."""
    from .normalization import ACTION_MODES, OFFICIAL_MODES

    g = parser.add_argument_group("data layout (the official data config's keys and order)")
    g.add_argument("--data-config", metavar="NAME|FILE",
                   help=f"a named layout ({', '.join(sorted(DATA_CONFIGS))}) or a YAML/JSON file with video_keys, "
                        "state_keys, action_keys, state_mode, action_mode (default: every key of modality.json)")
    for group in _GROUPS:
        g.add_argument(f"--{group}-keys", metavar="KEYS",
                       help=f"comma-separated {group} keys in vector order, e.g. {group}.a,{group}.b "
                            "(overrides --data-config)")
    g.add_argument("--state-mode", choices=OFFICIAL_MODES, help="state normalisation (default min_max)")
    g.add_argument("--action-mode", choices=ACTION_MODES, help="action normalisation (default min_max)")


def load_data_config(spec: str) -> DataConfig:
    """A DATA_CONFIGS name, or a YAML/JSON file holding a DataConfig mapping."""
    from pathlib import Path

    if spec in DATA_CONFIGS:
        return data_config(spec)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--data-config {spec}: neither a named data config ({', '.join(sorted(DATA_CONFIGS))}) "
                          "nor a file")
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"--data-config {spec}: not valid YAML/JSON ({' '.join(str(e).split())})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--data-config {spec}: expected a mapping of DataConfig fields, got {type(doc).__name__}")
    known = {f.name for f in fields(DataConfig)}
    if set(doc) - known:
        raise ConfigError(f"--data-config {spec}: unknown fields {sorted(set(doc) - known)}; allowed: {sorted(known)}")
    try:
        return DataConfig(**doc)                      # a new layout: official semantics unless it says otherwise
    except ConfigError as e:
        raise ConfigError(f"--data-config {spec}: {e}") from None


def data_config_from_args(args) -> DataConfig:
    """The DataConfig of parsed ``add_data_config_arguments`` flags (official semantics; no flags: the default)."""
    base = load_data_config(args.data_config) if getattr(args, "data_config", None) else DataConfig()
    changes = {f"{g}_keys": getattr(args, f"{g}_keys") for g in _GROUPS if getattr(args, f"{g}_keys", None)}
    changes |= {f"{g}_mode": getattr(args, f"{g}_mode") for g in ("state", "action") if getattr(args, f"{g}_mode", None)}
    return DataConfig(**(base.to_dict() | changes))

"""Observation dicts <-> model tensors for GR00T N1 (images, prompt, state, actions).

An observation holds camera frames (``video.<name>``: uint8 [H, W, 3], or [B, H, W, 3] / [B, T, H, W, 3]
when batched), the state (``state.<name>`` arrays, or the concatenated ``observation.state``) and the
instruction (``annotation.human.action.task_description`` or ``task``: a string, or a list of B).
``Gr00tProcessor.__call__`` crops and resizes every frame as GR00T does (95 % crop, resize to the
vision tower's size, scale to [-1, 1]), writes the chat prompt with one ``<img><IMG_CONTEXT>*T</img>``
block per frame, normalises and zero-pads the state (and the actions when training), and adds the
embodiment id. ``decode_actions`` inverts the action normalisation back to robot units.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .configuration import ConfigError, ModelConfig
from .normalization import MODES, StatsError, normalize, unnormalize
from .tokenizer import IMAGE_CONTEXT, IMAGE_END, IMAGE_START

LANGUAGE_KEYS = ("annotation.human.action.task_description", "task")


@dataclass
class ModalityConfig:
    """Which observation keys the model reads and how they are normalised (saved with checkpoints)."""

    video: list[str] = field(default_factory=lambda: ["ego_view"])
    state: dict[str, int] = field(default_factory=lambda: {"left_wheel": 1, "right_wheel": 1, "acceleration": 1})
    action: dict[str, int] = field(default_factory=lambda: {"wheel_commands": 2})
    state_mode: str = "min_max"
    action_mode: str = "min_max"
    embodiment_tag: str = "new_embodiment"
    embodiment_id: int = 31
    crop_scale: float = 0.95

    def __post_init__(self) -> None:
        for name in ("state_mode", "action_mode"):
            if getattr(self, name) not in MODES:
                raise ConfigError(f"ModalityConfig.{name} = {getattr(self, name)!r}: allowed {MODES}")
        if not self.video:
            raise ConfigError("ModalityConfig.video is empty: GR00T needs at least one camera")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ConfigError(f"ModalityConfig.crop_scale = {self.crop_scale}: must be in (0, 1]")
        for group in ("state", "action"):
            for key, dim in getattr(self, group).items():
                if not isinstance(dim, int) or dim <= 0:
                    raise ConfigError(f"ModalityConfig.{group}[{key!r}] = {dim!r}: must be a positive integer")

    @property
    def state_dim(self) -> int:
        return sum(self.state.values())

    @property
    def action_dim(self) -> int:
        return sum(self.action.values())

    def to_dict(self) -> dict:
        return asdict(self)


def stats_from_lerobot(stats: dict, modality: ModalityConfig) -> dict:
    """Split LeRobot ``meta/stats.json`` (concatenated ``observation.state`` / ``action``) per modality key,
    in the order of the modality config -> ``{"state": {name: stats}, "action": {name: stats}}``."""
    out: dict = {}
    for group, column in (("state", "observation.state"), ("action", "action")):
        if column not in stats:
            raise StatsError(f"stats.json has no {column!r} entry; present: {sorted(stats)}")
        start, out[group] = 0, {}
        for name, dim in getattr(modality, group).items():
            entry = {}
            for stat, values in stats[column].items():
                values = list(np.asarray(values, dtype=np.float64).reshape(-1))
                if len(values) < start + dim:
                    raise StatsError(f"stats.json {column}.{stat} has {len(values)} values; the modality config "
                                     f"needs {modality.state_dim if group == 'state' else modality.action_dim}")
                entry[stat] = values[start:start + dim]
            out[group][name] = entry
            start += dim
    return out


def _frames(value, key: str) -> np.ndarray:
    """-> uint8 [B, T, H, W, 3] from [H, W, 3], [B, H, W, 3] or [B, T, H, W, 3] (batched flag decided by caller)."""
    a = np.asarray(value)
    if a.dtype != np.uint8 or a.shape[-1] != 3 or a.ndim not in (3, 4, 5):
        raise ValueError(f"observation[{key!r}]: expected uint8 RGB frames [..., H, W, 3], got {a.dtype} {a.shape}")
    return a


class Gr00tProcessor:
    """Turns observations into the tensor batch of ``Gr00tN1`` and model actions back into robot units."""

    def __init__(self, model_config: ModelConfig, modality: ModalityConfig, stats: dict, tokenizer):
        self.model_config = model_config
        self.modality = modality
        self.stats = stats
        self.tokenizer = tokenizer
        head = model_config.action_head
        if modality.state_dim > head.max_state_dim:
            raise ConfigError(f"state has {modality.state_dim} dims, the model takes at most {head.max_state_dim}")
        if modality.action_dim > head.action_dim:
            raise ConfigError(f"action has {modality.action_dim} dims, the model takes at most {head.action_dim}")
        if not 0 <= modality.embodiment_id < head.max_num_embodiments:
            raise ConfigError(f"ModalityConfig.embodiment_id = {modality.embodiment_id}: the model has "
                              f"{head.max_num_embodiments} embodiments (0..{head.max_num_embodiments - 1})")
        for group in ("state", "action"):
            for name in getattr(modality, group):
                if name not in stats.get(group, {}):
                    raise StatsError(f"normalisation statistics lack {group}.{name}; present: "
                                     f"{sorted(stats.get(group, {}))}")

    # -- images and prompt ------------------------------------------------------------------
    def image_tensor(self, frames: np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float [N, 3, S, S] in [-1, 1]; centre crop, or a random crop with a generator."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # [N, 3, H, W]
        h, w = x.shape[-2:]
        ch, cw = max(1, round(h * self.modality.crop_scale)), max(1, round(w * self.modality.crop_scale))
        if generator is None:
            top, left = (h - ch) // 2, (w - cw) // 2
        else:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        x = x[:, :, top:top + ch, left:left + cw]                                       # [N, 3, ch, cw]
        size = self.model_config.backbone.vision.image_size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x / 255.0 - 0.5) / 0.5                                                  # [N, 3, S, S]

    def prompt(self, instruction: str, num_images: int) -> str:
        block = IMAGE_START + IMAGE_CONTEXT * self.model_config.backbone.num_image_tokens + IMAGE_END + "\n"
        messages = [{"role": "user", "content": block * num_images + instruction}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    # -- state and actions ------------------------------------------------------------------
    def _group(self, obs: dict, group: str, batch: int, batched: bool) -> np.ndarray:
        """-> float64 [B, dim] (the last time step when a history is given) in robot units."""
        spec = getattr(self.modality, group)
        concat_key = "observation.state" if group == "state" else "action"
        if concat_key in obs and not all(f"{group}.{k}" in obs for k in spec):
            a = np.asarray(obs[concat_key], dtype=np.float64)
            a = a.reshape(batch, -1, a.shape[-1])[:, -1] if batched else a.reshape(-1, a.shape[-1])[-1:]
            total = sum(spec.values())
            if a.shape[-1] < total:
                raise ValueError(f"observation[{concat_key!r}] has {a.shape[-1]} values, the modality needs {total}")
            return a[:, :total]
        parts = []
        for name, dim in spec.items():
            key = f"{group}.{name}"
            if key not in obs:
                raise KeyError(f"observation lacks {key!r} (or {concat_key!r}); keys: {sorted(obs)}")
            a = np.asarray(obs[key], dtype=np.float64)
            a = a.reshape(batch, -1, dim)[:, -1] if batched else a.reshape(-1, dim)[-1:]
            parts.append(a)
        return np.concatenate(parts, axis=-1)

    def normalize_group(self, values: np.ndarray, group: str) -> np.ndarray:
        mode = self.modality.state_mode if group == "state" else self.modality.action_mode
        out, start = [], 0
        for name, dim in getattr(self.modality, group).items():
            out.append(normalize(values[..., start:start + dim], self.stats[group][name], mode, f"{group}.{name}"))
            start += dim
        return np.concatenate(out, axis=-1)

    def decode_actions(self, actions: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Normalised, padded actions [B, T, A] (or [T, A]) -> {"action.<name>": [B, T, dim]} in robot units."""
        a = actions.detach().float().cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
        out, start = {}, 0
        for name, dim in self.modality.action.items():
            out[f"action.{name}"] = unnormalize(a[..., start:start + dim], self.stats["action"][name],
                                                self.modality.action_mode, f"action.{name}")
            start += dim
        return out

    # -- the whole batch --------------------------------------------------------------------
    def __call__(self, obs: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Observation (single or batched) -> tensors; with ``action.*`` keys (chunks [B, T, dim]) also the
        normalised ``action`` [B, horizon, action_dim] and ``action_mask`` for training."""
        lang_key = next((k for k in LANGUAGE_KEYS if k in obs), None)
        if lang_key is None:
            raise KeyError(f"observation lacks an instruction ({' or '.join(LANGUAGE_KEYS)}); keys: {sorted(obs)}")
        language = obs[lang_key]
        batched = not isinstance(language, str)
        instructions = list(language) if batched else [language]
        b = len(instructions)

        frames = []
        for name in self.modality.video:
            key = f"video.{name}"
            if key not in obs:
                raise KeyError(f"observation lacks {key!r}; keys: {sorted(obs)}")
            a = _frames(obs[key], key)
            a = a.reshape(b, -1, *a.shape[-3:])                 # [B, T, H, W, 3]
            frames.append(a[:, -1])                              # newest frame per camera, [B, H, W, 3]
        per_sample = np.stack(frames, axis=1)                    # [B, V, H, W, 3]
        v = per_sample.shape[1]
        pixel_values = torch.cat([self.image_tensor(per_sample[:, i], generator) for i in range(v)], dim=0)
        pixel_values = pixel_values.reshape(v, b, *pixel_values.shape[1:]).transpose(0, 1).reshape(b * v, 3,
                                                                                                   *pixel_values.shape[-2:])

        text = [self.prompt(s, v) for s in instructions]
        enc = self.tokenizer(text, padding=True, return_tensors="pt")

        head = self.model_config.action_head
        state = self.normalize_group(self._group(obs, "state", b, batched), "state")   # [B, Ds]
        state_t = torch.zeros(b, 1, head.max_state_dim)
        state_t[:, 0, :state.shape[-1]] = torch.from_numpy(state).float()
        batch = {
            "pixel_values": pixel_values,                                           # [B*V, 3, S, S]
            "input_ids": enc["input_ids"],                                          # [B, L]
            "attention_mask": enc["attention_mask"],                                # [B, L]
            "state": state_t,                                                       # [B, 1, max_state_dim]
            "embodiment_id": torch.full((b,), self.modality.embodiment_id, dtype=torch.long),
        }
        if all(f"action.{k}" in obs for k in self.modality.action):
            batch.update(self._actions(obs, b, batched))
        return batch

    def _actions(self, obs: dict, b: int, batched: bool) -> dict[str, torch.Tensor]:
        head = self.model_config.action_head
        parts = []
        for name, dim in self.modality.action.items():
            a = np.asarray(obs[f"action.{name}"], dtype=np.float64)
            parts.append(a.reshape(b, -1, dim) if batched else a.reshape(1, -1, dim))
        chunk = self.normalize_group(np.concatenate(parts, axis=-1), "action")       # [B, T, Da]
        if chunk.shape[1] != head.action_horizon:
            raise ValueError(f"action chunks have {chunk.shape[1]} steps, the model predicts {head.action_horizon}")
        action = torch.zeros(b, head.action_horizon, head.action_dim)
        action[:, :, :chunk.shape[-1]] = torch.from_numpy(chunk).float()
        mask = torch.zeros_like(action)
        mask[:, :, :chunk.shape[-1]] = 1.0
        return {"action": action, "action_mask": mask}                                # [B, T, A] each

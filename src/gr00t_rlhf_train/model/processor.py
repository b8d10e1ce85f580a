"""Observation dicts <-> model tensors for GR00T N1 (images, prompt, state, actions).

An observation holds camera frames (``video.<name>``: uint8 [H, W, 3], or [B, H, W, 3] / [B, T, H, W, 3]
when batched), the state (``state.<name>`` arrays, or the concatenated ``observation.state``) and the
instruction (``annotation.human.action.task_description`` or ``task``: a string, or a list of B).
``Gr00tProcessor.__call__`` preprocesses every frame (``preprocess_images``), writes the chat prompt
(``Gr00tProcessor.prompt``), tokenises and pads it, normalises and zero-pads the state (and the actions when
training), and adds the embodiment id. ``decode_actions`` inverts the action normalisation.

Two processor formats (``ModalityConfig.processor_format``, saved with every checkpoint):

* ``"gr00t_n1"`` (default): exactly the official Isaac-GR00T N1 pipeline (docs/model.md, "Exactness
  against the official GR00T N1"): ``int()``-truncated 95 % crop (centre, random when training), bilinear
  antialiased resize on [0, 1] floats, uint8 truncation, ``(x/255 - 0.5)/0.5`` rounded through bfloat16;
  colour jitter when training; the qwen2-chat prompt with the system turn and ``<image k>`` labels; left
  padding with ``<|im_end|>``.
* ``"gr00t_rlhf_v1"``: this package's first format (checkpoints written before the field existed):
  rounded crop, no uint8 step, no jitter, SmolLM's chat template without a system turn, right padding.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .configuration import ConfigError, ModelConfig
from .normalization import ACTION_MODES, OFFICIAL_MODES, StatsError, normalize, unnormalize
from .tokenizer import IMAGE_CONTEXT, IMAGE_END, IMAGE_START

LANGUAGE_KEYS = ("annotation.human.action.task_description", "task")
OFFICIAL_FORMAT = "gr00t_n1"
LEGACY_FORMAT = "gr00t_rlhf_v1"
PROCESSOR_FORMATS = (OFFICIAL_FORMAT, LEGACY_FORMAT)
# Isaac-GR00T N1 gr00t/model/transforms.py DEFAULT_SYSTEM_MESSAGE (the qwen2-chat template's default too)
SYSTEM_MESSAGE = "You are a helpful assistant."
# Isaac-GR00T N1 gr00t/experiment/data_config.py: VideoColorJitter(brightness, contrast, saturation, hue)
OFFICIAL_COLOR_JITTER = (0.3, 0.4, 0.5, 0.08)
# the official tokenizer's pad token (eagle2_hg_model/tokenizer_config.json "pad_token")
PAD_TOKEN = "<|im_end|>"


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
    # "gr00t_n1" (official) or "gr00t_rlhf_v1" (checkpoints saved before this field: see the module docstring)
    processor_format: str = OFFICIAL_FORMAT
    # training-only colour jitter (brightness, contrast, saturation, hue) as torchvision's ColorJitter takes
    # them; None: off. Applied only with a generator (training) and only in the official format.
    color_jitter: tuple[float, float, float, float] | None = OFFICIAL_COLOR_JITTER

    def __post_init__(self) -> None:
        if self.processor_format not in PROCESSOR_FORMATS:
            raise ConfigError(f"ModalityConfig.processor_format = {self.processor_format!r}: allowed {PROCESSOR_FORMATS}")
        if self.color_jitter is not None:
            jitter = tuple(self.color_jitter)
            if len(jitter) != 4 or not all(isinstance(v, (int, float)) and v >= 0 for v in jitter) or jitter[3] > 0.5:
                raise ConfigError(f"ModalityConfig.color_jitter = {self.color_jitter!r}: expected None or 4 numbers >= 0 "
                                  "(brightness, contrast, saturation, hue <= 0.5)")
            self.color_jitter = tuple(float(v) for v in jitter)
        for name, allowed in (("state_mode", OFFICIAL_MODES), ("action_mode", ACTION_MODES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ModalityConfig.{name} = {getattr(self, name)!r}: allowed {allowed}")
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


def official_crop_box(height: int, width: int, crop_scale: float,
                      generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """-> (top, left, crop_h, crop_w) as Isaac-GR00T's VideoCrop: size ``int(side * scale)`` (truncated);
    torchvision CenterCrop's ``int(round((side - crop) / 2))`` (Python's half-to-even round) without a
    generator, RandomCrop's uniform top then left with one."""
    ch, cw = max(1, int(height * crop_scale)), max(1, int(width * crop_scale))
    if generator is None:
        return int(round((height - ch) / 2.0)), int(round((width - cw) / 2.0)), ch, cw
    top = int(torch.randint(0, height - ch + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - cw + 1, (1,), generator=generator))
    return top, left, ch, cw


def color_jitter(x: torch.Tensor, strength: tuple[float, float, float, float],
                 generator: torch.Generator) -> torch.Tensor:
    """Float images [N, 3, H, W] in [0, 1] -> jittered, one draw for all N (torchvision ColorJitter's
    semantics: the four adjustments in a random order, factors uniform in [1 - s, 1 + s], hue in [-h, h])."""
    from torchvision.transforms.v2 import functional as TF

    b, c, s, h = strength
    order = torch.randperm(4, generator=generator).tolist()
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    factors = [max(0.0, 1 - b) + u[0] * (1 + b - max(0.0, 1 - b)), max(0.0, 1 - c) + u[1] * (1 + c - max(0.0, 1 - c)),
               max(0.0, 1 - s) + u[2] * (1 + s - max(0.0, 1 - s)), -h + u[3] * 2 * h]
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in order:
        if (i < 3 and strength[i] > 0) or (i == 3 and h > 0):
            x = ops[i](x, factors[i])
    return x


def preprocess_images(frames: np.ndarray | torch.Tensor, size: int, crop_scale: float = 0.95,
                      processor_format: str = OFFICIAL_FORMAT, generator: torch.Generator | None = None,
                      jitter: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """uint8 RGB frames [N, H, W, 3] (numpy, or a tensor on any device) -> pixel values float32
    [N, 3, size, size] in [-1, 1], on the frames' device.

    Official format (Isaac-GR00T N1: VideoToTensor -> VideoCrop(0.95) -> VideoResize(linear) ->
    VideoColorJitter -> VideoToNumpy, then the Eagle processor's ToTensor + Normalize(0.5, 0.5) + bfloat16):
    ``x / 255`` in float32; crop ``official_crop_box``; ``F.interpolate(bilinear, align_corners=False,
    antialias=True)`` to size x size; with a generator, ``color_jitter(jitter)``; ``(x * 255).to(uint8)``
    (truncation); ``(u8 / 255 - 0.5) / 0.5`` rounded to bfloat16 and back. Without a generator (inference)
    the output is deterministic; with one, a single crop and jitter draw serves all N frames (pass one
    sample's views together, as the official transform sees them).

    Legacy format (``gr00t_rlhf_v1``): crop ``round(side * scale)`` (centre: ``(side - crop) // 2``; random
    with a generator), resize on 0..255 floats, ``(x / 255 - 0.5) / 0.5``; no uint8 step, no jitter.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 [N, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2)                                                          # [N, 3, H, W] uint8
    h, w = x.shape[-2:]
    if processor_format == LEGACY_FORMAT:
        x = x.float()
        ch, cw = max(1, round(h * crop_scale)), max(1, round(w * crop_scale))
        if generator is None:
            top, left = (h - ch) // 2, (w - cw) // 2
        else:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator))
        x = x[:, :, top:top + ch, left:left + cw]                                       # [N, 3, ch, cw]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x / 255.0 - 0.5) / 0.5                                                  # [N, 3, S, S]
    if processor_format != OFFICIAL_FORMAT:
        raise ValueError(f"processor_format {processor_format!r}: allowed {PROCESSOR_FORMATS}")
    x = x.to(torch.float32) / 255.0                                                   # [N, 3, H, W] in [0, 1]
    top, left, ch, cw = official_crop_box(h, w, crop_scale, generator)
    x = x[:, :, top:top + ch, left:left + cw]                                           # [N, 3, ch, cw]
    if (ch, cw) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if generator is not None and jitter is not None:
        x = color_jitter(x, jitter, generator)
    x = (x * 255).to(torch.uint8)                                                       # [N, 3, S, S] uint8
    x = (x.to(torch.float32) / 255.0 - 0.5) / 0.5
    return x.to(torch.bfloat16).to(torch.float32)                                       # [N, 3, S, S]


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
        """uint8 [N, H, W, 3] -> float [N, 3, S, S] in [-1, 1] with this processor's settings
        (``preprocess_images``); a generator means training (random crop, jitter; one draw for all N)."""
        return preprocess_images(frames, self.model_config.backbone.vision.image_size, self.modality.crop_scale,
                                 self.modality.processor_format, generator, self.modality.color_jitter)

    def prompt(self, instruction: str, num_images: int) -> str:
        """The chat prompt of one sample, image blocks in camera order (official: Isaac-GR00T N1
        GR00TTransform._apply_gr00t_processing + EagleProcessor.prepare_input, qwen2-chat template)."""
        block = IMAGE_START + IMAGE_CONTEXT * self.model_config.backbone.num_image_tokens + IMAGE_END
        if self.modality.processor_format == LEGACY_FORMAT:
            messages = [{"role": "user", "content": (block + "\n") * num_images + instruction}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images = block + "\n" if num_images == 1 else "".join(f"<image {i + 1}>{block}\n" for i in range(num_images))
        return (f"<|im_start|>system\n{SYSTEM_MESSAGE}<|im_end|>\n"
                f"<|im_start|>user\n{images}{instruction}<|im_end|>\n"
                "<|im_start|>assistant\n")

    def pad_token_id(self) -> int:
        """The id padding uses in the official format: ``<|im_end|>`` when the vocabulary has it, else the
        tokenizer's pad token."""
        token_id = self.tokenizer.convert_tokens_to_ids(PAD_TOKEN)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            token_id = self.tokenizer.pad_token_id
        if token_id is None:
            raise ValueError(f"the tokenizer has neither {PAD_TOKEN} nor a pad token")
        return int(token_id)

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Prompts -> ``input_ids`` and ``attention_mask`` [B, L]. Official: each prompt tokenised alone,
        then padded on the LEFT to the longest with ``pad_token_id`` (mask 0 there); positions stay
        0..L-1 for every row (the official LLM gets no position ids). Legacy: right padding."""
        if self.modality.processor_format == LEGACY_FORMAT:
            enc = self.tokenizer(prompts, padding=True, return_tensors="pt")
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        ids = self.tokenizer(prompts, padding=False)["input_ids"]
        length, pad = max(len(x) for x in ids), self.pad_token_id()
        input_ids = torch.full((len(ids), length), pad, dtype=torch.long)                 # [B, L]
        mask = torch.zeros(len(ids), length, dtype=torch.long)                             # [B, L]
        for i, row in enumerate(ids):
            input_ids[i, length - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, length - len(row):] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

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

    @property
    def semantics(self) -> str:
        """The model's normalisation semantics (``DataConfig.normalization``: ``"official"`` for new models,
        ``"legacy"`` for checkpoints whose JSON has no ``model.data``; normalization.py)."""
        return self.model_config.data.normalization

    def normalize_group(self, values: np.ndarray, group: str) -> np.ndarray:
        """Robot-unit values [..., dim of the group] -> normalised (float64), key by key in modality order,
        under the model's semantics."""
        mode = self.modality.state_mode if group == "state" else self.modality.action_mode
        out, start = [], 0
        for name, dim in getattr(self.modality, group).items():
            out.append(normalize(values[..., start:start + dim], self.stats[group][name], mode, f"{group}.{name}",
                                 self.semantics))
            start += dim
        return np.concatenate(out, axis=-1)

    def decode_actions(self, actions: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
        """Normalised, padded actions [B, T, A] (or [T, A]) -> {"action.<name>": [B, T, dim]} in robot units."""
        a = actions.detach().float().cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
        # official semantics: not clipped back to [-1, 1] (min_max / q99); legacy: clipped (normalization.py)
        out, start = {}, 0
        for name, dim in self.modality.action.items():
            out[f"action.{name}"] = unnormalize(a[..., start:start + dim], self.stats["action"][name],
                                                self.modality.action_mode, f"action.{name}", self.semantics)
            start += dim
        return out

    # -- the whole batch --------------------------------------------------------------------
    def split_observation(self, obs: dict) -> tuple[list[str], bool, list[np.ndarray]]:
        """-> (instructions, batched, the newest uint8 frame of each camera [B, H, W, 3] in modality order) of
        an observation (single or batched); KeyError / ValueError naming a missing or malformed key."""
        lang_key = next((k for k in LANGUAGE_KEYS if k in obs), None)
        if lang_key is None:
            raise KeyError(f"observation lacks an instruction ({' or '.join(LANGUAGE_KEYS)}); keys: {sorted(obs)}")
        language = obs[lang_key]
        batched = not isinstance(language, str)
        instructions = list(language) if batched else [language]
        frames = []
        for name in self.modality.video:
            key = f"video.{name}"
            if key not in obs:
                raise KeyError(f"observation lacks {key!r}; keys: {sorted(obs)}")
            a = _frames(obs[key], key)
            frames.append(a.reshape(len(instructions), -1, *a.shape[-3:])[:, -1])   # newest frame, [B, H, W, 3]
        return instructions, batched, frames

    def __call__(self, obs: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Observation (single or batched) -> tensors; with ``action.*`` keys (chunks [B, T, dim]) also the
        normalised ``action`` [B, horizon, action_dim] and ``action_mask`` for training."""
        instructions, batched, frames = self.split_observation(obs)
        b = len(instructions)
        per_sample = np.stack(frames, axis=1)                    # [B, V, H, W, 3]
        v = per_sample.shape[1]
        if self.modality.processor_format == LEGACY_FORMAT:       # one random crop per camera for the batch
            pixel_values = torch.cat([self.image_tensor(per_sample[:, i], generator) for i in range(v)], dim=0)
            pixel_values = pixel_values.reshape(v, b, *pixel_values.shape[1:]).transpose(0, 1).reshape(
                b * v, 3, *pixel_values.shape[-2:])
        elif generator is None:                                  # deterministic: all frames at once
            pixel_values = self.image_tensor(per_sample.reshape(b * v, *per_sample.shape[2:]))
        else:                                                    # one crop + jitter draw per sample, as official
            pixel_values = torch.cat([self.image_tensor(per_sample[i], generator) for i in range(b)], dim=0)
        # pixel_values: [B*V, 3, S, S], sample-major (sample 0's cameras, then sample 1's, ...)

        enc = self.tokenize([self.prompt(s, v) for s in instructions])

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

"""RewardModel: the GR00T N1 backbone (frozen, LoRA via peft, or trainable) + a reward head.

    rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="dit", horizon=4), tuning="lora")
    r = rm.score(clip)       # clip: frames [H, h, w, 3], states [H, dim], the task instruction
    rm.use_cuda_graphs()     # opt-in fast path of score() on a GPU (see cuda_graph.py)
    rm.use_fast_path()       # + frames preprocessed on the GPU, cached DiT K/V, unmasked SDPA (FastPath)

With ``RewardHeadConfig(action_horizon=K)`` the clip also carries ``"actions"``: the first K actions of
a chunk in robot units, [K, A] (A = the modality's action width, e.g. 2 wheel commands), normalised
here with the checkpoint's action statistics. One clip with candidate actions [N, K, A] scores the N
candidates of best-of-N against that one observation (the backbone runs once; -> N rewards).

The prompt is the task instruction only; the feedback given for the frames being scored never
enters the model (it is the training target).

Fast path (``use_fast_path``; the same levers as the policy's, see ``cuda_graph.FastPath``): ``prepare``
leaves the frames as uint8 ``frames`` on the device (no host image work; prompts tokenised once per
distinct instruction set) and ``features`` preprocesses them there, inside the CUDA graph when on; the DiT
head's cross-attention K/V are projected once for all refinement steps; no masks without padding. The same
``prepare`` -> ``predict`` calls serve one live frame and the large batches of ``eval reward``.

Training (``train reward``): ``prepare`` is two halves, ``host_inputs()`` (a ``RewardInputs``: the processor,
head config and action width, picklable, no parameter, no device; its call does every host step and returns CPU
tensors) and ``to_device``. The training stage runs the first in its DataLoader workers, so N worker processes
prepare batches in parallel while the GPU trains; ``prepare(clip)`` == ``to_device(host_inputs()(clip))``.

Thread safety: a RewardModel is not thread-safe (a CUDA graph replays into shared static buffers);
call it from one thread.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backbone import EagleBackbone
from .configuration import ConfigError, ModelConfig
from .cuda_graph import PLAIN, FastPath, GraphedFunction, backbone_layers, set_compiled, weights_guard
from .gpu_preprocess import DevicePreprocessor, FastInputs
from .processor import LANGUAGE_KEYS, Gr00tProcessor
from .reward_head import RewardHeadConfig, build_reward_head, reward_loss

ACTIONS = "actions"   # the clip key of the chunk's first K actions (robot units)
GRAPH_INPUTS = ("input_ids", "attention_mask", "pixel_values", "state", "embodiment_id")
FRAMES = "frames"     # uint8 [B*H, h, w, 3] on the device: the fast path's stand-in for pixel_values
UNPADDED = "unpadded"  # fast path: True when no prompt of the batch is padded (a host-side bool)

TUNINGS = ("frozen", "lora", "full")
# LoRA adapters go on the LLM's attention projections.
LORA_TARGETS = r".*language_model\.model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"


class RewardModel(nn.Module):
    def __init__(self, config: ModelConfig, head: RewardHeadConfig, processor: Gr00tProcessor,
                 tuning: str = "frozen", lora_rank: int = 8, image_token_id: int | None = None,
                 backbone_state: dict | None = None):
        super().__init__()
        if tuning not in TUNINGS:
            raise ConfigError(f"RewardModel tuning = {tuning!r}: allowed {TUNINGS}")
        self.config, self.head_config, self.processor = config, head, processor
        self.tuning, self.lora_rank = tuning, lora_rank
        self.backbone = EagleBackbone(config.backbone, image_token_id)
        self.head = build_reward_head(head, config.backbone.project_to_dim, config.action_head.max_state_dim,
                                      config.action_head.max_num_embodiments, config.action_head.action_dim)
        if backbone_state is not None:
            self.backbone.load_state_dict(backbone_state)
        if tuning == "lora":
            from peft import LoraConfig, inject_adapter_in_model
            inject_adapter_in_model(LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, target_modules=LORA_TARGETS),
                                    self.backbone)
        self.set_trainable()
        self._graphed: GraphedFunction | None = None
        self.fast = PLAIN
        self._fast_inputs = FastInputs(processor)
        self._device_pre: DevicePreprocessor | None = None

    def set_trainable(self) -> None:
        for name, p in self.backbone.named_parameters():
            p.requires_grad_(self.tuning == "full" or (self.tuning == "lora" and "lora_" in name))

    def head_meta(self) -> dict:
        return {"reward_head": self.head_config.to_dict(), "tuning": self.tuning, "lora_rank": self.lora_rank}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_policy(cls, policy, head: RewardHeadConfig | None = None, tuning: str = "frozen",
                    lora_rank: int = 8) -> "RewardModel":
        """Share the policy's backbone weights (copied) and, for the DiT head, its state encoder when widths match."""
        head = head or RewardHeadConfig()
        rm = cls(policy.config, head, policy.processor, tuning, lora_rank, policy.model.image_token_id,
                 backbone_state=policy.model.backbone.state_dict())
        src = policy.model.action_head.state_encoder
        dst = getattr(rm.head, "state_encoder", None)
        if dst is not None and all(a.shape == b.shape for a, b in zip(src.parameters(), dst.parameters())):
            dst.load_state_dict(src.state_dict())
            dst.requires_grad_(False)                           # the diagram's frozen state encoder
        return rm.to(policy.device)

    @classmethod
    def from_pretrained(cls, path: str | Path, tokenizer=None, device="cpu", dtype=None) -> "RewardModel":
        from .checkpoint import CheckpointError, load_processor, load_weights, read_meta, weight_files
        from .tokenizer import image_token_id

        path = Path(path)
        meta = read_meta(path)
        if meta["kind"] != "reward_model":
            raise CheckpointError(f"{path}: kind is {meta['kind']!r}, expected 'reward_model'")
        processor = load_processor(path, meta, tokenizer)
        h = meta.get("head") or {}
        rm = cls(processor.model_config, RewardHeadConfig(**h["reward_head"]), processor, h.get("tuning", "frozen"),
                 h.get("lora_rank", 8), image_token_id(processor.tokenizer))
        load_weights(rm, weight_files(path), str(path), device=device, dtype=dtype)
        return rm

    def save_pretrained(self, path: str | Path, feedback_vocabulary: dict | None = None, extra: dict | None = None):
        from .checkpoint import save_checkpoint
        return save_checkpoint(path, "reward_model", self, self.processor, feedback_vocabulary,
                               head=self.head_meta(), extra=extra)

    # -- tensors -------------------------------------------------------------------------------
    def features(self, batch: dict, graph_safe: bool = False) -> torch.Tensor:
        """-> VL tokens [B*H, L, D] (no graph through a frozen backbone). A fast-path batch (uint8 ``frames``
        instead of ``pixel_values``) is preprocessed on the device; with ``unpadded`` its masks are dropped."""
        pixels = batch.get("pixel_values")
        if pixels is None:
            pixels = self._device_preprocessor().pixels(batch[FRAMES])                   # [B*H, 3, S, S]
        drop = bool(batch.get(UNPADDED, False)) and self.fast.unmasked_sdpa
        args = (batch["input_ids"], None if drop else batch["attention_mask"], pixels, graph_safe and not drop)
        if self.tuning == "frozen":
            self.backbone.eval()
            with torch.no_grad():
                return self.backbone(*args)
        return self.backbone(*args)

    def forward(self, batch: dict, graph_safe: bool = False) -> list[torch.Tensor]:
        """batch from ``prepare`` -> reward estimates [B] (one per refinement step; the last is the answer).

        With ``actions`` [N, K, A] for one clip (B = 1), the clip's features are shared by the N candidates
        (-> [N] each). ``graph_safe`` runs the backbone without host reads (see ``EagleBackbone.forward``)."""
        feats = self.features(batch, graph_safe)                                      # [B*H, L, D]
        b, h = batch["state"].shape[:2]
        feats = feats.reshape(b, h, *feats.shape[1:])                                 # [B, H, L, D]
        mask = batch["attention_mask"].reshape(b, h, -1)                              # [B, H, L]
        state, embodiment, actions = batch["state"], batch["embodiment_id"], batch.get(ACTIONS)
        if actions is not None and actions.shape[0] != b and b == 1:                  # N candidates, one clip
            n = actions.shape[0]
            feats, mask = feats.expand(n, *feats.shape[1:]), mask.expand(n, *mask.shape[1:])  # [N, H, L, D], [N, H, L]
            state, embodiment = state.expand(n, *state.shape[1:]), embodiment.expand(n)
        dit = getattr(self.head, "model", None)
        if dit is None or not self.fast.any or self.training:
            return self.head(feats, mask, state, embodiment, actions)
        unpadded = bool(batch.get(UNPADDED, False)) and self.fast.unmasked_sdpa
        with dit.inference_context(cache_kv=self.fast.kv_cache, unpadded=unpadded):
            return self.head(feats, mask, state, embodiment, actions)

    def loss(self, batch: dict, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
        return reward_loss(self(batch), target.to(batch["state"].device), kind)

    # -- observations --------------------------------------------------------------------------
    def host_inputs(self) -> "RewardInputs":
        """The host half of ``prepare`` for this model's current processor, head config and action width:
        picklable, no parameter, no device (DataLoader workers run it: ``stages.reward.RewardCollator``)."""
        return RewardInputs(self.processor, self.head_config, self.config.action_head.action_dim)

    def prepare(self, clip: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A clip (frames [H, h, w, 3], states [H, dim], one instruction) or a batch of clips
        (frames [B, H, h, w, 3], states [B, H, dim], B instructions) -> tensors with B*H frames.
        With ``action_horizon`` K > 0 the clip carries ``actions`` in robot units: [K, A] for one clip,
        [B, K, A] for a batch, or [N, K, A] candidates for one clip (-> ``actions`` [N, K, padded A]).
        ``generator``: random crops (training augmentation) instead of the centre crop. With the
        ``gpu_preprocess`` lever (and no generator) the batch holds uint8 ``frames`` [B*H, h, w, 3] on the
        device and the host bool ``unpadded`` instead of ``pixel_values``.

        = ``to_device(host_inputs()(clip, generator))``: the host work, then the transfer."""
        fast = self.fast.gpu_preprocess and generator is None
        if fast and self._fast_inputs.processor is not self.processor:      # the processor was replaced
            self._fast_inputs = FastInputs(self.processor)
        return self.to_device(self.host_inputs()(clip, generator, self._fast_inputs if fast else None))

    def to_device(self, host: dict) -> dict:
        """``RewardInputs``' CPU batch -> the model's device: floats in the head's dtype, uint8 ``frames`` uploaded
        for the device preprocessor, ``unpadded`` kept where the fast path reads it. A batch already on the
        device (the training loop moves the DataLoader's batches) passes through unchanged."""
        device = next(self.parameters()).device
        dtype = next(self.head.parameters()).dtype
        out = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
               for k, v in host.items() if k not in (FRAMES, UNPADDED)}
        if FRAMES in host:
            out[FRAMES] = self._device_preprocessor().upload(host[FRAMES])              # uint8 [B*H, h, w, 3]
        if self.fast.unmasked_sdpa:
            out[UNPADDED] = bool(host.get(UNPADDED, False))         # unknown: keep the masks
        return out

    def prepare_actions(self, value, batch: int | None) -> torch.Tensor | None:
        """``clip["actions"]`` in robot units -> normalised, zero-padded float [B, K, padded A] (None for K = 0);
        see ``RewardInputs.actions``."""
        return self.host_inputs().actions(value, batch)

    def use_cuda_graphs(self, enabled: bool = True, warmup: int = 2) -> "RewardModel":
        """Opt in (or out) of the CUDA graphs alone: ``score`` / ``infer`` replay a CUDA graph of the backbone
        and the head, captured on the first call of each batch shape and prompt length (``warmup`` eager
        calls first). Same outputs as eager within floating-point rounding; on a CPU the eager code runs.
        ``use_fast_path`` adds the other levers."""
        return self.use_fast_path(FastPath.resolve(PLAIN, cuda_graphs=enabled), warmup=warmup)

    def use_fast_path(self, fast: FastPath | bool = True, warmup: int = 2, **levers: bool) -> "RewardModel":
        """Switch the inference speed levers (``cuda_graph.FastPath``): True = all but compile, False = the plain
        path; keyword levers override (``use_fast_path(compile=True)``, ``use_fast_path(gpu_preprocess=False)``)."""
        fast = self.fast = FastPath.resolve(fast, **levers)
        warmup = max(warmup, 3) if fast.compile else warmup     # compiled layers settle before a capture
        self._graphed = GraphedFunction(self._graph_body, warmup=warmup) if fast.cuda_graphs else None
        self._fast_inputs = FastInputs(self.processor)
        dit = getattr(self.head, "model", None)
        set_compiled([*backbone_layers(self.backbone), *(dit.transformer_blocks if dit is not None else [])],
                     fast.compile)
        return self

    def _device_preprocessor(self) -> DevicePreprocessor:
        device, dtype = next(self.parameters()).device, self.backbone.linear.weight.dtype
        pre = self._device_pre
        if pre is None or pre.processor is not self.processor or pre.device != device or pre.dtype != dtype:
            self._device_pre = DevicePreprocessor(self.processor, device, dtype)
        return self._device_pre

    def _graph_body(self, inputs: dict[str, torch.Tensor], unpadded: bool = False) -> list[torch.Tensor]:
        return self(inputs | {UNPADDED: unpadded}, graph_safe=True)

    @torch.no_grad()
    def infer(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """``forward`` without gradients, through the CUDA graph when enabled (batch from ``prepare``;
        the graph path switches to eval mode: a graph cannot replay dropout)."""
        if self._graphed is None:
            if self.fast.any:
                self.eval()
            return self(batch)
        self.eval()
        keys = [k for k in (*GRAPH_INPUTS, FRAMES, ACTIONS) if k in batch]
        options = {"unpadded": bool(batch[UNPADDED])} if UNPADDED in batch else {}
        return self._graphed({k: batch[k] for k in keys}, guard=weights_guard(self), **options)

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Rewards [B] of a prepared batch on the target's scale (the last refinement step through
        ``head_config.to_reward``: a logit head's output becomes a probability mapped onto the reward range)."""
        return self.head_config.to_reward(self.infer(batch)[-1].float())

    @torch.no_grad()
    def score(self, clip: dict) -> float | np.ndarray:
        """Reward of one clip (a float) or of a batch of clips (array [B]), on the target's scale; one clip
        with candidate actions [N, K, A] -> array [N] (one reward per candidate)."""
        self.eval()
        lang_key = next((k for k in LANGUAGE_KEYS if k in clip), None)
        out = self.predict(self.prepare(clip)).cpu().numpy()
        single = lang_key and isinstance(clip[lang_key], str)
        candidates = single and clip.get(ACTIONS) is not None and np.ndim(clip[ACTIONS]) == 3
        return float(out[0]) if single and not candidates else out


@dataclass
class RewardInputs:
    """The host half of ``RewardModel.prepare``: clip(s) -> CPU tensors (crops, resize, tokenizer, normalisation,
    actions), from the processor, the head config and the padded action width only. No parameter, no device:
    it pickles into DataLoader worker processes, so N workers prepare N batches at once while the GPU trains
    (``stages.reward.RewardCollator``); ``RewardModel.to_device`` does the rest of ``prepare``."""

    processor: Gr00tProcessor
    head_config: RewardHeadConfig
    action_dim: int                     # the action head's padded action width (ModelConfig.action_head.action_dim)

    def __post_init__(self) -> None:
        if isinstance(self.action_dim, bool) or not isinstance(self.action_dim, int) or \
                self.action_dim < self.processor.modality.action_dim:
            raise ConfigError(f"RewardInputs.action_dim = {self.action_dim!r}: must be an integer >= the modality's "
                              f"action width {self.processor.modality.action_dim}")

    def __call__(self, clip: dict, generator: torch.Generator | None = None,
                 fast: FastInputs | None = None) -> dict:
        """A clip or a batch of clips (as ``RewardModel.prepare`` takes them) -> CPU tensors: input_ids,
        attention_mask [B*H, L], pixel_values [B*H, 3, S, S] (or, with ``fast``, uint8 numpy ``frames``
        [B*H, h, w, 3] for the device preprocessor), state [B, H, max_state_dim], embodiment_id [B], ``actions``
        [B or N, K, padded A] when K > 0, and ``unpadded`` (a bool: no prompt of the batch is padded)."""
        lang_key = next((k for k in LANGUAGE_KEYS if k in clip), None)
        if lang_key is None:
            raise KeyError(f"the clip lacks an instruction ({' or '.join(LANGUAGE_KEYS)}); keys: {sorted(clip)}")
        batched = not isinstance(clip[lang_key], str)
        instructions = list(clip[lang_key]) if batched else [clip[lang_key]]
        b, h = len(instructions), self.head_config.horizon
        actions = self.actions(clip.get(ACTIONS), b if batched else None)              # [B or N, K, A] or None
        flat = {lang_key: [s for s in instructions for _ in range(h)]}
        for key, value in clip.items():
            if key in (lang_key, ACTIONS) or key.startswith(("action.", "annotation.human.validity", "feedback")):
                continue                                                   # never feed the label back in
            a = np.asarray(value)
            lead = b * h
            if key.startswith("video."):
                a = a.reshape(lead, *a.shape[-3:])
            else:
                a = a.reshape(lead, -1)
            flat[key] = a
        frames = None
        if fast is not None:                               # no host image work: uint8 frames go to the device
            batch, frames, unpadded = fast(flat)
        else:
            batch = self.processor(flat, generator=generator)
            unpadded = bool(batch["attention_mask"].all())
        batch["state"] = batch["state"].reshape(b, h, -1)                                # [B, H, max_state_dim]
        batch["embodiment_id"] = batch["embodiment_id"].reshape(b, h)[:, 0]             # [B]
        if actions is not None:
            batch[ACTIONS] = actions
        if frames is not None:
            batch[FRAMES] = frames
        batch[UNPADDED] = unpadded
        return batch

    def actions(self, value, batch: int | None) -> torch.Tensor | None:
        """``clip["actions"]`` in robot units -> normalised, zero-padded float [B, K, padded A] (None for K = 0).

        ``batch``: B for a batch of clips (actions must be [B, K, A]); None for one clip ([K, A], or
        [N, K, A] candidates). Missing / unexpected / misshapen / non-finite actions: one-line ValueError."""
        k, a = self.head_config.action_horizon, self.processor.modality.action_dim
        if k == 0:
            if value is not None:
                raise ValueError(f"clip[{ACTIONS!r}]: this reward model takes no actions (action_horizon = 0); "
                                 "drop the key or use a model trained with --action-horizon")
            return None
        want = f"[{k}, {a}] (or [N, {k}, {a}] candidates)" if batch is None else f"[{batch}, {k}, {a}] (B, K, A)"
        if value is None:
            raise ValueError(f"clip lacks {ACTIONS!r}: this reward model scores the first {k} actions of a chunk, "
                             f"expected {want} in robot units")
        x = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"clip[{ACTIONS!r}]: expected numbers {want}, got dtype {x.dtype}")
        given = list(x.shape)
        if batch is None and x.ndim == 2:
            x = x[None]                                                               # [1, K, A]
        if x.ndim != 3 or x.shape[1:] != (k, a) or (batch is not None and x.shape[0] != batch) or x.shape[0] < 1:
            raise ValueError(f"clip[{ACTIONS!r}]: expected {want} in robot units, got {given}")
        if not np.isfinite(x).all():
            raise ValueError(f"clip[{ACTIONS!r}]: {int((~np.isfinite(x)).sum())} non-finite value(s); expected "
                             f"finite robot-unit actions {want}")
        norm = self.processor.normalize_group(x.astype(np.float64), "action")           # [N, K, A] in model units
        out = torch.zeros(x.shape[0], k, self.action_dim)                               # [N, K, padded A]
        out[:, :, :a] = torch.from_numpy(norm).float()
        return out

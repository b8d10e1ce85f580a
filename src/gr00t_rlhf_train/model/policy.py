"""Gr00tPolicy: observation in, a chunk of wheel commands in robot units out.

    policy = Gr00tPolicy.from_pretrained("runs/sft/checkpoint-2000")   # or an official directory
    chunk = policy.get_action(obs, seed=0)      # {"action.wheel_commands": array [16, 2]}
    policy.use_cuda_graphs()                    # opt-in fast path on a GPU (see cuda_graph.py)
    policy.use_fast_path()                      # all speed levers: graphs, GPU preprocessing, K/V cache, SDPA
    policy.get_action(obs, condition="good", guidance=2.0)   # advantage-conditioned policies (train rl --method acfm)

The network, the processor (image size, prompt format, normalisation statistics, modality keys)
and the tokenizer all come from the checkpoint, so nothing has to be configured by hand.

Speed levers (``FastPath``, each switchable; docs/performance.md has the measurements): one CUDA graph of
the backbone and every denoising step (``cuda_graphs``); frames preprocessed on the model's device from
uint8 (``gpu_preprocess``, gpu_preprocess.py); the VL keys/values of each DiT cross-attention block
projected once per chunk, not once per step (``kv_cache``, ``DiT.inference_context``); no attention masks
where the batch has no padding, known on the host before the call, so SDPA can pick its flash kernels
(``unmasked_sdpa``); ``torch.compile`` of the SigLIP, Llama and DiT layers (``compile``, off by default;
while on, every call of those layers, training included, runs compiled). The plain path
(``use_fast_path(False)``) is kept for comparison; the fast one equals it within float rounding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .checkpoint import read_official, read_policy, save_checkpoint
from .configuration import DataConfig, ModelConfig, preset
from .cuda_graph import PLAIN, FastPath, GraphedFunction, backbone_layers, set_compiled, weights_guard
from .gpu_preprocess import DevicePreprocessor, FastInputs
from .gr00t_n1 import Gr00tN1
from .processor import LANGUAGE_KEYS, Gr00tProcessor, ModalityConfig
from .tokenizer import image_token_id, load_tokenizer


# the tensors of a processor batch that inference reads
GRAPH_KEYS = ("input_ids", "attention_mask", "pixel_values", "state", "embodiment_id")


def default_stats(modality: ModalityConfig, max_wheel_speed: float = 5.0) -> dict:
    """Neutral statistics for a fresh model (wheel commands and speeds in +-max_wheel_speed, others in +-1)."""
    def entry(dim: int, bound: float) -> dict:
        return {"min": [-bound] * dim, "max": [bound] * dim, "mean": [0.0] * dim, "std": [bound / 2] * dim,
                "q01": [-bound] * dim, "q99": [bound] * dim}
    return {
        "state": {k: entry(d, max_wheel_speed if "wheel" in k else 1.0) for k, d in modality.state.items()},
        "action": {k: entry(d, max_wheel_speed) for k, d in modality.action.items()},
    }


class Gr00tPolicy:
    def __init__(self, model: Gr00tN1, processor: Gr00tProcessor, feedback_vocabulary: dict | None = None):
        self.model = model
        self.processor = processor
        self.feedback_vocabulary = feedback_vocabulary or {}
        self._graphed: GraphedFunction | None = None
        self.fast = PLAIN
        self._device_pre: DevicePreprocessor | None = None
        self._fast_inputs = FastInputs(processor)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @classmethod
    def from_config(cls, config: ModelConfig | str, modality: ModalityConfig | None = None,
                    stats: dict | None = None, tokenizer="tiny", seed: int | None = 0) -> "Gr00tPolicy":
        """A randomly initialised policy (training from scratch, tests, the demo with ``tiny``)."""
        config = preset(config) if isinstance(config, str) else config
        modality = modality or ModalityConfig()
        tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
        if len(tok) > config.backbone.language.vocab_size:
            raise ValueError(f"the tokenizer has {len(tok)} tokens but the model's vocabulary is "
                             f"{config.backbone.language.vocab_size}")
        if seed is not None:
            torch.manual_seed(seed)
        model = Gr00tN1(config, image_token_id(tok))
        processor = Gr00tProcessor(config, modality, stats or default_stats(modality), tok)
        return cls(model, processor)

    @classmethod
    def from_pretrained(cls, path: str | Path, tokenizer=None, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None, embodiment_tag: str | None = None,
                        data_config: DataConfig | None = None) -> "Gr00tPolicy":
        """Load our checkpoint (``gr00t_rlhf.json``) or an official GR00T N1 directory (``config.json``).

        ``data_config`` (official directories only; ours carry theirs): the keys, order and modes taken from
        its ``experiment_cfg/metadata.json`` (``checkpoint.read_policy``); None: every key, in the file's order."""
        return cls(*read_policy(path, tokenizer=tokenizer, device=device, dtype=dtype, embodiment_tag=embodiment_tag,
                                data_config=data_config))

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        return save_checkpoint(path, "policy", self.model, self.processor, self.feedback_vocabulary, extra=extra)

    def to(self, device=None, dtype=None) -> "Gr00tPolicy":
        self.model.to(device=device, dtype=dtype)
        if self._graphed is not None:
            self._graphed.reset()
        self._device_pre = None
        return self

    def use_cuda_graphs(self, enabled: bool = True, warmup: int = 2) -> "Gr00tPolicy":
        """Opt in (or out) of the CUDA graphs alone: ``get_action`` / ``sample_actions`` replay a CUDA graph
        of the backbone and the whole denoising loop, captured on the first call of each batch shape, prompt
        length and step count (``warmup`` eager calls, then the capture). Same outputs as eager within
        floating-point rounding; on a CPU the eager code runs. Memory: each graph keeps its activations.
        ``use_fast_path`` adds the other levers."""
        return self.use_fast_path(FastPath.resolve(PLAIN, cuda_graphs=enabled), warmup=warmup)

    def use_fast_path(self, fast: FastPath | bool = True, warmup: int = 2, **levers: bool) -> "Gr00tPolicy":
        """Switch the inference speed levers: ``True`` = ``FastPath()`` (all but compile), ``False`` = the
        plain path, or a ``FastPath``; keyword levers override it (``use_fast_path(compile=True)``)."""
        fast = self.fast = FastPath.resolve(fast, **levers)
        warmup = max(warmup, 3) if fast.compile else warmup     # compiled layers settle before a capture
        self._graphed = GraphedFunction(self._graph_body, warmup=warmup) if fast.cuda_graphs else None
        self._fast_inputs = FastInputs(self.processor)
        set_compiled(self.compilable_layers(), fast.compile)
        return self

    def compilable_layers(self) -> list[torch.nn.Module]:
        """The layers the ``compile`` lever compiles: SigLIP encoder, Llama decoder and DiT blocks."""
        return [*backbone_layers(self.model.backbone), *self.model.action_head.model.transformer_blocks]

    def _graph_body(self, inputs: dict[str, torch.Tensor], num_steps: int, condition: str | None = None,
                    guidance: float | None = None, unpadded: bool = False) -> torch.Tensor:
        """The chunk as one function of tensors (what the CUDA graph records): optional uint8 ``frames``
        preprocessing, the backbone, then every denoising step with the cross-attention K/V cached."""
        if not self.fast.any and "frames" not in inputs:
            batch = {k: v for k, v in inputs.items() if k != "noise"}
            return self.model.sample_actions(batch, num_steps=num_steps, noise=inputs["noise"], graph_safe=True,
                                             condition=condition, guidance=guidance)
        model, head = self.model, self.model.action_head
        pixels = inputs.get("pixel_values")
        if pixels is None:                                                            # uint8 frames [N, H, W, 3]
            pixels = self._device_preprocessor().pixels(inputs["frames"])             # [N, 3, S, S]
        drop = self.fast.unmasked_sdpa and unpadded
        # without padding the 2-D mask is dropped (transformers then gives SDPA is_causal: flash kernels);
        # with padding the graph-safe 4-D mask (no host reads)
        feats = model.backbone(inputs["input_ids"], None if drop else inputs["attention_mask"], pixels,
                               graph_safe=not drop)                                   # [B, L, D]
        with head.model.inference_context(cache_kv=self.fast.kv_cache, unpadded=drop):
            return head.sample(feats, inputs["attention_mask"], inputs["state"].to(feats.dtype),
                               inputs["embodiment_id"], num_steps=num_steps, noise=inputs["noise"],
                               condition=condition, guidance=guidance)

    @property
    def advantage_conditioned(self) -> bool:
        """Whether the action head takes an advantage condition (a ``train rl --method acfm`` policy)."""
        return self.model.action_head.conditioned

    def enable_advantage_conditioning(self, default_condition: str | None = None,
                                      default_guidance: float | None = None) -> "Gr00tPolicy":
        """Give the action head the (zero-initialised) advantage-condition embedding, keeping every weight, and
        set the sampling defaults stored with the checkpoint (the config's ``default_condition`` /
        ``default_guidance``). Until trained, the policy samples exactly as before."""
        from .configuration import ActionHeadConfig

        head = self.model.action_head
        changes = {"advantage_conditioning": True}
        if default_condition is not None:
            changes["default_condition"] = default_condition
        if default_guidance is not None:
            changes["default_guidance"] = default_guidance
        checked = ActionHeadConfig(**(head.config.__dict__ | changes)).__dict__   # one-line ConfigError, nothing changed
        head.enable_advantage_conditioning()
        for cfg in (head.config, self.model.config.action_head, self.processor.model_config.action_head):
            cfg.__dict__.update(checked)
        if self._graphed is not None:
            self._graphed.reset()
        return self

    def prepare(self, observation: dict) -> dict[str, torch.Tensor]:
        """Observation -> the processor's tensor batch on the model's device (floats in its dtype)."""
        batch = self.processor(observation)
        out = {}
        for k, v in batch.items():
            v = v.to(self.device)
            out[k] = v.to(self.dtype) if v.is_floating_point() else v
        return out

    def _device_preprocessor(self) -> DevicePreprocessor:
        pre = self._device_pre
        if pre is None or pre.processor is not self.processor or pre.device != self.device or pre.dtype != self.dtype:
            self._device_pre = DevicePreprocessor(self.processor, self.device, self.dtype)
        return self._device_pre

    def prepare_fast(self, observation: dict) -> tuple[dict[str, torch.Tensor], bool]:
        """``prepare`` without the host image work (the ``gpu_preprocess`` lever) -> (batch, unpadded).

        The processor's own prompt, tokenizer and state functions (tokenised prompts cached per instruction
        list); instead of ``pixel_values`` the newest uint8 frame of each view, uploaded as ``frames``
        [B*V, H, W, 3] (preprocessed on the device by ``sample_actions``, inside the CUDA graph when on);
        ``unpadded``: whether no prompt is padded (known here, on the host)."""
        if self._fast_inputs.processor is not self.processor:               # the processor was replaced
            self._fast_inputs = FastInputs(self.processor)
        batch, frames, unpadded = self._fast_inputs(observation)
        batch = {k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
                 for k, v in batch.items()}
        return batch | {"frames": self._device_preprocessor().upload(frames)}, unpadded          # frames uint8 [B*V, H, W, 3]

    @torch.no_grad()
    def sample_actions(self, batch: dict[str, torch.Tensor], num_steps: int | None = None,
                       generator: torch.Generator | None = None, condition: str | None = None,
                       guidance: float | None = None, unpadded: bool | None = None) -> torch.Tensor:
        """Tensor batch (from ``prepare`` or ``prepare_fast``) -> normalised, padded chunk [B, T, A]; the CUDA
        graph when enabled (which switches the model to eval mode: a graph cannot replay dropout).
        ``condition`` / ``guidance``: see ``get_action``; ``unpadded``: whether no prompt of the batch is
        padded (None: read from the mask, one device sync)."""
        head = self.model.action_head
        head.sampling_condition(condition, guidance)                     # bad values: one line, before any work
        if not self.fast.any and "frames" not in batch:
            return self.model.sample_actions(batch, num_steps=num_steps, generator=generator, condition=condition,
                                             guidance=guidance)
        self.model.eval()
        ids = batch["input_ids"]                                                           # [B, L]
        noise = head.initial_noise(ids.shape[0], ids.device, self.model.backbone.linear.weight.dtype, generator)
        keys = [k for k in GRAPH_KEYS if k in batch] + (["frames"] if "frames" in batch else [])
        inputs = {k: batch[k] for k in keys} | {"noise": noise}
        options = {} if condition is None and guidance is None else {"condition": condition, "guidance": guidance}
        if self.fast.unmasked_sdpa:                      # host-known: no padding (a read of a device mask syncs)
            options["unpadded"] = bool(batch["attention_mask"].all()) if unpadded is None else bool(unpadded)
        steps = num_steps or head.config.num_inference_steps
        if self._graphed is None:
            return self._graph_body(inputs, num_steps=steps, **options)
        return self._graphed(inputs, guard=weights_guard(self.model), num_steps=steps, **options)

    @torch.no_grad()
    def get_action(self, observation: dict, num_steps: int | None = None, seed: int | None = None,
                   condition: str | None = None, guidance: float | None = None) -> dict[str, np.ndarray]:
        """-> {"action.<name>": [horizon, dim]} (or [B, horizon, dim] for a batched observation) in robot units.

        ``num_steps`` denoising steps (default: the config's, 4); the same ``seed`` gives the same chunk.
        An advantage-conditioned policy samples under ``condition`` ("good", "bad" or "unconditioned") with
        classifier-free ``guidance`` w (velocity = v_uncond + w (v_cond - v_uncond); 1 = plain conditional);
        None takes the checkpoint's defaults (``ActionHeadConfig.default_condition`` / ``default_guidance``).
        A plain policy takes neither (ValueError).
        """
        self.model.eval()
        language = next((observation[k] for k in LANGUAGE_KEYS if k in observation), "")
        batched = not isinstance(language, str)
        batch, unpadded = self.prepare_fast(observation) if self.fast.gpu_preprocess else (self.prepare(observation), None)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        actions = self.sample_actions(batch, num_steps=num_steps, generator=generator, condition=condition,
                                      guidance=guidance, unpadded=unpadded)              # [B, T, A]
        out = self.processor.decode_actions(actions)
        return out if batched else {k: v[0] for k, v in out.items()}


def load_policy(path: str | Path, tokenizer=None, device="cpu", dtype=None, embodiment_tag: str | None = None) -> Gr00tPolicy:
    """Our checkpoint or an official GR00T N1 directory -> Gr00tPolicy (same as ``Gr00tPolicy.from_pretrained``)."""
    return Gr00tPolicy.from_pretrained(path, tokenizer=tokenizer, device=device, dtype=dtype,
                                       embodiment_tag=embodiment_tag)


def load_official(path: str | Path, tokenizer=None, device="cpu", dtype=None,
                  embodiment_tag: str | None = None) -> Gr00tPolicy:
    """An official GR00T N1 directory -> Gr00tPolicy (strict key and shape check)."""
    return Gr00tPolicy(*read_official(path, tokenizer=tokenizer, device=device, dtype=dtype,
                                      embodiment_tag=embodiment_tag))

"""Stage 1 — supervised fine-tuning (SFT) of the GR00T N1 policy with its own flow-matching loss.

    gr00t-rlhf train sft --data DATASET_OR_CACHE [--data ...] --out runs/sft --preset tiny \\
        --holdout 40-49 --steps 2000 --batch-size 32

    from gr00t_rlhf_train.stages.sft import SFTConfig, run_sft
    summary = run_sft(SFTConfig(data=[...], train=TrainConfig(out_dir="runs/sft", steps=200)))

What it does: each ``--data`` is a frame cache or a LeRobot dataset (turned into a cache under
``--cache-dir`` once, then reused); the modality keys come from the data (state and action names and
widths, the camera) as the data config selects and orders them (``--data-config NAME|FILE``,
``--state-keys`` ...: the official data config's role; default every key of ``meta/modality.json`` in its
order, min_max), embodiment ``new_embodiment``; the checkpoint keeps it as ``model.data``. Per dataset,
the ``--holdout`` episodes are never read for training; validation episodes are carved from the others
(``split_episodes``, seeded) and give ``val_loss`` (the flow-matching loss with fixed noise and flow
times, so evaluations compare) and ``val_action_mse`` (4-step sampled chunks vs the recorded ones, robot
units). The normalisation statistics are computed from the TRAIN episodes only and stored in every
checkpoint. The model starts from a preset (random weights) or a checkpoint (ours or an official GR00T N1 directory).

What is tuned (GR00T's fine-tuning defaults: vision and LLM frozen, projector and DiT tuned):
``tune_visual``: the SigLIP tower and the vision->LLM projector ``mlp1``; ``tune_llm``: the LLM;
``tune_projector``: the action head's state/action encoders, action decoder, position embedding and
the backbone's output ``linear`` (the VL features' projection into the action head); ``tune_diffusion_model``:
the DiT. ``lora_rank > 0`` adapts the tuned LLM/vision with peft LoRA (attention q/k/v/o) instead of
training them fully; checkpoints hold the merged weights, so they load as a plain policy.

Checkpoints: ``out/last`` and ``out/best`` (lowest ``val_loss``) are policy checkpoints
(``Gr00tPolicy.from_pretrained``) with the loop's resumable state beside them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gr00t_rlhf_train.model.configuration import DataConfig, add_data_config_arguments, data_config_from_args

if TYPE_CHECKING:
    from .loop import TrainConfig

PRESETS = ("tiny", "small", "gr00t-n1-2b")
LLM_LORA_TARGETS = r".*language_model\.model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
VISION_LORA_TARGETS = r".*vision_model\.vision_model\.encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"


class SFTConfigError(ValueError):
    """An SFT setting is invalid; the message names the setting (CLI flag) and the value."""


@dataclass
class SFTConfig:
    """Everything ``train sft`` needs; saved (with the TrainConfig) into every checkpoint's ``extra``."""

    data: list[str]                           # frame caches or LeRobot datasets
    train: TrainConfig
    preset: str | None = "tiny"               # start from a preset (random weights) ...
    checkpoint: str | None = None             # ... or from a checkpoint (ours or official GR00T N1)
    tokenizer: str | None = None              # for official checkpoints (they ship none)
    cache_dir: str | None = None              # where datasets are cached (default <out>/cache)
    cache_size: int | None = None             # cached image side (default: 96, or the vision size if larger)
    holdout: list[int] = field(default_factory=list)   # held-out episodes of every dataset
    val_fraction: float = 0.1                 # of the remaining episodes, for validation
    val_samples: int = 256                    # validation samples (evenly spaced over the val episodes)
    rows: str = "frames"                      # sample rows: "frames" (video rate) or "all" (dataset rows)
    tune_visual: bool = False
    tune_llm: bool = False
    tune_projector: bool = True
    tune_diffusion_model: bool = True
    lora_rank: int = 0                        # > 0: LoRA on the tuned LLM / vision instead of full tuning
    lora_alpha: int | None = None             # default 2 x rank
    augment: bool = True                      # random 95 % crop in training (centre crop otherwise)
    # which state/action/video keys, in which order, and their normalisation modes (--data-config, --*-keys,
    # --*-mode); the default takes every key of the data's meta/modality.json in its order, min_max
    data_config: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if isinstance(self.data_config, dict):
            self.data_config = DataConfig(**self.data_config)
        if not isinstance(self.data_config, DataConfig):
            raise SFTConfigError(f"data_config = {self.data_config!r}: must be a DataConfig or a mapping of its fields")
        if not self.data:
            raise SFTConfigError("--data: give at least one dataset or frame cache")
        if self.checkpoint is None and self.preset not in PRESETS:
            raise SFTConfigError(f"--preset {self.preset!r}: unknown preset; choose one of {PRESETS} or --checkpoint")
        for name in ("lora_rank", "val_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SFTConfigError(f"--{name.replace('_', '-')} {v!r}: must be an integer >= 0")
        if self.lora_rank and not (self.tune_llm or self.tune_visual):
            raise SFTConfigError(f"--lora-rank {self.lora_rank}: LoRA adapts the LLM / vision tower; add --tune-llm "
                                 "and/or --tune-visual")
        if not 0.0 <= self.val_fraction < 1.0:
            raise SFTConfigError(f"--val-fraction {self.val_fraction!r}: must be in [0, 1)")
        if self.cache_size is not None and (not isinstance(self.cache_size, int) or self.cache_size < 14):
            raise SFTConfigError(f"--cache-size {self.cache_size!r}: must be an integer >= 14 (pixels)")
        if self.rows not in ("frames", "all"):
            raise SFTConfigError(f"--rows {self.rows!r}: allowed 'frames', 'all'")
        if not (self.tune_visual or self.tune_llm or self.tune_projector or self.tune_diffusion_model):
            raise SFTConfigError("nothing to tune: enable at least one of --tune-visual/--tune-llm/--tune-projector/"
                                 "--tune-diffusion-model")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        return d


@dataclass
class SFTSummary:
    steps: int
    train_loss: float | None
    val_loss: float | None
    val_action_mse: float | None
    seconds: float
    checkpoint: str | None
    best_checkpoint: str | None
    train_episodes: dict
    val_episodes: dict
    holdout: dict
    samples: int
    policy: object = field(default=None, repr=False)   # the trained policy (in memory; not in summary.json)

    def to_dict(self) -> dict:
        # without copying the policy (asdict deep-copies; an FSDP-sharded model cannot be copied)
        return {k: v for k, v in asdict(replace(self, policy=None)).items() if k != "policy"}

    def lines(self) -> list[str]:
        def f(v):
            return "n/a" if v is None else f"{v:.4g}"
        return [f"steps         {self.steps}",
                f"train loss    {f(self.train_loss)}",
                f"val loss      {f(self.val_loss)}  (action MSE {f(self.val_action_mse)}, robot units)",
                f"samples       {self.samples} training samples",
                f"time          {self.seconds:.1f} s",
                f"checkpoint    {self.checkpoint}",
                f"best          {self.best_checkpoint}"]


# -- data -----------------------------------------------------------------------------------------
def open_data(sources: list[str], cache_dir: Path, size: int, progress: bool = True) -> list:
    """Each source -> FrameCache: a cache as is, a dataset cached once under ``cache_dir/<name>-<size>px``."""
    from gr00t_rlhf_train.data.cache import META_FILE, FrameCache, build_cache

    caches, names = [], set()
    for src in sources:
        p = Path(src)
        if (p / META_FILE).is_file():
            caches.append(FrameCache(p))
        elif (p / "meta" / "info.json").is_file():
            name = f"{p.resolve().name}-{size}px"
            if name in names:
                raise SFTConfigError(f"--data {src}: given twice")
            names.add(name)
            caches.append(FrameCache(build_cache(p, cache_dir / name, image_size=size, progress=progress)))
        else:
            raise SFTConfigError(f"--data {src}: neither a frame cache ({META_FILE}) nor a LeRobot dataset "
                                 "(meta/info.json)")
    return caches


def modality_source(cache) -> str:
    """Where a cache's modality comes from, for messages: ``<dataset>/meta/modality.json``."""
    return f"{cache.meta.get('source') or cache.path}/meta/modality.json"


def modality_for(caches: list, data_config: DataConfig | None = None):
    """The ModalityConfig of the data (all sources must agree), embodiment new_embodiment: the keys, order
    and modes ``data_config.resolve`` selects (default: every key of modality.json in its order, min_max).
    A key the data lacks is a one-line ConfigError naming it and the dataset's modality.json."""
    from gr00t_rlhf_train.model.checkpoint import EMBODIMENT_IDS
    from gr00t_rlhf_train.model.processor import ModalityConfig

    dims = caches[0].modality_dims()
    for c in caches[1:]:
        if c.modality_dims() != dims:
            raise SFTConfigError(f"--data {c.path}: modality {c.modality_dims()} differs from {caches[0].path}'s {dims}")
    layout = (data_config or DataConfig()).resolve(dims, modality_source(caches[0]))
    return ModalityConfig(**layout, embodiment_tag="new_embodiment", embodiment_id=EMBODIMENT_IDS["new_embodiment"])


def train_stats(caches: list, episodes: list[list[int]], modality, rows: str) -> dict:
    """min/max/mean/std/q01/q99 per state and action key of ``modality`` over the sample rows of the TRAIN
    episodes (the keys the data config selected; the data's other columns are not read)."""
    groups = {"state": [], "action": []}
    for cache, eps in zip(caches, episodes):
        for e in eps:
            ep = cache.episode(e)
            r = ep.grid_rows(cache.fps) if rows == "frames" else np.arange(len(ep))
            groups["state"].append(ep.state[r])
            groups["action"].append(ep.action[r])
    out: dict = {}
    for group, arrays in groups.items():
        x = np.concatenate(arrays).astype(np.float64)                       # [N, D]
        out[group] = {}
        for name in getattr(modality, group):
            if name not in caches[0].modality[group]:
                raise SFTConfigError(f"{group}.{name} is not a {group} key of {modality_source(caches[0])} "
                                     f"(its keys: {sorted(caches[0].modality[group])})")
            s, e = caches[0].modality[group][name]
            v = x[:, s:e]
            out[group][name] = {"min": v.min(0).tolist(), "max": v.max(0).tolist(), "mean": v.mean(0).tolist(),
                                "std": v.std(0).tolist(), "q01": np.quantile(v, 0.01, axis=0).tolist(),
                                "q99": np.quantile(v, 0.99, axis=0).tolist()}
    return out


def split_all(caches: list, holdout: list[int], val_fraction: float, seed: int) -> tuple[list, list, list]:
    from gr00t_rlhf_train.data.samples import split_episodes

    trains, vals, tests = [], [], []
    for c in caches:
        outside = sorted(set(holdout) - set(c.episodes))
        if outside:
            raise SFTConfigError(f"--holdout: episodes {outside[:10]} are not in {c.path} (episodes "
                                 f"{c.episodes[0]}..{c.episodes[-1]})")
        try:
            tr, va, te = split_episodes(c, holdout, val_fraction=val_fraction, seed=seed)
        except ValueError as e:
            raise SFTConfigError(f"--holdout / --val-fraction for {c.path}: {e}") from None
        trains.append(tr), vals.append(va), tests.append(te)
    return trains, vals, tests


class PolicyCollator:
    """Samples -> the model's tensor batch (in DataLoader workers): collate + processor, with a random
    95 % crop drawn from the process's torch RNG when ``augment`` (so a resumed run draws the same)."""

    def __init__(self, processor, augment: bool):
        self.processor, self.augment = processor, augment

    def __call__(self, samples: list[dict]) -> dict:
        import torch
        from gr00t_rlhf_train.data.samples import collate

        batch = collate(samples)
        generator = None
        if self.augment:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        return self.processor(batch, generator=generator)


# -- model --------------------------------------------------------------------------------------
def vision_size(cfg: SFTConfig) -> int:
    """The vision tower's input side of the starting model (read from the checkpoint's config)."""
    from gr00t_rlhf_train.model.checkpoint import CONFIG_NAME, CheckpointError, config_from_official, read_meta
    from gr00t_rlhf_train.model.configuration import ModelConfig, preset

    if cfg.checkpoint is None:
        return preset(cfg.preset).backbone.vision.image_size
    path = Path(cfg.checkpoint)
    try:
        if (path / CONFIG_NAME).is_file():
            return ModelConfig.from_dict(read_meta(path)["model"]).backbone.vision.image_size
        if (path / "config.json").is_file():
            return config_from_official(json.loads((path / "config.json").read_text())).backbone.vision.image_size
    except CheckpointError as e:
        raise SFTConfigError(f"--checkpoint {cfg.checkpoint}: {' '.join(str(e).split())}") from None
    raise SFTConfigError(f"--checkpoint {cfg.checkpoint}: holds neither {CONFIG_NAME} (ours) nor config.json "
                         "(official GR00T N1)")


def model_data_config(data_config: DataConfig, start: DataConfig | None) -> DataConfig:
    """The DataConfig saved with the trained model (``model.data`` of its JSON): the run's keys and modes;
    the normalisation semantics of the starting checkpoint (``start``: its weights were trained under them,
    e.g. ``legacy`` for an old checkpoint), the run's own (official) from a preset (``start`` None)."""
    if start is None:
        return data_config
    return replace(data_config, normalization=start.normalization)


def preset_policy(name: str, data_config: DataConfig, modality, stats: dict, seed: int):
    """A policy with random weights from preset ``name``, for the run's data config (``model_data_config``),
    the data's modality and the TRAIN statistics (``train sft`` and ``train reward`` without a checkpoint)."""
    from gr00t_rlhf_train.model.configuration import preset
    from gr00t_rlhf_train.model.policy import Gr00tPolicy

    config = preset(name)
    config.data = model_data_config(data_config, None)
    return Gr00tPolicy.from_config(config, modality=modality, stats=stats, seed=seed)


def rebind_policy(policy, data_config: DataConfig, modality, stats: dict):
    """A loaded policy bound to the run: its config's ``data`` (``model_data_config``) and a processor with the
    data's modality and the TRAIN statistics (its tokenizer kept)."""
    from gr00t_rlhf_train.model.processor import Gr00tProcessor

    policy.config.data = model_data_config(data_config, policy.config.data)
    policy.processor = Gr00tProcessor(policy.config, modality, stats, policy.processor.tokenizer)
    return policy


def build_policy(cfg: SFTConfig, modality, stats: dict):
    """The starting policy with the data's modality and statistics; ``policy.config.data`` is the run's data
    config (``model_data_config``)."""
    from gr00t_rlhf_train.model.checkpoint import CheckpointError
    from gr00t_rlhf_train.model.policy import load_policy

    if cfg.checkpoint is None:
        return preset_policy(cfg.preset, cfg.data_config, modality, stats, cfg.train.seed)
    try:
        policy = load_policy(cfg.checkpoint, tokenizer=cfg.tokenizer)
    except CheckpointError as e:
        raise SFTConfigError(f"--checkpoint {cfg.checkpoint}: {' '.join(str(e).split())}") from None
    return rebind_policy(policy, cfg.data_config, modality, stats)


def set_tuning(model, cfg: SFTConfig) -> dict[str, int]:
    """requires_grad per the tune flags (+ LoRA adapters); -> trainable parameter count per part."""
    from peft import LoraConfig, inject_adapter_in_model

    parts = {
        "visual": (cfg.tune_visual, ["backbone.model.vision_model.", "backbone.model.mlp1."]),
        "llm": (cfg.tune_llm, ["backbone.model.language_model."]),
        "projector": (cfg.tune_projector, ["action_head.state_encoder.", "action_head.action_encoder.",
                                           "action_head.action_decoder.", "action_head.position_embedding.",
                                           "backbone.linear."]),
        "diffusion_model": (cfg.tune_diffusion_model, ["action_head.model."]),
    }
    if cfg.lora_rank:
        targets = [t for on, t in ((cfg.tune_llm, LLM_LORA_TARGETS), (cfg.tune_visual, VISION_LORA_TARGETS)) if on]
        inject_adapter_in_model(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank,
                                           target_modules="|".join(f"(?:{t})" for t in targets)), model.backbone)
    counts = {k: 0 for k in parts}
    for name, p in model.named_parameters():
        part = next((k for k, (_, prefixes) in parts.items() if any(name.startswith(x) for x in prefixes)), None)
        if part is None:
            raise RuntimeError(f"parameter {name} belongs to no tuning group")
        on = parts[part][0]
        lora_part = cfg.lora_rank and part in ("visual", "llm") and not name.startswith("backbone.model.mlp1.")
        train = ("lora_" in name) if (on and lora_part) else on
        p.requires_grad_(bool(train))
        counts[part] += p.numel() if train else 0
    return counts


def merged_state(model) -> dict:
    """state_dict with LoRA adapters folded into their base weights (plain Gr00tN1 keys)."""
    import torch
    from peft.tuners.lora import LoraLayer

    state = {k: v.detach() for k, v in model.state_dict().items()}
    for name, m in model.named_modules():
        if not isinstance(m, LoraLayer):
            continue
        base = state.pop(f"{name}.base_layer.weight")
        with torch.no_grad():
            delta = sum(m.get_delta_weight(a) for a in m.active_adapters)
        state[f"{name}.weight"] = base + delta.to(base.dtype)
        if f"{name}.base_layer.bias" in state:
            state[f"{name}.bias"] = state.pop(f"{name}.base_layer.bias")
    return {k: v for k, v in state.items() if "lora_" not in k}


def save_policy(policy, model, path: Path, extra: dict) -> None:
    """Write a plain policy checkpoint of ``model`` (LoRA merged) with ``policy``'s processor."""
    import torch
    from gr00t_rlhf_train.model.checkpoint import save_checkpoint
    from gr00t_rlhf_train.model.gr00t_n1 import Gr00tN1

    if any("lora_" in n for n, _ in model.named_parameters()):
        state = {k: v.cpu() for k, v in merged_state(model).items()}
        with torch.device("meta"):
            plain = Gr00tN1(policy.config, model.image_token_id)
        plain.load_state_dict(state, strict=True, assign=True)
        model = plain
    save_checkpoint(path, "policy", model, policy.processor, policy.feedback_vocabulary, extra=extra)


# -- validation ---------------------------------------------------------------------------------
def make_evaluate(dataset, processor, batch_size: int, samples: int, seed: int):
    """-> evaluate(model): {"val_loss", "val_action_mse"} on a fixed subset, fixed noise (RNG forked)."""
    import torch
    from gr00t_rlhf_train.data.samples import collate

    n = len(dataset)
    idx = np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(int)) if n else np.array([], int)
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    names = list(processor.modality.action)

    def evaluate(model) -> dict:
        if not len(idx):
            return {}
        device = next(model.parameters()).device
        total, mse, count = 0.0, 0.0, 0
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for b in batches:
                raw = collate([dataset[int(i)] for i in b])
                batch = {k: v.to(device) for k, v in processor(raw).items()}
                total += float(model.loss(batch).detach()) * len(b)
                pred = processor.decode_actions(model.sample_actions(batch))           # {"action.<n>": [B, T, d]}
                err = [(pred[f"action.{k}"] - np.asarray(raw[f"action.{k}"], np.float64)) ** 2 for k in names]
                mse += float(np.concatenate(err, axis=-1).mean()) * len(b)
                count += len(b)
        return {"val_loss": total / count, "val_action_mse": mse / count}

    return evaluate


# -- the stage ----------------------------------------------------------------------------------
def run_sft(cfg: SFTConfig, progress: bool = True) -> SFTSummary:
    """Prepare data and model per ``cfg``, train with the shared loop, -> summary."""
    import torch

    from gr00t_rlhf_train.data.samples import PolicySamples

    from .loop import is_main_process, main_process_first, train

    t0 = time.time()
    out = Path(cfg.train.out_dir)
    size = cfg.cache_size or max(96, vision_size(cfg))
    progress = progress and is_main_process()
    with main_process_first(cfg.train):           # several processes: the main one builds a dataset's cache
        caches = open_data(cfg.data, Path(cfg.cache_dir) if cfg.cache_dir else out / "cache", size, progress)
    modality = modality_for(caches, cfg.data_config)
    trains, vals, tests = split_all(caches, cfg.holdout, cfg.val_fraction, cfg.train.seed)
    stats = train_stats(caches, trains, modality, cfg.rows)
    policy = build_policy(cfg, modality, stats)
    horizon = policy.config.action_head.action_horizon
    train_ds = torch.utils.data.ConcatDataset(
        [PolicySamples(c, e, action_horizon=horizon, rows=cfg.rows) for c, e in zip(caches, trains)])
    val_parts = [PolicySamples(c, e, action_horizon=horizon, rows=cfg.rows) for c, e in zip(caches, vals) if e]
    val_ds = torch.utils.data.ConcatDataset(val_parts) if val_parts else []
    model = policy.model
    counts = set_tuning(model, cfg)

    episodes = {str(c.path): {"train": tr, "val": va, "holdout": te} for c, tr, va, te in zip(caches, trains, vals, tests)}
    # the frames' size and rate the policy learned from (inference resizes a camera frame to this size first)
    extra = {"sft": cfg.to_dict() | {"episodes": episodes, "trainable": counts,
                                     "image_size": list(caches[0].image_size), "fps": caches[0].fps}}
    evaluate = make_evaluate(val_ds, policy.processor, cfg.train.batch_size, cfg.val_samples, cfg.train.seed) \
        if len(val_ds) else None
    tc = cfg.train
    if evaluate is not None and tc.best_metric is None:
        tc.best_metric, tc.best_mode = "val_loss", "min"
    if progress:
        print(f"sft: {len(train_ds)} training samples from {sum(map(len, trains))} episodes, {len(val_ds)} "
              f"validation samples, holdout {sum(map(len, tests))} episodes; trainable "
              + ", ".join(f"{k} {v:,}" for k, v in counts.items()), file=sys.stderr)

    def loss_fn(m, batch):
        loss = m.loss(batch)
        return loss, {}

    result = train(model, loss_fn, train_ds, tc, evaluate=evaluate,
                   save=lambda m, p: save_policy(policy, m, Path(p), extra),
                   collate_fn=PolicyCollator(policy.processor, cfg.augment))
    ev = result.eval_metrics or {}
    return SFTSummary(steps=result.steps, train_loss=result.train_loss, val_loss=ev.get("val_loss"),
                      val_action_mse=ev.get("val_action_mse"), seconds=time.time() - t0,
                      checkpoint=result.last_checkpoint, best_checkpoint=result.best_checkpoint,
                      train_episodes={k: v["train"] for k, v in episodes.items()},
                      val_episodes={k: v["val"] for k, v in episodes.items()},
                      holdout={k: v["holdout"] for k, v in episodes.items()}, samples=len(train_ds),
                      policy=policy)


# -- CLI ----------------------------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The shared loop's flags (steps, batch, lr, schedule, precision, logging, resume)."""
    g = p.add_argument_group("training loop")
    g.add_argument("--out", required=True, help="output directory (checkpoints last/ and best/, metrics.jsonl)")
    g.add_argument("--steps", type=int, default=1000, help="optimizer updates (default 1000)")
    g.add_argument("--batch-size", type=int, default=32, help="samples per micro-batch per process (default 32)")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per update (default 1)")
    g.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    g.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW weight decay (default 1e-5)")
    g.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (default: 5%% of --steps)")
    g.add_argument("--schedule", choices=("cosine", "constant"), default="cosine", help="after the warm-up")
    g.add_argument("--eval-every", type=int, default=100, help="steps between validations (0: at the end)")
    g.add_argument("--save-every", type=int, default=500, help="steps between checkpoints (0: at the end)")
    g.add_argument("--log-every", type=int, default=10, help="steps between log records")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, data order, splits (default 0)")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    g.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (default 2)")
    g.add_argument("--prefetch-factor", type=int, default=4, help="batches each worker keeps ready (default 4)")
    g.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: none)")
    g.add_argument("--no-resume", action="store_true", help="refuse to continue an existing --out/last")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even where CUDA is available")


def train_config_from_args(args):
    """-> TrainConfig of the flags added by ``add_train_arguments``."""
    from .loop import TrainConfig

    warmup = {"warmup_ratio": 0.05} if args.warmup_steps is None else {"warmup_steps": args.warmup_steps}
    return TrainConfig(out_dir=args.out, steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                       lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule, eval_every=args.eval_every,
                       save_every=args.save_every, log_every=args.log_every, seed=args.seed, precision=args.precision,
                       num_workers=args.num_workers, max_grad_norm=args.max_grad_norm, resume=not args.no_resume,
                       prefetch_factor=getattr(args, "prefetch_factor", 4),
                       cpu=args.cpu, **warmup)


def add_parser(sub) -> None:
    p = sub.add_parser("sft", help="stage 1: flow-matching fine-tuning of the policy",
                       description="Fine-tune the GR00T N1 policy on one or more datasets (or frame caches) with its "
                                   "flow-matching loss. Defaults follow GR00T fine-tuning: vision and LLM frozen, "
                                   "projector and DiT tuned.")
    p.add_argument("--data", action="append", required=True, metavar="PATH",
                   help="a LeRobot dataset or a frame cache (repeat for several)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", help=f"start from a preset with random weights: {', '.join(PRESETS)}")
    src.add_argument("--checkpoint", help="start from a checkpoint: ours (gr00t_rlhf.json) or official GR00T N1")
    add_policy_data_arguments(p, "tokenizer for an official checkpoint (a directory or a cached name)")
    add_data_config_arguments(p)
    add_train_arguments(p)
    p.set_defaults(func=cmd_sft)


def add_policy_data_arguments(p, tokenizer_help: str) -> None:
    """The data, split and tuning flags of a policy-training stage (``train sft`` and ``train rl``)."""
    p.add_argument("--tokenizer", help=tokenizer_help)
    p.add_argument("--cache-dir", help="where datasets are cached (default OUT/cache)")
    p.add_argument("--cache-size", type=int, help="cached image side in pixels (default 96, or the vision size)")
    p.add_argument("--holdout", default="", help="episodes never trained on, e.g. 40-49 (every dataset)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share of the other episodes")
    p.add_argument("--val-samples", type=int, default=256, help="validation samples per evaluation (default 256)")
    p.add_argument("--rows", choices=("frames", "all"), default="frames",
                   help="samples at the video rate (default) or at every dataset row")
    for part, default in (("visual", False), ("llm", False), ("projector", True), ("diffusion-model", True)):
        p.add_argument(f"--tune-{part}", action=argparse.BooleanOptionalAction, default=default,
                       help=f"train the {part.replace('-', ' ')} (default: {'yes' if default else 'no'})")
    p.add_argument("--lora-rank", type=int, default=0, help="LoRA rank for the tuned LLM / vision (0: full tuning)")
    p.add_argument("--no-augment", action="store_true", help="centre crop instead of a random 95%% crop")


def cmd_sft(args) -> int:
    from gr00t_rlhf_train.data.cache import parse_episodes
    from gr00t_rlhf_train.data.errors import DatasetError

    from .loop import TrainConfigError

    try:
        holdout = parse_episodes(args.holdout) if args.holdout.strip() else []
        cfg = SFTConfig(data=args.data, train=train_config_from_args(args), preset=args.preset,
                        checkpoint=args.checkpoint, tokenizer=args.tokenizer, cache_dir=args.cache_dir,
                        cache_size=args.cache_size, holdout=holdout, val_fraction=args.val_fraction,
                        val_samples=args.val_samples, rows=args.rows, tune_visual=args.tune_visual,
                        tune_llm=args.tune_llm, tune_projector=args.tune_projector,
                        tune_diffusion_model=args.tune_diffusion_model, lora_rank=args.lora_rank,
                        augment=not args.no_augment, data_config=data_config_from_args(args))
        summary = run_sft(cfg)
    except (SFTConfigError, TrainConfigError, DatasetError, ValueError, FloatingPointError) as e:
        print(f"error: train sft: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if _is_main():
        print("\n".join(summary.lines()))
        (Path(args.out) / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
    return 0


def _is_main() -> bool:
    from .loop import is_main_process
    return is_main_process()



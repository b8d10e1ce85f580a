"""Stage 2: train the reward model on human feedback (``gr00t-rlhf train reward``).

    result = train_reward(RewardConfig(data="/tmp/cache96", out_dir="runs/rm", holdout="40-49,90-99",
                                       horizon=4, loss="bce+0.5*bt", steps=2000))
    rm = RewardModel.from_pretrained(result.best_checkpoint)      # no flags: everything is in the checkpoint

Data: one dataset or frame cache (a dataset is cached first, ``data.cache.build_cache``). Episodes
are split by ``data.samples.split_episodes``: the held-out ones (``holdout``) are never read here;
validation episodes are carved from the rest (``val_fraction``, ``split_seed``) and drive the best
checkpoint; training uses the remaining ones. Samples are ``RewardClips`` of ``horizon`` consecutive
frames ending at the labelled row; the target is ``next.reward`` (``target="reward"``) or the
vocabulary's reward of the feedback key (``"feedback"``). The model sees the frames, the states and
the task instruction only (``model_inputs``): never the label, the feedback key or its text.
With ``action_horizon`` K > 0 it also sees the K recorded actions starting at the labelled row (the
action-conditioned reward model of best-of-N); ``action_negatives`` P replaces, with probability P, a
sample's actions by those of another sample of its batch and sets its target to the lowest reward.

``cache_features`` (``--cache-features``, needs ``--tuning frozen``): the frozen backbone runs once over
every frame (``feature_cache.py``, centre crops: no crop augmentation) and the head trains on the
cached features; the same loss and the same head outputs as recomputing them, many times the steps/s.

Loading: the host preparation of a batch (action negatives, then ``RewardModel.host_inputs``: crops, resize,
colour jitter, tokenizer, normalisation) is the DataLoader's ``collate_fn`` (``RewardCollator``), so it runs in
the ``num_workers`` worker processes, several batches at once, while the GPU trains (``num_workers=0``: in one
background thread of the training process, the loop's ``prepare_fn``, a batch ahead of the step). Its draws come
from one generator per batch seeded by the batch's samples: the numbers do not depend on ``num_workers``.

Normalisation statistics of state and action come from the TRAIN episodes and are stored in the
checkpoint with the head (kind, horizon, output kind and reward range), the tuning, the loss, the
vocabulary and the splits (``extra["reward_training"]``).
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ..data.cache import FrameCache, parse_episodes
from ..data.samples import RewardClips, collate, model_inputs, split_episodes
from ..model.configuration import ConfigError, DataConfig, add_data_config_arguments, data_config_from_args
from .feature_cache import CachedClips, FrameFeatures
from .losses import ClassBalance, RewardLoss, balanced_indices
from .loop import TrainConfig, TrainResult, is_main_process, main_process_first, process_device, train

TARGETS = ("reward", "feedback")
BALANCES = ("none", "weights", "sampler")
TUNINGS = ("frozen", "lora", "full")
MIN_METRICS = ("loss", "mse", "mae")
# --loss auto: the best of docs/experiments/reward_horizon.md (binary) and seed_data.md (scores)
AUTO_LOSS = {"binary": "bce", "score": "mse+0.5*bt"}           # best-checkpoint metrics where lower is better
EVAL_METRICS = MIN_METRICS + ("auroc", "pearson", "spearman", "accuracy", "balanced_accuracy", "episode_accuracy",
                              "pred_std", "auroc_third1", "auroc_third2", "auroc_third3")   # what evaluate() returns
LOSS_PARAMS = ("gamma", "focal_mse_gamma", "alpha", "pairs_per_batch", "pair_scope")


class RewardConfigError(ValueError):
    """A bad ``train reward`` setting or input (one line naming the field / file)."""


@dataclass
class RewardConfig:
    """Everything ``train_reward`` needs (saved in the checkpoint's ``extra``)."""

    data: str                          # a LeRobot dataset or a frame cache directory
    out_dir: str
    holdout: str = ""                  # held-out episodes, e.g. "40-49,90-99" (never read)
    val_fraction: float = 0.1          # of the non-held-out episodes, for validation
    split_seed: int = 0
    cache_dir: str | None = None       # where a dataset is cached (default <out_dir>/cache)
    image_size: int = 96               # cache picture size when caching a dataset
    target: str = "reward"             # reward (next.reward) | feedback (the vocabulary's reward of the key)
    horizon: int = 4                   # frames per scored clip (docs/experiments/reward_horizon.md: 4 is best)
    action_horizon: int = 0            # K recorded actions from the labelled row the model also reads (0 = none)
    action_negatives: float = 0.0      # augmentation: share of samples given another sample's actions, lowest target
    stride: int = 1                    # every stride-th frame is a training sample
    loss: str = "auto"                 # e.g. "mse+0.5*bt", "bce", "focal+bt" (see losses.py); auto: AUTO_LOSS
    gamma: float = 2.0                 # focal
    focal_mse_gamma: float = 1.0       # focal_mse
    alpha: float | None = None         # focal class factor
    threshold: float | None = None     # positive above; default 0.5 for 0/1 targets, 0 for scores
    pairs_per_batch: int = 256         # Bradley-Terry pairs per batch (0 = all)
    pair_scope: str = "all"            # all | within | across episodes
    class_balance: str = "none"        # none | weights (per-sample loss weights) | sampler (balanced draws)
    preset: str = "tiny"               # model preset when training from scratch
    init: str | None = None            # a policy checkpoint (ours or official) to start from instead
    head: str = "mlp"                  # mlp | dit
    head_layers: int = 4
    head_heads: int = 8
    head_dim: int = 64
    head_hidden: int = 128
    refine_steps: int = 2
    pool: str = "mean"                 # mlp head pooling
    use_state: bool = True
    tuning: str | None = None          # frozen | lora | full; default full from a preset, lora from a checkpoint
    lora_rank: int = 8
    augment: bool = True               # random 95 % crops while training (centre crop for validation)
    cache_features: bool = False       # frozen backbone: compute its features once, train the head on them
    best_metric: str | None = None     # default auroc (0/1 targets) or pearson (scores)
    val_max_samples: int = 2000        # validation clips (evenly spaced over the validation samples)
    train: dict = field(default_factory=dict)   # TrainConfig fields (steps, batch_size, lr, ...)
    # the state/action/video keys, their order and modes (--data-config, --*-keys, --*-mode; as train sft);
    # default: every key of the data's meta/modality.json in its order, min_max
    data_config: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> RewardConfigError:
            return RewardConfigError(f"train reward: {name} = {getattr(self, name)!r}: {why}")

        if isinstance(self.data_config, dict):
            try:
                self.data_config = DataConfig(**self.data_config)
            except (ConfigError, TypeError) as e:
                raise bad("data_config", str(e)) from None
        if not isinstance(self.data_config, DataConfig):
            raise bad("data_config", "must be a DataConfig or a mapping of its fields")

        if not str(self.data):
            raise bad("data", "give a dataset or frame cache directory")
        for name, allowed in (("target", TARGETS), ("class_balance", BALANCES), ("head", ("mlp", "dit"))):
            if getattr(self, name) not in allowed:
                raise bad(name, f"allowed {allowed}")
        if self.tuning is not None and self.tuning not in TUNINGS:
            raise bad("tuning", f"allowed {TUNINGS}")
        for name in ("horizon", "stride", "image_size", "lora_rank", "val_max_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "must be an integer >= 1")
        if isinstance(self.action_horizon, bool) or not isinstance(self.action_horizon, int) or self.action_horizon < 0:
            raise bad("action_horizon", "must be an integer >= 0 (0 = the model reads no actions)")
        if not (isinstance(self.action_negatives, (int, float)) and 0.0 <= self.action_negatives < 1.0):
            raise bad("action_negatives", "must be a probability in [0, 1)")
        if self.action_negatives and not self.action_horizon:
            raise bad("action_negatives", "needs --action-horizon K > 0 (a model without actions has none to swap)")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad("val_fraction", "must be in [0, 1)")
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise bad("threshold", "must be a finite number")
        if self.best_metric is not None and self.best_metric not in EVAL_METRICS:
            raise bad("best_metric", f"allowed {EVAL_METRICS}")
        if self.cache_features and (self.tuning or ("lora" if self.init else "full")) != "frozen":
            raise bad("cache_features", f"needs a frozen backbone (tuning = {self.tuning or ('lora' if self.init else 'full')!r}); "
                                        "add --tuning frozen")
        self.parse_holdout()
        self.loss_fn(0.5, binary=True)                 # the loss spec and its parameters
        self.loss_fn(0.0, binary=False)
        self.head_config()                             # the head's sizes (one-line ConfigError)
        unknown = sorted(set(self.train) - set(TrainConfig.__dataclass_fields__) | {"out_dir"} & set(self.train))
        if unknown:
            raise bad("train", f"unknown TrainConfig field(s) {unknown}")
        TrainConfig(out_dir=self.out_dir, **self.train)   # the loop's fields (one-line TrainConfigError)

    def parse_holdout(self) -> list[int]:
        if not str(self.holdout).strip():
            return []
        try:
            return parse_episodes(self.holdout)
        except ValueError as e:
            raise RewardConfigError(f"train reward: holdout: {e}") from None

    def head_config(self, output: str = "value", reward_range: tuple = (0.0, 1.0)):
        from ..model.reward_head import RewardHeadConfig
        return RewardHeadConfig(kind=self.head, horizon=self.horizon, pool=self.pool, hidden_size=self.head_hidden,
                                use_state=self.use_state, num_layers=self.head_layers, num_heads=self.head_heads,
                                head_dim=self.head_dim, refine_steps=self.refine_steps, output=output,
                                reward_range=reward_range, action_horizon=self.action_horizon)

    def loss_spec(self, binary: bool) -> str:
        """The loss spec to train with: ``loss``, or for ``auto`` the study's best for these targets."""
        return AUTO_LOSS["binary" if binary else "score"] if self.loss == "auto" else self.loss

    def loss_fn(self, threshold: float, binary: bool = True) -> RewardLoss:
        return RewardLoss.parse(self.loss_spec(binary), threshold=threshold,
                                **{k: getattr(self, k) for k in LOSS_PARAMS})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RewardResult:
    """What ``train_reward`` did (printed as the summary)."""

    train: TrainResult
    splits: dict
    samples: dict
    best_metric: str
    target_kind: str
    threshold: float
    cache: str

    @property
    def best_checkpoint(self) -> str | None:
        return self.train.best_checkpoint

    @property
    def last_checkpoint(self) -> str | None:
        return self.train.last_checkpoint

    def summary(self) -> str:
        t = self.train
        ev = ", ".join(f"{k} {v:.4g}" for k, v in sorted(t.eval_metrics.items())
                       if k in ("loss", "auroc", "pearson", "accuracy", "episode_accuracy") and math.isfinite(v))
        best = "n/a" if t.best_metric is None else f"{t.best_metric:.4g} at step {t.best_step}"
        return (f"train reward: {t.steps} steps ({t.start_step} resumed) in {t.seconds:.1f} s, "
                f"{t.samples_per_second:.1f} samples/s; train loss {t.train_loss if t.train_loss is None else round(t.train_loss, 5)}\n"
                f"  episodes: train {len(self.splits['train'])}, validation {len(self.splits['val'])}, "
                f"held out {len(self.splits['test'])}; samples: train {self.samples['train']}, "
                f"validation {self.samples['val']}; targets: {self.target_kind} (positive above {self.threshold:g})\n"
                f"  last validation: {ev or 'none'}; best {self.best_metric}: {best}\n"
                f"  checkpoints: best {t.best_checkpoint}, last {t.last_checkpoint}")


# -- data --------------------------------------------------------------------------------------
def open_cache(cfg: RewardConfig) -> FrameCache:
    """The frame cache of ``cfg.data`` (a dataset is cached into ``cfg.cache_dir`` first)."""
    path = Path(cfg.data)
    if (path / "cache.json").is_file():
        return FrameCache(path)
    if (path / "meta" / "info.json").is_file():
        from ..data.cache import build_cache
        out = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out_dir) / "cache"
        return FrameCache(build_cache(path, out, image_size=cfg.image_size))
    raise RewardConfigError(f"train reward: data = {str(path)!r}: neither a frame cache (cache.json) "
                            "nor a LeRobot dataset (meta/info.json)")


def check_labels(cache: FrameCache, target: str, episodes: list[int]) -> None:
    """A one-line error unless every selected episode has the label ``target`` reads."""
    for e in episodes:
        ep = cache.episode(e)
        if target == "reward" and (ep.reward is None or not np.isfinite(ep.reward).all()):
            raise RewardConfigError(f"train reward: {cache.path}: episode {e} has no next.reward labels "
                                    "(a dataset without labels cannot train a reward model)")
        if target == "feedback" and (ep.feedback is None or cache.vocabulary is None):
            raise RewardConfigError(f"train reward: {cache.path}: episode {e} has no feedback keys or the "
                                    "dataset no vocabulary (use --target reward, or label the episodes)")


def row_targets(cache: FrameCache, e: int, target: str) -> np.ndarray:
    """Every row's label of episode ``e`` ([T] float): next.reward or the vocabulary's reward of the key."""
    ep = cache.episode(e)
    if target == "reward":
        return ep.reward.astype(np.float64)
    return np.array([cache.vocabulary.reward(int(k)) for k in ep.feedback], np.float64)


def episode_strata(cache: FrameCache, episodes: list[int], target: str, threshold: float | None) -> dict:
    """episode -> 1 if its mean label is positive, else 0 (validation keeps the good/bad episode mix)."""
    labels = {e: row_targets(cache, e, target) for e in episodes}
    values = np.concatenate(list(labels.values()))
    cut = threshold if threshold is not None else (0.5 if np.all((values == 0) | (values == 1)) else 0.0)
    return {e: int(v.mean() > cut) for e, v in labels.items()}


def check_horizon(cache: FrameCache, horizon: int, episodes: list[int]) -> None:
    """The clip must fit inside every selected episode (counted in frames at the video rate)."""
    for e in episodes:
        n = len(cache.episode(e).grid_rows(cache.fps))
        if horizon > n:
            raise RewardConfigError(f"train reward: horizon = {horizon}: longer than episode {e} "
                                    f"({n} frames at {cache.fps:g} fps); use a shorter horizon or drop the episode")


def labels_over(cache: FrameCache, episodes: list[int], stride: int, target: str) -> tuple[np.ndarray, np.ndarray]:
    """-> (targets [N], episodes [N]) of the training samples of ``episodes``, without decoding a picture."""
    view = RewardClips(cache, episodes, horizon=1, stride=stride, target=target, decode=False)
    items = [view[i] for i in range(len(view))]
    return (np.array([s["target"] for s in items], np.float64), np.array([s["episode"] for s in items], np.int64))


def train_stats(cache: FrameCache, episodes: list[int]) -> dict:
    """Normalisation statistics of state and action per modality name over the TRAIN episodes."""
    out: dict = {}
    for group in ("state", "action"):
        rows = np.concatenate([getattr(cache.episode(e), group) for e in episodes]).astype(np.float64)  # [N, D]
        out[group] = {}
        for name, (s, e) in cache.modality[group].items():
            x = rows[:, s:e]
            out[group][name] = {"min": x.min(0).tolist(), "max": x.max(0).tolist(), "mean": x.mean(0).tolist(),
                                "std": x.std(0).tolist(), "q01": np.quantile(x, 0.01, 0).tolist(),
                                "q99": np.quantile(x, 0.99, 0).tolist()}
    return out


class Balanced(torch.utils.data.Dataset):
    """A class-balanced view of a dataset: ``indices`` drawn once (``losses.balanced_indices``)."""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


def action_negatives(inputs: dict, target, p: float, low: float, generator: torch.Generator) -> tuple[dict, np.ndarray]:
    """Augmentation: each sample, with probability ``p``, gets the actions of another sample of the batch (a
    random other row of the training set) and the target ``low`` (the lowest reward): the reward must then
    depend on the actions. -> (inputs with new "actions", targets [B]); the batch itself is left untouched."""
    actions = np.asarray(inputs["actions"])                                       # [B, K, A]
    target = np.asarray(target, np.float64).copy()                                # [B]
    b = len(target)
    if b < 2:
        return inputs, target
    swap = (torch.rand(b, generator=generator) < p).numpy()                       # [B] bool
    other = torch.randint(0, b - 1, (b,), generator=generator).numpy()            # [B] another sample: skip itself
    other = other + (other >= np.arange(b))
    new = actions.copy()
    new[swap] = actions[other[swap]]
    target[swap] = low
    return inputs | {"actions": new}, target


def batch_seed(batch: dict, seed: int) -> int:
    """A seed that is a function of the batch's samples (pair sampling and crops survive a resume)."""
    ep = np.asarray(batch["episode"], np.int64)
    row = np.asarray(batch["row"], np.int64)
    return int((seed * 1_000_003 + int(np.sum(ep * 100_003 + row * 7 + np.arange(ep.size)))) % (2**62))


# -- model -------------------------------------------------------------------------------------
def build_model(cfg: RewardConfig, cache: FrameCache, stats: dict, head_cfg):
    """A RewardModel from a preset (random weights) or a policy checkpoint, with the data's modality (the keys,
    order and modes ``cfg.data_config`` selects, as ``train sft``: ``sft.modality_for``) and the TRAIN
    statistics; its config's ``data`` is the run's data config (``sft.model_data_config``)."""
    from ..model.policy import Gr00tPolicy
    from ..model.processor import ModalityConfig
    from ..model.reward_model import RewardModel
    from .sft import modality_source, preset_policy, rebind_policy

    try:
        layout = cfg.data_config.resolve(cache.modality_dims(), modality_source(cache))
    except ConfigError as e:
        raise RewardConfigError(f"train reward: {e}") from None
    modality = ModalityConfig(**layout)
    if cfg.init:
        from ..model.checkpoint import CheckpointError
        try:
            policy = Gr00tPolicy.from_pretrained(cfg.init)
        except (CheckpointError, FileNotFoundError) as e:
            raise RewardConfigError(f"train reward: init = {cfg.init!r}: {str(e).splitlines()[0]}") from None
        policy = rebind_policy(policy, cfg.data_config, modality, stats)
    else:
        policy = preset_policy(cfg.preset, cfg.data_config, modality, stats, cfg.train.get("seed", 0))
    tuning = cfg.tuning or ("lora" if cfg.init else "full")
    return RewardModel.from_policy(policy, head_cfg, tuning=tuning, lora_rank=cfg.lora_rank)


# -- training ----------------------------------------------------------------------------------
PREPARED = "prepared"   # a prepared batch's model inputs (CPU tensors from RewardInputs, or cached-feature indices)


class RewardCollator:
    """The training DataLoader's ``collate_fn``: samples -> a prepared batch, in the worker processes (N workers
    prepare N batches at once while the GPU trains; stage 1 does its processor work there too).

    ``prepare(batch)``: ONE generator seeded by the batch's samples (``batch_seed``) draws, in this order, the
    action negatives, the crops (``inputs``, the model's ``RewardInputs``: processor, head config, action width;
    no parameter, no device) and, later in the loss, the Bradley-Terry pairs: the numbers do not depend on
    ``num_workers`` or on which process prepared the batch. ``inputs=None`` (cached features): the batch keeps its
    frame indices and the (possibly swapped) actions in robot units. -> {"target" [B], "episode" [B],
    "generator" (state after the crops), PREPARED: CPU tensors, moved to the device by the loop}."""

    def __init__(self, inputs, seed: int, negatives: float, low: float, augment: bool):
        self.inputs, self.seed, self.negatives, self.low, self.augment = inputs, int(seed), negatives, low, augment

    def __call__(self, samples: list[dict]) -> dict:
        return self.prepare(collate(samples))

    def prepare(self, batch: dict) -> dict:
        g = torch.Generator().manual_seed(batch_seed(batch, self.seed))
        inputs, target = model_inputs(batch), batch["target"]
        if self.negatives:
            inputs, target = action_negatives(inputs, target, self.negatives, self.low, g)
        out = {"target": torch.as_tensor(np.asarray(target, np.float64), dtype=torch.float32),
               "episode": torch.as_tensor(np.asarray(batch["episode"]))}
        if self.inputs is not None:
            out[PREPARED] = self.inputs(inputs, generator=g if self.augment else None)
        else:
            out[PREPARED] = {"frames": batch["frames"], "actions": inputs.get("actions")}
        out["generator"] = g
        return out


def make_steps(cfg: RewardConfig, loss: RewardLoss, balance, low: float, store: FrameFeatures | None = None):
    """-> (collator_for, loss_fn) for the loop. ``collator_for(model)`` is the DataLoader's ``collate_fn``
    (``RewardCollator``: action negatives and the model's host preparation, ``RewardModel.host_inputs``, in the
    loader workers; with no workers its ``prepare`` is the loop's ``prepare_fn``, after plain ``collate``; built
    from the model being trained, so its processor is the one an ``--init`` checkpoint brought).
    ``loss_fn(model, prepared)`` moves the inputs to the model (``RewardModel.to_device``, a no-op for the loop's
    batches) and runs the model (or, with ``store``, the head on cached features) and the loss."""
    seed = int(cfg.train.get("seed", 0))

    def collator_for(model) -> RewardCollator:
        return RewardCollator(None if store is not None else model.host_inputs(), seed, cfg.action_negatives, low,
                              cfg.augment)

    def loss_fn(model, prepared):
        x = prepared[PREPARED]
        outputs = model(model.to_device(x)) if store is None else store.forward(model, x, x["actions"])
        target = prepared["target"].to(outputs[-1].device)
        weight = balance(target) if balance is not None else None
        return loss(outputs, target, prepared["episode"].cpu(), weight, prepared["generator"])

    return collator_for, loss_fn


def make_loss_fn(cfg: RewardConfig, loss: RewardLoss, balance, low: float, store: FrameFeatures | None = None):
    """-> loss_fn(model, batch) on a raw (collated) batch: ``make_steps``' preparation and loss in one call."""
    collator_for, step_loss = make_steps(cfg, loss, balance, low, store)

    def loss_fn(model, batch):
        return step_loss(model, collator_for(model).prepare(batch))

    return loss_fn


def cached_features(cfg: RewardConfig, tc: TrainConfig, model, clip_sets: list) -> FrameFeatures:
    """The frozen backbone's features of every frame of ``clip_sets``, on this process's training device and in
    the training precision (each process of a multi-GPU run builds its own)."""
    device = process_device(tc)
    model.to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.mixed_precision) if device.type == "cuda" else None
    if cfg.augment and is_main_process():
        print("train reward: --cache-features: features of centre crops (no crop augmentation)", file=sys.stderr)
    return FrameFeatures.build(model, clip_sets, batch_size=max(tc.batch_size, 32), autocast_dtype=dtype,
                               progress=is_main_process())


def _float(v) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None and math.isfinite(v) else float("nan")


def evaluator(clips: RewardClips, loss: RewardLoss, threshold: float, batch_size: int, max_samples: int,
              forward=None):
    """-> evaluate(model) computing the validation loss and held-out-style metrics on ``clips``.
    ``forward(model, batch)`` -> the head's outputs (default: ``model(model.prepare(model_inputs(batch)))``;
    ``FrameFeatures.forward`` for cached features, with ``clips`` a ``CachedClips``)."""
    if forward is None:
        def forward(model, batch):
            return model(model.prepare(model_inputs(batch)))
    from ..eval.metrics import reward_metrics

    idx = np.unique(np.linspace(0, len(clips) - 1, min(max_samples, len(clips))).round().astype(int))
    grid = {e: clips.cache.episode(e).grid_rows(clips.cache.fps) for e in clips.episodes}   # frame rows
    lengths = {e: len(g) for e, g in grid.items()}
    view = torch.utils.data.Subset(clips, idx.tolist())

    @torch.no_grad()
    def evaluate(model) -> dict:
        was_training = model.training
        model.eval()
        try:
            return _evaluate(model)
        finally:
            model.train(was_training)

    def _evaluate(model) -> dict:
        loader = torch.utils.data.DataLoader(view, batch_size=batch_size, collate_fn=collate, num_workers=0)
        preds, targets, eps, rows, losses = [], [], [], [], []
        for batch in loader:
            outputs = forward(model, batch)
            target = torch.as_tensor(batch["target"], dtype=torch.float32)
            episode = torch.as_tensor(batch["episode"])
            value, _ = loss(outputs, target, episode, None, torch.Generator().manual_seed(batch_seed(batch, 0)))
            losses.append(float(value) * len(target))
            preds.append(model.head_config.to_reward(outputs[-1].float()).cpu().numpy())  # on the target's scale
            targets.append(target.numpy())
            eps.append(np.asarray(batch["episode"]))
            # frame number within the episode (for the per-third metrics)
            rows.append(np.array([int(np.searchsorted(grid[int(e)], r)) for e, r in zip(batch["episode"], batch["row"])]))
        p, t, e, r = (np.concatenate(x) for x in (preds, targets, eps, rows))
        m = reward_metrics(p, t, e, r, threshold=threshold, lengths=lengths)
        n_eps = len(np.unique(e))
        out = {"loss": sum(losses) / len(t), "auroc": _float(m.get("frame.auroc")),
               "pearson": _float(m.get("frame.pearson")), "spearman": _float(m.get("frame.spearman")),
               "accuracy": _float(m.get("frame.accuracy")), "balanced_accuracy": _float(m.get("frame.balanced_accuracy")),
               "mse": _float(m.get("frame.mse")), "mae": _float(m.get("frame.mae")),
               "episode_accuracy": m.get("episode.correct", 0) / max(n_eps, 1),
               "pred_std": _float(m.get("frame.pred_std"))}
        for third in ("third1", "third2", "third3"):
            out[f"auroc_{third}"] = _float(m.get(f"{third}.auroc"))
        return out

    return evaluate


def train_reward(cfg: RewardConfig) -> RewardResult:
    """Train a reward model as configured; -> RewardResult (checkpoints under ``cfg.out_dir``)."""
    with main_process_first(TrainConfig(out_dir=cfg.out_dir, **cfg.train)):   # the main process caches a dataset
        cache = open_cache(cfg)
    holdout = cfg.parse_holdout()
    unknown = sorted(set(holdout) - set(cache.episodes))
    if unknown:
        raise RewardConfigError(f"train reward: holdout: episodes {unknown[:10]} do not exist "
                                f"(episodes {cache.episodes[0]}..{cache.episodes[-1]})")
    rest = [e for e in cache.episodes if e not in set(holdout)]
    check_labels(cache, cfg.target, rest)
    try:
        train_eps, val_eps, test_eps = split_episodes(cache, holdout, cfg.val_fraction, cfg.split_seed,
                                                      strata=episode_strata(cache, rest, cfg.target, cfg.threshold))
    except ValueError as e:
        raise RewardConfigError(f"train reward: {e}") from None
    if not val_eps:
        raise RewardConfigError(f"train reward: val_fraction = {cfg.val_fraction}: no validation episode "
                                f"({len(train_eps)} training episodes); raise it")
    check_horizon(cache, cfg.horizon, train_eps + val_eps)
    if cfg.action_horizon and not cache.modality.get("action"):
        raise RewardConfigError(f"train reward: action_horizon = {cfg.action_horizon}: the data {cache.path} "
                                "has no action columns")
    targets, _ = labels_over(cache, train_eps, cfg.stride, cfg.target)
    binary = bool(np.all((targets == 0) | (targets == 1)))
    threshold = cfg.threshold if cfg.threshold is not None else (0.5 if binary else 0.0)
    if not (targets > threshold).any() or (targets > threshold).all():
        raise RewardConfigError(f"train reward: every training target is on one side of threshold {threshold:g} "
                                f"(values {targets.min():g}..{targets.max():g}): nothing to learn to tell apart")
    loss = cfg.loss_fn(threshold, binary)
    voc = cache.vocabulary
    if binary:
        reward_range = (0.0, 1.0)
    elif voc is not None and not voc.is_binary:
        reward_range = (-1.0, 1.0)
    else:
        reward_range = (float(targets.min()), float(targets.max()))
    head_cfg = cfg.head_config("logit" if loss.output_kind == "logit" else "value", reward_range)
    stats = train_stats(cache, train_eps)
    model = build_model(cfg, cache, stats, head_cfg)
    action_keys = list(model.processor.modality.action)             # the model's action order (data config)
    train_clips = RewardClips(cache, train_eps, horizon=cfg.horizon, stride=cfg.stride, target=cfg.target,
                              action_horizon=cfg.action_horizon, action_keys=action_keys)
    val_clips = RewardClips(cache, val_eps, horizon=cfg.horizon, stride=1, target=cfg.target,
                            action_horizon=cfg.action_horizon, action_keys=action_keys)

    balance = ClassBalance.from_labels(targets) if cfg.class_balance == "weights" else None
    best_metric = cfg.best_metric or ("auroc" if binary else "pearson")
    tc = TrainConfig(out_dir=cfg.out_dir, **({"best_metric": best_metric,
                                             "best_mode": "min" if best_metric in MIN_METRICS else "max"} | cfg.train))
    store = cached_features(cfg, tc, model, [train_clips, val_clips]) if cfg.cache_features else None
    dataset, val_set = (train_clips, val_clips) if store is None else (CachedClips(train_clips, store),
                                                                       CachedClips(val_clips, store))
    if cfg.class_balance == "sampler":
        dataset = Balanced(dataset, balanced_indices(targets.tolist(), len(targets), seed=cfg.split_seed))
    collator_for, loss_fn = make_steps(cfg, loss, balance, reward_range[0], store)
    evaluate = evaluator(val_set, loss, threshold, tc.batch_size, cfg.val_max_samples,
                         forward=None if store is None else store.forward)
    splits = {"train": train_eps, "val": val_eps, "test": test_eps}
    vocabulary = {} if voc is None else dict(voc.texts)
    extra = {"reward_training": {"config": cfg.to_dict(), "loss": loss.to_dict(), "target": cfg.target,
                                 "target_kind": "binary" if binary else "score", "threshold": threshold,
                                 "class_balance": None if balance is None else balance.to_dict(),
                                 "splits": splits, "cache": str(cache.path), "fps": cache.fps,
                                 "image_size": list(cache.image_size)}}

    def save(model, path):
        model.save_pretrained(path, feedback_vocabulary=vocabulary, extra=extra)

    collator = collator_for(model)
    if tc.num_workers > 0:      # the worker processes prepare batches in parallel (the collate_fn runs there)
        loading = {"collate_fn": collator}
    else:                       # no workers: the loop's one background thread prepares ahead of the step
        loading = {"collate_fn": collate, "prepare_fn": collator.prepare}
    result = train(model, loss_fn, dataset, tc, evaluate=evaluate, save=save, **loading)
    return RewardResult(train=result, splits=splits, samples={"train": len(dataset), "val": len(val_clips)},
                        best_metric=best_metric, target_kind="binary" if binary else "score", threshold=threshold,
                        cache=str(cache.path))


# -- CLI ---------------------------------------------------------------------------------------
TRAIN_FLAGS = (("steps", int), ("batch_size", int), ("grad_accum", int), ("lr", float), ("weight_decay", float),
               ("warmup_steps", int), ("schedule", str), ("eval_every", int), ("save_every", int),
               ("log_every", int), ("seed", int), ("precision", str), ("num_workers", int),
               ("max_grad_norm", float), ("prefetch_factor", int))


def add_parser(sub) -> None:
    """``gr00t-rlhf train reward`` (``sub``: the subparsers of ``train``)."""
    p = sub.add_parser("reward", help="train the reward model on human feedback (stage 2)",
                       description="Train a reward model: GR00T N1 backbone + reward head on labelled episodes.")
    p.add_argument("data", help="a LeRobot dataset or a frame cache directory")
    p.add_argument("--out", required=True, help="run directory (checkpoints best/ and last/, metrics.jsonl)")
    p.add_argument("--holdout", default="", help="held-out episodes never read, e.g. 40-49,90-99")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation share of the other episodes")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--cache-dir", help="where a dataset is cached (default OUT/cache)")
    p.add_argument("--image-size", type=int, default=96, help="cache picture size when caching a dataset")
    p.add_argument("--target", choices=TARGETS, default="reward", help="next.reward or the feedback vocabulary")
    p.add_argument("--horizon", type=int, default=4, help="frames per scored clip (H; default 4, the study's best)")
    p.add_argument("--action-horizon", type=int, default=0,
                   help="the model also reads the K recorded actions from the labelled row (best-of-N scores a "
                        "chunk's first K actions; 0 = frames, state and instruction only)")
    p.add_argument("--action-negatives", type=float, default=0.0,
                   help="augmentation: with this probability a sample gets another sample's actions and the "
                        "lowest reward as its target (needs --action-horizon)")
    p.add_argument("--stride", type=int, default=1, help="every N-th frame is a training sample")
    p.add_argument("--loss", default="auto", help="e.g. mse, focal_mse, bce, focal, bt, 'bce+0.5*bt'; auto (default): "
                   f"{AUTO_LOSS['binary']} for 0/1 targets, '{AUTO_LOSS['score']}' for scores")
    p.add_argument("--gamma", type=float, default=2.0, help="focal loss exponent")
    p.add_argument("--focal-mse-gamma", type=float, default=1.0, help="focal_mse exponent")
    p.add_argument("--alpha", type=float, help="focal class factor (default none)")
    p.add_argument("--threshold", type=float, help="positive above (default 0.5 for 0/1 targets, 0 for scores)")
    p.add_argument("--pairs-per-batch", type=int, default=256, help="Bradley-Terry pairs per batch (0 = all)")
    p.add_argument("--pair-scope", choices=("all", "within", "across"), default="all")
    p.add_argument("--class-balance", choices=BALANCES, default="none")
    p.add_argument("--preset", default="tiny", help="model preset when training from scratch")
    p.add_argument("--init", help="start from a policy checkpoint (ours or official) instead of a preset")
    p.add_argument("--head", choices=("mlp", "dit"), default="mlp")
    p.add_argument("--head-layers", type=int, default=4)
    p.add_argument("--head-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--head-hidden", type=int, default=128)
    p.add_argument("--refine-steps", type=int, default=2)
    p.add_argument("--pool", choices=("first", "mean", "last"), default="mean")
    p.add_argument("--no-state", action="store_true", help="the head ignores the robot state")
    p.add_argument("--tuning", choices=TUNINGS, help="backbone: default full from a preset, lora from --init")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--no-augment", action="store_true", help="centre crops while training too")
    p.add_argument("--cache-features", action="store_true",
                   help="with --tuning frozen: run the backbone once per frame, then train the head on the cached "
                        "features (centre crops; many times faster)")
    p.add_argument("--best-metric", help="keep best/ by this validation metric (default auroc, or pearson for scores)")
    p.add_argument("--val-max-samples", type=int, default=2000)
    for name, typ in TRAIN_FLAGS:
        default = TrainConfig.__dataclass_fields__[name].default
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=default, help=f"(default {default})")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue an existing OUT/last")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even where CUDA is available")
    add_data_config_arguments(p)
    p.set_defaults(func=run_cli)


def config_from_args(args) -> RewardConfig:
    own = {f.name for f in fields(RewardConfig)} - {"data", "out_dir", "train", "use_state", "augment", "data_config"}
    kw = {k: getattr(args, k) for k in own if hasattr(args, k)}
    train_kw = {name: getattr(args, name) for name, _ in TRAIN_FLAGS}
    train_kw.update(resume=not args.no_resume, cpu=args.cpu)
    return RewardConfig(data=args.data, out_dir=args.out, use_state=not args.no_state, augment=not args.no_augment,
                        train=train_kw, data_config=data_config_from_args(args), **kw)


def run_cli(args) -> int:
    import sys

    from .loop import TrainConfigError
    from .losses import LossConfigError
    try:
        result = train_reward(config_from_args(args))
    except (RewardConfigError, LossConfigError, TrainConfigError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if is_main_process():
        print(result.summary())
    return 0

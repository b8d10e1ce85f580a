"""Stage 3 — optimise the SFT policy with the learned reward (``gr00t-rlhf train rl``).

    gr00t-rlhf train rl --policy runs/sft/best --reward-model runs/rm/best --data CACHE --method rwfm \\
        --out runs/rl [--demos DEMOS --demo-fraction 0.25] [--anchor-weight 0.1]

    from gr00t_rlhf_train.stages.rl import RLConfig, train_rl
    result = train_rl(RLConfig(policy=..., reward_model=..., data=[...], train=TrainConfig(out_dir=...)))

What it does:

1. Loads the SFT policy (``--policy``: a policy checkpoint, never a preset) and the reward model
   (``--reward-model``: same embodiment, with a feedback vocabulary), and the data (frame caches or
   LeRobot datasets, cached once under ``--cache-dir``), which must hold the policy's modality keys.
2. Scores every training sample ONCE with the reward model (the clip of its last H frames ending at the
   sample's row, the instruction, and — for an action-conditioned reward model — the first K actions of
   the sample's recorded chunk), batched, on the GPU when there is one; the scores, advantages, weights
   and labels are stored with the run (``OUT/scores.npz`` + ``OUT/scores.json``) and reused on a resume.
3. Advantage A = score − baseline (per-task or per-episode mean); ``rwfm``: weight w = exp(A / T),
   clipped, mean 1 over the data (or each batch); ``acfm``: label good/bad from A (threshold or quantile),
   condition dropped to "unconditioned" with probability p; ``both``: weights and conditions.
4. Trains with the shared loop (``stages/loop.py``: bf16, accumulation, cosine, resume, metrics, DDP),
   optionally anchored to the SFT policy: demonstration samples mixed in (``--demos``, weight 1, condition
   "good") and/or ``--anchor-weight`` λ × the squared difference between the current and the frozen SFT
   policy's velocity on the same noisy input.
5. Checkpoints (``OUT/last``, ``OUT/best``) are plain policy checkpoints; an ``acfm`` policy carries its
   condition and guidance defaults in its config, so the policy node loads it with no flags.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import weighting as wt

if TYPE_CHECKING:
    from .loop import TrainConfig

METHODS = ("rwfm", "acfm", "both")
RL_KEYS = ("rl_weight", "rl_condition", "rl_demo")
SCORES_FILE, SCORES_META = "scores.npz", "scores.json"


class RLConfigError(ValueError):
    """A bad ``train rl`` setting or input; one line naming the flag / file."""


@dataclass
class RLConfig:
    """Everything ``train_rl`` needs; saved into every checkpoint's ``extra["rl"]``."""

    policy: str                               # the SFT policy checkpoint to start from
    reward_model: str                         # the reward-model checkpoint that scores the data
    data: list[str]                           # frame caches or LeRobot datasets (recorded / rolled-out episodes)
    train: TrainConfig
    method: str = "rwfm"                      # rwfm | acfm | both
    baseline: str = "task"                    # advantage baseline: per-task mean | per-episode mean | global mean
    temperature: float = 0.2                  # w = exp(A / temperature)
    weight_clip: float = 20.0                 # ... capped at this
    normalize: str = "data"                   # weights to mean 1 over the data | over each batch
    label_threshold: float = 0.0              # acfm: good where A > threshold ...
    label_quantile: float | None = None       # ... or where A >= this quantile of A
    cond_dropout: float = 0.2                 # acfm: condition -> "unconditioned" with this probability
    sample_condition: str = "good"            # acfm: the checkpoint's sampling defaults
    guidance: float = 1.0
    demos: list[str] = field(default_factory=list)   # demonstration datasets mixed in (weight 1, "good")
    demo_fraction: float = 0.0                # share of training samples that are demonstrations
    anchor_weight: float = 0.0                # λ of the squared velocity difference to the frozen SFT policy
    score_batch_size: int = 64                # reward-model scoring batch
    tokenizer: str | None = None              # for an official GR00T N1 --policy
    cache_dir: str | None = None
    cache_size: int | None = None
    holdout: list[int] = field(default_factory=list)
    val_fraction: float = 0.1
    val_samples: int = 256
    rows: str = "frames"
    tune_visual: bool = False
    tune_llm: bool = False
    tune_projector: bool = True
    tune_diffusion_model: bool = True
    lora_rank: int = 0
    lora_alpha: int | None = None
    augment: bool = True

    def __post_init__(self) -> None:
        def bad(flag: str, value, why: str) -> RLConfigError:
            return RLConfigError(f"--{flag} {value!r}: {why}")

        if not self.policy:
            raise RLConfigError("--policy: give the SFT policy checkpoint to start from (stage 3 never starts "
                                "from a preset)")
        if not self.reward_model:
            raise RLConfigError("--reward-model: give the reward-model checkpoint that scores the data")
        if not self.data:
            raise RLConfigError("--data: give at least one dataset or frame cache")
        if self.method not in METHODS:
            raise bad("method", self.method, f"allowed {METHODS}")
        if self.baseline not in wt.BASELINES:
            raise bad("baseline", self.baseline, f"allowed {wt.BASELINES}")
        try:
            wt.check_weighting(self.temperature, self.weight_clip, self.normalize)
            wt.good_labels(np.zeros(2), self.label_threshold, self.label_quantile)
            wt.drop_conditions(torch.zeros(1, dtype=torch.long), self.cond_dropout)
        except wt.WeightingError as e:
            raise bad(e.field.replace("_", "-"), e.value, e.why) from None
        from gr00t_rlhf_train.model.configuration import ADVANTAGE_CONDITIONS
        if self.sample_condition not in ADVANTAGE_CONDITIONS:
            raise bad("sample-condition", self.sample_condition, f"allowed {ADVANTAGE_CONDITIONS}")
        g = self.guidance
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0:
            raise bad("guidance", g, "must be a finite number >= 0")
        if self.method == "rwfm" and (self.sample_condition != "good" or self.guidance != 1.0):
            raise RLConfigError("--sample-condition / --guidance: only for --method acfm or both (a rwfm policy has "
                                "no condition)")
        if not (isinstance(self.demo_fraction, (int, float)) and 0.0 <= self.demo_fraction < 1.0):
            raise bad("demo-fraction", self.demo_fraction, "must be in [0, 1)")
        if self.demos and not self.demo_fraction:
            raise bad("demo-fraction", self.demo_fraction, "--demos needs a share > 0 of demonstration samples")
        if self.demo_fraction and not self.demos:
            raise bad("demo-fraction", self.demo_fraction, "needs --demos DATASET")
        a = self.anchor_weight
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a < 0:
            raise bad("anchor-weight", a, "must be a finite number >= 0")
        for name in ("score_batch_size",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name.replace("_", "-"), v, "must be an integer >= 1")
        for name in ("lora_rank", "val_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name.replace("_", "-"), v, "must be an integer >= 0")
        if self.lora_rank and not (self.tune_llm or self.tune_visual):
            raise bad("lora-rank", self.lora_rank, "LoRA adapts the LLM / vision tower; add --tune-llm and/or "
                                                   "--tune-visual")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad("val-fraction", self.val_fraction, "must be in [0, 1)")
        if self.cache_size is not None and (not isinstance(self.cache_size, int) or self.cache_size < 14):
            raise bad("cache-size", self.cache_size, "must be an integer >= 14 (pixels)")
        if self.rows not in ("frames", "all"):
            raise bad("rows", self.rows, "allowed 'frames', 'all'")
        if not (self.tune_visual or self.tune_llm or self.tune_projector or self.tune_diffusion_model):
            raise RLConfigError("nothing to tune: enable at least one of --tune-visual/--tune-llm/--tune-projector/"
                                "--tune-diffusion-model")

    @property
    def weighted(self) -> bool:
        return self.method in ("rwfm", "both")

    @property
    def conditioned(self) -> bool:
        return self.method in ("acfm", "both")

    def to_dict(self) -> dict:
        return asdict(self) | {"train": self.train.to_dict()}


@dataclass
class RLResult:
    """What ``train_rl`` did (printed as the summary, written to OUT/summary.json by the CLI)."""

    steps: int
    method: str
    train_loss: float | None
    val_loss: float | None
    val_action_mse: float | None
    val_reward: float | None                  # reward-model score of the policy's own chunks (validation)
    val_reward_recorded: float | None         # ... of the recorded chunks of the same samples
    scores: dict                              # summary of the training samples' scores, weights, labels
    samples: int                              # RL training samples
    demo_samples: int                         # demonstration samples in the mix
    seconds: float
    checkpoint: str | None
    best_checkpoint: str | None
    train_episodes: dict
    val_episodes: dict
    holdout: dict
    policy: object = field(default=None, repr=False)   # the trained policy (in memory; not in summary.json)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "policy"}

    def lines(self) -> list[str]:
        def f(v):
            return "n/a" if v is None else f"{v:.4g}"
        s = self.scores
        return [f"steps         {self.steps} ({self.method})",
                f"train loss    {f(self.train_loss)}",
                f"val loss      {f(self.val_loss)}  (action MSE {f(self.val_action_mse)}, robot units)",
                f"val reward    {f(self.val_reward)}  (recorded chunks {f(self.val_reward_recorded)})",
                f"scores        mean {f(s.get('score_mean'))}, std {f(s.get('score_std'))}; good "
                f"{f(s.get('good_fraction'))}; weight ESS {f(s.get('weight_ess'))}, max {f(s.get('weight_max'))}",
                f"samples       {self.samples} training samples + {self.demo_samples} demonstration samples",
                f"time          {self.seconds:.1f} s",
                f"checkpoint    {self.checkpoint}",
                f"best          {self.best_checkpoint}"]


# -- inputs ------------------------------------------------------------------------------------
def load_start_policy(cfg: RLConfig):
    """The SFT policy of ``--policy`` (one-line RLConfigError for a missing or reward-model checkpoint)."""
    from gr00t_rlhf_train.model.checkpoint import CheckpointError
    from gr00t_rlhf_train.model.policy import load_policy
    from gr00t_rlhf_train.model.tokenizer import TokenizerNotFoundError

    path = Path(cfg.policy)
    if not path.is_dir():
        raise RLConfigError(f"--policy {cfg.policy}: not a checkpoint directory (stage 3 starts from an SFT "
                            "checkpoint, never from a preset)")
    try:
        return load_policy(path, tokenizer=cfg.tokenizer)
    except (CheckpointError, TokenizerNotFoundError) as e:
        raise RLConfigError(f"--policy {cfg.policy}: {' '.join(str(e).split())}") from None


def load_reward_model(cfg: RLConfig, policy):
    """The reward model of ``--reward-model``: a reward-model checkpoint with a feedback vocabulary, for the
    policy's embodiment (and its action keys when it reads actions) -> (RewardModel, vocabulary)."""
    from gr00t_rlhf_train.model.checkpoint import CheckpointError, read_meta
    from gr00t_rlhf_train.model.reward_model import RewardModel

    path, flag = Path(cfg.reward_model), f"--reward-model {cfg.reward_model}"
    if not path.is_dir():
        raise RLConfigError(f"{flag}: not a checkpoint directory")
    try:
        meta = read_meta(path)
    except CheckpointError as e:
        raise RLConfigError(f"{flag}: {' '.join(str(e).split())}") from None
    if meta["kind"] != "reward_model":
        raise RLConfigError(f"{flag}: {path / 'gr00t_rlhf.json'}: kind is {meta['kind']!r}, expected 'reward_model'")
    vocabulary = meta.get("feedback_vocabulary") or {}
    if not vocabulary:
        raise RLConfigError(f"{flag}: the checkpoint has no feedback vocabulary (gr00t_rlhf.json "
                            "feedback_vocabulary is empty): it was not trained on human feedback")
    mine, theirs = policy.processor.modality, meta["modality"]
    if (theirs.get("embodiment_tag"), theirs.get("embodiment_id")) != (mine.embodiment_tag, mine.embodiment_id):
        raise RLConfigError(f"{flag}: reward model for embodiment {theirs.get('embodiment_tag')!r} (id "
                            f"{theirs.get('embodiment_id')}), the policy is {mine.embodiment_tag!r} (id "
                            f"{mine.embodiment_id})")
    try:
        rm = RewardModel.from_pretrained(path)
    except (CheckpointError, ValueError) as e:
        raise RLConfigError(f"{flag}: {' '.join(str(e).split())}") from None
    if rm.head_config.action_horizon:
        if rm.processor.modality.action != mine.action:
            raise RLConfigError(f"{flag}: reads actions {rm.processor.modality.action}, the policy's are {mine.action}")
        if rm.head_config.action_horizon > policy.config.action_head.action_horizon:
            raise RLConfigError(f"{flag}: reads {rm.head_config.action_horizon} actions, the policy's chunk has "
                                f"{policy.config.action_head.action_horizon}")
    rm.eval()
    return rm, vocabulary


def check_modality(cache, modality, flag: str, who: str) -> None:
    """One-line RLConfigError unless the cache holds every video, state and action key of ``modality``."""
    dims = cache.modality_dims()
    missing = [f"video.{v}" for v in modality.video if v not in dims["video"]]
    for group in ("state", "action"):
        for name, width in getattr(modality, group).items():
            have = dims[group].get(name)
            if have is None:
                missing.append(f"{group}.{name}")
            elif have != width:
                missing.append(f"{group}.{name} (width {width}, the data has {have})")
    if missing:
        raise RLConfigError(f"{flag} {cache.path}: lacks {who}'s modality keys {missing} (the data has video "
                            f"{dims['video']}, state {dims['state']}, action {dims['action']})")


# -- scores ------------------------------------------------------------------------------------
def score_clips(rm, clips, batch_size: int, device: str, progress: bool = False) -> np.ndarray:
    """Reward-model scores [N] (the target's scale) of every clip of ``clips`` (RewardClips), batched."""
    from gr00t_rlhf_train.data.samples import collate, model_inputs

    rm.to(device)
    rm.eval()
    out = []
    loader = torch.utils.data.DataLoader(clips, batch_size=batch_size, collate_fn=collate, num_workers=0)
    kind = torch.device(device).type
    for i, batch in enumerate(loader):
        with torch.no_grad(), torch.autocast(kind, dtype=torch.bfloat16, enabled=kind == "cuda"):
            out.append(rm.predict(rm.prepare(model_inputs(batch))).float().cpu().numpy())
        if progress and (i + 1) % 20 == 0:
            print(f"rl: scored {(i + 1) * batch_size}/{len(clips)} samples", file=sys.stderr)
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def _fingerprint(cfg: RLConfig, caches, episodes, rm) -> dict:
    weights = Path(cfg.reward_model) / "model.safetensors"
    st = weights.stat() if weights.is_file() else None
    return {"reward_model": str(Path(cfg.reward_model).resolve()),
            "reward_weights": None if st is None else [st.st_size, int(st.st_mtime)],
            "data": [str(Path(c.path).resolve()) for c in caches], "episodes": episodes, "rows": cfg.rows,
            "horizon": rm.head_config.horizon, "action_horizon": rm.head_config.action_horizon}


def training_scores(cfg: RLConfig, rm, caches, episodes: list[list[int]], out: Path, progress: bool) -> dict:
    """Scores of every training sample (ConcatDataset order): computed once, stored as OUT/scores.npz, reused
    when the reward model and the samples are unchanged -> {"score", "episode", "row", "source", "task"}."""
    from gr00t_rlhf_train.data.samples import RewardClips

    fp = _fingerprint(cfg, caches, episodes, rm)
    meta_file, data_file = out / SCORES_META, out / SCORES_FILE
    if meta_file.is_file() and data_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("fingerprint") == fp:
            with np.load(data_file, allow_pickle=False) as z:
                if progress:
                    print(f"rl: reusing the scores in {data_file}", file=sys.stderr)
                return {k: z[k] for k in ("score", "episode", "row", "source", "task")}
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() and not cfg.train.cpu \
        else "cpu"
    k = rm.head_config.action_horizon
    parts: dict[str, list] = {"score": [], "episode": [], "row": [], "source": [], "task": []}
    t0 = time.time()
    for src, (cache, eps) in enumerate(zip(caches, episodes)):
        try:
            clips = RewardClips(cache, eps, horizon=rm.head_config.horizon, target=None, rows=cfg.rows,
                                action_horizon=k, action_keys=list(rm.processor.modality.action))
        except ValueError as e:
            raise RLConfigError(f"--reward-model {cfg.reward_model} on {cache.path}: {e}") from None
        view = RewardClips(cache, eps, horizon=1, target=None, rows=cfg.rows, decode=False)
        labels = view.labels()
        parts["score"].append(score_clips(rm, clips, cfg.score_batch_size, device, progress))
        parts["episode"].append(labels["episode"])
        parts["row"].append(labels["row"])
        parts["source"].append(np.full(len(labels["row"]), src, np.int64))
        parts["task"].append(np.array([cache.episode(e).task for e in labels["episode"]], dtype=str))
    rm.to("cpu")
    result = {name: np.concatenate(v) for name, v in parts.items()}
    out.mkdir(parents=True, exist_ok=True)
    if _is_main():
        save_npz(data_file, result)
        write_text(meta_file, json.dumps({"fingerprint": fp, "seconds": round(time.time() - t0, 2),
                                          "device": device}, indent=1))
    return result


def save_npz(path: Path, arrays: dict) -> None:
    """numpy arrays -> ``path`` (no pickle), written beside and renamed: a reader never sees half a file."""
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def weigh(cfg: RLConfig, scores: dict) -> dict:
    """Advantages, weights and labels of the training samples -> arrays [N] + a summary."""
    groups = wt.baseline_groups(scores["episode"] + 1_000_000 * scores["source"], scores["task"], cfg.baseline)
    try:
        adv = wt.advantages(scores["score"], groups)
    except wt.WeightingError as e:
        raise RLConfigError(f"--reward-model {cfg.reward_model}: its scores of the data: {e}") from None
    weights = wt.sample_weights(adv, cfg.temperature, cfg.weight_clip, cfg.normalize)
    labels = wt.good_labels(adv, cfg.label_threshold, cfg.label_quantile)
    s = scores["score"]
    summary = {"score_mean": float(s.mean()), "score_std": float(s.std()), "score_min": float(s.min()),
               "score_max": float(s.max()), "advantage_std": float(adv.std()), "good_fraction": float(labels.mean()),
               "weight_min": float(weights.min()), "weight_max": float(weights.max()),
               "weight_ess": wt.effective_sample_size(weights),
               "weight_clipped": float(np.mean(adv / cfg.temperature >= math.log(cfg.weight_clip)))}
    return {"advantage": adv, "weight": weights, "good": labels, "condition": wt.condition_indices(labels),
            "summary": summary}


# -- datasets ----------------------------------------------------------------------------------
class RLSamples(torch.utils.data.Dataset):
    """Policy samples with their stage-3 fields: ``rl_weight``, ``rl_condition`` (ADVANTAGE_CONDITIONS row) and
    ``rl_demo``; demonstration samples (``demos``) are mixed in at ``demo_fraction`` of the total (spread
    evenly over the demonstrations), with weight 1 and the condition "good"."""

    def __init__(self, base, weights: np.ndarray, conditions: np.ndarray, demos=None, demo_fraction: float = 0.0):
        if len(weights) != len(base) or len(conditions) != len(base):
            raise ValueError(f"RLSamples: {len(base)} samples, {len(weights)} weights, {len(conditions)} conditions")
        self.base, self.demos = base, demos
        self.weights, self.conditions = np.asarray(weights, np.float32), np.asarray(conditions, np.int64)
        self.num_demos = 0 if demos is None else int(round(len(base) * demo_fraction / (1 - demo_fraction)))

    def __len__(self) -> int:
        return len(self.base) + self.num_demos

    def __getitem__(self, i: int) -> dict:
        n = len(self.base)
        if i < n:
            s = dict(self.base[i])
            return s | {"rl_weight": float(self.weights[i]), "rl_condition": int(self.conditions[i]), "rl_demo": 0}
        j = (i - n) * len(self.demos) // self.num_demos
        return dict(self.demos[j]) | {"rl_weight": 1.0, "rl_condition": wt.GOOD, "rl_demo": 1}


class RLCollator:
    """Samples -> the model's tensor batch (``sft.PolicyCollator``) + ``rl_weight`` [B] f32, ``rl_condition``
    [B] long, ``rl_demo`` [B] bool."""

    def __init__(self, processor, augment: bool):
        from .sft import PolicyCollator
        self.inner = PolicyCollator(processor, augment)

    def __call__(self, samples: list[dict]) -> dict:
        batch = self.inner([{k: v for k, v in s.items() if k not in RL_KEYS} for s in samples])
        return batch | {"rl_weight": torch.tensor([s["rl_weight"] for s in samples], dtype=torch.float32),
                        "rl_condition": torch.tensor([s["rl_condition"] for s in samples], dtype=torch.long),
                        "rl_demo": torch.tensor([bool(s["rl_demo"]) for s in samples])}


# -- the objective -------------------------------------------------------------------------------
class RLLoss:
    """loss_fn(model, batch) of the shared loop: (weighted) flow matching under the (dropped) advantage
    condition, + ``anchor_weight`` x masked MSE between the velocity and the frozen SFT policy's on the same
    noisy input."""

    def __init__(self, cfg: RLConfig, reference=None):
        self.cfg, self.reference = cfg, reference

    def __call__(self, model, batch: dict):
        from gr00t_rlhf_train.model.action_head import masked_mse

        cfg = self.cfg
        batch = dict(batch)
        weight, condition, demo = (batch.pop(k) for k in RL_KEYS)
        weights = None
        if cfg.weighted:
            weights = weight.float()
            if cfg.normalize == "batch" and (~demo).any():
                rl = ~demo
                weights = torch.where(rl, weights / weights[rl].mean().clamp_min(1e-12), weights)
        cond = wt.drop_conditions(condition, cfg.cond_dropout) if cfg.conditioned else None
        terms = model.flow_terms(batch, cond)
        fm = masked_mse(terms["pred"], terms["target"], terms["action_mask"], weights)
        logs = {"fm_loss": float(fm.detach())}
        loss = fm
        if cfg.anchor_weight and self.reference is not None:
            ref = self.reference
            if next(ref.parameters()).device != terms["pred"].device:
                ref.to(terms["pred"].device)
            with torch.no_grad():
                feats, mask = ref.features(batch)
                v_ref = ref.action_head.velocity(feats, mask, batch["state"].to(feats.dtype),
                                                 terms["noisy"].to(feats.dtype), terms["t_bucket"],
                                                 batch["embodiment_id"])
            anchor = masked_mse(terms["pred"], v_ref.to(terms["pred"].dtype), terms["action_mask"])
            loss = loss + cfg.anchor_weight * anchor
            logs["anchor"] = float(anchor.detach())
        if weights is not None:
            logs["weight_mean"] = float(weights.mean())
        if cond is not None:
            logs["good_share"] = float((cond == wt.GOOD).float().mean())
        return loss, logs


# -- validation --------------------------------------------------------------------------------
def make_reward_evaluate(rm, policy_samples, clips, processor, batch_size: int, samples: int, seed: int):
    """-> evaluate(model) -> {"val_reward", "val_reward_recorded"}: the reward model's mean score of the
    policy's sampled chunks (their first K actions) and of the recorded ones, on a fixed subset of the
    validation samples (fixed noise). Only for a reward model that reads actions (K > 0)."""
    from gr00t_rlhf_train.data.samples import ACTIONS, collate, model_inputs

    k = rm.head_config.action_horizon
    n = len(policy_samples)
    idx = np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(int)) if n else np.array([], int)
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    names = list(processor.modality.action)
    recorded: list[float] = []

    def evaluate(model) -> dict:
        if not len(idx) or not k:
            return {}
        device = next(model.parameters()).device
        if next(rm.parameters()).device != device:
            rm.to(device)                       # stays there: moving a 2B model every evaluation costs seconds
        mine = []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for b in batches:
                raw = collate([policy_samples[int(i)] for i in b])
                batch = {key: v.to(device) for key, v in processor(raw).items()}
                pred = processor.decode_actions(model.sample_actions(batch))            # robot units
                chunk = np.concatenate([pred[f"action.{name}"] for name in names], axis=-1)  # [B, T, A]
                clip = model_inputs(collate([clips[int(i)] for i in b]))
                mine.append(np.asarray(rm.score(clip | {ACTIONS: chunk[:, :k]})).reshape(-1))
                if len(recorded) < len(batches):
                    recorded.append(float(np.mean(rm.score(clip))))
        return {"val_reward": float(np.concatenate(mine).mean()), "val_reward_recorded": float(np.mean(recorded))}

    return evaluate


# -- the stage ---------------------------------------------------------------------------------
def train_rl(cfg: RLConfig, progress: bool = True) -> RLResult:
    """Stage 3 as configured (see the module docstring) -> RLResult; checkpoints under ``cfg.train.out_dir``."""
    from gr00t_rlhf_train.data.samples import PolicySamples, RewardClips

    from .loop import train
    from .sft import make_evaluate, open_data, save_policy, set_tuning, split_all

    t0 = time.time()
    out = Path(cfg.train.out_dir)
    policy = load_start_policy(cfg)
    rm, vocabulary = load_reward_model(cfg, policy)
    modality = policy.processor.modality
    size = cfg.cache_size or max(96, policy.config.backbone.vision.image_size)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else out / "cache"
    try:
        caches = open_data(cfg.data, cache_dir, size, progress)
        demo_caches = open_data(cfg.demos, cache_dir, size, progress) if cfg.demos else []
    except ValueError as e:
        raise RLConfigError(' '.join(str(e).split())) from None
    for c in caches:
        check_modality(c, modality, "--data", "the policy")
        check_modality(c, rm.processor.modality if rm.head_config.action_horizon else
                       type(modality)(video=rm.processor.modality.video, state=rm.processor.modality.state,
                                      action={}), "--data", "the reward model")
    for c in demo_caches:
        check_modality(c, modality, "--demos", "the policy")
    trains, vals, tests = split_all(caches, cfg.holdout, cfg.val_fraction, cfg.train.seed)
    horizon = policy.config.action_head.action_horizon
    train_ds = torch.utils.data.ConcatDataset(
        [PolicySamples(c, e, action_horizon=horizon, rows=cfg.rows) for c, e in zip(caches, trains)])

    scores = training_scores(cfg, rm, caches, trains, out, progress)
    if len(scores["score"]) != len(train_ds):
        raise RLConfigError(f"{out / SCORES_FILE}: {len(scores['score'])} scores for {len(train_ds)} samples; "
                            "delete it to score again")
    weighed = weigh(cfg, scores)
    if _is_main():
        save_npz(out / SCORES_FILE, {k: scores[k] for k in ("score", "episode", "row", "source", "task")}
                 | {k: weighed[k] for k in ("advantage", "weight", "good")})
        meta = json.loads((out / SCORES_META).read_text()) if (out / SCORES_META).is_file() else {}
        write_text(out / SCORES_META, json.dumps(meta | {"summary": weighed["summary"]}, indent=1))
    demo_ds = None
    if demo_caches:
        demo_ds = torch.utils.data.ConcatDataset(
            [PolicySamples(c, None, action_horizon=horizon, rows=cfg.rows) for c in demo_caches])
    dataset = RLSamples(train_ds, weighed["weight"], weighed["condition"], demo_ds, cfg.demo_fraction)

    if cfg.conditioned:
        policy.enable_advantage_conditioning(cfg.sample_condition, cfg.guidance)
    model = policy.model
    counts = set_tuning(model, cfg)
    reference = None
    if cfg.anchor_weight:
        reference = load_start_policy(cfg).model.eval()
        reference.requires_grad_(False)

    val_parts = [PolicySamples(c, e, action_horizon=horizon, rows=cfg.rows) for c, e in zip(caches, vals) if e]
    val_ds = torch.utils.data.ConcatDataset(val_parts) if val_parts else []
    evaluate = None
    tc = cfg.train
    if len(val_ds):
        base_eval = make_evaluate(val_ds, policy.processor, tc.batch_size, cfg.val_samples, tc.seed)
        reward_eval = None
        if rm.head_config.action_horizon:
            clip_ds = torch.utils.data.ConcatDataset(
                [RewardClips(c, e, horizon=rm.head_config.horizon, target=None, rows=cfg.rows,
                             action_horizon=rm.head_config.action_horizon,
                             action_keys=list(rm.processor.modality.action)) for c, e in zip(caches, vals) if e])
            reward_eval = make_reward_evaluate(rm, val_ds, clip_ds, policy.processor, tc.batch_size,
                                               min(cfg.val_samples, 64), tc.seed)

        def evaluate_all(m) -> dict:
            return base_eval(m) | (reward_eval(m) if reward_eval is not None else {})

        evaluate = evaluate_all

        if tc.best_metric is None:
            tc.best_metric, tc.best_mode = "val_loss", "min"
    episodes = {str(c.path): {"train": tr, "val": va, "holdout": te} for c, tr, va, te in zip(caches, trains, vals, tests)}
    extra = {"rl": cfg.to_dict() | {"episodes": episodes, "trainable": counts, "scores": weighed["summary"],
                                    "reward_model_vocabulary": vocabulary}}
    if progress:
        s = weighed["summary"]
        print(f"rl ({cfg.method}): {len(train_ds)} training samples from {sum(map(len, trains))} episodes "
              f"+ {dataset.num_demos} demonstration samples; scores mean {s['score_mean']:.3g} std "
              f"{s['score_std']:.3g}; good {s['good_fraction']:.2f}; weight ESS {s['weight_ess']:.2f}; trainable "
              + ", ".join(f"{k} {v:,}" for k, v in counts.items()), file=sys.stderr)

    result = train(model, RLLoss(cfg, reference), dataset, tc, evaluate=evaluate,
                   save=lambda m, p: save_policy(policy, m, Path(p), extra),
                   collate_fn=RLCollator(policy.processor, cfg.augment))
    ev = result.eval_metrics or {}
    return RLResult(steps=result.steps, method=cfg.method, train_loss=result.train_loss, val_loss=ev.get("val_loss"),
                    val_action_mse=ev.get("val_action_mse"), val_reward=ev.get("val_reward"),
                    val_reward_recorded=ev.get("val_reward_recorded"), scores=weighed["summary"],
                    samples=len(train_ds), demo_samples=dataset.num_demos, seconds=time.time() - t0,
                    checkpoint=result.last_checkpoint, best_checkpoint=result.best_checkpoint,
                    train_episodes={k: v["train"] for k, v in episodes.items()},
                    val_episodes={k: v["val"] for k, v in episodes.items()},
                    holdout={k: v["holdout"] for k, v in episodes.items()}, policy=policy)


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


# -- CLI ---------------------------------------------------------------------------------------
def add_parser(sub) -> None:
    from .sft import add_policy_data_arguments, add_train_arguments

    p = sub.add_parser("rl", help="stage 3: optimise the SFT policy with the reward model (rwfm | acfm)",
                       description="Stage 3: score the data once with the reward model, then fine-tune the SFT "
                                   "policy by reward-weighted (rwfm) or advantage-conditioned (acfm) flow matching, "
                                   "optionally anchored to the SFT policy.")
    p.add_argument("--policy", required=True, help="the SFT policy checkpoint to start from")
    p.add_argument("--reward-model", required=True, help="the reward-model checkpoint (same embodiment)")
    p.add_argument("--data", action="append", required=True, metavar="PATH",
                   help="a LeRobot dataset or frame cache to train on (repeat for several)")
    p.add_argument("--method", choices=METHODS, default="rwfm",
                   help="rwfm: reward-weighted FM; acfm: advantage-conditioned FM; both (default rwfm)")
    g = p.add_argument_group("advantages and weights")
    g.add_argument("--baseline", choices=wt.BASELINES, default="task", help="advantage = score - this group's mean")
    g.add_argument("--temperature", type=float, default=0.2, help="rwfm: weight exp(A / temperature) (default 0.2)")
    g.add_argument("--weight-clip", type=float, default=20.0, help="rwfm: weights capped at this (default 20)")
    g.add_argument("--normalize", choices=wt.NORMALIZATIONS, default="data", help="rwfm: weights to mean 1 over")
    g.add_argument("--label-threshold", type=float, default=0.0, help="acfm: good where A > this (default 0)")
    g.add_argument("--label-quantile", type=float, help="acfm: good where A >= this quantile of A (instead)")
    g.add_argument("--cond-dropout", type=float, default=0.2, help="acfm: unconditioned with this probability")
    g.add_argument("--sample-condition", default="good", help="acfm: the checkpoint's default sampling condition")
    g.add_argument("--guidance", type=float, default=1.0, help="acfm: the checkpoint's default CFG weight w")
    g.add_argument("--score-batch-size", type=int, default=64, help="reward-model scoring batch (default 64)")
    a = p.add_argument_group("anchor to the SFT policy")
    a.add_argument("--demos", action="append", default=[], metavar="PATH",
                   help="demonstration dataset / cache mixed in (weight 1, condition good)")
    a.add_argument("--demo-fraction", type=float, default=0.0, help="share of demonstration samples")
    a.add_argument("--anchor-weight", type=float, default=0.0,
                   help="weight of the squared velocity difference to the frozen SFT policy (0: none)")
    add_policy_data_arguments(p.add_argument_group("data and tuning (as train sft)"),
                              "tokenizer for an official GR00T N1 --policy")
    add_train_arguments(p)
    p.set_defaults(func=cmd_rl)


def cmd_rl(args) -> int:
    from gr00t_rlhf_train.data.cache import parse_episodes
    from gr00t_rlhf_train.data.errors import DatasetError
    from gr00t_rlhf_train.model.configuration import ConfigError

    from .loop import TrainConfigError
    from .sft import SFTConfigError, train_config_from_args

    try:
        holdout = parse_episodes(args.holdout) if args.holdout.strip() else []
        cfg = RLConfig(policy=args.policy, reward_model=args.reward_model, data=args.data,
                       train=train_config_from_args(args), method=args.method, baseline=args.baseline,
                       temperature=args.temperature, weight_clip=args.weight_clip, normalize=args.normalize,
                       label_threshold=args.label_threshold, label_quantile=args.label_quantile,
                       cond_dropout=args.cond_dropout, sample_condition=args.sample_condition, guidance=args.guidance,
                       demos=args.demos, demo_fraction=args.demo_fraction, anchor_weight=args.anchor_weight,
                       score_batch_size=args.score_batch_size, tokenizer=args.tokenizer, cache_dir=args.cache_dir,
                       cache_size=args.cache_size, holdout=holdout, val_fraction=args.val_fraction,
                       val_samples=args.val_samples, rows=args.rows, tune_visual=args.tune_visual,
                       tune_llm=args.tune_llm, tune_projector=args.tune_projector,
                       tune_diffusion_model=args.tune_diffusion_model, lora_rank=args.lora_rank,
                       augment=not args.no_augment)
        result = train_rl(cfg)
    except (RLConfigError, SFTConfigError, TrainConfigError, ConfigError, DatasetError, ValueError,
            FloatingPointError) as e:
        print(f"error: train rl: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if _is_main():
        print("\n".join(result.lines()))
        (Path(args.out) / "summary.json").write_text(json.dumps(result.to_dict(), indent=1))
    return 0

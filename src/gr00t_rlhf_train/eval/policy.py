"""``evaluate_policy``: action MSE of a policy checkpoint on a frame cache's episodes vs the mean action.

    result = evaluate_policy("runs/sft/best", "cache/Policy_Data", episodes=range(40, 50),
                             train_episodes=range(0, 40), out_dir="eval/policy")
    result["metrics"]["action.first_mse"], result["metrics"]["baseline_mean.first_mse"]

For every row t of the chosen episodes the policy predicts a chunk of ``action_horizon`` commands from the
frame, the state and the instruction (``num_steps`` Euler steps, a fixed seed per batch). Compared with the
recorded commands t..t+horizon-1 (the last row repeated past the episode end): ``action.first_mse`` (first
action of each chunk, what a robot executes first) and ``action.chunk_mse`` (whole chunk). The baseline
always predicts the mean action of the TRAIN episodes (``train_episodes`` of the cache; without them the
``mean`` of the checkpoint's normalisation statistics, i.e. of the dataset it was trained on).
``improvement`` = 1 - first_mse / baseline first_mse (the issue's target: >= 0.30).
An advantage-conditioned policy (``train rl --method acfm|both``) samples under its checkpoint's
``default_condition`` / ``default_guidance`` or the given ``condition`` / ``guidance`` (so one checkpoint
can be measured at several guidance values); both are written to metrics.json. A plain policy given a
condition (or a guidance other than 1) is a one-line EvalError before any work.
Outputs: ``predictions.npz`` (pred [N, T, Da], recorded [N, T, Da], episode, row), ``metrics.json`` and
``actions.png`` (predicted vs recorded first action, a few episodes).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import plots
from .common import (EvalError, ranges, check_episodes, check_modality, model_inputs, open_cache, resolve_device,
                     episode_times, spread_indices, to_numpy, write_json)
from .metrics import action_mse, mean_action_baseline


def check_policy_checkpoint(checkpoint: str | Path) -> Path:
    """A missing directory or a reward model's checkpoint is a one-line EvalError (before any work is done)."""
    from gr00t_rlhf_train.model.checkpoint import CONFIG_NAME, read_meta

    path = Path(checkpoint)
    if not path.is_dir():
        raise EvalError(f"policy checkpoint {path} does not exist (expected a directory)")
    if (path / CONFIG_NAME).is_file():
        kind = read_meta(path)["kind"]
        if kind != "policy":
            hint = " (evaluate it with `gr00t-rlhf eval reward`)" if kind == "reward_model" else ""
            raise EvalError(f"{path}: checkpoint kind is {kind!r}, `eval policy` needs a 'policy'{hint}")
    return path


def check_sampling_options(checkpoint: str | Path, condition: str | None = None, guidance: float | None = None) -> None:
    """Condition / guidance overrides against the checkpoint's config, without loading its weights: a bad name,
    a guidance that is not a finite number >= 0, or either for a plain policy -> one-line EvalError."""
    import math

    from gr00t_rlhf_train.model.checkpoint import CONFIG_NAME, read_meta
    from gr00t_rlhf_train.model.configuration import ADVANTAGE_CONDITIONS

    if condition is not None and condition not in ADVANTAGE_CONDITIONS:
        raise EvalError(f"condition = {condition!r}: allowed {', '.join(ADVANTAGE_CONDITIONS)}")
    if guidance is not None and (isinstance(guidance, bool) or not isinstance(guidance, (int, float))
                                 or not math.isfinite(guidance) or guidance < 0):
        raise EvalError(f"guidance = {guidance!r}: must be a finite number >= 0")
    path = Path(checkpoint)
    meta = read_meta(path) if (path / CONFIG_NAME).is_file() else {}
    head = ((meta.get("model") or {}).get("action_head") or {})
    if not head.get("advantage_conditioning", False) and (condition is not None or guidance not in (None, 1.0)):
        raise EvalError(f"{path}: condition = {condition!r}, guidance = {guidance!r}: this policy has no advantage "
                        "conditioning (train it with `train rl --method acfm`)")


def sampling_of(policy, condition: str | None = None, guidance: float | None = None) -> dict:
    """{"condition", "guidance"} the policy samples under (None, None for a plain policy); EvalError if refused."""
    from gr00t_rlhf_train.model.configuration import ADVANTAGE_CONDITIONS

    head = policy.model.action_head
    try:
        index, g = head.sampling_condition(condition, guidance)
    except ValueError as e:
        raise EvalError(str(e)) from None
    return {"condition": ADVANTAGE_CONDITIONS[index], "guidance": g} if head.conditioned else \
        {"condition": None, "guidance": None}


def load_policy(checkpoint: str | Path, device: str = "auto"):
    """A policy checkpoint (ours or official GR00T N1) -> Gr00tPolicy on the device (bf16 on CUDA)."""
    from gr00t_rlhf_train.model.policy import Gr00tPolicy

    path = check_policy_checkpoint(checkpoint)
    dev, dtype = resolve_device(device)
    return Gr00tPolicy.from_pretrained(path, device=dev, dtype=dtype)


def _chunk(values: dict, names: list[str]) -> np.ndarray:
    """{"action.<name>": [B, T, d]} -> [B, T, sum d] in the modality's order."""
    return np.concatenate([np.asarray(to_numpy(values[f"action.{n}"]), np.float64) for n in names], axis=-1)


def stats_mean(policy, names: list[str]) -> np.ndarray:
    """The action mean of the checkpoint's normalisation statistics [Da]."""
    try:
        return np.concatenate([np.asarray(policy.processor.stats["action"][n]["mean"], np.float64) for n in names])
    except KeyError as e:
        raise EvalError(f"the checkpoint's statistics have no action mean ({e}); pass train episodes") from None


def evaluate_policy(checkpoint: str | Path, cache, episodes=None, train_episodes=None, train_actions=None,
                    max_samples: int | None = None,
                    batch_size: int = 32, num_steps: int | None = None, seed: int = 0, device: str = "auto",
                    out_dir: str | Path = "eval_policy", progress: bool = False, condition: str | None = None,
                    guidance: float | None = None) -> dict:
    """-> {"metrics": {...}, "files": {name: path}, "samples": N, "seconds": s} (see the module docstring).

    The baseline's mean action: of ``train_actions`` [N, Da] when given (e.g. read from a dataset without its
    videos), else of the cache's ``train_episodes``, else the checkpoint's statistics. ``condition`` /
    ``guidance``: an advantage-conditioned policy's sampling (None: the checkpoint's defaults)."""
    from torch.utils.data import DataLoader, Subset

    from gr00t_rlhf_train.data.samples import PolicySamples, collate

    if batch_size <= 0:
        raise EvalError(f"batch_size = {batch_size}: must be a positive integer")
    start = time.monotonic()
    check_policy_checkpoint(checkpoint)
    check_sampling_options(checkpoint, condition, guidance)
    cache = open_cache(cache)
    chosen = check_episodes(cache, episodes)
    train = check_episodes(cache, train_episodes, "train episodes") if train_episodes is not None else None
    if train is not None and set(train) & set(chosen):
        raise EvalError(f"train episodes and evaluated episodes overlap: {sorted(set(train) & set(chosen))}")
    policy = load_policy(checkpoint, device)
    sampling = sampling_of(policy, condition, guidance)
    modality = policy.processor.modality
    names = list(modality.action)
    horizon = policy.config.action_head.action_horizon
    samples = PolicySamples(cache, episodes=chosen, action_horizon=horizon)
    if len(samples) == 0:
        raise EvalError(f"episodes {chosen}: no frames in {cache.path}")
    check_modality(samples[0], modality, checkpoint, cache.path, ("video", "state", "action"))

    indices = spread_indices(len(samples), max_samples)
    loader = DataLoader(Subset(samples, indices.tolist()), batch_size=batch_size, shuffle=False, collate_fn=collate)
    if progress:
        from tqdm import tqdm
        loader = tqdm(loader, desc="predicting", unit="batch")
    preds, recs, eps, rows = [], [], [], []
    for i, batch in enumerate(loader):
        out = policy.get_action(model_inputs(batch), num_steps=num_steps, seed=seed + i, condition=condition,
                                guidance=guidance)
        preds.append(_chunk(out, names))                                       # [B, T, Da]
        recs.append(_chunk(batch, names))                                      # [B, T, Da]
        eps.append(to_numpy(batch["episode"]).reshape(-1).astype(np.int64))
        rows.append(to_numpy(batch["row"]).reshape(-1).astype(np.int64))
    pred, rec = np.concatenate(preds), np.concatenate(recs)
    episode, row = np.concatenate(eps), np.concatenate(rows)

    if train_actions is not None:
        mean, source = mean_action_baseline(train_actions, rec[:, 0])[0], "the given training actions"
    elif train is not None:
        actions = np.concatenate([np.asarray(cache.episode(e).action, np.float64) for e in train])
        mean, source = mean_action_baseline(actions, rec[:, 0])[0], f"train episodes {ranges(train)}"
    else:
        mean, source = stats_mean(policy, names), "the checkpoint's normalisation statistics (action mean)"
    m = {
        "count": int(pred.shape[0]), "action_horizon": horizon, **sampling,
        "action.first_mse": action_mse(pred[:, 0], rec[:, 0]),
        "action.chunk_mse": action_mse(pred, rec),
        "action.first_mae": float(np.mean(np.abs(pred[:, 0] - rec[:, 0]))),
        "baseline_mean.action": [float(v) for v in mean],
        "baseline_mean.source": source,
        "baseline_mean.first_mse": float(np.mean((rec[:, 0] - mean) ** 2)),
        "baseline_mean.chunk_mse": float(np.mean((rec - mean) ** 2)),
    }
    dims = [f"{n}[{j}]" for n in names for j in range(modality.action[n])]
    for d, name in enumerate(dims):
        m[f"action.first_mse.{name}"] = float(np.mean((pred[:, 0, d] - rec[:, 0, d]) ** 2))
    base = m["baseline_mean.first_mse"]
    m["improvement"] = 1.0 - m["action.first_mse"] / base if base > 0 else None
    base_chunk = m["baseline_mean.chunk_mse"]
    m["improvement_chunk"] = 1.0 - m["action.chunk_mse"] / base_chunk if base_chunk > 0 else None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"predictions": out / "predictions.npz"}
    np.savez(files["predictions"], pred=pred, recorded=rec, episode=episode, row=row)
    times = episode_times(cache, episode, row)
    files["actions"] = plots.action_plot(pred[:, 0], rec[:, 0], episode, row, out / "actions.png", names=dims,
                                         times=times)
    seconds = time.monotonic() - start
    info = {"checkpoint": str(checkpoint), "cache": str(cache.path), "episodes": chosen, "train_episodes": train,
            "samples": int(indices.size), "num_steps": num_steps, "seed": seed, **sampling,
            "device": str(policy.device), "seconds": round(seconds, 2)}
    files["metrics"] = write_json(out / "metrics.json", {"info": info, "metrics": m})
    return {"metrics": m, "files": files, "samples": int(indices.size), "seconds": seconds}

"""Reference numbers that need no model: the "time since episode start" reward predictor and the
mean-action policy, fitted on the training episodes of a dataset and scored on its held-out ones.

Reads the parquet rows only (no video), every row (the seed datasets' ~50 Hz), so it runs in seconds:

    gr00t-rlhf eval baselines /data/Reward_Results_with_505_Reward --episodes 90-99

``evaluate_reward`` reports the same time baseline on exactly the frames it scores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import mean_action_baseline, time_baseline_metrics


def dataset_baselines(dataset, episodes: list[int], train_episodes: list[int] | None = None,
                      threshold: float = 0.5, target: str = "reward") -> dict:
    """-> flat dict: ``baseline_time.*`` (as ``metrics.time_baseline_metrics``; absent without labels) and
    ``baseline_mean.first_mse`` (always predicting the train episodes' mean action) on the held-out rows."""
    from gr00t_rlhf_train.data.reader import LeRobotDataset

    from .common import EvalError
    from .reward import baseline_data

    ds = dataset if isinstance(dataset, LeRobotDataset) else LeRobotDataset(Path(dataset))
    n = ds.num_episodes
    held = sorted(set(int(e) for e in episodes))
    bad = [e for e in held if not 0 <= e < n]
    if bad or not held:
        raise EvalError(f"--episodes: {bad[:10] or 'none'} not in {ds.root} (episodes 0..{n - 1})")
    train = sorted(set(train_episodes)) if train_episodes is not None else [e for e in range(n) if e not in set(held)]
    bad = [e for e in train if not 0 <= e < n]
    if bad or not train or set(train) & set(held):
        raise EvalError(f"--train-episodes: {bad[:10] or train[:10]}: must be episodes 0..{n - 1} outside --episodes")
    held_eps = [ds.episode(e) for e in held]
    train_eps = [ds.episode(e) for e in train]
    out: dict = {"episodes": held, "train_episodes": train, "rows": int(sum(len(e) for e in held_eps))}
    fit = baseline_data(train_eps, target, ds.vocabulary)
    test = baseline_data(held_eps, target, ds.vocabulary)
    if fit is not None and test is not None and (target != "reward" or "next.reward" in ds.columns):
        ep_ids = np.concatenate([np.full(len(e), e.index) for e in held_eps])
        rows = np.concatenate([np.arange(len(e)) for e in held_eps])
        out.update(time_baseline_metrics(fit[0], fit[1], test[0], test[1], ep_ids, rows, threshold))
    else:
        out["baseline_time.note"] = f"{ds.root} has no {target} labels: no time baseline"
    recorded = np.concatenate([e.action for e in held_eps])
    mean, mse = mean_action_baseline(np.concatenate([e.action for e in train_eps]), recorded)
    out["baseline_mean.action"] = [float(v) for v in mean]
    out["baseline_mean.first_mse"] = mse
    return out

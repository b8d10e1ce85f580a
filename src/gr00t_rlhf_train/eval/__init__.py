"""Evaluation of reward models and policies: metrics (numpy only), plots (matplotlib, Agg),
``evaluate_reward`` / ``evaluate_policy`` over a frame cache, and the ``gr00t-rlhf eval`` CLI.

Only the metrics are imported here; ``reward``, ``policy`` and ``plots`` load torch / matplotlib
when used.
"""
from .metrics import (accuracy, auroc, balanced_accuracy, episode_metrics, mae, mean_action_baseline, mse,
                      pearson, rankdata, reward_metrics, roc_curve, spearman, time_baseline_metrics)

__all__ = ["accuracy", "auroc", "balanced_accuracy", "episode_metrics", "mae", "mean_action_baseline", "mse",
           "pearson", "rankdata", "reward_metrics", "roc_curve", "spearman", "time_baseline_metrics"]

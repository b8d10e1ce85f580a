"""The reward-model study of issue 8 (docs/experiments/reward_horizon.md, docs/experiments/seed_data.md).

``train`` runs ``gr00t-rlhf train reward`` unchanged — same flags, same validation-based checkpoint
selection — and additionally scores the HELD-OUT episodes at every evaluation, logged as
``eval/heldout_<metric>`` in ``OUT/metrics.jsonl``. Those numbers only draw the learning curves of the
study; they never choose a checkpoint or a setting (``--best-metric`` reads validation metrics).

``plot`` draws held-out AUROC and Pearson against the training step for several runs (one line each).

    python bench/study_reward.py train CACHE --out runs/h4 --holdout 40-49,90-99 --horizon 4 ...  # any train-reward flag
    python bench/study_reward.py plot runs/h1 runs/h4 runs/h16 --labels H=1 H=4 H=16 --out curves.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _monitored(stage, holdout_spec: str, max_samples: int):
    """Wrap the stage's validation evaluator so each evaluation also scores the held-out episodes."""
    from gr00t_rlhf_train.data.samples import RewardClips
    from gr00t_rlhf_train.stages.reward import RewardConfig

    base = stage.evaluator
    holdout = RewardConfig(data="-", out_dir="-", holdout=holdout_spec).parse_holdout()

    def evaluator(clips, loss, threshold, batch_size, val_max_samples):
        val = base(clips, loss, threshold, batch_size, val_max_samples)
        extra = {k: getattr(clips, k) for k in ("action_horizon",) if hasattr(clips, k)}
        held_clips = RewardClips(clips.cache, holdout, horizon=clips.horizon, stride=1, target=clips.target, **extra)
        held = base(held_clips, loss, threshold, batch_size, max_samples)

        def evaluate(model) -> dict:
            return val(model) | {f"heldout_{k}": v for k, v in held(model).items()}
        return evaluate

    return evaluator


def cmd_train(argv: list[str]) -> int:
    from gr00t_rlhf_train.stages import reward as stage
    from gr00t_rlhf_train.stages.cli import build_parser

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--holdout", required=True)
    pre.add_argument("--heldout-max-samples", type=int, default=100_000)
    known, rest = pre.parse_known_args(argv)
    stage.evaluator = _monitored(stage, known.holdout, known.heldout_max_samples)
    args = build_parser("study_reward.py train").parse_args(["reward", *rest, "--holdout", known.holdout])
    return int(args.func(args) or 0)


def read_curve(run: Path, metric: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if f"eval/{metric}" in row:
            steps.append(int(row["step"]))
            values.append(float(row[f"eval/{metric}"]))
    return steps, values


def cmd_plot(argv: list[str]) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(prog="study_reward.py plot")
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--labels", nargs="+")
    p.add_argument("--metrics", nargs="+", default=["heldout_auroc", "heldout_pearson"])
    p.add_argument("--title", default="")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    labels = a.labels or [r.name for r in a.runs]
    if len(labels) != len(a.runs):
        p.error(f"--labels: {len(labels)} labels for {len(a.runs)} runs")
    fig, axes = plt.subplots(1, len(a.metrics), figsize=(5.5 * len(a.metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], a.metrics):
        for run, label in zip(a.runs, labels):
            steps, values = read_curve(run, metric)
            ax.plot(steps, values, marker=".", label=label)
        ax.set_xlabel("training step")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(a.title)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("train", "plot"):
        print(__doc__, file=sys.stderr)
        return 2
    return cmd_train(argv[1:]) if argv[0] == "train" else cmd_plot(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

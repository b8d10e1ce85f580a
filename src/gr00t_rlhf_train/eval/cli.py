"""``gr00t-rlhf eval reward|policy CHECKPOINT DATASET_OR_CACHE --episodes ...``: evaluate a checkpoint.

DATASET_OR_CACHE is a frame cache (holds ``cache.json``) or a LeRobot dataset (holds ``meta/info.json``);
a dataset's evaluated episodes are cached first (into ``--cache DIR``, kept, or a temporary directory),
and the baselines are fitted on its other (or ``--train-episodes``) episodes read without their videos.
Prints a small metrics table; exit 0, 1 on a bad input or checkpoint (one line), 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from contextlib import ExitStack
from pathlib import Path

import numpy as np

THIRD_NAMES = {"third1": "first third", "third2": "middle third", "third3": "last third"}


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a reward model or a policy on held-out episodes")
    sub = p.add_subparsers(dest="eval_command", metavar="WHAT")
    sub.required = True
    r = sub.add_parser("reward", help="reward model: MSE/MAE/Pearson/Spearman/accuracy/AUROC, npz and plots")
    _common(r, "eval_reward")
    r.add_argument("--threshold", type=float, default=None,
                   help="binary labels: positive above this (default: the checkpoint's, else 0.5); "
                        "score labels: above 0")
    r.add_argument("--prediction-only", action="store_true", help="unlabeled data: write predictions.npz only")
    r.add_argument("--batch-size", type=int, default=None,
                   help="clips per forward pass (default: 256 on a GPU, 64 on the CPU)")
    r.set_defaults(func=cmd_reward)
    pol = sub.add_parser("policy", help="policy: action MSE vs the mean-action baseline, plot of wheel commands")
    _common(pol, "eval_policy")
    pol.add_argument("--batch-size", type=int, default=32, help="frames per forward pass (default 32)")
    pol.add_argument("--num-steps", type=int, default=None, help="denoising steps (default: the checkpoint's, 4)")
    pol.add_argument("--seed", type=int, default=0, help="noise seed of the first batch (default 0)")
    pol.add_argument("--condition", default=None, choices=("unconditioned", "good", "bad"),
                     help="advantage-conditioned policies (train rl --method acfm): sample under this condition "
                          "(default: the checkpoint's)")
    pol.add_argument("--guidance", type=float, default=None,
                     help="advantage-conditioned policies: classifier-free guidance w >= 0, 1 = plain conditional "
                          "(default: the checkpoint's)")
    pol.set_defaults(func=cmd_policy)
    b = sub.add_parser("baselines", help="model-free reference numbers: time since episode start, mean action")
    b.add_argument("data", metavar="DATASET", help="LeRobot dataset root (parquet rows only; no video is read)")
    b.add_argument("--episodes", required=True, type=_episodes, help="held-out episodes, e.g. 40-49,90-99")
    b.add_argument("--train-episodes", type=_episodes, default=None,
                   help="episodes the baselines are fitted on (default: every other episode)")
    b.add_argument("--threshold", type=float, default=0.5, help="binary labels: positive above this (default 0.5)")
    b.add_argument("--target", choices=("reward", "feedback"), default="reward",
                   help="next.reward (default) or the feedback vocabulary's reward of each key")
    b.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    b.set_defaults(func=cmd_baselines)


def _common(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint directory (gr00t_rlhf.json)")
    p.add_argument("data", metavar="DATASET_OR_CACHE", help="frame cache (cache.json) or LeRobot dataset root")
    p.add_argument("--episodes", required=True, type=_episodes, help="evaluated (held-out) episodes, e.g. 40-49,90-99")
    p.add_argument("--train-episodes", type=_episodes, default=None,
                   help="episodes the baselines are fitted on (default: every other episode of the data)")
    p.add_argument("--max-samples", type=int, default=None, help="evaluate at most N samples, spread evenly")
    p.add_argument("--out", default=out_default, help=f"output directory (default ./{out_default})")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--cache", default=None, help="with a dataset: build (or reuse) the frame cache here and keep it")
    p.add_argument("--size", default="96", help="with a dataset: cached picture size N or HxW (default 96)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _episodes(spec: str) -> list[int]:
    from gr00t_rlhf_train.data.cache import parse_episodes
    try:
        return parse_episodes(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _kind(path: Path) -> str:
    if (path / "cache.json").is_file():
        return "cache"
    if (path / "meta" / "info.json").is_file():
        return "dataset"
    raise FileNotFoundError(f"{path}: neither a frame cache (cache.json) nor a LeRobot dataset (meta/info.json)")


def _prepare_data(args, stack: ExitStack):
    """-> (cache path, dataset reader or None)."""
    from gr00t_rlhf_train.data.cache import build_cache

    path = Path(args.data)
    if _kind(path) == "cache":
        return path, None
    from gr00t_rlhf_train.data.reader import LeRobotDataset

    ds = stack.enter_context(LeRobotDataset(path))
    bad = [e for e in args.episodes if not 0 <= e < ds.num_episodes]
    if bad:
        raise ValueError(f"--episodes: {bad[:10]} not in {path} (episodes 0..{ds.num_episodes - 1})")
    if args.cache:
        out = Path(args.cache)
    else:
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eval_cache_")))
    print(f"caching episodes of {path} into {out}" + ("" if args.cache else " (temporary; --cache DIR keeps it)"),
          file=sys.stderr)
    build_cache(ds, out, image_size=args.size, episodes=args.episodes, progress=not args.quiet)
    return out, ds


def _train_episodes(args, ds) -> list[int]:
    if args.train_episodes is not None:
        bad = [e for e in args.train_episodes if not 0 <= e < ds.num_episodes]
        if bad:
            raise ValueError(f"--train-episodes: {bad[:10]} not in {ds.root} (episodes 0..{ds.num_episodes - 1})")
        return args.train_episodes
    return [e for e in range(ds.num_episodes) if e not in set(args.episodes)]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if np.isfinite(v) else "-"
    return str(v)


def reward_table(m: dict) -> list[str]:
    cols = ("count", "mse", "mae", "pearson", "spearman", "accuracy", "balanced_accuracy", "auroc")
    lines = [f"{'':24}" + "".join(f"{c[:9]:>10}" for c in cols)]
    rows = [("frame", "frames"), ("episode", "episode means"), *THIRD_NAMES.items()]
    for prefix, label in rows:
        lines.append(f"{label:24}" + "".join(f"{_fmt(m.get(f'{prefix}.{c}')):>10}" for c in cols))
    for prefix, label in (("frame", "time baseline, frames"), ("episode", "time baseline, episodes")):
        if f"baseline_time.{prefix}.count" in m:
            lines.append(f"{label:24}" + "".join(f"{_fmt(m.get(f'baseline_time.{prefix}.{c}')):>10}" for c in cols))
    if "baseline_time.best_sign_pearson" in m:
        lines.append(f"time alone, sign chosen on these frames: Pearson {_fmt(m['baseline_time.best_sign_pearson'])}, "
                     f"AUROC {_fmt(m['baseline_time.best_sign_auroc'])}")
    lines.append(f"episodes right: {m.get('episode.correct')}/{m.get('episode.count')}; positive above "
                 f"{m.get('positive_above')} ({m.get('target_kind')} targets)")
    std, mean = m.get("frame.pred_std"), m.get("frame.pred_mean")
    if std is not None and std < 1e-3 * max(abs(mean or 0.0), 1.0):
        lines.append(f"note: predictions are nearly constant (mean {_fmt(mean)}, std {std:.2e}): a collapsed model")
    notes = [f"note: {k[:-5]}: {v}" for k, v in m.items()
             if k.startswith(("frame.", "episode.", "baseline_time.note"))
             and k.endswith(("pearson_note", "auroc_note", ".note"))]
    return lines + notes


def _quirks(stack: ExitStack, data: str) -> None:
    """Collect the reader's quirk warnings (the seed datasets raise dozens) into one line printed at the end."""
    from gr00t_rlhf_train.data.errors import DatasetQuirkWarning

    caught = stack.enter_context(warnings.catch_warnings(record=True))
    warnings.simplefilter("ignore")
    warnings.simplefilter("always", DatasetQuirkWarning)

    def report() -> None:
        n = len({str(w.message) for w in caught if issubclass(w.category, DatasetQuirkWarning)})
        if n:
            print(f"note: {data} has {n} dataset quirk(s) the reader worked around "
                  f"(`gr00t-rlhf dataset validate {data}` lists them)", file=sys.stderr)
    stack.callback(report)


def _print_written(result: dict) -> None:
    print(f"{result['samples']} samples in {result['seconds']:.1f} s; wrote "
          + ", ".join(str(p) for p in result["files"].values()))


def cmd_reward(args: argparse.Namespace) -> int:
    from .common import resolve_device
    from .reward import baseline_data, evaluate_reward, reward_checkpoint_meta, training_settings

    with ExitStack() as stack:
        _quirks(stack, args.data)
        try:
            target = training_settings(reward_checkpoint_meta(args.checkpoint)).get("target", "reward")
            resolve_device(args.device)
            cache, ds = _prepare_data(args, stack)
            baseline = None
            if ds is not None and not args.prediction_only:
                eps = [ds.episode(e) for e in _train_episodes(args, ds)]
                if target != "reward" or "next.reward" in ds.columns:
                    baseline = baseline_data(eps, target, ds.vocabulary)
            result = evaluate_reward(args.checkpoint, cache, episodes=args.episodes, max_samples=args.max_samples,
                                     prediction_only=args.prediction_only, batch_size=args.batch_size,
                                     device=args.device, out_dir=args.out, threshold=args.threshold,
                                     train_episodes=args.train_episodes if ds is None else None, baseline=baseline,
                                     progress=not args.quiet)
        except Exception as e:  # noqa: BLE001 - one line for every failure, never a traceback
            return _fail(e)
    if result["metrics"]:
        print("\n".join(reward_table(result["metrics"])))
    _print_written(result)
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    from .common import resolve_device
    from .policy import check_policy_checkpoint, check_sampling_options, evaluate_policy

    with ExitStack() as stack:
        _quirks(stack, args.data)
        try:
            check_policy_checkpoint(args.checkpoint)
            check_sampling_options(args.checkpoint, args.condition, args.guidance)   # before a dataset is cached
            resolve_device(args.device)
            cache, ds = _prepare_data(args, stack)
            baseline = None
            if ds is not None:
                baseline = np.concatenate([ds.episode(e).action for e in _train_episodes(args, ds)])
            result = evaluate_policy(args.checkpoint, cache, episodes=args.episodes,
                                     train_episodes=args.train_episodes if ds is None else None,
                                     train_actions=baseline, max_samples=args.max_samples,
                                     batch_size=args.batch_size, num_steps=args.num_steps, seed=args.seed,
                                     device=args.device, out_dir=args.out, progress=not args.quiet,
                                     condition=args.condition, guidance=args.guidance)
        except Exception as e:  # noqa: BLE001
            return _fail(e)
    m = result["metrics"]
    if m.get("condition") is not None:
        print(f"sampled under condition {m['condition']}, guidance {m['guidance']:g}")
    print(f"{'':22}{'first action MSE':>18}{'chunk MSE':>12}")
    print(f"{'policy':22}{_fmt(m['action.first_mse']):>18}{_fmt(m['action.chunk_mse']):>12}")
    print(f"{'mean-action baseline':22}{_fmt(m['baseline_mean.first_mse']):>18}"
          f"{_fmt(m['baseline_mean.chunk_mse']):>12}")
    imp = m["improvement"]
    print(f"improvement over the baseline: {'-' if imp is None else f'{100 * imp:.1f} %'} (first action); "
          f"baseline mean from {m['baseline_mean.source']}")
    _print_written(result)
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from .baselines import dataset_baselines
    from .common import write_json

    with ExitStack() as stack:
        _quirks(stack, args.data)
        try:
            m = dataset_baselines(args.data, args.episodes, args.train_episodes, args.threshold, args.target)
            if args.json:
                write_json(Path(args.json), m)
        except Exception as e:  # noqa: BLE001
            return _fail(e)
    print(f"held-out rows {m['rows']} of episodes {_span(m['episodes'])}; "
          f"fitted on episodes {_span(m['train_episodes'])}")
    cols = ("count", "mse", "pearson", "spearman", "accuracy", "auroc")
    if "baseline_time.frame.count" in m:
        print(f"{'time since start':24}" + "".join(f"{c[:9]:>10}" for c in cols))
        for prefix, label in (("frame", "rows"), ("episode", "episode means"), *THIRD_NAMES.items()):
            print(f"{label:24}" + "".join(f"{_fmt(m.get(f'baseline_time.{prefix}.{c}')):>10}" for c in cols))
        print(f"time alone, sign chosen on the held-out rows: Pearson {_fmt(m['baseline_time.best_sign_pearson'])}, "
              f"AUROC {_fmt(m['baseline_time.best_sign_auroc'])}")
    else:
        print(f"note: {m['baseline_time.note']}")
    print(f"mean action {[round(v, 4) for v in m['baseline_mean.action']]}: held-out action MSE "
          f"{_fmt(m['baseline_mean.first_mse'])}")
    return 0


def _span(ids: list[int]) -> str:
    from .common import ranges
    return ranges(ids)


def _fail(e: BaseException) -> int:
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        raise e
    from gr00t_rlhf_train.data.errors import DatasetError
    known = (ValueError, KeyError, FileNotFoundError, DatasetError, OSError)
    prefix = "" if isinstance(e, known) else f"unexpected {type(e).__name__}: "
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"error: {prefix}{_one_line(msg)}", file=sys.stderr)
    return 1

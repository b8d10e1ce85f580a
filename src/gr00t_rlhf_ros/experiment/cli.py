"""``gr00t-rlhf experiment rlhf``: the whole RLHF loop in simulation, one command (no rclpy)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 0,1,2") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 0,0.1,0.25") from None


INTRO = Path(__file__).with_name("intro.md")


def _run(args) -> int:
    from .rlhf import ExperimentConfig, ExperimentError, StepError, run_experiment

    import importlib.util

    if importlib.util.find_spec("mujoco") is None:   # not imported here: triton must come first (demo_models)
        print("gr00t-rlhf experiment rlhf: needs mujoco (requirements.txt) for the simulated robot", file=sys.stderr)
        return 2
    overrides = {k: getattr(args, k) for k in ("seeds", "demos", "noisy_demos", "feedback_episodes", "rounds",
                                               "round_episodes", "eval_episodes", "flips", "device", "preset",
                                               "max_seconds", "sft_steps", "rm_steps", "rl_steps", "best_of_n",
                                               "dart_demos", "expert_search", "sft_lr", "batch_size", "cache_size", "jobs",
                                               "rm_test_episodes", "rl_lr", "rm_lr")}
    if args.action_horizon is not None:
        overrides["action_horizon"] = args.action_horizon
    if args.no_video:
        overrides["video"] = False
    if args.stop_after:
        overrides["stop_after"] = args.stop_after
    try:
        cfg = ExperimentConfig.for_size(args.out, args.size, **overrides)
    except ExperimentError as e:
        print(f"gr00t-rlhf experiment rlhf: {e}", file=sys.stderr)
        return 2
    try:
        results = run_experiment(cfg)
    except StepError as e:
        print(f"gr00t-rlhf experiment rlhf: {e} (finished steps are kept in {cfg.out}; rerun to continue)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gr00t-rlhf experiment rlhf: interrupted; finished steps are kept in "
              f"{cfg.out} (rerun to continue)", file=sys.stderr)
        return 130
    if cfg.stop_after:   # choosing the demo budget: the SFT row per seed, no report
        for s, r in results["seeds"].items():
            m = r["eval"]["sft"]["summary"]
            print(f"seed {s}: SFT success {100 * m['success_rate']:5.1f} % on {m['episodes']} held-out layouts, "
                  f"collisions/episode {m['collisions_per_episode']:.2f}, val action MSE {r['sft']['val_action_mse']}")
        e = results["expert"]["summary"]
        print(f"expert: success {100 * e['success_rate']:5.1f} %; results {Path(cfg.out) / 'results.json'}")
        return 0
    from .report import write_report

    report = Path(args.report) if args.report else Path(cfg.out) / "rlhf_sim.md"
    img = Path(args.img_dir) if args.img_dir else report.parent / "img"
    intro = INTRO.read_text() if INTRO.is_file() and args.intro else ""
    w = write_report(results, report, img, intro)
    for r in w["table"]["rows"]:
        print(f"{r['label']:45s} success {100 * r['success_rate']:5.1f} %")
    print(f"report {w['report']}; results {Path(cfg.out) / 'results.json'}; "
          f"{len(results['steps_ran'])} steps run, {len(results['steps_skipped'])} cached")
    return 0


def register(sub) -> None:
    p = sub.add_parser("experiment", help="experiments on the simulated robot")
    s = p.add_subparsers(dest="experiment_command", metavar="EXPERIMENT")
    s.required = True
    r = s.add_parser("rlhf", help="the whole RLHF loop in simulation: demos, SFT, simulated feedback, reward "
                                  "model, stage 3, evaluation on held-out layouts; writes the report",
                     description="Runs demos -> SFT -> rollouts labelled by the simulated human (flipped-label "
                                 "noise) -> action-conditioned reward model -> stage 3 (rwfm, acfm, both; iterated, "
                                 "anchored to SFT) -> evaluation of expert, SFT, SFT + best-of-N and the stage-3 "
                                 "policies on held-out layouts, with fixed seeds. Every step is cached in OUT: a "
                                 "rerun skips finished steps, a changed setting redoes what depends on it.")
    r.add_argument("--out", required=True, help="output directory (steps, results.json, table.json)")
    r.add_argument("--size", default="tiny", choices=["tiny", "small", "full"],
                   help="tiny: CI, ~3 min on a CPU; small: ~20 min on a 2-core CPU; full: the issue's experiment "
                        "(GPU: --device cuda --preset gr00t-n1-2b by default)")
    r.add_argument("--seeds", type=_ints, default=None, help="training seeds, e.g. 0,1,2")
    r.add_argument("--demos", type=int, default=None, metavar="N", help="expert demonstrations per seed")
    r.add_argument("--noisy-demos", type=int, default=None, metavar="N", help="imperfect (noisy expert) demos")
    r.add_argument("--dart-demos", type=int, default=None, metavar="N",
                   help="DART demos: noisy execution, the expert's correction recorded")
    r.add_argument("--expert-search", type=float, default=None, metavar="RAD",
                   help="the expert turns left until the goal is within this half angle of its heading, as a "
                        "camera-only policy must (0: it turns the short way, knowing where the goal is; default 0.6)")
    r.add_argument("--stop-after", choices=["sft"], default=None,
                   help="stop after evaluating SFT: prints its success per seed (to choose --demos)")
    r.add_argument("--feedback-episodes", type=int, default=None, metavar="N", help="labelled SFT rollouts per seed")
    r.add_argument("--flips", type=_floats, default=None, help="shares of flipped labels, e.g. 0,0.1,0.25")
    r.add_argument("--rounds", type=int, default=None, help="stage-3 rounds")
    r.add_argument("--round-episodes", type=int, default=None, metavar="N", help="rollouts per stage-3 round")
    r.add_argument("--eval-episodes", type=int, default=None, metavar="N", help="held-out layouts (issue: 50)")
    r.add_argument("--best-of-n", type=int, default=None, metavar="N", help="candidates of best-of-N (8)")
    r.add_argument("--action-horizon", type=int, default=None, metavar="K", help="actions the reward model reads")
    r.add_argument("--max-seconds", type=float, default=None, help="episode length limit")
    r.add_argument("--sft-steps", type=int, default=None)
    r.add_argument("--rm-steps", type=int, default=None)
    r.add_argument("--rl-steps", type=int, default=None)
    r.add_argument("--sft-lr", type=float, default=None)
    r.add_argument("--rm-lr", type=float, default=None)
    r.add_argument("--rl-lr", type=float, default=None)
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="stage-3 chains in parallel processes (default 1; a GPU machine with cores to spare: 5)")
    r.add_argument("--rm-test-episodes", type=int, default=None, metavar="N",
                   help="noiselessly labelled SFT rollouts the reward models are scored on")
    r.add_argument("--cache-size", type=int, default=None, help="frame-cache image size (>= the preset's image)")
    r.add_argument("--device", default=None, choices=["cpu", "cuda"], help="training and inference device")
    r.add_argument("--preset", default=None, help="model preset (tiny, gr00t-n1-2b)")
    r.add_argument("--report", default=None, metavar="PATH", help="markdown report (default OUT/rlhf_sim.md)")
    r.add_argument("--img-dir", default=None, help="plots directory (default: img/ next to the report)")
    r.add_argument("--intro", action="store_true", help="start the report with the hand-written intro")
    r.add_argument("--no-video", action="store_true", help="skip the side-by-side video")
    r.set_defaults(func=_run)

"""``gr00t-rlhf``: one CLI for the product.

ROS commands live here (``drive``, ``bag2lerobot``); the offline ones (``dataset``,
``model``, ``train``, ``eval``) come from ``gr00t_rlhf_train.cli`` and work without ROS.
Nothing here imports rclpy at module level.
"""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from gr00t_rlhf_train import cli as train_cli


def _camera_size(text: str) -> tuple[int, int]:
    import argparse

    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x480")
    return int(w), int(h)


def _missing_robot_packages(sim: bool) -> str | None:
    """What ``drive`` needs that this install lacks (the training profile has no ROS, no MuJoCo)."""
    import importlib.util

    missing = [name for name, needed in (("rclpy", True), ("mujoco", sim)) if needed and importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"needs {' and '.join(missing)}, which this install lacks (the training profile, requirements/train.txt, "
            "has no ROS): use requirements.txt, or requirements/ros-distro.txt on a sourced ROS 2 install")


def _drive(args) -> int:
    missing = _missing_robot_packages(args.sim)
    if missing:
        print(f"gr00t-rlhf drive: {missing}", file=sys.stderr)
        return 2
    from gr00t_rlhf_ros.graph import (DriveOptionError, DriveOptions, drive_graph, node_params,
                                      nothing_to_start_hint, with_demo_models)
    from gr00t_rlhf_ros.launcher import run_graph

    width, height = args.camera_width, args.camera_height
    if args.camera_size is not None:
        if width is not None or height is not None:
            print("gr00t-rlhf drive: --camera-size: give it or --camera-width/--camera-height, not both",
                  file=sys.stderr)
            return 2
        width, height = args.camera_size
    try:
        opts = DriveOptions(sim=args.sim, driver=args.driver, policy=args.policy, reward_model=args.reward_model,
                            num_candidates=args.num_candidates, condition=args.condition, guidance=args.guidance,
                            seed=args.seed, task=args.task,
                            record=args.record, vocabulary=args.vocabulary, namespace=args.namespace or "",
                            use_sim_time=args.use_sim_time, log_level=args.log_level,
                            camera_width=width, camera_height=height, camera_rate=args.camera_rate,
                            record_fps=args.record_fps)
    except DriveOptionError as e:
        print(f"gr00t-rlhf drive: {e.for_cli()}", file=sys.stderr)
        return 2
    if opts.needs_demo_models:
        from gr00t_rlhf_ros.demo_models import DemoModelError, ensure

        def interrupted(*_):
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGTERM, interrupted)   # SIGTERM too: the half-built models are removed
        try:
            models = ensure(root=args.demo_models, rebuild=args.rebuild_models)
        except DemoModelError as e:
            print(f"gr00t-rlhf drive: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("gr00t-rlhf drive: interrupted while making the demo models; nothing was cached (the next run "
                  "starts them again)", file=sys.stderr)
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        print(f"gr00t-rlhf drive: demo models {models.root} (policy {models.policy.name}/, reward model "
              f"{models.reward.name}/; --rebuild-models makes them anew)", file=sys.stderr, flush=True)
        opts = with_demo_models(opts, str(models.policy), str(models.reward))
    nodes = drive_graph(opts)
    if not nodes:
        print(f"gr00t-rlhf drive: {nothing_to_start_hint('cli')}", file=sys.stderr, flush=True)
        return run_graph(nodes, duration=args.duration)
    from gr00t_rlhf_ros.drive_session import DriveSession

    stop_at_goal = opts.sim if args.stop_at_goal is None else args.stop_at_goal
    run_dir = None if args.no_video and args.runs_dir is None else Path(args.runs_dir or "runs") / time.strftime("%Y%m%d-%H%M%S")
    fps = opts.camera_rate or (node_params("sim.yaml", "sim_node").get("camera_rate", 10.0) if opts.sim else 10.0)
    session = DriveSession(run_dir, namespace=opts.namespace, overlay=bool(opts.reward_source),
                           video=not args.no_video, stop_at_goal=stop_at_goal, fps=float(fps))
    return run_graph(nodes, duration=args.duration, session=session)


def register(sub) -> None:
    from gr00t_rlhf_ros.demo_models import ENV_DIR
    from gr00t_rlhf_ros.graph import AUTO, DEMO, DRIVERS, LOG_LEVELS

    p = sub.add_parser("drive", help="bring up the robot graph (simulated robot and the GR00T policy by default)",
                       description="Start the node graph as separate processes over DDS (the same graph as "
                                   "drive.launch.py): the simulator (or a real robot already on the graph), the "
                                   "policy (or the expert), the live reward, optionally the recorder. Writes "
                                   "runs/<time>/drive.mp4 and ends with a one-line summary. Ctrl-C stops every node.")
    p.add_argument("--sim", dest="sim", action="store_true", default=True,
                   help="start the MuJoCo simulated robot (default)")
    p.add_argument("--no-sim", dest="sim", action="store_false",
                   help="drive a real robot already on the graph: needs --policy CHECKPOINT (or --driver none: "
                        "then with no --record nothing starts and it waits for Ctrl-C)")
    p.add_argument("--driver", default="policy", choices=list(DRIVERS),
                   help="who publishes wheel_commands: policy (default: policy_node), expert (the scripted "
                        "expert, needs --sim) or none")
    p.add_argument("--policy", default=DEMO, metavar="SOURCE",
                   help="policy_node's model: a checkpoint directory, a preset (tiny, gr00t-n1-2b: random weights), "
                        "tcp://HOST:PORT (a `gr00t-rlhf serve` server) or demo (default: the demo policy, made on "
                        "first use and cached; simulator only)")
    p.add_argument("--reward-model", default=AUTO, metavar="SOURCE",
                   help="reward_node's model (same forms); default auto: the demo reward model with the demo "
                        "policy, else none; none: no reward_node")
    p.add_argument("--num-candidates", type=int, default=1, metavar="N",
                   help="best-of-N: chunks the policy samples per inference; the reward model picks one (default 1)")
    p.add_argument("--condition", default=None, choices=["unconditioned", "good", "bad"],
                   help="an advantage-conditioned policy's condition (train rl --method acfm; default: the checkpoint's)")
    p.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="its classifier-free guidance, >= 0 (default: the checkpoint's)")
    p.add_argument("--demo-models", default=None, metavar="DIR",
                   help=f"cache directory of the demo models (default ${ENV_DIR} or ~/.cache/gr00t-rlhf/demo-models)")
    p.add_argument("--rebuild-models", action="store_true", help="make the demo models anew even if cached")
    p.add_argument("--stop-at-goal", dest="stop_at_goal", action="store_true", default=None,
                   help="end the run shortly after the robot reaches its goal (default in the simulator)")
    p.add_argument("--no-stop-at-goal", dest="stop_at_goal", action="store_false",
                   help="keep driving after the goal is reached")
    p.add_argument("--runs-dir", default=None, metavar="DIR",
                   help="where each run writes <time>/drive.mp4 and summary.json (default runs)")
    p.add_argument("--no-video", action="store_true", help="write no drive.mp4")
    p.add_argument("--seed", type=int, default=None, help="arena layout seed")
    p.add_argument("--task", default=None, help='instruction, e.g. "Find Blue cube"')
    p.add_argument("--record", default=None, metavar="DATASET",
                   help="also start recorder_node writing into DATASET (start/stop episodes with feedback_node)")
    p.add_argument("--vocabulary", default="binary", help="the recorder's feedback vocabulary: binary, score or a file")
    p.add_argument("--record-fps", type=float, default=None, metavar="HZ",
                   help="dataset frame rate when recording (default: config/recorder.yaml, 10)")
    p.add_argument("--camera-width", type=int, default=None, metavar="PX", help="simulated camera width (default 320)")
    p.add_argument("--camera-height", type=int, default=None, metavar="PX", help="simulated camera height (default 240)")
    p.add_argument("--camera-size", type=_camera_size, default=None, metavar="WxH",
                   help="simulated camera size in one flag, e.g. 640x480")
    p.add_argument("--camera-rate", type=float, default=None, metavar="HZ",
                   help="simulated camera frame rate (default: config/sim.yaml, 10)")
    p.add_argument("--namespace", default=None, metavar="NS",
                   help="namespace of every node, e.g. /robot1 (topics become /robot1/camera/image_raw, ...)")
    p.add_argument("--use-sim-time", action="store_true", help="set use_sim_time on every node")
    p.add_argument("--log-level", default=None, choices=list(LOG_LEVELS), help="log level of every node")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_drive)

    from gr00t_rlhf_ros import bag_to_lerobot  # rosbags only, no rclpy

    b = sub.add_parser("bag2lerobot", help="convert a rosbag2 recording into a LeRobot dataset",
                       description=bag_to_lerobot.__doc__.split("\n\n")[0])
    bag_to_lerobot.build_parser(b)
    __import__("gr00t_rlhf_ros.experiment.cli", fromlist=["register"]).register(sub)   # experiment rlhf (no rclpy)


def main(argv: list[str] | None = None) -> int:
    parser, sub = train_cli.build_parser()
    register(sub)
    train_cli.register_all(sub)
    return train_cli.run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())

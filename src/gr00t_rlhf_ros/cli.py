"""``gr00t-rlhf``: one CLI for the product.

ROS commands live here (``drive``, ``bag2lerobot``); the offline ones (``dataset``,
``model``, ``train``, ``eval``) come from ``gr00t_rlhf_train.cli`` and work without ROS.
Nothing here imports rclpy at module level.
"""
from __future__ import annotations

import sys

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
    from gr00t_rlhf_ros.graph import DriveOptionError, DriveOptions, drive_graph, nothing_to_start_hint
    from gr00t_rlhf_ros.launcher import run_graph

    width, height = args.camera_width, args.camera_height
    if args.camera_size is not None:
        if width is not None or height is not None:
            print("gr00t-rlhf drive: --camera-size: give it or --camera-width/--camera-height, not both",
                  file=sys.stderr)
            return 2
        width, height = args.camera_size
    try:
        opts = DriveOptions(sim=args.sim, driver=args.driver, seed=args.seed, task=args.task,
                            record=args.record, vocabulary=args.vocabulary, namespace=args.namespace or "",
                            use_sim_time=args.use_sim_time, log_level=args.log_level,
                            camera_width=width, camera_height=height, camera_rate=args.camera_rate,
                            record_fps=args.record_fps)
    except DriveOptionError as e:
        print(f"gr00t-rlhf drive: {e.for_cli()}", file=sys.stderr)
        return 2
    nodes = drive_graph(opts)
    if not nodes:
        print(f"gr00t-rlhf drive: {nothing_to_start_hint('cli')}", file=sys.stderr, flush=True)
    return run_graph(nodes, duration=args.duration)


def register(sub) -> None:
    from gr00t_rlhf_ros.graph import DRIVERS, LOG_LEVELS

    p = sub.add_parser("drive", help="bring up the robot graph (simulated robot by default)",
                       description="Start the node graph as separate processes over DDS (the same graph as "
                                   "drive.launch.py). Ctrl-C stops every node.")
    p.add_argument("--sim", dest="sim", action="store_true", default=True,
                   help="start the MuJoCo simulated robot (default)")
    p.add_argument("--no-sim", dest="sim", action="store_false",
                   help="drive a real robot already on the graph (with --driver none and no --record nothing "
                        "starts: it waits for Ctrl-C)")
    p.add_argument("--driver", default="expert", choices=list(DRIVERS),
                   help="who publishes wheel_commands (default: the scripted expert, needs --sim)")
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


def main(argv: list[str] | None = None) -> int:
    parser, sub = train_cli.build_parser()
    register(sub)
    train_cli.register_all(sub)
    return train_cli.run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())

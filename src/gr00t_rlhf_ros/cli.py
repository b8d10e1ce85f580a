"""``gr00t-rlhf``: one CLI for the product.

ROS commands live here (``drive``, ``bag2lerobot``); the offline ones (``dataset``,
``model``, ``train``, ``eval``) come from ``gr00t_rlhf_train.cli`` and work without ROS.
Nothing here imports rclpy at module level.
"""
from __future__ import annotations

import sys

from gr00t_rlhf_train import cli as train_cli


def _drive(args) -> int:
    from gr00t_rlhf_ros.graph import DriveOptions, drive_graph
    from gr00t_rlhf_ros.launcher import run_graph

    try:
        opts = DriveOptions(sim=args.sim, driver=args.driver, seed=args.seed, task=args.task,
                            record=args.record, vocabulary=args.vocabulary)
    except ValueError as e:
        print(f"gr00t-rlhf drive: {e}", file=sys.stderr)
        return 2
    return run_graph(drive_graph(opts), duration=args.duration)


def register(sub) -> None:
    p = sub.add_parser("drive", help="bring up the robot graph (simulated robot by default)",
                       description="Start the node graph as separate processes over DDS. "
                                   "Ctrl-C stops every node.")
    p.add_argument("--sim", dest="sim", action="store_true", default=True,
                   help="start the MuJoCo simulated robot (default)")
    p.add_argument("--no-sim", dest="sim", action="store_false", help="drive a real robot already on the graph")
    p.add_argument("--driver", default="expert", choices=["expert", "none"],
                   help="who publishes /wheel_commands (default: the scripted expert)")
    p.add_argument("--seed", type=int, default=None, help="arena layout seed")
    p.add_argument("--task", default=None, help='instruction, e.g. "Find Blue cube"')
    p.add_argument("--record", default=None, metavar="DATASET",
                   help="also start recorder_node writing into DATASET (start/stop episodes with feedback_node)")
    p.add_argument("--vocabulary", default="binary", help="the recorder's feedback vocabulary: binary, score or a file")
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

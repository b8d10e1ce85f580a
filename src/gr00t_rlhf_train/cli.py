"""The ROS-free subcommands of ``gr00t-rlhf`` (dataset, model, ...).

Each area registers its own subcommands: a module with ``register(subparsers)`` that adds a
parser whose ``func(args) -> int`` does the work. ``gr00t_rlhf_ros.cli`` adds the ROS ones
(drive, bag2lerobot) on top of these.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# modules with a register(subparsers) function; each is optional until its area lands
COMMAND_MODULES = (
    "gr00t_rlhf_train.data.cli",
    "gr00t_rlhf_train.model.cli",
    "gr00t_rlhf_train.stages.cli",    # train sft | reward
    "gr00t_rlhf_train.eval.cli",      # eval reward | policy
    "gr00t_rlhf_train.inference.cli", # serve policy | reward (remote inference)
)


def register_all(subparsers) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (name == e.name or name.startswith(e.name + ".")):
                continue  # that area is not part of this install
            raise
        module.register(subparsers)


def build_parser(prog: str = "gr00t-rlhf") -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog=prog, description="RLHF for a GR00T N1-driven wheeled robot")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    return parser, sub


def run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    parser, sub = build_parser()
    register_all(sub)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())

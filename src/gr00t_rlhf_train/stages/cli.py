"""``gr00t-rlhf train sft|reward ...``: the training stages.

Each stage module has ``add_parser(sub)`` adding its subcommand (whose ``func(args) -> int`` runs it).
The stage modules import torch, so the ``train`` group is parsed lazily: ``gr00t-rlhf --help`` (and every
other command) never imports them; ``gr00t-rlhf train ...`` builds the stage parsers, then parses.
A stage whose module is not part of this install is left out of the group.
"""
from __future__ import annotations

import argparse
import importlib

# stage modules, in the order of the RLHF loop; each has add_parser(sub)
STAGE_MODULES = (
    "gr00t_rlhf_train.stages.sft",      # stage 1: flow-matching fine-tuning of the policy
    "gr00t_rlhf_train.stages.reward",   # stage 2: the reward model (part H2 owns stages/reward.py)
    "gr00t_rlhf_train.stages.rl",       # stage 3: the policy optimised with the reward model (rwfm | acfm)
)
HELP = "train the policy (sft) or the reward model (reward); `train STAGE --help` lists a stage's flags"


def add_stage(sub, name: str) -> bool:
    """Call ``add_parser(sub)`` of stage module ``name`` if it exists; -> whether it did."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            return False  # that stage is not written yet
        raise
    module.add_parser(sub)
    return True


def build_parser(prog: str = "gr00t-rlhf train") -> argparse.ArgumentParser:
    """The full ``train`` parser with every installed stage (imports the stage modules)."""
    parser = argparse.ArgumentParser(prog=prog, description="Training stages of the RLHF loop. Several GPUs: "
                                     "`accelerate launch -m gr00t_rlhf_train.cli train STAGE ...`.")
    sub = parser.add_subparsers(dest="train_command", metavar="STAGE")
    sub.required = True
    for name in STAGE_MODULES:
        add_stage(sub, name)
    return parser


def cmd_train(args) -> int:
    stage_args = build_parser().parse_args(args.train_argv)
    try:
        return int(stage_args.func(stage_args) or 0)
    finally:
        end_process_group()


def end_process_group() -> None:
    """Under ``accelerate launch``: leave the process group before the interpreter exits (a NCCL group left to
    the exit can abort a process after its work is done)."""
    import sys

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def register(subparsers) -> None:
    # everything after `train` is handed to build_parser() (prefix_chars no flag uses: even --help passes)
    p = subparsers.add_parser("train", help=HELP, description=HELP, add_help=False, prefix_chars="\0")
    p.add_argument("train_argv", nargs=argparse.REMAINDER, metavar="STAGE ...")
    p.set_defaults(func=cmd_train)

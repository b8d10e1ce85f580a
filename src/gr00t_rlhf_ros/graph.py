"""The node graph of a bring-up, described once.

Both ``launch/drive.launch.py`` (on a ROS install) and ``gr00t-rlhf drive`` (plain processes over
DDS, no ROS CLI needed) build their processes from ``drive_graph``, so the two never drift.
No rclpy import here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from gr00t_rlhf_ros.paths import config_path


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph: executable (= node name = params-file root key) and its params file."""

    executable: str
    params_file: str | None = None        # file name under config/, e.g. "sim.yaml"
    parameters: dict = field(default_factory=dict)   # overrides on top of the params file
    required: bool = True                 # if it exits, the whole bring-up stops (robot safety)


@dataclass(frozen=True)
class DriveOptions:
    """What ``drive`` brings up. Validated on construction."""

    sim: bool = True                      # start the MuJoCo simulated robot
    driver: str = "expert"                # who publishes /wheel_commands: "expert" (sim only) or "none"
    seed: int | None = None               # sim layout seed (None: params file default)
    task: str | None = None               # instruction published on /task
    record: str | None = None             # dataset directory: also start recorder_node
    vocabulary: str = "binary"            # the recorder's feedback vocabulary

    def __post_init__(self):
        if self.driver not in DRIVERS:
            raise ValueError(f"driver: {self.driver!r} is not one of {sorted(DRIVERS)}")
        if self.driver == "expert" and not self.sim:
            raise ValueError("driver: 'expert' needs the simulator's ground truth; use --sim or another driver")


DRIVERS = {"expert", "none"}


def _params(file: str, node: str) -> dict:
    """The ros__parameters of ``node`` in ``config/<file>``."""
    doc = yaml.safe_load(config_path(file).read_text()) or {}
    return (doc.get(node) or {}).get("ros__parameters") or {}


def drive_graph(opts: DriveOptions) -> list[NodeSpec]:
    """The nodes to start for ``opts``, in start order."""
    nodes: list[NodeSpec] = []
    if opts.sim:
        params = {}
        if opts.seed is not None:
            params["seed"] = opts.seed
        if opts.task is not None:
            params["task"] = opts.task
        nodes.append(NodeSpec("sim_node", "sim.yaml", params))
    if opts.driver == "expert":
        nodes.append(NodeSpec("expert_node", "expert.yaml"))
    if opts.record:
        params = {"dataset": opts.record, "vocabulary": opts.vocabulary}
        task = opts.task if opts.task is not None else (_params("sim.yaml", "sim_node").get("task") if opts.sim else None)
        if task:  # the instruction in force until one arrives on /task
            params["task"] = task
        # not required: the robot may drive on without it (it commits its episode when it stops)
        nodes.append(NodeSpec("recorder_node", "recorder.yaml", params, required=False))
    return nodes

"""sim_human_node: a simulated person pressing feedback keys while watching the simulator.

A thin rclpy shell over :class:`gr00t_rlhf_ros.sim.labeler.SimulatedHuman` (docs/sim_human.md).
Subscribes ``sim/ground_truth`` (JSON, 20 Hz) and ``sim/layout`` (latched: where the object of a
"Move around" task is); publishes ``human_feedback`` (std_msgs/Int32, a key of the recorder's
vocabulary) when the simulated person presses a key — what ``feedback_node`` publishes for a real
one, so ``recorder_node`` records the same dataset. Names are relative (config/contract.yaml).

A new episode starts (the person's judgement restarts) when the ground truth's time goes back (a
``sim/reset``) or its layout seed or task changes. Parameters: every field of
:class:`~gr00t_rlhf_ros.sim.labeler.LabelerConfig` (config/sim_human.yaml).
"""
from __future__ import annotations

# first: lifecycle notes this process's parent before the slow rclpy imports (see die_with_parent)
from gr00t_rlhf_ros import lifecycle  # isort: skip

import json
from dataclasses import fields

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from std_msgs.msg import Int32, String

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_ros.sim.labeler import LabelerConfig, SimulatedHuman

_DESCRIPTIONS = {
    "vocabulary": "feedback vocabulary: binary (0 bad, 1 good), score (-5..5) or a rewards.jsonl path; "
                  "must match recorder_node's",
    "window": "progress is judged over this many seconds of the recent past",
    "min_watch": "no key before this many seconds of an episode were seen (s)",
    "progress_m": "binary: 'good' when at least this much progress (m) over a whole window",
    "reference_speed": "scores: progress at this speed (m/s) counts as full progress",
    "score_progress": "scores: points for full progress (negative when moving away)",
    "score_proximity": "scores: points for being at the goal (0 at proximity_range)",
    "proximity_range": "scores: distance (m) at which proximity stops counting",
    "collision_window": "a collision this recent (s) makes the label bad",
    "collision_score": "scores: the key pressed after a collision (-5..5)",
    "around_radius": "'Move around' tasks: circling counts within this distance (m) of the object",
    "judge_period": "noise is drawn per slot of this many seconds",
    "flip_prob": "noise: probability that the person means the wrong key, per slot",
    "reaction_delay": "noise: seconds between making up one's mind and the key press",
    "reaction_jitter": "noise: standard deviation (s) of the reaction delay",
    "skip_prob": "noise: probability per slot that a stretch without presses starts",
    "skip_seconds": "noise: mean length (s) of a stretch without presses",
    "seed": "seed of every noise draw (with the layout seed, the task and the time slot)",
}


def _typed(name: str, value, default):
    """A parameter's value as its LabelerConfig field's type; ValueError naming the parameter otherwise."""
    if isinstance(default, str):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"sim_human_node parameter {name}: {value!r} must be a number")
    if isinstance(default, int):
        if value != int(value):
            raise ValueError(f"sim_human_node parameter {name}: {value!r} must be an integer")
        return int(value)
    return float(value)


class SimHumanNode(Node):
    def __init__(self):
        super().__init__("sim_human_node")
        self.contract = c = load_contract()
        defaults = LabelerConfig()
        values = {}
        for f in fields(LabelerConfig):
            default = getattr(defaults, f.name)
            # dynamic typing: `-p flip_prob:=1` arrives as an integer, `-p vocabulary:=5` as one too
            value = self.declare_parameter(f.name, default, ParameterDescriptor(
                description=_DESCRIPTIONS[f.name], dynamic_typing=True)).value
            values[f.name] = _typed(f.name, value, default)
        self.config = LabelerConfig(**values)   # ValueError naming the field: one line at start
        self.human = SimulatedHuman(self.config)
        t = c.topic
        self.topic_feedback = self.resolve_topic_name(t("human_feedback").name)
        self.pub = self.create_publisher(Int32, t("human_feedback").name, profile(t("human_feedback")))
        self.create_subscription(String, t("sim_layout").name, self._on_layout, profile(t("sim_layout")))
        self.create_subscription(String, t("ground_truth").name, self._on_gt, profile(t("ground_truth")))
        self._layout: dict | None = None
        self._episode: tuple | None = None
        self._last_time = None
        self._warned: set[str] = set()
        self.presses = 0
        self.episodes = 0
        self.get_logger().info(
            f"simulated human ({self.human.mode}, {self.config.vocabulary}) presses keys on {self.topic_feedback}: "
            f"flip {self.config.flip_prob:g}, delay {self.config.reaction_delay:g}+-{self.config.reaction_jitter:g} s, "
            f"skip {self.config.skip_prob:g}, seed {self.config.seed}")

    def _warn_once(self, kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self.get_logger().warning(text + " (further ones are not logged)")

    def _on_layout(self, msg: String) -> None:
        try:
            self._layout = json.loads(msg.data)
            self.human.set_layout(self._layout)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as e:
            self._warn_once("layout", f"{self.resolve_topic_name(self.contract.topic('sim_layout').name)}: "
                                      f"unusable layout ({e}); ignored")

    def _on_gt(self, msg: String) -> None:
        topic = self.resolve_topic_name(self.contract.topic("ground_truth").name)
        try:
            gt = json.loads(msg.data)
            t = float(gt["time"])
            episode = (gt.get("seed"), gt.get("task"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            self._warn_once("gt", f"{topic}: unusable ground truth ({e}); ignored")
            return
        if episode != self._episode or (self._last_time is not None and t < self._last_time):
            self.human.reset(self._layout)
            self._episode = episode
            self.episodes += 1
            self.get_logger().info(f"episode: layout seed {episode[0]}, task {episode[1]!r}")
        self._last_time = t
        try:
            presses = self.human.observe(gt)
        except (KeyError, TypeError, ValueError) as e:
            self._warn_once("observe", f"{topic}: cannot judge this ground truth: {e}")
            return
        for p in presses:
            self.pub.publish(Int32(data=int(p.key)))
            self.presses += 1

    def stop(self) -> None:
        s = self.human.stats
        self.get_logger().info(f"{self.presses} key presses over {self.episodes} episodes; last episode: "
                               f"{s.agreement:.2f} of observations held the true key")
        if self.context.ok():
            self.pub.wait_for_all_acked(Duration(seconds=0.5))


def main(args=None):
    lifecycle.run(SimHumanNode, "sim_human_node", args, on_exit=SimHumanNode.stop)


if __name__ == "__main__":
    main()

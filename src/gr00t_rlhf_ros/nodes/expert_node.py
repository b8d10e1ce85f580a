"""expert_node: the scripted expert driver; demonstrations for stage 1 come from it.

A thin rclpy shell over ``gr00t_rlhf_ros.expert.ScriptedExpert``. It reads the simulator's
``sim/layout`` (latched: object positions, wheel radius, track) and ``sim/ground_truth`` (pose,
goal, progress; the goal already follows the sim's ``task``, so the expert needs no ``task`` of
its own) and publishes ``wheel_commands`` at ``control_rate``. Names are relative: the expert
drives the robot of its own namespace. It commands zero when the ground
truth is older than ``ground_truth_timeout``, at success, and on every exit path.
"""
from __future__ import annotations

# first: lifecycle notes this process's parent before the slow rclpy imports (see die_with_parent)
from gr00t_rlhf_ros import lifecycle  # isort: skip

import json
import time
from dataclasses import replace

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from std_msgs.msg import Float64MultiArray, String

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.expert import ExpertConfig, ScriptedExpert
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_ros.sim.arena import Layout

# ExpertConfig fields a user may tune here (wheel geometry and speed limit come from /sim/layout).
_TUNABLE = {
    "cruise_speed": "forward speed when heading straight at the target, m/s",
    "heading_gain": "turn rate per rad of heading error, 1/s",
    "max_turn_rate": "largest commanded turn rate, rad/s",
    "stop_distance": "stop when the goal centre is this close, m (below the sim's success_radius)",
    "slow_distance": "slow down over this distance before stop_distance, m",
    "robot_radius": "robot footprint radius used for clearance, m",
    "margin": "extra clearance kept from objects, m",
    "orbit_radius": "radius of the circle driven around an object in 'Move around' tasks, m",
    "wall_clearance": "steer away from walls closer than this, m",
    "search_half_angle": "> 0: turn left in place until the goal is within this angle of the heading, as a "
                         "camera-only policy must (0: turn the short way), rad",
    "search_turn_rate": "turn rate of that search, rad/s",
}


class ExpertNode(Node):
    def __init__(self):
        super().__init__("expert_node")
        c = load_contract()
        self.contract = c
        defaults = ExpertConfig()
        self.tuning = {
            name: float(self.declare_parameter(name, float(getattr(defaults, name)),
                                               ParameterDescriptor(description=text)).value)
            for name, text in _TUNABLE.items()
        }
        self.control_rate = float(self.declare_parameter(
            "control_rate", 20.0, ParameterDescriptor(description="wheel_commands publish rate, Hz")).value)
        self.gt_timeout = float(self.declare_parameter(
            "ground_truth_timeout", 0.5,
            ParameterDescriptor(description="command zero when the newest ground truth is older than this, s")).value)
        if not self.control_rate > 0:
            raise ValueError(f"expert_node parameter control_rate: {self.control_rate!r} must be positive (Hz)")
        ExpertConfig(**self.tuning)  # validate now: errors name the field

        t = c.topic
        self.pub = self.create_publisher(Float64MultiArray, t("wheel_commands").name, profile(t("wheel_commands")))
        self.create_subscription(String, t("sim_layout").name, self._on_layout, profile(t("sim_layout")))
        self.create_subscription(String, t("ground_truth").name, self._on_gt, profile(t("ground_truth")))
        self.create_timer(1.0 / self.control_rate, self._tick)
        self.expert: ScriptedExpert | None = None
        self.gt: dict | None = None
        self.gt_time = -1e9
        self._episode = None
        self._reported_success = False

    def _on_layout(self, msg: String) -> None:
        doc = json.loads(msg.data)
        layout = Layout.from_dict(doc)
        robot = doc.get("robot", {})
        cfg = replace(
            ExpertConfig(**self.tuning),
            **{k: float(v) for k, v in (("wheel_radius", robot.get("wheel_radius")), ("track", robot.get("track")),
                                        ("max_wheel_speed", doc.get("max_wheel_speed"))) if v is not None},
        )
        self.expert = ScriptedExpert(layout, cfg)
        self._episode = None
        self.get_logger().info(f"layout seed {layout.seed}: expert ready")

    def _on_gt(self, msg: String) -> None:
        self.gt = json.loads(msg.data)
        self.gt_time = time.monotonic()

    def _tick(self) -> None:
        gt, expert = self.gt, self.expert
        if expert is None or gt is None or time.monotonic() - self.gt_time > self.gt_timeout:
            self.send(0.0, 0.0)
            return
        episode = (gt["seed"], gt["task"])
        if episode != self._episode or gt["time"] < 0.1:  # new layout, task or reset
            if expert.layout.seed != gt["seed"]:
                self.send(0.0, 0.0)  # ground truth of a layout we have not received yet
                return
            expert.reset()
            self._episode, self._reported_success = episode, False
        if gt["success"] and not self._reported_success:
            self._reported_success = True
            self.get_logger().info(f"reached {gt['goal']} at t={gt['time']:.1f} s")
        self.send(*expert.act(gt))

    def send(self, left: float, right: float) -> None:
        self.pub.publish(Float64MultiArray(data=[float(left), float(right)]))

    def stop(self) -> None:
        """Command zero and give DDS a moment to deliver it."""
        if not self.context.ok():
            return
        self.send(0.0, 0.0)
        self.pub.wait_for_all_acked(Duration(seconds=0.5))


def main(args=None):
    # the context stays valid on SIGINT/SIGTERM, so the final zero command still goes out
    lifecycle.run(ExpertNode, "expert_node", args, on_exit=ExpertNode.stop)


if __name__ == "__main__":
    main()

"""sim_node: the MuJoCo differential-drive robot with an ego camera, on the ROS contract topics.

A thin rclpy shell over ``gr00t_rlhf_ros.sim.robot.SimRobot``. Three threads of work:

- the **physics thread** steps MuJoCo in fixed steps to wall-clock time (simulation time = seconds
  since start or the last reset) and publishes ``imu``, ``joint_states`` and
  ``sim/ground_truth`` at their rates;
- the **camera thread** renders the ego camera at ``camera_rate`` and publishes
  ``camera/image_raw``; it owns the renderer's GL context, and renders a copy of the scene taken
  under the robot's lock, so physics never waits for a frame and never changes one mid-render;
- the **executor** (single-threaded) serves ``wheel_commands``, ``task`` and ``sim/reset``.

Names are relative (config/contract.yaml): under ``__ns:=/robot1`` they are ``/robot1/imu``, ...

Bad wheel commands (see docs/sim.md): wrong length, NaN or inf -> rejected, the previous command
stays until the watchdog (``command_timeout``) stops the wheels; out of range -> clamped. Each kind
of problem is logged once; later ones are counted (in the ground truth's ``rejected_commands`` and
in a summary at shutdown).
"""
from __future__ import annotations

# first: lifecycle notes this process's parent before the slow rclpy imports (see die_with_parent)
from gr00t_rlhf_ros import lifecycle  # isort: skip

import json
import threading
import time

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import Image, Imu, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.msgs import BadCommand, parse_wheel_command, rgb_to_image_msg
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_ros.sim.arena import TaskError
from gr00t_rlhf_ros.sim.robot import SimConfig, SimRobot

_PROBLEMS = {
    "wrong_length": "rejected (the previous command stays until command_timeout stops the wheels)",
    "non_finite": "rejected (the previous command stays until command_timeout stops the wheels)",
    "out_of_range": "clamped",
}


class SimNode(Node):
    def __init__(self):
        super().__init__("sim_node")
        c = load_contract()
        self.contract = c
        p = self._declare_parameters(c)
        self.robot = SimRobot(
            seed=p["seed"], task=p["task"],
            config=SimConfig(
                timestep=p["physics_timestep"], command_timeout=p["command_timeout"],
                max_wheel_speed=p["max_wheel_speed"], success_radius=p["success_radius"],
                imu_gravity=p["imu_gravity"], imu_filter_hz=p["imu_filter_hz"],
                camera_width=p["camera_width"], camera_height=p["camera_height"],
            ),
        )
        self.p = p
        self.joint_names = list(c.wheel_joints)
        self._problems = {k: 0 for k in _PROBLEMS}
        self._time_lock = threading.Lock()   # guards the simulation time origin against resets
        self._t0 = time.monotonic()
        self._stop = threading.Event()

        t = c.topic
        self.pub_camera = self.create_publisher(Image, t("camera").name, profile(t("camera")))
        self.pub_imu = self.create_publisher(Imu, t("imu").name, profile(t("imu")))
        self.pub_joints = self.create_publisher(JointState, t("joint_states").name, profile(t("joint_states")))
        self.pub_gt = self.create_publisher(String, t("ground_truth").name, profile(t("ground_truth")))
        self.pub_layout = self.create_publisher(String, t("sim_layout").name, profile(t("sim_layout")))
        self.create_subscription(Float64MultiArray, t("wheel_commands").name, self._on_command,
                                 profile(t("wheel_commands")))
        self.create_subscription(String, t("task").name, self._on_task, profile(t("task")))
        self.create_service(Trigger, c.service("sim_reset").name, self._on_reset)
        self._publish_layout()

        self._physics = threading.Thread(target=self._physics_loop, name="sim_physics", daemon=True)
        self._camera = threading.Thread(target=self._camera_loop, name="sim_camera", daemon=True)
        self._physics.start()
        self._camera.start()
        self.get_logger().info(
            f"sim_node: seed {self.robot.layout.seed}, task {self.robot.task.instruction!r}, camera "
            f"{p['camera_width']}x{p['camera_height']} at {p['camera_rate']} Hz, physics step "
            f"{p['physics_timestep'] * 1000:.1f} ms"
        )

    def _declare_parameters(self, c) -> dict:
        spec = {
            "seed": (0, "arena layout seed (object and robot start positions)"),
            "task": (SimRobot.DEFAULT_TASK, "initial instruction, e.g. 'Find Blue cube'; the task topic replaces it"),
            "camera_width": (320, "ego camera image width, pixels"),
            "camera_height": (240, "ego camera image height, pixels"),
            "camera_rate": (c.topic("camera").rate_hz or 10.0, "ego camera frame rate, Hz"),
            "imu_rate": (c.topic("imu").rate_hz or 100.0, "imu publish rate, Hz"),
            "joint_states_rate": (c.topic("joint_states").rate_hz or 50.0, "joint_states publish rate, Hz"),
            "ground_truth_rate": (c.topic("ground_truth").rate_hz or 20.0, "sim/ground_truth publish rate, Hz"),
            "physics_timestep": (0.002, "fixed MuJoCo step, s (physics advances to wall-clock time in these steps)"),
            "command_timeout": (c.command_timeout, "a wheel command older than this (s) stops the wheels"),
            "max_wheel_speed": (c.max_wheel_speed, "wheel commands are clamped to +-this, rad/s"),
            "success_radius": (0.5, "success when the robot centre is this close to the goal centre, m"),
            "imu_gravity": (False, "true: /imu reports raw specific force (|a| = 9.81 at rest, REP 145); "
                                   "false: gravity removed (0 at rest, like the seed datasets)"),
            "imu_filter_hz": (20.0, "cut-off of the accelerometer's first-order low-pass filter, Hz (0 = off)"),
            "reset_new_layout": (True, "true: sim/reset draws a new layout from seed + 1; false: same layout"),
            "base_frame": ("base_link", "frame_id of joint_states"),
            "imu_frame": ("imu_link", "frame_id of imu"),
            "camera_frame": ("camera_link", "frame_id of camera/image_raw"),
        }
        values = {}
        for name, (default, description) in spec.items():
            values[name] = self.declare_parameter(name, default, ParameterDescriptor(description=description)).value
        for name in ("camera_rate", "imu_rate", "joint_states_rate", "ground_truth_rate"):
            if not values[name] > 0:
                raise ValueError(f"sim_node parameter {name}: {values[name]!r} must be a positive rate in Hz")
        return values

    # ------------------------------------------------------------ subscriptions and services

    def _problem(self, kind: str, detail: str) -> None:
        self._problems[kind] += 1
        if self._problems[kind] == 1:
            self.get_logger().warning(
                f"{self.resolve_topic_name(self.contract.topic('wheel_commands').name)}: {detail}: {_PROBLEMS[kind]}. "
                f"Further {kind.replace('_', ' ')} commands are counted, not logged."
            )

    def _on_command(self, msg: Float64MultiArray) -> None:
        data = list(msg.data)
        if len(data) != 2:
            self._problem("wrong_length", f"expected [left, right], got {len(data)} values")
            return
        try:
            (left, right), clamped = parse_wheel_command(data, self.robot.config.max_wheel_speed)
        except BadCommand as e:
            self._problem("non_finite", str(e))
            return
        if clamped:
            self._problem("out_of_range", f"{data} beyond +-{self.robot.config.max_wheel_speed} rad/s")
        self.robot.set_command(left, right)

    def _on_task(self, msg: String) -> None:
        try:
            task = self.robot.set_task(msg.data)
        except TaskError as e:
            self.get_logger().warning(
                f"{self.resolve_topic_name(self.contract.topic('task').name)}: {e}; keeping {self.robot.task.instruction!r}")
            return
        self.get_logger().info(f"task {task.instruction!r}: goal {task.goal}" +
                               (f", around {task.around} first" if task.around else ""))

    def _on_reset(self, request, response):
        seed = self.robot.layout.seed + 1 if self.p["reset_new_layout"] else None
        with self._time_lock:
            layout = self.robot.reset(seed)
            self._t0 = time.monotonic()
        self._publish_layout()
        response.success = True
        response.message = f"reset: layout seed {layout.seed}, task {self.robot.task.instruction!r}"
        self.get_logger().info(response.message)
        return response

    def _publish_layout(self) -> None:
        rb = self.robot.config.robot
        doc = self.robot.layout.to_dict() | {
            "robot": {"wheel_radius": rb.wheel_radius, "track": rb.track, "footprint": rb.footprint},
            "success_radius": self.robot.config.success_radius,
            "around_radius": self.robot.config.around_radius,
            "max_wheel_speed": self.robot.config.max_wheel_speed,
        }
        self.pub_layout.publish(String(data=json.dumps(doc)))

    # ------------------------------------------------------------ physics thread

    def _physics_loop(self) -> None:
        periods = {"imu": 1.0 / self.p["imu_rate"], "joints": 1.0 / self.p["joint_states_rate"],
                   "gt": 1.0 / self.p["ground_truth_rate"]}
        publish = {"imu": self._publish_imu, "joints": self._publish_joints, "gt": self._publish_gt}
        now = time.monotonic()
        due = dict.fromkeys(periods, now)
        tick = min(min(periods.values()), 0.01)  # physics catches up with the clock at least this often
        try:
            while not self._stop.is_set():
                with self._time_lock:
                    self.robot.step_to(time.monotonic() - self._t0)
                now = time.monotonic()
                for name, t_due in due.items():
                    if now >= t_due:
                        publish[name]()
                        # keep the schedule, but never try to catch up a backlog of missed samples
                        due[name] = t_due + periods[name] if now - t_due < periods[name] else now + periods[name]
                wake = min(min(due.values()), now + tick)
                self._stop.wait(max(0.0, wake - time.monotonic()))
        except Exception as e:  # a dead physics thread must not leave a silently frozen robot
            self.get_logger().fatal(f"physics thread failed: {e!r}")
            raise

    def _stamp(self):
        return self.get_clock().now().to_msg()

    def _publish_imu(self) -> None:
        r = self.robot.imu()
        msg = Imu()
        msg.header.stamp, msg.header.frame_id = self._stamp(), self.p["imu_frame"]
        w, x, y, z = (float(v) for v in r.orientation)
        msg.orientation.w, msg.orientation.x, msg.orientation.y, msg.orientation.z = w, x, y, z
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (float(v) for v in r.angular_velocity)
        a = r.linear_acceleration
        msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (float(v) for v in a)
        self.pub_imu.publish(msg)

    def _publish_joints(self) -> None:
        msg = JointState()
        msg.header.stamp, msg.header.frame_id = self._stamp(), self.p["base_frame"]
        msg.name = self.joint_names
        msg.position = [float(v) for v in self.robot.joint_positions()]
        msg.velocity = [float(v) for v in self.robot.joint_velocities()]
        self.pub_joints.publish(msg)

    def _publish_gt(self) -> None:
        gt = self.robot.ground_truth()
        gt["rejected_commands"] = dict(self._problems)
        self.pub_gt.publish(String(data=json.dumps(gt)))

    # ------------------------------------------------------------ camera thread

    def _camera_loop(self) -> None:
        period = 1.0 / self.p["camera_rate"]
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                stamp = self._stamp()
                img = self.robot.render()  # [H, W, 3] uint8
                msg = Image()
                msg.header.stamp, msg.header.frame_id = stamp, self.p["camera_frame"]
                rgb_to_image_msg(img, msg)
                self.pub_camera.publish(msg)
                due += period
                if time.monotonic() - due > period:  # fell behind (slow renderer): drop, don't burst
                    due = time.monotonic()
                self._stop.wait(max(0.0, due - time.monotonic()))
        except Exception as e:
            self.get_logger().fatal(f"camera thread failed: {e!r}")
            raise
        finally:
            self.robot.close()  # the GL context belongs to this thread

    # ------------------------------------------------------------ shutdown

    def stop(self) -> None:
        """Stop the wheels and both threads (idempotent)."""
        self.robot.set_command(0.0, 0.0)
        self._stop.set()
        # generous: the camera thread may still be creating its GL context (seconds on a busy CPU)
        for th in (self._physics, self._camera):
            th.join(20.0)
            if th.is_alive():
                self.get_logger().error(f"thread {th.name} did not stop within 20 s")
        counts = {k: v for k, v in self._problems.items() if v}
        if counts:
            self.get_logger().info(f"bad wheel commands received: {counts}")


def main(args=None):
    lifecycle.run(SimNode, "sim_node", args, on_exit=SimNode.stop)


if __name__ == "__main__":
    main()

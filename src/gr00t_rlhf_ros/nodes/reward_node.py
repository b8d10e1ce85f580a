"""reward_node: the reward model's opinion of what the robot is doing, live (rviz, other nodes).

Subscribes ``camera/image_raw``, ``joint_states``, ``imu``, ``task`` (and ``wheel_commands`` when the
reward model takes actions); publishes ``reward`` (std_msgs/Float32), ``reward/marker``
(visualization_msgs/Marker, TEXT_VIEW_FACING above the robot, red at the low end of the model's
reward range to green at the high end) and ``reward/overlay`` (the scored camera frame, rgb8,
same header, with a reward bar, the value and a sparkline of the last ``history_seconds``).
Health on ``/diagnostics``: rewards/s, frames received / dropped (behind) / skipped, model latency
and frame-to-reward delay, the state (scoring, waiting for ..., reward server not answering).

A thin rclpy shell: the clip logic is :mod:`gr00t_rlhf_ros.reward_stream`, scoring and the overlay
:mod:`gr00t_rlhf_ros.reward_scoring` / :mod:`gr00t_rlhf_ros.overlay`, the model a runtime of
``gr00t_rlhf_train.inference`` (a checkpoint here, or ``tcp://HOST:PORT``).
Scoring runs on its own thread, newest frame first: frames that arrive while the model is busy
replace the waiting one (counted as dropped), nothing queues. A reward model that cannot be
loaded stops the node at start with one line naming it; a bad message is dropped and the first of
each kind logged; a failed or non-finite score publishes nothing and says why in the log (once per
kind) and the diagnostics; a remote server that comes back is used again at the next frame.
"""
from __future__ import annotations

# first: lifecycle notes this process's parent before the slow rclpy imports (see die_with_parent)
from gr00t_rlhf_ros import lifecycle  # isort: skip

import contextlib
import os
import signal
import threading
import time
from collections import Counter

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import Image, Imu, JointState
from std_msgs.msg import Float32, Float64MultiArray, String
from visualization_msgs.msg import Marker

from gr00t_rlhf_ros import diagnostics as diag
from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.msgs import (BadMessage, check_image_msg, image_msg_to_rgb, imu_acceleration, parse_wheel_command,
                                 rgb_to_image_msg, stamp_to_sec, wheel_velocities)
from gr00t_rlhf_ros.overlay import reward_colour
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_ros.recording import error_summary
from gr00t_rlhf_ros.reward_scoring import OK, TIMEOUT, InferenceError, Outcome, RewardScorer
from gr00t_rlhf_ros.reward_stream import ClipUnavailable, RewardStream, StreamConfig
from gr00t_rlhf_train.inference import open_reward


def _desc(text: str) -> ParameterDescriptor:
    return ParameterDescriptor(description=text)


@contextlib.contextmanager
def _stop_at_once_while_loading():
    """Ctrl-C / SIGTERM while the model loads (seconds to tens of seconds on a busy CPU: torch, weights,
    a remote server's connect timeout) exit at once: nothing is published or held yet. Outside this
    block the normal stop path of ``lifecycle.run`` applies."""
    def _exit(signum, frame):
        print(f"[reward_node] {signal.Signals(signum).name} while loading the reward model: stopped", flush=True)
        os._exit(0)

    previous = {sig: signal.signal(sig, _exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class RewardNode(Node):
    def __init__(self):
        super().__init__("reward_node")
        self.contract = c = load_contract()
        p = self.declare_parameter
        source = str(p("reward_model", "", _desc("reward model: a checkpoint directory or tcp://HOST:PORT "
                                                  "(a `gr00t-rlhf serve` server)")).value)
        device = str(p("device", "auto", _desc("torch device of a local model: auto (cuda if available), cpu, cuda")).value)
        cuda_graphs = bool(p("cuda_graphs", True, _desc("CUDA-graph fast path of a local model on a GPU")).value)
        timeout_s = float(p("timeout_s", 1.0, _desc("a remote reward server's reply deadline, s")).value)
        task = str(p("task", "", _desc("task instruction until one arrives on the task topic")).value)
        max_state_age = float(p("max_state_age", 0.5, _desc("a frame whose joint_states/imu are older (s) is "
                                                             "not scored")).value)
        history = float(p("history_seconds", 10.0, _desc("time span of the overlay's sparkline, s")).value)
        self.marker_frame = str(p("marker_frame", "base_link", _desc("frame_id of the reward marker (the robot's "
                                                                    "base frame; rviz's fixed frame without TF)")).value)
        self.marker_height = float(p("marker_height", 0.6, _desc("marker height above the frame's origin, m")).value)
        self.marker_size = float(p("marker_size", 0.15, _desc("marker text height, m")).value)
        period = float(p("diagnostics_period", 1.0, _desc("/diagnostics publish period, s")).value)
        threads = int(p("torch_threads", 1, _desc("CPU threads of a local model (0: torch's default, one per core); "
                                                  "1 keeps it from starving the policy and the robot on a small "
                                                  "CPU")).value)
        if not source.strip():
            raise ValueError("reward_node parameter reward_model: empty; give a reward model checkpoint directory "
                             "or tcp://HOST:PORT")
        for name, v in (("timeout_s", timeout_s), ("history_seconds", history), ("diagnostics_period", period),
                        ("marker_size", self.marker_size), ("max_state_age", max_state_age)):
            if not v > 0:
                raise ValueError(f"reward_node parameter {name}: {v!r} must be positive")
        if not self.marker_frame.strip():
            raise ValueError("reward_node parameter marker_frame: empty; give the robot's frame (e.g. base_link)")
        if threads < 0:
            raise ValueError(f"reward_node parameter torch_threads: {threads} must be >= 0 (0: torch's default)")
        if threads > 0 and not source.startswith("tcp://"):
            import torch  # the local runtime imports it anyway; a remote one needs no torch here

            torch.set_num_threads(threads)

        self.get_logger().info(f"loading reward model {source}")
        with _stop_at_once_while_loading():
            self.reward = open_reward(source, device=device, cuda_graphs=cuda_graphs, timeout_s=timeout_s)
        self.source = source
        self.stream = RewardStream(StreamConfig(
            horizon=int(self.reward.horizon), frame_rate=float(self.reward.frame_rate),
            action_horizon=int(getattr(self.reward, "action_horizon", 0) or 0),
            max_state_age=max_state_age, command_timeout=c.command_timeout), task)
        self.scorer = RewardScorer(self.reward, history)
        self.problems: Counter = Counter()        # (what, where, reason) -> count; first of each logged
        self._problem_lock = threading.Lock()
        self.bad_input = 0
        self.skipped = 0
        self._last_skip = ""
        self._last_skip_at = -1e9
        self._last_frame_at = -1e9

        t = c.topic
        self.topics = {k: self.resolve_topic_name(t(k).name) for k in ("camera", "joint_states", "imu", "task",
                                                                     "wheel_commands")}
        self.pub_reward = self.create_publisher(Float32, t("reward").name, profile(t("reward")))
        self.pub_marker = self.create_publisher(Marker, t("reward_marker").name, profile(t("reward_marker")))
        self.pub_overlay = self.create_publisher(Image, t("reward_overlay").name, profile(t("reward_overlay")))
        self.create_subscription(Image, t("camera").name, self._on_camera, profile(t("camera")))
        self.create_subscription(JointState, t("joint_states").name, self._on_joints, profile(t("joint_states")))
        self.create_subscription(Imu, t("imu").name, self._on_imu, profile(t("imu")))
        self.create_subscription(String, t("task").name, self._on_task, profile(t("task")))
        if self.stream.cfg.action_horizon > 0:
            self.create_subscription(Float64MultiArray, t("wheel_commands").name, self._on_command,
                                     profile(t("wheel_commands")))
        self.diagnostics = diag.Diagnostics(self, hardware_id=source)
        self.create_timer(period, self._publish_diagnostics)

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._score_loop, name="reward_scoring", daemon=True)
        self._worker.start()
        cfg = self.stream.cfg
        self.get_logger().info(
            f"reward model {source}: H={cfg.horizon} frames at {cfg.frame_rate:g} Hz, range "
            f"{self.scorer.reward_range[0]:g}..{self.scorer.reward_range[1]:g}"
            + (f", last {cfg.action_horizon} wheel commands as actions" if cfg.action_horizon else "")
            + f"; scoring {self.topics['camera']}")

    # ---- inputs ----------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _problem(self, what: str, where: str, reason: str, detail: str) -> None:
        """Count one problem; log only the first of each (what, where, reason): no log floods."""
        with self._problem_lock:
            self.problems[(what, where, reason)] += 1
            first = self.problems[(what, where, reason)] == 1
        if first:
            self.get_logger().warning(f"{detail}: {what}; further ones like it are counted (diagnostics)")

    def _bad(self, topic: str, e: BadMessage) -> None:
        self.bad_input += 1
        self._problem("dropped", topic, e.reason, str(e))

    def _on_camera(self, msg: Image) -> None:
        topic = self.topics["camera"]
        try:
            check_image_msg(msg, topic)
            image = image_msg_to_rgb(msg, topic)
        except BadMessage as e:
            self._bad(topic, e)
            return
        self._last_frame_at = time.monotonic()
        note = self.stream.add_frame(stamp_to_sec(msg.header.stamp), image, meta=msg.header)
        if note:
            self.get_logger().warning(f"{topic}: {note}")

    def _on_joints(self, msg: JointState) -> None:
        topic = self.topics["joint_states"]
        try:
            left, right = wheel_velocities(msg.name, msg.velocity, self.contract.wheel_joints, topic)
        except BadMessage as e:
            self._bad(topic, e)
            return
        self.stream.add_wheels(stamp_to_sec(msg.header.stamp), left, right)

    def _on_imu(self, msg: Imu) -> None:
        topic = self.topics["imu"]
        try:
            accel = imu_acceleration(msg.linear_acceleration, topic)
        except BadMessage as e:
            self._bad(topic, e)
            return
        self.stream.add_acceleration(stamp_to_sec(msg.header.stamp), accel)

    def _on_task(self, msg: String) -> None:
        text = str(msg.data)
        if not text.strip():
            self._bad(self.topics["task"], BadMessage(f"{self.topics['task']}: empty task ignored; keeping "
                                                      f"{self.stream.task!r}", "empty task"))
            return
        if text != self.stream.task:
            self.get_logger().info(f"task: {text!r}")
        self.stream.set_task(text)

    def _on_command(self, msg: Float64MultiArray) -> None:
        topic = self.topics["wheel_commands"]
        try:
            (left, right), _ = parse_wheel_command(msg.data, self.contract.max_wheel_speed)
        except BadMessage as e:
            self._bad(topic, BadMessage(f"{topic}: {e}", e.reason))
            return
        self.stream.add_command(self._now(), left, right)  # the robot clamps as parse_wheel_command does

    # ---- scoring thread --------------------------------------------------------------------------
    def _score_loop(self) -> None:
        while not self._stop.is_set():
            try:
                clip = self.stream.take(timeout=0.1)
            except ClipUnavailable as e:
                self.skipped += 1
                self._last_skip, self._last_skip_at = str(e), time.monotonic()
                self._problem("not scored", self.topics["camera"], e.reason, f"frame not scored: {e}")
                continue
            if clip is None:
                continue
            try:
                self._score(clip)
            except Exception as e:  # noqa: BLE001 - the scoring thread must outlive a bad frame: counted, logged once
                self._problem("error", "scoring thread", type(e).__name__, f"scoring failed: {error_summary(e)}")

    def _score(self, clip) -> None:
        outcome = self.scorer.score(clip)
        if outcome.status == OK:
            self._publish(outcome)
            self.scorer.stats.add(outcome, delay_s=self._now() - outcome.clip.stamp)
        else:
            self.scorer.stats.add(outcome)
            self._problem("not published", "reward", outcome.status, outcome.detail)

    def _publish(self, outcome: Outcome) -> None:
        if not self.context.ok():
            return
        value, header = outcome.value, outcome.clip.meta
        self.pub_reward.publish(Float32(data=value))
        self.pub_marker.publish(self._marker(value, header))
        if self.pub_overlay.get_subscription_count() > 0:  # drawing costs CPU: only when someone looks
            msg = Image(header=header)
            rgb_to_image_msg(self.scorer.overlay(outcome), msg)
            self.pub_overlay.publish(msg)

    def _marker(self, value: float, header) -> Marker:
        m = Marker()
        m.header.frame_id = self.marker_frame
        m.header.stamp = header.stamp
        m.ns, m.id = "reward", 0
        m.type, m.action = Marker.TEXT_VIEW_FACING, Marker.ADD
        m.pose.position.z = self.marker_height
        m.pose.orientation.w = 1.0
        m.scale.z = self.marker_size
        r, g, b = reward_colour(value, *self.scorer.reward_range)
        m.color.r, m.color.g, m.color.b, m.color.a = r, g, b, 1.0
        m.text = f"reward {value:.2f}"
        m.lifetime = Duration(seconds=2.0).to_msg()  # a reward that stops coming disappears
        return m

    # ---- health ----------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        stats = self.scorer.stats
        last, p50, p99 = stats.latency_ms()
        _, d50, d99 = stats.delay_ms()
        level, message = self._state(now)
        values = {
            "rewards per s": stats.rate(now),
            "frames received": self.stream.received,
            "frames dropped (behind)": self.stream.dropped,
            "frames not scored": self.skipped,
            "bad input messages": self.bad_input,
            "rewards not published": sum(n for s, n in stats.outcomes.items() if s != OK),
            "model latency last ms": last, "model latency p50 ms": p50, "model latency p99 ms": p99,
            "frame to reward p50 ms": d50, "frame to reward p99 ms": d99,
            "last reward": stats.last.value if stats.last is not None else None,
            "reward model": self.source,
            "clip": f"{self.stream.cfg.horizon} frames at {self.stream.cfg.frame_rate:g} Hz",
        }
        self.diagnostics.publish(level, message, values)

    def _state(self, now: float) -> tuple[bytes, str]:
        """(level, message) from what happened in the last diagnostics period."""
        recent = 2.0
        last, last_at = self.scorer.stats.last, self.scorer.stats.last_at
        if last is not None and last.status != OK and now - last_at < recent:
            level = diag.WARN if last.status == TIMEOUT else diag.ERROR
            return level, f"reward not published: {last.detail}"
        if now - self._last_frame_at > recent:
            return diag.WARN, f"no camera frames on {self.topics['camera']}"
        if now - self._last_skip_at < recent and (last is None or now - last_at >= recent):
            return diag.WARN, f"not scoring: {self._last_skip}"
        return diag.OK, "scoring"

    def close(self) -> None:
        """Stop the scoring thread and release the model."""
        self._stop.set()
        self._worker.join(10.0)
        try:
            self.reward.close()
        except Exception as e:  # noqa: BLE001 - closing a dead remote connection must not mask the exit
            print(f"[reward_node] closing the reward model: {e}", flush=True)
        summary = "; ".join(f"{n} {what} on {where} ({reason})" for (what, where, reason), n in sorted(self.problems.items()))
        if summary:
            print(f"[reward_node] shutdown: {summary}", flush=True)


def main(args=None):
    lifecycle.run(RewardNode, "reward_node", args, on_exit=RewardNode.close,
                  startup_errors=(InferenceError, ValueError, OSError))


if __name__ == "__main__":
    main()

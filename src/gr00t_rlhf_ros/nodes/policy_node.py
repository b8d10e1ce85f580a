"""policy_node: the GR00T policy drives the robot.

A thin rclpy shell (docs/policy_node.md). Subscribes ``camera/image_raw``, ``imu``, ``joint_states``,
``task`` and ``estop`` (relative names and QoS from the contract); publishes ``wheel_commands``
(and, with ``publish_cmd_vel``, ``cmd_vel``) at ``control_rate``; ``/diagnostics`` at
``diagnostics_period``; service ``~/reset_estop`` (std_srvs/Trigger) releases a latched e-stop.

- :mod:`gr00t_rlhf_ros.observation` keeps the latest good message of each input (bad ones are
  dropped where they arrive; each kind logged once), aged from when the middleware received it;
- :mod:`gr00t_rlhf_ros.policy_worker` runs the model (``gr00t_rlhf_train.inference.open_policy``:
  a checkpoint, a preset or ``tcp://`` server) in its own thread on the latest observation;
- :mod:`gr00t_rlhf_ros.control` turns chunks into one safe command per tick (latency compensation,
  interpolation, cross-fade, clamping, e-stop / stale / fault → zero).

A model that cannot be loaded stops the node at start with one line (exit code 1). Zero is
commanded on every exit path (Ctrl-C, SIGTERM, an exception in a callback).
"""
from __future__ import annotations

# first: lifecycle notes this process's parent before the slow rclpy imports (see die_with_parent)
from gr00t_rlhf_ros import lifecycle  # isort: skip

import gc
import os
import sys
import time

from geometry_msgs.msg import Twist
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from sensor_msgs.msg import Image, Imu, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import Trigger

from gr00t_rlhf_ros import diagnostics as D
from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.control import DRIVING, ESTOP, FAULT, ControlConfig, Controller, wheels_to_twist
from gr00t_rlhf_ros.msgs import BadMessage
from gr00t_rlhf_ros.observation import ObservationBuilder, arrival_time, input_map
from gr00t_rlhf_ros.policy_worker import Fault, InferenceWorker
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_ros.recording import ProblemLog, error_summary
from gr00t_rlhf_train.inference import InferenceError, open_policy

_LEVEL = {DRIVING: D.OK, ESTOP: D.WARN, FAULT: D.ERROR}


def _desc(text: str) -> ParameterDescriptor:
    return ParameterDescriptor(description=text)


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy_node")
        self.contract = c = load_contract()
        t = c.topic
        # the wheels stop while the model loads (seconds for a 2B model): whatever drove them before is over
        self.pub = self.create_publisher(Float64MultiArray, t("wheel_commands").name, profile(t("wheel_commands")))
        self.twist_pub = None
        self.send(0.0, 0.0)
        p = self.declare_parameter
        source = str(p("policy", "", _desc("policy: checkpoint directory, official GR00T N1 directory, preset "
                                           "('tiny', 'gr00t-n1-2b': random weights) or tcp://HOST:PORT")).value)
        reward = str(p("reward_model", "", _desc("reward model for best-of-N (num_candidates > 1): checkpoint "
                                                 "directory, or '' for none")).value)
        n = int(p("num_candidates", 1, _desc("chunks sampled per inference; the reward model picks one (1: no "
                                             "best-of-N)")).value)
        device = str(p("device", "auto", _desc("torch device for a local model: auto (cuda if available), cpu, "
                                               "cuda, cuda:1")).value)
        cuda_graphs = bool(p("cuda_graphs", True, _desc("CUDA-graph fast path on a CUDA device")).value)
        condition = str(p("condition", "", _desc("advantage-conditioned policies (train rl --method acfm): sample "
                                                 "under good, bad or unconditioned ('': the checkpoint's)")).value)
        guidance = self._float("guidance", -1.0, _desc("advantage-conditioned policies: classifier-free guidance "
                                                       "w >= 0, 1 = plain conditional (negative: the checkpoint's)"))
        timeout_s = self._float("inference_timeout", 1.0, _desc("remote policy: a request with no reply in this "
                                                            "time (s) is a fault (zero command)"))
        self.cfg = ControlConfig(
            control_rate=self._float("control_rate", 20.0, _desc("wheel_commands publish rate, Hz")),
            action_rate=self._float("action_rate", c.dataset_fps, _desc("rate of the chunk's actions, Hz (the "
                                                                    "training dataset's fps)")),
            replan_every=int(p("replan_every", 8, _desc("actions of a chunk executed before the next chunk is "
                                                        "due (k)")).value),
            blend_steps=int(p("blend_steps", 4, _desc("actions over which the old chunk cross-fades into the new "
                                                      "one (0: switch at once)")).value),
            interpolation=str(p("interpolation", "linear", _desc("between two actions: linear or hold")).value),
            input_timeout=self._float("input_timeout", c.command_timeout, _desc("a required input (camera, imu, "
                                  "joint_states) older than this (s) stops the robot")),
            max_wheel_speed=c.max_wheel_speed,
        )
        task = str(p("task", "", _desc("instruction until one arrives on the task topic ('' : wait for it)")).value)
        width = int(p("image_width", 0, _desc("required camera width, pixels (0: any; the model resizes)")).value)
        height = int(p("image_height", 0, _desc("required camera height, pixels (0: any)")).value)
        self.publish_cmd_vel = bool(p("publish_cmd_vel", False, _desc("also publish cmd_vel "
                                                                      "(geometry_msgs/Twist, REP-103)")).value)
        self.wheel_radius = self._float("wheel_radius", 0.07, _desc("wheel radius, m (cmd_vel)"))
        self.wheel_separation = self._float("wheel_separation", 0.30, _desc("distance between the wheel centres, m "
                                                                        "(cmd_vel)"))
        seed = int(p("seed", -1, _desc("noise seed of every inference (-1: random)")).value)
        diag_period = self._float("diagnostics_period", 1.0, _desc("/diagnostics period, s"))
        # dynamic typing: `-p fault:=nan` arrives as a double
        fault = Fault.parse(p("fault", "none", ParameterDescriptor(
            description="TEST ONLY, never on a robot: none, nan, delay:SECONDS, scale:FACTOR (docs/policy_node.md)",
            dynamic_typing=True)).value)
        if not source:
            raise ValueError("policy_node parameter policy: empty; give a checkpoint directory, a preset or "
                             "tcp://HOST:PORT")
        if (width > 0) != (height > 0) or width < 0 or height < 0:
            raise ValueError(f"policy_node parameters image_width/image_height: {width}x{height}: give both "
                             "(pixels) or neither (0)")
        for name, value in (("wheel_radius", self.wheel_radius), ("wheel_separation", self.wheel_separation),
                            ("diagnostics_period", diag_period), ("inference_timeout", timeout_s)):
            if not value > 0:
                raise ValueError(f"policy_node parameter {name}: {value!r} must be > 0")

        self.runtime = open_policy(source, reward_model=reward or None, num_candidates=n, device=device,
                                   cuda_graphs=cuda_graphs, timeout_s=timeout_s, condition=condition or None,
                                   guidance=None if guidance < 0 else guidance)
        spec = self.runtime.spec
        self.cfg.check_horizon(spec.action_horizon)
        self.topics = {k: self.resolve_topic_name(t(k).name) for k in ("camera", "imu", "joint_states", "task",
                                                                       "estop", "wheel_commands", "cmd_vel")}
        inputs = input_map(c, spec.video_keys, spec.state_keys, spec.language_key)
        self.builder = ObservationBuilder(inputs, self.topics, (height, width) if width else None, task)
        self.controller = Controller(self.cfg, spec.action_dim)
        self.problems = ProblemLog()
        self.worker = InferenceWorker(self.runtime, self.builder, self.controller, self.cfg.input_timeout,
                                      self._report, fault, None if seed < 0 else seed)
        # latencies (ms) and the command period (s), for /diagnostics and the bench
        self.stats = {k: D.RollingStats() for k in ("model_ms", "call_ms", "ready_ms", "command_ms", "period")}
        self._last_pub = None
        self._last_state = None
        self._scores = None

        self.twist_pub = (self.create_publisher(Twist, t("cmd_vel").name, profile(t("cmd_vel")))
                          if self.publish_cmd_vel else None)
        for key, cls, fn in (("camera", Image, self.builder.on_camera), ("imu", Imu, self.builder.on_imu),
                             ("joint_states", JointState, self.builder.on_joint_states),
                             ("task", String, self.builder.on_task)):
            self.create_subscription(cls, t(key).name, self._input(key, fn), profile(t(key)))
        self.create_subscription(Bool, t("estop").name, self._on_estop, profile(t("estop")))
        self.create_service(Trigger, "~/reset_estop", self._on_reset)
        self.diag = D.Diagnostics(self, hardware_id=source)
        self.create_timer(1.0 / self.cfg.control_rate, self._tick)
        self.create_timer(diag_period, self._publish_diagnostics)
        # the model's objects live as long as the process: out of the collector's way (a collection over
        # torch's object graph pauses every thread, the control timer's too, and slows the exit by seconds)
        gc.freeze()
        self.worker.start()
        info = getattr(self.runtime, "info", lambda: {})()
        self._sampling = ((info["condition"], info["guidance"]) if info.get("condition") is not None else None)
        sampling = f", condition {info['condition']}, guidance {info['guidance']:g}" if self._sampling else ""
        self.get_logger().info(
            f"policy {source} ({info.get('device', 'remote')}, {n} candidate{'s' if n > 1 else ''}{sampling}) drives "
            f"{self.topics['wheel_commands']} at {self.cfg.control_rate:g} Hz, replanning every "
            f"{self.cfg.replan_every} of {spec.action_horizon} actions ({self.cfg.action_rate:g} Hz)"
            + (f"; FAULT INJECTION (test only): {fault.kind} {fault.value:g}" if fault.kind != "none" else ""))

    def _float(self, name: str, default: float, descriptor: ParameterDescriptor) -> float:
        """A number parameter; ``-p control_rate:=30`` (an integer) is accepted too."""
        descriptor.dynamic_typing = True
        v = self.declare_parameter(name, float(default), descriptor).value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"policy_node parameter {name}: {v!r} must be a number")
        return float(v)

    # ---- inputs ------------------------------------------------------------------------------------
    def _input(self, key: str, fn):
        topic = self.topics[key]

        def on_message(msg, info):
            # ages count from when the middleware received the message, not from when this callback
            # runs (up to ~0.26 s later on a loaded machine): see observation.arrival_time
            now, now_ns = time.monotonic(), time.time_ns()
            try:
                fn(msg, arrival_time(info.get("received_timestamp"), now, now_ns))
            except BadMessage as e:
                if self.problems.add("dropped", topic, e.reason):
                    self.get_logger().warning(f"{e}: dropped; further ones like it are counted, not logged "
                                              "(see /diagnostics)")
                return
            if key == "camera":
                self.worker.wake()
        return on_message

    def _on_estop(self, msg: Bool) -> None:
        if self.controller.estop(bool(msg.data)):
            self.send(0.0, 0.0)  # now, not at the next tick
            self.get_logger().warning(f"e-stop on {self.topics['estop']}: wheels stopped; latched until "
                                      f"{self.get_fully_qualified_name()}/reset_estop is called")

    def _on_reset(self, request, response):
        response.success, response.message = self.controller.reset_estop(time.monotonic())
        if response.success:
            self.get_logger().info(f"reset_estop: {response.message}")
        else:
            self.get_logger().warning(f"reset_estop: {response.message}")
        self.worker.wake()
        return response

    def _report(self, message: str) -> None:
        """Errors from the inference thread (the controller is already in fault: zero command)."""
        self.get_logger().error(message, throttle_duration_sec=5.0)

    # ---- control -------------------------------------------------------------------------------------
    def _tick(self) -> None:
        try:
            self._control()
        except Exception as e:  # noqa: BLE001 - never leave the wheels on an old command
            self.send(0.0, 0.0)
            if self.problems.add("errors", "control tick", type(e).__name__):
                self.get_logger().error(f"control tick failed: {error_summary(e)}; commanding zero")

    def _control(self) -> None:
        timeout = self.cfg.input_timeout
        # the inputs' ages are checked again right before a driving command goes out (tick_checked)
        cmd = self.controller.tick_checked(time.monotonic, lambda t: self.builder.stale(t, timeout))
        self.send(*cmd.wheels)
        now = time.monotonic()
        wall = time.time()
        if self._last_pub is not None:
            self.stats["period"].add(now - self._last_pub)
        self._last_pub = now
        if cmd.first_of_chunk is not None:
            r = cmd.first_of_chunk
            model_s = float(getattr(r.chunk, "model_s", 0.0))
            self.stats["model_ms"].add(model_s * 1e3)
            self.stats["call_ms"].add(r.wall_s * 1e3)
            self.stats["ready_ms"].add((r.ready_wall - r.observation.camera_stamp - model_s) * 1e3)
            self.stats["command_ms"].add((wall - r.observation.camera_stamp - model_s) * 1e3)
            self._scores = (getattr(r.chunk, "scores", None), getattr(r.chunk, "chosen", 0))
        if cmd.state != self._last_state:
            self._last_state = cmd.state
            text = cmd.state + (f": {cmd.reason}; commanding zero" if cmd.reason else "")
            # one call site per severity (rclpy refuses a call site whose severity changes)
            if cmd.state == DRIVING:
                self.get_logger().info(text)
            elif cmd.state == FAULT:
                self.get_logger().error(text)
            else:
                self.get_logger().warning(text)

    def send(self, left: float, right: float) -> None:
        self.pub.publish(Float64MultiArray(data=[float(left), float(right)]))
        if self.twist_pub is not None:
            v, w = wheels_to_twist(left, right, self.wheel_radius, self.wheel_separation)
            msg = Twist()
            msg.linear.x, msg.angular.z = v, w
            self.twist_pub.publish(msg)

    # ---- diagnostics -------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        state, reason = self.controller.state
        now = time.monotonic()
        s, counts = self.stats, self.controller.counts
        values = {"state": state, "reason": reason, "estop latched": self.controller.estop_latched,
                  "inference ms last": s["model_ms"].last, "inference ms p50": s["model_ms"].p50,
                  "inference call ms p50": s["call_ms"].p50,
                  "camera to chunk ready ms p50 (minus model)": s["ready_ms"].p50,
                  "camera to chunk ready ms p99 (minus model)": s["ready_ms"].p99,
                  "camera to command ms p50 (minus model)": s["command_ms"].p50,
                  "camera to command ms p99 (minus model)": s["command_ms"].p99,
                  "command period ms p50": None if s["period"].p50 is None else s["period"].p50 * 1e3,
                  "command period ms p99": None if s["period"].p99 is None else s["period"].p99 * 1e3,
                  "chunk index": self.controller.chunk_index(now), "chunks": counts.chunks, "late chunks": counts.late,
                  "faults": counts.faults, "clamped commands": counts.clamped,
                  "inference calls": self.worker.calls, "inference errors": self.worker.errors}
        for k, age in self.builder.ages(now).items():
            values[f"age {self.topics.get(k, k)} s"] = age
        scores, chosen = self._scores or (None, 0)
        values["candidates"] = getattr(self.runtime, "num_candidates", 1)
        if self._sampling is not None:                    # an advantage-conditioned policy (train rl --method acfm)
            values["condition"], values["guidance"] = self._sampling
        if scores is not None:
            values["candidate scores"] = list(scores)
            values["chosen candidate"] = chosen
        dropped = ProblemLog.summary(self.problems.total)
        if dropped:
            values["dropped inputs"] = dropped
        self.diag.publish(_LEVEL.get(state, D.WARN), f"{state}: {reason}" if reason else state, values)

    # ---- exit ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Zero now, stop the inference thread, zero again, let DDS deliver it; close the model."""
        if self.context.ok():
            self.send(0.0, 0.0)
        self.controller.estop(True)  # nothing computed from now on reaches the wheels
        busy = not self.worker.stop(timeout=2.0)
        if self.context.ok():
            self.send(0.0, 0.0)
            self.pub.wait_for_all_acked(Duration(seconds=0.5))
        if busy:
            # a model call is still running on the inference thread: tearing the interpreter down under it
            # aborts the process in torch's C++ ("terminate called without an active exception"), which a
            # launcher reports as a crash. The wheels have their zero command: leave now, cleanly.
            self.get_logger().warning("inference call still running at exit: leaving without waiting for it "
                                      "(the zero command is sent)")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        try:
            self.runtime.close()
        except Exception as e:  # noqa: BLE001 - closing must not hide the zero command above
            self.get_logger().warning(f"closing the policy runtime: {error_summary(e)}")


def main(args=None):
    # the context stays valid on SIGINT/SIGTERM, so the final zero command still goes out
    lifecycle.run(PolicyNode, "policy_node", args, on_exit=PolicyNode.stop,
                  startup_errors=(ValueError, OSError, InferenceError, ParameterException))


if __name__ == "__main__":
    main()

"""policy_node over real DDS: node overhead (camera in -> command out, model time excluded) and the
command-rate jitter while a slow model infers.

This process plays the robot: it publishes camera (320x240 rgb8, 10 Hz, stamped with the wall clock),
IMU (100 Hz), joint states (50 Hz) and the task, and records wheel_commands; policy_node runs as its
own process (``python -m gr00t_rlhf_ros.nodes.policy_node``) on a private ROS_DOMAIN_ID.

1. Overhead: ``replan_every 1``, ``fault delay:0`` — every camera frame is planned on at once. The
   node measures, per chunk, camera stamp -> chunk ready in the controller and camera stamp -> first
   command published from it, both minus the model time the runtime reports (Chunk.model_s); read
   from its /diagnostics (p50/p99 over the last 200 chunks).
2. Jitter: ``fault delay:0.3`` (every inference 300 ms slower), control rate 10/30/50 Hz: periods
   between the wheel commands received here, and the node's own publish periods.

    MUJOCO_GL=osmesa .venv/bin/python bench/bench_policy_node.py                  # CPU, tiny
    python bench/bench_policy_node.py --device cuda --preset gr00t-n1-2b          # a GPU machine with ROS wheels
    python bench/bench_policy_node.py --no-ros --device cuda --preset gr00t-n1-2b # a GPU machine without ROS

Prints a table and writes --out (JSON). ``--no-ros`` runs the node's plain-Python path in this process
instead (ObservationBuilder <- message-shaped objects, the inference thread, the Controller ticked by a
thread at the control rate): the same numbers without DDS and the rclpy executor; needs no ROS at all.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIAG_PREFIX = "camera to"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="policy preset (random weights) or a checkpoint directory")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured per case")
    p.add_argument("--rates", default="10,30,50", help="control rates for the jitter cases, Hz")
    p.add_argument("--overhead-rate", type=float, default=50.0, help="control rate of the overhead case, Hz")
    p.add_argument("--delay", type=float, default=0.3, help="extra model time in the jitter cases, s")
    p.add_argument("--camera-size", default="320x240")
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-jitter", action="store_true")
    p.add_argument("--no-ros", action="store_true", help="the node's plain-Python path in this process, no DDS")
    p.add_argument("--out", default="", help="JSON results file")
    return p.parse_args(argv)


class Robot:
    """Sensor streams from this process and the wheel commands / diagnostics the node sends back."""

    def __init__(self, domain_id: int, width: int, height: int):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image, Imu, JointState
        from std_msgs.msg import Float64MultiArray, String

        from gr00t_rlhf_ros.contract import load_contract
        from gr00t_rlhf_ros.diagnostics import QOS, values_of
        from gr00t_rlhf_ros.qos import profile

        c = load_contract()
        t = c.topic
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("bench_robot", context=self.context)
        n = self.node
        self.lock = threading.Lock()
        self.commands: list[float] = []
        self.diag: dict = {}
        img = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        img.data = np.random.default_rng(0).integers(0, 255, width * height * 3, dtype=np.uint8).tobytes()
        imu = Imu()
        imu.linear_acceleration.x = 0.1
        js = JointState(name=list(c.wheel_joints), velocity=[0.5, 0.4])
        pubs = {k: n.create_publisher(cls, t(k).name, profile(t(k))) for k, cls in
                (("camera", Image), ("imu", Imu), ("joint_states", JointState), ("task", String))}
        pubs["task"].publish(String(data="Find Blue cube"))

        def camera():
            img.header.stamp = n.get_clock().now().to_msg()
            pubs["camera"].publish(img)

        n.create_timer(0.1, camera)
        n.create_timer(0.01, lambda: pubs["imu"].publish(imu))
        n.create_timer(0.02, lambda: pubs["joint_states"].publish(js))

        def on_cmd(_msg):
            with self.lock:
                self.commands.append(time.monotonic())

        def on_diag(msg):
            for s in msg.status:
                if s.name.endswith("policy_node"):
                    self.diag = values_of(s)

        n.create_subscription(Float64MultiArray, t("wheel_commands").name, on_cmd, profile(t("wheel_commands")))
        n.create_subscription(DiagnosticArray, "/diagnostics", on_diag, QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def command_times(self, since: float) -> np.ndarray:
        with self.lock:
            return np.array([t for t in self.commands if t >= since])

    def close(self):
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.context.try_shutdown()


def start_node(args, domain_id: int, log: Path, *params: str, robot: Robot) -> subprocess.Popen:
    robot.diag = {}  # the previous node's last word must not count as this one's
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", "gr00t_rlhf_ros.nodes.policy_node", "--ros-args",
            "--params-file", str(REPO / "config" / "policy.yaml"),
            "-p", f"policy:={args.preset}", "-p", f"device:={args.device}", "-p", "seed:=0"]
    for p in params:
        argv += ["-p", p]
    return subprocess.Popen(argv, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=REPO)


def wait_driving(robot: Robot, proc: subprocess.Popen, log: Path, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"policy_node exited: {log.read_text()[-2000:]}")
        if robot.diag.get("state") == "driving" or int(robot.diag.get("chunks", "0")) > 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"policy_node did not drive within {timeout:.0f} s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def fnum(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def overhead(args, robot: Robot, domain_id: int, tmp: Path) -> dict:
    proc = start_node(args, domain_id, tmp / "overhead.log", "replan_every:=1", "fault:=delay:0",
                      f"control_rate:={args.overhead_rate}", robot=robot)
    try:
        wait_driving(robot, proc, tmp / "overhead.log")
        time.sleep(args.duration + 1.5)
        d = dict(robot.diag)
    finally:
        stop(proc)
    keys = {"ready_p50": "camera to chunk ready ms p50 (minus model)", "ready_p99": "camera to chunk ready ms p99 (minus model)",
            "command_p50": "camera to command ms p50 (minus model)", "command_p99": "camera to command ms p99 (minus model)",
            "model_p50": "inference ms p50", "call_p50": "inference call ms p50"}
    out = {k: fnum(d.get(v)) for k, v in keys.items()}
    out["chunks"] = int(d.get("chunks", 0))
    return out


def jitter(args, robot: Robot, domain_id: int, tmp: Path, rate: float) -> dict:
    log = tmp / f"jitter{rate:g}.log"
    proc = start_node(args, domain_id, log, f"fault:=delay:{args.delay}", f"control_rate:={rate}", "replan_every:=8",
                      robot=robot)
    try:
        wait_driving(robot, proc, log)
        t0 = time.monotonic()
        time.sleep(args.duration)
        times = robot.command_times(t0)
        d = dict(robot.diag)
    finally:
        stop(proc)
    periods = np.diff(times) * 1e3
    nominal = 1e3 / rate
    return {"rate_hz": rate, "received_hz": len(times) / args.duration, "period_ms_p50": float(np.percentile(periods, 50)),
            "period_ms_p99": float(np.percentile(periods, 99)), "period_ms_max": float(periods.max()),
            "jitter_ms_std": float(periods.std()), "nominal_ms": nominal,
            "node_period_ms_p50": fnum(d.get("command period ms p50")),
            "node_period_ms_p99": fnum(d.get("command period ms p99")),
            "inference_call_ms_p50": fnum(d.get("inference call ms p50"))}


# ---- --no-ros: the node's plain-Python path in this process ---------------------------------------------
class InProcess:
    """ObservationBuilder + InferenceWorker + Controller as policy_node wires them, without rclpy.

    Messages are message-shaped objects (the builder reads fields only); the camera, IMU and joint
    streams and the control loop run as threads at their rates.
    """

    def __init__(self, args, width: int, height: int, control_rate: float, replan_every: int, fault: str):
        from types import SimpleNamespace as NS

        from gr00t_rlhf_ros.contract import load_contract
        from gr00t_rlhf_ros.control import ControlConfig, Controller
        from gr00t_rlhf_ros.observation import ObservationBuilder, input_map
        from gr00t_rlhf_ros.policy_worker import Fault, InferenceWorker
        from gr00t_rlhf_train.inference import open_policy

        c = load_contract()
        self.runtime = open_policy(args.preset, device=args.device)
        spec = self.runtime.spec
        self.cfg = ControlConfig(control_rate=control_rate, action_rate=c.dataset_fps, replan_every=replan_every,
                                 max_wheel_speed=c.max_wheel_speed)
        self.builder = ObservationBuilder(input_map(c, spec.video_keys, spec.state_keys, spec.language_key))
        self.ctrl = Controller(self.cfg, spec.action_dim)
        self.worker = InferenceWorker(self.runtime, self.builder, self.ctrl, self.cfg.input_timeout, print,
                                      Fault.parse(fault), seed=0)
        data = np.random.default_rng(0).integers(0, 255, width * height * 3, dtype=np.uint8).tobytes()
        self.image = lambda stamp: NS(height=height, width=width, encoding="rgb8", step=width * 3, data=data,
                                      header=NS(stamp=NS(sec=int(stamp), nanosec=int((stamp % 1) * 1e9))))
        self.joints = NS(name=list(c.wheel_joints), velocity=[0.5, 0.4])
        self.imu = NS(linear_acceleration=NS(x=0.1, y=0.0, z=0.0))
        self.builder.on_task(NS(data="Find Blue cube"), time.monotonic())
        self.stop = threading.Event()
        self.ticks: list[float] = []
        self.ready_ms: list[float] = []
        self.command_ms: list[float] = []

    def _every(self, period: float, fn) -> None:
        t = time.monotonic()
        while not self.stop.is_set():
            fn()
            t += period
            self.stop.wait(max(0.0, t - time.monotonic()))

    def _camera(self) -> None:
        self.builder.on_camera(self.image(time.time()), time.monotonic())
        self.worker.wake()

    def _tick(self) -> None:
        now = time.monotonic()
        cmd = self.ctrl.tick(now, self.builder.stale(now, self.cfg.input_timeout))
        wall = time.time()
        self.ticks.append(now)
        r = cmd.first_of_chunk
        if r is not None:
            model = float(r.chunk.model_s)
            self.ready_ms.append((r.ready_wall - r.observation.camera_stamp - model) * 1e3)
            self.command_ms.append((wall - r.observation.camera_stamp - model) * 1e3)

    def run(self, seconds: float, warmup: float) -> None:
        threads = [threading.Thread(target=self._every, args=a, daemon=True) for a in
                   ((0.1, self._camera), (0.01, lambda: self.builder.on_imu(self.imu, time.monotonic())),
                    (0.02, lambda: self.builder.on_joint_states(self.joints, time.monotonic())),
                    (1.0 / self.cfg.control_rate, self._tick))]
        self.worker.start()
        for t in threads:
            t.start()
        time.sleep(warmup)
        self.ticks.clear(), self.ready_ms.clear(), self.command_ms.clear()
        time.sleep(seconds)
        self.stop.set()
        self.worker.stop(10.0)
        for t in threads:
            t.join(5)
        self.runtime.close()


def no_ros(args) -> dict:
    w, h = (int(v) for v in args.camera_size.lower().split("x"))
    results = {"mode": "in-process (no ROS)", "preset": args.preset, "device": args.device, "duration_s": args.duration}
    if not args.skip_overhead:
        ip = InProcess(args, w, h, args.overhead_rate, 1, "delay:0")
        ip.run(args.duration, warmup=10.0)
        o = results["overhead"] = {
            "ready_p50": float(np.percentile(ip.ready_ms, 50)), "ready_p99": float(np.percentile(ip.ready_ms, 99)),
            "command_p50": float(np.percentile(ip.command_ms, 50)),
            "command_p99": float(np.percentile(ip.command_ms, 99)), "chunks": len(ip.ready_ms)}
        print(f"no-ROS overhead (replan_every 1, {o['chunks']} chunks): frame in -> chunk ready p50 {o['ready_p50']:.2f} "
              f"/ p99 {o['ready_p99']:.2f} ms; -> first command (control {args.overhead_rate:g} Hz) p50 "
              f"{o['command_p50']:.2f} / p99 {o['command_p99']:.2f} ms", flush=True)
    if not args.skip_jitter:
        results["jitter"] = []
        for rate in (float(r) for r in args.rates.split(",")):
            ip = InProcess(args, w, h, rate, 8, f"delay:{args.delay}")
            ip.run(args.duration, warmup=5.0)
            periods = np.diff(ip.ticks) * 1e3
            j = {"rate_hz": rate, "period_ms_p50": float(np.percentile(periods, 50)),
                 "period_ms_p99": float(np.percentile(periods, 99)), "period_ms_max": float(periods.max()),
                 "jitter_ms_std": float(periods.std())}
            results["jitter"].append(j)
            print(f"no-ROS jitter at {rate:g} Hz, model +{args.delay * 1e3:.0f} ms: tick period p50 {j['period_ms_p50']:.2f} / "
                  f"p99 {j['period_ms_p99']:.2f} / max {j['period_ms_max']:.2f} ms, std {j['jitter_ms_std']:.2f} ms",
                  flush=True)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.no_ros:
        results = no_ros(args)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))
        return 0
    w, h = (int(v) for v in args.camera_size.lower().split("x"))
    domain_id = 100 + os.getpid() % 100
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_policy_node_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    robot = Robot(domain_id, w, h)
    results = {"preset": args.preset, "device": args.device, "camera": args.camera_size, "duration_s": args.duration}
    try:
        if not args.skip_overhead:
            o = results["overhead"] = overhead(args, robot, domain_id, tmp)
            print(f"overhead (replan_every 1, {o['chunks']} chunks, model p50 {o['model_p50']} ms): camera stamp -> "
                  f"chunk ready p50 {o['ready_p50']} / p99 {o['ready_p99']} ms; -> command published "
                  f"(control {args.overhead_rate:g} Hz) p50 {o['command_p50']} / p99 {o['command_p99']} ms", flush=True)
        if not args.skip_jitter:
            results["jitter"] = []
            for rate in (float(r) for r in args.rates.split(",")):
                j = jitter(args, robot, domain_id, tmp, rate)
                results["jitter"].append(j)
                print(f"jitter at {rate:g} Hz, model +{args.delay * 1e3:.0f} ms (call p50 {j['inference_call_ms_p50']} ms): "
                      f"received {j['received_hz']:.2f} Hz, period p50 {j['period_ms_p50']:.2f} / p99 "
                      f"{j['period_ms_p99']:.2f} / max {j['period_ms_max']:.2f} ms (nominal {j['nominal_ms']:.2f}), "
                      f"std {j['jitter_ms_std']:.2f} ms; node side p50 {j['node_period_ms_p50']} / p99 "
                      f"{j['node_period_ms_p99']} ms", flush=True)
    finally:
        robot.close()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

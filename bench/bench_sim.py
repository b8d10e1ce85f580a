"""Benchmark of the simulated robot: physics steps/s, camera fps achieved vs requested, CPU use.

Usage (numbers go into docs/sim.md):

    MUJOCO_GL=osmesa .venv/bin/python bench/bench_sim.py [--seconds 5] [--rates 10 30]

1. Physics: ``SimRobot.step`` (with its per-step watchdog, IMU filter and contact bookkeeping)
   and bare ``mujoco.mj_step``, while driving, in steps/s and as a real-time factor.
2. Rendering: ``SimRobot.render`` frames/s in-process at 224x224, 320x240, 640x480.
3. The node: ``sim_node`` as a child process over Fast DDS at each size and requested camera rate;
   a subscriber here counts the frames that arrive (achieved fps), measures their latency (header
   stamp, taken before rendering, to receipt) and /proc/<pid>/stat gives the node's CPU use
   (100 % = one core). ``--transports default LARGE_DATA`` repeats it per Fast DDS builtin-transport
   setting (both sides the same; the package itself sets none, see docs/ros.md).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

SIZES = [(224, 224), (320, 240), (640, 480)]


def bench_physics(seconds: float) -> dict:
    import mujoco

    from gr00t_rlhf_ros.sim.robot import SimRobot

    robot = SimRobot(seed=0)
    robot.set_command(4.0, 3.0, t=1e9)  # a command that never goes stale: keeps driving in circles
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        robot.step(500)
        n += 500
    sim_rate = n / (time.perf_counter() - t0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2:
        for _ in range(500):
            mujoco.mj_step(robot.model, robot.data)
        n += 500
    raw_rate = n / (time.perf_counter() - t0)
    dt = robot.model.opt.timestep
    return {"simrobot_steps_per_s": sim_rate, "mj_step_per_s": raw_rate,
            "realtime_factor": sim_rate * dt, "timestep": dt}


def bench_render(seconds: float) -> list[dict]:
    from gr00t_rlhf_ros.sim.robot import SimConfig, SimRobot

    out = []
    for w, h in SIZES:
        with SimRobot(seed=0, config=SimConfig(camera_width=w, camera_height=h)) as robot:
            robot.render()  # create the GL context outside the timing
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                robot.render()
                n += 1
            out.append({"size": f"{w}x{h}", "render_fps": n / (time.perf_counter() - t0)})
    return out


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def bench_node(width: int, height: int, rate: float, seconds: float, domain: int, transports: str = "default") -> dict:
    import rclpy
    from sensor_msgs.msg import Image

    from gr00t_rlhf_ros.contract import load_contract
    from gr00t_rlhf_ros.qos import profile

    # sim_node and this subscriber with the same transports (a LARGE_DATA participant and a default
    # one do not discover each other)
    if transports == "default":
        os.environ.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    else:
        os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = transports
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), MUJOCO_GL=os.environ.get("MUJOCO_GL", "osmesa"))
    argv = [sys.executable, "-m", "gr00t_rlhf_ros.nodes.sim_node", "--ros-args",
            "-p", f"camera_width:={width}", "-p", f"camera_height:={height}", "-p", f"camera_rate:={rate}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("bench_sim", context=ctx)
    topic = load_contract().topic("camera")
    stamps: list[float] = []
    latency: list[float] = []
    first = threading.Event()

    def cb(msg):
        stamps.append(time.monotonic())
        latency.append(time.time() - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))
        first.set()

    node.create_subscription(Image, topic.name, cb, profile(topic))
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        if not first.wait(30.0):
            raise RuntimeError(f"sim_node sent no image in 30 s ({width}x{height} at {rate} Hz)")
        time.sleep(1.0)  # let the node settle (first frames, discovery)
        n0, cpu0, t0 = len(stamps), _cpu_seconds(proc.pid), time.monotonic()
        del latency[:]
        time.sleep(seconds)
        n1, cpu1, t1 = len(stamps), _cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.send_signal(2)
        proc.wait(20)
        executor.shutdown()
        node.destroy_node()
        ctx.try_shutdown()
    lat = sorted(latency) or [float("nan")]
    return {"size": f"{width}x{height}", "requested_fps": rate, "achieved_fps": (n1 - n0) / (t1 - t0),
            "node_cpu_percent": 100.0 * (cpu1 - cpu0) / (t1 - t0), "transports": transports,
            "latency_ms_p50": 1000 * lat[len(lat) // 2], "latency_ms_p95": 1000 * lat[int(len(lat) * 0.95)]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement time per case, s")
    ap.add_argument("--rates", type=float, nargs="+", default=[10.0, 30.0], help="camera rates to request, Hz")
    ap.add_argument("--domain", type=int, default=91, help="ROS_DOMAIN_ID for the node runs")
    ap.add_argument("--skip-node", action="store_true", help="only the in-process physics and render numbers")
    ap.add_argument("--transports", nargs="+", default=["default"],
                    help="Fast DDS builtin transports to compare (default = none set, as the package runs)")
    args = ap.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    print(f"# bench_sim on {os.cpu_count()} cores, MUJOCO_GL={os.environ['MUJOCO_GL']}")
    p = bench_physics(args.seconds)
    print(f"physics: SimRobot.step {p['simrobot_steps_per_s']:,.0f} steps/s "
          f"({p['realtime_factor']:.0f}x real time at {p['timestep'] * 1000:.0f} ms), "
          f"bare mj_step {p['mj_step_per_s']:,.0f} steps/s")
    print("\n| size | in-process render fps |\n|---|---|")
    for r in bench_render(args.seconds / 2):
        print(f"| {r['size']} | {r['render_fps']:.0f} |")
    if args.skip_node:
        return
    print("\n| size | requested fps | transports | achieved fps (received over DDS) | latency p50 / p95 ms "
          "(render included) | sim_node CPU % (of one core) |")
    print("|---|---|---|---|---|---|")
    for w, h in SIZES:
        for rate in args.rates:
            for transports in args.transports:
                r = bench_node(w, h, rate, args.seconds, args.domain, transports)
                print(f"| {r['size']} | {r['requested_fps']:.0f} | {r['transports']} | {r['achieved_fps']:.1f} | "
                      f"{r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f} | {r['node_cpu_percent']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

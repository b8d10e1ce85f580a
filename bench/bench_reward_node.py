"""reward_node throughput: rewards per second against the camera rate (goal: keep up with 30 Hz).

    .venv/bin/python bench/bench_reward_node.py --device cpu --preset tiny                 # both modes, this CPU
    PYTHONPATH=src python bench/bench_reward_node.py --device cuda --preset gr00t-n1-2b --modes runtime   # GPU, no ROS

Two measurements, random weights (the preset with the head `train reward` makes by default: MLP, H = 4; ``--head``,
``--horizon``, ``--action-horizon`` change it; ``--checkpoint DIR`` loads a trained reward model instead):

* ``runtime`` — the node's scoring step alone, no ROS: a :class:`RewardStream` fed a 320x240 camera at
  ``--camera-rate``, then for each new frame: build its clip (H frames at 10 Hz + states), score it
  (frames resized to the training size, processor, backbone, reward head), draw the overlay.
  p50/p99 of each part over ``--iters`` frames after ``--warmup``; frames/s = 1 / mean step time.
  Runs on the GPU machine (no rclpy there). bf16 and CUDA graphs on CUDA (as the node), fp32 on a CPU.
* ``node`` — the real reward_node process over DDS: this process publishes camera (rgb8, ``--camera-rate``),
  joint_states and imu (50 Hz) and the task, for ``--seconds``; reports rewards received per second,
  frame stamp -> marker received latency p50/p99, and the node's own diagnostics (frames dropped
  because the model was busy, model latency). Needs rclpy (the ROS machine).

Results are printed as JSON (and written to --out).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from gr00t_rlhf_ros.reward_scoring import RewardScorer  # noqa: E402
from gr00t_rlhf_ros.reward_stream import RewardStream, StreamConfig  # noqa: E402

TASK = "Find Blue cube"
FRAME_RATE = 10.0  # Hz the clip's frames are spaced at (the seed datasets' fps)


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def build_reward_model(args):
    """(RewardModel, dtype name): random weights of ``--preset`` with the head ``train reward`` makes for
    ``--head`` / ``--horizon`` / ``--action-horizon`` (its other defaults)."""
    import torch

    from gr00t_rlhf_train.inference.runtime import resolve_device
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.reward_model import RewardModel
    from gr00t_rlhf_train.stages.reward import RewardConfig

    device, dtype = resolve_device(args.device)
    head = RewardConfig(data="-", out_dir="-", horizon=args.horizon, head=args.head,
                        action_horizon=args.action_horizon).head_config()
    with torch.device(device):
        policy = Gr00tPolicy.from_config(args.preset, tokenizer="tiny")
        rm = RewardModel.from_policy(policy, head, tuning="frozen")
    del policy
    rm.to(dtype=dtype).eval()
    return rm, str(dtype).replace("torch.", "")


def open_runtime(args):
    from gr00t_rlhf_train.inference import LocalReward, open_reward

    if args.checkpoint:
        return open_reward(args.checkpoint, device=args.device, cuda_graphs=args.cuda_graphs), "checkpoint"
    rm, dtype = build_reward_model(args)
    size = (args.image_size, args.image_size) if args.image_size else None
    return LocalReward(rm, frame_rate=FRAME_RATE, cuda_graphs=args.cuda_graphs, image_size=size,
                       source=args.preset), dtype


def camera_frames(h: int, w: int, n: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return [np.roll(base, 8 * k, axis=1) for k in range(n)]


def bench_runtime(args) -> dict:
    reward, dtype = open_runtime(args)
    scorer = RewardScorer(reward, history_seconds=10.0)
    stream = RewardStream(StreamConfig(horizon=reward.horizon, frame_rate=reward.frame_rate,
                                       action_horizon=reward.action_horizon), TASK)
    frames = camera_frames(args.height, args.width)
    dt = 1.0 / args.camera_rate
    t = 0.0

    def next_frame(k: int) -> None:
        nonlocal t
        t += dt
        for j in range(int(round(50 * dt)) or 1):                       # joint_states / imu at ~50 Hz
            stream.add_wheels(t - j / 50, 1.0, -1.0)
            stream.add_acceleration(t - j / 50, 9.81)
        stream.add_command(t, 1.0, -1.0)
        stream.add_frame(t, frames[k % len(frames)])

    for k in range(int(args.camera_rate * reward.horizon / reward.frame_rate) + 1):   # fill the clip history
        next_frame(k)
    stream.take(0.0)
    try:
        import cv2  # noqa: F401  (GPU machines may have no OpenCV: the overlay is then not measured)
        draw = True
    except ImportError:
        draw = False
    parts = {"clip": [], "score": [], "overlay": [], "step": []}
    for i in range(args.warmup + args.iters):
        next_frame(i)
        t0 = time.perf_counter()
        clip = stream.take(0.0)
        t1 = time.perf_counter()
        out = scorer.score(clip)
        t2 = time.perf_counter()
        if out.status != "ok":
            raise SystemExit(f"scoring failed: {out.detail}")
        if draw:
            scorer.overlay(out)
        t3 = time.perf_counter()
        if i >= args.warmup:
            for key, v in (("clip", t1 - t0), ("score", t2 - t1), ("overlay", t3 - t2), ("step", t3 - t0)):
                parts[key].append(v * 1000)
    res = {k: percentiles(v) for k, v in parts.items()}
    if not draw:
        res["overlay"] = "not measured: no cv2 on this machine (the step excludes it)"
    res["frames_per_s"] = 1000.0 / res["step"]["mean_ms"]
    res["keeps_up_with_camera"] = res["frames_per_s"] >= args.camera_rate
    res.update(dtype=dtype, horizon=reward.horizon, image_size=scorer.image_size, iters=args.iters,
               device=str(getattr(reward, "device", args.device)), cuda_graphs=args.cuda_graphs)
    return res


def save_checkpoint(args, root: Path) -> Path:
    """The preset's random reward model as a checkpoint the node can load (training fps and image size recorded)."""
    if args.checkpoint:
        return Path(args.checkpoint)
    rm, _ = build_reward_model(args)
    path = root / "reward_model"
    extra = {"reward_training": {"fps": FRAME_RATE}}
    if args.image_size:
        extra["reward_training"]["image_size"] = [args.image_size, args.image_size]
    rm.save_pretrained(path, extra=extra)
    return path


def bench_node(args) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, Imu, JointState
    from std_msgs.msg import Float32, String
    from visualization_msgs.msg import Marker

    from gr00t_rlhf_ros import diagnostics as diag
    from gr00t_rlhf_ros.contract import load_contract
    from gr00t_rlhf_ros.msgs import rgb_to_image_msg, sec_to_stamp, stamp_to_sec
    from gr00t_rlhf_ros.qos import profile
    from ros_harness import RosTestNode, next_domain_id, node_argv, ros_environment, spawn, wait_until

    c = load_contract()
    domain = next_domain_id()
    tmp = Path(tempfile.mkdtemp(prefix="bench_reward_node_"))
    ckpt = save_checkpoint(args, tmp)
    node = spawn(node_argv("reward_node", "--params-file", str(REPO / "config/reward.yaml"),
                           "-p", f"reward_model:={ckpt}", "-p", f"device:={args.device}",
                           "-p", f"torch_threads:={args.torch_threads}"),
                 ros_environment(domain), tmp, "reward_node")
    probe = RosTestNode(domain, "bench_robot")
    n = probe.node
    pubs = {"camera": n.create_publisher(Image, c.topic("camera").name, profile(c.topic("camera"))),
            "joint_states": n.create_publisher(JointState, c.topic("joint_states").name, profile(c.topic("joint_states"))),
            "imu": n.create_publisher(Imu, c.topic("imu").name, profile(c.topic("imu")))}
    task = n.create_publisher(String, c.topic("task").name, profile(c.topic("task")))
    task.publish(String(data=TASK))
    images = []
    for f in camera_frames(args.height, args.width):
        m = Image()
        rgb_to_image_msg(np.ascontiguousarray(f), m)
        m.header.frame_id = "camera_link"
        images.append(m)
    got = {"rewards": [], "marker_delay_ms": [], "diag": None, "frames": 0}
    lock = threading.Lock()

    def now() -> float:
        return n.get_clock().now().nanoseconds * 1e-9

    def on_marker(m):
        with lock:
            got["marker_delay_ms"].append((now() - stamp_to_sec(m.header.stamp)) * 1000)

    def on_diag(m):
        for s in m.status:
            if s.name == "/reward_node":
                got["diag"] = (s.message, diag.values_of(s))

    n.create_subscription(Float32, c.topic("reward").name, lambda m: got["rewards"].append(time.monotonic()),
                          profile(c.topic("reward")))
    n.create_subscription(Marker, c.topic("reward_marker").name, on_marker, profile(c.topic("reward_marker")))
    n.create_subscription(DiagnosticArray, diag.TOPIC, on_diag, diag.QOS)
    stop = threading.Event()

    def robot():
        t_state = t_cam = time.monotonic()
        while not stop.is_set():
            mono, t = time.monotonic(), now()
            if mono >= t_state:
                t_state += 0.02                                             # joint_states / imu at 50 Hz
                js = JointState(name=list(c.wheel_joints), velocity=[1.0, -1.0])
                sec_to_stamp(t, js.header.stamp)
                pubs["joint_states"].publish(js)
                imu = Imu()
                sec_to_stamp(t, imu.header.stamp)
                imu.linear_acceleration.z = 9.81
                pubs["imu"].publish(imu)
            if mono >= t_cam:
                t_cam += 1.0 / args.camera_rate
                m = images[got["frames"] % len(images)]
                sec_to_stamp(t, m.header.stamp)
                pubs["camera"].publish(m)
                got["frames"] += 1
            stop.wait(max(0.0, min(t_state, t_cam) - time.monotonic()))

    thread = threading.Thread(target=robot, daemon=True)
    try:
        wait_until(lambda: pubs["camera"].get_subscription_count() > 0 or not node.alive(), 120, "reward_node to start")
        if not node.alive():
            raise SystemExit(f"reward_node exited:\n{node.log()[-2000:]}")
        thread.start()
        wait_until(lambda: len(got["rewards"]) > 0, 120, "the first reward")
        time.sleep(2.0)                                                     # warm-up
        with lock:
            r0, f0 = len(got["rewards"]), got["frames"]
            got["marker_delay_ms"].clear()
        time.sleep(args.seconds)
        with lock:
            rewards, frames, delays = len(got["rewards"]) - r0, got["frames"] - f0, list(got["marker_delay_ms"])
        time.sleep(1.5)                                                     # one more diagnostics message
    finally:
        stop.set()
        thread.join(5)
        code = node.stop()
        probe.close()
    message, values = got["diag"] or ("no diagnostics", {})
    return {"camera_rate_hz": frames / args.seconds, "rewards_per_s": rewards / args.seconds,
            "keeps_up_with_camera": rewards >= 0.95 * frames, "frame_to_marker": percentiles(delays) if delays else None,
            "node_diagnostics": {"state": message, **{k: values.get(k) for k in (
                "frames received", "frames dropped (behind)", "model latency p50 ms", "model latency p99 ms",
                "frame to reward p50 ms", "frame to reward p99 ms")}},
            "node_exit_code": code, "seconds": args.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--preset", default="tiny", help="model preset with random weights: tiny or gr00t-n1-2b")
    ap.add_argument("--checkpoint", default="", help="a reward model checkpoint instead of the preset")
    ap.add_argument("--horizon", type=int, default=4, help="reward horizon H (frames per clip) of the preset model "
                    "(train reward's default: 4)")
    ap.add_argument("--head", default="mlp", choices=("mlp", "dit"), help="reward head (train reward's default: mlp)")
    ap.add_argument("--action-horizon", type=int, default=0, help="K wheel commands the model reads (0: none)")
    ap.add_argument("--image-size", type=int, default=96, help="training image size the frames are resized to (0: none)")
    ap.add_argument("--camera", default="320x240", help="camera WxH")
    ap.add_argument("--camera-rate", type=float, default=30.0, help="camera frames per second")
    ap.add_argument("--modes", default="runtime,node", help="runtime (no ROS), node (over DDS), or both")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0, help="node mode: measured duration")
    ap.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch CPU threads (reward_node's torch_threads default; 0: torch's default)")
    ap.add_argument("--out", default="", help="write the JSON result here")
    args = ap.parse_args()
    args.width, args.height = (int(v) for v in args.camera.lower().split("x"))
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - {"runtime", "node"}
    if unknown:
        ap.error(f"--modes: unknown {sorted(unknown)} (runtime, node)")
    result = {"host": platform.node(), "preset": args.preset, "checkpoint": args.checkpoint or None,
              "head": None if args.checkpoint else args.head, "horizon": args.horizon,
              "action_horizon": args.action_horizon,
              "camera": args.camera, "camera_rate_hz": args.camera_rate}
    try:
        import torch

        if args.torch_threads > 0:
            torch.set_num_threads(args.torch_threads)
        if torch.cuda.is_available() and args.device != "cpu":
            result["gpu"] = torch.cuda.get_device_name(0)
        result["torch"] = torch.__version__
        result["cpu_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    for mode in modes:
        result[mode] = bench_runtime(args) if mode == "runtime" else bench_node(args)
        print(f"== {mode}", json.dumps(result, indent=1), sep="\n", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

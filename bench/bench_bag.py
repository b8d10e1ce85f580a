"""Bag conversion speed: a 10 Hz 640x480 rosbag2 (plus 100 Hz IMU, 50 Hz joints, 20 Hz commands)
-> LeRobot dataset, as a multiple of real time (goal >= 20x).

    .venv/bin/python bench/bench_bag.py --seconds 60 --storage mcap
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ros"))
import bag_factory as bf  # noqa: E402  (synthetic messages, shared with the tests)

from gr00t_rlhf_ros.bag import BagWriter  # noqa: E402
from gr00t_rlhf_ros.bag_to_lerobot import convert  # noqa: E402
from gr00t_rlhf_ros.contract import load_contract  # noqa: E402


def write_bench_bag(path: Path, seconds: float, size=(480, 640), storage="mcap") -> int:
    c = load_contract()
    h, w = size
    rng = np.random.default_rng(0)
    base = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)  # blocky scene
    n = 0
    with BagWriter(path, storage) as bag:
        bag.write(c.topic("task").name, c.topic("task").type, 0.0, bf.string("Find Blue cube"))
        msgs = []
        for k in range(int(seconds * 10)):
            t = k / 10 + 0.01
            img = np.roll(base, 4 * k, axis=1)                     # the scene pans: every frame differs
            m = bf.image(t, k)
            m.height, m.width, m.step, m.data = h, w, w * 3, img.reshape(-1)
            msgs.append((t, "camera", m))
        msgs += [(k / 100, "imu", bf.imu(k / 100, math.sin(k / 100))) for k in range(int(seconds * 100))]
        msgs += [(k / 50, "joint_states", bf.joints(k / 50, 1.0, 1.2)) for k in range(int(seconds * 50))]
        msgs += [(k / 20, "wheel_commands", bf.command(1.0, 1.2)) for k in range(int(seconds * 20))]
        for t, key, m in sorted(msgs, key=lambda x: x[0]):
            bag.write(c.topic(key).name, c.topic(key).type, t + 0.002, m)
            n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        bag = Path(d) / "bag"
        t0 = time.perf_counter()
        n = write_bench_bag(bag, args.seconds, storage=args.storage)
        t1 = time.perf_counter()
        report = convert(bag, Path(d) / "ds", split="none", progress=False)
        t2 = time.perf_counter()
        size = sum(f.stat().st_size for f in bag.rglob("*") if f.is_file())
        print(f"bag: {args.seconds:g} s, {n} messages, {size / 1e6:.0f} MB {args.storage} (written in {t1 - t0:.1f} s)")
        print(f"converted: {report.summary()}")
        print(f"conversion: {t2 - t1:.1f} s = {args.seconds / (t2 - t1):.1f}x real time "
              f"({report.frames / (t2 - t1):.0f} frames/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of in-process rollouts (gr00t_rlhf_ros.sim.rollout): episodes/s and simulated seconds per wall second.

For each batch size B the same episodes (layout seeds 0.., tasks cycling) run B at a time in lockstep
(one model call per replan for the B environments). A random-weights policy never reaches the goal,
so every episode lasts ``--seconds``; the expert stops at its goal. No ROS is needed.

    MUJOCO_GL=osmesa .venv/bin/python bench/bench_rollout.py                        # tiny on the CPU, B = 1, 4, 16
    MUJOCO_GL=egl python bench/bench_rollout.py --device cuda --preset gr00t-n1-2b  # a GPU machine
    .venv/bin/python bench/bench_rollout.py --driver expert --episodes 32
    .venv/bin/python bench/bench_rollout.py --policy runs/sft/best --record /tmp/bench_ds   # with recording + labels
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path

if importlib.util.find_spec("triton") is not None:  # before mujoco (see demo_models._import_triton_before_mujoco)
    import triton  # noqa: F401

os.environ.setdefault("MUJOCO_GL", "osmesa" if not os.environ.get("DISPLAY") else "glfw")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gr00t_rlhf_ros.sim.labeler import LabelerConfig  # noqa: E402
from gr00t_rlhf_ros.sim.rollout import (ExpertDriver, PolicyDriver, RobotPool, RolloutConfig, rollout,  # noqa: E402
                                        summarize)

TASKS = ("Find Blue cube", "Find Green sphere", "Find Red cylinder")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", choices=("policy", "expert", "both"), default="both")
    ap.add_argument("--preset", default="tiny", help="policy preset (random weights): tiny, gr00t-n1-2b")
    ap.add_argument("--policy", default=None, help="a policy checkpoint directory instead of --preset")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--batch-sizes", default="1,4,16")
    ap.add_argument("--episodes", type=int, default=16, help="episodes per batch size")
    ap.add_argument("--seconds", type=float, default=5.0, help="episode timeout, simulated seconds")
    ap.add_argument("--camera", default="320x240", help="WIDTHxHEIGHT (sim_node's default 320x240)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core machine)")
    ap.add_argument("--latency", type=float, default=0.0, help="simulated inference latency, s")
    ap.add_argument("--record", default=None, help="also record every episode with the simulated human into this "
                                                   "new dataset directory (removed first)")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.camera.lower().split("x"))
    sizes = [int(b) for b in a.batch_sizes.split(",")]
    cfg = RolloutConfig(max_seconds=a.seconds, camera_size=(h, w), inference_latency=a.latency)
    episodes = [(s, TASKS[s % len(TASKS)]) for s in range(a.episodes)]
    drivers = []
    if a.driver in ("policy", "both"):
        import torch

        torch.set_num_threads(a.threads)
        t0 = time.perf_counter()
        policy = PolicyDriver(a.policy or a.preset, device=a.device, cuda_graphs=a.device.startswith("cuda"))
        print(f"policy {a.policy or a.preset} on {policy.device} loaded in {time.perf_counter() - t0:.1f} s", flush=True)
        rollout(policy, episodes[:1], RolloutConfig(max_seconds=0.5, camera_size=(h, w)))  # warm-up
        drivers.append(("policy", policy))
    if a.driver in ("expert", "both"):
        drivers.append(("expert", ExpertDriver()))
    rows = []
    pool = RobotPool()   # renderers are made once (~0.25 s each on a CPU), not per measurement
    for r in pool.get(max(sizes), cfg.sim_config(), 0):
        r.render()
    print(f"{'driver':8s} {'B':>3s} {'episodes':>8s} {'wall s':>7s} {'episodes/s':>10s} {'sim s/wall s':>12s} "
          f"{'calls':>6s} {'success':>7s}", flush=True)
    for name, driver in drivers:
        for b in sizes:
            record, labeler = None, None
            if a.record:
                record = Path(a.record) / f"{name}_B{b}"
                shutil.rmtree(record, ignore_errors=True)
                labeler = LabelerConfig(flip_prob=0.1, reaction_delay=0.3)
            rollout(driver, episodes[:b], RolloutConfig(max_seconds=0.3, camera_size=(h, w)), batch_size=b,
                    pool=pool)   # warm-up (on CUDA: the graphs of this batch size)
            calls = getattr(driver, "calls", 0)
            t0 = time.perf_counter()
            res = rollout(driver, episodes, cfg, batch_size=b, record=record, labeler=labeler, pool=pool)
            wall = time.perf_counter() - t0
            sim = sum(r.duration for r in res)
            s = summarize(res)
            row = {"driver": name, "batch_size": b, "episodes": len(res), "wall_s": round(wall, 2),
                   "episodes_per_s": round(len(res) / wall, 3), "sim_s_per_wall_s": round(sim / wall, 2),
                   "model_calls": getattr(driver, "calls", 0) - calls, "success_rate": s["success_rate"],
                   "device": getattr(driver, "device", "cpu"), "camera": a.camera, "recorded": bool(record)}
            rows.append(row)
            print(f"{name:8s} {b:3d} {len(res):8d} {wall:7.1f} {row['episodes_per_s']:10.3f} {row['sim_s_per_wall_s']:12.2f} "
                  f"{row['model_calls']:6d} {s['success_rate']:7.2f}", flush=True)
    for _, driver in drivers:
        driver.close()
    pool.close()
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Remote inference cost: one policy chunk in this process vs through `gr00t-rlhf serve` over loopback.

    PYTHONPATH=src python bench/bench_remote.py --device cpu --preset tiny
    PYTHONPATH=src python bench/bench_remote.py --device cuda --preset gr00t-n1-2b --out remote.json

No ROS, no av. After --warmup calls, --iters calls of ``act`` on a 320x240 RGB frame (the contract's
camera size), one after the other:

* local: ``LocalPolicy.act`` wall time (p50 / p99) and its ``model_s``;
* remote: ``RemotePolicy.act`` wall time against a server process on 127.0.0.1 (started here with the
  CLI, same preset / checkpoint, same device), the server-measured ``model_s``, and the added latency
  per chunk = wall - model_s of the same call (serialisation, ZeroMQ over loopback, checks on both
  sides, the server loop); goal <= 2 ms;
  split into the server's part (arrival to reply, minus the model) and the rest (client checks,
  encode / decode, the network);
* transport alone: a ``ping`` carrying the same frame + state (request encode, send, server decode,
  reply), and an empty ``ping``.

The local runtime is closed before the server starts, so both never share the device.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from gr00t_rlhf_train.inference import wire  # noqa: E402
from gr00t_rlhf_train.inference.client import RemotePolicy  # noqa: E402
from gr00t_rlhf_train.inference.runtime import LANGUAGE_KEY, LocalPolicy  # noqa: E402


def stats_ms(values) -> dict:
    a = np.asarray(values) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "n": int(a.size)}


def observation(rng, size) -> dict:
    return {"video.ego_view": rng.integers(0, 255, (*size, 3), dtype=np.uint8),
            "state.left_wheel": np.array([0.4], np.float32), "state.right_wheel": np.array([0.5], np.float32),
            "state.acceleration": np.array([0.1], np.float32), LANGUAGE_KEY: "Find Blue cube"}


def run_calls(act, obs_list, warmup: int, iters: int, server_s=None) -> tuple[list, list, list]:
    for i in range(warmup):
        act(obs_list[i % len(obs_list)])
    walls, model, server = [], [], []
    for i in range(iters):
        t0 = time.perf_counter()
        chunk = act(obs_list[i % len(obs_list)])
        walls.append(time.perf_counter() - t0)
        model.append(chunk.model_s)
        server.append(server_s() if server_s else 0.0)
    return walls, model, server


def start_server(args, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "gr00t_rlhf_train.cli", "serve", "policy", args.source or args.preset,
           "--port", "0", "--device", args.device] + (["--no-cuda-graphs"] if args.no_cuda_graphs else [])
    out = open(log, "w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + args.server_start_s
    while time.monotonic() < deadline:
        m = re.search(r" on (tcp://\S+) ", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (the server uses the same)")
    ap.add_argument("--preset", default="tiny", help="random-weight preset (tiny, gr00t-n1-2b)")
    ap.add_argument("--source", default=None, help="a policy checkpoint instead of --preset")
    ap.add_argument("--image", default="240x320", help="camera frame HxW (default 240x320)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--no-cuda-graphs", action="store_true")
    ap.add_argument("--server-start-s", type=float, default=600.0, help="wait this long for the server to load")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.image.lower().split("x"))
    rng = np.random.default_rng(0)
    obs_list = [observation(rng, size) for _ in range(4)]
    import torch
    result: dict = {"source": args.source or args.preset, "device": args.device, "image": list(size),
                    "host": platform.node(), "torch": torch.__version__, "cpus": os.cpu_count()}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name(torch.device(args.device))

    t0 = time.perf_counter()
    local = LocalPolicy.open(args.source or args.preset, device=args.device, cuda_graphs=not args.no_cuda_graphs)
    local.warmup()
    result["local_open_s"] = round(time.perf_counter() - t0, 1)
    walls, model, _ = run_calls(lambda o: local.act(o, seed=0), obs_list, args.warmup, args.iters)
    result["local"] = {"wall": stats_ms(walls), "model": stats_ms(model)}
    print("local", json.dumps(result["local"]), flush=True)
    local.close()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()

    with tempfile.TemporaryDirectory() as tmp:
        proc, address = start_server(args, Path(tmp) / "serve.log")
        try:
            remote = RemotePolicy(address, timeout_s=30.0, connect_timeout_s=60.0)
            walls, model, server = run_calls(lambda o: remote.act(o, seed=0), obs_list, args.warmup, args.iters,
                                             lambda: remote.last_server_s)
            walls, model, server = np.asarray(walls), np.asarray(model), np.asarray(server)
            result["remote"] = {"wall": stats_ms(walls), "model": stats_ms(model), "added": stats_ms(walls - model),
                                "added_in_server": stats_ms(server - model), "added_outside_server": stats_ms(walls - server)}
            print("remote", json.dumps(result["remote"]), flush=True)
            fields, arrays = wire.split_fields(obs_list[0])
            for name, (f, a) in {"ping_with_frame": (fields, arrays), "ping_empty": ({}, {})}.items():
                times = []
                for i in range(args.warmup + args.iters):
                    t = time.perf_counter()
                    remote.conn.request("ping", f, a)
                    if i >= args.warmup:
                        times.append(time.perf_counter() - t)
                result[name] = stats_ms(times)
            remote.close()
        finally:
            proc.terminate()
            proc.wait(30)
    result["added_latency_p50_ms"] = result["remote"]["added"]["p50_ms"]
    result["added_latency_goal_met"] = bool(result["remote"]["added"]["p50_ms"] <= 2.0)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Best-of-N cost: chunk latency for N = 1, 4, 8, 16 candidates (policy + action-conditioned reward model).

    PYTHONPATH=src python bench/bench_best_of_n.py --device cpu --preset tiny
    PYTHONPATH=src python bench/bench_best_of_n.py --device cuda --preset gr00t-n1-2b --out best_of_n.json

No ROS, no av. Random weights unless --policy / --reward-model name checkpoints. Without
--reward-model the bench builds a random-weight reward model on the policy's backbone
(``RewardModel.from_policy``, DiT head, --horizon frames, --action-horizon K actions; frozen backbone
as ``train reward`` defaults). Each N: ``LocalPolicy.act`` on a 320x240 frame after --warmup calls
(on CUDA the warm-up captures the CUDA graphs), --iters calls: wall p50 / p99 and, for N > 1, the
policy part (backbone once + N flow samples in one batch) and the reward part (H-frame clip once +
N action sets in one batch). N = 1 is the plain policy (no reward model). Device precision as the
runtime: bf16 on CUDA, fp32 on a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from gr00t_rlhf_train.inference.runtime import (LANGUAGE_KEY, LocalPolicy, LocalReward,  # noqa: E402
                                                load_policy_model, resolve_device)


def stats_ms(values) -> dict:
    a = np.asarray(values) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "n": int(a.size)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--preset", default="tiny", help="random-weight preset (tiny, gr00t-n1-2b)")
    ap.add_argument("--policy", default=None, help="a policy checkpoint instead of --preset")
    ap.add_argument("--reward-model", default=None, help="an action-conditioned reward checkpoint (default: random)")
    ap.add_argument("--horizon", type=int, default=4, help="random reward model: frames per clip H (default 4)")
    ap.add_argument("--action-horizon", type=int, default=8, help="random reward model: actions K (default 8)")
    ap.add_argument("--n", default="1,4,8,16", help="candidate counts (default 1,4,8,16)")
    ap.add_argument("--image", default="240x320", help="camera frame HxW (default 240x320)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--no-cuda-graphs", action="store_true")
    ap.add_argument("--out", default=None, help="write the results as JSON here (after every N)")
    args = ap.parse_args(argv)
    counts = [int(v) for v in args.n.split(",") if v]
    size = tuple(int(v) for v in args.image.lower().split("x"))
    graphs = not args.no_cuda_graphs

    import torch

    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    device, dtype = resolve_device(args.device)
    result: dict = {"policy": args.policy or args.preset, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
                    "cuda_graphs": graphs and device.type == "cuda", "image": list(size), "host": platform.node(),
                    "torch": torch.__version__, "cpus": os.cpu_count(), "results": {}}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    t0 = time.perf_counter()
    policy, _ = load_policy_model(args.policy or args.preset, device)
    if args.reward_model:
        reward = LocalReward.open(args.reward_model, str(device), graphs)
    else:
        head = RewardHeadConfig(kind="dit", horizon=args.horizon, action_horizon=args.action_horizon)
        with torch.device(device):
            rm = RewardModel.from_policy(policy, head)
        reward = LocalReward(rm.to(device, dtype).eval(), cuda_graphs=graphs, source="random")
    result["reward_model"] = {"source": reward.source, "horizon": reward.horizon,
                              "action_horizon": reward.action_horizon, "frame_rate": reward.frame_rate}
    result["load_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({k: v for k, v in result.items() if k != "results"}), flush=True)

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(4)]

    def observation(i: int) -> dict:
        return {"video.ego_view": frames[i % 4], "state.left_wheel": np.array([0.4], np.float32),
                "state.right_wheel": np.array([0.5], np.float32), "state.acceleration": np.array([0.1], np.float32),
                LANGUAGE_KEY: "Find Blue cube", "stamp": 0.1 * i}

    for n in counts:
        runtime = LocalPolicy(policy, reward if n > 1 else None, n, cuda_graphs=graphs, source=result["policy"])
        walls, sample, score = [], [], []
        for i in range(args.warmup + args.iters):
            t = time.perf_counter()
            chunk = runtime.act(observation(i), seed=i)
            wall = time.perf_counter() - t
            if i >= args.warmup:
                walls.append(wall)
                if runtime.best_of_n is not None:
                    sample.append(runtime.best_of_n.last_timing["sample_s"])
                    score.append(runtime.best_of_n.last_timing["score_s"])
        entry = {"chunk": stats_ms(walls)}
        if sample:
            entry |= {"policy_part": stats_ms(sample), "reward_part": stats_ms(score),
                      "scores_std": float(np.std(chunk.scores))}
        if device.type == "cuda":
            entry["peak_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        result["results"][str(n)] = entry
        print(f"N={n}", json.dumps(entry), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))
    if device.type == "cuda" and graphs and any(n > 1 for n in counts):
        # the CUDA-graph path against eager on the same observation history and seed (largest N)
        n = max(counts)
        fast = LocalPolicy(policy, reward, n, cuda_graphs=True)
        slow = LocalPolicy(policy, reward, n, cuda_graphs=False)
        h_fast, h_slow = fast.best_of_n.new_history(), slow.best_of_n.new_history()
        for i in range(3):
            a = fast.act_with_history(observation(i), 11, h_fast)
            reward.model.use_cuda_graphs(False)
            b = slow.act_with_history(observation(i), 11, h_slow)
            reward.model.use_cuda_graphs(True)
        result["graphs_vs_eager"] = {"n": n, "max_abs_diff_actions": float(np.abs(a.actions - b.actions).max()),
                                     "max_abs_diff_scores": float(np.abs(a.scores - b.scores).max()),
                                     "same_choice": a.chosen == b.chosen}
        print("graphs vs eager", json.dumps(result["graphs_vs_eager"]), flush=True)
    base = result["results"].get("1", {}).get("chunk", {}).get("p50_ms")
    if base:
        for n, entry in result["results"].items():
            entry["x_of_n1_p50"] = round(entry["chunk"]["p50_ms"] / base, 2)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

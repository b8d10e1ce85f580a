"""Latency and memory of the GR00T N1 policy and reward model (random weights).

    PYTHONPATH=src python bench/bench_model.py --device cuda --preset gr00t-n1-2b --dtype bf16 --out result.json
    PYTHONPATH=src python bench/bench_model.py --device cpu --preset tiny --dtype fp32

Measures, after warm-up: one 16-action chunk (processor + backbone once + N denoising steps) end to
end and model-only, p50/p99 over --iters calls; the DiT reward model (horizon 1) per frame and per
batch of --reward-batch frames; a training step of the policy at batch 8; peak GPU memory.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, iters: int) -> dict:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1000)
    a = np.asarray(times)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "iters": iters}


def observation(rng: np.random.Generator, batch: int | None = None) -> dict:
    lead = () if batch is None else (batch,)
    return {
        "video.ego_view": rng.integers(0, 255, (*lead, 240, 320, 3), dtype=np.uint8),
        "observation.state": rng.normal(size=(*lead, 3)),
        "task": "Find Blue cube" if batch is None else ["Find Blue cube"] * batch,
    }


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--dtype", default="bf16", choices=DTYPES)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--steps", type=int, default=4, help="denoising steps per chunk")
    ap.add_argument("--reward-batch", type=int, default=64)
    ap.add_argument("--reward-iters", type=int, default=30)
    ap.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    rng = np.random.default_rng(0)
    result: dict = {"preset": args.preset, "device": args.device, "dtype": args.dtype, "steps": args.steps,
                    "torch": torch.__version__, "host": platform.node()}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
        torch.backends.cuda.matmul.allow_tf32 = True

    with torch.device(device):
        policy = Gr00tPolicy.from_config(args.preset, tokenizer="tiny")
    policy.to(dtype=dtype).model.eval()
    obs = observation(rng)
    batch = policy.prepare(obs)
    result["prompt_tokens"] = int(batch["input_ids"].shape[1])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result["policy_chunk_end_to_end"] = timed(lambda: policy.get_action(obs, num_steps=args.steps, seed=0),
                                              device, args.warmup, args.iters)
    result["policy_chunk_model_only"] = timed(lambda: policy.model.sample_actions(batch, num_steps=args.steps),
                                              device, args.warmup, args.iters)
    result["policy_peak_gib"] = peak_gib(device)
    print(json.dumps(result, indent=1), flush=True)

    if not args.no_train:
        policy.model.train()
        tb = policy.prepare(observation(rng, 8) | {"action.wheel_commands": rng.uniform(-5, 5, (8, 16, 2))})
        opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-5)

        def step():
            loss = policy.model.loss(tb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result["train_step_batch8"] = timed(step, device, 3, 10 if device.type == "cuda" else 20)
        result["train_peak_gib"] = peak_gib(device)
        del opt, tb
        policy.model.eval()

    rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="dit", horizon=1), tuning="frozen").to(dtype=dtype)
    del policy
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    one = observation(rng)
    many = observation(rng, args.reward_batch)
    result["reward_per_frame"] = timed(lambda: rm.score(one), device, args.warmup, args.iters)
    result[f"reward_batch{args.reward_batch}"] = timed(lambda: rm.score(many), device, 3, args.reward_iters)
    result["reward_peak_gib"] = peak_gib(device)
    print(json.dumps(result, indent=1), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Latency and memory of the GR00T N1 policy and reward model (random weights), eager and CUDA graphs.

    PYTHONPATH=src python bench/bench_model.py --device cuda --preset gr00t-n1-2b --dtype bf16 \
        --modes eager,cuda_graphs --profile --out result.json
    PYTHONPATH=src python bench/bench_model.py --device cpu --preset tiny --dtype fp32

Measures, after warm-up, for each mode of --modes (``eager``; ``cuda_graphs`` = the opt-in fast path
``use_cuda_graphs()``, captured during the warm-up): one 16-action chunk (processor + backbone once +
N denoising steps) end to end and model-only, p50/p99 over --iters calls; the DiT reward model
(horizon 1) per frame and per batch of --reward-batch frames, end to end and model-only; peak GPU
memory of each part. A training step of the policy at batch 8 (eager). ``--profile`` adds where the
eager time goes: backbone vs one denoising step, and torch.profiler's top operators of one chunk.
Results are printed (and written to --out) after every part, so a cut-off run still reports.
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

MODES = ("eager", "cuda_graphs")
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


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def where_time_goes(policy: Gr00tPolicy, batch: dict, steps: int, device: torch.device, iters: int) -> dict:
    """Eager breakdown of one chunk: backbone, one denoising step (velocity), and the profiler's top operators."""
    head = policy.model.action_head
    feats, mask = policy.model.features(batch)
    state = batch["state"].to(feats.dtype)
    x = head.initial_noise(feats.shape[0], feats.device, feats.dtype)
    t = torch.zeros(feats.shape[0], dtype=torch.long, device=feats.device)
    with torch.no_grad():
        out = {"backbone": timed(lambda: policy.model.features(batch), device, 3, iters),
               "denoising_step": timed(lambda: head.velocity(feats, mask, state, x, t, batch["embodiment_id"]),
                                       device, 3, iters)}
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            policy.model.sample_actions(batch, num_steps=steps)
        _sync(device)
    events = prof.key_averages()
    def per_chunk(*prefixes: str) -> int:
        return sum(e.count for e in events if e.key.startswith(prefixes)) // 3
    out["per_chunk_calls"] = {"kernel_launches": per_chunk("cudaLaunch", "cuLaunch"),
                              "stream_syncs": per_chunk("cudaStreamSynchronize", "cudaDeviceSynchronize"),
                              "memcpy": per_chunk("cudaMemcpy"), "host_reads": per_chunk("aten::_local_scalar_dense"),
                              "aten_ops": per_chunk("aten::")}
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    out["profile_table"] = events.table(sort_by=sort, row_limit=20)
    return out


def bench_policy(policy: Gr00tPolicy, mode: str, obs: dict, batch: dict, args, device: torch.device) -> dict:
    policy.use_cuda_graphs(mode == "cuda_graphs")
    reset_peak(device)
    res = {"chunk_model_only": timed(lambda: policy.sample_actions(batch, num_steps=args.steps), device,
                                     args.warmup, args.iters)}
    res["chunk_model_only_peak_gib"] = peak_gib(device)
    res["chunk_end_to_end"] = timed(lambda: policy.get_action(obs, num_steps=args.steps, seed=0),
                                    device, args.warmup, args.iters)
    res["peak_gib"] = peak_gib(device)
    policy.use_cuda_graphs(False)                                  # frees the graphs' memory
    return res


def bench_reward(rm: RewardModel, mode: str, one: dict, many: dict, args, device: torch.device) -> dict:
    rm.use_cuda_graphs(mode == "cuda_graphs")
    one_batch, many_batch = rm.prepare(one), rm.prepare(many)
    reset_peak(device)
    res = {"frame_model_only": timed(lambda: rm.infer(one_batch), device, args.warmup, args.iters),
           "frame_end_to_end": timed(lambda: rm.score(one), device, args.warmup, args.iters)}
    res["frame_peak_gib"] = peak_gib(device)
    reset_peak(device)
    b = args.reward_batch
    res[f"batch{b}_model_only"] = timed(lambda: rm.infer(many_batch), device, 3, args.reward_iters)
    res[f"batch{b}_end_to_end"] = timed(lambda: rm.score(many), device, 3, args.reward_iters)
    res[f"batch{b}_peak_gib"] = peak_gib(device)
    rm.use_cuda_graphs(False)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--dtype", default="bf16", choices=DTYPES)
    ap.add_argument("--modes", default="eager", help=f"comma-separated, of {MODES}, measured one after the other")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--steps", type=int, default=4, help="denoising steps per chunk")
    ap.add_argument("--reward-batch", type=int, default=64)
    ap.add_argument("--reward-iters", type=int, default=30)
    ap.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    ap.add_argument("--no-reward", action="store_true", help="skip the reward-model measurements")
    ap.add_argument("--profile", action="store_true", help="eager breakdown and torch.profiler table of one chunk")
    ap.add_argument("--out", default=None, help="write the results as JSON here (after every part)")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"--modes: {m!r} is not one of {MODES}")

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    rng = np.random.default_rng(0)
    result: dict = {"preset": args.preset, "device": args.device, "dtype": args.dtype, "steps": args.steps,
                    "torch": torch.__version__, "host": platform.node()}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
        torch.backends.cuda.matmul.allow_tf32 = True

    def report(part: str) -> None:
        print(f"== {part}", json.dumps(result, indent=1), flush=True, sep="\n")
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)

    with torch.device(device):
        policy = Gr00tPolicy.from_config(args.preset, tokenizer="tiny")
    policy.to(dtype=dtype).model.eval()
    obs = observation(rng)
    batch = policy.prepare(obs)
    result["prompt_tokens"] = int(batch["input_ids"].shape[1])
    for mode in modes:
        result[f"policy_{mode}"] = bench_policy(policy, mode, obs, batch, args, device)
        report(f"policy {mode}")
    if "eager" in modes and "cuda_graphs" in modes:
        a = policy.get_action(obs, num_steps=args.steps, seed=0)["action.wheel_commands"]
        policy.use_cuda_graphs()
        b = policy.get_action(obs, num_steps=args.steps, seed=0)["action.wheel_commands"]
        policy.use_cuda_graphs(False)
        result["policy_max_abs_diff_rad_s"] = float(np.abs(a - b).max())
    if args.profile:
        prof = where_time_goes(policy, batch, args.steps, device, 20)
        print(prof.pop("profile_table"), flush=True)
        result["eager_breakdown"] = prof
        report("eager breakdown")

    if not args.no_train:
        policy.model.train()
        tb = policy.prepare(observation(rng, 8) | {"action.wheel_commands": rng.uniform(-5, 5, (8, 16, 2))})
        opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-5)

        def step():
            loss = policy.model.loss(tb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        reset_peak(device)
        result["train_step_batch8"] = timed(step, device, 3, 10 if device.type == "cuda" else 20)
        result["train_peak_gib"] = peak_gib(device)
        del opt, tb
        policy.model.eval()
        report("train step")

    if not args.no_reward:
        with torch.device(device):
            rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="dit", horizon=1), tuning="frozen")
        rm.to(dtype=dtype)
        del policy
        one, many = observation(rng), observation(rng, args.reward_batch)
        for mode in modes:
            result[f"reward_{mode}"] = bench_reward(rm, mode, one, many, args, device)
            report(f"reward {mode}")
        if "eager" in modes and "cuda_graphs" in modes:
            a = rm.score(many)
            b = rm.use_cuda_graphs().score(many)
            result["reward_batch_max_abs_diff"] = float(np.abs(a - b).max())
            result["reward_batch_range"] = [float(a.min()), float(a.max())]
            report("reward agreement")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

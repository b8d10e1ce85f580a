"""Latency, throughput and memory of the GR00T N1 policy and reward model (random weights), per speed lever.

    PYTHONPATH=src python bench/bench_model.py --device cuda --preset gr00t-n1-2b --dtype bf16 --out result.json
    PYTHONPATH=src python bench/bench_model.py --device cpu --preset tiny --dtype fp32 --iters 10

Modes (``--modes``, comma-separated; measured one after the other in the same process, the plain path first):
``eager`` the plain path; ``cuda_graphs`` the CUDA graphs alone (``use_cuda_graphs``, what ran before the
other levers); ``graphs_kv`` + cross-attention K/V cached per chunk; ``graphs_kv_sdpa`` + no masks without
padding (SDPA flash kernels); ``fast`` + uint8 frames preprocessed on the GPU (``use_fast_path()``: all
levers but compile); ``fast_compile`` + ``torch.compile`` of the SigLIP / Llama / DiT layers (compile time is
in the warm-up). Each mode: one 16-action chunk (batch 1, --steps denoising steps) model only
(``sample_actions`` on a prepared batch: for ``fast`` the uint8 frames already on the GPU, so its
preprocessing is inside) and end to end (``get_action`` from a 320x240 uint8 frame); p50 / p99 over --iters
calls after --warmup calls (which include the capture); max |action diff| vs ``eager`` (rad/s, same seed);
peak GPU memory. The reward model (DiT head, horizon 1, frozen backbone): one frame live (``score``) and
batched scoring of --reward-batch frames (``prepare`` -> ``predict``, as ``eval reward`` does), frames/s, in the
modes eager, fast and fast_compile (the others share eager's CPU preprocessing).
``--flops`` counts the FLOPs of one chunk and one reward frame (torch.utils.flop_counter): the compute
floor. A mode that fails records its one-line error and the run goes on. A table is printed at the end;
results are written to --out after every part, so a cut-off run still reports.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import traceback

import numpy as np
import torch

from gr00t_rlhf_train.model.cuda_graph import PLAIN, FastPath
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel

MODES = {
    "eager": PLAIN,
    "cuda_graphs": FastPath.resolve(PLAIN, cuda_graphs=True),
    "graphs_kv": FastPath.resolve(PLAIN, cuda_graphs=True, kv_cache=True),
    "graphs_kv_sdpa": FastPath.resolve(PLAIN, cuda_graphs=True, kv_cache=True, unmasked_sdpa=True),
    "fast": FastPath(),
    "fast_compile": FastPath(compile=True),
}
DEFAULT_MODES = "eager,cuda_graphs,graphs_kv,graphs_kv_sdpa,fast"
BATCH_MODES = ("eager", "fast", "fast_compile")    # the reward batch (eval reward) is measured in these
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
GOALS = {"chunk_model_only": "<= 6 ms", "chunk_end_to_end": "<= 8 ms", "reward_frame_end_to_end": "<= 5 ms",
         "reward_batch_frames_per_s": ">= 2000 frames/s"}


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


def one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]


def gflops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def profile_chunk(policy: Gr00tPolicy, mode: str, obs: dict, steps: int, device: torch.device) -> dict:
    """torch.profiler over 3 chunks of ``mode`` (after a warm-up): per-chunk counts and the top operators."""
    policy.use_fast_path(MODES[mode])
    for _ in range(4):
        policy.get_action(obs, num_steps=steps, seed=0)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            policy.get_action(obs, num_steps=steps, seed=0)
        _sync(device)
    policy.use_fast_path(False)
    events = prof.key_averages()

    def per_chunk(*prefixes: str) -> int:
        return sum(e.count for e in events if e.key.startswith(prefixes)) // 3
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return {"mode": mode, "kernel_launches": per_chunk("cudaLaunch", "cuLaunch"),
            "graph_launches": per_chunk("cudaGraphLaunch"),
            "stream_syncs": per_chunk("cudaStreamSynchronize", "cudaDeviceSynchronize"),
            "memcpy": per_chunk("cudaMemcpy"), "host_reads": per_chunk("aten::_local_scalar_dense"),
            "table": events.table(sort_by=sort, row_limit=25)}


def train_step(policy: Gr00tPolicy, rng: np.random.Generator, device: torch.device) -> dict:
    """One AdamW step of the policy at batch 8 (eager, all weights trainable)."""
    policy.model.train()
    tb = policy.prepare(observation(rng, 8) | {"action.wheel_commands": rng.uniform(-5, 5, (8, 16, 2))})
    opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-5)

    def step():
        loss = policy.model.loss(tb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    reset_peak(device)
    res = {"train_step_batch8": timed(step, device, 3, 10 if device.type == "cuda" else 5),
           "train_peak_gib": peak_gib(device)}
    policy.model.eval()
    return res


def bench_policy(policy: Gr00tPolicy, mode: str, obs: dict, args, device: torch.device) -> dict:
    policy.use_fast_path(MODES[mode])
    if policy.fast.gpu_preprocess:
        batch, unpadded = policy.prepare_fast(obs)
    else:
        batch, unpadded = policy.prepare(obs), None
    reset_peak(device)
    warmup = args.warmup + (20 if policy.fast.compile else 0)
    res = {"chunk_model_only": timed(lambda: policy.sample_actions(batch, num_steps=args.steps, unpadded=unpadded),
                                     device, warmup, args.iters)}
    res["chunk_end_to_end"] = timed(lambda: policy.get_action(obs, num_steps=args.steps, seed=0),
                                    device, args.warmup, args.iters)
    res["peak_gib"] = peak_gib(device)
    res["action"] = policy.get_action(obs, num_steps=args.steps, seed=0)["action.wheel_commands"]
    policy.use_fast_path(False)                                    # frees the graphs' memory
    return res


def bench_reward(rm: RewardModel, mode: str, one: dict, many: dict, args, device: torch.device) -> dict:
    rm.use_fast_path(MODES[mode])
    one_batch = rm.prepare(one)
    reset_peak(device)
    warmup = args.warmup + (20 if rm.fast.compile else 0)
    res = {"frame_model_only": timed(lambda: rm.infer(one_batch), device, warmup, args.iters),
           "frame_end_to_end": timed(lambda: rm.score(one), device, args.warmup, args.iters),
           "frame_peak_gib": peak_gib(device), "frame_score": float(rm.score(one))}
    if mode not in BATCH_MODES:                  # the CPU-preprocessing modes differ only in the live-frame figures
        rm.use_fast_path(False)
        return res
    reset_peak(device)
    many_batch = rm.prepare(many)
    b = args.reward_batch
    res["batch_model_only"] = timed(lambda: rm.infer(many_batch), device, 3 + (10 if rm.fast.compile else 0),
                                    args.reward_iters)
    res["batch_end_to_end"] = timed(lambda: rm.predict(rm.prepare(many)).float().cpu(), device, 2, args.reward_iters)
    res["scores"] = rm.predict(rm.prepare(many)).float().cpu().numpy()
    res["batch_frames_per_s"] = b / res["batch_end_to_end"]["p50_ms"] * 1000
    res["batch_model_only_frames_per_s"] = b / res["batch_model_only"]["p50_ms"] * 1000
    res["batch_peak_gib"] = peak_gib(device)
    rm.use_fast_path(False)
    return res


def fmt(t: dict | None) -> str:
    return "—" if not t else f"{t['p50_ms']:.2f} / {t['p99_ms']:.2f}"


def table(result: dict, modes: list[str]) -> str:
    rows = ["| mode | chunk model only p50 / p99 ms | chunk end to end p50 / p99 ms | max abs diff vs eager (rad/s) "
            "| peak GiB | reward frame e2e p50 / p99 ms | reward frame model p50 ms | reward batch frames/s e2e "
            "(model only) | max abs reward diff |",
            "|---" * 9 + "|"]
    for m in modes:
        p, r = result.get(f"policy_{m}", {}), result.get(f"reward_{m}", {})
        if "error" in p or "error" in r:
            rows.append(f"| {m} | error: {p.get('error') or r.get('error')} |" + " |" * 7)
            continue
        rows.append(
            f"| {m} | {fmt(p.get('chunk_model_only'))} | {fmt(p.get('chunk_end_to_end'))} | "
            f"{p.get('max_abs_diff_vs_eager', float('nan')):.4g} | {p.get('peak_gib') or float('nan'):.2f} | "
            f"{fmt(r.get('frame_end_to_end'))} | "
            f"{r['frame_model_only']['p50_ms'] if r else float('nan'):.2f} | "
            f"{r.get('batch_frames_per_s', float('nan')):.0f} ({r.get('batch_model_only_frames_per_s', float('nan')):.0f}) | "
            f"{r.get('max_abs_diff_vs_eager', r.get('frame_diff_vs_eager', float('nan'))):.4g} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--dtype", default="bf16", choices=DTYPES)
    ap.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated, of {list(MODES)}")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--steps", type=int, default=4, help="denoising steps per chunk")
    ap.add_argument("--reward-batch", type=int, default=256, help="frames per batched reward call (eval reward)")
    ap.add_argument("--reward-iters", type=int, default=10, help="calls per batched reward measurement")
    ap.add_argument("--no-reward", action="store_true", help="skip the reward-model measurements")
    ap.add_argument("--flops", action="store_true", help="count FLOPs of one chunk and one reward frame")
    ap.add_argument("--profile", action="store_true", help="torch.profiler table of the last policy mode's chunk")
    ap.add_argument("--train", action="store_true", help="also time an eager training step at batch 8")
    ap.add_argument("--no-train", action="store_true", help=argparse.SUPPRESS)   # the default now; kept for old commands
    ap.add_argument("--out", default=None, help="write the results as JSON here (after every part)")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error(f"--modes: {m!r} is not one of {list(MODES)}")
    if "eager" in modes:
        modes = ["eager"] + [m for m in modes if m != "eager"]

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    rng = np.random.default_rng(0)
    result: dict = {"preset": args.preset, "device": args.device, "dtype": args.dtype, "steps": args.steps,
                    "torch": torch.__version__, "host": platform.node(), "goals": GOALS, "modes": modes}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
        torch.backends.cuda.matmul.allow_tf32 = True
    try:
        import transformers
        result["transformers"] = transformers.__version__
    except ImportError:
        pass

    def report(part: str) -> None:
        print(f"== {part}", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1, default=lambda o: None)

    with torch.device(device):
        policy = Gr00tPolicy.from_config(args.preset, tokenizer="tiny")
    policy.to(dtype=dtype).model.eval()
    obs = observation(rng)
    result["prompt_tokens"] = int(policy.prepare(obs)["input_ids"].shape[1])
    if args.flops:
        batch = policy.prepare(obs)
        result["chunk_gflop"] = gflops(lambda: policy.sample_actions(batch, num_steps=args.steps))
        report("flops")
    reference = None
    for mode in modes:
        try:
            res = bench_policy(policy, mode, obs, args, device)
            action = res.pop("action")
            if mode == "eager":
                reference = action
            if reference is not None:
                res["max_abs_diff_vs_eager"] = float(np.abs(action - reference).max())
            result[f"policy_{mode}"] = res
        except Exception as e:  # noqa: BLE001 - a failing lever is reported, the others still run
            traceback.print_exc()
            policy.use_fast_path(False)
            result[f"policy_{mode}"] = {"error": one_line(e)}
        report(f"policy {mode}: {json.dumps(result[f'policy_{mode}'])}")

    if args.profile:
        prof = profile_chunk(policy, modes[-1], obs, args.steps, device)
        print(prof.pop("table"), flush=True)
        result["profile"] = prof
        report("profile")
    if args.train:
        result.update(train_step(policy, rng, device))
        report("train step")

    if not args.no_reward:
        with torch.device(device):
            rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="dit", horizon=1), tuning="frozen")
        rm.to(dtype=dtype).eval()
        del policy
        one, many = observation(rng), observation(rng, args.reward_batch)
        if args.flops:
            one_batch = rm.prepare(one)
            result["reward_frame_gflop"] = gflops(lambda: rm.infer(one_batch))
        reference = frame_reference = None
        for mode in modes:
            try:
                res = bench_reward(rm, mode, one, many, args, device)
                scores = res.pop("scores", None)
                if mode == "eager":
                    reference, frame_reference = scores, res["frame_score"]
                if frame_reference is not None:
                    res["frame_diff_vs_eager"] = abs(res["frame_score"] - frame_reference)
                if reference is not None and scores is not None:
                    res["max_abs_diff_vs_eager"] = float(np.abs(scores - reference).max())
                result[f"reward_{mode}"] = res
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                rm.use_fast_path(False)
                result[f"reward_{mode}"] = {"error": one_line(e)}
            report(f"reward {mode}: {json.dumps(result[f'reward_{mode}'])}")

    result["table"] = table(result, modes)
    print(f"\n{result.get('gpu', args.device)}, {args.preset}, {args.dtype}, {args.steps} steps, batch 1; "
          f"reward batch {args.reward_batch}; goals {GOALS}")
    if "chunk_gflop" in result:
        print(f"FLOPs: one chunk {result['chunk_gflop']:.3f} GFLOP, one reward frame "
              f"{result.get('reward_frame_gflop', float('nan')):.3f} GFLOP")
    print(result["table"], flush=True)
    report("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

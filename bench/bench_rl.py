"""Stage 3 (train rl) costs on random weights, no data set and no ROS: scoring, a training step, CFG sampling.

    PYTHONPATH=src python bench/bench_rl.py --device cuda --preset gr00t-n1-2b --out rl_bench.json
    PYTHONPATH=src python bench/bench_rl.py --device cpu --preset tiny --iters 10

Measures (p50 / p99 over --iters after --warmup calls):
* reward-model scoring, the one pass ``train rl`` makes over its data: samples/s of ``RewardModel.predict``
  on batches of --score-batch clips (H = --horizon frames, K = --action-horizon actions), bf16 autocast on CUDA;
* one optimizer step (forward, backward, AdamW; SFT's tuning: projector + DiT, backbone frozen) of the
  real objective ``stages.rl.RLLoss`` at batch --batch-size for: plain flow matching, rwfm (per-sample
  weights), acfm (conditions with dropout), rwfm + anchor (a frozen copy of the policy runs too);
* sampling one chunk (model only) of an advantage-conditioned policy at guidance 1 (one pass per Euler step)
  and 2 (classifier-free guidance: a doubled batch), eager and with CUDA graphs on a GPU.
Peak GPU memory of each part. Results are printed (and written to --out) after every part.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform

import numpy as np
import torch

from bench_model import _sync, timed  # noqa: E402  (bench/ is the script's directory)

from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel
from gr00t_rlhf_train.stages.loop import TrainConfig
from gr00t_rlhf_train.stages.rl import RLConfig, RLLoss
from gr00t_rlhf_train.stages.sft import set_tuning


def observation(rng, batch: int, horizon: int | None = None, actions: bool = False) -> dict:
    lead = (batch,) if horizon is None else (batch, horizon)
    obs = {"video.ego_view": rng.integers(0, 255, (*lead, 240, 320, 3), dtype=np.uint8),
           "observation.state": rng.normal(size=(*lead, 3)), "task": ["Find Blue cube"] * batch}
    if actions:
        obs["action.wheel_commands"] = rng.uniform(-5, 5, (batch, 16, 2))
    return obs


def peak(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def rl_config(method: str, anchor: float) -> RLConfig:
    return RLConfig(policy="bench", reward_model="bench", data=["bench"], train=TrainConfig(out_dir="bench"),
                    method=method, anchor_weight=anchor)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--score-batch", type=int, default=64)
    ap.add_argument("--horizon", type=int, default=4)
    ap.add_argument("--action-horizon", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    rng = np.random.default_rng(0)
    res: dict = {"device": torch.cuda.get_device_name(device) if bf16 else platform.processor() or "cpu",
                 "preset": args.preset, "torch": torch.__version__, "batch_size": args.batch_size}

    def report(name: str, value) -> None:
        res[name] = value
        print(json.dumps({name: value}), flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(res, f, indent=1)

    policy = Gr00tPolicy.from_config(args.preset, seed=0).to(device)

    # -- scoring ------------------------------------------------------------------------------
    rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="mlp", horizon=args.horizon, hidden_size=128,
                                                          action_horizon=args.action_horizon)).to(device).eval()
    clips = observation(rng, args.score_batch, args.horizon)
    clips["actions"] = rng.uniform(-5, 5, (args.score_batch, args.action_horizon, 2))

    def score():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            rm.predict(rm.prepare(clips))

    reset_peak(device)
    t = timed(score, device, args.warmup, args.iters)
    report("score_batch", t | {"samples_per_s": args.score_batch / (t["p50_ms"] / 1000), "peak_gib": peak(device)})
    rm.to("cpu")
    rm = None

    # -- a training step of each objective -------------------------------------------------------
    batch_cpu = policy.processor(observation(rng, args.batch_size, actions=True))
    b = args.batch_size
    extra = {"rl_weight": torch.from_numpy(rng.uniform(0.2, 3.0, b)).float(),
             "rl_condition": torch.from_numpy(rng.integers(1, 3, b)), "rl_demo": torch.zeros(b, dtype=torch.bool)}
    for name, method, anchor in (("plain_fm", None, 0.0), ("rwfm", "rwfm", 0.0), ("acfm", "acfm", 0.0),
                                 ("rwfm_anchor", "rwfm", 0.1)):
        p = Gr00tPolicy.from_config(args.preset, seed=0)
        if method == "acfm":
            p.enable_advantage_conditioning()
        cfg = rl_config(method or "rwfm", anchor)
        set_tuning(p.model, cfg)
        model = p.model.to(device).train()
        reference = copy.deepcopy(model).eval().requires_grad_(False) if anchor else None
        loss_fn = RLLoss(cfg, reference)
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
        batch = {k: v.to(device) for k, v in (batch_cpu | extra).items()}

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                if method is None:
                    loss = model.loss({k: v for k, v in batch.items() if not k.startswith("rl_")})
                else:
                    loss, _ = loss_fn(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        reset_peak(device)
        report(f"train_step_{name}", timed(step, device, args.warmup, args.iters) | {"peak_gib": peak(device)})
        model = reference = opt = p = None
        if device.type == "cuda":
            torch.cuda.empty_cache()

    # -- CFG sampling --------------------------------------------------------------------------
    p = Gr00tPolicy.from_config(args.preset, seed=0).enable_advantage_conditioning().to(device)
    p.model.eval()
    one = p.prepare(observation(rng, 1) | {"task": "Find Blue cube"})
    modes = ["eager"] + (["cuda_graphs"] if device.type == "cuda" else [])
    for mode in modes:
        p.use_cuda_graphs(mode == "cuda_graphs")
        for g in (1.0, 2.0):
            reset_peak(device)
            t = timed(lambda: p.sample_actions(one, condition="good", guidance=g), device, args.warmup, args.iters)
            report(f"sample_chunk_{mode}_guidance{g:g}", t | {"peak_gib": peak(device)})
        p.use_cuda_graphs(False)
    _sync(device)


if __name__ == "__main__":
    main()

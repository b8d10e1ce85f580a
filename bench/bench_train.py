"""Training throughput of stage 1 (train sft) and stage 2 (train reward): samples/s, steps/s, loader wait, GPU use.

    # one GPU (the device machine: no ROS, no video decoder; a synthetic frame cache is written to a tmp dir)
    PYTHONPATH=src python bench/bench_train.py --device cuda --preset gr00t-n1-2b --out train_bench.json
    # two GPUs, DDP (the same runs; samples/s is over both processes)
    PYTHONPATH=src accelerate launch --config_file config/accelerate/ddp.yaml --num_processes 2 \\
        bench/bench_train.py --device cuda --preset gr00t-n1-2b --out train_bench_2gpu.json
    # CPU smoke test
    PYTHONPATH=src python bench/bench_train.py --device cpu --preset tiny --steps 10 --warmup 4

Every run goes through the real stage code (``run_sft`` / ``train_reward`` and the shared loop) on a frame
cache: ``--data CACHE`` or a synthetic one (``--episodes`` x ``--frames`` pictures at the preset's vision size,
rows at the video rate, JPEG like a real cache, binary rewards). The loop logs the throughput itself
(``train/steps_per_s``, ``train/samples_per_s``, ``train/data_wait_ms``, ``train/data_wait_fraction``,
``train/gpu_util`` with pynvml); this script runs --warmup + --steps updates, drops the records of the warm-up
steps and reports the means of the rest. Runs (``--runs``, default all):

* ``sft-w<N>``: stage 1, SFT's default tuning (projector + DiT; vision and LLM frozen), for each
  ``--workers`` N (loader workers: data wait ~0 means the loader keeps up);
* ``sft-full``: stage 1 with everything tuned (the full fine-tuning of FSDP; on one GPU only with memory);
* ``reward-frozen-w<N>``: stage 2, frozen backbone, recomputing its features every step, for each
  ``--reward-workers`` N (its host preparation, ``RewardModel.host_inputs``: crops, resize, tokenizer,
  normalisation, runs in the N loader workers; N = 0: in the training process, between steps), plus
  ``host_prepare_ms``: that preparation of one batch in one thread (what one worker spends per batch), and
  ``workers_to_keep_up`` = host_prepare_ms / the step's compute time (the step time less the loader wait);
* ``reward-cached``: stage 2, frozen backbone, ``--cache-features`` (its one-off cache build is timed apart);
* ``reward-full``: stage 2 with the backbone trained.
``speedup_cached_vs_frozen`` = steps/s of reward-cached / the fastest reward-frozen-w<N> (goal >= 10).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from gr00t_rlhf_train.data.cache import FORMAT, FORMAT_VERSION, META_FILE, SCHEMA, SHARD, encode_jpegs
from gr00t_rlhf_train.model.configuration import preset
from gr00t_rlhf_train.stages.loop import TrainConfig, is_main_process, main_process_first, world_size

RUNS = ("sft-w", "sft-full", "reward-frozen", "reward-cached", "reward-full")
TASKS = ("Find Blue cube", "Move around the red object before proceeding to the goal")


# -- a synthetic frame cache (no video decoder needed) ------------------------------------------------
def write_synthetic_cache(out: Path, episodes: int, frames: int, size: int, fps: float = 10.0, seed: int = 0) -> Path:
    """A frame cache like ``build_cache`` writes: one row per picture, smooth pictures with a moving bar (JPEG
    sizes like camera frames), state (3) / action (2) / binary reward / feedback columns, two instructions."""
    if (out / META_FILE).is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    entries = {}
    for e in range(episodes):
        base = (np.stack([xx, yy, (xx + yy) // 2], -1) * (255.0 / size) * (0.5 + 0.5 * (e % 3) / 2)).astype(np.float32)
        pics = []
        for i in range(frames):
            img = base.copy()
            img[:, (3 * i) % size] = 255
            img += rng.normal(0, 4, img.shape)
            pics.append(np.clip(img, 0, 255).astype(np.uint8))
        jpegs = encode_jpegs(torch.from_numpy(np.stack(pics)).permute(0, 3, 1, 2).contiguous(), 90)
        good = (np.arange(frames) // 8 + e) % 2 == 0
        action = rng.uniform(-5, 5, (frames, 2)).astype(np.float32)
        state = np.c_[action + rng.normal(0, 0.1, (frames, 2)), rng.normal(0, 1, frames)].astype(np.float32)
        table = pa.table({
            "timestamp": pa.array(np.arange(frames) / fps, pa.float64()),
            "state": pa.array(list(state), pa.list_(pa.float32())),
            "action": pa.array(list(action), pa.list_(pa.float32())),
            "reward": pa.array(good.astype(np.float32), pa.float32()),
            "feedback": pa.array(good.astype(np.int64), pa.int64()),
            "task_index": pa.array(np.full(frames, e % 2), pa.int64()),
            "frame": pa.array(np.arange(frames, dtype=np.int32), pa.int32()),
            "image": pa.array(np.arange(frames, dtype=np.int32), pa.int32()),
            "jpeg": pa.array(jpegs, pa.binary()),
        }, schema=SCHEMA)
        shard = out / SHARD.format(e)
        pq.write_table(table, shard, compression="zstd")
        entries[str(e)] = {"shard": shard.name, "rows": frames, "images": frames, "task": TASKS[e % 2],
                           "duration": (frames - 1) / fps, "bytes": shard.stat().st_size}
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "complete": True, "source": "synthetic (bench_train.py)",
           "fingerprint": f"synthetic-{episodes}x{frames}-{size}-{seed}",
           "settings": {"image_size": [size, size], "quality": 90, "video_key": "observation.images.ego_view"},
           "episodes": entries, "fps": fps, "image_size": [size, size], "video_key": "observation.images.ego_view",
           "modality": {"state": {"wheel_velocities": [0, 2], "acceleration": [2, 3]},
                        "action": {"wheel_commands": [0, 2]}},
           "tasks": {"0": TASKS[0], "1": TASKS[1]},
           "vocabulary": {"key_field": "annotation.human.validity", "default": None,
                          "texts": {"0": "Doing bad", "1": "Doing good"}},
           "has_reward": True, "stats": {}, "skipped": {}, "build_seconds": 0.0}
    (out / META_FILE).write_text(json.dumps(doc, indent=1))
    return out


# -- runs ---------------------------------------------------------------------------------------------
def steady(out_dir: Path, warmup: int) -> dict:
    """Means of the loop's throughput records after the warm-up steps (each record covers --log-every steps)."""
    if not is_main_process():
        return {}                                      # only the main process writes (and may delete) the log
    recs = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines() if "train/steps_per_s" in x]
    recs = [r for r in recs if r["step"] > warmup] or recs[-1:]
    if not recs:
        return {}
    keys = ("train/steps_per_s", "train/samples_per_s", "train/data_wait_ms", "train/data_wait_fraction",
            "train/gpu_util", "train/loss")
    return {k.split("/", 1)[1]: float(np.mean([r[k] for r in recs if k in r])) for k in keys
            if any(k in r for r in recs)}


def train_config(args, out: Path, workers: int) -> dict:
    return dict(steps=args.warmup + args.steps, batch_size=args.batch_size, lr=1e-4, warmup_steps=0, eval_every=0,
                save_every=0, log_every=args.log_every, num_workers=workers, prefetch_factor=args.prefetch_factor,
                seed=0, cpu=args.device == "cpu")


def fresh(work: Path, name: str, cpu: bool) -> Path:
    """An empty run directory (the main process clears an earlier one first)."""
    out = work / "runs" / name
    with main_process_first(TrainConfig(out_dir=str(out), cpu=cpu)):
        if is_main_process() and out.exists():
            shutil.rmtree(out)
    return out


def cleanup(out: Path) -> None:
    """Drop a run's checkpoints once measured (2B runs write ~10-25 GB each)."""
    if is_main_process() and out.exists():
        shutil.rmtree(out, ignore_errors=True)


def base_checkpoint(args, cache: Path, work: Path) -> str | None:
    """The starting weights of every run: ``--checkpoint``, or for the 2B preset its random weights built ONCE and
    saved (building 2.2 B parameters on the CPU takes about a minute; loading them back, seconds)."""
    if args.checkpoint or args.preset in ("tiny", "small"):
        return args.checkpoint
    from gr00t_rlhf_train.data.cache import FrameCache
    from gr00t_rlhf_train.model.checkpoint import CONFIG_NAME
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.stages.sft import modality_for, train_stats

    path = work / f"base-{args.preset}"
    with main_process_first(TrainConfig(out_dir=str(work), cpu=args.device == "cpu")):
        if is_main_process() and not (path / CONFIG_NAME).is_file():
            t0 = time.time()
            fc = FrameCache(cache)
            modality = modality_for([fc])
            stats = train_stats([fc], [fc.episodes], modality, "frames")
            Gr00tPolicy.from_config(args.preset, modality=modality, stats=stats, seed=0).save_pretrained(path)
            print(f"bench: {args.preset} random weights saved to {path} ({time.time() - t0:.0f} s)", file=sys.stderr)
    return str(path)


def run_sft(args, cache: Path, work: Path, name: str, workers: int, full: bool) -> dict:
    from gr00t_rlhf_train.stages.sft import SFTConfig, run_sft as sft

    out = fresh(work, name, args.device == "cpu")
    tc = TrainConfig(out_dir=str(out), resume=False, **train_config(args, out, workers))
    cfg = SFTConfig(data=[str(cache)], train=tc, preset=None if args.base else args.preset,
                    checkpoint=args.base, holdout=[], val_fraction=0.0, tune_visual=full, tune_llm=full)
    t0 = time.time()
    summary = sft(cfg, progress=False)
    row = {"run": name, "stage": "sft", "workers": workers, "tuning": "full" if full else "projector+DiT",
           "samples": summary.samples, "wall_s": round(time.time() - t0, 1)} | steady(out, args.warmup)
    cleanup(out)
    return row


def run_reward(args, cache: Path, work: Path, name: str, tuning: str, cached: bool, workers: int) -> dict:
    from gr00t_rlhf_train.stages.reward import RewardConfig, train_reward

    out = fresh(work, name, args.device == "cpu")
    train = train_config(args, out, workers) | {"resume": False}
    cfg = RewardConfig(data=str(cache), out_dir=str(out), val_fraction=0.2, horizon=args.horizon, head=args.head,
                       tuning=tuning, preset=args.preset, init=args.base, cache_features=cached,
                       val_max_samples=args.batch_size,
                       train=train)
    t0 = time.time()
    result = train_reward(cfg)
    row = {"run": name, "stage": "reward", "tuning": tuning, "cache_features": cached, "workers": workers,
           "horizon": args.horizon, "head": args.head, "samples": result.samples["train"],
           "wall_s": round(time.time() - t0, 1)}
    row |= steady(out, args.warmup)
    cleanup(out)
    return row


def host_prepare_ms(args, cache: Path, batches: int = 5) -> float:
    """What one loader worker spends on one stage-2 training batch, in ONE thread as in a worker (torch uses one
    thread there): reading and decoding --batch-size clips (``RewardClips``) and their preparation
    (``RewardCollator``: crops, resize, tokenizer, normalisation). Mean over ``batches`` batches after one warm-up
    batch. Only the processor is built (no weights)."""
    from gr00t_rlhf_train.data.cache import FrameCache
    from gr00t_rlhf_train.data.samples import RewardClips
    from gr00t_rlhf_train.model.checkpoint import CheckpointError, load_processor, read_meta
    from gr00t_rlhf_train.model.processor import Gr00tProcessor
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardInputs
    from gr00t_rlhf_train.model.tokenizer import load_tokenizer
    from gr00t_rlhf_train.stages.reward import RewardCollator
    from gr00t_rlhf_train.stages.sft import modality_for, train_stats

    fc = FrameCache(cache)
    try:                                   # our checkpoint (--checkpoint, or the 2B random weights saved once)
        processor = load_processor(Path(args.base), read_meta(args.base)) if args.base else None
    except CheckpointError:                # an official directory: the preset's processor stands in
        processor = None
    if processor is None:                  # as Gr00tPolicy.from_config builds it, without the weights
        modality = modality_for([fc])
        processor = Gr00tProcessor(preset(args.preset), modality, train_stats([fc], [fc.episodes], modality, "frames"),
                                   load_tokenizer("tiny"))
    clips = RewardClips(fc, fc.episodes, horizon=args.horizon)
    inputs = RewardInputs(processor, RewardHeadConfig(kind=args.head, horizon=args.horizon),
                          processor.model_config.action_head.action_dim)
    collator = RewardCollator(inputs, seed=0, negatives=0.0, low=0.0, augment=True)
    rng = np.random.default_rng(0)
    draws = [rng.choice(len(clips), args.batch_size, replace=False) for _ in range(batches + 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        collator([clips[int(i)] for i in draws[0]])
        t0 = time.perf_counter()
        for idx in draws[1:]:
            collator([clips[int(i)] for i in idx])
        return 1000 * (time.perf_counter() - t0) / batches
    finally:
        torch.set_num_threads(threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--preset", default="gr00t-n1-2b")
    p.add_argument("--data", help="a frame cache (default: a synthetic one in a tmp dir)")
    p.add_argument("--checkpoint", help="start every run from this policy checkpoint (ours or official; default: "
                   "the preset's random weights, saved once under --work for the 2B preset)")
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--frames", type=int, default=100, help="pictures per synthetic episode")
    p.add_argument("--steps", type=int, default=30, help="measured updates per run (after --warmup)")
    p.add_argument("--warmup", type=int, default=10, help="updates left out of the figures (allocations, cuDNN)")
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32, help="per process")
    p.add_argument("--workers", default="0,4,8", help="loader workers to compare in stage 1 (comma list)")
    p.add_argument("--reward-workers", default="0,8",
                   help="loader workers to compare in stage 2 reward-frozen (comma list; reward-full uses the last)")
    p.add_argument("--prefetch-factor", type=int, default=4)
    p.add_argument("--horizon", type=int, default=4, help="reward clip frames")
    p.add_argument("--head", choices=("mlp", "dit"), default="dit")
    p.add_argument("--runs", default=",".join(RUNS), help=f"which runs (comma list of {', '.join(RUNS)})")
    p.add_argument("--work", help="directory for the cache and the runs (default: a new tmp dir)")
    p.add_argument("--out", help="write the results as JSON here (main process)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available (use --device cpu)")
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = sorted(set(runs) - set(RUNS))
    if unknown:
        p.error(f"--runs {unknown}: allowed {RUNS}")
    work = Path(args.work or os.environ.get("BENCH_TRAIN_WORK") or tempfile.mkdtemp(prefix="bench_train_"))
    if world_size() > 1 and not args.work:
        p.error("--work DIR is needed under accelerate launch (every process must use the same directory)")
    size = preset(args.preset).backbone.vision.image_size
    probe = TrainConfig(out_dir=str(work), cpu=args.device == "cpu")
    with main_process_first(probe):
        cache = Path(args.data) if args.data else write_synthetic_cache(work / f"cache{size}", args.episodes,
                                                                       args.frames, max(size, 96))
    args.base = base_checkpoint(args, cache, work)
    info = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu",
            "processes": world_size(), "preset": args.preset, "batch_size_per_process": args.batch_size,
            "torch": torch.__version__, "cache": str(cache), "steps": args.steps, "warmup": args.warmup}
    results: list[dict] = []

    def report(row: dict) -> None:
        results.append(row)
        if is_main_process():
            print(json.dumps(row), flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps({"info": info, "results": results}, indent=1))

    def attempt(name: str, fn, *a) -> None:
        """One run; out of GPU memory is a result (that run does not fit), not the end of the benchmark."""
        try:
            report(fn(*a))
        except torch.cuda.OutOfMemoryError as e:
            report({"run": name, "error": f"CUDA out of memory: {' '.join(str(e).split())[:200]}"})
        finally:
            import gc
            gc.collect()
            if torch.cuda.is_available():
                report_peak = torch.cuda.max_memory_allocated() / 2**30
                if results and results[-1].get("run") == name:
                    results[-1]["peak_gib"] = round(report_peak, 1)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()

    if "sft-w" in runs:
        for w in (int(v) for v in args.workers.split(",")):
            attempt(f"sft-w{w}", run_sft, args, cache, work, f"sft-w{w}", w, False)
    if "sft-full" in runs:
        attempt("sft-full", run_sft, args, cache, work, "sft-full", int(args.workers.split(",")[-1]), True)
    reward_workers = [int(v) for v in args.reward_workers.split(",")]
    if "reward-frozen" in runs:
        for w in reward_workers:
            attempt(f"reward-frozen-w{w}", run_reward, args, cache, work, f"reward-frozen-w{w}", "frozen", False, w)
        frozen = [r for r in results if r["run"].startswith("reward-frozen") and r.get("steps_per_s")]
        if is_main_process():
            info["host_prepare_ms"] = host_prepare_ms(args, cache)
        if frozen and is_main_process():
            best = max(frozen, key=lambda r: r["steps_per_s"])
            compute_ms = 1000 * (1 - best["data_wait_fraction"]) / best["steps_per_s"]
            info["reward_step_compute_ms"] = compute_ms
            info["workers_to_keep_up"] = info["host_prepare_ms"] / compute_ms
    if "reward-cached" in runs:
        attempt("reward-cached", run_reward, args, cache, work, "reward-cached", "frozen", True, 0)
    if "reward-full" in runs:
        attempt("reward-full", run_reward, args, cache, work, "reward-full", "full", False, reward_workers[-1])
    frozen = [r for r in results if r["run"].startswith("reward-frozen") and r.get("steps_per_s")]
    cached = [r for r in results if r["run"] == "reward-cached" and r.get("steps_per_s")]
    if frozen and cached:
        info["speedup_cached_vs_frozen"] = cached[0]["steps_per_s"] / max(r["steps_per_s"] for r in frozen)
    if is_main_process():
        print(json.dumps({"info": info}), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"info": info, "results": results}, indent=1))
    from gr00t_rlhf_train.stages.cli import end_process_group
    end_process_group()                              # under accelerate launch: leave the group before exit
    return 0


if __name__ == "__main__":
    sys.exit(main())

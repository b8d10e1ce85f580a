"""Benchmark of the frame cache: build time and size per 1,000 frames, loader-only throughput.

    .venv/bin/python bench/bench_cache.py [--dataset PATH] [--sizes 96,224] [--episodes 0-49]
                                          [--batches 20] [--workers 0,2] [--horizons 1,4]

Build: the dataset (read-only) into a temp dir at each size (JPEG quality 90); reports seconds,
frames (distinct pictures) per second, MiB on disk and KiB per 1,000 frames. Loader: RewardClips
over the first size's cache through a DataLoader (batch 64, shuffled, ``collate``), decoding the
JPEGs on the CPU; reports frames/s (batch x horizon pictures handed out per second) after one
warm-up batch, for each worker count and horizon. Consumption (``--step-preset tiny``): one
training step of a reward model of that preset (frozen backbone, DiT head, MSE) on such a batch
(processor + forward + backward + AdamW), frames/s, for comparison. The temp dir is removed at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from gr00t_rlhf_train.data.cache import FrameCache, build_cache, directory_bytes, parse_episodes
from gr00t_rlhf_train.data.samples import RewardClips, collate, worker_context

REPO = Path(__file__).resolve().parents[1]
DEFAULT = Path(os.environ.get("GR00T_RLHF_DATASETS", REPO.parent / "shared" / "datasets")) / "Policy_Data_results_0001"


def bench_build(root: Path, out: Path, size: int, episodes) -> Path:
    t = time.perf_counter()
    build_cache(root, out, image_size=size, episodes=episodes, progress=False)
    seconds = time.perf_counter() - t
    cache = FrameCache(out)
    pictures = sum(e["images"] for e in cache.meta["episodes"].values())
    size_b = directory_bytes(out)
    print(f"build {size:>3} px: {len(cache.episodes)} episodes, {pictures} frames ({len(cache)} rows) in {seconds:.1f} s "
          f"({pictures / seconds:.0f} frames/s); {size_b / 2**20:.1f} MiB, {size_b / 1024 / pictures * 1000:.0f} KiB "
          "per 1,000 frames")
    return out


def bench_loader(cache: FrameCache, workers: int, horizon: int, batches: int, batch_size: int = 64) -> None:
    ds = RewardClips(cache, horizon=horizon)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0), persistent_workers=False,
                        multiprocessing_context=worker_context(workers))
    it = iter(loader)
    next(it)  # warm-up: workers start, first episodes load
    t, n = time.perf_counter(), 0
    for _ in range(batches):
        b = next(it)
        n += b["video.ego_view"].shape[0] * b["video.ego_view"].shape[1]
    seconds = time.perf_counter() - t
    print(f"loader workers={workers} horizon={horizon}: {n / seconds:.0f} frames/s "
          f"({batches * batch_size / seconds:.0f} clips/s, batch {batch_size})")
    del it


def bench_step(cache: FrameCache, preset: str, horizon: int, steps: int = 2, batch_size: int = 64) -> None:
    from gr00t_rlhf_train.data.samples import model_inputs
    from gr00t_rlhf_train.model.policy import Gr00tPolicy
    from gr00t_rlhf_train.model.processor import ModalityConfig, stats_from_lerobot
    from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
    from gr00t_rlhf_train.model.reward_model import RewardModel

    modality = ModalityConfig(**cache.modality_dims())
    policy = Gr00tPolicy.from_config(preset, modality, stats_from_lerobot(cache.stats, modality))
    rm = RewardModel.from_policy(policy, RewardHeadConfig(horizon=horizon))
    opt = torch.optim.AdamW([p for p in rm.parameters() if p.requires_grad], lr=1e-4)
    ds = RewardClips(cache, horizon=horizon)
    batch = collate([ds[i] for i in range(0, len(ds), max(1, len(ds) // batch_size))][:batch_size])
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        inputs = rm.prepare(model_inputs(batch))
        loss = rm.loss(inputs, torch.as_tensor(batch["target"], dtype=torch.float32))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    seconds = sum(times[1:]) / steps  # the first step warms up
    print(f"train step ({preset}, frozen backbone, dit head) horizon={horizon}: {batch_size * horizon / seconds:.0f} "
          f"frames/s ({seconds:.2f} s per batch of {batch_size})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT)
    ap.add_argument("--sizes", default="96,224")
    ap.add_argument("--episodes", default=None, help="e.g. 0-9 (default all)")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--horizons", default="1,4")
    ap.add_argument("--step-preset", default="tiny", help="model preset whose training step is timed ('' skips)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    episodes = parse_episodes(args.episodes) if args.episodes else None
    print(f"dataset {args.dataset}; torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    try:
        caches = [bench_build(args.dataset, tmp / f"c{s}", int(s), episodes) for s in args.sizes.split(",")]
        cache = FrameCache(caches[0])
        for w in (int(v) for v in args.workers.split(",")):
            for h in (int(v) for v in args.horizons.split(",")):
                bench_loader(cache, w, h, args.batches)
        if args.step_preset:
            for h in (int(v) for v in args.horizons.split(",")):
                bench_step(cache, args.step_preset, h)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Benchmark of the dataset library: reader frames/s (sequential, random) and writer frames/s.

    .venv/bin/python bench/bench_reader.py [--dataset PATH] [--writer-frames 600]

Reader: every row of the first 5 episodes in order (50 Hz rows over 10 fps video: the cache
serves 4 of 5 rows), then 500 random rows of the whole dataset. Writer: 640x480 frames at 30 fps
through DatasetWriter (libx264 veryfast, crf 20) into a temp dir; reports peak RSS growth to show
memory stays bounded (the frames are generated on the fly, not held).
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gr00t_rlhf_train.data import DatasetWriter, LeRobotDataset

REPO = Path(__file__).resolve().parents[1]
DEFAULT = Path(os.environ.get("GR00T_RLHF_DATASETS", REPO.parent / "shared" / "datasets")) / "Reward_New_Data_WithBadEp"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_reader(root: Path) -> None:
    ds = LeRobotDataset(root, warn=False)
    eps = [ds.episode(i) for i in range(5)]
    n, decoded, t = 0, 0, time.perf_counter()
    for ep in eps:
        for r in range(len(ep)):
            ep.frame(r)
            n += 1
        decoded += ep.video().decoded
    dt = time.perf_counter() - t
    print(f"reader sequential: {n / dt:8.0f} rows/s ({n} rows, {decoded} frames decoded, {decoded / dt:.0f} decoded frames/s)")
    ds.close()
    ds = LeRobotDataset(root, warn=False)
    ds.load_all()
    rows = random.Random(0).sample(range(ds.num_frames), 500)
    t = time.perf_counter()
    for i in rows:
        ds.frame(i)
    dt = time.perf_counter() - t
    print(f"reader random:     {len(rows) / dt:8.0f} frames/s ({len(rows)} random rows of {ds.num_frames})")


def bench_writer(frames: int) -> None:
    h, w = 480, 640
    base = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1).astype(np.uint8)
    scene = (0.8 * smooth + 0.2 * base).astype(np.uint8)  # camera-like: structure plus noise
    with tempfile.TemporaryDirectory() as d:
        wr = DatasetWriter.create(Path(d) / "ds", fps=30, image_size=(h, w), vocabulary={0: "bad", 1: "good"})
        ep = wr.start_episode("bench")
        rss0 = rss_mib()
        t = time.perf_counter()
        for i in range(frames):
            ep.add_frame(np.roll(scene, 4 * i, axis=1), [0, 0, 0], [0, 0], i / 30, 1)
            if i == frames // 10:
                rss_early = rss_mib()
        ep.commit()
        dt = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (Path(d) / "ds").rglob("*.mp4"))
        print(f"writer 640x480:    {frames / dt:8.1f} frames/s ({frames} frames, commit included; "
              f"{size / frames / 1024:.0f} KiB/frame; peak RSS +{rss_mib() - rss0:.0f} MiB, "
              f"of which after the first 10%: +{rss_mib() - rss_early:.0f} MiB)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DEFAULT)
    ap.add_argument("--writer-frames", type=int, default=600)
    a = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    if a.dataset.is_dir():
        bench_reader(a.dataset)
    else:
        print(f"reader: skipped ({a.dataset} not found)")
    bench_writer(a.writer_frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())

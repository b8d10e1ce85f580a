"""Benchmark of the keyframe interval (GOP): bytes per frame, encode frames/s, commit remux time.

    MUJOCO_GL=osmesa .venv/bin/python bench/bench_gop.py [--source sim|seed] [--frames 100] [--gops 1 2 10]

Frames come from the simulated robot's ego camera while it drives (``--source sim``), or from the
first episode video of the seed dataset Reward_New_Data_WithBadEp, a real camera, scaled to each
size (``--source seed``); they are made once per size, before any timing, then go through :class:`VideoEncoder` exactly as the recorder uses it
(libx264 ultrafast, crf 20, ``low_latency=True``) into a fragmented MP4, which is then remuxed to
the committed ordinary MP4 (:func:`remux`). Reported per size and GOP: bytes per frame of the
committed file, mean PSNR of the decoded frames against the input, encode frames/s (add + close, wall clock) and the remux time per episode of
``--frames`` frames. Numbers go into docs/datasets.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from gr00t_rlhf_train.data.video import VideoEncoder, psnr, quantize_time, remux

SIZES = [(240, 320), (480, 640)]  # (height, width)
REPO = Path(__file__).resolve().parents[1]
SEED = Path(os.environ.get("GR00T_RLHF_DATASETS", REPO.parent / "shared" / "datasets")) / "Reward_New_Data_WithBadEp"


def seed_frames(size: tuple[int, int], frames: int) -> list[np.ndarray]:
    """The first ``frames`` frames of the seed's first episode video, scaled to ``size`` (h, w)."""
    import av

    path = SEED / "videos/chunk-000/observation.images.ego_view/episode_000000.mp4"
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            out.append(f.reformat(width=size[1], height=size[0], format="rgb24").to_ndarray())
            if len(out) == frames:
                break
    return out


def sim_frames(size: tuple[int, int], frames: int, fps: float) -> list[np.ndarray]:
    """``frames`` ego-camera images of the simulated robot driving in a curve."""
    from gr00t_rlhf_ros.sim.robot import SimConfig, SimRobot

    h, w = size
    out = []
    with SimRobot(seed=0, config=SimConfig(camera_width=w, camera_height=h)) as robot:
        steps = max(1, round(1.0 / (fps * robot.model.opt.timestep)))
        for _ in range(frames):
            robot.set_command(4.0, 3.0, t=1e9)
            robot.step(steps)
            out.append(np.ascontiguousarray(robot.render()))
    return out


def bench(images: list[np.ndarray], gop: int, fps: float, workdir: Path) -> dict:
    frag, final = workdir / f"frag_{gop}.mp4", workdir / f"final_{gop}.mp4"
    t0 = time.perf_counter()
    enc = VideoEncoder(frag, fps, images[0].shape[:2], gop_frames=gop)
    for i, img in enumerate(images):
        enc.add(img, quantize_time(i / fps))
    enc.close()
    t1 = time.perf_counter()
    remux(frag, final)
    t2 = time.perf_counter()
    import av

    with av.open(str(final)) as c:
        quality = np.mean([min(psnr(f.to_ndarray(format="rgb24"), img), 99.0) for f, img in zip(c.decode(video=0), images)])
    return {"gop": gop, "bytes_per_frame": final.stat().st_size / len(images), "encode_fps": len(images) / (t1 - t0),
            "remux_ms": 1000 * (t2 - t1), "psnr": quality}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=["sim", "seed"], default="sim")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--gops", type=int, nargs="+", default=[1, 2, 10])
    ap.add_argument("--repeats", type=int, default=3, help="encode each case this often, keep the fastest")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        for size in SIZES:
            images = sim_frames(size, args.frames, args.fps) if args.source == "sim" else seed_frames(size, args.frames)
            rows = []
            for gop in args.gops:
                runs = [bench(images, gop, args.fps, Path(d)) for _ in range(args.repeats)]
                best = max(runs, key=lambda r: r["encode_fps"])
                best["remux_ms"] = min(r["remux_ms"] for r in runs)
                rows.append(best)
            base = next((r for r in rows if r["gop"] == max(args.gops)), rows[-1])
            for r in rows:
                print(f"{args.source} {len(images)} frames {size[1]}x{size[0]}  GOP {r['gop']:>2}  {r['bytes_per_frame'] / 1024:7.1f} KiB/frame "
                      f"(x{r['bytes_per_frame'] / base['bytes_per_frame']:.2f} of GOP {base['gop']}, PSNR {r['psnr']:.1f} dB)  "
                      f"encode {r['encode_fps']:6.0f} frames/s  remux {r['remux_ms']:5.1f} ms per {args.frames} frames")


if __name__ == "__main__":
    main()

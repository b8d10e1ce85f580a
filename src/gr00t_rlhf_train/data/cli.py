"""``gr00t-rlhf dataset info|validate PATH``: summary and problems of a dataset (exit 1 on errors);
``gr00t-rlhf dataset cache DATASET OUT``: build the frame cache that training reads (see data/cache.py)."""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from gr00t_rlhf_train.data.errors import DatasetError, DatasetQuirkWarning


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="inspect LeRobot v2.0 (GR00T flavour) datasets")
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    sub.required = True
    info = sub.add_parser("info", help="print a summary of a dataset (and its problems)")
    info.add_argument("path", help="dataset root (holds meta/, data/, videos/)")
    info.set_defaults(func=cmd_info)
    val = sub.add_parser("validate", help="check every file of a dataset; exit 1 if any is unusable")
    val.add_argument("path", help="dataset root (holds meta/, data/, videos/)")
    val.add_argument("--no-decode", action="store_true", help="do not decode video frames (faster)")
    val.set_defaults(func=cmd_validate)
    cache = sub.add_parser("cache", help="decode the videos once into a compact JPEG frame cache for training")
    cache.add_argument("path", metavar="DATASET", help="dataset root (holds meta/, data/, videos/)")
    cache.add_argument("out", metavar="OUT", help="cache directory (new or empty; rerun to finish an interrupted build)")
    cache.add_argument("--size", default="96", help="picture size: N (N x N) or HxW, e.g. 96 or 96x160 (default 96)")
    cache.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100 (default 90)")
    cache.add_argument("--episodes", default=None, help="episodes to cache, e.g. 0-39,45 (default all)")
    cache.add_argument("--quiet", action="store_true", help="no progress bar")
    cache.add_argument("--strict", action="store_true",
                       help="stop at the first unreadable episode (default: leave it out with a warning)")
    cache.set_defaults(func=cmd_cache)


def summary(ds) -> list[str]:
    eps = ds.load_all()
    lengths = np.array([len(e) for e in eps])
    durations = np.array([e.times[-1] for e in eps])
    v = eps[0].video(ds.video_keys[0]) if ds.video_keys else None
    voc = ds.vocabulary
    lines = [
        f"dataset     {ds.root}",
        f"format      LeRobot {ds.info.get('codebase_version', '?')}, robot {ds.robot_type}, {ds.fps:g} fps",
        f"episodes    {ds.num_episodes} ({lengths.min()}..{lengths.max()} rows, "
        f"{durations.sum() / 60:.1f} min in all)",
        f"rows        {ds.num_frames} (row rate ~{1 / np.median(np.diff(eps[0].times)):.0f} Hz)" if len(eps[0]) > 1
        else f"rows        {ds.num_frames}",
        f"state       {eps[0].state.shape[1]} values, action {eps[0].action.shape[1]} values",
        f"modality    {', '.join(sorted(ds.modality_slices))}",
        f"tasks       {len(ds.tasks)}: " + "; ".join(f"{i}={t!r}" for i, t in sorted(ds.tasks.items())),
    ]
    if voc is not None:
        lines.append(f"feedback    {voc.key_field}: " + "; ".join(f"{k}={t!r}" for k, t in sorted(voc.texts.items())))
    if v is not None:
        lines.append(f"video       {ds.video_keys[0]}: {v.codec}, {v.size[1]}x{v.size[0]} (WxH)")
    splits = ds.info.get("splits")
    if splits:
        lines.append(f"splits      {splits}")
    return lines


def _report(path: str, with_summary: bool, decode: bool) -> int:
    try:
        from gr00t_rlhf_train.data.validate import validate  # the reader needs PyAV: only where it is used

        rep = validate(path, decode=decode)
    except Exception as e:  # noqa: BLE001 - last resort: one line, never a traceback (a reader bug)
        print(f"error: {path}: unexpected {type(e).__name__} while reading: {' '.join(str(e).split())}", file=sys.stderr)
        print("INVALID: 1 error(s), 0 warning(s)")
        return 1
    if with_summary and rep.dataset is not None and rep.ok:
        try:
            print("\n".join(summary(rep.dataset)))
        except DatasetError as e:
            rep.errors.append(str(e))
    for w in rep.warnings:
        print(f"warning: {_one_line(w)}")
    for e in rep.errors:
        print(f"error: {_one_line(e)}", file=sys.stderr)
    status = "OK" if rep.ok else "INVALID"
    print(f"{status}: {len(rep.errors)} error(s), {len(rep.warnings)} warning(s)")
    return 0 if rep.ok else 1


def _one_line(text: str) -> str:
    """Messages may quote file contents or library errors with newlines: print each as one line."""
    return " ".join(str(text).split())


def cmd_info(args: argparse.Namespace) -> int:
    return _report(args.path, True, decode=False)


def cmd_validate(args: argparse.Namespace) -> int:
    return _report(args.path, False, decode=not args.no_decode)


def cmd_cache(args: argparse.Namespace) -> int:
    from gr00t_rlhf_train.data.cache import FrameCache, build_cache, parse_episodes

    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DatasetQuirkWarning)
            episodes = parse_episodes(args.episodes) if args.episodes is not None else None
            out = build_cache(args.path, args.out, image_size=args.size, episodes=episodes, quality=args.quality,
                              progress=not args.quiet, skip_bad=not args.strict)
            cache = FrameCache(out)
    except (DatasetError, ValueError, OSError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 1
    for w in caught:
        print(f"warning: {_one_line(w.message)}", file=sys.stderr)
    for i, message in sorted(cache.meta.get("skipped", {}).items(), key=lambda kv: int(kv[0])):
        print(f"warning: episode {i} left out of the cache: {_one_line(message)}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    print("\n".join(cache_summary(cache, seconds)))
    return 0


def cache_summary(cache, seconds: float | None = None) -> list[str]:
    """Lines describing a frame cache: episodes, rows, pictures, size on disk and per 1,000 pictures."""
    from gr00t_rlhf_train.data.cache import directory_bytes

    entries = cache.meta["episodes"].values()
    rows, pictures = sum(e["rows"] for e in entries), sum(e["images"] for e in entries)
    size = directory_bytes(cache.path)
    h, w = cache.image_size
    skipped = cache.meta.get("skipped") or {}
    lines = [
        f"cache       {cache.path} (of {cache.meta['source']})",
        f"episodes    {len(cache.episodes)}" + (f" ({len(skipped)} unreadable left out: "
                                                 f"{', '.join(sorted(skipped, key=int))})" if skipped else ""),
        f"frames      {pictures} pictures {h}x{w} (HxW), JPEG quality {cache.meta['settings']['quality']}; "
        f"{rows} rows",
        f"size        {size / 2**20:.1f} MiB on disk, {size / 2**20 / max(pictures, 1) * 1000:.2f} MiB per 1,000 frames",
    ]
    if seconds is not None:
        lines.append(f"time        {seconds:.1f} s")
    return lines

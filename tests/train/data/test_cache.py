"""The frame cache: round trip against the reader, resumable builds, damaged and foreign caches, CLI."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from gr00t_rlhf_train.data import DatasetError, LeRobotDataset
from gr00t_rlhf_train.data import cache as cache_mod
from gr00t_rlhf_train.data.cache import FrameCache, build_cache, parse_episodes, parse_size, resize_frames
from gr00t_rlhf_train.data.cli import register
from gr00t_rlhf_train.data.video import psnr
from synth_dataset import make_dataset

pytestmark = pytest.mark.filterwarnings("ignore::gr00t_rlhf_train.data.DatasetQuirkWarning")


def _numeric_equal(cache: FrameCache, ds: LeRobotDataset, i: int) -> None:
    c, e = cache.episode(i), ds.episode(i)
    np.testing.assert_array_equal(c.times, e.times)
    np.testing.assert_array_equal(c.state, e.state)
    np.testing.assert_array_equal(c.action, e.action)
    np.testing.assert_array_equal(c.reward, e.reward)
    np.testing.assert_array_equal(c.feedback, e.feedback_keys)
    np.testing.assert_array_equal(c.task_index, e.task_indices)
    assert c.task == e.task_texts[0]


def test_round_trip_at_the_source_size(tiny_dataset, tmp_path):
    root, truth = tiny_dataset
    out = build_cache(root, tmp_path / "c", image_size=(64, 96), progress=False)
    cache = FrameCache(out)
    ds = LeRobotDataset(root)
    assert cache.episodes == [0, 1] and len(cache) == ds.num_frames == cache.num_pictures == 17
    assert cache.vocabulary.texts == ds.vocabulary.texts and cache.fps == ds.fps
    assert cache.modality_dims() == {"video": ["ego_view"], "state": {"left_wheel": 1, "right_wheel": 1,
                                     "acceleration": 1}, "action": {"wheel_commands": 2}}
    for i in cache.episodes:
        _numeric_equal(cache, ds, i)
        frames = cache.episode(i).frames(np.arange(len(truth[i].images))).numpy()
        assert frames.shape == (len(truth[i].images), 64, 96, 3) and frames.dtype == np.uint8
        assert min(psnr(a, b) for a, b in zip(frames, truth[i].images)) > 30


def test_round_trip_resized_frames_and_repeated_rows(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    cache = FrameCache(build_cache(root, tmp_path / "c", image_size=32, quality=95, progress=False))
    ds = LeRobotDataset(root)
    ep, src = cache.episode(1), ds.episode(1)
    want = resize_frames(np.stack([src.frame(r) for r in range(len(src))]), (32, 32)).permute(0, 2, 3, 1).numpy()
    got = ep.frames([0, 3, 3, 8]).numpy()  # a repeated row decodes once, comes back twice
    assert got.shape == (4, 32, 32, 3)
    for g, r in zip(got, [0, 3, 3, 8]):
        assert psnr(g, want[r]) > 30
    assert len(ep.jpeg) == len(ep)  # our writer: one row per picture
    with pytest.raises(IndexError, match="episode 1: rows"):
        ep.frames([9])


def test_resume_skips_written_shards_and_adds_episodes(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    make_dataset(root, episodes=3, frames=5)
    out = tmp_path / "c"
    build_cache(root, out, image_size=16, episodes=[0], progress=False)
    shard0 = out / "episode_000000.parquet"
    stamp = shard0.stat().st_mtime_ns

    real = cache_mod._episode_table

    def fail_on_2(ds, ep, *args):
        if ep.index == 2:
            raise KeyboardInterrupt  # the build is killed while episode 2 is written
        return real(ds, ep, *args)

    monkeypatch.setattr(cache_mod, "_episode_table", fail_on_2)
    with pytest.raises(KeyboardInterrupt):
        build_cache(root, out, image_size=16, progress=False)
    with pytest.raises(DatasetError, match=r"cache\.json \[complete\]: the build did not finish"):
        FrameCache(out)
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # .build.lock stays
    assert names == ["cache.json", "episode_000000.parquet", "episode_000001.parquet"]
    monkeypatch.setattr(cache_mod, "_episode_table", real)
    build_cache(root, out, image_size=16, progress=False)  # the same command again finishes it
    cache = FrameCache(out)
    assert cache.episodes == [0, 1, 2] and shard0.stat().st_mtime_ns == stamp
    meta_stamp = (out / "cache.json").stat().st_mtime_ns
    build_cache(root, out, image_size=16, episodes=[1, 2], progress=False)  # all there: nothing is rewritten
    assert (out / "cache.json").stat().st_mtime_ns == meta_stamp


def test_damaged_or_missing_shard_is_named(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    out = build_cache(root, tmp_path / "c", image_size=16, progress=False)
    shard = out / "episode_000001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # truncated copy
    cache = FrameCache(out)
    cache.episode(0)
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet: damaged shard of episode 1"):
        cache.episode(1)
    shard.write_bytes(bytes(len(data)))  # same size, garbage
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet: damaged shard of episode 1"):
        FrameCache(out).episode(1)
    shard.unlink()
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet: shard of episode 1 is missing"):
        FrameCache(out)


def test_missing_or_damaged_cache_json(tmp_path):
    with pytest.raises(DatasetError, match=r"cache\.json: is missing: not a frame cache"):
        FrameCache(tmp_path)
    (tmp_path / "cache.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"cache\.json: unreadable"):
        FrameCache(tmp_path)
    (tmp_path / "cache.json").write_text(json.dumps({"format": "gr00t-rlhf-frame-cache", "version": 99}))
    with pytest.raises(DatasetError, match=r"cache\.json \[version\]: 99"):
        FrameCache(tmp_path)


def test_refuses_a_cache_of_another_dataset_or_settings(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_dataset(a, episodes=1, frames=4)
    make_dataset(b, episodes=2, frames=4)
    out = build_cache(a, tmp_path / "c", image_size=16, progress=False)
    with pytest.raises(DatasetError, match=r"cache\.json \[fingerprint\]: this directory holds a cache of another"):
        build_cache(b, out, image_size=16, progress=False)
    with pytest.raises(DatasetError, match=r"cache\.json \[settings\]: this cache was built with"):
        build_cache(a, out, image_size=24, progress=False)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("x")
    with pytest.raises(DatasetError, match="is not empty and holds no cache.json"):
        build_cache(a, other, image_size=16, progress=False)
    with pytest.raises(DatasetError, match="is inside the dataset"):
        build_cache(a, a / "cache", image_size=16, progress=False)
    assert not (a / "cache").exists()
    assert FrameCache(out).episodes == [0]  # the refused builds touched nothing


def test_bad_arguments_are_one_line_errors(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    with pytest.raises(ValueError, match="image_size"):
        parse_size("big")
    with pytest.raises(ValueError, match=r"image_size \(4, 4\)"):
        parse_size(4)
    assert parse_size("96x160") == (96, 160) and parse_size(64) == (64, 64)
    assert parse_episodes("0-3,7,2") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="'3-1' is not an index or a range"):
        parse_episodes("3-1")
    with pytest.raises(ValueError, match="quality 0"):
        build_cache(root, tmp_path / "c", quality=0, progress=False)
    with pytest.raises(ValueError, match=r"episodes \[5\]: the dataset has episodes 0..1"):
        build_cache(root, tmp_path / "c", episodes=[5], progress=False)


def test_cli_builds_and_summarises(tiny_dataset, tmp_path, capsys):
    import argparse
    root, _ = tiny_dataset
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["dataset", "cache", str(root), str(tmp_path / "c"), "--size", "32", "--episodes", "1",
                              "--quiet"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "episodes    1" in out and "9 pictures 32x32" in out and "MiB per 1,000 frames" in out
    args = parser.parse_args(["dataset", "cache", str(root), str(tmp_path / "d"), "--episodes", "0-x", "--quiet"])
    assert args.func(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: episodes '0-x': '0-x' is not an index or a range like 0-39"]


def test_seed_dataset_two_episodes(datasets_dir, tmp_path):
    root = datasets_dir / "Policy_Data_results_0001"
    out = build_cache(root, tmp_path / "c", image_size=96, episodes=[0, 49], progress=False)
    cache, ds = FrameCache(out), LeRobotDataset(root, warn=False)
    assert cache.episodes == [0, 49] and len(cache) == len(ds.episode(0)) + len(ds.episode(49))
    for i in cache.episodes:
        _numeric_equal(cache, ds, i)
        ep, src = cache.episode(i), ds.episode(i)
        assert len(ep.jpeg) == len(np.unique(ep.frame)) < len(ep) / 3  # 50 Hz rows, 10 fps: each picture once
        rows = np.array([0, len(ep) // 2, len(ep) - 1])
        want = resize_frames(np.stack([src.frame(int(r)) for r in rows]), (96, 96)).permute(0, 2, 3, 1).numpy()
        for g, w in zip(ep.frames(rows).numpy(), want):
            assert psnr(g, w) > 30
    pictures = sum(len(cache.episode(i).jpeg) for i in cache.episodes)
    per_1000 = cache_mod.directory_bytes(out) / pictures * 1000
    assert per_1000 < 2.5 * 2**20  # a whole seed dataset (<= 13,000 pictures) stays well under 64 MiB
    assert os.access(root, os.R_OK) and not list(root.glob("*.tmp-*"))


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA (GPU JPEG decode)")
def test_gpu_decode_matches_cpu(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    ep = FrameCache(build_cache(root, tmp_path / "c", image_size=32, progress=False)).episode(0)
    cpu, gpu = ep.frames([0, 2, 2]), ep.frames([0, 2, 2], device="cuda")
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    assert (gpu.cpu().int() - cpu.int()).abs().max() <= 3  # nvJPEG and libjpeg may round differently


def test_unreadable_episode_stops_the_build_or_is_left_out(tiny_dataset, tmp_path, capsys):
    import argparse
    root, _ = tiny_dataset
    video = root / "videos/chunk-000/observation.images.ego_view/episode_000001.mp4"
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 20])  # truncated: undecodable
    with pytest.raises(DatasetError, match=r"episode_000001\.mp4 \[video\]"):
        build_cache(root, tmp_path / "strict", image_size=16, progress=False)
    cache = FrameCache(build_cache(root, tmp_path / "c", image_size=16, progress=False, skip_bad=True))
    assert cache.episodes == [0] and "episode_000001.mp4 [video]" in cache.meta["skipped"]["1"]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["dataset", "cache", str(root), str(tmp_path / "d"), "--size", "16", "--quiet"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert "episodes    1 (1 unreadable left out: 1)" in captured.out
    assert "warning: episode 1 left out of the cache: " in captured.err and "Traceback" not in captured.err

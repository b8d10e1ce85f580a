"""Corrupted inputs give errors naming the file and the field; the CLI prints them, exit 1."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gr00t_rlhf_train.cli import build_parser, run
from gr00t_rlhf_train.data import cli as data_cli
from gr00t_rlhf_train.data import DatasetError, LeRobotDataset
from gr00t_rlhf_train.data import features as F

def main(argv):
    """The `gr00t-rlhf` CLI with only the dataset commands (no model imports: fast)."""
    parser, sub = build_parser()
    data_cli.register(sub)
    return run(parser, argv)


PARQUET1 = "data/chunk-000/episode_000001.parquet"
VIDEO1 = "videos/chunk-000/observation.images.ego_view/episode_000001.mp4"


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_parquet(tiny_dataset):
    root, _ = tiny_dataset
    truncate(root / PARQUET1)
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet \[data\]: unreadable parquet"):
        LeRobotDataset(root)


def test_truncated_video(tiny_dataset, capsys):
    root, _ = tiny_dataset
    truncate(root / VIDEO1, 0.05)
    ds = LeRobotDataset(root)
    with pytest.raises(DatasetError, match=r"episode_000001\.mp4 \[video\]"):
        ds.episode(1).frame(0)
    assert main(["dataset", "validate", str(root)]) == 1
    err = capsys.readouterr().err
    assert "episode_000001.mp4 [video]" in err and "Traceback" not in err


def test_missing_meta_file(tiny_dataset, capsys):
    root, _ = tiny_dataset
    (root / F.EPISODES).unlink()
    with pytest.raises(DatasetError, match=r"episodes\.jsonl: required meta file is missing"):
        LeRobotDataset(root)
    assert main(["dataset", "info", str(root)]) == 1
    assert "episodes.jsonl" in capsys.readouterr().err


def test_lying_info_json_is_worked_around_or_reported(tiny_dataset):
    root, _ = tiny_dataset
    info = json.loads((root / F.INFO).read_text())
    info["features"][F.EGO_VIEW]["video_info"]["video.codec"] = "av1"
    info["features"][F.STATE]["shape"] = [1]
    info["total_frames"] = 5
    (root / F.INFO).write_text(json.dumps(info))
    ds = LeRobotDataset(root, warn=False)
    ds.episode(0).frame(0)
    assert {"video-codec", "state-width", "info-total_frames"} <= set(ds.quirks.quirks)
    del info["fps"]
    (root / F.INFO).write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"info\.json \[fps\]: missing field"):
        LeRobotDataset(root)


def test_column_shape_contradicting_everything(tiny_dataset):
    root, _ = tiny_dataset
    t = pq.read_table(root / PARQUET1)
    wide = pa.array([[1.0] * 5] * t.num_rows, pa.list_(pa.float32()))
    pq.write_table(t.set_column(t.column_names.index(F.STATE), F.STATE, wide), root / PARQUET1)
    ds = LeRobotDataset(root)
    ds.episode(0)
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet \[observation\.state\]: has 5 values"):
        ds.episode(1)


def test_missing_required_column(tiny_dataset):
    root, _ = tiny_dataset
    for p in sorted((root / "data").rglob("*.parquet")):
        pq.write_table(pq.read_table(p).drop([F.ACTION]), p)
    with pytest.raises(DatasetError, match=r"episode_000000\.parquet \[action\]: column is missing"):
        LeRobotDataset(root)


def test_cli_module_runs_without_traceback(tiny_dataset, tmp_path):
    root, _ = tiny_dataset
    assert main(["dataset", "validate", str(root)]) == 0
    shutil.rmtree(root / "videos")
    bad = subprocess.run([sys.executable, "-m", "gr00t_rlhf_train.cli", "dataset", "info", str(root)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "video of episode 0 is missing" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_info_on_seed_dataset(datasets_dir, capsys):
    assert main(["dataset", "info", str(datasets_dir / "Policy_Data_results_0001")]) == 0
    out = capsys.readouterr().out
    assert "episodes    50" in out and "warning:" in out and "mpeg4" in out

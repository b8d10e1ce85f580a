"""Bad data that loads without a parse error is still caught: NaN/inf, cut videos, mixed rates,
stale stats.json, episode_index, feedback labels; both feedback storage styles read alike."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SEED_DATASETS
from gr00t_rlhf_train.data import DatasetError, LeRobotDataset
from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data.validate import validate
from synth_dataset import make_dataset


def parquet(root, ep):
    return root / F.DATA_PATH.format(episode_chunk=0, episode_index=ep)


def video(root, ep):
    return root / F.VIDEO_PATH.format(episode_chunk=0, video_key=F.EGO_VIEW, episode_index=ep)


def set_column(root, ep, name, values, type_=None):
    p = parquet(root, ep)
    t = pq.read_table(p)
    pq.write_table(t.set_column(t.column_names.index(name), name, pa.array(values, type_)), p)


@pytest.fixture
def three(tmp_path):
    """Three committed episodes of 4, 5 and 6 frames (10 fps, 16x24)."""
    root = tmp_path / "ds"
    make_dataset(root, episodes=3, frames=4, size=(16, 24))
    return root


@pytest.mark.parametrize("column,row,value", [(F.STATE, 2, [0.0, float("nan"), 1.0]),
                                              (F.ACTION, 1, [float("inf"), 0.0]),
                                              (F.TIMESTAMP, 3, float("nan")), (F.REWARD, 0, float("-inf"))])
def test_non_finite_values_name_episode_column_row(three, column, row, value):
    t = pq.read_table(parquet(three, 1))
    values = t.column(column).to_pylist()
    values[row] = value
    set_column(three, 1, column, values, t.schema.field(column).type)
    with pytest.raises(DatasetError, match=rf"episode_000001\.parquet \[{column}\]: episode 1 row {row}: .* not finite"):
        LeRobotDataset(three, warn=False).episode(1)
    rep = validate(three)
    assert len(rep.errors) == 1 and f"episode 1 row {row}" in rep.errors[0]


def test_badly_cut_videos_are_listed_per_episode(tmp_path):
    root = tmp_path / "long"
    make_dataset(root, episodes=3, frames=17, size=(16, 24))  # 17, 18, 19 frames
    short = tmp_path / "short"
    make_dataset(short, episodes=1, frames=4, size=(16, 24))
    shutil.copyfile(video(root, 0), video(root, 2))  # 17 frames for 19 rows: 0.2 s, 11 % missing: a warning
    shutil.copyfile(video(short, 0), video(root, 1))  # 4 frames for 18 rows: 78 % missing: an error
    rep = validate(root)
    assert len(rep.errors) == 1 and "episode 1: the video covers 0.40s of the episode's 1.80s" in rep.errors[0]
    assert any("the video ends 0.20s before the last parquet row" in w for w in rep.warnings)
    shutil.copyfile(video(short, 0), video(root, 2))
    rep = validate(root)
    cut = [e for e in rep.errors if "the video covers" in e]
    assert [("episode 1:" in e, "episode 2:" in e) for e in cut] == [(True, False), (False, True)]


def test_stats_json_of_another_dataset_is_reported_with_its_size(three, tmp_path):
    stats = json.loads((three / F.STATS).read_text())
    data = LeRobotDataset(three, warn=False).compute_stats()
    stats[F.STATE]["mean"] = [m + 3.2 * s for m, s in zip(data[F.STATE]["mean"], data[F.STATE]["std"])]
    (three / F.STATS).write_text(json.dumps(stats))
    rep = validate(three)
    assert rep.ok
    msg = next(w for w in rep.warnings if "stats.json" in w)
    assert "observation.state: mean differs by up to 3.2" in msg and "(std units)" in msg


def test_episode_index_disagreeing_with_episodes_jsonl(three):
    set_column(three, 1, F.EPISODE_INDEX, [2] * 5, pa.int64())
    rep = validate(three)
    assert rep.errors == [f"{parquet(three, 1)} [episode_index]: episode 1 of episodes.jsonl holds episode_index [2] "
                          "from row 0 (5 of 5 rows)"]


def test_an_episode_at_another_rate_is_an_error(three, tmp_path):
    set_column(three, 2, F.TIMESTAMP, [100.0 + i / 30 for i in range(6)], pa.float32())  # 30 Hz rows, 10 fps dataset
    rep = validate(three)
    assert any("episode 2 has rows at 30 Hz, the other episodes at 10 Hz" in e for e in rep.errors), rep.errors
    other = tmp_path / "fast"
    make_dataset(other, episodes=1, frames=30, size=(16, 24), fps=30.0)
    shutil.copyfile(video(other, 0), video(three, 0))
    rep = validate(three)
    assert any("episode 0's video runs at 29.9 fps, info.json says 10" in e for e in rep.errors), rep.errors


def test_rewards_jsonl_with_an_unknown_key_stays_readable(three):
    (three / F.REWARDS).write_text('{"annotation.human.validity1": 0, "feedback": "Doing bad"}\n'
                                   '{"annotation.human.validity1": 1, "feedback": "Doing good"}\n')
    ds = LeRobotDataset(three, warn=False)
    assert ds.episode(0).feedback_texts[0] in ("Doing bad", "Doing good")
    assert "validity1" in ds.quirks.quirks["rewards-vocabulary"].message
    assert validate(three).ok


def test_labels_outside_the_vocabulary_fall_back_to_the_data(three):
    _to_seed_style(three)
    (three / F.REWARDS).write_text('{"annotation.human.validity": 1, "feedback": "Doing good"}\n')
    set_column(three, 0, F.VALIDITY, [1, 1, 7, 7], pa.int64())
    ds = LeRobotDataset(three, warn=False)
    ep = ds.episode(0)
    assert ep.feedback_keys.tolist() == [1, 1, 7, 7] and ep.feedback_texts[2] == "7"
    assert "labels [7]" in ds.quirks.quirks["feedback-unknown"].message
    rep = validate(three)
    assert rep.ok and any("not in the vocabulary" in w for w in rep.warnings)


def test_non_integer_labels_are_an_error(three):
    set_column(three, 1, F.VALIDITY, [0.0, 1.0, 0.5, 1.0, 1.0], pa.float64())
    with pytest.raises(DatasetError, match=r"\[annotation\.human\.validity\]: episode 1 row 2: 0\.5 is not an integer label"):
        LeRobotDataset(three, warn=False).episode(1)
    assert not validate(three).ok


def _to_gr00t_style(root):
    """Rewrite a dataset the GR00T way: feedback texts as tasks, task indices in the validity column."""
    ds = LeRobotDataset(root, warn=False)
    keys = [ds.episode(i).feedback_keys for i in range(ds.num_episodes)]
    tasks = dict(ds.tasks)
    index_of = {t: i for i, t in tasks.items()}
    for k in sorted(ds.vocabulary.texts):
        text = ds.vocabulary.texts[k]
        if text not in index_of:
            index_of[text] = len(tasks)
            tasks[len(tasks)] = text
    (root / F.TASKS).write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in tasks.items()))
    for i, k in enumerate(keys):
        set_column(root, i, F.VALIDITY, [index_of[ds.vocabulary.texts[int(x)]] for x in k], pa.int64())
    return keys


def _to_seed_style(root):
    """Rewrite a dataset the seed way: feedback keys in the validity column."""
    ds = LeRobotDataset(root, warn=False)
    keys = [ds.episode(i).feedback_keys for i in range(ds.num_episodes)]
    for i, k in enumerate(keys):
        set_column(root, i, F.VALIDITY, k.tolist(), pa.int64())
    return keys


def test_both_feedback_styles_give_the_same_keys(three):
    keys = _to_gr00t_style(three)
    ds = LeRobotDataset(three, warn=False)
    for i, k in enumerate(keys):
        assert ds.episode(i).feedback_keys.tolist() == k.tolist()
    assert validate(three).ok
    assert [k.tolist() for k in _to_seed_style(three)] == [k.tolist() for k in keys]
    ds = LeRobotDataset(three, warn=False)
    assert [ds.episode(i).feedback_keys.tolist() for i in range(3)] == [k.tolist() for k in keys]
    assert validate(three).ok


def test_mixed_feedback_column_is_an_error_naming_the_file(three):
    _to_gr00t_style(three)
    tasks = [json.loads(line) for line in (three / F.TASKS).read_text().splitlines()]
    good = next(t["task_index"] for t in tasks if t["task"] == "Doing good")
    instruction = max(t["task_index"] for t in tasks if not t["task"].startswith("Doing"))
    assert {good, instruction}.isdisjoint({0, 1})  # neither is a feedback key: only one reading can fit each
    set_column(three, 1, F.VALIDITY, [good, instruction, instruction, good, good], pa.int64())
    with pytest.raises(DatasetError, match=r"episode_000001\.parquet \[annotation\.human\.validity\]: episode 1: "
                                           r"mixed feedback column"):
        LeRobotDataset(three, warn=False).episode(1)


@pytest.mark.parametrize("name", SEED_DATASETS)
def test_seed_datasets_still_validate(datasets_dir, name):
    rep = validate(datasets_dir / name, decode=False)
    assert rep.ok, rep.errors[:3]
    assert any("video ends" in w and "more)" in w for w in rep.warnings)  # the known shortfall: one summarised warning


def test_missing_ticks_are_a_warning_naming_the_episode(tmp_path):
    """A tick the recorder dropped (stale sensor) leaves a gap that GR00T's torchcodec loader refuses."""
    from gr00t_rlhf_train.data.writer import DatasetWriter
    from gr00t_rlhf_train.feedback import BINARY

    root = tmp_path / "gaps"
    w = DatasetWriter.create(root, fps=10.0, image_size=(16, 24), vocabulary=BINARY)
    for times in ([0.0, 0.1, 0.2, 0.3], [0.0, 0.1, 0.2, 0.5, 0.6]):   # episode 1 misses 0.3 and 0.4
        ep = w.start_episode("Find Blue cube")
        for k, t in enumerate(times):
            ep.add_frame(np.full((16, 24, 3), 30 * k, np.uint8), [0.0, 0.0, 0.0], [0.0, 0.0], t, 1)
        ep.commit()
    w.close()
    rep = validate(root)
    assert rep.ok, rep.errors
    gaps = [m for m in rep.warnings if "tick" in m]
    assert len(gaps) == 1 and "episode 1 misses 2 tick(s)" in gaps[0] and "torchcodec" in gaps[0], rep.warnings

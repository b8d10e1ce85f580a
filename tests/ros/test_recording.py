"""The recorder's plain logic under bad input: nothing kills an episode, everything is counted."""
import math

import numpy as np
import pytest

import bag_factory as bf
from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.msgs import BadMessage
from gr00t_rlhf_ros.recording import (EpisodeRecorder, ProblemLog, RecorderConfig, RecorderError,
                                      check_dataset_matches, error_summary, feed)
from gr00t_rlhf_train.data.reader import LeRobotDataset
from gr00t_rlhf_train.data.writer import DatasetWriter
from gr00t_rlhf_train.feedback import BINARY

C = load_contract()
CAM, IMU, JS, CMD, TASK = (C.topic(k).name for k in ("camera", "imu", "joint_states", "wheel_commands", "task"))
KEYS = {CAM: "camera", IMU: "imu", JS: "joint_states", CMD: "wheel_commands", TASK: "task"}


def _feed(rec, topic, msg, t=0.0):
    return feed(rec, KEYS[topic], msg, t, topic, C.wheel_joints)


def _image(t, **fields):
    msg = bf.image(t, int(t * 10))
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def _recorder(tmp_path, writer=True):
    cfg = RecorderConfig(fps=10, max_wheel_speed=C.max_wheel_speed)
    w = DatasetWriter.create(tmp_path / "ds", cfg.fps, bf.SIZE, BINARY) if writer else None
    return EpisodeRecorder(w, BINARY, cfg, "Find Blue cube")


BAD_IMAGES = {
    "unsupported encoding '16UC1'": dict(encoding="16UC1", step=bf.SIZE[1] * 2),
    "data too short": dict(data=np.zeros(100, np.uint8)),
    "step smaller than width x channels": dict(step=bf.SIZE[1] * 3 - 1),
    "empty image": dict(height=0, width=0, step=0, data=np.zeros(0, np.uint8)),
    "size 64x48, dataset 128x96": dict(height=48, width=64, step=64 * 3, data=np.zeros(48 * 64 * 3, np.uint8)),
}


@pytest.mark.parametrize("reason", list(BAD_IMAGES))
def test_bad_image_is_rejected_before_it_becomes_the_latest(tmp_path, reason):
    rec = _recorder(tmp_path)
    _feed(rec, CAM, _image(1.0))
    good = rec.latest_image()
    with pytest.raises(BadMessage) as e:
        _feed(rec, CAM, _image(1.1, **BAD_IMAGES[reason]))
    assert e.value.reason == reason and CAM in str(e.value)
    np.testing.assert_array_equal(rec.latest_image(), good)


def test_image_size_is_checked_only_against_an_open_dataset(tmp_path):
    rec = _recorder(tmp_path, writer=False)
    _feed(rec, CAM, _image(1.0, **BAD_IMAGES["size 64x48, dataset 128x96"]))  # no dataset yet: any size
    assert rec.camera_size == (48, 64)


@pytest.mark.parametrize("topic,msg,reason", [
    (IMU, bf.imu(1.0, math.nan), "non-finite linear_acceleration"),
    (IMU, bf.imu(1.0, math.inf), "non-finite linear_acceleration"),
    (IMU, bf.imu(1.0, 1e300), "linear_acceleration overflows float32"),
    (JS, bf.joints(1.0, math.nan, 0.0), "non-finite velocity"),
    (JS, bf.joints(1.0, 0.0, 1e40), "non-finite velocity"),
    (CMD, bf.command(math.nan, 0.0), "non-finite command"),
    (TASK, bf.string("  "), "empty task"),
])
def test_bad_values_are_rejected_with_a_reason(tmp_path, topic, msg, reason):
    rec = _recorder(tmp_path)
    with pytest.raises(BadMessage) as e:
        _feed(rec, topic, msg)
    assert e.value.reason == reason and topic in str(e.value)
    assert rec.current_task == "Find Blue cube"


def test_commands_are_clamped_as_the_robot_applies_them(tmp_path):
    rec = _recorder(tmp_path)
    assert _feed(rec, CMD, bf.command(1e40, -7.0)) == f"clamped to +-{C.max_wheel_speed:g} rad/s"
    assert rec._latest["command"][1] == (C.max_wheel_speed, -C.max_wheel_speed)
    assert _feed(rec, CMD, bf.command(1.0, -2.0)) is None


def _drive(rec, t0, t1, bad=()):
    """Good messages from t0 to t1 (camera 10 Hz, sensors 50 Hz), ``bad`` (t, topic, msg) interleaved."""
    events = [(t0 + k / 10, CAM, _image(t0 + k / 10)) for k in range(int((t1 - t0) * 10))]
    events += [(t0 + k / 50, IMU, bf.imu(t0 + k / 50, 0.1)) for k in range(int((t1 - t0) * 50))]
    events += [(t0 + k / 50, JS, bf.joints(t0 + k / 50, 1.0, 1.5)) for k in range(int((t1 - t0) * 50))]
    events += [(t0 + k / 50 + 0.001, CMD, bf.command(2.0, 3.0)) for k in range(int((t1 - t0) * 50))]
    dropped = []
    for t, topic, msg in sorted([*events, *bad], key=lambda e: e[0]):
        rec.poll(t)
        try:
            _feed(rec, topic, msg, t)
        except BadMessage as e:
            dropped.append(e.reason)
    return dropped


def test_episode_goes_on_through_every_bad_message(tmp_path):
    rec = _recorder(tmp_path)
    _drive(rec, 0.0, 1.0)
    rec.start(1.0)
    bad = [(1.23, IMU, bf.imu(1.23, math.nan)), (1.33, JS, bf.joints(1.33, math.nan, 1.0)),
           (1.495, CMD, bf.command(1e40, 1e6))]
    bad += [(1.5 + i / 100, CAM, _image(1.5 + i / 100, **f)) for i, f in enumerate(BAD_IMAGES.values())]
    dropped = _drive(rec, 1.0, 3.0, bad)
    assert len(dropped) == 2 + len(BAD_IMAGES)
    index = rec.stop(3.0)
    ep = LeRobotDataset(tmp_path / "ds", warn=False).episode(index)
    assert len(ep) >= 15 and np.all(np.isfinite(ep.state)) and np.all(np.isfinite(ep.action))
    assert np.abs(ep.action).max() == C.max_wheel_speed      # 1e40 recorded as the robot applied it


def test_undecodable_image_drops_the_tick_not_the_episode(tmp_path):
    rec = _recorder(tmp_path)
    _drive(rec, 0.0, 1.0)
    rec.start(1.0)
    _drive(rec, 1.0, 1.5)

    def broken():
        raise RuntimeError("decoder exploded")
    rec.camera(1.55, broken, size=bf.SIZE)  # e.g. cv_bridge failing at write time
    _drive(rec, 1.7, 2.5)  # the tick at 1.6 takes the broken image
    rec.stop(2.5)
    assert rec.write_drops[("undecodable image", "camera")] >= 1
    assert "RuntimeError: decoder exploded" in rec.write_drop_details[("undecodable image", "camera")]
    assert "dropped (undecodable image camera)" in rec.summary()


def test_salvage_commits_the_frames_already_written(tmp_path):
    rec = _recorder(tmp_path)
    _drive(rec, 0.0, 1.0)
    rec.start(1.0)
    _drive(rec, 1.0, 2.0)
    n = rec.frames_in_episode
    assert n > 0
    index = rec.salvage()
    assert not rec.recording and len(LeRobotDataset(tmp_path / "ds", warn=False).episode(index)) == n
    assert rec.salvage() is None


def test_appending_with_another_fps_or_size_is_refused(tmp_path):
    w = DatasetWriter.create(tmp_path / "ds", 10, (240, 320), BINARY)
    check_dataset_matches(w, 10.0, (240, 320), "/cam")
    with pytest.raises(RecorderError, match=r"recorded at 10 fps, this recorder runs at 30 fps.*"
                                            r"images are 320x240, /cam sends 640x480.*choose another dataset"):
        check_dataset_matches(w, 30.0, (480, 640), "/cam")
    w.info["features"]["observation.state"]["names"] = ["x", "y"]
    with pytest.raises(RecorderError, match="feature observation.state"):
        check_dataset_matches(w, 10.0, (240, 320), "/cam")


def test_problem_log_logs_the_first_of_each_kind_and_counts_all():
    log = ProblemLog()
    assert log.add("dropped", "/imu", "nan") is True
    assert log.add("dropped", "/imu", "nan") is False
    assert log.add("clamped", "/cmd", "clamped") is True
    log.start_episode()
    log.add("dropped", "/imu", "nan")
    assert ProblemLog.summary(log.episode) == "1 dropped on /imu (nan)"
    assert ProblemLog.summary(log.total) == "1 clamped on /cmd (clamped); 3 dropped on /imu (nan)"


def test_error_summary_names_type_message_and_place():
    try:
        {}["x"]
    except KeyError as e:
        s = error_summary(e)
    assert s.startswith("KeyError: 'x' (at test_recording.py:") and "in test_error_summary" in s


def test_guarded_callback_never_raises_and_reports_each_kind_once():
    from gr00t_rlhf_ros.recording import guarded

    problems, lines, seen = ProblemLog(), [], []

    def callback(x):
        if x < 0:
            raise KeyError(x)
        return x * 2
    call = guarded("/topic", callback, problems, lines.append, on_error=lambda x, e: seen.append((x, type(e))) or -1)
    assert call(2) == 4
    assert call(-1) == -1 and call(-2) == -1
    assert seen == [(-1, KeyError), (-2, KeyError)]
    assert len(lines) == 1 and lines[0].startswith("unexpected error in /topic: KeyError: -1 (at test_recording.py:")
    assert problems.total[("errors", "/topic", "KeyError")] == 2

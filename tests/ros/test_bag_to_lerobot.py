"""rosbag2 -> dataset: same frames as the live recorder logic, both storages, clear errors;
single storage files, damaged and cut-off bags, namespaced robots, no rosbags installed."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

import bag_factory as bf
from gr00t_rlhf_ros.bag import BagError
from gr00t_rlhf_ros.bag_to_lerobot import convert, main
from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.msgs import UnsupportedEncoding
from gr00t_rlhf_ros.recording import EpisodeRecorder, RecorderConfig, feed
from gr00t_rlhf_train.data.reader import LeRobotDataset
from gr00t_rlhf_train.data.writer import DatasetWriter
from gr00t_rlhf_train.feedback import BINARY


def _live(messages, root, cfg):
    """What recorder_node does: callbacks push at arrival, a timer polls at 2x fps, services start/stop."""
    c = load_contract()
    keys = {bf.topic_name(k): k for k in ("camera", "joint_states", "imu", "wheel_commands", "task", "human_feedback")}
    services = {bf.service_event_topic(f"{k}_episode"): k for k in ("start", "stop", "discard")}
    writer = DatasetWriter.create(root, cfg.fps, bf.SIZE, BINARY)
    rec = EpisodeRecorder(writer, BINARY, cfg)
    next_poll = 0.0
    for t, topic, _, msg in messages:
        while next_poll < t:  # the timer fires between message arrivals
            rec.poll(next_poll)
            next_poll += 0.5 / cfg.fps
        if topic in services:
            kind = services[topic]
            {"start": lambda: rec.start(t), "stop": lambda: rec.stop(t), "discard": rec.discard}[kind]()
        else:
            feed(rec, keys[topic], msg, t, topic, c.wheel_joints)
    return LeRobotDataset(root, warn=False)


def _same(a: LeRobotDataset, b: LeRobotDataset):
    assert a.num_episodes == b.num_episodes
    for i in range(a.num_episodes):
        ea, eb = a.episode(i), b.episode(i)
        assert len(ea) == len(eb) > 0
        np.testing.assert_array_equal(ea.state, eb.state)
        np.testing.assert_array_equal(ea.action, eb.action)
        np.testing.assert_array_equal(ea.times, eb.times)
        np.testing.assert_array_equal(ea.feedback_keys, eb.feedback_keys)
        assert ea.task_texts == eb.task_texts
        for row in (0, len(ea) // 2, len(ea) - 1):  # same images; the two encoders' settings differ
            diff = ea.frame(row).astype(np.float64) - eb.frame(row)
            assert 10 * np.log10(255 ** 2 / max(np.mean(diff ** 2), 1e-12)) > 40


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_converts_to_what_the_recorder_writes_live(tmp_path, storage):
    msgs = bf.recording()
    bag = bf.write_bag(tmp_path / "bag", msgs, storage)
    cfg = RecorderConfig(fps=10.0)
    report = convert(bag, tmp_path / "from_bag", config=cfg, progress=False)
    assert report.episodes == [0, 1] and report.discarded == 1 and not report.problems, report.summary()
    converted = LeRobotDataset(tmp_path / "from_bag", warn=False)
    live = _live(msgs, tmp_path / "live", cfg)
    _same(converted, live)
    ep0 = converted.episode(0)
    assert len(ep0) == 31  # ticks 1.0, 1.1, ... 4.0 s: 3 s at 10 fps, both ends included, none dropped
    assert ep0.task_texts[0] == "Find Blue cube"
    # feedback: default (good) until 2.5 s, bad until 3.2 s, then good again
    assert list(ep0.feedback_keys[:15]) == [1] * 15 and ep0.feedback_keys[16] == 0 and ep0.feedback_keys[-1] == 1
    assert converted.episode(1).feedback_keys[-1] == 0


def test_images_in_the_dataset_are_the_published_ones(tmp_path):
    msgs = bf.recording(episodes=((1.0, 2.0),), discarded=())
    report = convert(bf.write_bag(tmp_path / "bag", msgs), tmp_path / "ds", progress=False)
    ds = LeRobotDataset(tmp_path / "ds", warn=False)
    ep = ds.episode(report.episodes[0])
    cam = bf.topic_name("camera")
    images = {round(float(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), 3): m for _, topic, _, m in msgs if topic == cam}
    t = 1.0 + ep.times[5]                            # tick time; the newest image at or before it
    expected = max(s for s in images if s <= t + 1e-9)
    got = ep.frame(5).astype(np.float64)
    psnr = {s: 10 * np.log10(255 ** 2 / np.mean((got - m.data.reshape(*bf.SIZE, 3)) ** 2)) for s, m in images.items()}
    assert max(psnr, key=psnr.get) == expected    # the frame is the one published last before the tick
    assert psnr[expected] > 30, psnr[expected]    # within codec error


def test_split_by_gaps_when_there_are_no_service_events(tmp_path):
    msgs = [m for m in bf.recording() if "_service_event" not in m[1]]
    msgs = [m for m in msgs if not (4.0 < m[0] < 7.0)]  # a 3 s pause in everything
    report = convert(bf.write_bag(tmp_path / "bag", msgs), tmp_path / "ds", gap=1.0, progress=False)
    assert report.episodes == [0, 1], report.summary()


def test_bag_without_camera_is_a_clear_error(tmp_path, capsys):
    msgs = bf.recording()
    bag = bf.write_bag(tmp_path / "bag", msgs, skip_topics=("/camera/image_raw",))
    with pytest.raises(BagError, match=r"no camera topic '/camera/image_raw' in the bag.*--topic camera="):
        convert(bag, tmp_path / "ds", progress=False)
    assert main([str(bag), str(tmp_path / "ds2"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no camera topic" in err and "Traceback" not in err
    assert not (tmp_path / "ds").exists()


def test_unknown_image_encoding_is_a_clear_error(tmp_path):
    bag = bf.write_bag(tmp_path / "bag", bf.recording(encoding="yuv422"))
    with pytest.raises(UnsupportedEncoding, match=r"/camera/image_raw: image encoding 'yuv422'"):
        convert(bag, tmp_path / "ds", progress=False)


def test_renamed_topics(tmp_path):
    msgs = [(t, "/front/rgb" if topic == "/camera/image_raw" else topic, ty, m) for t, topic, ty, m in bf.recording()]
    bag = bf.write_bag(tmp_path / "bag", msgs)
    report = convert(bag, tmp_path / "ds", topics={"camera": "/front/rgb"}, progress=False)
    assert len(report.episodes) == 2


def test_existing_dataset_needs_append(tmp_path):
    bag = bf.write_bag(tmp_path / "bag", bf.recording())
    convert(bag, tmp_path / "ds", progress=False)
    with pytest.raises(Exception, match="--append"):
        convert(bag, tmp_path / "ds", progress=False)
    report = convert(bag, tmp_path / "ds", append=True, progress=False)
    assert report.episodes == [2, 3]
    assert LeRobotDataset(tmp_path / "ds", warn=False).num_episodes == 4


# ------------------------------------------------------------------ bag paths, damage, namespaces

def _storage_file(bag):
    return next(f for f in bag.iterdir() if f.suffix in (".mcap", ".db3"))


def _two_episode_bag(tmp_path, storage="mcap", name="bag", **kw):
    return bf.write_bag(tmp_path / name, bf.recording(**kw), storage)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_single_storage_file_converts_like_its_directory(tmp_path, storage, capsys):
    bag = _two_episode_bag(tmp_path, storage)
    report = convert(_storage_file(bag), tmp_path / "ds", progress=False)
    assert report.episodes == [0, 1] and report.discarded == 1 and not report.problems, report.summary()
    assert main([str(_storage_file(bag)), str(tmp_path / "ds2"), "--no-progress"]) == 0
    assert main([str(bag / "metadata.yaml"), str(tmp_path / "ds3"), "--no-progress"]) == 0
    assert "2 episodes" in capsys.readouterr().out
    _same(LeRobotDataset(tmp_path / "ds2", warn=False), LeRobotDataset(tmp_path / "ds3", warn=False))


@pytest.mark.parametrize("damage, says", [
    ("missing", "metadata.yaml is missing"),
    ("empty", "metadata.yaml is empty"),
    ("broken", "metadata.yaml is not valid YAML"),
    ("foreign", "metadata.yaml has no rosbag2_bagfile_information"),
])
def test_damaged_metadata_is_named_and_the_storage_file_read(tmp_path, damage, says):
    bag = _two_episode_bag(tmp_path)
    meta = bag / "metadata.yaml"
    if damage == "missing":
        meta.unlink()
    else:
        meta.write_text({"empty": "", "broken": "rosbag2_bagfile_information: {version: [9\n",
                         "foreign": "name: not a bag\n"}[damage])
    report = convert(bag, tmp_path / "ds", progress=False)
    assert report.episodes == [0, 1], report.summary()
    assert says in report.problems[0] and f"ros2 bag reindex {bag}" in report.problems[0], report.problems
    assert str(meta) in report.problems[0]


def test_missing_metadata_with_several_storage_files_says_reindex(tmp_path, capsys):
    bag = _two_episode_bag(tmp_path)
    f = _storage_file(bag)
    shutil.copy(f, bag / "bag_1.mcap")
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=rf"metadata.yaml is missing.*`ros2 bag reindex {bag}`.*2 storage files"):
        convert(bag, tmp_path / "ds", progress=False)
    assert main([str(bag), str(tmp_path / "ds"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "ros2 bag reindex" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bag_cut_off_mid_write_converts_what_was_written(tmp_path, storage):
    bag = _two_episode_bag(tmp_path, storage)
    f = _storage_file(bag)
    original = f.read_bytes()
    f.write_bytes(original[: int(len(original) * 0.6)])  # the recorder died: no footer/summary, a cut record
    cut = f.read_bytes()
    report = convert(bag, tmp_path / "ds", progress=False)
    assert report.episodes[:1] == [0], report.summary()
    assert any("recording cut off" in p and f.name in p for p in report.problems), report.problems
    ds = LeRobotDataset(tmp_path / "ds", warn=False)
    assert len(ds.episode(0)) == 31  # the first episode (1-4 s) lies wholly in the part that was written
    assert f.read_bytes() == cut  # the bag itself is never modified


def test_empty_and_foreign_files_are_clear_errors(tmp_path):
    (tmp_path / "empty.mcap").write_bytes(b"")
    with pytest.raises(BagError, match=r"empty.mcap: empty file"):
        convert(tmp_path / "empty.mcap", tmp_path / "ds", progress=False)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match=r"notes.txt: not a rosbag2 bag"):
        convert(tmp_path / "notes.txt", tmp_path / "ds", progress=False)
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap at all" * 10)
    with pytest.raises(BagError, match=r"junk.mcap: not an MCAP file"):
        convert(tmp_path / "junk.mcap", tmp_path / "ds", progress=False)
    with pytest.raises(BagError, match=r"nowhere: no such bag"):
        convert(tmp_path / "nowhere", tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_a_namespaced_robots_bag_converts_with_namespace(tmp_path):
    bag = _two_episode_bag(tmp_path, namespace="/robot1")
    with pytest.raises(BagError, match=r"no camera topic '/camera/image_raw'.*/robot1/camera/image_raw"):
        convert(bag, tmp_path / "ds", progress=False)
    report = convert(bag, tmp_path / "ds", namespace="/robot1", progress=False)
    assert report.episodes == [0, 1] and report.discarded == 1 and not report.problems, report.summary()
    assert main([str(bag), str(tmp_path / "ds2"), "--namespace", "robot1", "--no-progress"]) == 0
    with pytest.raises(ValueError, match=r"--namespace: 'robot 1' is not a ROS namespace"):
        convert(bag, tmp_path / "ds3", namespace="robot 1", progress=False)


def test_without_rosbags_the_cli_loads_and_bag2lerobot_names_the_missing_package(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['rosbags'] = None  # as in the training profile\n"
        "from gr00t_rlhf_ros import cli\n"
        f"rc = cli.main(['bag2lerobot', {str(tmp_path / 'bag')!r}, {str(tmp_path / 'ds')!r}, '--no-progress'])\n"
        "assert 'rosbags' not in [m.split('.')[0] for m, v in sys.modules.items() if v is not None]\n"
        "sys.exit(rc)\n"
    )
    (tmp_path / "bag").mkdir()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    err = r.stderr.strip()
    assert r.returncode == 1, r.stdout + r.stderr
    assert len(err.splitlines()) == 1 and "'rosbags' package" in err and "requirements" in err, err


def test_commands_are_recorded_as_the_robot_applies_them(tmp_path):
    """A command beyond the contract's wheel-speed limit lands clamped, as recorder_node writes it."""
    cmd = bf.topic_name("wheel_commands")
    msgs = [(t, topic, typ, bf.command(1e6, -1e40) if topic == cmd else m)
            for t, topic, typ, m in bf.recording(episodes=((1.0, 2.0),), discarded=())]
    report = convert(bf.write_bag(tmp_path / "bag", msgs), tmp_path / "ds", progress=False)
    ep = LeRobotDataset(tmp_path / "ds", warn=False).episode(report.episodes[0])
    limit = load_contract().max_wheel_speed
    assert report.frames == len(ep) > 0
    moving = ep.action[np.abs(ep.action).sum(1) > 0]
    assert len(moving) and np.all(moving == [limit, -limit])


def test_keyframe_interval_is_a_parameter(tmp_path, capsys):
    import av

    msgs = bf.recording(episodes=((1.0, 2.0),), discarded=())
    bag = bf.write_bag(tmp_path / "bag", msgs)
    assert main([str(bag), str(tmp_path / "bad"), "--gop-frames", "0", "--no-progress"]) == 1
    assert "gop_frames=0 must be a positive integer" in capsys.readouterr().err
    assert main([str(bag), str(tmp_path / "ds"), "--gop-frames", "3", "--no-progress"]) == 0
    ds = LeRobotDataset(tmp_path / "ds", warn=False)
    with av.open(str(ds.episode(0).video().path)) as c:
        keyframes = [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.size]
    assert keyframes[:7] == [True, False, False, True, False, False, True]

"""The drive run's summary line and video writer (plain Python; over DDS in test_drive_policy.py)."""
import threading
import time

import av
import numpy as np

from gr00t_rlhf_ros.drive_session import RunLog, VideoSink


def test_summary_line_of_a_reached_goal():
    log = RunLog()
    assert log.on_ground_truth({"task": "Find Blue cube", "success": False, "time": 3.0, "goal_distance": 1.2}) is False
    assert log.on_ground_truth({"task": "Find Blue cube", "success": True, "time": 9.25, "goal_distance": 0.4})
    assert not log.on_ground_truth({"task": "Find Blue cube", "success": True, "time": 9.5, "goal_distance": 0.4})
    for v in (0.5, 1.0, float("nan")):
        log.on_reward(v)
    assert log.line(12.0, "video x.mp4") == ("drive: task 'Find Blue cube': reached in 9.2 s; mean reward 0.750 "
                                             "(2 values); video x.mp4")
    assert log.rewards_dropped == 1


def test_summary_line_when_not_reached_and_without_reward_or_simulator():
    log = RunLog()
    log.on_ground_truth({"task": "Find Red cylinder", "success": False, "time": 4.0, "goal_distance": 2.345})
    assert log.line(30.0, "v") == ("drive: task 'Find Red cylinder': not reached (2.35 m to go) after 30.0 s; "
                                   "mean reward n/a (no reward model); v")
    real = RunLog()
    real.on_task("Find Blue cube")
    assert "reached: unknown (no simulator ground truth) after 5.0 s" in real.line(5.0, "v")
    assert real.to_dict(5.0)["reached"] is None and real.task == "Find Blue cube"


def _frame(i, h=48, w=64):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, (4 * i) % w] = 255
    return img


def test_video_is_written_and_decodes(tmp_path):
    sink = VideoSink(tmp_path / "run" / "drive.mp4", fps=10)
    for i in range(20):
        assert sink.offer(lambda i=i: _frame(i), i / 10)
        time.sleep(0.01)
    written = sink.close()
    assert written == str(tmp_path / "run" / "drive.mp4") and not sink.staged.exists()
    with av.open(written) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == sink.frames == 20 and frames[0].shape == (48, 64, 3)
    assert "video" in sink.describe(written) and "20 frames" in sink.describe(written)


def test_a_slow_writer_drops_frames_and_never_blocks_the_caller(tmp_path):
    sink = VideoSink(tmp_path / "drive.mp4", fps=10, queue_frames=2)
    gate = threading.Event()

    def slow(i):
        gate.wait(5)        # a disk that hangs
        return _frame(i)
    t0 = time.monotonic()
    accepted = [sink.offer(lambda i=i: slow(i), i / 10) for i in range(50)]
    assert time.monotonic() - t0 < 0.5                       # offer never waits for the writer
    assert sum(accepted) <= 3 and sink.dropped["writer behind"] == 50 - sum(accepted)
    gate.set()
    assert sink.close() is not None and sink.frames == sum(accepted)


def test_frames_of_another_size_are_dropped_and_odd_sizes_cropped(tmp_path):
    sink = VideoSink(tmp_path / "drive.mp4", fps=10)
    sink.offer(lambda: _frame(0, 47, 63), 0.0)
    sink.offer(lambda: _frame(1, 100, 100), 0.1)
    sink.offer(lambda: _frame(2, 47, 63), 0.2)
    written = sink.close()
    assert sink.frames == 2 and sink.dropped == {"size changed": 1}
    with av.open(written) as c:
        assert (c.streams.video[0].height, c.streams.video[0].width) == (46, 62)


def test_no_frame_no_video(tmp_path):
    sink = VideoSink(tmp_path / "drive.mp4", fps=10)
    assert sink.close() is None and sink.describe(None) == "no video (no frame received)"
    assert not (tmp_path / "drive.mp4").exists()

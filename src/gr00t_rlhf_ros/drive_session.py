"""What ``gr00t-rlhf drive`` keeps of a run: the video, the one-line summary, stop-at-goal.

An rclpy node *inside the CLI process* (not one of the graph's nodes, so ``ros2 launch`` users keep
rviz and ``ros2 bag`` instead) listens to the graph it launched:

- ``reward/overlay`` (the ego camera with the reward drawn on it; ``camera/image_raw`` when there is
  no reward model) -> ``runs/<time>/drive.mp4``;
- ``reward`` -> the mean reward; ``sim/ground_truth`` -> task, reached or not, time to the goal;
  ``task`` -> the instruction on a real robot.

It cannot stall the robot: it is a separate process from every node, its subscriptions only
put the message into a bounded queue (``put_nowait``: a full queue drops the frame and counts
it), and a writer thread decodes and encodes (PyAV, through the dataset writer's
:class:`VideoEncoder`). A slow disk therefore drops video frames and never delays a callback, a
node or DDS. The video is staged as a fragmented MP4 (readable up to its last frame even if the
process is killed) and finished by a packet-copy remux into ``drive.mp4`` when the run ends
(duration, Ctrl-C, the goal reached, a node failing).

``RunLog`` and ``VideoSink`` are plain Python (tested without ROS); ``SessionNode`` is the rclpy shell.
"""
from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

VIDEO_NAME = "drive.mp4"


# ---------------------------------------------------------------------------- summary

@dataclass
class RunLog:
    """Accumulates what the summary line says. Thread-safe enough: one writer (the executor)."""

    task: str | None = None
    ground_truth: dict | None = None
    reached_at: float | None = None        # sim time of the first success
    reward_sum: float = 0.0
    reward_count: int = 0
    rewards_dropped: int = 0               # non-finite values
    started: float = field(default_factory=time.monotonic)

    def on_ground_truth(self, gt: dict) -> bool:
        """Record a ground-truth dict; True the first time it says success."""
        self.ground_truth = gt
        self.task = gt.get("task") or self.task
        if gt.get("success") and self.reached_at is None:
            self.reached_at = float(gt.get("time", time.monotonic() - self.started))
            return True
        return False

    def on_reward(self, value: float) -> None:
        if math.isfinite(value):
            self.reward_sum += value
            self.reward_count += 1
        else:
            self.rewards_dropped += 1

    def on_task(self, text: str) -> None:
        if text.strip() and self.ground_truth is None:
            self.task = text

    @property
    def mean_reward(self) -> float | None:
        return self.reward_sum / self.reward_count if self.reward_count else None

    def to_dict(self, elapsed: float) -> dict:
        gt = self.ground_truth
        return {
            "task": self.task,
            "reached": None if gt is None else self.reached_at is not None,
            "time_to_goal_s": self.reached_at,
            "elapsed_s": round(elapsed, 2),
            "goal_distance_m": None if gt is None else gt.get("goal_distance"),
            "collisions": None if gt is None else gt.get("collisions"),
            "mean_reward": self.mean_reward,
            "rewards": self.reward_count,
        }

    def line(self, elapsed: float, video: str) -> str:
        """The one-line summary: task, reached or not, time, mean reward (and where the video is)."""
        d = self.to_dict(elapsed)
        task = repr(d["task"]) if d["task"] else "(no task seen)"
        if d["reached"] is None:
            outcome = f"reached: unknown (no simulator ground truth) after {elapsed:.1f} s"
        elif d["reached"]:
            outcome = f"reached in {d['time_to_goal_s']:.1f} s"
        else:
            outcome = f"not reached ({d['goal_distance_m']:.2f} m to go) after {elapsed:.1f} s"
        reward = (f"mean reward {d['mean_reward']:.3f} ({d['rewards']} values)" if d["mean_reward"] is not None
                  else "mean reward n/a (no reward model)")
        return f"drive: task {task}: {outcome}; {reward}; {video}"


# ---------------------------------------------------------------------------- video

class VideoSink:
    """Frames in (any thread, never blocking), ``drive.mp4`` out (its own thread).

    ``offer(decode, t)``: ``decode()`` returns uint8 [H, W, 3] RGB; it runs on the writer thread.
    The first frame fixes the size; a frame of another size is dropped and counted.
    """

    def __init__(self, path: Path, fps: float, queue_frames: int = 8):
        self.path = Path(path)
        self.staged = self.path.with_name(f".{self.path.name}.part")
        self.fps = fps
        self._queue: queue.Queue = queue.Queue(maxsize=queue_frames)
        self.frames = 0
        self.dropped: dict[str, int] = {}
        self.error: str | None = None
        self._encoder = None
        self._size: tuple[int, int] | None = None
        self._last_t = -math.inf
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="drive video", daemon=True)
        self._thread.start()

    def _drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1

    def offer(self, decode: Callable[[], np.ndarray], t: float) -> bool:
        """Queue a frame shown at ``t`` seconds; False (and counted) when the queue is full."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait((decode, t))
            return True
        except queue.Full:
            self._drop("writer behind")
            return False

    def _work(self) -> None:
        from gr00t_rlhf_train.data.video import VideoEncoder

        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            decode, t = item
            try:
                img = decode()
            except Exception:  # noqa: BLE001 - an undecodable frame costs that frame only
                self._drop("undecodable image")
                continue
            h, w = img.shape[:2]
            even = (h - h % 2, w - w % 2)
            if self._size is None:
                self._size = even
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._encoder = VideoEncoder(self.staged, self.fps, even, crf=23, queue_frames=4)
                except Exception as e:  # noqa: BLE001 - no video, but the drive goes on
                    self.error = f"cannot create {self.staged}: {e}"
                    continue
            if (h - h % 2, w - w % 2) != self._size:
                self._drop("size changed")
                continue
            if t - self._last_t < 1e-3:
                self._drop("not after the previous frame")
                continue
            try:
                self._encoder.add(np.ascontiguousarray(img[:even[0], :even[1]]), t)
                self._last_t = t
                self.frames += 1
            except Exception as e:  # noqa: BLE001 - disk full etc.: stop writing, keep driving
                self.error = f"writing {self.staged}: {e}"

    def close(self) -> str | None:
        """Finish the file (remux into ``path``); -> its path, or None without a video."""
        if self._closed:
            return str(self.path) if self.path.exists() else None
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self._encoder is None:
            return None
        from gr00t_rlhf_train.data.video import remux

        try:
            self._encoder.close()
            if self.frames:
                remux(self.staged, self.path)
        except Exception as e:  # noqa: BLE001 - say so; the staged file is kept for a look
            self.error = self.error or f"finishing {self.path}: {e}"
            return None
        if self.staged.exists() and self.path.exists():
            self.staged.unlink()
        return str(self.path) if self.path.exists() else None

    def describe(self, written: str | None) -> str:
        drops = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items()))
        if written:
            return f"video {written} ({self.frames} frames{', dropped: ' + drops if drops else ''})"
        if self.error:
            return f"no video ({self.error})"
        return "no video (no frame received)"


# ---------------------------------------------------------------------------- the rclpy shell

class DriveSession:
    """Start with ``start()``, end with ``finish()`` -> the summary line. rclpy in its own context.

    ``on_goal`` is called once, ``hold_s`` seconds after the ground truth first says success
    (the video shows the arrival), when ``stop_at_goal`` is set.
    """

    def __init__(self, run_dir: Path | None, namespace: str = "", overlay: bool = True, video: bool = True,
                 stop_at_goal: bool = False, on_goal: Callable[[], None] | None = None, hold_s: float = 1.0,
                 fps: float = 10.0, log: Callable[[str], None] = print):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.namespace = namespace
        self.overlay = overlay
        self.stop_at_goal = stop_at_goal
        self.on_goal = on_goal
        self.hold_s = hold_s
        self.log = log
        self.runlog = RunLog()
        self.video = VideoSink(self.run_dir / VIDEO_NAME, fps) if (video and self.run_dir is not None) else None
        self._t0 = time.monotonic()
        self._goal_timer: threading.Timer | None = None
        self._context = self._node = self._executor = self._thread = None

    def start(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32, String

        from gr00t_rlhf_ros.contract import load_contract
        from gr00t_rlhf_ros.msgs import image_msg_to_rgb
        from gr00t_rlhf_ros.qos import profile

        c = load_contract()
        self._context = rclpy.Context()
        # the launcher owns SIGINT/SIGTERM: rclpy must not install its own handlers here
        rclpy.init(context=self._context, signal_handler_options=SignalHandlerOptions.NO)
        ns = "/" + self.namespace.strip("/") if self.namespace.strip("/") else ""
        self._node = rclpy.create_node("drive_session", namespace=ns or None, context=self._context)
        node = self._node
        if self.video is not None:
            key = "reward_overlay" if self.overlay else "camera"
            topic = c.topic(key)
            name = node.resolve_topic_name(topic.name)

            first = []

            def on_image(msg):
                # the frame's own stamp spaces the video (receive times bunch up when DDS delivers late);
                # an unstamped image falls back to the receive time
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                now = stamp if stamp > 0 else time.monotonic()
                if not first:
                    first.append(now)
                self.video.offer(lambda: image_msg_to_rgb(msg, name), now - first[0])
            node.create_subscription(Image, topic.name, on_image, profile(topic))
        node.create_subscription(Float32, c.topic("reward").name, lambda m: self.runlog.on_reward(float(m.data)),
                                 profile(c.topic("reward")))
        node.create_subscription(String, c.topic("task").name, lambda m: self.runlog.on_task(m.data),
                                 profile(c.topic("task")))
        node.create_subscription(String, c.topic("ground_truth").name, self._on_gt, profile(c.topic("ground_truth")))
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, name="drive session", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - the context was shut down while spinning
            pass

    def _on_gt(self, msg) -> None:
        try:
            gt = json.loads(msg.data)
        except ValueError:
            return
        if self.runlog.on_ground_truth(gt):
            self.log(f"reached {gt.get('goal')} at t={self.runlog.reached_at:.1f} s")
            if self.stop_at_goal and self.on_goal is not None:
                self._goal_timer = threading.Timer(self.hold_s, self.on_goal)
                self._goal_timer.daemon = True
                self._goal_timer.start()

    def finish(self) -> str:
        """Stop listening, finish the video, write ``summary.json``; -> the summary line."""
        elapsed = time.monotonic() - self._t0
        if self._goal_timer is not None:
            self._goal_timer.cancel()
        if self._executor is not None:
            self._executor.shutdown()
            self._node.destroy_node()
            self._context.try_shutdown()
            self._thread.join(5)
            self._executor = None
        written = self.video.close() if self.video is not None else None
        video = self.video.describe(written) if self.video is not None else "no video (--no-video)"
        line = self.runlog.line(elapsed, video)
        if self.run_dir is not None:
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                doc = self.runlog.to_dict(elapsed) | {"video": written, "video_frames": self.video.frames if self.video
                                                      else 0, "video_dropped": self.video.dropped if self.video else {}}
                (self.run_dir / "summary.json").write_text(json.dumps(doc, indent=1))
            except OSError as e:
                line += f" (summary.json not written: {e.strerror or e})"
        return line

"""recorder_node: records episodes straight into a LeRobot (GR00T flavour) dataset.

Subscribes the camera, IMU, joint states, wheel commands, /task and /human_feedback; services
/recorder/{start,stop,discard}_episode (std_srvs/Trigger). Alignment and writing live in
gr00t_rlhf_ros.recording (plain Python, shared with bag_to_lerobot); crash safety lives in the
dataset writer (episodes are staged and committed atomically). On shutdown an open episode is
committed, so Ctrl-C never loses what was recorded.

No message kills the node or the open episode (docs/recording.md, "What bad input does"): a bad
message is dropped where it arrives and counted per (topic, reason), the first of each kind is
logged, the counts go in the stop reply and in the closing summary. Commands are recorded
clamped to the contract's ``max_wheel_speed``, as the robot applies them. An unexpected error in a
callback is caught at the callback's boundary: logged once with where it happened; an error of
the recording timer commits the frames already written and the node goes on without an episode.
"""
from __future__ import annotations

# first: lifecycle notes this process's parent before the slow rclpy imports (see die_with_parent)
from gr00t_rlhf_ros import lifecycle  # isort: skip

import shutil
import threading
from pathlib import Path

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.service_introspection import ServiceIntrospectionState
from std_srvs.srv import Trigger

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.msgs import BadMessage, message_class
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_ros.recording import (INPUT_TOPICS, EpisodeRecorder, ProblemLog, RecorderConfig, RecorderError,
                                      check_dataset_matches, error_summary, feed, guarded)
from gr00t_rlhf_train.data.errors import DatasetError
from gr00t_rlhf_train.data.video import DEFAULT_GOP_FRAMES, check_gop_frames
from gr00t_rlhf_train.data.writer import DatasetWriter
from gr00t_rlhf_train.feedback import load_vocabulary


def _desc(text: str) -> ParameterDescriptor:
    return ParameterDescriptor(description=text)


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder_node")
        self.contract = c = load_contract()
        p = self.declare_parameter
        self.root = Path(p("dataset", "recordings/dataset",
                           _desc("dataset directory: created on the first episode, appended to if it exists")).value)
        vocab = p("vocabulary", "binary", _desc("feedback vocabulary: 'binary', 'score' or a rewards.jsonl path")).value
        cfg = RecorderConfig(
            fps=p("fps", c.dataset_fps, _desc("dataset frames per second (the alignment grid)")).value,
            max_age={
                "camera": p("max_age_camera", 0.35, _desc("a tick whose newest image is older (s) is dropped")).value,
                "joint_states": p("max_age_joint_states", 0.2, _desc("same for joint states (s)")).value,
                "imu": p("max_age_imu", 0.2, _desc("same for the IMU (s)")).value,
            },
            command_timeout=p("command_timeout", c.command_timeout,
                              _desc("a wheel command older than this (s) is recorded as zeros")).value,
            lag=p("lag", 0.15, _desc("how late (s) a message may arrive and still be aligned")).value,
            reset_feedback=p("reset_feedback", True,
                             _desc("start each episode from the vocabulary's default feedback key")).value,
            max_wheel_speed=c.max_wheel_speed,  # recorded as the robot applies them
        )
        task = p("task", "", _desc("task instruction until one arrives on the task topic")).value
        self.gop_frames = p("gop_frames", DEFAULT_GOP_FRAMES,
                            _desc("video keyframe interval in frames (1: every frame, exact for loaders that seek "
                                  "by time, e.g. Isaac-GR00T's)")).value
        check_gop_frames(self.gop_frames, "gop_frames")
        self.vocab = load_vocabulary(vocab)
        self.recorder = EpisodeRecorder(None, self.vocab, cfg, task)
        self.writer: DatasetWriter | None = None
        self.lock = threading.Lock()  # callbacks vs. close(); also safe under a multi-threaded executor
        self.problems = ProblemLog()  # bad inputs and unexpected errors, per (what, where, reason)
        self._logged_write_drops: set = set()
        # resolved names (namespace, remapping) for messages that make sense under a namespace
        self.in_topics = {k: self.resolve_topic_name(c.topic(k).name) for k in INPUT_TOPICS}
        self.in_services = {k: self.resolve_service_name(c.service(f"{k}_episode").name) for k in ("start", "stop", "discard")}

        for key in INPUT_TOPICS:
            spec = c.topic(key)
            self.create_subscription(message_class(spec.type), spec.name,
                                     self._guarded(self.in_topics[key], self._callback(key, self.in_topics[key])), profile(spec))
        for kind, handler in (("start", self._start), ("stop", self._stop), ("discard", self._discard)):
            on_error = self._stop_failed if kind == "stop" else self._service_failed
            srv = self.create_service(Trigger, c.service(f"{kind}_episode").name,
                                      self._guarded(self.in_services[kind], handler, on_error))
            # publish <service>/_service_event so `ros2 bag record` keeps the episode boundaries
            # (bag_to_lerobot --split services reads them back)
            srv.configure_introspection(self.get_clock(), profile(c.qos["events"]), ServiceIntrospectionState.METADATA)
        self.create_timer(0.5 / cfg.fps, self._guarded("recording timer", self._poll, self._poll_failed))
        if (self.root / "meta" / "info.json").is_file():
            self._open_writer()  # now, so a crash left over from last time is dealt with and reported at once
        self.get_logger().info(f"recording into {self.root.resolve()} at {cfg.fps:g} fps; call "
                               f"{self.in_services['start']} to start an episode")

    # ---- inputs: decode little, align later ------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _callback(self, key: str, topic: str):
        def on_message(msg):
            with self.lock:
                try:
                    note = feed(self.recorder, key, msg, self._now(), topic, self.contract.wheel_joints)
                except BadMessage as e:
                    self._problem("dropped", topic, e.reason, str(e))
                    return
                if note is not None:
                    self._problem("clamped", topic, note, f"{topic}: command {[float(v) for v in msg.data]} recorded {note}")
        return on_message

    def _problem(self, what: str, where: str, reason: str, detail: str) -> None:
        """Count one bad input; log only the first of each (what, where, reason): no log floods."""
        if self.problems.add(what, where, reason):
            self.get_logger().warning(f"{detail}: {what}; further ones like it are counted, not logged "
                                      "(counts in the stop reply)")

    # ---- the callback boundary: nothing unexpected escapes, the open episode is never lost ----------
    def _guarded(self, where: str, fn, on_error=None):
        return guarded(where, fn, self.problems, self.get_logger().error, on_error)

    def _service_failed(self, request, response, err: Exception):
        response.success, response.message = False, f"unexpected error: {error_summary(err)}"
        return response

    def _stop_failed(self, request, response, err: Exception):
        """A stop that failed unexpectedly still saves what was written (no second failure later)."""
        self._service_failed(request, response, err)
        index = self._salvage()
        if index is not None:
            response.success = True
            response.message += f"; episode {index} saved with the frames written before it"
        return response

    def _salvage(self) -> int | None:
        """Commit the frames already written (after an unexpected error); None if nothing was kept."""
        with self.lock:
            try:
                return self.recorder.salvage()
            except (RecorderError, DatasetError, OSError, RuntimeError, ValueError) as e:
                self._abort(e)
                return None

    def _poll_failed(self, err: Exception) -> None:
        """The recording timer failed unexpectedly: keep the frames written so far, go on without an episode."""
        index = self._salvage()
        if index is not None:
            self.get_logger().error(f"episode {index} committed with the frames written before the error; "
                                    f"call {self.in_services['start']} to record on")

    # ---- episodes ----------------------------------------------------------------------------------
    def _poll(self):
        with self.lock:
            if not self.recorder.recording:
                return
            try:
                self.recorder.poll(self._now())
            except (DatasetError, OSError) as e:
                self._abort(e)
            self._log_write_drops()

    def _log_write_drops(self) -> None:
        """Ticks dropped at write time (undecodable image, ...): the first of each kind is logged."""
        for key, detail in self.recorder.write_drop_details.items():
            if key not in self._logged_write_drops:
                self._logged_write_drops.add(key)
                reason, source = key
                self.get_logger().warning(f"tick dropped ({reason} {source}): {detail}; further ones are "
                                          "counted in the stop reply")

    def _abort(self, err: Exception) -> None:
        """A write failed (disk full, ...): the writer already stopped the episode; say so loudly."""
        self.get_logger().error(f"recording stopped: {err}")
        try:
            self.recorder.discard()  # the writer already dropped its files; this resets the recorder
        except (RecorderError, DatasetError, OSError):
            pass

    def _open_writer(self) -> DatasetWriter:
        if self.writer is None:
            if (self.root / "meta" / "info.json").is_file():
                self.writer = DatasetWriter.resume(self.root, gop_frames=self.gop_frames)
                self.get_logger().info(f"appending to {self.root} ({self.writer.num_episodes} episodes)")
                rep = self.writer.resume_report
                for idx, n in rep.recovered.items():
                    self.get_logger().warning(f"recovered episode {idx} ({n} frames) left by a crash")
                for idx in rep.rolled_forward:
                    self.get_logger().warning(f"finished committing episode {idx} interrupted by a crash")
                for stage, why in rep.discarded.items():
                    self.get_logger().warning(f"discarded unfinished {stage}: {why}")
            else:
                size = self.recorder.camera_size
                if size is None:
                    raise RecorderError(f"no image on {self.in_topics['camera']} yet: cannot size the video")
                self.writer = DatasetWriter.create(self.root, self.recorder.cfg.fps, size, self.vocab, gop_frames=self.gop_frames,
                                                   robot_type=self.contract.robot_type)
                self.get_logger().info(f"created dataset {self.root} ({size[1]}x{size[0]})")
            self.recorder.writer = self.writer
        return self.writer

    def _start(self, request, response):
        with self.lock:
            created = None
            try:
                if self.recorder.recording:
                    raise RecorderError("an episode is already being recorded; stop or discard it first")
                if self.writer is not None:  # first: a camera of another size has its images dropped as "silent"
                    check_dataset_matches(self.writer, self.recorder.cfg.fps, self.recorder.camera_size,
                                          self.in_topics["camera"])
                silent = self.recorder.silent_sensors(self._now())
                if silent:
                    names = ", ".join(self.in_topics[k] for k in silent)
                    raise RecorderError(f"no recent messages on {names}: is the robot (or sim_node) running?")
                if not self.recorder.current_task.strip():
                    raise RecorderError(f"no task: publish one on {self.in_topics['task']} or set the 'task' parameter")
                if self.writer is None and not (self.root / "meta" / "info.json").is_file():
                    if self.recorder.camera_size is None:
                        raise RecorderError(f"no image on {self.in_topics['camera']} yet: cannot size the video")
                    created = _created_by_create(self.root)
                self._open_writer()
                check_dataset_matches(self.writer, self.recorder.cfg.fps, self.recorder.camera_size, self.in_topics["camera"])
                self.recorder.start(self._now())
                self.problems.start_episode()
                response.success, response.message = True, f"episode {self.writer.num_episodes} started"
            except (RecorderError, DatasetError, OSError, ValueError) as e:
                response.success, response.message = False, str(e)
                if created is not None:
                    self._remove_new_dataset(created)
        self._log_reply(response)
        return response

    def _remove_new_dataset(self, created: Path) -> None:
        """A first start failed after creating the dataset: remove what it made (never an episode)."""
        if self.writer is not None and self.writer.num_episodes > 0:
            return
        self.writer = self.recorder.writer = None
        try:
            if created == self.root.absolute():  # an empty directory before: empty it again
                for child in (self.root.iterdir() if self.root.is_dir() else ()):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            elif created.exists():
                shutil.rmtree(created)
        except OSError as e:
            self.get_logger().warning(f"could not remove the half-made dataset {created}: {e}")

    def _stop(self, request, response):
        with self.lock:
            try:
                index = self.recorder.stop(self._now())
                self._log_write_drops()
                bad = ProblemLog.summary(self.problems.episode)
                response.success = True
                response.message = (f"episode {index} saved: {self.recorder.frames_in_episode} frames "
                                    f"({self.recorder.summary()}); {len(self.recorder.images_in_episode)} distinct "
                                    f"images of {self.recorder.received.get('camera', 0)} received"
                                    + (f"; bad input: {bad}" if bad else ""))
            except (RecorderError, DatasetError, OSError) as e:
                response.success, response.message = False, str(e)
        self._log_reply(response)
        return response

    def _discard(self, request, response):
        with self.lock:
            try:
                self.recorder.discard()
                response.success, response.message = True, "episode discarded"
            except RecorderError as e:
                response.success, response.message = False, str(e)
        self._log_reply(response)
        return response

    def _log_reply(self, response) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes
        if response.success:
            self.get_logger().info(response.message)
        else:
            self.get_logger().error(response.message)

    def close(self) -> None:
        """Commit an open episode (never lose what was recorded); print the bad-input summary."""
        with self.lock:
            if self.recorder.recording:
                try:
                    index = self.recorder.stop(self._now())
                    print(f"[recorder_node] shutdown: episode {index} saved", flush=True)
                except (RecorderError, DatasetError, OSError) as e:
                    print(f"[recorder_node] shutdown: {e}", flush=True)
                except Exception as e:  # noqa: BLE001 - aligning the last ticks failed: keep what was written
                    try:
                        index = self.recorder.salvage()
                        print(f"[recorder_node] shutdown: {error_summary(e)}; episode {index} saved with the "
                              "frames written before", flush=True)
                    except Exception as e2:  # noqa: BLE001
                        print(f"[recorder_node] shutdown: episode lost: {error_summary(e2)}", flush=True)
            bad = ProblemLog.summary(self.problems.total)
            if bad:
                print(f"[recorder_node] shutdown: bad input since start: {bad}", flush=True)


def _created_by_create(root: Path) -> Path | None:
    """What ``DatasetWriter.create(root)`` will create: the highest missing ancestor of ``root`` (a
    mkdir -p), ``root`` itself if it is an empty directory (its contents), None if it holds anything."""
    path = root.absolute()
    if path.exists():
        return path if path.is_dir() and not any(path.iterdir()) else None
    while not path.parent.exists():
        path = path.parent
    return path


def main(args=None):
    # on Ctrl-C / SIGTERM the open episode is committed (RecorderNode.close) before exiting
    # one thread is enough: video encoding runs on the writer's own worker thread
    lifecycle.run(RecorderNode, "recorder_node", args, on_exit=RecorderNode.close,
                  startup_errors=(DatasetError, ValueError, OSError))


if __name__ == "__main__":
    main()

"""recorder_node: records episodes straight into a LeRobot (GR00T flavour) dataset.

Subscribes the camera, IMU, joint states, wheel commands, /task and /human_feedback; services
/recorder/{start,stop,discard}_episode (std_srvs/Trigger). Alignment and writing live in
gr00t_rlhf_ros.recording (plain Python, shared with bag_to_lerobot); crash safety lives in the
dataset writer (episodes are staged and committed atomically). On shutdown an open episode is
committed, so Ctrl-C never loses what was recorded.
"""
from __future__ import annotations

import threading
from pathlib import Path

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.service_introspection import ServiceIntrospectionState
from std_srvs.srv import Trigger

from gr00t_rlhf_ros import lifecycle
from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.msgs import message_class
from gr00t_rlhf_ros.qos import profile
from gr00t_rlhf_ros.recording import INPUT_TOPICS, EpisodeRecorder, RecorderConfig, RecorderError, feed
from gr00t_rlhf_train.data.errors import DatasetError
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
        )
        task = p("task", "", _desc("task instruction until one arrives on /task")).value
        self.vocab = load_vocabulary(vocab)
        self.recorder = EpisodeRecorder(None, self.vocab, cfg, task)
        self.writer: DatasetWriter | None = None
        self.lock = threading.Lock()  # callbacks vs. close(); also safe under a multi-threaded executor
        self._warned: set[str] = set()

        for key in INPUT_TOPICS:
            spec = c.topic(key)
            self.create_subscription(message_class(spec.type), spec.name, self._callback(key, spec.name), profile(spec))
        for kind, handler in (("start", self._start), ("stop", self._stop), ("discard", self._discard)):
            srv = self.create_service(Trigger, c.service(f"{kind}_episode").name, handler)
            # publish <service>/_service_event so `ros2 bag record` keeps the episode boundaries
            # (bag_to_lerobot --split services reads them back)
            srv.configure_introspection(self.get_clock(), profile(c.qos["events"]), ServiceIntrospectionState.METADATA)
        self.create_timer(0.5 / cfg.fps, self._poll)
        if (self.root / "meta" / "info.json").is_file():
            self._open_writer()  # now, so a crash left over from last time is dealt with and reported at once
        self.get_logger().info(f"recording into {self.root.resolve()} at {cfg.fps:g} fps; call "
                               f"{c.service('start_episode').name} to start an episode")

    # ---- inputs: decode little, align later ------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _callback(self, key: str, topic: str):
        def on_message(msg):
            try:
                with self.lock:
                    feed(self.recorder, key, msg, self._now(), topic, self.contract.wheel_joints)
            except ValueError as e:
                if key not in self._warned:  # once per topic: a bad publisher must not flood the log
                    self._warned.add(key)
                    self.get_logger().warning(f"ignoring message: {e} (further ones on {topic} are not logged)")
        return on_message

    # ---- episodes ----------------------------------------------------------------------------------
    def _poll(self):
        with self.lock:
            if not self.recorder.recording:
                return
            try:
                self.recorder.poll(self._now())
            except (DatasetError, OSError) as e:
                self._abort(e)

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
                self.writer = DatasetWriter.resume(self.root)
                self.get_logger().info(f"appending to {self.root} ({self.writer.num_episodes} episodes)")
                rep = self.writer.resume_report
                for idx, n in rep.recovered.items():
                    self.get_logger().warning(f"recovered episode {idx} ({n} frames) left by a crash")
                for idx in rep.rolled_forward:
                    self.get_logger().warning(f"finished committing episode {idx} interrupted by a crash")
                for stage, why in rep.discarded.items():
                    self.get_logger().warning(f"discarded unfinished {stage}: {why}")
            else:
                image = self.recorder.latest_image()
                if image is None:
                    raise RecorderError(f"no image on {self.contract.topic('camera').name} yet: cannot size the video")
                self.writer = DatasetWriter.create(self.root, self.recorder.cfg.fps, image.shape[:2], self.vocab,
                                                   robot_type=self.contract.robot_type)
                self.get_logger().info(f"created dataset {self.root} ({image.shape[1]}x{image.shape[0]})")
            self.recorder.writer = self.writer
        return self.writer

    def _start(self, request, response):
        with self.lock:
            try:
                silent = self.recorder.silent_sensors(self._now())
                if silent:
                    names = ", ".join(self.contract.topic(k).name for k in silent)
                    raise RecorderError(f"no recent messages on {names}: is the robot (or sim_node) running?")
                self._open_writer()
                if not self.recorder.current_task:
                    raise RecorderError(f"no task: publish one on {self.contract.topic('task').name} "
                                        "or set the 'task' parameter")
                self.recorder.start(self._now())
                response.success, response.message = True, f"episode {self.writer.num_episodes} started"
            except (RecorderError, DatasetError, OSError, ValueError) as e:
                response.success, response.message = False, str(e)
        self._log_reply(response)
        return response

    def _stop(self, request, response):
        with self.lock:
            try:
                index = self.recorder.stop(self._now())
                counts = self.recorder.counts
                response.success = True
                response.message = (f"episode {index} saved: {counts.emitted} frames ({counts.summary()}); "
                                    f"{len(self.recorder.images_in_episode)} distinct images of "
                                    f"{self.recorder.received.get('camera', 0)} received")
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
        """Commit an open episode (never lose what was recorded)."""
        with self.lock:
            if self.recorder.recording:
                try:
                    index = self.recorder.stop(self._now())
                    print(f"[recorder_node] shutdown: episode {index} saved", flush=True)
                except (RecorderError, DatasetError, OSError) as e:
                    print(f"[recorder_node] shutdown: {e}", flush=True)


def main(args=None):
    # on Ctrl-C / SIGTERM the open episode is committed (RecorderNode.close) before exiting
    # one thread is enough: video encoding runs on the writer's own worker thread
    lifecycle.run(RecorderNode, "recorder_node", args, on_exit=RecorderNode.close,
                  startup_errors=(DatasetError, ValueError, OSError))


if __name__ == "__main__":
    main()

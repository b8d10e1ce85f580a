"""Fast rollouts: sim_node + expert_node / policy_node (+ recorder_node + sim_human_node) in one process.

No DDS and no rclpy (rollouts also run on a GPU machine without ROS). What the nodes do is
reproduced on one simulated clock, with their code where there is code to share:

- the robot is :class:`~gr00t_rlhf_ros.sim.robot.SimRobot`, stepped to each event's time; sensors
  are sampled at sim_node's rates (camera 10 Hz, IMU 100 Hz, joint states 50 Hz, ground truth
  20 Hz: the contract's ``rate_hz``), all starting at t = 0;
- the expert is :class:`~gr00t_rlhf_ros.expert.ScriptedExpert` on the latest ground truth at
  expert_node's ``control_rate`` (20 Hz);
- a policy drives through policy_node's own pieces: :class:`~gr00t_rlhf_ros.observation.ObservationBuilder`
  gets every message, :class:`~gr00t_rlhf_ros.control.Controller` turns chunks into one clamped
  command per control tick (latency compensation, interpolation, cross-fade, stale inputs -> zero),
  and the inference worker's schedule is kept (it looks for a due replan on each camera frame and
  every ``worker_poll`` s after it, using the newest frame not used yet). Inference takes no
  simulated time unless ``inference_latency`` says so. B environments step in lockstep and the
  model is called ONCE per replan with the observations of every environment due then, batched;
- recording goes through :class:`~gr00t_rlhf_ros.recording.EpisodeRecorder` fed by
  :func:`~gr00t_rlhf_ros.recording.feed`, exactly as recorder_node is fed, stamped with sim time;
  the simulated human (:mod:`.labeler`) presses keys from the 20 Hz ground truth as
  sim_human_node does. Each episode's noiseless truth per frame goes to ``meta/sim_labels.jsonl``.

Camera frames the policy will not read (and that are not recorded) are not rendered: the
observation builder gets a same-sized placeholder so input ages stay exact (a frame the worker
uses after all is rendered when used; ``late_renders`` counts those).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.control import ControlConfig, Controller
from gr00t_rlhf_ros.expert import ExpertConfig, ScriptedExpert
from gr00t_rlhf_ros.observation import ObservationBuilder, input_map
from gr00t_rlhf_ros.recording import EpisodeRecorder, RecorderConfig, RecorderError, check_dataset_matches, feed
from gr00t_rlhf_ros.sim import messages as M
from gr00t_rlhf_ros.sim.labeler import LabelerConfig, SimulatedHuman
from gr00t_rlhf_ros.sim.robot import SimConfig, SimRobot

SIM_LABELS = "meta/sim_labels.jsonl"   # per recorded episode: the simulated human's truth per frame
END_REASONS = ("success", "timeout", "collision")


@dataclass(frozen=True)
class RolloutConfig:
    """One rollout's simulated clock, rates, episode end and driver timing (defaults: the nodes')."""

    max_seconds: float = 30.0            # timeout
    stop_on_collision: bool = False
    hold_after_success: float = 0.0      # keep going (and recording) this long after the first success
    camera_rate: float = 10.0            # sim_node's rates (config/contract.yaml rate_hz)
    imu_rate: float = 100.0
    joint_states_rate: float = 50.0
    ground_truth_rate: float = 20.0
    camera_size: tuple[int, int] = (240, 320)   # (height, width), sim_node's default
    expert_rate: float = 20.0            # expert_node control_rate
    control: ControlConfig = field(default_factory=ControlConfig)   # policy_node's control loop
    worker_poll: float = 0.05            # the inference worker re-checks this often between frames
    inference_latency: float = 0.0       # simulated seconds from observation to chunk
    policy_seed: int | None = 0          # noise seed of every inference (policy_node's seed); None: per episode and time
    sim: SimConfig | None = None         # None: SimConfig() with camera_size

    def __post_init__(self):
        for name in ("max_seconds", "camera_rate", "imu_rate", "joint_states_rate", "ground_truth_rate",
                     "expert_rate", "worker_poll"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"RolloutConfig.{name}: {v!r} must be a positive number")
        for name in ("hold_after_success", "inference_latency"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"RolloutConfig.{name}: {v!r} must be a number >= 0")
        if self.policy_seed is not None and (isinstance(self.policy_seed, bool) or not isinstance(self.policy_seed, int)
                                             or self.policy_seed < 0):
            raise ValueError(f"RolloutConfig.policy_seed: {self.policy_seed!r} must be an integer >= 0 or None")
        h, w = self.camera_size
        if self.sim is not None and (self.sim.camera_height, self.sim.camera_width) != (h, w):
            raise ValueError(f"RolloutConfig.camera_size: {self.camera_size} differs from sim's "
                             f"{(self.sim.camera_height, self.sim.camera_width)}; give one")

    def sim_config(self) -> SimConfig:
        h, w = self.camera_size
        return self.sim or SimConfig(camera_width=int(w), camera_height=int(h))


@dataclass
class EpisodeResult:
    """Metrics of one episode (times in sim seconds, distances in metres)."""

    seed: int
    task: str
    success: bool
    end: str                     # success / timeout / collision
    time_to_goal: float | None
    duration: float
    collisions: int
    path_length: float
    final_distance: float
    final_pose: tuple[float, float, float]
    inference_calls: int = 0
    late_renders: int = 0
    episode_index: int | None = None       # in the dataset, when recorded
    frames: int = 0
    label_agreement: float | None = None   # recorded key == truth, per frame (recorded episodes)
    presses: int = 0
    trace: dict | None = None              # with trace=True: poses [t, x, y, yaw] (20 Hz), commands [t, l, r]

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- drivers

class ExpertDriver:
    """The scripted expert, as expert_node runs it (``ExpertConfig`` fields may be overridden)."""

    kind = "expert"
    name = "expert"

    def __init__(self, **tuning):
        ExpertConfig(**tuning)  # errors name the field
        self.tuning = tuning

    def make(self, robot: SimRobot) -> ScriptedExpert:
        g = robot.config.robot
        cfg = ExpertConfig(**({"wheel_radius": g.wheel_radius, "track": g.track,
                               "max_wheel_speed": robot.config.max_wheel_speed} | self.tuning))
        return ScriptedExpert(robot.layout, cfg)

    def close(self) -> None:
        pass


class PolicyDriver:
    """A policy for rollouts: a Gr00tPolicy, a runtime of ``open_policy`` or a source for it.

    With a Gr00tPolicy (or a local runtime without best-of-N) the observations of all due
    environments go to ``get_action`` as one batch; other runtimes (remote, best-of-N) are called
    once per observation. Observations are checked like ``runtime.act`` checks them.
    """

    kind = "policy"
    name = "policy"

    def __init__(self, policy, device: str = "cpu", cuda_graphs: bool = False):
        from gr00t_rlhf_train.inference.api import InferenceError
        from gr00t_rlhf_train.inference.runtime import open_policy, spec_from_processor

        self._own = False
        if isinstance(policy, (str, Path)):
            policy = open_policy(str(policy), device=device, cuda_graphs=cuda_graphs)
            self._own = True
        self.runtime = policy
        # a runtime's condition / guidance overrides (advantage-conditioned policies; None: the checkpoint's)
        self.sampling = {"condition": getattr(policy, "condition", None), "guidance": getattr(policy, "guidance", None)}
        if hasattr(policy, "get_action") and hasattr(policy, "processor"):   # a Gr00tPolicy
            self.sampling = {"condition": None, "guidance": None}
            self.model, self.spec = policy, spec_from_processor(policy.processor)
        elif hasattr(policy, "act") and hasattr(policy, "spec"):
            batched = getattr(policy, "best_of_n", None) is None and hasattr(policy, "policy")
            self.model, self.spec = (policy.policy if batched else None), policy.spec
        else:
            raise InferenceError(f"PolicyDriver: {type(policy).__name__} is neither a Gr00tPolicy nor a policy runtime")
        self.calls = 0

    @property
    def device(self) -> str:
        return str(getattr(self.model, "device", "remote"))

    def act(self, observations: list[dict], seeds: list[int | None]) -> list[np.ndarray]:
        """Observations (policy_node's snapshots) -> one chunk [T, A] each, in one model call when batched.

        ``seeds[b]`` seeds observation b's noise as ``get_action(obs, seed=seeds[b])`` would alone, so an
        environment's chunk does not depend on the batch it is in (except with CUDA graphs, where the
        batch draws its noise from ``seeds[0]``).
        """
        from gr00t_rlhf_train.inference.api import STAMP_KEY, InferenceError, check_observation, one_line

        if len(seeds) != len(observations):
            raise ValueError(f"PolicyDriver.act: {len(seeds)} seeds for {len(observations)} observations")
        self.calls += 1
        if self.model is None:
            return [np.asarray(self.runtime.act(o, seed=s).actions, np.float32) for o, s in zip(observations, seeds)]
        clean = [{k: v for k, v in check_observation(self.spec, o).items() if k != STAMP_KEY} for o in observations]
        spec, n = self.spec, len(clean)
        if n == 1:
            obs = clean[0]
        else:
            obs = {k: np.stack([c[k] for c in clean]) for k in [*spec.video_keys, *(k for k, _ in spec.state_keys)]}
            obs[spec.language_key] = [c[spec.language_key] for c in clean]
        try:
            if n == 1 or getattr(self.model, "_graphed", None) is not None:
                out = self.model.get_action(obs, seed=seeds[0], **self.sampling)
            else:
                out = self._sample(obs, seeds)
        except Exception as e:  # noqa: BLE001 - one line naming the policy, as the runtime does
            raise InferenceError(f"policy: {one_line(e)}") from None
        names = self.model.processor.modality.action
        actions = np.concatenate([np.asarray(out[f"action.{k}"]) for k in names], axis=-1).astype(np.float32)
        if not np.isfinite(actions).all():
            raise InferenceError("policy: non-finite actions in the chunk")
        return [actions] if n == 1 else list(actions)

    def _sample(self, obs: dict, seeds: list[int | None]) -> dict:
        """``get_action`` of a batch whose noise is drawn per observation (each as if alone)."""
        import torch

        model = self.model
        model.model.eval()
        batch = model.prepare(obs)
        head, dev = model.model.action_head, model.device
        dtype = model.model.backbone.linear.weight.dtype
        noise = torch.cat([head.initial_noise(1, dev, dtype, None if s is None else
                                              torch.Generator(device=dev).manual_seed(int(s))) for s in seeds])
        with torch.no_grad():
            actions = model.model.sample_actions(batch, noise=noise, **self.sampling)    # [B, T, A]
        return model.processor.decode_actions(actions)

    def close(self) -> None:
        if self._own:
            self.runtime.close()


# ---------------------------------------------------------------------------- recording

class _BufferedEpisode:
    """Frames of one environment's episode kept in memory, written to the dataset on commit
    (B environments record at once; a dataset writes one episode at a time)."""

    def __init__(self, sink: "_Sink", task: str):
        self.sink, self.task, self.frames = sink, task, []

    def add_frame(self, image, state, action, timestamp, validity, task=None):
        self.frames.append((image, state, action, float(timestamp), int(validity), task))

    def commit(self) -> int:
        ep = self.sink.writer.start_episode(self.task)
        try:
            for image, state, action, ts, validity, task in self.frames:
                ep.add_frame(image, state, action, ts, validity, task)
            return ep.commit()
        except BaseException:
            ep.discard()
            raise

    def discard(self):
        self.frames = []


class _Sink:
    def __init__(self, writer):
        self.writer = writer
        self.image_size = writer.image_size
        self.fps = writer.fps
        self.info = writer.info

    def start_episode(self, task: str) -> _BufferedEpisode:
        self.episode = _BufferedEpisode(self, task)
        return self.episode


def open_dataset(root: str | Path, fps: float, image_size: tuple[int, int], vocabulary, robot_type: str):
    """A DatasetWriter at ``root``: created, or appended to when it exists and matches (RecorderError if not)."""
    from gr00t_rlhf_train.data.writer import DatasetWriter

    root = Path(root)
    if (root / "meta" / "info.json").is_file():
        writer = DatasetWriter.resume(root)
        check_dataset_matches(writer, fps, image_size, "camera")
        if writer.vocabulary.texts != vocabulary.texts:
            writer.close()
            raise RecorderError(f"cannot append to dataset {root}: its feedback vocabulary {writer.vocabulary.keys} "
                                f"is not the simulated human's {vocabulary.keys}")
        return writer
    return DatasetWriter.create(root, fps, image_size, vocabulary, robot_type=robot_type)


def read_sim_labels(root: str | Path) -> dict[int, dict]:
    """``meta/sim_labels.jsonl`` of a dataset recorded by rollouts: episode index -> its row."""
    path = Path(root) / SIM_LABELS
    if not path.is_file():
        return {}
    rows = {}
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            try:
                row = json.loads(line)
                rows[int(row["episode_index"])] = row
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path} line {i + 1}: {e}") from None
    return rows


# ---------------------------------------------------------------------------- one environment

class _Env:
    """One robot, its driver state, recorder and simulated human, inside a lockstep batch."""

    def __init__(self, index: int, seed: int, task: str, robot: SimRobot, cfg: RolloutConfig, driver, contract,
                 sink: _Sink | None, labeler: LabelerConfig | None, trace: bool):
        self.index, self.seed, self.task, self.robot, self.cfg = index, seed, task, robot, cfg
        self.contract = contract
        robot.reset(seed)
        robot.set_task(task)
        self.done = False
        self.end = "timeout"
        self.t_end = 0.0
        self.success_at: float | None = None
        self.gt: dict | None = None
        self.path = 0.0
        self.last_xy: tuple[float, float] | None = None
        self.calls = 0
        self.late_renders = 0
        self.trace = {"poses": [], "commands": []} if trace else None
        self.expert = driver.make(robot) if driver.kind == "expert" else None
        self.builder = self.controller = None
        self.used_frame = 0
        self.placeholder_frame = -1
        if driver.kind == "policy":
            spec = driver.spec
            inputs = input_map(contract, spec.video_keys, spec.state_keys, spec.language_key)
            self.builder = ObservationBuilder(inputs, image_size=None, task=task)
            cfg.control.check_horizon(spec.action_horizon)
            self.controller = Controller(cfg.control, spec.action_dim)
        self.human = SimulatedHuman(labeler, robot.layout) if labeler is not None else None
        self.recorder = None
        self.sink = _Sink(sink.writer) if sink is not None else None
        if sink is not None:
            sink = self.sink
            rc = RecorderConfig(fps=sink.fps, command_timeout=contract.command_timeout,
                                max_wheel_speed=contract.max_wheel_speed)
            vocab = sink.writer.vocabulary
            self.recorder = EpisodeRecorder(sink, vocab, rc, task)
            feed(self.recorder, "task", M.String(task), 0.0, "task", contract.wheel_joints)
        self.recorder_start = 0.0

    # ---- sensors ------------------------------------------------------------------------------------
    def imu(self, t: float) -> None:
        a = self.robot.imu().linear_acceleration
        msg = M.Imu(M.Header(M.Time.of(t), "imu_link"), M.Vector3(float(a[0]), float(a[1]), float(a[2])))
        if self.builder is not None:
            self.builder.on_imu(msg, t)
        if self.recorder is not None:
            feed(self.recorder, "imu", msg, t, "imu", self.contract.wheel_joints)

    def joints(self, t: float) -> None:
        msg = M.JointState(M.Header(M.Time.of(t), "base_link"), list(self.contract.wheel_joints),
                           [float(v) for v in self.robot.joint_velocities()])
        if self.builder is not None:
            self.builder.on_joint_states(msg, t)
        if self.recorder is not None:
            feed(self.recorder, "joint_states", msg, t, "joint_states", self.contract.wheel_joints)

    def ground_truth(self, t: float) -> None:
        gt = self.robot.ground_truth()
        self.gt = gt
        xy = (gt["x"], gt["y"])
        if self.last_xy is not None:
            self.path += math.hypot(xy[0] - self.last_xy[0], xy[1] - self.last_xy[1])
        self.last_xy = xy
        if self.trace is not None:
            self.trace["poses"].append([t, gt["x"], gt["y"], gt["yaw"]])
        if self.human is not None:
            for press in self.human.observe(gt):
                if self.recorder is not None:
                    feed(self.recorder, "human_feedback", M.Int32(press.key), t, "human_feedback",
                         self.contract.wheel_joints)
        if gt["success"] and self.success_at is None:
            self.success_at = t
        if self.success_at is not None and t - self.success_at >= self.cfg.hold_after_success - 1e-9:
            self.finish("success", t)
        elif self.cfg.stop_on_collision and gt["collisions"] > 0:
            self.finish("collision", t)

    def camera(self, t: float, will_use: bool) -> None:
        if self.builder is None and self.recorder is None:
            return
        render = self.recorder is not None or will_use
        if render:
            msg = M.Image.of(self.robot.render(), t)
        else:
            msg = M.Image(M.Header(M.Time.of(t), "camera_link"), self.cfg.camera_size[0], self.cfg.camera_size[1],
                          _placeholder(self.cfg.camera_size))
        if self.builder is not None:
            frame = self.builder.on_camera(msg, t)
            if not render:
                self.placeholder_frame = frame
        if self.recorder is not None:
            feed(self.recorder, "camera", msg, t, "camera", self.contract.wheel_joints)

    # ---- the policy's worker and control loop --------------------------------------------------------
    def worker_ready(self, t: float) -> bool:
        c = self.controller
        return (self.builder.frame > self.used_frame and c.replan_due(t)
                and not self.builder.stale(t, self.cfg.control.input_timeout))

    def snapshot(self, t: float):
        if self.builder.frame == self.placeholder_frame:  # the worker reads a frame predicted unused
            self.late_renders += 1
            stamp = self.builder.snapshot().t0
            self.builder.on_camera(M.Image.of(self.robot.render(), stamp), stamp)
        obs = self.builder.snapshot()
        self.used_frame = obs.frame
        self.calls += 1
        return obs

    def control(self, t: float) -> None:
        recorded = None
        if self.expert is not None:
            if self.gt is None:
                left, right = 0.0, 0.0
            else:
                left, right = self.expert.act(self.gt)
                # a driver may record another command than it executes (NoisyExpertDriver(dart=True))
                recorded = getattr(self.expert, "recorded", lambda: None)()
        else:
            cmd = self.controller.tick(t, self.builder.stale(t, self.cfg.control.input_timeout))
            left, right = cmd.wheels
        self.robot.set_command(left, right)
        if self.trace is not None:
            self.trace["commands"].append([t, float(left), float(right)])
        if self.recorder is not None:
            rl, rr = recorded if recorded is not None else (left, right)
            feed(self.recorder, "wheel_commands", M.Float64MultiArray([float(rl), float(rr)]), t,
                 "wheel_commands", self.contract.wheel_joints)

    def finish(self, end: str, t: float) -> None:
        if not self.done:
            self.done, self.end, self.t_end = True, end, t

    def result(self, labels_path: Path | None, labeler: LabelerConfig | None, driver_kind: str) -> EpisodeResult:
        gt = self.gt or self.robot.ground_truth()
        t = self.t_end
        r = EpisodeResult(self.seed, self.task, self.success_at is not None, self.end, self.success_at, round(t, 6),
                          int(gt["collisions"]), self.path, float(gt["goal_distance"]),
                          (float(gt["x"]), float(gt["y"]), float(gt["yaw"])), self.calls, self.late_renders,
                          trace=self.trace)
        if self.human is not None:
            r.presses = len(self.human.presses)
        if self.recorder is not None:
            try:
                r.episode_index = self.recorder.stop(t)
            except RecorderError:
                r.episode_index = None
            episode = getattr(self.sink, "episode", None)
            frames = episode.frames if episode is not None and r.episode_index is not None else []
            start = self.recorder_start
            stamps = [start + f[3] for f in frames]
            keys = [f[4] for f in frames]
            r.frames = len(keys)
            if self.human is not None and keys:
                truth = [self.human.truth_at(s) for s in stamps]
                r.label_agreement = float(np.mean([a == b for a, b in zip(keys, truth)]))
                if r.episode_index is not None and labels_path is not None:
                    row = {"episode_index": r.episode_index, "seed": self.seed, "task": self.task, "driver": driver_kind,
                           "timestamps": [round(s, 6) for s in stamps], "truth": truth, "recorded": keys,
                           "labeler": labeler.to_dict()}
                    with open(labels_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
        return r


_PLACEHOLDERS: dict[tuple[int, int], np.ndarray] = {}


def _placeholder(size: tuple[int, int]) -> np.ndarray:
    key = (int(size[0]), int(size[1]))
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = np.zeros(key[0] * key[1] * 3, np.uint8)
    return _PLACEHOLDERS[key]


# ---------------------------------------------------------------------------- the lockstep loop

class _Clock:
    """Event streams at fixed rates from t = 0 (exact times n / rate), plus the worker's checks."""

    def __init__(self, rates: dict[str, float]):
        self.rates = rates
        self.n = dict.fromkeys(rates, 0)

    def next_time(self) -> float:
        return min(self.n[k] / r for k, r in self.rates.items())

    def due(self, t: float) -> list[str]:
        out = [k for k, r in self.rates.items() if self.n[k] / r <= t + 1e-9]
        for k in out:
            self.n[k] += 1
        return out


def _worker_checks(cfg: RolloutConfig) -> list[float]:
    """Offsets after a camera frame at which the worker looks (the frame itself, then every poll)."""
    period = 1.0 / cfg.camera_rate
    offsets, k = [], 0
    while k * cfg.worker_poll < period - 1e-9:
        offsets.append(k * cfg.worker_poll)
        k += 1
    return offsets


def _run_batch(envs: list[_Env], driver, cfg: RolloutConfig) -> float:
    """Step every environment in lockstep until all are done; -> the end time."""
    policy = driver.kind == "policy"
    rates = {"imu": cfg.imu_rate, "joints": cfg.joint_states_rate, "gt": cfg.ground_truth_rate,
             "camera": cfg.camera_rate, "control": cfg.control.control_rate if policy else cfg.expert_rate}
    clock = _Clock(rates)
    offsets = _worker_checks(cfg)
    checks: list[float] = []            # pending worker check times (after the newest frame)
    deliveries: list[tuple[float, _Env, np.ndarray, float]] = []   # (due, env, actions, t0)
    t = 0.0
    started = False
    while True:
        active = [e for e in envs if not e.done]
        if not active:
            return t
        candidates = [clock.next_time()]
        if checks:
            candidates.append(checks[0])
        if deliveries:
            candidates.append(deliveries[0][0])
        t = min(candidates)
        if t > cfg.max_seconds + 1e-9:
            for e in active:
                e.finish("timeout", cfg.max_seconds)
            return cfg.max_seconds
        for e in active:
            e.robot.step_to(t)
        streams = clock.due(t)
        for e in active:
            if "imu" in streams:
                e.imu(t)
            if "joints" in streams:
                e.joints(t)
        if "gt" in streams:
            for e in active:
                e.ground_truth(t)
        if "camera" in streams:
            checks = [t + o for o in offsets] if policy else []
            last_check = t + offsets[-1]
            for e in active:
                use = policy and (e.controller.replan_due(t) or e.controller.replan_due(last_check))
                e.camera(t, use)
        if policy and checks and checks[0] <= t + 1e-9:
            checks.pop(0)
            due = [e for e in active if not e.done and e.worker_ready(t)]
            if due:
                obs = [e.snapshot(t) for e in due]
                seeds = [cfg.policy_seed if cfg.policy_seed is not None else
                         int(np.random.default_rng([e.seed, int(round(t * 1000))]).integers(2 ** 31)) for e in due]
                chunks = driver.act([o.data for o in obs], seeds)
                for e, o, a in zip(due, obs, chunks):
                    deliveries.append((t + cfg.inference_latency, e, a, o.t0))
                deliveries.sort(key=lambda d: d[0])
        while deliveries and deliveries[0][0] <= t + 1e-9:
            _, e, a, t0 = deliveries.pop(0)
            if not e.done:
                e.controller.on_chunk(a, t0, t)
        if "control" in streams:
            for e in active:
                if not e.done:
                    e.control(t)
        if not started:
            started = True
            for e in active:
                if e.recorder is not None:
                    e.recorder.start(t)
                    e.recorder_start = t
        if "camera" in streams:
            for e in active:
                if e.recorder is not None and e.recorder.recording:
                    e.recorder.poll(t)


class RobotPool:
    """Simulated robots kept between :func:`rollout` calls (a renderer costs ~0.25 s to create on a CPU).

    One thread only (each robot's GL context belongs to the thread that rendered first). ``close()``
    frees them; also a context manager.
    """

    def __init__(self):
        self._robots: dict[SimConfig, list[SimRobot]] = {}

    def get(self, n: int, config: SimConfig, seed: int) -> list[SimRobot]:
        robots = self._robots.setdefault(config, [])
        while len(robots) < n:
            robots.append(SimRobot(seed=seed, task=None, config=config))
        return robots[:n]

    def close(self) -> None:
        for robots in self._robots.values():
            for r in robots:
                r.close()
        self._robots.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def rollout(driver, episodes: Sequence[tuple[int, str]], config: RolloutConfig | None = None, batch_size: int = 1,
            record: str | Path | None = None, labeler: LabelerConfig | None = None, trace: bool = False,
            log=None, pool: RobotPool | None = None) -> list[EpisodeResult]:
    """Run ``episodes`` ((layout seed, task) each) with ``driver`` (:class:`ExpertDriver` or :class:`PolicyDriver`),
    ``batch_size`` environments at a time in lockstep -> one :class:`EpisodeResult` each, in order.

    ``record``: a dataset directory (created, or appended to if it matches) that gets every episode,
    labeled by a simulated human with ``labeler`` (without one the vocabulary's default key holds).
    ``pool``: robots to reuse across calls (default: made for this call and closed at its end).
    """
    from gr00t_rlhf_train.feedback import BINARY

    cfg = config or RolloutConfig()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"rollout: batch_size {batch_size!r} must be an integer >= 1")
    if not episodes:
        return []
    for s, task in episodes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"rollout: episode seed {s!r} must be an integer >= 0")
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"rollout: episode task {task!r} must be a non-empty instruction")
    contract = load_contract()
    sink, labels_path = None, None
    if record is not None:
        vocab = labeler.feedback_vocabulary() if labeler is not None else BINARY
        writer = open_dataset(record, contract.dataset_fps, tuple(cfg.camera_size), vocab, contract.robot_type)
        sink, labels_path = _Sink(writer), Path(record) / SIM_LABELS
    own_pool = pool is None
    pool = pool or RobotPool()
    results: list[EpisodeResult] = []
    try:
        robots = pool.get(min(batch_size, len(episodes)), cfg.sim_config(), int(episodes[0][0]))
        for start in range(0, len(episodes), batch_size):
            part = episodes[start:start + batch_size]
            envs = [_Env(start + i, int(s), task, robots[i], cfg, driver, contract, sink, labeler, trace)
                    for i, (s, task) in enumerate(part)]
            t0 = time.perf_counter()
            _run_batch(envs, driver, cfg)
            for e in envs:
                results.append(e.result(labels_path, labeler, getattr(driver, "name", driver.kind)))
            if log:
                ok = sum(r.success for r in results[-len(envs):])
                log(f"rollout: episodes {start + 1}-{start + len(envs)} of {len(episodes)}: {ok}/{len(envs)} reached "
                    f"the goal ({time.perf_counter() - t0:.1f} s)")
    finally:
        if own_pool:
            pool.close()
        if sink is not None:
            sink.writer.close()
    return results


def summarize(results: list[EpisodeResult]) -> dict:
    """Success rate, mean time to goal (successes), collisions and path length per episode."""
    n = len(results)
    if not n:
        return {"episodes": 0}
    times = [r.time_to_goal for r in results if r.time_to_goal is not None]
    return {"episodes": n, "success_rate": sum(r.success for r in results) / n,
            "mean_time_to_goal": float(np.mean(times)) if times else None,
            "collisions_per_episode": float(np.mean([r.collisions for r in results])),
            "mean_path_length": float(np.mean([r.path_length for r in results]))}

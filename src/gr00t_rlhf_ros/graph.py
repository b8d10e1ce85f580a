"""The node graph of a bring-up, described once.

Both ``launch/drive.launch.py`` (on a ROS install) and ``gr00t-rlhf drive`` (plain processes over
DDS, no ROS CLI needed) build their processes from ``drive_graph``, so the two never drift. The
launch arguments are declared here too (``LAUNCH_ARGUMENTS``) and parsed by
``options_from_launch``, so their parsing is unit-tested without ``launch`` installed.

Model sources (``policy``, ``reward_model``): a checkpoint directory, a preset name for the policy (``tiny``,
``gr00t-n1-2b``: random weights), ``tcp://HOST:PORT`` (a ``gr00t-rlhf serve`` server) or ``demo``
(the cached demo models of ``make drive``, simulator only). ``demo`` is resolved to directories by
:func:`with_demo_models` (the caller builds or finds them: ``gr00t_rlhf_ros.demo_models``) before
``drive_graph`` runs, so this module stays free of torch.

Convention: executable name = node name = the node key in its params file. The params files are
keyed ``/**/<node>:`` so they apply in any namespace (``/robot1/sim_node`` too); ``node_params``
reads them with the same wildcard rules as rcl. No rclpy or launch import here.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace

import yaml

from gr00t_rlhf_ros.paths import config_path

MODEL_PRESETS = ("tiny", "small", "gr00t-n1-2b")   # gr00t_rlhf_train.model.configuration.PRESETS
CONDITIONS = ("unconditioned", "good", "bad")   # gr00t_rlhf_train.model.configuration.ADVANTAGE_CONDITIONS
DRIVERS = ("policy", "expert", "none")
DEMO = "demo"          # model source: the cached demo models (simulator only)
AUTO = "auto"          # reward_model: the demo reward model when the policy is the demo one, else none
NO_MODEL = ("", "none")
MAX_CANDIDATES = 64
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
# the simulator's camera limits (SimConfig) and sane rate limits, so a bad value is refused
# before any process starts
CAMERA_WIDTH = (16, 1280)
CAMERA_HEIGHT = (16, 960)
MAX_RATE_HZ = 60.0
_TRUE, _FALSE = ("true", "1"), ("false", "0")
_TCP = re.compile(r"tcp://[^\s:/]+:(\d{1,5})")
_NAMESPACE = re.compile(r"/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*/?")


class DriveOptionError(ValueError):
    """A bad bring-up option. ``str()`` names CLI flags; ``for_launch()`` names launch arguments.

    ``reason`` may refer to other options as ``{opt=value}`` (e.g. ``{sim=true}``): the CLI
    renders that as ``--sim``, the launch file as ``sim:=true``.
    """

    def __init__(self, option: str, value, reason: str):
        self.option, self.value, self.reason = option, value, reason
        super().__init__(self.for_cli())

    def for_cli(self) -> str:
        value = "" if isinstance(self.value, bool) else f" {self.value}"
        return f"{_cli(self.option, self.value)}{value}: {_render(self.reason, _cli_ref)}"

    def for_launch(self) -> str:
        return f"{_launch_ref(self.option, self.value)}: {_render(self.reason, _launch_ref)}"


def _cli(option: str, value=None) -> str:
    if option == "sim":
        return "--sim" if value in (True, "true") else "--no-sim"
    return "--" + option.replace("_", "-")


def _cli_ref(option: str, value: str) -> str:
    return _cli(option, value) if option == "sim" else f"{_cli(option)} {value}".rstrip()


def _launch_ref(option: str, value) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"{option}:={value}"


def _render(text: str, ref) -> str:
    return re.sub(r"\{(\w+)=([^}]*)\}", lambda m: ref(m.group(1), m.group(2)), text)


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph: executable (= node name = params-file node key) and its params file."""

    executable: str
    params_file: str | None = None        # file name under config/, e.g. "sim.yaml"
    parameters: dict = field(default_factory=dict)   # overrides on top of the params file
    required: bool = True                 # if it exits, the whole bring-up stops (robot safety)
    namespace: str = ""                   # "" (the launcher's), "/robot1" or relative "robot1"
    log_level: str | None = None          # --ros-args --log-level


@dataclass(frozen=True)
class DriveOptions:
    """What ``drive`` brings up. Validated on construction (errors name the option)."""

    sim: bool = True                      # start the MuJoCo simulated robot
    driver: str = "policy"                # who publishes wheel_commands: "policy", "expert" (sim only) or "none"
    policy: str = DEMO                    # the policy_node's model source (driver "policy")
    reward_model: str = AUTO              # reward_node's model source; "" / "none": no reward_node
    num_candidates: int = 1               # best-of-N: chunks sampled per inference (> 1 needs a reward model)
    condition: str | None = None          # advantage-conditioned policies (train rl --method acfm): None = checkpoint's
    guidance: float | None = None         # classifier-free guidance of such a policy (None: the checkpoint's)
    seed: int | None = None               # sim layout seed (None: params file default)
    task: str | None = None               # instruction published on task
    record: str | None = None             # dataset directory: also start recorder_node
    vocabulary: str = "binary"            # the recorder's feedback vocabulary
    namespace: str = ""                   # every node's namespace ("" = root / the launcher's)
    use_sim_time: bool = False            # every node's use_sim_time parameter
    log_level: str | None = None          # every node's log level (None: ROS default, info)
    camera_width: int | None = None       # sim camera size and rate (None: config/sim.yaml)
    camera_height: int | None = None
    camera_rate: float | None = None
    record_fps: float | None = None       # dataset frame rate (None: config/recorder.yaml)

    def __post_init__(self):
        if self.driver not in DRIVERS:
            raise DriveOptionError("driver", self.driver, f"not one of {', '.join(DRIVERS)}")
        if self.driver == "expert" and not self.sim:
            raise DriveOptionError("driver", "expert", "the expert needs the simulator's ground truth; "
                                   "use {sim=true} or {driver=none}")
        _check_source("policy", self.policy)
        if self.reward_model != AUTO and self.reward_model.strip().lower() not in NO_MODEL:
            _check_source("reward_model", self.reward_model)
        if self.driver != "policy" and self.policy != DEMO:
            raise DriveOptionError("policy", self.policy, f"only applies with {{driver=policy}} (the driver is "
                                   f"{self.driver})")
        if self.driver == "policy" and self.policy == DEMO and not self.sim:
            raise DriveOptionError("policy", DEMO, "the demo policy is trained in the simulator and must not drive "
                                   "a real robot; give a checkpoint {policy=CHECKPOINT} (or {driver=none})")
        if self.reward_source == DEMO and not self.sim:
            raise DriveOptionError("reward_model", DEMO, "the demo reward model only knows the simulator; give a "
                                   "checkpoint {reward_model=CHECKPOINT} or none {reward_model=none}")
        n = self.num_candidates
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CANDIDATES:
            raise DriveOptionError("num_candidates", n, f"must be an integer from 1 to {MAX_CANDIDATES}")
        if n > 1 and self.driver != "policy":
            raise DriveOptionError("num_candidates", n, "best-of-N picks among policy chunks: it needs "
                                   "{driver=policy}")
        if n > 1 and not self.reward_source:
            raise DriveOptionError("num_candidates", n, "best-of-N needs a reward model to pick the best chunk: "
                                   "add {reward_model=CHECKPOINT} (or {num_candidates=1})")
        if self.condition is not None and self.condition not in CONDITIONS:
            raise DriveOptionError("condition", self.condition, f"not one of {', '.join(CONDITIONS)}")
        g = self.guidance
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g < 0):
            raise DriveOptionError("guidance", g, "must be a finite number >= 0")
        for name in ("condition", "guidance"):
            if getattr(self, name) is not None and self.driver != "policy":
                raise DriveOptionError(name, getattr(self, name), "only applies with {driver=policy}")
        if self.namespace and not _NAMESPACE.fullmatch(self.namespace):
            raise DriveOptionError("namespace", self.namespace,
                                   "not a ROS namespace (tokens of letters, digits and _, e.g. /robot1)")
        if self.log_level is not None and self.log_level not in LOG_LEVELS:
            raise DriveOptionError("log_level", self.log_level, f"not one of {', '.join(LOG_LEVELS)}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise DriveOptionError("seed", self.seed, "must be a non-negative integer")
        for name, (lo, hi) in (("camera_width", CAMERA_WIDTH), ("camera_height", CAMERA_HEIGHT)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi):
                raise DriveOptionError(name, v, f"must be an integer from {lo} to {hi} pixels")
        for name in ("camera_rate", "record_fps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= MAX_RATE_HZ):
                raise DriveOptionError(name, v, f"must be a rate above 0 and at most {MAX_RATE_HZ:g} Hz")
        if not self.sim:
            for name in ("camera_width", "camera_height", "camera_rate"):
                if getattr(self, name) is not None:
                    raise DriveOptionError(name, getattr(self, name),
                                           "sets the simulated camera; a real robot's camera is configured "
                                           "on the robot (drop it, or use {sim=true})")
        if self.record_fps is not None and not self.record:
            raise DriveOptionError("record_fps", self.record_fps, "only applies when recording ({record=DATASET})")
        if self.record and self.sim:
            cam = self.camera_rate or node_params("sim.yaml", "sim_node").get("camera_rate", 10.0)
            fps = self.record_fps or node_params("recorder.yaml", "recorder_node").get("fps", 10.0)
            if fps > cam:
                raise DriveOptionError("record_fps", fps, f"above the camera rate ({cam:g} Hz): frames would be "
                                       "recorded twice; lower it or raise {camera_rate=HZ}")

    @property
    def reward_source(self) -> str:
        """The reward_node's model source after ``auto``: "" when no reward_node starts."""
        r = self.reward_model.strip()
        if r == AUTO:
            return DEMO if (self.sim and self.driver == "policy" and self.policy == DEMO) else ""
        return "" if r.lower() in NO_MODEL else r

    @property
    def needs_demo_models(self) -> bool:
        """Whether a source is ``demo`` (resolve it with :func:`with_demo_models` before ``drive_graph``)."""
        return (self.driver == "policy" and self.policy == DEMO) or self.reward_source == DEMO


def _check_source(option: str, source) -> None:
    """A model source's form (a checkpoint's contents are the node's to check: it refuses to start)."""
    if not isinstance(source, str) or not source.strip():
        raise DriveOptionError(option, source, "empty: give a checkpoint directory, a preset (tiny, gr00t-n1-2b), "
                               "tcp://HOST:PORT or demo")
    if source == DEMO:
        return
    if source.startswith("tcp://") or "://" in source:
        m = _TCP.fullmatch(source)
        if not m or not 0 < int(m.group(1)) < 65536:
            raise DriveOptionError(option, source, "not a server address: use tcp://HOST:PORT (a `gr00t-rlhf serve` "
                                   "server)")
        return
    looks_like_path = os.sep in source or source.startswith((".", "~"))
    if looks_like_path and not os.path.isdir(os.path.expanduser(source)):
        raise DriveOptionError(option, source, "no such checkpoint directory")
    if option == "reward_model" and not looks_like_path and source in MODEL_PRESETS:
        raise DriveOptionError(option, source, "a reward model has no preset (it must be trained on feedback): "
                               "give a checkpoint directory, tcp://HOST:PORT or demo")


def with_demo_models(opts: DriveOptions, policy: str, reward: str) -> DriveOptions:
    """``opts`` with the ``demo`` sources replaced by the demo models' directories."""
    changes = {}
    if opts.driver == "policy" and opts.policy == DEMO:
        changes["policy"] = str(policy)
    if opts.reward_source == DEMO:
        changes["reward_model"] = str(reward)
    return replace(opts, **changes)


# ---------------------------------------------------------------------------- params files

def _token_match(pattern: list[str], tokens: list[str]) -> bool:
    """rcl's node-name wildcards: ``*`` matches one token, ``**`` any number (also none)."""
    if not pattern:
        return not tokens
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_token_match(rest, tokens[i:]) for i in range(len(tokens) + 1))
    return bool(tokens) and (head == "*" or head == tokens[0]) and _token_match(rest, tokens[1:])


def params_for(doc: dict, node: str, namespace: str = "/") -> dict:
    """The ros__parameters that a params-file document gives node ``namespace/node`` (rcl's rules:
    keys ``node`` (= ``/node``, root namespace only), ``/ns/node``, ``/**``, ``/**/node``, ``/*/node``;
    later keys override earlier)."""
    full = [t for t in f"{namespace.strip('/')}/{node}".split("/") if t]
    out: dict = {}
    for key, body in (doc or {}).items():
        key = str(key)
        pattern = [t for t in key.split("/") if t]   # rcl reads a key without '/' from the root: 'n' = '/n'
        if _token_match(pattern, full) and isinstance(body, dict):
            out.update(body.get("ros__parameters") or {})
    return out


def node_params(file: str, node: str, namespace: str = "/") -> dict:
    """The ros__parameters of ``node`` in ``config/<file>``."""
    return params_for(yaml.safe_load(config_path(file).read_text()) or {}, node, namespace)


# ---------------------------------------------------------------------------- the graph

def drive_graph(opts: DriveOptions) -> list[NodeSpec]:
    """The nodes to start for ``opts``, in start order (empty for ``sim=False, driver="none"``).

    The sim (or nothing: a real robot is already on the graph), the driver (policy_node or
    expert_node), reward_node when there is a reward model, the recorder when recording. Raises
    ValueError if a source is still ``demo`` (resolve it first with :func:`with_demo_models`).
    """
    if opts.needs_demo_models:
        raise ValueError("drive_graph: the demo models are not resolved; call with_demo_models first")
    common = {"use_sim_time": True} if opts.use_sim_time else {}

    def spec(executable, params_file, parameters, required=True):
        return NodeSpec(executable, params_file, {**parameters, **common}, required, opts.namespace, opts.log_level)

    nodes: list[NodeSpec] = []
    if opts.sim:
        params = {}
        for name in ("seed", "task", "camera_width", "camera_height", "camera_rate"):
            if getattr(opts, name) is not None:
                params[name] = getattr(opts, name)
        if "camera_rate" in params:
            params["camera_rate"] = float(params["camera_rate"])
        nodes.append(spec("sim_node", "sim.yaml", params))
    if opts.driver == "expert":
        nodes.append(spec("expert_node", "expert.yaml", {}))
    task = opts.task if opts.task is not None else (node_params("sim.yaml", "sim_node").get("task") if opts.sim else None)
    if opts.driver == "policy":
        # the policy's own reward model only for best-of-N (reward_node loads its own copy to score the drive)
        params = {"policy": opts.policy, "num_candidates": opts.num_candidates,
                  "reward_model": opts.reward_source if opts.num_candidates > 1 else ""}
        if opts.condition is not None:
            params["condition"] = opts.condition
        if opts.guidance is not None:
            params["guidance"] = float(opts.guidance)
        if task:  # the instruction in force until one arrives on task
            params["task"] = task
        nodes.append(spec("policy_node", "policy.yaml", params))
    if opts.reward_source:
        params = {"reward_model": opts.reward_source}
        if task:
            params["task"] = task
        # not required: the live reward is an opinion on the drive, not part of driving
        nodes.append(spec("reward_node", "reward.yaml", params, required=False))
    if opts.record:
        params = {"dataset": opts.record, "vocabulary": opts.vocabulary}
        if opts.record_fps is not None:
            params["fps"] = float(opts.record_fps)
        if task:  # the instruction in force until one arrives on task
            params["task"] = task
        # not required: the robot may drive on without it (it commits its episode when it stops)
        nodes.append(spec("recorder_node", "recorder.yaml", params, required=False))
    return nodes


def nothing_to_start_hint(style: str = "cli") -> str:
    """What to say when ``drive_graph`` is empty: which options would start a node."""
    if style == "launch":
        return ("no node to start: sim:=false driver:=none brings up nothing on its own; use driver:=policy "
                "policy:=CHECKPOINT to drive a real robot already on the graph, add record:=DATASET to record it, "
                "or sim:=true")
    return ("no node to start: --no-sim --driver none brings up nothing on its own; use --driver policy --policy "
            "CHECKPOINT to drive a real robot already on the graph, add --record DATASET to record it, or use --sim. "
            "Waiting for Ctrl-C.")


# ---------------------------------------------------------------------------- launch arguments

@dataclass(frozen=True)
class LaunchArgument:
    """One launch argument of drive.launch.py / record.launch.py."""

    name: str
    default: str
    description: str
    choices: tuple[str, ...] | None = None


BOOL_CHOICES = ("true", "false", "True", "False", "1", "0")

LAUNCH_ARGUMENTS = (
    LaunchArgument("sim", "true", "start the MuJoCo simulated robot (false: a real robot already on the graph)",
                   BOOL_CHOICES),
    LaunchArgument("driver", "policy", "who publishes wheel_commands: policy (policy_node), expert (needs "
                                       "sim:=true) or none", DRIVERS),
    LaunchArgument("policy", DEMO, "policy_node's model: a checkpoint directory, a preset (tiny, gr00t-n1-2b), "
                                   "tcp://HOST:PORT (gr00t-rlhf serve) or demo (the cached demo policy, sim only; "
                                   "made on first use)"),
    LaunchArgument("reward_model", AUTO, "reward_node's model (same forms as policy); auto: the demo reward model "
                                         "with the demo policy, else none; none or empty: no reward_node"),
    LaunchArgument("num_candidates", "1", f"best-of-N: chunks sampled per inference, 1-{MAX_CANDIDATES} "
                                          "(> 1 needs a reward model)"),
    LaunchArgument("condition", "", "advantage-conditioned policies (train rl --method acfm): unconditioned, good "
                                    "or bad (empty: the checkpoint's)"),
    LaunchArgument("guidance", "", "classifier-free guidance of such a policy, >= 0 (empty: the checkpoint's)"),
    LaunchArgument("demo_models", "", "where the demo models are cached (empty: $GR00T_RLHF_DEMO_MODELS or "
                                      "~/.cache/gr00t-rlhf/demo-models)"),
    LaunchArgument("seed", "", "arena layout seed (empty: config/sim.yaml)"),
    LaunchArgument("task", "", 'instruction, e.g. "Find Blue cube" (empty: config/sim.yaml)'),
    LaunchArgument("record", "", "dataset directory: also start recorder_node (empty: no recorder)"),
    LaunchArgument("vocabulary", "binary", "the recorder's feedback vocabulary: binary, score or a rewards.jsonl path"),
    LaunchArgument("namespace", "", "namespace of every node, e.g. /robot1 (empty: the enclosing namespace)"),
    LaunchArgument("use_sim_time", "false", "every node's use_sim_time parameter", BOOL_CHOICES),
    LaunchArgument("log_level", "info", "log level of every node", LOG_LEVELS),
    LaunchArgument("camera_width", "", f"simulated camera width, pixels, {CAMERA_WIDTH[0]}-{CAMERA_WIDTH[1]} "
                                       "(empty: config/sim.yaml)"),
    LaunchArgument("camera_height", "", f"simulated camera height, pixels, {CAMERA_HEIGHT[0]}-{CAMERA_HEIGHT[1]} "
                                        "(empty: config/sim.yaml)"),
    LaunchArgument("camera_rate", "", "simulated camera frame rate, Hz (empty: config/sim.yaml)"),
    LaunchArgument("record_fps", "", "dataset frame rate when recording, Hz (empty: config/recorder.yaml)"),
)


def launch_arguments(recording: bool = False) -> tuple[LaunchArgument, ...]:
    """drive.launch.py's arguments; record.launch.py replaces ``record`` by ``dataset`` (always records)."""
    if not recording:
        return LAUNCH_ARGUMENTS
    return tuple(LaunchArgument("dataset", "recordings/dataset", "dataset directory (created, or appended to)")
                 if a.name == "record" else a for a in LAUNCH_ARGUMENTS)


class LaunchArgumentError(ValueError):
    """A launch argument's value is unusable; the message names it as ``name:=value``."""


def parse_bool(value: str, argument: str) -> bool:
    """A boolean launch argument the way launch's conditions read it: true/false/1/0, any case."""
    v = str(value).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise LaunchArgumentError(f"{argument}:={value}: not a boolean (use true, false, 1 or 0)")


def _number(values: dict, name: str, kind):
    text = values.get(name, "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise LaunchArgumentError(f"{name}:={text}: not {what}") from None


def _default(value, default):
    return default if value is None else value


def options_from_launch(values: dict[str, str], recording: bool = False) -> DriveOptions:
    """DriveOptions from performed launch-argument strings; errors name the launch argument."""
    try:
        opts = DriveOptions(
            sim=parse_bool(values.get("sim", "true"), "sim"),
            driver=values.get("driver", "policy"),
            policy=values.get("policy", DEMO).strip(),
            reward_model=values.get("reward_model", AUTO).strip(),
            num_candidates=_default(_number(values, "num_candidates", int), 1),
            condition=values.get("condition", "").strip() or None,
            guidance=_number(values, "guidance", float),
            seed=_number(values, "seed", int),
            task=values.get("task") or None,
            record=(values.get("dataset") if recording else values.get("record")) or None,
            vocabulary=values.get("vocabulary") or "binary",
            namespace=values.get("namespace", "").strip(),
            use_sim_time=parse_bool(values.get("use_sim_time", "false"), "use_sim_time"),
            log_level=values.get("log_level") or None,
            camera_width=_number(values, "camera_width", int),
            camera_height=_number(values, "camera_height", int),
            camera_rate=_number(values, "camera_rate", float),
            record_fps=_number(values, "record_fps", float),
        )
    except DriveOptionError as e:
        msg = e.for_launch()
        if recording:
            msg = msg.replace("record:=", "dataset:=")
        raise LaunchArgumentError(msg) from None
    if recording and not opts.record:
        raise LaunchArgumentError("dataset:=: record.launch.py needs a dataset directory")
    return opts

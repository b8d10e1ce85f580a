"""bag_to_lerobot: rosbag2 (sqlite3 or mcap) -> LeRobot (GR00T flavour) dataset.

Uses the recorder's own logic (gr00t_rlhf_ros.recording: decoding, alignment, writing), fed in
log-time order, so a converted bag gives the frames recorder_node would have written live.

Episodes come from (``--split``):
- ``services``: the recorder's start/stop/discard service events (recorded when the bag was made
  with service introspection, ``ros2 bag record --all-services`` or the ``_service_event`` topics);
- ``topic``: messages on ``--split-topic`` (std_msgs/String "start" / "stop" / "discard"; any
  other message type or text starts a new episode);
- ``gap``: a pause of more than ``--gap`` seconds in the camera stream ends an episode;
- ``auto`` (default): services if the bag has them, else ``topic`` if given, else ``gap``.

Topic names: the contract's names (and ``--topic`` values) are resolved in ``--namespace`` (default
``/``) as a node there would: ``camera/image_raw`` is ``/robot1/camera/image_raw`` in a bag of a
robot run under ``__ns:=/robot1``; absolute names are taken as they are.

The bag may be a rosbag2 directory or one .mcap/.db3 file; a damaged or cut-off bag is converted
as far as it can be read, and what was repaired or lost is listed among the report's problems.
``rosbags`` is needed only when a bag is read: without it (the training profile) this module
still imports, and converting says which package is missing.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from gr00t_rlhf_ros.bag import REQUEST_RECEIVED, REQUEST_SENT, TRIGGER_EVENT, BagError, BagReader
from gr00t_rlhf_ros.contract import Contract, load_contract
from gr00t_rlhf_ros.msgs import image_msg_to_rgb
from gr00t_rlhf_ros.recording import INPUT_TOPICS, EpisodeRecorder, RecorderConfig, RecorderError, feed
from gr00t_rlhf_train.data.errors import DatasetError
from gr00t_rlhf_train.data.video import DEFAULT_GOP_FRAMES
from gr00t_rlhf_train.data.writer import DatasetWriter
from gr00t_rlhf_train.feedback import FeedbackVocabulary, load_vocabulary

REQUIRED = ("camera", "joint_states", "imu")
_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
_NAMESPACE = re.compile(rf"/|(/{_TOKEN})+")
_NAME = re.compile(rf"/?{_TOKEN}(/{_TOKEN})*")


def namespace_of(text: str) -> str:
    """``text`` as an absolute ROS namespace ("robot1" and "/robot1/" give "/robot1")."""
    ns = "/" + text.strip().strip("/") if text.strip().strip("/") else "/"
    if not _NAMESPACE.fullmatch(ns):
        raise ValueError(f"--namespace: {text!r} is not a ROS namespace (e.g. /robot1)")
    return ns


def resolve_name(name: str, namespace: str = "/") -> str:
    """The absolute topic name of ``name`` for a node in ``namespace`` (what a bag records)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"topic name {name!r} is not a ROS name (tokens of letters, digits and _ joined by /)")
    if name.startswith("/"):
        return name
    return f"{namespace.rstrip('/')}/{name}"
SPLIT_MODES = ("auto", "services", "topic", "gap", "none")


@dataclass
class ConversionReport:
    episodes: list[int] = field(default_factory=list)
    frames: int = 0
    discarded: int = 0
    problems: list[str] = field(default_factory=list)
    messages: int = 0
    bag_seconds: float = 0.0

    def summary(self) -> str:
        s = (f"{len(self.episodes)} episodes, {self.frames} frames from {self.messages} messages "
             f"({self.bag_seconds:.1f} s of bag)")
        if self.discarded:
            s += f", {self.discarded} discarded"
        return s + "".join(f"\n  problem: {p}" for p in self.problems)


def _service_events(reader: BagReader, contract: Contract, namespace: str = "/") -> list[tuple[float, str]]:
    """(time, "start"|"stop"|"discard") from the recorder's service-event topics."""
    topics = {f"{resolve_name(contract.service(f'{k}_episode').name, namespace)}/_service_event": k
              for k in ("start", "stop", "discard")}
    present = [t for t, ty in reader.topics.items() if t in topics and ty == TRIGGER_EVENT]
    events = {REQUEST_SENT: [], REQUEST_RECEIVED: []}
    for topic, t, kind in reader.service_events(present):
        if kind in events:
            events[kind].append((t, topics[topic]))
    # the server side (the recorder itself) if it was introspected, else the callers'
    return events[REQUEST_RECEIVED] or events[REQUEST_SENT]


def _topic_events(reader: BagReader, topic: str) -> list[tuple[float, str]]:
    if topic not in reader.topics:
        raise BagError(f"{reader.path}: split topic {topic!r} is not in the bag (its topics: {', '.join(sorted(reader.topics))})")
    out = []
    for m in reader.messages([topic]):
        text = getattr(m.msg, "data", None)
        if text in ("stop", "discard"):
            out.append((m.log_time, text))
        else:
            if out and out[-1][1] == "start":
                out.append((m.log_time, "stop"))
            out.append((m.log_time, "start"))
    return out


def _gap_events(reader: BagReader, camera: str, gap: float) -> list[tuple[float, str]]:
    times = reader.log_times(camera)
    if not times:
        return []
    out = [(times[0], "start")]
    for a, b in zip(times, times[1:]):
        if b - a > gap:
            out += [(a, "stop"), (b, "start")]
    return out + [(times[-1], "stop")]


def convert(bag: str | Path, output: str | Path, *, contract: Contract | None = None,
            topics: dict[str, str] | None = None, vocabulary: FeedbackVocabulary | str = "binary",
            config: RecorderConfig | None = None, split: str = "auto", split_topic: str | None = None,
            gap: float = 2.0, task: str = "", append: bool = False, progress: bool = True,
            namespace: str = "/", gop_frames: int = DEFAULT_GOP_FRAMES) -> ConversionReport:
    """Convert ``bag`` into the dataset at ``output``; one bad episode does not stop the others.

    ``topics`` maps contract keys to other names; these and the contract's names are resolved in
    ``namespace``. Repairs made to read a damaged bag are listed in the report's problems."""
    contract = contract or load_contract()
    namespace = namespace_of(namespace)
    names = {k: resolve_name(contract.topic(k).name, namespace) for k in INPUT_TOPICS}
    for k, v in (topics or {}).items():
        if k not in names:
            raise ValueError(f"--topic {k}={v}: unknown key (known: {', '.join(INPUT_TOPICS)})")
        try:
            names[k] = resolve_name(v, namespace)
        except ValueError as e:
            raise ValueError(f"--topic {k}={v}: {e}") from None
    if split not in SPLIT_MODES:
        raise ValueError(f"--split: {split!r} is not one of {SPLIT_MODES}")
    vocab = load_vocabulary(vocabulary) if isinstance(vocabulary, str) else vocabulary
    config = config or RecorderConfig(fps=contract.dataset_fps, command_timeout=contract.command_timeout,
                                      max_wheel_speed=contract.max_wheel_speed)
    report = ConversionReport()

    with BagReader(bag) as reader:
        for key in REQUIRED:
            reader.require(names[key], contract.topic(key).type, key)
        first = next(reader.messages([names["camera"]]), None)
        if first is None:
            raise BagError(f"{reader.path}: no readable message on the camera topic {names['camera']!r}"
                           + "".join(f"; {n}" for n in reader.notes))
        first_image = first.msg
        image = image_msg_to_rgb(first_image, names["camera"])  # unknown encodings fail here, clearly

        if split == "auto":
            events = _service_events(reader, contract, namespace)
            split = "services" if events else ("topic" if split_topic else "gap")
        if split == "services":
            events = _service_events(reader, contract, namespace)
            if not events:
                raise BagError(f"{reader.path}: --split services, but the bag has no recorder service events")
        elif split == "topic":
            if not split_topic:
                raise ValueError("--split topic needs --split-topic NAME")
            events = _topic_events(reader, resolve_name(split_topic, namespace))
        elif split == "gap":
            events = _gap_events(reader, names["camera"], gap)
        else:
            first, last = reader.span
            events = [(first, "start"), (last, "stop")]

        out = Path(output)
        if (out / "meta" / "info.json").is_file():
            if not append:
                raise DatasetError(out, None, "already holds a dataset; pass --append to add episodes to it")
            writer = DatasetWriter.resume(out, low_latency=False, gop_frames=gop_frames)
        else:  # offline: x264 frame threads (no crash-latency concern, the bag stays the source)
            writer = DatasetWriter.create(out, config.fps, image.shape[:2], vocab, robot_type=contract.robot_type,
                                          low_latency=False, gop_frames=gop_frames)
        if not task and names["task"] in reader.topics:  # /task is latched: its first message holds from the start
            task = next((str(m.msg.data) for m in reader.messages([names["task"]])), "")
        recorder = EpisodeRecorder(writer, vocab, config, task)

        keys = {v: k for k, v in names.items() if v in reader.topics}
        total = reader.count(list(keys))
        events = sorted(events)
        ei = 0
        warned = set()
        t_first = t_last = None

        def apply(t, kind):
            try:
                if kind == "start":
                    if recorder.recording:  # a start without a stop: close the previous one
                        apply(t, "stop")
                    if not recorder.current_task:
                        raise RecorderError(f"no task: the bag has no {names['task']} message; pass --task")
                    recorder.start(t)
                elif kind == "stop" and recorder.recording:
                    report.episodes.append(recorder.stop(t))
                    report.frames += recorder.frames_in_episode
                elif kind == "discard" and recorder.recording:
                    recorder.discard()
                    report.discarded += 1
            except (RecorderError, DatasetError, ValueError) as e:
                report.problems.append(f"episode at {t:.2f} s: {e}")
                if recorder.recording:
                    recorder.discard()

        bar = tqdm(total=total, unit="msg", desc=f"{Path(bag).name}", disable=not progress, file=sys.stderr)
        for m in reader.messages(list(keys)):
            t_first = m.log_time if t_first is None else t_first
            t_last = m.log_time
            while ei < len(events) and events[ei][0] <= m.log_time:
                recorder.poll(events[ei][0])
                apply(*events[ei])
                ei += 1
            try:
                recorder.poll(m.log_time)
                feed(recorder, keys[m.topic], m.msg, m.log_time, m.topic, contract.wheel_joints)
            except ValueError as e:
                if m.topic not in warned:
                    warned.add(m.topic)
                    report.problems.append(f"ignored messages on {m.topic}: {e}")
            report.messages += 1
            bar.update()
        bar.close()
        for t, kind in events[ei:]:
            recorder.poll(t)
            apply(t, kind)
        if recorder.recording:  # no stop at the end of the bag: the episode ends with the bag
            apply(t_last, "stop")
        report.bag_seconds = (t_last - t_first) if t_first is not None else 0.0
        report.problems[:0] = reader.notes  # what was repaired or lost in reading the bag comes first
    return report


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="bag_to_lerobot", description=__doc__.split("\n\n")[0])
    p.add_argument("bag", help="rosbag2 directory (sqlite3 or mcap), or a single .mcap/.db3 file")
    p.add_argument("output", help="dataset directory to create (or to append to with --append)")
    p.add_argument("--topic", action="append", default=[], metavar="KEY=NAME",
                   help=f"topic name for a contract key ({', '.join(INPUT_TOPICS)}), e.g. camera=/front/image "
                        "(a relative name is resolved in --namespace)")
    p.add_argument("--namespace", default="/",
                   help="namespace the robot ran in (its __ns, e.g. /robot1): the contract's relative topic "
                        "names are resolved in it (default: /)")
    p.add_argument("--split", default="auto", choices=SPLIT_MODES, help="how episodes are delimited")
    p.add_argument("--split-topic", default=None, help="topic whose messages delimit episodes (--split topic)")
    p.add_argument("--gap", type=float, default=2.0, help="seconds without camera images that end an episode")
    p.add_argument("--vocabulary", default="binary", help="feedback vocabulary: binary, score or a rewards.jsonl")
    p.add_argument("--task", default="", help="task instruction when the bag has no /task message")
    p.add_argument("--fps", type=float, default=None, help="dataset fps (default: the contract's)")
    p.add_argument("--append", action="store_true", help="append to an existing dataset")
    p.add_argument("--gop-frames", type=int, default=DEFAULT_GOP_FRAMES,
                   help="keyframe interval in frames (default 1: every frame, exact for loaders that seek by time)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    try:
        topics = dict(t.split("=", 1) for t in args.topic)
    except ValueError:
        print(f"bag_to_lerobot: --topic takes KEY=NAME, got {args.topic}", file=sys.stderr)
        return 2
    contract = load_contract()
    config = RecorderConfig(fps=args.fps or contract.dataset_fps, command_timeout=contract.command_timeout,
                            max_wheel_speed=contract.max_wheel_speed)
    try:
        report = convert(args.bag, args.output, contract=contract, topics=topics, vocabulary=args.vocabulary,
                         config=config, split=args.split, split_topic=args.split_topic, gap=args.gap, task=args.task,
                         append=args.append, progress=not args.no_progress, namespace=args.namespace,
                         gop_frames=args.gop_frames)
    except (BagError, DatasetError, ValueError, OSError) as e:
        print(f"bag_to_lerobot: error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.episodes else 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

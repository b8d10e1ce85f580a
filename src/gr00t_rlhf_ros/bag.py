"""rosbag2 files (sqlite3 and mcap) through the ``rosbags`` library: no ROS install needed.

Reads messages of chosen topics in log-time order and deserializes them with the ROS 2 Kilted
typestore; topics of other types in the bag are never parsed, so a bag full of custom types
still converts. The recorder's Trigger service events (``<service>/_service_event``, recorded
when the bag was made with service introspection) are read for their event type only, which is
the first byte of the CDR payload. Also writes bags (tests, benchmarks, tools).

A bag is a rosbag2 directory (metadata.yaml + storage files) or one ``.mcap``/``.db3`` file.
A recording cut off mid-write is read as far as it goes:
a directory whose metadata.yaml is missing, empty or broken is read from its one storage file,
an mcap without footer/summary from its complete records, a truncated sqlite3 file from its
readable rows; each such repair is listed in :attr:`BagReader.notes`. The original files are
never written to.

``rosbags`` is imported only when a bag is opened or written, so this module (and the CLI that
imports it) loads in the training profile, which has no rosbags.
"""
from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

TRIGGER_EVENT = "std_srvs/srv/Trigger_Event"
# service_msgs/ServiceEventInfo.event_type
REQUEST_SENT, REQUEST_RECEIVED, RESPONSE_SENT, RESPONSE_RECEIVED = 0, 1, 2, 3
_CDR_HEADER = 4  # encapsulation header before the payload
# message definition of Trigger_Event (ros2msg text with its nested types), for writing bags
_TRIGGER_EVENT_DEF = "\n".join([
    "service_msgs/ServiceEventInfo info", "Trigger_Request[<=1] request", "Trigger_Response[<=1] response",
    "=" * 80, "MSG: service_msgs/ServiceEventInfo",
    "uint8 REQUEST_SENT = 0", "uint8 REQUEST_RECEIVED = 1", "uint8 RESPONSE_SENT = 2", "uint8 RESPONSE_RECEIVED = 3",
    "uint8 event_type", "builtin_interfaces/Time stamp", "char[16] client_gid", "int64 sequence_number",
    "=" * 80, "MSG: builtin_interfaces/Time", "int32 sec", "uint32 nanosec",
    "=" * 80, "MSG: std_srvs/Trigger_Request", "uint8 structure_needs_at_least_one_member",
    "=" * 80, "MSG: std_srvs/Trigger_Response", "bool success", "string message",
])


class BagError(ValueError):
    """A bag that cannot be converted; the message names the bag and the topic."""


MISSING_ROSBAGS = ("reading or writing rosbag2 bags needs the 'rosbags' package, which this install lacks "
                   "(the training profile, requirements/train.txt, has none): pip install rosbags, or install "
                   "requirements/ros-distro.txt (on a ROS 2 install) or requirements.txt")


def _rosbags():
    """The rosbags modules used here; a missing rosbags is a one-line BagError."""
    try:
        from rosbags import rosbag2, typesys
    except ImportError:
        raise BagError(MISSING_ROSBAGS) from None
    return rosbag2, typesys


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted message types, plus Trigger_Event for writing service events."""
    _, typesys = _rosbags()
    store = typesys.get_typestore(typesys.Stores.ROS2_KILTED)
    texts = {
        "std_srvs/srv/Trigger_Request": "uint8 structure_needs_at_least_one_member",
        "std_srvs/srv/Trigger_Response": "bool success\nstring message",
        TRIGGER_EVENT: "service_msgs/ServiceEventInfo info\nstd_srvs/srv/Trigger_Request[<=1] request\n"
                       "std_srvs/srv/Trigger_Response[<=1] response",
    }
    for name, text in texts.items():
        # rosbags files a parsed pkg/srv/X under pkg/srv/msg/X; ROS names it pkg/srv/X
        parsed = typesys.get_types_from_msg(text, name)
        store.register({k.replace("/srv/msg/", "/srv/"): _srv_names(v) for k, v in parsed.items()})
    return store


def _srv_names(obj):
    if isinstance(obj, str):
        return obj.replace("/srv/msg/", "/srv/")
    if isinstance(obj, (tuple, list)):
        return type(obj)(_srv_names(o) for o in obj)
    return obj


@dataclass(frozen=True)
class BagMessage:
    topic: str
    log_time: float      # seconds: when the recorder (ros2 bag) received it
    msg: object          # deserialized message (same fields as the rclpy message)


STORAGE_SUFFIXES = (".mcap", ".db3")
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_DATA_END, _MCAP_FOOTER = 0x0F, 0x02


class BagReader:
    """A rosbag2 bag opened for reading: its directory (metadata.yaml + .db3 or .mcap files), the
    directory's metadata.yaml, or one .mcap/.db3 file. Repairs made to read a damaged bag are
    listed in ``notes`` (one line each); the bag's own files are never modified."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.notes: list[str] = []
        self._tmp: tempfile.TemporaryDirectory | None = None
        rosbag2, _ = _rosbags()
        self._reader = self._open(self._locate(), rosbag2)

    # ------------------------------------------------------------------ opening
    def _locate(self) -> Path:
        """The directory or storage file to read; a broken metadata.yaml falls back to the storage file."""
        p = self.path
        if not p.exists():
            raise BagError(f"{p}: no such bag (give a rosbag2 directory or one .mcap/.db3 file)")
        if p.is_file() and p.name == "metadata.yaml":
            p = p.parent
        if p.is_file():
            if p.suffix not in STORAGE_SUFFIXES:
                raise BagError(f"{p}: not a rosbag2 bag: give its directory (holding metadata.yaml) "
                               "or one .mcap/.db3 file")
            return p
        problem = _metadata_problem(p / "metadata.yaml")
        if problem is None:
            return p
        return self._storage_file_of(p, f"{p / 'metadata.yaml'} {problem}")

    def _storage_file_of(self, bag_dir: Path, problem: str) -> Path:
        files = sorted(f for f in bag_dir.iterdir() if f.is_file() and f.suffix in STORAGE_SUFFIXES)
        if not files:
            raise BagError(f"{problem}, and {bag_dir} holds no .mcap or .db3 file: not a rosbag2 bag")
        if len(files) > 1:
            raise BagError(f"{problem}; `ros2 bag reindex {bag_dir}` rebuilds metadata.yaml from its "
                           f"{len(files)} storage files (or convert them one at a time: "
                           f"{', '.join(f.name for f in files)})")
        self.notes.append(f"{problem}; read {files[0].name} on its own "
                          f"(`ros2 bag reindex {bag_dir}` rebuilds metadata.yaml)")
        return files[0]

    def _open(self, target: Path, rosbag2):
        try:
            return _open_reader(rosbag2, target)
        except Exception as e:  # rosbags raises its own hierarchy (and sqlite's) for unreadable bags
            error = _one_line(e)
        if target.is_dir():
            files = [f for f in target.iterdir() if f.is_file() and f.suffix in STORAGE_SUFFIXES]
            if len(files) != 1:
                raise BagError(f"{target}: cannot open as a rosbag2 bag: {error}")
            return self._open(self._storage_file_of(target, f"{target}: cannot open as a rosbag2 bag ({error})"),
                              rosbag2)
        if target.stat().st_size == 0:
            raise BagError(f"{target}: empty file: nothing was recorded into it")
        self._tmp = tempfile.TemporaryDirectory(prefix="gr00t-rlhf-bag-")
        repaired = Path(self._tmp.name) / target.name
        try:
            if target.suffix == ".mcap":
                note = _salvage_mcap(target, repaired)
            else:
                note = _salvage_db3(target, repaired)
            reader = _open_reader(rosbag2, repaired)
        except BagError:
            self._cleanup()
            raise
        except Exception as e:
            self._cleanup()
            raise BagError(f"{target}: cannot open ({error}), and reading what was written before the damage "
                           f"failed too: {_one_line(e)}") from None
        self.notes.append(f"{target}: {error} (recording cut off?): {note}")
        return reader

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def topics(self) -> dict[str, str]:
        """topic name -> message type."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    def count(self, topics: list[str]) -> int:
        return sum(c.msgcount for c in self._reader.connections if c.topic in topics)

    def require(self, topic: str, msgtype: str, what: str) -> None:
        have = self.topics
        if topic not in have:
            raise BagError(f"{self.path}: no {what} topic {topic!r} in the bag (its topics: "
                           f"{', '.join(sorted(have)) or 'none'}); pass the right name with --topic {what}=NAME")
        if have[topic] != msgtype:
            raise BagError(f"{self.path}: topic {topic!r} has type {have[topic]}, expected {msgtype}")

    def _raw(self, topics: list[str]):
        """(connection, log time ns, raw CDR) of ``topics``; a read error ends the stream with a note."""
        conns = [c for c in self._reader.connections if c.topic in topics]
        if not conns:
            return
        t_ns = None
        try:
            for item in self._reader.messages(connections=conns):
                t_ns = item[1]
                yield item
        except Exception as e:  # damaged storage: keep what came before, say where it stopped
            where = f"after {t_ns * 1e-9:.3f} s" if t_ns is not None else "before its first message"
            note = f"{self.path}: unreadable {where} ({_one_line(e)}): the messages after that are missing"
            if note not in self.notes:
                self.notes.append(note)

    def messages(self, topics: list[str]) -> Iterator[BagMessage]:
        """Messages of ``topics`` in log-time order, deserialized."""
        store = typestore()
        for conn, t_ns, raw in self._raw(topics):
            try:
                msg = store.deserialize_cdr(raw, conn.msgtype)
            except Exception as e:
                raise BagError(f"{self.path}: cannot deserialize a {conn.msgtype} on {conn.topic} at "
                               f"{t_ns * 1e-9:.3f} s: {e}") from None
            yield BagMessage(conn.topic, t_ns * 1e-9, msg)

    def log_times(self, topic: str) -> list[float]:
        """Log times (s) of the messages on ``topic``, without deserializing them."""
        return [t_ns * 1e-9 for _, t_ns, _ in self._raw([topic])]

    @property
    def span(self) -> tuple[float, float]:
        """(first, last) log time in the bag, seconds."""
        return self._reader.start_time * 1e-9, self._reader.end_time * 1e-9

    def service_events(self, topics: list[str]) -> Iterator[tuple[str, float, int]]:
        """(topic, log time, event_type) of service-event messages on ``topics``."""
        for conn, t_ns, raw in self._raw(topics):
            if len(raw) <= _CDR_HEADER:
                raise BagError(f"{self.path}: empty service event on {conn.topic} at {t_ns * 1e-9:.3f} s")
            yield conn.topic, t_ns * 1e-9, raw[_CDR_HEADER]


class BagWriter:
    """Write messages into a new rosbag2 bag (``storage``: "sqlite3" or "mcap")."""

    def __init__(self, path: str | Path, storage: str = "mcap"):
        rosbag2, _ = _rosbags()
        plugins = {"sqlite3": rosbag2.StoragePlugin.SQLITE3, "mcap": rosbag2.StoragePlugin.MCAP}
        if storage not in plugins:
            raise ValueError(f"storage: {storage!r} must be one of {sorted(plugins)}")
        self._writer = rosbag2.Writer(Path(path), version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._conns: dict[str, object] = {}

    def write(self, topic: str, msgtype: str, log_time: float, msg) -> None:
        store = typestore()
        if topic not in self._conns:
            if msgtype == TRIGGER_EVENT:
                conn = self._writer.add_connection(topic, msgtype, msgdef=_TRIGGER_EVENT_DEF,
                                                   rihs01=store.hash_rihs01(msgtype))
            else:
                conn = self._writer.add_connection(topic, msgtype, typestore=store)
            self._conns[topic] = conn
        self._writer.write(self._conns[topic], int(round(log_time * 1e9)), store.serialize_cdr(msg, msgtype))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------- helpers

def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()).rstrip(".") or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _open_reader(rosbag2, target: Path):
    reader = rosbag2.Reader(target)
    reader.open()
    return reader


def _metadata_problem(meta: Path) -> str | None:
    """Why ``meta`` (a bag's metadata.yaml) cannot describe the bag, or None if it looks right."""
    import yaml

    if not meta.is_file():
        return "is missing (recording cut off before it was written?)"
    try:
        text = meta.read_text()
    except (OSError, UnicodeDecodeError) as e:
        return f"is unreadable ({_one_line(e)})"
    if not text.strip():
        return "is empty (recording cut off?)"
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return f"is not valid YAML ({getattr(e, 'problem', None) or 'parse error'}" + (
            f" at line {mark.line + 1})" if mark is not None else ")")
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        return "has no rosbag2_bagfile_information mapping"
    return None


def _salvage_mcap(src: Path, dst: Path) -> str:
    """Copy the complete data records of ``src`` (an MCAP file without its footer/summary, or with a
    record cut off) to ``dst`` and close it with an empty summary, as the MCAP format allows."""
    size = src.stat().st_size
    with src.open("rb") as f:
        if f.read(8) != _MCAP_MAGIC:
            raise BagError(f"{src}: not an MCAP file (its first bytes are not the MCAP magic)")
        end = 8
        while True:
            head = f.read(9)
            if len(head) < 9:
                break
            op, length = head[0], int.from_bytes(head[1:], "little")
            if op in (0, _MCAP_DATA_END, _MCAP_FOOTER) or end + 9 + length > size:
                break  # the summary section starts, or the record was cut off
            f.seek(length, 1)
            end += 9 + length
    if end <= 8:
        raise BagError(f"{src}: no complete MCAP record after the magic: nothing can be read")
    with src.open("rb") as fi, dst.open("wb") as fo:
        left = end
        while left:
            block = fi.read(min(left, 1 << 24))
            if not block:
                break
            fo.write(block)
            left -= len(block)
        fo.write(bytes([_MCAP_DATA_END]) + (4).to_bytes(8, "little") + bytes(4))
        fo.write(bytes([_MCAP_FOOTER]) + (20).to_bytes(8, "little") + bytes(20))
        fo.write(_MCAP_MAGIC)
    return (f"read its {end:,} bytes of complete records ({end / size:.0%} of the file; "
            "`mcap recover` writes a repaired copy)")


def _salvage_db3(src: Path, dst: Path) -> str:
    """Copy the readable rows of ``src`` (a sqlite3 bag whose tail is missing or damaged) into a new
    sqlite3 bag ``dst``: whole pages only, the page count in the header set to match, then every
    table row by row until the first unreadable page."""
    raw = dst.with_suffix(".pages")
    with src.open("rb") as f:
        header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            raise BagError(f"{src}: not a sqlite3 database (no SQLite header)")
        page = int.from_bytes(header[16:18], "big")
        page = 65536 if page == 1 else page
        pages = src.stat().st_size // page
        f.seek(0)
        with raw.open("wb") as out:
            for _ in range(pages):
                out.write(f.read(page))
    with raw.open("r+b") as out:
        out.seek(28)
        out.write(pages.to_bytes(4, "big"))
    old = sqlite3.connect(f"file:{raw}?mode=ro&immutable=1", uri=True)
    new = sqlite3.connect(dst)
    try:
        tables = old.execute("SELECT name, sql FROM sqlite_master WHERE type='table' AND sql IS NOT NULL "
                              "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").fetchall()
        rows = 0
        for name, sql in tables:
            new.execute(sql)
            cur = old.execute(f'SELECT * FROM "{name}"')
            width = len(cur.description)
            insert = f'INSERT INTO "{name}" VALUES ({",".join("?" * width)})'
            try:
                for row in cur:
                    new.execute(insert, row)
                    rows += name == "messages"
            except sqlite3.DatabaseError:
                pass  # the first unreadable page: keep the rows before it
        if "messages" in {t for t, _ in tables}:
            new.execute("CREATE INDEX IF NOT EXISTS timestamp_idx ON messages (timestamp ASC)")
        new.commit()
    except sqlite3.DatabaseError as e:
        raise BagError(f"{src}: sqlite3 database damaged beyond reading ({_one_line(e)})") from None
    finally:
        old.close()
        new.close()
        raw.unlink(missing_ok=True)
    return f"read its {rows} readable messages (of the whole pages it holds)"

"""Fuzzing the reader, ``validate`` and the dataset CLI: every mutant gives a clean error or a clean load.

From one tiny synthetic dataset (3 episodes, 16x24 frames) a seeded generator makes a few hundred
mutants: truncated files, flipped bytes, garbage, deleted files, files replaced by directories,
JSON values of the wrong type or removed, bad path templates and chunk sizes, parquet columns of
the wrong dtype (strings, nulls, NaN, ragged lists), non-UTF-8 meta files. Each mutant must give
only :class:`DatasetError` from the reader (opening, every episode, first/last frame, stats) and
from ``validate`` (which must not raise at all), and the in-process CLI must exit 0 or 1, with
one ``error:`` line per error and no traceback.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gr00t_rlhf_train.cli import build_parser, run
from gr00t_rlhf_train.data import DatasetError, LeRobotDataset
from gr00t_rlhf_train.data import cli as data_cli
from gr00t_rlhf_train.data.validate import validate
from synth_dataset import make_dataset

SEED = 7
MUTANTS = 300
JSON_VALUES = ("text", None, [], {}, -1, 0, 1.5, True, 10**30, [1, "a"], {"x": {"y": []}}, float("nan"))


def cli_main(argv):
    parser, sub = build_parser()
    data_cli.register(sub)
    return run(parser, argv)


# ---- mutations: each takes (rng, dataset root) and returns a one-line description -------------
def _files(root: Path, suffix: str = "") -> list[Path]:
    return sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())


def truncate(rng, root):
    p = rng.choice(_files(root))
    data = p.read_bytes()
    keep = rng.choice([0, 1, len(data) // 10, len(data) // 2, max(len(data) - 1, 0), rng.randrange(len(data) + 1)])
    p.write_bytes(data[:keep])
    return f"truncate {p.relative_to(root)} to {keep} of {len(data)} bytes"


def flip_bytes(rng, root):
    p = rng.choice(_files(root))
    data = bytearray(p.read_bytes())
    n = rng.choice([1, 3, 20])
    for _ in range(n):
        if data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    p.write_bytes(bytes(data))
    return f"flip {n} bits of {p.relative_to(root)}"


def garbage(rng, root):
    p = rng.choice(_files(root))
    p.write_bytes(bytes(rng.randrange(256) for _ in range(rng.choice([0, 7, 300, 5000]))))
    return f"garbage in {p.relative_to(root)}"


def delete(rng, root):
    p = rng.choice(_files(root))
    p.unlink()
    return f"delete {p.relative_to(root)}"


def to_directory(rng, root):
    """Stands in for an unreadable file (tests run as root, where chmod 000 does not stop reads)."""
    p = rng.choice(_files(root))
    p.unlink()
    p.mkdir()
    return f"replace {p.relative_to(root)} by a directory"


def not_utf8(rng, root):
    p = rng.choice(_files(root / "meta"))
    data = p.read_bytes()
    i = rng.randrange(len(data) + 1)
    p.write_bytes(data[:i] + b"\xff\xfe\x80" + data[i:])
    return f"non-UTF-8 bytes in {p.relative_to(root)}"


def _json_paths(doc, prefix=()):
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _json_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _json_paths(v, prefix + (i,))
    return out


def _mutate_doc(rng, doc):
    paths = _json_paths(doc)
    if not paths:
        return "empty", rng.choice(JSON_VALUES)
    path = rng.choice(paths)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if rng.random() < 0.3:
        del parent[path[-1]]
        return f"remove {'.'.join(map(str, path))}", doc
    value = rng.choice(JSON_VALUES)
    parent[path[-1]] = value
    return f"set {'.'.join(map(str, path))} = {value!r}", doc


def json_value(rng, root):
    p = rng.choice(_files(root / "meta"))
    text = p.read_text()
    if p.suffix == ".jsonl":
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        n = rng.randrange(len(lines))
        what, lines[n] = _mutate_doc(rng, lines[n])
        p.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
        return f"{p.relative_to(root)} line {n + 1}: {what}"
    what, doc = _mutate_doc(rng, json.loads(text))
    p.write_text(json.dumps(doc))
    return f"{p.relative_to(root)}: {what}"


def info_field(rng, root):
    p = root / "meta/info.json"
    info = json.loads(p.read_text())
    key, value = rng.choice([
        ("data_path", "data/{episode_chunk:03d}/{nope}.parquet"), ("data_path", "{0}"), ("data_path", "data/{"),
        ("data_path", "/etc/{episode_index}"), ("data_path", 5), ("video_path", "videos/{video_key:d}"),
        ("video_path", "../{episode_index}.mp4"), ("data_path", "data/chunk-{episode_chunk:03d}/x.parquet"),
        ("chunks_size", 0), ("chunks_size", -1), ("chunks_size", "1000"), ("chunks_size", 1.5), ("chunks_size", 1),
        ("fps", 0), ("fps", -10), ("fps", "10"), ("fps", float("nan")), ("fps", 1e308), ("fps", 30),
        ("features", []), ("features", {}), ("features", {"observation.images.ego_view": "video"}),
    ])
    info[key] = value
    p.write_text(json.dumps(info))
    return f"info.json {key} = {value!r}"


def parquet_column(rng, root):
    p = rng.choice(_files(root, ".parquet"))
    t = pq.read_table(p)
    name = rng.choice(t.column_names)
    n = t.num_rows
    kind = rng.choice(["strings", "nulls", "nan", "inf", "list-strings", "ragged", "fractions", "bool", "drop",
                       "empty", "list-for-scalar", "huge"])
    if kind == "drop":
        t = t.drop([name])
    elif kind == "empty":
        t = t.slice(0, 0)
    else:
        arr = {
            "strings": lambda: pa.array([f"v{i}" for i in range(n)]),
            "nulls": lambda: pa.array([None] * n, pa.float64()),
            "nan": lambda: pa.array([float("nan")] + [1.0] * (n - 1)),
            "inf": lambda: pa.array([1.0] * (n - 1) + [float("inf")]),
            "list-strings": lambda: pa.array([["a", "b"]] * n),
            "ragged": lambda: pa.array([[1.0] * (1 + i % 2) for i in range(n)]),
            "fractions": lambda: pa.array([0.5 + i for i in range(n)]),
            "bool": lambda: pa.array([i % 2 == 0 for i in range(n)]),
            "list-for-scalar": lambda: pa.array([[float(i), 1.0] for i in range(n)]),
            "huge": lambda: pa.array([np.finfo(np.float64).max] * n),
        }[kind]()
        t = t.set_column(t.column_names.index(name), name, arr)
    pq.write_table(t, p)
    return f"{p.relative_to(root)} [{name}]: {kind}"


def swap_video(rng, root):
    vids = _files(root, ".mp4")
    a, b = rng.sample(vids, 2) if len(vids) > 1 else (vids[0], vids[0])
    if rng.random() < 0.5:
        shutil.copyfile(_files(root, ".parquet")[0], a)
        return f"{a.relative_to(root)} replaced by a parquet file"
    shutil.copyfile(b, a)
    return f"{a.relative_to(root)} replaced by {b.name}"


def shuffle_rows(rng, root):
    p = rng.choice(_files(root, ".parquet"))
    t = pq.read_table(p)
    order = list(range(t.num_rows))
    rng.shuffle(order)
    pq.write_table(t.take(pa.array(order)), p)
    return f"{p.relative_to(root)}: rows shuffled {order}"


def episode_lines(rng, root):
    p = root / "meta/episodes.jsonl"
    lines = [line for line in p.read_text().splitlines() if line.strip()]
    kind = rng.choice(["duplicate", "drop", "swap", "extra"])
    if kind == "duplicate":
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
    elif kind == "drop":
        lines.pop(rng.randrange(len(lines)))
    elif kind == "swap":
        lines[0], lines[-1] = lines[-1], lines[0]
    else:
        lines.append(json.dumps({"episode_index": len(lines), "tasks": ["x"], "length": 5}))
    p.write_text("\n".join(lines) + "\n")
    return f"episodes.jsonl: {kind} a line"


MUTATIONS = (truncate, flip_bytes, garbage, delete, to_directory, not_utf8, json_value, json_value, info_field,
             parquet_column, parquet_column, swap_video, shuffle_rows, episode_lines)


# ---- the checks --------------------------------------------------------------------------------
def read_everything(root: Path) -> None:
    """Use the reader as training would: open, every episode, first/last frame of every video, stats."""
    with LeRobotDataset(root, warn=False) as ds:
        for i in range(ds.num_episodes):
            ep = ds.episode(i)
            for key in ds.video_keys:
                ep.frame(0, key)
                ep.frame(len(ep) - 1, key)
            ep.task_texts, ep.feedback_texts  # noqa: B018
        ds.stats  # noqa: B018


def check_mutant(root: Path, what: str) -> str:
    """'error' or 'ok'; fails the test on any other exception or an unclean CLI answer.

    The CLI runs ``dataset info`` or ``dataset validate`` (chosen by the mutant's description)."""
    try:
        read_everything(root)
        reader = "ok"
    except DatasetError:
        reader = "error"
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"mutant '{what}': reader raised {type(e).__name__}: {e}")
    try:
        rep = validate(root)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"mutant '{what}': validate raised {type(e).__name__}: {e}")
    if reader == "error":
        assert not rep.ok, f"mutant '{what}': the reader failed but validate passed"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(["dataset", "info" if len(what) % 2 else "validate", str(root)])
    err_lines = err.getvalue().splitlines()
    assert rc in (0, 1), f"mutant '{what}': exit code {rc}"
    assert "Traceback" not in err.getvalue() + out.getvalue() and "unexpected" not in err.getvalue(), (
        f"mutant '{what}': {err.getvalue()}")
    assert all(line.startswith("error: ") for line in err_lines), f"mutant '{what}': {err_lines}"
    if rc == 1:
        assert err_lines, f"mutant '{what}': exit 1 without an error line"
    return "ok" if rep.ok else "error"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "base"
    make_dataset(root, episodes=3, frames=6, size=(16, 24))
    return root


def test_base_dataset_is_valid(base):
    assert check_mutant(base, "none") == "ok"


def test_fuzz_mutants_give_clean_errors(base, tmp_path):
    rng = random.Random(SEED)
    outcomes = {"ok": 0, "error": 0}
    t0 = time.monotonic()
    for n in range(MUTANTS):
        root = tmp_path / f"m{n:03d}"
        shutil.copytree(base, root)
        mutation = MUTATIONS[n % len(MUTATIONS)]
        what = f"#{n} {mutation(rng, root)}"
        outcomes[check_mutant(root, what)] += 1
        shutil.rmtree(root)
    assert outcomes["error"] > MUTANTS // 2, outcomes  # most mutants must be caught, not silently read
    assert time.monotonic() - t0 < 120


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod 000 does not stop reads (the directory mutants cover it)")
def test_unreadable_meta_file(base, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(base, root)
    (root / "meta/tasks.jsonl").chmod(0)
    with pytest.raises(DatasetError, match=r"tasks\.jsonl: cannot read"):
        LeRobotDataset(root)

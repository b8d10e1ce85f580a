"""The message format of remote inference (ZeroMQ multipart): a JSON header + raw array buffers. No pickle.

A message is ``[header, buffer_0, buffer_1, ...]``:

* ``header``: UTF-8 JSON object, at most 1 MiB, always with ``"protocol": "gr00t-rlhf-inference/1"``
  and ``"id"`` (the request id; a reply carries its request's id), and ``"arrays"``: one entry
  ``{"key", "dtype", "shape"}`` per following frame. Requests add ``"method"`` (spec, ping, act,
  score) and ``"fields"`` (JSON values: the instruction, ``stamp``, ``seed``); replies add ``"ok"``,
  ``"server"`` (the server process's random instance id), ``"result"`` (JSON) or ``"error"`` (one line).
* ``buffer_i``: the bytes of array i, C order, little-endian, dtype one of ``DTYPES`` (never object).

``decode`` checks all of it (JSON object, frame count, dtype allowed, byte count = prod(shape) x itemsize)
and raises ``WireError`` with one line otherwise; the protocol version is checked by the caller,
which can then answer a mismatch in a form the other side understands.
"""
from __future__ import annotations

import json

import numpy as np

PROTOCOL = "gr00t-rlhf-inference/1"
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAYS = 64
DTYPES = ("bool", "uint8", "int32", "int64", "float16", "float32", "float64")
METHODS = ("spec", "ping", "act", "score")


class WireError(ValueError):
    """A malformed message (one line saying what is wrong)."""


def encode(header: dict, arrays: dict[str, np.ndarray] | None = None) -> list:
    """header (JSON-able dict) + named arrays -> frames to send (``protocol`` and ``arrays`` filled in)."""
    frames, entries = [], []
    for key, value in (arrays or {}).items():
        a = np.asarray(value)
        if a.dtype.name not in DTYPES:
            raise WireError(f"array {key!r}: dtype {a.dtype} cannot be sent; allowed {DTYPES}")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        entries.append({"key": str(key), "dtype": a.dtype.name, "shape": [int(s) for s in a.shape]})
        frames.append(memoryview(a).cast("B") if a.size else b"")
    head = dict(header, protocol=PROTOCOL, arrays=entries)
    try:
        data = json.dumps(head, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as e:
        raise WireError(f"header: not JSON-serialisable ({e})") from None
    return [data, *frames]


def decode(frames: list) -> tuple[dict, dict[str, np.ndarray]]:
    """Received frames -> (header dict, {key: array}); WireError for anything malformed."""
    if not frames:
        raise WireError("empty message")
    raw = bytes(frames[0])
    if len(raw) > MAX_HEADER_BYTES:
        raise WireError(f"header of {len(raw)} bytes (at most {MAX_HEADER_BYTES})")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WireError(f"header is not UTF-8 JSON ({e.__class__.__name__}: {str(e)[:80]})") from None
    if not isinstance(header, dict):
        raise WireError(f"header is a JSON {type(header).__name__}, expected an object")
    if not isinstance(header.get("protocol"), str):
        raise WireError("header lacks 'protocol' (not a gr00t-rlhf inference message)")
    entries = header.get("arrays", [])
    if not isinstance(entries, list) or len(entries) > MAX_ARRAYS:
        raise WireError(f"header 'arrays': expected a list of at most {MAX_ARRAYS} entries")
    if len(entries) != len(frames) - 1:
        raise WireError(f"header lists {len(entries)} arrays but {len(frames) - 1} buffers follow")
    arrays: dict[str, np.ndarray] = {}
    for entry, frame in zip(entries, frames[1:]):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise WireError(f"array entry {entry!r}: expected {{'key', 'dtype', 'shape'}}")
        key, dtype, shape = entry["key"], entry.get("dtype"), entry.get("shape")
        if dtype not in DTYPES:
            raise WireError(f"array {key!r}: dtype {dtype!r} is not allowed; allowed {DTYPES}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise WireError(f"array {key!r}: shape {shape!r} is not a list of non-negative integers")
        dt = np.dtype(dtype).newbyteorder("<")
        buf = memoryview(frame.buffer if hasattr(frame, "buffer") else frame)
        if buf.nbytes != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise WireError(f"array {key!r}: {buf.nbytes} bytes for {dtype} {shape} "
                            f"({int(np.prod(shape, dtype=np.int64)) * dt.itemsize} expected)")
        arrays[key] = np.frombuffer(buf, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))  # a writable copy
    return header, arrays


# -- the payloads -----------------------------------------------------------------------------------
def split_fields(data: dict) -> tuple[dict, dict]:
    """An observation / clip -> (JSON fields: strings and numbers, arrays: everything else as ndarrays)."""
    fields, arrays = {}, {}
    for key, value in data.items():
        if isinstance(value, str) or value is None:
            fields[key] = value
        elif isinstance(value, (bool, int, float, np.integer, np.floating)) and np.ndim(value) == 0 \
                and not key.startswith(("state.", "video.")) and key != "actions":
            fields[key] = value.item() if hasattr(value, "item") else value
        else:
            arrays[key] = np.asarray(value)
    return fields, arrays

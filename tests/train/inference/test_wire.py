"""The wire format: JSON header + raw buffers round trip; crafted messages are refused; no pickle anywhere."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import zmq

from gr00t_rlhf_train.inference import InferenceError, wire
from gr00t_rlhf_train.inference.client import Connection


def test_round_trip():
    arrays = {"video.ego_view": np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
              "state.left_wheel": np.array([0.5], np.float32), "big": np.arange(3, dtype=">f8"),
              "empty": np.zeros((0, 2), np.float32)}
    frames = wire.encode({"id": 7, "method": "act", "fields": {"task": "Find Blue cube", "seed": 3}}, arrays)
    header, out = wire.decode([bytes(f) for f in frames])
    assert header["protocol"] == wire.PROTOCOL and header["id"] == 7 and header["fields"]["seed"] == 3
    assert set(out) == set(arrays)
    for k, a in arrays.items():
        np.testing.assert_array_equal(out[k], a)
        assert out[k].dtype == a.dtype.newbyteorder("=") and out[k].flags.writeable


def _header(arrays, **extra):
    return json.dumps({"protocol": wire.PROTOCOL, "id": 1, "method": "act", "arrays": arrays} | extra).encode()


@pytest.mark.parametrize("frames, message", [
    ([], "empty message"),
    ([b"\x80\x04\x95"], "header is not UTF-8 JSON"),
    ([pickle.dumps({"id": 1})], "header is not UTF-8 JSON"),
    ([b"[1, 2]"], "header is a JSON list"),
    ([b'{"id": 1}'], "header lacks 'protocol'"),
    ([_header([{"key": "x", "dtype": "object", "shape": [1]}]), pickle.dumps(object())], "dtype 'object' is not allowed"),
    ([_header([{"key": "x", "dtype": "float32", "shape": [3]}]), b"\0" * 8], "8 bytes for float32 [3] (12 expected)"),
    ([_header([{"key": "x", "dtype": "uint8", "shape": [-1]}]), b""], "shape [-1] is not a list"),
    ([_header([{"key": "x", "dtype": "uint8", "shape": [1]}])], "lists 1 arrays but 0 buffers follow"),
])
def test_crafted_messages_are_refused(frames, message):
    with pytest.raises(wire.WireError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        wire.decode(frames)


def test_object_arrays_cannot_be_sent():
    with pytest.raises(wire.WireError, match="dtype object cannot be sent"):
        wire.encode({"id": 1}, {"x": np.array([{"a": 1}], dtype=object)})


def test_no_pickle_in_the_inference_package():
    src = Path(wire.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text()
        for word in ("import pickle", "recv_pyobj", "send_pyobj", "allow_pickle=True", "torch.load", "marshal"):
            assert word not in text, f"{f.name} uses {word}"


def test_server_answers_garbage_and_pickle_with_an_error(local_policy, thread_server):
    server = thread_server(local_policy)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(server.address)
    try:
        s.send_multipart([pickle.dumps({"method": "act"})])
        assert s.poll(5000)
        header, _ = wire.decode(s.recv_multipart())
        assert header["ok"] is False and header["error"].startswith("bad request: header is not UTF-8 JSON")
        s.send_multipart([_header([{"key": "video.ego_view", "dtype": "object", "shape": [1]}]), pickle.dumps(1)])
        assert s.poll(5000)
        header, _ = wire.decode(s.recv_multipart())
        assert "dtype 'object' is not allowed" in header["error"]
    finally:
        s.close(0)
        ctx.term()


def test_version_mismatch_is_a_clear_error(local_policy, thread_server):
    # an older client meets this server
    server = thread_server(local_policy)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(server.address)
    try:
        s.send_multipart([json.dumps({"protocol": "gr00t-rlhf-inference/0", "id": 4, "method": "spec"}).encode()])
        assert s.poll(5000)
        header, _ = wire.decode(s.recv_multipart())
    finally:
        s.close(0)
        ctx.term()
    assert header["id"] == 4 and header["ok"] is False
    assert header["error"] == ("protocol mismatch: the client speaks 'gr00t-rlhf-inference/0', this server "
                               "'gr00t-rlhf-inference/1'; install the same gr00t_rlhf on both")


def test_client_refuses_a_newer_server():
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def answer():
        if router.poll(5000):
            identity, head = router.recv_multipart()[:2]
            rid = json.loads(head)["id"]
            router.send_multipart([identity, json.dumps({"protocol": "gr00t-rlhf-inference/2", "id": rid, "ok": True,
                                                         "arrays": [], "result": {}}).encode()])
    import threading
    t = threading.Thread(target=answer)
    t.start()
    conn = Connection(f"tcp://127.0.0.1:{port}", timeout_s=5.0)
    try:
        with pytest.raises(InferenceError) as e:
            conn.request("spec")
    finally:
        conn.close()
        t.join()
        router.close(0)
        ctx.term()
    assert str(e.value) == (f"tcp://127.0.0.1:{port}: the server speaks 'gr00t-rlhf-inference/2', this client "
                            "'gr00t-rlhf-inference/1'; install the same gr00t_rlhf on both")

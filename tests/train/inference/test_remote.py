"""Remote inference: the real `gr00t-rlhf serve` equals the local runtime; timeouts, a killed or restarted server,
server-side errors; best-of-N and the reward model over the wire."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from gr00t_rlhf_train.inference import InferenceError, InferenceTimeout, open_policy, open_reward
from gr00t_rlhf_train.inference.client import Connection, RemotePolicy
from gr00t_rlhf_train.inference.runtime import LANGUAGE_KEY
from gr00t_rlhf_train.inference.server import InferenceServer


def _retry_timeouts(call, within_s: float = 15.0):
    """call() until it does not time out (a restarted server is reconnected within ~1 s; the CI machine is slow)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return call()
        except InferenceTimeout:
            if time.monotonic() > deadline:
                raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_policy_equals_local_then_killed_times_out(serve, policy_ckpt, local_policy, obs):
    server = serve("policy", str(policy_ckpt))
    remote = open_policy(server.address, timeout_s=30.0)     # a loaded CI machine: not a timing test
    try:
        assert isinstance(remote, RemotePolicy) and remote.spec == local_policy.spec
        for seed in (0, 1):
            a, b = remote.act(obs(seed), seed=seed), local_policy.act(obs(seed), seed=seed)
            np.testing.assert_array_equal(a.actions, b.actions)
            assert a.scores is None and a.chosen == 0 and a.model_s > 0
        server.kill()
        remote.conn.timeout_s = 0.5
        for _ in range(2):                                  # the server is gone: every call times out, none hangs
            t0 = time.monotonic()
            with pytest.raises(InferenceTimeout, match=r"within 0\.5 s"):
                remote.act(obs(0), seed=0)
            assert time.monotonic() - t0 < 0.5 + 1.0
    finally:
        remote.close()


def test_slow_server_times_out_then_recovers(local_policy, thread_server, obs):
    server = thread_server(local_policy, debug_delay_s=1.0)
    remote = RemotePolicy(server.address, timeout_s=0.4)
    try:
        t0 = time.monotonic()
        with pytest.raises(InferenceTimeout, match=r"no reply to 'act' within 0\.4 s"):
            remote.act(obs(0), seed=0)
        assert time.monotonic() - t0 < 0.4 + 1.0
        server.debug_delay_s = 0.0
        time.sleep(1.0)                                     # the server finishes the old request
        chunk = remote.act(obs(1), seed=1)                  # the late reply to the old id is discarded
        np.testing.assert_array_equal(chunk.actions, local_policy.act(obs(1), seed=1).actions)
        assert remote.conn.stale_replies == 1
    finally:
        remote.close()


def test_only_the_newest_request_of_a_client_is_served(local_policy, thread_server, obs):
    server = thread_server(local_policy, debug_delay_s=0.6)
    remote = RemotePolicy(server.address, timeout_s=0.2)
    try:
        for i in range(3):                                  # 1 in progress, then 2 and 3 wait: 3 replaces 2
            with pytest.raises(InferenceTimeout):
                remote.act(obs(i), seed=i)
        deadline = time.monotonic() + 5
        while server.stats["replaced"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.stats["replaced"] == 1
    finally:
        remote.close()


def test_restarted_server_is_found_again(local_policy, local_reward, obs):
    address = f"tcp://127.0.0.1:{_free_port()}"

    def start(runtime):
        s = InferenceServer(runtime, address)
        t = threading.Thread(target=s.serve_forever, kwargs={"poll_ms": 20}, daemon=True)
        t.start()
        return s, t

    def stop(s, t):
        s.stop()
        t.join(5)
        s.close()

    s, t = start(local_policy)
    remote = RemotePolicy(address, timeout_s=2.0)
    try:
        first = remote.act(obs(0), seed=0)
        stop(s, t)
        with pytest.raises(InferenceTimeout):
            remote.act(obs(0), seed=0)
        s, t = start(local_policy)                          # the same model again: the client carries on
        np.testing.assert_array_equal(_retry_timeouts(lambda: remote.act(obs(0), seed=0)).actions, first.actions)
        stop(s, t)
        s, t = start(local_reward)                          # another model on that address: refused
        with pytest.raises(InferenceError, match="the server restarted with a different model"):
            _retry_timeouts(lambda: remote.act(obs(0), seed=0))
    finally:
        stop(s, t)
        remote.close()


def test_server_errors_are_one_line(local_policy, local_reward, thread_server, obs):
    server = thread_server(local_policy)
    conn = Connection(server.address, timeout_s=5.0)
    try:
        o = obs(0)
        bad = {k: v for k, v in o.items() if isinstance(v, np.ndarray)} | {"state.left_wheel": np.array([np.nan])}
        with pytest.raises(InferenceError) as e:            # past the client's own check: the server refuses it
            conn.request("act", {LANGUAGE_KEY: o[LANGUAGE_KEY]}, bad)
        assert str(e.value) == f"{server.address}: observation['state.left_wheel']: non-finite value nan"
        with pytest.raises(InferenceError, match="method 'score' is not served by this policy server"):
            conn.request("score")
    finally:
        conn.close()
    reward_server = thread_server(local_reward)
    with pytest.raises(InferenceError, match=r"serves a 'reward' model, not a policy"):
        open_policy(reward_server.address)


def test_no_server_at_open_times_out():
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(InferenceTimeout) as e:
        open_policy(address, connect_timeout_s=0.5)
    assert time.monotonic() - t0 < 0.5 + 1.0
    assert str(e.value) == (f"remote policy {address!r}: no server connected within 0.5 s "
                            "(is `gr00t-rlhf serve` running there?)")


def test_remote_reward_equals_local(local_reward, thread_server, clip):
    server = thread_server(local_reward)
    remote = open_reward(server.address, timeout_s=5.0)
    try:
        assert (remote.horizon, remote.frame_rate, remote.action_horizon, remote.reward_range) == \
            (local_reward.horizon, local_reward.frame_rate, local_reward.action_horizon, local_reward.reward_range)
        assert remote.spec == local_reward.spec
        assert remote.score(clip(seed=3)) == local_reward.score(clip(seed=3))
        with pytest.raises(InferenceError, match=r"clip lacks 'actions'"):
            remote.score(clip(k=0))
    finally:
        remote.close()


def test_remote_best_of_n_equals_local(policy_ckpt, reward_ckpt, thread_server, obs):
    local = open_policy(str(policy_ckpt), reward_model=str(reward_ckpt), num_candidates=3, device="cpu")
    server = thread_server(local)
    with pytest.raises(InferenceError, match="samples 3 candidate"):
        open_policy(server.address, num_candidates=2)
    remote = open_policy(server.address, num_candidates=3, timeout_s=5.0)
    try:
        history = local.best_of_n.new_history()
        for i, stamp in enumerate((5.0, 5.2, 5.4)):
            a = remote.act(obs(i, stamp=stamp), seed=i)
            b = local.act_with_history(obs(i, stamp=stamp), i, history)
            np.testing.assert_array_equal(a.actions, b.actions)
            np.testing.assert_array_equal(a.scores, b.scores)
            assert a.chosen == b.chosen
    finally:
        remote.close()


def test_serve_cli_refuses_a_bad_source_in_one_line(capsys):
    from gr00t_rlhf_train.cli import main
    assert main(["serve", "policy", "no/such/dir", "--device", "cpu", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: serve policy: policy 'no/such/dir': neither a checkpoint directory nor a preset (")
    assert err.endswith(") nor tcp://HOST:PORT") and "\n" not in err
    assert main(["serve", "reward", "no/such/dir", "--device", "cpu"]) == 2
    assert "reward model 'no/such/dir': not a reward-model checkpoint directory" in capsys.readouterr().err

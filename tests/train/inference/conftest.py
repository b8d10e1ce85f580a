"""Fixtures of the inference tests: a tiny policy checkpoint, an action-conditioned tiny reward checkpoint,
observations, and servers (in a thread, or the real `gr00t-rlhf serve` in a subprocess)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.inference.runtime import LANGUAGE_KEY, LocalPolicy, LocalReward
from gr00t_rlhf_train.inference.server import InferenceServer
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel

REPO = Path(__file__).resolve().parents[3]
HORIZON, ACTIONS_K, FPS = 2, 4, 5.0


def make_obs(seed: int = 0, stamp: float | None = None, task: str = "Find Blue cube", size=(48, 64)) -> dict:
    rng = np.random.default_rng(seed)
    obs = {"video.ego_view": rng.integers(0, 255, (*size, 3), dtype=np.uint8),
           "state.left_wheel": rng.uniform(-5, 5, 1).astype(np.float32),
           "state.right_wheel": rng.uniform(-5, 5, 1).astype(np.float32),
           "state.acceleration": rng.uniform(-1, 1, 1).astype(np.float32),
           LANGUAGE_KEY: task}
    if stamp is not None:
        obs["stamp"] = stamp
    return obs


def make_clip(horizon: int = HORIZON, k: int = ACTIONS_K, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    clip = {"video.ego_view": rng.integers(0, 255, (horizon, 48, 64, 3), dtype=np.uint8),
            "state.left_wheel": rng.uniform(-5, 5, (horizon, 1)).astype(np.float32),
            "state.right_wheel": rng.uniform(-5, 5, (horizon, 1)).astype(np.float32),
            "state.acceleration": rng.uniform(-1, 1, (horizon, 1)).astype(np.float32),
            LANGUAGE_KEY: "Find Blue cube"}
    if k:
        clip["actions"] = rng.uniform(-5, 5, (k, 2)).astype(np.float32)
    return clip


@pytest.fixture(scope="session")
def tiny_model() -> Gr00tPolicy:
    return Gr00tPolicy.from_config("tiny", seed=0)


@pytest.fixture(scope="session")
def policy_ckpt(tmp_path_factory, tiny_model) -> Path:
    return tiny_model.save_pretrained(tmp_path_factory.mktemp("policy") / "ckpt")


@pytest.fixture(scope="session")
def reward_ckpt(tmp_path_factory, tiny_model) -> Path:
    """A tiny DiT reward model reading H = 2 frames and K = 4 actions, trained at 5 fps (random weights)."""
    torch.manual_seed(1)
    head = RewardHeadConfig(kind="dit", horizon=HORIZON, action_horizon=ACTIONS_K, num_layers=2, num_heads=2,
                            head_dim=16, hidden_size=32)
    rm = RewardModel.from_policy(tiny_model, head)
    with torch.no_grad():                          # spread the scores (a fresh decoder is near zero)
        for p in rm.head.reward_decoder.parameters():
            p.mul_(20.0)
    return rm.save_pretrained(tmp_path_factory.mktemp("reward") / "ckpt",
                              extra={"reward_training": {"fps": FPS, "image_size": [96, 96]}})


@pytest.fixture(scope="session")
def local_policy(policy_ckpt) -> LocalPolicy:
    return LocalPolicy.open(str(policy_ckpt), device="cpu")


@pytest.fixture(scope="session")
def local_reward(reward_ckpt) -> LocalReward:
    return LocalReward.open(str(reward_ckpt), device="cpu")


@pytest.fixture
def thread_server():
    """thread_server(runtime, **kw) -> InferenceServer serving in a thread on a free port (stopped at teardown)."""
    started = []

    def _start(runtime, address: str = "tcp://127.0.0.1:*", **kw) -> InferenceServer:
        server = InferenceServer(runtime, address, **kw)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_ms": 20}, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield _start
    for server, thread in started:
        stop_thread_server(server, thread)


def stop_thread_server(server, thread=None) -> None:
    server.stop()
    if thread is not None:
        thread.join(5)
    if not server.socket.closed:
        server.close()


class ServeProcess:
    """`python -m gr00t_rlhf_train.cli serve ...` in a subprocess; .address once it serves."""

    def __init__(self, args: list[str], log: Path, ready_s: float = 120.0):
        env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = log
        self._out = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "gr00t_rlhf_train.cli", "serve", *args],
                                     stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline:
            m = re.search(r"serving \w+ .* on (tcp://\S+) ", log.read_text())
            if m:
                self.address = m.group(1)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not start: {log.read_text()[-2000:]}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


@pytest.fixture
def obs():
    """obs(seed=0, stamp=None, task=..., size=(48, 64)) -> a policy observation."""
    return make_obs


@pytest.fixture
def clip():
    """clip(horizon=2, k=4, seed=0) -> a reward clip."""
    return make_clip


@pytest.fixture
def serve(tmp_path):
    """serve(*cli_args) -> ServeProcess (the real CLI in a subprocess on a free port), stopped at teardown."""
    procs = []

    def _serve(*args: str) -> ServeProcess:
        p = ServeProcess([*args, "--port", "0", "--device", "cpu"], tmp_path / f"serve{len(procs)}.log")
        procs.append(p)
        return p

    yield _serve
    for p in procs:
        p.stop()

"""Tiny GR00T N1 fixtures for the model tests (CPU, built once per session)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.model.policy import Gr00tPolicy


@pytest.fixture(scope="session")
def tiny_policy() -> Gr00tPolicy:
    torch.manual_seed(0)
    return Gr00tPolicy.from_config("tiny", seed=0)


def make_observation(batch: int | None = None, seed: int = 0, horizon: int | None = None, actions: bool = False) -> dict:
    """A synthetic observation: uint8 frames, the 3-value state, the instruction (optionally action chunks)."""
    rng = np.random.default_rng(seed)
    lead = tuple(x for x in (batch, horizon) if x is not None)
    obs = {
        "video.ego_view": rng.integers(0, 255, (*lead, 48, 64, 3), dtype=np.uint8),
        "state.left_wheel": rng.uniform(-5, 5, (*lead, 1)),
        "state.right_wheel": rng.uniform(-5, 5, (*lead, 1)),
        "state.acceleration": rng.uniform(-1, 1, (*lead, 1)),
        "task": "Find Blue cube" if batch is None else [["Find Blue cube", "Find Green sphere"][i % 2]
                                                        for i in range(batch)],
    }
    if actions:
        obs["action.wheel_commands"] = rng.uniform(-5, 5, (*((batch,) if batch else ()), 16, 2))
    return obs


@pytest.fixture
def observation():
    return make_observation

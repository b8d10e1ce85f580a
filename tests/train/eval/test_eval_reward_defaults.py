"""``eval reward`` device defaults: the plain path and batches of 64 on the CPU (the fast path and batches
of 256 are for CUDA), and the same predictions whatever the batch size."""
from __future__ import annotations

import numpy as np
import pytest

from gr00t_rlhf_train.data.cache import FrameCache, build_cache
from gr00t_rlhf_train.eval.common import EvalError
from gr00t_rlhf_train.eval.reward import DEFAULT_BATCH_SIZE, evaluate_reward, load_reward_model
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.processor import ModalityConfig, stats_from_lerobot
from gr00t_rlhf_train.model.reward_head import RewardHeadConfig
from gr00t_rlhf_train.model.reward_model import RewardModel
from train.data.synth_dataset import make_dataset

pytestmark = pytest.mark.filterwarnings("ignore::gr00t_rlhf_train.data.DatasetQuirkWarning")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaldefaults")
    make_dataset(tmp / "ds", episodes=2, frames=8, size=(32, 48))
    cache_dir = build_cache(tmp / "ds", tmp / "cache", image_size=32, progress=False)
    modality = ModalityConfig(**FrameCache(cache_dir).modality_dims())
    policy = Gr00tPolicy.from_config("tiny", modality=modality,
                                     stats=stats_from_lerobot(FrameCache(cache_dir).stats, modality))
    rm = RewardModel.from_policy(policy, RewardHeadConfig(kind="mlp", horizon=1, hidden_size=16))
    return cache_dir, rm.save_pretrained(tmp / "reward")


def test_cpu_keeps_the_plain_path_and_the_default_batch_gives_the_same_predictions(setup, tmp_path):
    cache, ckpt = setup
    rm, _ = load_reward_model(ckpt, "cpu")
    assert not rm.fast.any and DEFAULT_BATCH_SIZE == {"cuda": 256, "cpu": 64}
    default = evaluate_reward(ckpt, cache, episodes=[0], prediction_only=True, out_dir=tmp_path / "a", device="cpu")
    small = evaluate_reward(ckpt, cache, episodes=[0], prediction_only=True, batch_size=3, out_dir=tmp_path / "b",
                            device="cpu")
    np.testing.assert_allclose(np.load(default["files"]["predictions"])["pred"],
                               np.load(small["files"]["predictions"])["pred"], atol=1e-5)
    with pytest.raises(EvalError, match="batch_size = 0: must be a positive integer"):
        evaluate_reward(ckpt, cache, batch_size=0, out_dir=tmp_path / "c", device="cpu")

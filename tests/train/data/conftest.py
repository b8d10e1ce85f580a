"""Fixtures of the dataset library tests: the seed datasets and tiny synthetic datasets."""
from __future__ import annotations

import pytest

from synth_dataset import make_dataset

SEED_DATASETS = ("Policy_Data_results_0001", "Reward_New_Data_WithBadEp", "Reward_Results_with_505_Reward")


@pytest.fixture
def tiny_dataset(tmp_path):
    """(root, truth): two committed episodes of 8 and 9 frames, 64x96 images, binary feedback."""
    root = tmp_path / "tiny"
    truth = make_dataset(root)
    return root, truth

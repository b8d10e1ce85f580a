"""The model's normalisation semantics and data config reach the processor and the official reader."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gr00t_rlhf_train.model import checkpoint
from gr00t_rlhf_train.model.configuration import ConfigError, DataConfig
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.processor import ModalityConfig


def test_new_checkpoint_is_official_old_json_keeps_legacy_clipping(tiny_policy, tmp_path):
    ckpt = tiny_policy.save_pretrained(tmp_path / "new")
    new = Gr00tPolicy.from_pretrained(ckpt).processor
    assert new.semantics == "official"
    a = np.zeros((1, 16, 32))
    a[..., 0], a[..., 1] = 1.5, -1.5                       # outside [-1, 1]: official min_max does not clip
    np.testing.assert_allclose(new.decode_actions(a)["action.wheel_commands"][0, 0], [7.5, -7.5])
    state = {"state.left_wheel": [[6.0]], "state.right_wheel": [[0.0]], "state.acceleration": [[0.0]]}
    assert new.normalize_group(new._group(state, "state", 1, True), "state")[0, 0] == pytest.approx(1.2)

    meta = json.loads((ckpt / checkpoint.CONFIG_NAME).read_text())
    del meta["model"]["data"]                              # a checkpoint written before DataConfig existed
    (ckpt / checkpoint.CONFIG_NAME).write_text(json.dumps(meta))
    old = Gr00tPolicy.from_pretrained(ckpt).processor
    assert old.semantics == "legacy"
    np.testing.assert_allclose(old.decode_actions(a)["action.wheel_commands"][0, 0], [5.0, -5.0])
    assert old.normalize_group(old._group(state, "state", 1, True), "state")[0, 0] == 1.0


def test_modality_modes_are_checked_per_group():
    assert ModalityConfig(state_mode="scale", action_mode="binary").state_mode == "scale"
    with pytest.raises(ConfigError, match=r"ModalityConfig.action_mode = 'scale': allowed"):
        ModalityConfig(action_mode="scale")
    with pytest.raises(ConfigError, match=r"ModalityConfig.state_mode = 'q95': allowed"):
        ModalityConfig(state_mode="q95")


def _metadata_dir(tmp_path):
    stats = lambda lo, hi, n: {"min": [lo] * n, "max": [hi] * n, "mean": [0.0] * n, "std": [1.0] * n,  # noqa: E731
                               "q01": [lo] * n, "q99": [hi] * n}
    d = tmp_path / "official"
    (d / "experiment_cfg").mkdir(parents=True)
    (d / "experiment_cfg" / "metadata.json").write_text(json.dumps({"new_embodiment": {
        "statistics": {"state": {"arm": stats(-1, 1, 2), "gripper": stats(0, 1, 1)},
                       "action": {"arm": stats(-2, 2, 2), "gripper": stats(0, 1, 1)}},
        "modalities": {"video": {"front": {}, "wrist": {}}, "state": {"arm": {"shape": [2]}, "gripper": {"shape": [1]}},
                       "action": {"arm": {"shape": [2]}, "gripper": {"shape": [1]}}}}}))
    return d


def official_dir(policy, tmp_path, monkeypatch):
    """An official-layout directory (config.json, model.safetensors, metadata.json) holding ``policy``'s weights;
    ``config_from_official`` is pointed at ``policy``'s configuration."""
    from safetensors.torch import save_file

    monkeypatch.setattr(checkpoint, "config_from_official", lambda cfg: policy.model.config)
    d = _metadata_dir(tmp_path)
    (d / "config.json").write_text(json.dumps({"model_type": "gr00t_n1"}))
    save_file({k: v.detach().clone().contiguous() for k, v in policy.model.state_dict().items()},
              str(d / "model.safetensors"))
    return d


def test_official_metadata_follows_the_data_config(tmp_path):
    d = _metadata_dir(tmp_path)
    modality, stats = checkpoint.official_metadata(d, None)          # default: the file's keys and order
    assert modality.video == ["front", "wrist"] and list(modality.state) == ["arm", "gripper"]
    dc = DataConfig(video_keys=["video.wrist"], state_keys=["state.gripper", "state.arm"],
                    action_keys=["action.gripper", "action.arm"], state_mode="q99", action_mode="mean_std")
    modality, stats = checkpoint.official_metadata(d, None, dc)
    assert modality.video == ["wrist"] and list(modality.state) == ["gripper", "arm"]
    assert list(modality.action) == ["gripper", "arm"] and list(stats["action"]) == ["gripper", "arm"]
    assert (modality.state_mode, modality.action_mode) == ("q99", "mean_std")
    with pytest.raises(ConfigError, match=r"state_keys: state.elbow is not in .*metadata.json \(its state keys: "
                                          r"state.arm, state.gripper\)"):
        checkpoint.official_metadata(d, None, DataConfig(state_keys=["state.elbow"]))


def test_read_official_takes_the_data_config(tiny_policy, tmp_path, monkeypatch):
    d = official_dir(tiny_policy, tmp_path, monkeypatch)
    dc = DataConfig(state_keys=["state.gripper", "state.arm"], action_keys=["action.arm"])
    _, proc = checkpoint.read_official(d, tokenizer="tiny", data_config=dc)
    assert proc.model_config.data == dc and proc.semantics == "official"
    assert list(proc.modality.state) == ["gripper", "arm"] and list(proc.modality.action) == ["arm"]
    assert tiny_policy.model.config.data == DataConfig()              # the shared config is not modified
    _, default = checkpoint.read_official(d, tokenizer="tiny")
    assert list(default.modality.action) == ["arm", "gripper"]
    _, via_policy, _ = checkpoint.read_policy(d, tokenizer="tiny", data_config=dc)
    assert list(via_policy.modality.state) == ["gripper", "arm"]

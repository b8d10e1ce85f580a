"""Normalisation semantics: official GR00T N1 (``Normalizer`` of gr00t/data/transform/state_action.py) and
this project's legacy semantics, pinned on official ``experiment_cfg/metadata.json``-style statistics."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gr00t_rlhf_train.model.configuration import ConfigError, DataConfig, ModelConfig, preset
from gr00t_rlhf_train.model.normalization import StatsError, normalize, unnormalize

METADATA = Path(__file__).parent / "golden_b" / "metadata.json"


@pytest.fixture(scope="module")
def stats() -> dict:
    """The official-format statistics of the fixture: {"state": {name: {...}}, "action": {name: {...}}}."""
    return json.loads(METADATA.read_text())["new_embodiment"]["statistics"]


# wheel_commands: dim 0 spans [-5, 5] (q [-4, 4], mean 0.5, std 2); dim 1 is constant (0, std 0, mean 0.25)
X = np.array([[6.0, 3.0], [-5.0, 0.0], [2.0, -1.0]])

PINNED = {  # (mode, semantics) -> normalize(X)
    ("min_max", "official"): [[1.2, 0.0], [-1.0, 0.0], [0.4, 0.0]],      # not clipped; constant dim -> 0
    ("min_max", "legacy"): [[1.0, 0.0], [-1.0, 0.0], [0.4, 0.0]],        # clipped
    ("q99", "official"): [[1.0, 1.0], [-1.0, 0.0], [0.5, -1.0]],         # clipped; constant dim -> x, clipped
    ("q99", "legacy"): [[1.0, 0.0], [-1.0, 0.0], [0.5, 0.0]],            # constant dim -> 0
    ("mean_std", "official"): [[2.75, 3.0], [-2.75, 0.0], [0.75, -1.0]],  # std 0 -> x unchanged
    ("mean_std", "legacy"): [[2.75, 2.75], [-2.75, -0.25], [0.75, -1.25]],  # std 0 -> only centred
}


@pytest.mark.parametrize("mode,semantics", sorted(PINNED))
def test_pinned_normalised_values(stats, mode, semantics):
    got = normalize(X, stats["action"]["wheel_commands"], mode, "action.wheel_commands", semantics)
    np.testing.assert_allclose(got, PINNED[(mode, semantics)], rtol=0, atol=1e-12)


def test_legacy_is_the_default_so_old_callers_keep_their_outputs(stats):
    s = stats["action"]["wheel_commands"]
    for mode in ("min_max", "q99", "mean_std"):
        np.testing.assert_array_equal(normalize(X, s, mode), normalize(X, s, mode, semantics="legacy"))


def test_official_inverse_is_not_clipped(stats):
    s = stats["action"]["wheel_commands"]
    y = np.array([1.5, 0.3])
    np.testing.assert_allclose(unnormalize(y, s, "min_max", semantics="official"), [7.5, 0.0])
    np.testing.assert_allclose(unnormalize(y, s, "q99", semantics="official"), [6.0, 0.0])     # constant dim -> q01
    np.testing.assert_allclose(unnormalize(y, s, "mean_std", semantics="official"), [3.5, 0.25])  # std 0 -> mean
    np.testing.assert_allclose(unnormalize(y, s, "min_max", semantics="legacy"), [5.0, 0.0])   # legacy clips


def test_official_round_trips(stats):
    """min_max and mean_std invert everywhere (outside the range too); q99 inside [q01, q99]."""
    rng = np.random.default_rng(0)
    s = stats["state"]["left_wheel"]
    wide = rng.uniform(-20, 20, (64, 1))
    for mode in ("min_max", "mean_std"):
        back = unnormalize(normalize(wide, s, mode, semantics="official"), s, mode, semantics="official")
        np.testing.assert_allclose(back, wide, rtol=0, atol=1e-12)
    inside = rng.uniform(-4, 4, (64, 1))
    back = unnormalize(normalize(inside, s, "q99", semantics="official"), s, "q99", semantics="official")
    np.testing.assert_allclose(back, inside, rtol=0, atol=1e-12)
    acc = stats["state"]["acceleration"]
    a = rng.uniform(0, 2, (64, 1))
    np.testing.assert_allclose(unnormalize(normalize(a, acc, "min_max", semantics="official"), acc, "min_max",
                                           semantics="official"), a, rtol=0, atol=1e-12)


def test_binary_and_scale(stats):
    s = stats["action"]["wheel_commands"]
    np.testing.assert_array_equal(normalize(np.array([[0.2, 0.5], [0.7, 3.0]]), s, "binary", semantics="official"),
                                  [[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(unnormalize(np.array([0.49, 0.51]), s, "binary", semantics="official"), [0.0, 1.0])
    np.testing.assert_allclose(normalize(X, s, "scale", semantics="official"), [[1.2, 0.0], [-1.0, 0.0], [0.4, 0.0]])
    with pytest.raises(StatsError, match="scale has no inverse"):
        unnormalize(X, s, "scale", semantics="official")


def test_bad_modes_and_stats_are_one_line_errors(stats):
    s = stats["action"]["wheel_commands"]
    with pytest.raises(StatsError, match="'binary' for action.x: allowed .* 'legacy'"):
        normalize(X, s, "binary", "action.x", semantics="legacy")
    with pytest.raises(StatsError, match="semantics 'clipped'"):
        normalize(X, s, "min_max", semantics="clipped")
    with pytest.raises(StatsError, match=r"statistics of action.x lack \['q01'\]"):
        normalize(X, {"q99": [1, 1]}, "q99", "action.x", semantics="official")
    with pytest.raises(StatsError, match="statistics of state.y have 1/1 values .* the modality has 2 dims"):
        normalize(X, stats["state"]["left_wheel"], "min_max", "state.y", semantics="official")


def test_semantics_are_versioned_in_the_model_config():
    """New models say "official"; a checkpoint JSON without ``data`` (written before) reads as "legacy"."""
    config = preset("tiny")
    assert config.data.normalization == "official"
    saved = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(saved).data == config.data
    old = {k: v for k, v in saved.items() if k != "data"}
    assert ModelConfig.from_dict(old).data.normalization == "legacy"
    partial = saved | {"data": {"state_keys": ["state.left_wheel"]}}
    assert ModelConfig.from_dict(partial).data.normalization == "legacy"
    with pytest.raises(ConfigError, match="DataConfig.normalization = 'v3': allowed"):
        DataConfig(normalization="v3")
    with pytest.raises(ConfigError, match="'scale' for DataConfig.action_mode.*no inverse"):
        DataConfig(action_mode="scale")
    with pytest.raises(ConfigError, match="'binary' for DataConfig.state_mode"):
        DataConfig(state_mode="binary", normalization="legacy")

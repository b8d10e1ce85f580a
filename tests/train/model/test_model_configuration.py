"""The presets: the 2B one matches the official parameter count and state_dict exactly (meta device)."""
from __future__ import annotations

import pytest
import torch

from gr00t_rlhf_train.model.configuration import (OFFICIAL_N1_2B_PARAMETERS, ActionHeadConfig, ConfigError,
                                                  VisionConfig, preset)
from gr00t_rlhf_train.model.gr00t_n1 import Gr00tN1, parameter_counts


def official_n1_2b_keys() -> dict[str, tuple[int, ...]]:
    """The official nvidia/GR00T-N1-2B state_dict, enumerated from the published architecture facts."""
    keys: dict[str, tuple[int, ...]] = {}
    v = "backbone.model.vision_model.vision_model."
    keys[v + "embeddings.patch_embedding.weight"] = (1152, 3, 14, 14)
    keys[v + "embeddings.patch_embedding.bias"] = (1152,)
    keys[v + "embeddings.position_embedding.weight"] = (256, 1152)
    for i in range(27):
        p = f"{v}encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            keys[p + n + ".weight"] = keys[p + n + ".bias"] = (1152,)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            keys[p + f"self_attn.{n}.weight"] = (1152, 1152)
            keys[p + f"self_attn.{n}.bias"] = (1152,)
        keys[p + "mlp.fc1.weight"], keys[p + "mlp.fc1.bias"] = (4304, 1152), (4304,)
        keys[p + "mlp.fc2.weight"], keys[p + "mlp.fc2.bias"] = (1152, 4304), (1152,)
    keys[v + "post_layernorm.weight"] = keys[v + "post_layernorm.bias"] = (1152,)
    m = "backbone.model.mlp1."
    keys.update({m + "0.weight": (4608,), m + "0.bias": (4608,), m + "1.weight": (2048, 4608), m + "1.bias": (2048,),
                 m + "3.weight": (2048, 2048), m + "3.bias": (2048,)})
    lm = "backbone.model.language_model.model."
    keys[lm + "embed_tokens.weight"] = (49164, 2048)
    for i in range(12):
        p = f"{lm}layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            keys[p + f"self_attn.{n}.weight"] = (2048, 2048)
        keys[p + "mlp.gate_proj.weight"] = keys[p + "mlp.up_proj.weight"] = (8192, 2048)
        keys[p + "mlp.down_proj.weight"] = (2048, 8192)
        keys[p + "input_layernorm.weight"] = keys[p + "post_attention_layernorm.weight"] = (2048,)
    keys[lm + "norm.weight"] = (2048,)
    keys["backbone.linear.weight"], keys["backbone.linear.bias"] = (1536, 2048), (1536,)
    d = "action_head.model."
    keys[d + "timestep_encoder.timestep_embedder.linear_1.weight"] = (1536, 256)
    keys[d + "timestep_encoder.timestep_embedder.linear_1.bias"] = (1536,)
    keys[d + "timestep_encoder.timestep_embedder.linear_2.weight"] = (1536, 1536)
    keys[d + "timestep_encoder.timestep_embedder.linear_2.bias"] = (1536,)
    for i in range(16):
        p = f"{d}transformer_blocks.{i}."
        keys[p + "norm1.linear.weight"], keys[p + "norm1.linear.bias"] = (3072, 1536), (3072,)
        for n in ("to_q", "to_k", "to_v", "to_out.0"):
            keys[p + f"attn1.{n}.weight"], keys[p + f"attn1.{n}.bias"] = (1536, 1536), (1536,)
        keys[p + "ff.net.0.proj.weight"], keys[p + "ff.net.0.proj.bias"] = (6144, 1536), (6144,)
        keys[p + "ff.net.2.weight"], keys[p + "ff.net.2.bias"] = (1536, 6144), (1536,)
    keys[d + "proj_out_1.weight"], keys[d + "proj_out_1.bias"] = (3072, 1536), (3072,)
    keys[d + "proj_out_2.weight"], keys[d + "proj_out_2.bias"] = (1024, 1536), (1024,)
    a = "action_head."
    for name, (i, o) in {"state_encoder.layer1": (64, 1024), "state_encoder.layer2": (1024, 1536),
                         "action_encoder.W1": (32, 1536), "action_encoder.W2": (3072, 1536),
                         "action_encoder.W3": (1536, 1536), "action_decoder.layer1": (1024, 1024),
                         "action_decoder.layer2": (1024, 32)}.items():
        keys[f"{a}{name}.W"], keys[f"{a}{name}.b"] = (32, i, o), (32, o)
    keys[a + "position_embedding.weight"] = (1024, 1536)
    return keys


@pytest.fixture(scope="module")
def n1_2b_meta() -> Gr00tN1:
    with torch.device("meta"):
        return Gr00tN1(preset("gr00t-n1-2b"))


def test_2b_preset_has_the_official_parameter_count(n1_2b_meta):
    counts = parameter_counts(n1_2b_meta)
    assert counts["total"] == OFFICIAL_N1_2B_PARAMETERS == 2_190_016_752
    assert counts["backbone"] == 1_335_279_856
    assert counts["action_head"] == 854_736_896
    assert all(p.is_meta for p in n1_2b_meta.parameters())


def test_2b_preset_has_the_official_keys_and_shapes(n1_2b_meta):
    ours = {k: tuple(v.shape) for k, v in n1_2b_meta.state_dict().items()}
    official = official_n1_2b_keys()
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    assert {k: s for k, s in ours.items() if official[k] != s} == {}
    total = 0
    for s in official.values():
        total += torch.Size(s).numel()
    assert total == OFFICIAL_N1_2B_PARAMETERS


def test_tiny_preset_is_small():
    with torch.device("meta"):
        model = Gr00tN1(preset("tiny"))
    assert 500_000 < parameter_counts(model)["total"] < 5_000_000


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="head_dim"):
        ActionHeadConfig(num_heads=32, head_dim=40)
    with pytest.raises(ConfigError, match="image_size"):
        VisionConfig(image_size=100, patch_size=14)
    with pytest.raises(ConfigError, match="unknown model preset"):
        preset("gr00t-n9")


def test_small_preset_is_sized_for_the_seed_data():
    cfg = preset("small")
    assert cfg.backbone.vision.image_size == 84 and cfg.backbone.project_to_dim == 128
    with torch.device("meta"):
        model = Gr00tN1(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert 3_000_000 < n < 8_000_000

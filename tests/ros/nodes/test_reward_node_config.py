"""config/drive.rviz and config/reward.yaml agree with the contract and with each other (no rviz needed)."""
from __future__ import annotations

import yaml

from gr00t_rlhf_ros.contract import load_contract
from gr00t_rlhf_ros.paths import config_path

C = load_contract()


def displays() -> dict:
    doc = yaml.safe_load(config_path("drive.rviz").read_text())
    return doc, {d["Name"]: d for d in doc["Visualization Manager"]["Displays"]}


def test_rviz_shows_the_camera_the_overlay_and_the_marker_of_the_contract():
    _, d = displays()
    assert d["Camera"]["Class"] == "rviz_default_plugins/Image"
    assert d["Camera"]["Topic"]["Value"] == C.topic("camera").resolved()
    assert d["Reward overlay"]["Class"] == "rviz_default_plugins/Image"
    assert d["Reward overlay"]["Topic"]["Value"] == C.topic("reward_overlay").resolved()
    assert d["Reward"]["Class"] == "rviz_default_plugins/Marker"
    assert d["Reward"]["Topic"]["Value"] == C.topic("reward_marker").resolved()
    assert d["Reward"]["Namespaces"] == {"reward": True}
    # camera-sized frames are lost by BEST_EFFORT readers with Fast DDS defaults (contract.yaml)
    for name in ("Camera", "Reward overlay"):
        assert d[name]["Topic"]["Reliability Policy"] == "Reliable"


def test_the_marker_frame_is_rvizs_fixed_frame_so_it_shows_without_tf():
    doc, _ = displays()
    params = yaml.safe_load(config_path("reward.yaml").read_text())["/**/reward_node"]["ros__parameters"]
    assert doc["Visualization Manager"]["Global Options"]["Fixed Frame"] == params["marker_frame"] == "base_link"

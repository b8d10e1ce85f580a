"""The contract file loads, is complete, and bad contracts fail naming the field."""
import pytest
import yaml

from gr00t_rlhf_ros.contract import ContractError, load_contract, parse_contract


def test_contract_has_every_topic_and_service_of_the_architecture():
    c = load_contract()
    expected_topics = {
        "camera": ("camera/image_raw", "sensor_msgs/msg/Image"),
        "imu": ("imu", "sensor_msgs/msg/Imu"),
        "joint_states": ("joint_states", "sensor_msgs/msg/JointState"),
        "wheel_commands": ("wheel_commands", "std_msgs/msg/Float64MultiArray"),
        "task": ("task", "std_msgs/msg/String"),
        "reward": ("reward", "std_msgs/msg/Float32"),
        "reward_marker": ("reward/marker", "visualization_msgs/msg/Marker"),
        "reward_overlay": ("reward/overlay", "sensor_msgs/msg/Image"),
        "human_feedback": ("human_feedback", "std_msgs/msg/Int32"),
        "estop": ("estop", "std_msgs/msg/Bool"),
    }
    for key, (name, type_) in expected_topics.items():
        assert (c.topic(key).name, c.topic(key).type) == (name, type_)
    assert {s.name for s in c.services.values()} >= {
        "recorder/start_episode", "recorder/stop_episode", "recorder/discard_episode", "sim/reset"}
    assert c.wheel_joints == ("left_wheel_joint", "right_wheel_joint")
    assert c.max_wheel_speed == 5.0
    assert c.topic("camera").qos.reliability == "reliable"
    assert c.topic("task").qos.durability == "transient_local"


def test_every_contract_type_is_importable():
    pytest.importorskip("rclpy")
    from gr00t_rlhf_ros.msgs import message_class

    c = load_contract()
    for t in c.topics.values():
        message_class(t.type)


def _doc():
    return yaml.safe_load(load_contract().path.read_text())


def test_unknown_qos_profile_is_named(tmp_path):
    doc = _doc()
    doc["topics"]["camera"]["qos"] = "fast"
    with pytest.raises(ContractError, match=r"topics\.camera\.qos: unknown profile 'fast'"):
        parse_contract(doc, tmp_path / "c.yaml")


def test_bad_depth_is_named(tmp_path):
    doc = _doc()
    doc["qos"]["sensor"]["depth"] = 0
    with pytest.raises(ContractError, match=r"qos\.sensor\.depth"):
        parse_contract(doc, tmp_path / "c.yaml")


@pytest.mark.parametrize("bad", ["/imu", "~/imu", "imu/", "robot//imu", "1imu", "", 5])
def test_absolute_private_or_malformed_names_are_refused(tmp_path, bad):
    doc = _doc()
    doc["topics"]["imu"]["name"] = bad
    with pytest.raises(ContractError, match=r"topics\.imu\.name: .*relative ROS name"):
        parse_contract(doc, tmp_path / "c.yaml")
    doc = _doc()
    doc["services"]["sim_reset"]["name"] = bad
    with pytest.raises(ContractError, match=r"services\.sim_reset\.name: .*relative ROS name"):
        parse_contract(doc, tmp_path / "c.yaml")


def test_names_resolve_under_a_namespace():
    c = load_contract()
    assert c.topic("camera").resolved() == "/camera/image_raw"           # what a root-namespace bag holds
    assert c.topic("camera").resolved("/robot1") == "/robot1/camera/image_raw"
    assert c.service("start_episode").resolved("/fleet/robot2") == "/fleet/robot2/recorder/start_episode"
    with pytest.raises(ContractError, match="namespace 'robot1'"):
        c.topic("imu").resolved("robot1")


def test_missing_file_and_unknown_topic(tmp_path):
    with pytest.raises(ContractError, match="not found"):
        load_contract(tmp_path / "missing.yaml")
    with pytest.raises(ContractError, match="no topic 'lidar'"):
        load_contract().topic("lidar")

"""ROS message <-> numpy conversions."""
import math

import numpy as np
import pytest

from gr00t_rlhf_ros.msgs import (BadCommand, UnsupportedEncoding, image_to_rgb, parse_wheel_command,
                                 wheel_velocities)


@pytest.mark.parametrize("encoding,channels", [("rgb8", 3), ("bgr8", 3), ("rgba8", 4), ("bgra8", 4), ("mono8", 1)])
def test_image_encodings_convert_to_rgb(encoding, channels):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (4, 5, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb[..., 1] = rgb[..., 2] = rgb[..., 0]
        raw = rgb[..., :1]
    elif encoding.startswith("bgr"):
        raw = rgb[..., ::-1]
    else:
        raw = rgb
    if channels == 4:
        raw = np.concatenate([raw, np.full((4, 5, 1), 255, np.uint8)], axis=2)
    padded = np.zeros((4, 5 * channels + 3), np.uint8)   # row padding: step > width * channels
    padded[:, : 5 * channels] = raw.reshape(4, -1)
    out = image_to_rgb(4, 5, encoding, 5 * channels + 3, padded.tobytes())
    np.testing.assert_array_equal(out, rgb)


def test_unknown_encoding_names_topic_and_encoding():
    with pytest.raises(UnsupportedEncoding, match=r"/cam.*'16UC1'"):
        image_to_rgb(2, 2, "16UC1", 4, b"\0" * 8, topic="/cam")


def test_short_image_data_is_an_error():
    with pytest.raises(ValueError, match="too short"):
        image_to_rgb(4, 4, "rgb8", 12, b"\0" * 10, topic="/cam")


def test_wheel_command_validation():
    assert parse_wheel_command([1.0, -2.0], 5.0) == ((1.0, -2.0), False)
    assert parse_wheel_command([9.0, -7.0], 5.0) == ((5.0, -5.0), True)
    for bad in ([1.0], [1.0, 2.0, 3.0], [math.nan, 0.0], [0.0, math.inf]):
        with pytest.raises(BadCommand):
            parse_wheel_command(bad, 5.0)


def test_wheel_velocities_by_name():
    assert wheel_velocities(["right_wheel_joint", "left_wheel_joint"], [2.0, 1.0],
                            ("left_wheel_joint", "right_wheel_joint")) == (1.0, 2.0)
    with pytest.raises(ValueError, match="joint 'left_wheel_joint' not in message"):
        wheel_velocities(["a"], [0.0], ("left_wheel_joint", "right_wheel_joint"))


def test_check_image_rejects_before_decoding():
    from gr00t_rlhf_ros.msgs import BadMessage, check_image

    check_image(4, 4, "rgb8", 12, 48, "/cam", expected=(4, 4))
    cases = {
        "unsupported encoding '16UC1'": (4, 4, "16UC1", 8, 32, None),
        "empty image": (0, 0, "rgb8", 0, 0, None),
        "step smaller than width x channels": (4, 4, "rgb8", 11, 48, None),
        "data too short": (4, 4, "rgb8", 12, 47, None),
        "size 4x2, dataset 4x4": (2, 4, "rgb8", 12, 24, (4, 4)),
    }
    for reason, (h, w, enc, step, n, expected) in cases.items():
        with pytest.raises(BadMessage, match="/cam") as e:
            check_image(h, w, enc, step, n, "/cam", expected)
        assert e.value.reason == reason


def test_non_finite_sensor_values_are_bad_messages():
    from types import SimpleNamespace

    from gr00t_rlhf_ros.msgs import BadMessage, imu_acceleration

    assert imu_acceleration(SimpleNamespace(x=3.0, y=4.0, z=0.0)) == 5.0
    for v in (math.nan, math.inf, 1e300):
        with pytest.raises(BadMessage, match="/imu"):
            imu_acceleration(SimpleNamespace(x=v, y=0.0, z=0.0), "/imu")
        with pytest.raises(BadMessage, match="/js.*right_wheel_joint"):
            wheel_velocities(["left_wheel_joint", "right_wheel_joint"], [0.0, v],
                             ("left_wheel_joint", "right_wheel_joint"), "/js")

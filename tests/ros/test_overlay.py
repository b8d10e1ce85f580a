"""The reward overlay (bar, value, sparkline) and the red-to-green colour scale: plain numpy/cv2."""
from __future__ import annotations

import math

import numpy as np
import pytest

from gr00t_rlhf_ros.overlay import draw_overlay, fill_fraction, layout, reward_colour
from gr00t_rlhf_ros.reward_scoring import RewardHistory


def camera_image(h=240, w=320, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def bar_fill_columns(out: np.ndarray, value: float, low=0.0, high=1.0) -> int:
    """Columns of the bar's middle row painted in the reward's colour."""
    lay = layout(*out.shape[:2])
    row = out[(lay.bar.y0 + lay.bar.y1) // 2, lay.bar.x0:lay.bar.x1]
    colour = np.array([round(255 * c) for c in reward_colour(value, low, high)])
    return int(np.all(row == colour, axis=1).sum())


def test_colour_runs_from_red_through_yellow_to_green_and_clips():
    assert reward_colour(0.0, 0.0, 1.0) == (1.0, 0.0, 0.0)
    assert reward_colour(0.5, 0.0, 1.0) == (1.0, 1.0, 0.0)
    assert reward_colour(1.0, 0.0, 1.0) == (0.0, 1.0, 0.0)
    assert reward_colour(-3.0, -1.0, 1.0) == reward_colour(-1.0, -1.0, 1.0)   # below the range: red
    assert reward_colour(7.0, -5.0, 5.0) == reward_colour(5.0, -5.0, 5.0)     # above: green
    assert reward_colour(math.nan, 0.0, 1.0) == (0.5, 0.5, 0.5)


def test_bar_is_filled_in_proportion_to_the_value_in_the_reward_range():
    image = camera_image()
    lay = layout(240, 320)
    inner = lay.bar.x1 - lay.bar.x0 - 2
    for value, low, high in ((0.25, 0.0, 1.0), (0.8, 0.0, 1.0), (0.0, -5.0, 5.0), (4.0, -5.0, 5.0)):
        out = draw_overlay(image, value, (low, high))
        expected = round(fill_fraction(value, low, high) * inner)
        assert abs(bar_fill_columns(out, value, low, high) - expected) <= 1, (value, low, high)
    assert bar_fill_columns(draw_overlay(image, 0.0, (0.0, 1.0)), 0.0) == 0          # empty bar at the low end
    full = draw_overlay(image, 2.0, (0.0, 1.0))                                        # clipped above the range
    assert abs(bar_fill_columns(full, 1.0) - inner) <= 1


def test_value_text_and_sparkline_change_their_pixels_only_and_the_input_is_untouched():
    image = camera_image()
    before = image.copy()
    history = np.array([[t, 0.5 + 0.4 * math.sin(t)] for t in np.arange(0, 10, 0.1)])
    out = draw_overlay(image, 0.6, (0.0, 1.0), history)
    assert np.array_equal(image, before)
    assert out.dtype == np.uint8 and out.shape == image.shape
    lay = layout(240, 320)
    changed = np.any(out != image, axis=2)
    text_region = changed[lay.bar.y0:lay.bar.y1 + 4, lay.bar.x1 + 2:]
    assert text_region.sum() > 30                                             # the value is written
    no_line = draw_overlay(image, 0.6, (0.0, 1.0), None)
    spark = lay.spark
    assert np.any(out[spark.y0:spark.y1, spark.x0:spark.x1] != no_line[spark.y0:spark.y1, spark.x0:spark.x1])
    # away from the three elements the camera image is unchanged
    assert not changed[lay.bar.y1 + 20:lay.spark.y0 - 2, :].any()


def test_drawing_is_deterministic_and_differs_with_the_value():
    image = camera_image(seed=3)
    history = np.array([[0.0, 0.1], [0.5, 0.9], [1.0, 0.4]])
    a = draw_overlay(image, 0.4, (0.0, 1.0), history, now=1.0)
    b = draw_overlay(image, 0.4, (0.0, 1.0), history, now=1.0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, draw_overlay(image, 0.9, (0.0, 1.0), history, now=1.0))


@pytest.mark.parametrize("h,w", [(32, 32), (56, 56), (480, 640), (304, 542)])
def test_any_reasonable_size_is_drawn(h, w):
    out = draw_overlay(camera_image(h, w), 0.3, (0.0, 1.0), np.array([[0.0, 0.3]]))
    assert out.shape == (h, w, 3)


def test_non_contiguous_and_nan_inputs():
    bgr_view = camera_image()[..., ::-1]                       # what msgs.image_to_rgb gives for bgr8
    out = draw_overlay(bgr_view, math.nan, (0.0, 1.0))
    assert out.flags.c_contiguous and bar_fill_columns(out, 0.0) == 0


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="uint8"):
        draw_overlay(np.zeros((240, 320, 3), np.float32), 0.5, (0.0, 1.0))
    with pytest.raises(ValueError, match="reward_range"):
        draw_overlay(camera_image(), 0.5, (1.0, 1.0))
    with pytest.raises(ValueError, match="too small"):
        draw_overlay(camera_image(4, 4), 0.5, (0.0, 1.0))
    with pytest.raises(ValueError, match="window_s"):
        RewardHistory(0.0)


def test_history_keeps_the_window_skips_nan_and_restarts_when_time_goes_back():
    h = RewardHistory(window_s=2.0)
    for i in range(50):
        h.add(i * 0.1, float(i))
    pts = h.points()
    assert pts.shape[1] == 2 and pts[0, 0] >= 4.9 - 2.0 - 1e-9 and pts[-1, 0] == pytest.approx(4.9)
    h.add(5.0, math.nan)
    assert h.points()[-1, 0] == pytest.approx(4.9)
    h.add(0.5, 1.0)                                            # a sim reset: time back to 0.5 s
    assert h.points().tolist() == [[0.5, 1.0]]

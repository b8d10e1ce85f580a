"""The live reward drawn onto the camera image (reward_node's ``reward/overlay``), with OpenCV.

Plain Python (numpy + cv2, no rclpy), deterministic: the same image, value and history give the
same pixels. Three elements, laid out from the image size (:func:`layout`), scaled with its height
(designed at 320x240, readable from ~96 px up; smaller images are drawn without the text):

* a horizontal **bar** at the top left, filled over ``(value - low) / (high - low)`` of its width
  (clipped to [0, 1]) in the reward's colour (:func:`reward_colour`: red at ``low``, yellow half way,
  green at ``high``), on a dark background, with a white border;
* the **value** as text right of the bar ("0.73"; "nan" if the value is not finite);
* a **sparkline** at the bottom right: the rewards of the last ``window_s`` seconds
  (``reward_scoring.RewardHistory``), time running left to right (``now`` at the right edge), the reward range
  bottom to top, on a dark background.

The input image is never modified: :func:`draw_overlay` returns a new uint8 [H, W, 3] RGB array.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# RGB (the images here are RGB; cv2 only sees three channel values)
_WHITE = (255, 255, 255)
_BACKGROUND = (24, 24, 24)
_GREY = (128, 128, 128)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_TEXT_HEIGHT = 96  # below this image height the value text would not be legible: not drawn


def reward_colour(value: float, low: float, high: float) -> tuple[float, float, float]:
    """(r, g, b) in [0, 1]: red at ``low``, yellow half way, green at ``high`` (clipped outside the range);
    grey for a non-finite value. Shared by the overlay and the rviz marker."""
    if not math.isfinite(value):
        return (0.5, 0.5, 0.5)
    f = min(1.0, max(0.0, (value - low) / (high - low)))
    return (min(1.0, 2.0 * (1.0 - f)), min(1.0, 2.0 * f), 0.0)


def _rgb255(colour: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(int(round(255 * c)) for c in colour)


def fill_fraction(value: float, low: float, high: float) -> float:
    """How much of the bar is filled: ``(value - low) / (high - low)`` clipped to [0, 1] (0 if not finite)."""
    if not math.isfinite(value):
        return 0.0
    return min(1.0, max(0.0, (value - low) / (high - low)))


@dataclass(frozen=True)
class Box:
    """A pixel rectangle, ``x0 <= x < x1``, ``y0 <= y < y1``."""

    x0: int
    y0: int
    x1: int
    y1: int

    def region(self, image: np.ndarray) -> np.ndarray:
        return image[self.y0:self.y1, self.x0:self.x1]


@dataclass(frozen=True)
class Layout:
    """Where each element goes in an image of ``height`` x ``width``."""

    bar: Box          # the whole bar (border included)
    text: tuple[int, int]   # baseline origin of the value text
    text_scale: float
    spark: Box        # the sparkline's background box
    thickness: int


def layout(height: int, width: int) -> Layout:
    """The overlay's layout for an image of this size (scaled from the 320x240 design)."""
    if height < 8 or width < 8:
        raise ValueError(f"overlay: image {width}x{height} is too small to draw on (at least 8x8)")
    s = height / 240.0
    m = max(2, round(6 * s))                                  # margin
    bar = Box(m, m, m + max(8, round(0.45 * width)), m + max(4, round(16 * s)))
    spark_w, spark_h = max(8, round(0.36 * width)), max(6, round(0.22 * height))
    spark = Box(width - m - spark_w, height - m - spark_h, width - m, height - m)
    return Layout(bar=bar, text=(bar.x1 + m, bar.y1 - max(1, round(2 * s))), text_scale=0.5 * s,
                  spark=spark, thickness=max(1, round(s)))


def draw_overlay(image: np.ndarray, value: float, reward_range: tuple[float, float],
                 history: np.ndarray | None = None, now: float | None = None, window_s: float = 10.0) -> np.ndarray:
    """A copy of ``image`` (uint8 [H, W, 3] RGB) with the reward bar, value and sparkline drawn on it.

    ``history``: [N, 2] (time, reward) points (``RewardHistory.points()``), drawn over
    ``[now - window_s, now]`` (``now``: the newest point's time if None).
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"overlay: expected a uint8 [H, W, 3] image, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
    low, high = (float(v) for v in reward_range)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"overlay: reward_range {reward_range!r} must be finite (low, high) with low < high")
    out = np.array(image, dtype=np.uint8, order="C", copy=True)
    h, w = out.shape[:2]
    lay = layout(h, w)
    _draw_bar(out, lay, value, low, high)
    if h >= _MIN_TEXT_HEIGHT:
        text = f"{value:.2f}" if math.isfinite(value) else "nan"
        cv2.putText(out, text, lay.text, _FONT, lay.text_scale, _BACKGROUND, lay.thickness + 2, cv2.LINE_AA)
        cv2.putText(out, text, lay.text, _FONT, lay.text_scale, _WHITE, lay.thickness, cv2.LINE_AA)
    _draw_sparkline(out, lay.spark, history, now, window_s, low, high, lay.thickness)
    return out


def _draw_bar(out: np.ndarray, lay: Layout, value: float, low: float, high: float) -> None:
    b = lay.bar
    cv2.rectangle(out, (b.x0, b.y0), (b.x1 - 1, b.y1 - 1), _BACKGROUND, thickness=-1)
    inner = Box(b.x0 + 1, b.y0 + 1, b.x1 - 1, b.y1 - 1)
    filled = round(fill_fraction(value, low, high) * (inner.x1 - inner.x0))
    if filled > 0:
        cv2.rectangle(out, (inner.x0, inner.y0), (inner.x0 + filled - 1, inner.y1 - 1),
                      _rgb255(reward_colour(value, low, high)), thickness=-1)
    cv2.rectangle(out, (b.x0, b.y0), (b.x1 - 1, b.y1 - 1), _WHITE, thickness=1)


def _draw_sparkline(out: np.ndarray, box: Box, history: np.ndarray | None, now: float | None, window_s: float,
                    low: float, high: float, thickness: int) -> None:
    region = box.region(out)
    region[:] = (region.astype(np.uint16) * 2 // 5 + np.asarray(_BACKGROUND, np.uint16) * 3 // 5).astype(np.uint8)
    cv2.rectangle(out, (box.x0, box.y0), (box.x1 - 1, box.y1 - 1), _GREY, thickness=1)
    if history is None or len(history) == 0:
        return
    pts = np.asarray(history, dtype=np.float64).reshape(-1, 2)
    t_end = float(pts[-1, 0]) if now is None else float(now)
    pts = pts[pts[:, 0] >= t_end - window_s]
    if len(pts) == 0:
        return
    x = box.x0 + 1 + (pts[:, 0] - (t_end - window_s)) / window_s * (box.x1 - box.x0 - 3)
    y = box.y1 - 2 - np.clip((pts[:, 1] - low) / (high - low), 0.0, 1.0) * (box.y1 - box.y0 - 3)
    poly = np.stack([np.round(x), np.round(y)], axis=1).astype(np.int32)
    colour = _rgb255(reward_colour(float(pts[-1, 1]), low, high))
    if len(poly) == 1:
        cv2.circle(out, tuple(int(v) for v in poly[0]), thickness, colour, thickness=-1)
    else:
        cv2.polylines(out, [poly.reshape(-1, 1, 2)], False, colour, thickness, cv2.LINE_AA)

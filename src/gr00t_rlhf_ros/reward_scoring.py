"""One scoring step of reward_node, without ROS: clip -> reward (or why not) -> overlay image.

Plain Python (numpy, cv2): used by reward_node's scoring thread and, alone, by
``bench/bench_reward_node.py`` on machines without ROS. :class:`RewardScorer` calls the reward
runtime (``gr00t_rlhf_train.inference.open_reward``: a checkpoint in this process or a
``tcp://`` server), sorts every failure into an :class:`Outcome` (a timeout of a remote server, a
model or server error, a non-finite score: nothing is published for those), keeps the history the
overlay's sparkline draws and the numbers the node's diagnostics report (:class:`ScoringStats`).

Not thread-safe as a whole: one thread scores (the reward runtimes are single-threaded too);
:class:`ScoringStats` and :class:`RewardHistory` may be read from another. OpenCV is imported only
to draw (the bench runs the scoring step on GPU machines that have no cv2).
"""
from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from gr00t_rlhf_ros.reward_stream import LANGUAGE_KEY, STATE_KEYS, VIDEO_KEY, Clip

from gr00t_rlhf_train.inference import InferenceError, InferenceTimeout

OK, TIMEOUT, ERROR, NON_FINITE = "ok", "timeout", "error", "non-finite"


@dataclass(frozen=True)
class Outcome:
    """What scoring one clip gave. ``value`` is None unless ``status == "ok"`` (only then is it published)."""

    clip: Clip
    status: str            # "ok" | "timeout" | "error" | "non-finite"
    value: float | None
    detail: str            # one line: why not published ("" when ok)
    latency_s: float       # time in ``reward.score``


class RewardHistory:
    """The (time, reward) pairs of the last ``window_s`` seconds, for the sparkline. Thread-safe."""

    def __init__(self, window_s: float = 10.0, max_points: int = 2000):
        if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"RewardHistory.window_s: {window_s!r} must be a positive number of seconds")
        self.window_s = float(window_s)
        self._points: deque[tuple[float, float]] = deque(maxlen=max_points)
        self._lock = threading.Lock()

    def add(self, t: float, value: float) -> None:
        """Add a finite reward at time ``t`` (s); points older than the window are dropped."""
        if not math.isfinite(value):
            return
        with self._lock:
            if self._points and t < self._points[-1][0]:  # time went back (sim reset, bag loop): start over
                self._points.clear()
            self._points.append((float(t), float(value)))
            while self._points and self._points[0][0] < t - self.window_s:
                self._points.popleft()

    def points(self) -> np.ndarray:
        """[N, 2] (time, reward), oldest first."""
        with self._lock:
            return np.asarray(self._points, dtype=np.float64).reshape(-1, 2)


class ScoringStats:
    """Counts and latencies of the scoring thread, read by the diagnostics. Thread-safe."""

    def __init__(self, window: int = 200, rate_window_s: float = 5.0):
        self._lock = threading.Lock()
        self._latency: deque[float] = deque(maxlen=window)
        self._delay: deque[float] = deque(maxlen=window)
        self._scored_at: deque[float] = deque(maxlen=10_000)
        self.rate_window_s = rate_window_s
        self.outcomes: Counter = Counter()
        self.last: Outcome | None = None
        self.last_at: float | None = None     # monotonic time of the last outcome

    def add(self, outcome: Outcome, delay_s: float | None = None, now: float | None = None) -> None:
        """Record an outcome; ``delay_s``: frame stamp -> reward published (ok outcomes)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.outcomes[outcome.status] += 1
            self.last, self.last_at = outcome, now
            self._latency.append(outcome.latency_s)
            if outcome.status == OK:
                self._scored_at.append(now)
                if delay_s is not None and math.isfinite(delay_s):
                    self._delay.append(delay_s)

    def rate(self, now: float | None = None) -> float:
        """Rewards published per second over the last ``rate_window_s`` seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            n = sum(1 for t in self._scored_at if t > now - self.rate_window_s)
        return n / self.rate_window_s

    def latency_ms(self) -> tuple[float | None, float | None, float | None]:
        """(last, p50, p99) of the model call, ms."""
        with self._lock:
            return _last_p50_p99(self._latency)

    def delay_ms(self) -> tuple[float | None, float | None, float | None]:
        """(last, p50, p99) of frame stamp -> reward published, ms."""
        with self._lock:
            return _last_p50_p99(self._delay)


def _last_p50_p99(values) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    a = np.fromiter(values, float) * 1000.0
    return float(a[-1]), float(np.percentile(a, 50)), float(np.percentile(a, 99))


def check_spec(spec, source: str = "") -> tuple[int, int] | None:
    """The reward model must read what reward_node builds (the contract's camera and state); returns the
    model's training image size (h, w) or None. Raises InferenceError naming the mismatch."""
    if spec is None:
        return None
    provided = ([VIDEO_KEY], [(k, 1) for k in STATE_KEYS], LANGUAGE_KEY)
    wanted = (list(spec.video_keys), [(str(k), int(d)) for k, d in spec.state_keys], spec.language_key)
    if wanted != provided:
        raise InferenceError(f"reward model {source}: reads {wanted[0]} {wanted[1]} {wanted[2]!r}; reward_node "
                             f"provides {provided[0]} {provided[1]} {provided[2]!r}")
    return tuple(spec.image_size) if spec.image_size is not None else None


def resize_frames(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Frames [H, h, w, 3] -> [H, size[0], size[1], 3]: the whole frame, antialiased, as the frame cache
    training read was made (its own resize, through torch, when torch is here; else OpenCV's area
    interpolation, e.g. on a robot that talks to a remote model). Unchanged when ``size`` is None or
    already the frames' size."""
    if size is None or tuple(frames.shape[1:3]) == tuple(size):
        return frames
    try:
        from gr00t_rlhf_train.data.cache import resize_frames as cache_resize
    except ImportError:                     # no torch (remote model): OpenCV
        import cv2

        h, w = size
        return np.stack([cv2.resize(np.ascontiguousarray(f), (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    return np.ascontiguousarray(cache_resize(frames, tuple(size)).permute(0, 2, 3, 1).numpy())   # [H, h, w, 3] uint8


class RewardScorer:
    """Scores clips with a reward runtime and draws the overlay of a scored clip.

    Frames are resized to the model's training image size when the checkpoint records it (the frame
    cache's size: the model saw that resolution in training, and a remote server gets less to read)."""

    def __init__(self, reward, history_seconds: float = 10.0):
        self.reward = reward
        self.image_size = check_spec(getattr(reward, "spec", None), getattr(reward, "source", ""))
        low, high = (float(v) for v in reward.reward_range)
        self.reward_range = (low, high)
        self.history = RewardHistory(history_seconds)
        self.stats = ScoringStats()

    def model_input(self, clip: Clip) -> dict:
        """The clip as the runtime's ``score`` takes it (frames at the training image size)."""
        out = clip.model_input()
        out[VIDEO_KEY] = resize_frames(out[VIDEO_KEY], self.image_size)
        return out

    def score(self, clip: Clip) -> Outcome:
        """Score one clip; never raises for a model or server failure (the outcome says what happened)."""
        t = time.perf_counter()
        try:
            value = float(self.reward.score(self.model_input(clip)))
        except InferenceTimeout as e:
            return Outcome(clip, TIMEOUT, None, f"reward server: {_one_line(e)}", time.perf_counter() - t)
        except InferenceError as e:  # its message names the model already
            return Outcome(clip, ERROR, None, _one_line(e), time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - a model bug must not kill the scoring thread: reported, counted
            return Outcome(clip, ERROR, None, f"reward model: unexpected {type(e).__name__}: {_one_line(e)}",
                           time.perf_counter() - t)
        latency = time.perf_counter() - t
        if not math.isfinite(value):
            return Outcome(clip, NON_FINITE, None, f"reward model returned {value} (not published)", latency)
        self.history.add(clip.stamp, value)
        return Outcome(clip, OK, value, "", latency)

    def overlay(self, outcome: Outcome) -> np.ndarray:
        """The scored frame with the bar, value and sparkline (an ok outcome)."""
        from gr00t_rlhf_ros.overlay import draw_overlay

        return draw_overlay(outcome.clip.image, outcome.value, self.reward_range, self.history.points(),
                            now=outcome.clip.stamp, window_s=self.history.window_s)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

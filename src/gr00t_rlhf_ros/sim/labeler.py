"""The simulated human: watches a sim episode's ground truth and presses feedback keys like a person.

Plain Python, no ROS, no MuJoCo: :class:`SimulatedHuman` is fed the dicts of
``SimRobot.ground_truth()`` in time order (``observe``) and returns the key presses due by then,
as ``(time, key)`` in a feedback vocabulary of the recorder (``binary``: 0 "Doing bad" /
1 "Doing good"; ``score``: -5..5). The recorder holds the last key until the next one, exactly as
with a person's keyboard, so an episode it labels is the dataset a person's keys would make.
``sim_human_node`` runs the same object on ``sim/ground_truth``; ``sim.rollout`` runs it in process.

**The noiseless truth** at time ``t`` (:meth:`SimulatedHuman.truth_at`), from the ground truth over
the last ``window`` seconds (less at the start of a phase: thresholds scale with the time seen):

- ``success`` -> good (binary 1, score 5);
- a collision in the last ``collision_window`` s -> bad (binary 0, score ``collision_score``);
- else the **progress** ``gained`` (m) over the window: the decrease of the goal distance; in the
  circling phase of a "Move around X" task the decrease of the distance to X until the robot is
  within ``around_radius`` of it, then the arc length swept around it. Binary: good iff
  ``gained >= progress_m * seen / window``. Scores: ``p = gained / (reference_speed * seen)`` in
  [-1, 1], ``q = max(0, 1 - goal_distance / proximity_range)``, score =
  ``round(score_progress * p + score_proximity * q)`` clipped to -4..4 (5 and -5 are kept for
  success and collision);
- before ``min_watch`` seconds of an episode: the vocabulary's default key (a person watches a
  moment before the first judgement, and the recorder starts each episode from that key).

**The noise**, all drawn from ``seed``, the layout seed, the task and the time slot
(``judge_period`` long), so it depends on *when* something happens, not on how many ground-truth
messages arrived before (the DDS path and the in-process path draw the same noise):

- ``flip_prob``: each slot the person means the wrong key with this probability (binary: the other
  key; scores: the mirrored score ``-s``, a 0 becomes +-1) — about that fraction of frames is wrong;
- ``reaction_delay`` (+ ``reaction_jitter``, the std of a normal, clipped at 0): a press lands this
  long after the person changed their mind (presses stay in order);
- ``skip_prob``: each slot starts a skipped stretch (no presses: the last key holds) of
  ``skip_seconds`` (x uniform 0.5..1.5) with this probability.

A press is emitted at the first observation at or after its time (so both paths quantise alike).
"""
from __future__ import annotations

import math
import zlib
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from gr00t_rlhf_train.feedback import FeedbackVocabulary, load_vocabulary

MODES = ("binary", "score")
SCORE_KEYS = tuple(range(-5, 6))


@dataclass(frozen=True)
class LabelerConfig:
    """How the simulated person judges (truth) and how imperfect they are (noise). Seconds, metres."""

    vocabulary: str = "binary"       # "binary", "score" or a rewards.jsonl / vocabulary JSON path
    window: float = 1.0              # progress is judged over this much of the recent past
    min_watch: float = 0.5           # no judgement before this much of an episode was seen
    progress_m: float = 0.05         # binary: good if this much progress over a whole window
    reference_speed: float = 0.3     # scores: progress at this speed (m/s) counts as full progress
    score_progress: float = 3.0      # scores: points for full progress (negative for moving away)
    score_proximity: float = 1.5     # scores: points for being at the goal (0 at proximity_range)
    proximity_range: float = 3.0     # m
    collision_window: float = 1.0    # a collision this recent makes the label bad
    collision_score: int = -5
    around_radius: float = 0.9       # circling counts within this distance of the object (SimConfig's)
    judge_period: float = 0.5        # noise is drawn per slot of this length
    flip_prob: float = 0.0
    reaction_delay: float = 0.0
    reaction_jitter: float = 0.0
    skip_prob: float = 0.0
    skip_seconds: float = 3.0
    seed: int = 0

    def __post_init__(self):
        positive = ("window", "progress_m", "reference_speed", "proximity_range", "collision_window",
                    "around_radius", "judge_period", "skip_seconds")
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"LabelerConfig.{name}: {v!r} must be a positive number")
        for name in ("min_watch", "reaction_delay", "reaction_jitter", "score_progress", "score_proximity"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"LabelerConfig.{name}: {v!r} must be a number >= 0")
        for name in ("flip_prob", "skip_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ValueError(f"LabelerConfig.{name}: {v!r} must be a probability in [0, 1]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"LabelerConfig.seed: {self.seed!r} must be an integer >= 0")
        if self.collision_score not in SCORE_KEYS:
            raise ValueError(f"LabelerConfig.collision_score: {self.collision_score!r} must be in -5..5")
        vocabulary_mode(self.feedback_vocabulary())  # one-line error for an unusable vocabulary

    def feedback_vocabulary(self) -> FeedbackVocabulary:
        try:
            return load_vocabulary(self.vocabulary)
        except ValueError as e:
            raise ValueError(f"LabelerConfig.vocabulary: {e}") from None

    def to_dict(self) -> dict:
        return asdict(self)


def vocabulary_mode(vocab: FeedbackVocabulary) -> str:
    """"binary" for keys {0, 1}, "score" for a vocabulary holding -5..5; ValueError otherwise."""
    if set(vocab.texts) == {0, 1}:
        return "binary"
    if set(SCORE_KEYS) <= set(vocab.texts):
        return "score"
    raise ValueError(f"LabelerConfig.vocabulary: keys {vocab.keys} are neither binary {{0, 1}} nor scores -5..5; "
                     "the simulated human can press only those")


class KeyPress(NamedTuple):
    time: float      # emission time (s, the ground truth's clock)
    key: int         # feedback key of the vocabulary
    truth: int       # the noiseless key when the person made up their mind
    flipped: bool    # the person meant the wrong key (flip noise)


@dataclass
class _Slot:
    flip: bool
    delay: float
    skip_len: float      # 0: no skipped stretch starts in this slot
    flip_sign: int       # for a flipped score 0: +1 or -1


@dataclass
class _Sample:
    t: float
    goal_distance: float
    around_distance: float | None
    swept: float
    collisions: int
    collision: bool
    success: bool
    phase: str           # "around" or "goal"


@dataclass
class LabelStats:
    """Per observation: the truth and the key in force after it (what a frame then would record)."""

    observations: int = 0
    agree: int = 0
    presses: int = 0
    flipped_presses: int = 0
    skipped_observations: int = 0

    @property
    def agreement(self) -> float:
        return self.agree / self.observations if self.observations else float("nan")


class SimulatedHuman:
    """One simulated person; ``observe(gt)`` -> presses due; ``reset()`` between episodes."""

    def __init__(self, config: LabelerConfig | None = None, layout=None):
        self.config = config or LabelerConfig()
        self.vocabulary = self.config.feedback_vocabulary()
        self.mode = vocabulary_mode(self.vocabulary)
        self.default_key = self.vocabulary.default if self.vocabulary.default is not None else \
            (1 if self.mode == "binary" else 0)
        self._positions: dict[str, tuple[float, float]] = {}
        self.reset(layout)

    # ---- episodes -------------------------------------------------------------------------------
    def reset(self, layout=None) -> None:
        """Start a new episode (``layout``: a sim Layout or its dict, for "Move around" tasks)."""
        if layout is not None:
            self.set_layout(layout)
        self._history: deque[_Sample] = deque()
        self._phase_start = 0.0
        self._episode_key: tuple[int, int] | None = None
        self._slots: dict[int, _Slot] = {}
        self._queue: deque[KeyPress] = deque()   # scheduled, not yet emitted (time = when due)
        self._last_intended = self.default_key
        self._held = self.default_key
        self._last_press_time = -math.inf
        self.timeline: list[tuple[float, int]] = []   # (time, truth) per observation
        self.presses: list[KeyPress] = []             # emitted
        self.stats = LabelStats()
        self._start: float | None = None

    def set_layout(self, layout) -> None:
        objects = layout["objects"] if isinstance(layout, dict) else [asdict(o) for o in layout.objects]
        self._positions = {o["name"]: (float(o["position"][0]), float(o["position"][1])) for o in objects}

    @property
    def held_key(self) -> int:
        """The key a recorder holds now (the last press, or the default)."""
        return self._held

    # ---- observing --------------------------------------------------------------------------------
    def observe(self, gt: dict) -> list[KeyPress]:
        """One ground-truth dict (``SimRobot.ground_truth()``), in time order -> presses due now."""
        t = float(gt["time"])
        if self._start is None:
            self._start = t
            self._phase_start = t
            self._episode_key = (int(gt.get("seed", 0)) & 0xFFFFFFFF, zlib.crc32(str(gt.get("task", "")).encode()))
        elif self._history and t < self._history[-1].t:
            raise ValueError(f"ground truth time went back from {self._history[-1].t} to {t}: call reset() "
                             "for a new episode")
        sample = self._sample(gt)
        if self._history and sample.phase != self._history[-1].phase:
            self._phase_start = t
        self._history.append(sample)
        horizon = max(self.config.window, self.config.collision_window) + 0.5
        while len(self._history) > 2 and self._history[1].t <= t - horizon:
            self._history.popleft()
        truth = self._truth(t)
        self.timeline.append((t, truth))

        cfg = self.config
        skipped = self._skipped(t)
        if t - self._start >= cfg.min_watch and not skipped:
            slot = self._slot(self._slot_index(t))
            intended = self._flip(truth, slot) if slot.flip else truth
            if intended != self._last_intended:
                due = max(t + slot.delay, self._last_press_time)
                self._last_press_time = due
                self._queue.append(KeyPress(due, intended, truth, slot.flip))
                self._last_intended = intended
        out = []
        while self._queue and self._queue[0].time <= t + 1e-9:
            p = self._queue.popleft()._replace(time=t)
            out.append(p)
            self._held = p.key
        self.presses.extend(out)
        s = self.stats
        s.observations += 1
        s.agree += self._held == truth
        s.presses += len(out)
        s.flipped_presses += sum(p.flipped for p in out)
        s.skipped_observations += skipped
        return out

    def truth_at(self, t: float) -> int:
        """The noiseless key of the latest observation at or before ``t`` (the default before any)."""
        tl = self.timeline
        lo, hi = 0, len(tl)
        while lo < hi:
            mid = (lo + hi) // 2
            if tl[mid][0] <= t + 1e-9:
                lo = mid + 1
            else:
                hi = mid
        return tl[lo - 1][1] if lo else self.default_key

    # ---- the truth ----------------------------------------------------------------------------------
    def _sample(self, gt: dict) -> _Sample:
        x, y = float(gt["x"]), float(gt["y"])
        around = gt.get("around")
        phase = "around" if around is not None and not gt.get("around_done", True) else "goal"
        around_distance = None
        if phase == "around":
            if around not in self._positions:
                raise ValueError(f"ground truth: task {gt.get('task')!r} circles {around!r} but the simulated human "
                                 "has no layout with it (give the sim layout: sim/layout)")
            ox, oy = self._positions[around]
            around_distance = math.hypot(x - ox, y - oy)
        return _Sample(float(gt["time"]), float(gt["goal_distance"]), around_distance,
                       float(gt.get("around_progress", 0.0)), int(gt.get("collisions", 0)),
                       bool(gt.get("collision", False)), bool(gt.get("success", False)), phase)

    def _at_or_before(self, t: float) -> _Sample:
        best = self._history[0]
        for s in self._history:
            if s.t <= t + 1e-9:
                best = s
            else:
                break
        return best

    def _truth(self, t: float) -> int:
        cfg = self.config
        now = self._history[-1]
        good, bad = (1, 0) if self.mode == "binary" else (5, cfg.collision_score)
        if now.success:
            return good
        if t - self._start < cfg.min_watch:
            return self.default_key
        since = t - cfg.collision_window
        back = self._at_or_before(since)
        if now.collisions > back.collisions or any(s.collision for s in self._history if s.t >= since - 1e-9):
            return bad
        ref = self._at_or_before(max(t - cfg.window, self._phase_start))
        seen = now.t - ref.t
        if seen <= 0:
            return self.default_key
        gained = self._gained(ref, now)
        if self.mode == "binary":
            return 1 if gained >= cfg.progress_m * seen / cfg.window - 1e-12 else 0
        p = max(-1.0, min(1.0, gained / (cfg.reference_speed * seen)))
        q = max(0.0, 1.0 - now.goal_distance / cfg.proximity_range)
        return int(max(-4, min(4, round(cfg.score_progress * p + cfg.score_proximity * q))))

    def _gained(self, ref: _Sample, now: _Sample) -> float:
        if now.phase == "goal" or ref.around_distance is None:
            return ref.goal_distance - now.goal_distance
        r = self.config.around_radius
        if now.around_distance > r:
            return ref.around_distance - now.around_distance
        approach = max(0.0, ref.around_distance - r)
        return approach + (now.swept - ref.swept) * now.around_distance

    # ---- the noise --------------------------------------------------------------------------------
    def _slot_index(self, t: float) -> int:
        return int(math.floor(t / self.config.judge_period + 1e-9))

    def _slot(self, k: int) -> _Slot:
        slot = self._slots.get(k)
        if slot is None:
            cfg = self.config
            seed, task = self._episode_key or (0, 0)
            rng = np.random.default_rng([cfg.seed, seed, task, k & 0xFFFFFFFF])
            u_flip, z, u_skip, u_len, u_sign = rng.random(), rng.standard_normal(), rng.random(), rng.random(), rng.random()
            delay = max(0.0, cfg.reaction_delay + cfg.reaction_jitter * float(z))
            skip_len = cfg.skip_seconds * (0.5 + float(u_len)) if u_skip < cfg.skip_prob else 0.0
            slot = _Slot(bool(u_flip < cfg.flip_prob), delay, skip_len, 1 if u_sign < 0.5 else -1)
            if len(self._slots) > 4096:
                self._slots.clear()
            self._slots[k] = slot
        return slot

    def _skipped(self, t: float) -> bool:
        cfg = self.config
        if cfg.skip_prob <= 0:
            return False
        k = self._slot_index(t)
        lookback = int(math.ceil(1.5 * cfg.skip_seconds / cfg.judge_period)) + 1
        for j in range(k, k - lookback - 1, -1):
            length = self._slot(j).skip_len
            if length > 0 and j * cfg.judge_period + length > t:
                return True
        return False

    def _flip(self, key: int, slot: _Slot) -> int:
        if self.mode == "binary":
            return 1 - key
        return -key if key != 0 else slot.flip_sign


@dataclass
class LabeledEpisode:
    """What the simulated human did in one episode (for reports and the truth sidecar)."""

    presses: list[KeyPress] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)
    stats: LabelStats = field(default_factory=LabelStats)


def label_episode(gts: list[dict], config: LabelerConfig | None = None, layout=None) -> LabeledEpisode:
    """Label a whole recorded ground-truth sequence offline -> presses, truth timeline, stats."""
    human = SimulatedHuman(config, layout)
    for gt in gts:
        human.observe(gt)
    return LabeledEpisode(list(human.presses), list(human.timeline), human.stats)

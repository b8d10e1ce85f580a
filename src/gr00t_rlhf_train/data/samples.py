"""Training samples over a frame cache: policy chunks, reward clips, episode splits, collation.

    cache = FrameCache("/tmp/cache96")
    train, val, test = split_episodes(cache, holdout=list(range(40, 50)))
    ds = RewardClips(cache, train, horizon=4)
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=2, collate_fn=collate)
    batch = next(iter(loader))    # "video.ego_view" uint8 [64, 4, 96, 96, 3], "state.<name>" [64, 4, 1],
                                  # instructions as a list of 64 strings, "target" [64], ...

Keys are the model's modality keys (``video.<camera>``, ``state.<name>``, ``action.<name>``,
``annotation.human.action.task_description``), so a batch goes straight into
``Gr00tProcessor`` / ``RewardModel.prepare``. The feedback text never enters a sample (only the
instruction does); the feedback KEY is given as a label.

Which rows are samples (``rows=``): ``"frames"`` (default) takes the rows at the video rate (the
first row showing each picture; see ``CachedEpisode.grid_rows``), and clips and action chunks step
through those rows, so a clip of H holds H different pictures and a 16-step chunk spans 1.6 s at
10 fps; ``"all"`` takes every dataset row (the seed datasets have ~5 rows per picture at 50 Hz).
Both are the same on datasets written at the frame rate.

Padding: an action chunk that runs past the episode end repeats the last row's action; a reward
clip that starts before the episode start repeats the first row (its picture and state).

Reward clips with ``action_horizon`` K > 0 also carry ``"actions"`` [K, A]: the recorded actions of
the K sample rows starting at the labelled row (the first K of the policy's chunk at that row), the
modality's action keys concatenated in order, in robot units. They are a model INPUT (the action-
conditioned reward model scores a chunk's first actions), never a label.
Everything is deterministic (no randomness in a Dataset) and picklable for DataLoader workers.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from gr00t_rlhf_train.data.cache import CachedEpisode, FrameCache, decode_jpegs

INSTRUCTION = "annotation.human.action.task_description"  # model.processor.LANGUAGE_KEYS[0]
ACTIONS = "actions"  # model.reward_model.ACTIONS: a reward clip's first K actions of the chunk at its labelled row
ROW_MODES = ("frames", "all")
TARGETS = ("reward", "feedback")


def _episodes(cache: FrameCache, episodes: Sequence[int] | None) -> list[int]:
    if episodes is None:
        return list(cache.episodes)
    out = [int(e) for e in episodes]
    missing = sorted(set(out) - set(cache.episodes))
    if missing:
        raise ValueError(f"episodes {missing[:10]} are not in the cache {cache.path} (it holds {len(cache.episodes)} "
                         f"episodes: {cache.episodes[0]}..{cache.episodes[-1]})")
    if not out:
        raise ValueError(f"episodes: empty selection of the cache {cache.path}")
    return out


class _CacheSamples(Dataset):
    """Common part: the (episode, sample rows) index of a cache, and the per-row fields."""

    def __init__(self, cache: FrameCache | str, episodes, rows: str, decode: bool):
        self.cache = cache if isinstance(cache, FrameCache) else FrameCache(cache)
        if rows not in ROW_MODES:
            raise ValueError(f"rows={rows!r}: allowed {ROW_MODES}")
        self.rows_mode, self.decode = rows, bool(decode)
        self.episodes = _episodes(self.cache, episodes)
        self.video_key = f"video.{self.cache.video_name}"
        self._rows: dict[int, np.ndarray] = {}  # episode -> its sample rows (ascending)
        for e in self.episodes:
            n = self.cache.rows(e)
            self._rows[e] = self.cache.episode(e).grid_rows(self.cache.fps) if rows == "frames" else np.arange(n)

    def _index_rows(self, stride: int = 1) -> None:
        """The samples: (episode, position in its sample rows) for every ``stride``-th row."""
        self._index = np.array([(e, k) for e in self.episodes for k in range(0, len(self._rows[e]), stride)],
                               np.int64)  # [N, 2]

    def __len__(self) -> int:
        return len(self._index)

    def _locate(self, i: int) -> tuple[int, CachedEpisode, np.ndarray, int, int]:
        """Sample ``i`` -> (episode, its cached episode, its sample rows, position k, dataset row t)."""
        e, k = (int(v) for v in self._index[i])
        seq = self._rows[e]
        return e, self.cache.episode(e), seq, k, int(seq[k])

    def _seq(self, e: int) -> tuple[CachedEpisode, np.ndarray]:
        return self.cache.episode(e), self._rows[e]

    def _video(self, ep: CachedEpisode, rows: np.ndarray):
        if self.decode:
            return ep.frames(rows).numpy()  # uint8 [N, H, W, 3]
        return [ep.jpeg[p] for p in ep.image[rows]]  # N JPEG byte strings (decode later, e.g. on the GPU)

    def _states(self, ep: CachedEpisode, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {f"state.{n}": ep.state[rows, s:e] for n, (s, e) in self.cache.modality["state"].items()}

    @staticmethod
    def _chunk_rows(seq: np.ndarray, k: int, horizon: int) -> np.ndarray:
        """Sample rows k..k+horizon-1 of an episode's sample rows, the last one repeated past its end."""
        return seq[np.minimum(np.arange(k, k + horizon), len(seq) - 1)]  # [horizon] dataset rows


class PolicySamples(_CacheSamples):
    """One sample per row t: the picture and state at t and the action chunk of rows t..t+horizon-1."""

    def __init__(self, cache: FrameCache | str, episodes: Sequence[int] | None = None, action_horizon: int = 16,
                 decode: bool = True, rows: str = "frames"):
        if isinstance(action_horizon, bool) or not isinstance(action_horizon, int) or action_horizon < 1:
            raise ValueError(f"action_horizon={action_horizon!r}: must be a positive integer")
        super().__init__(cache, episodes, rows, decode)
        self.action_horizon = action_horizon
        self._index_rows()

    def __getitem__(self, i: int) -> dict:
        e, ep, seq, k, t = self._locate(i)
        chunk = self._chunk_rows(seq, k, self.action_horizon)  # [horizon] rows, last repeated
        out = {self.video_key: self._video(ep, np.array([t]))}  # [1, H, W, 3]
        out.update(self._states(ep, np.array([t])))  # each [1, dim]
        for n, (s, end) in self.cache.modality["action"].items():
            out[f"action.{n}"] = ep.action[chunk, s:end]  # [horizon, dim]
        out.update({INSTRUCTION: ep.task, "episode": e, "row": int(t)})
        return out


class RewardClips(_CacheSamples):
    """One sample per row t (every ``stride``-th): the clip of ``horizon`` rows ending at t and its label at t.

    ``target="reward"``: ``next.reward`` at t; ``"feedback"``: the vocabulary's reward of the feedback
    key at t (key / max|key|, or the key itself for binary vocabularies); ``None``: unlabeled data
    (no "target" in the samples, e.g. for ``eval reward --prediction-only``). Rows before the episode
    start repeat the first row. ``action_horizon`` K > 0: "actions" [K, A], the recorded actions of
    sample rows t..t+K-1 (the last one repeated past the episode end), their keys joined in the order of
    ``action_keys`` (the model's ``ModalityConfig.action`` names; None: the cache's order)."""

    def __init__(self, cache: FrameCache | str, episodes: Sequence[int] | None = None, horizon: int = 1,
                 stride: int = 1, target: str | None = "reward", decode: bool = True, rows: str = "frames",
                 action_horizon: int = 0, action_keys: Sequence[str] | None = None):
        for name, v in (("horizon", horizon), ("stride", stride)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: must be a positive integer")
        if isinstance(action_horizon, bool) or not isinstance(action_horizon, int) or action_horizon < 0:
            raise ValueError(f"action_horizon={action_horizon!r}: must be an integer >= 0 (0 = no actions)")
        if target is not None and target not in TARGETS:
            raise ValueError(f"target={target!r}: allowed {TARGETS} or None (unlabeled)")
        super().__init__(cache, episodes, rows, decode)
        self.horizon, self.stride, self.target, self.action_horizon = horizon, stride, target, action_horizon
        if action_horizon and not self.cache.modality.get("action"):
            raise ValueError(f"action_horizon={action_horizon}: the cache {self.cache.path} has no action columns")
        have = self.cache.modality.get("action") or {}
        names = list(have) if action_keys is None else [str(k).removeprefix("action.") for k in action_keys]
        unknown = [n for n in names if n not in have]
        if action_horizon and (unknown or not names):
            raise ValueError(f"action_keys={list(action_keys or [])!r}: {unknown or 'none given'} not among the action "
                             f"keys of the cache {self.cache.path} ({', '.join(have) or 'none'})")
        self.action_spans = [have[n] for n in names if n in have]   # [(start, end)] in the model's order
        longest = max(len(r) for r in self._rows.values())
        if horizon > longest:
            raise ValueError(f"horizon={horizon}: longer than every selected episode (the longest has {longest} "
                             f"sample rows with rows={rows!r})")
        first = self.cache.episode(self.episodes[0])
        if target == "reward" and first.reward is None:
            raise ValueError(f"target='reward': the cache {self.cache.path} has no next.reward column")
        if target == "feedback" and (first.feedback is None or self.cache.vocabulary is None):
            raise ValueError(f"target='feedback': the cache {self.cache.path} has no feedback column or vocabulary")
        self._index_rows(stride)

    def __getitem__(self, i: int) -> dict:
        e, ep, seq, k, t = self._locate(i)
        clip = seq[np.maximum(np.arange(k - self.horizon + 1, k + 1), 0)]  # [H] rows, the first repeated
        out = {self.video_key: self._video(ep, clip)}  # [H, h, w, 3]
        out.update(self._states(ep, clip))  # each [H, dim]
        out.update({INSTRUCTION: ep.task, "episode": e, "row": int(t), "time": float(ep.times[t])})
        if self.action_horizon:
            out[ACTIONS] = self.actions_at(ep, seq, k)  # [K, A]
        if self.target == "reward":
            out["target"] = float(ep.reward[t])
        elif self.target == "feedback":
            out["target"] = float(self.cache.vocabulary.reward(int(ep.feedback[t])))
        if ep.feedback is not None:
            out["feedback"] = int(ep.feedback[t])
        return out

    def actions_at(self, ep: CachedEpisode, seq: np.ndarray, k: int) -> np.ndarray:
        """The recorded actions [K, A] of sample rows k..k+K-1 (robot units, keys in ``action_keys`` order)."""
        rows = self._chunk_rows(seq, k, self.action_horizon)  # [K] dataset rows, the last repeated
        return np.concatenate([ep.action[rows, s:e] for s, e in self.action_spans], axis=-1)  # [K, A]

    def labels(self) -> dict[str, np.ndarray]:
        """Every sample's labels without decoding a picture: "target" [N] f64 (not when unlabeled), "episode",
        "row" [N] int64, "time" [N] f64 and, when the cache has feedback, "feedback" [N] int64 (sample order)."""
        parts: dict[str, list] = {"target": [], "episode": [], "row": [], "time": [], "feedback": []}
        voc = self.cache.vocabulary
        for e in self.episodes:
            ep, seq = self._seq(e)
            rows = seq[::self.stride]  # [n]
            if self.target == "reward":
                parts["target"].append(ep.reward[rows].astype(np.float64))
            elif self.target == "feedback":
                parts["target"].append(np.array([voc.reward(int(k)) for k in ep.feedback[rows]], np.float64))
            parts["episode"].append(np.full(len(rows), e, np.int64))
            parts["row"].append(rows.astype(np.int64))
            parts["time"].append(ep.times[rows].astype(np.float64))
            if ep.feedback is not None:
                parts["feedback"].append(ep.feedback[rows].astype(np.int64))
        return {k: np.concatenate(v) for k, v in parts.items() if v}


def worker_context(num_workers: int):
    """The multiprocessing context for DataLoader workers: ``forkserver`` (where the OS has it), never a
    plain fork of the training process. A fork copies the locks of every thread running in the parent
    (DDS, OpenMP pools, a renderer) and a worker can hang on one forever; forkserver workers start from
    a clean single-threaded process. None (in-process loading) for ``num_workers == 0``."""
    if num_workers <= 0:
        return None
    import multiprocessing

    return multiprocessing.get_context("forkserver") if "forkserver" in multiprocessing.get_all_start_methods() else None


def split_episodes(cache_or_n, holdout: Sequence[int], val_fraction: float = 0.1, seed: int = 0,
                   strata: dict | None = None) -> tuple[list[int], list[int], list[int]]:
    """-> (train, val, test) episode lists, each sorted.

    ``test`` is ``holdout`` (the held-out episodes of architecture.md §4, given by the caller);
    ``val`` is ``round(val_fraction * remaining)`` episodes (at least 1 when the fraction is > 0
    and two or more remain) drawn from the remaining ones by a ``numpy`` generator seeded with
    ``seed``; ``train`` is the rest. With ``strata`` (episode -> group, e.g. its label: good/bad)
    the draw is made within each group, so val keeps the groups' proportions (at least one of
    each group that has two or more episodes left). Same arguments, same split, on every machine."""
    if isinstance(cache_or_n, FrameCache):
        all_eps = list(cache_or_n.episodes)
    elif isinstance(cache_or_n, (int, np.integer)) and not isinstance(cache_or_n, bool):
        all_eps = list(range(int(cache_or_n)))
    else:
        raise ValueError(f"split_episodes: expected a FrameCache or a number of episodes, got {type(cache_or_n).__name__}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r}: must be in [0, 1)")
    test = sorted({int(e) for e in holdout})
    unknown = sorted(set(test) - set(all_eps))
    if unknown:
        raise ValueError(f"holdout: episodes {unknown[:10]} do not exist (episodes {all_eps[0]}..{all_eps[-1]})")
    rest = [e for e in all_eps if e not in set(test)]
    if not rest:
        raise ValueError("holdout: holds every episode; nothing is left to train on")
    if strata is not None:
        missing = [e for e in rest if e not in strata]
        if missing:
            raise ValueError(f"strata: episodes {missing[:10]} have no group")
        groups: dict[str, list[int]] = {}
        for e in rest:
            groups.setdefault(repr(strata[e]), []).append(e)
    else:
        groups = {"": rest}
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for key in sorted(groups):
        members = groups[key]
        n_val = int(round(val_fraction * len(members)))
        if val_fraction > 0 and n_val == 0 and len(members) >= 2:
            n_val = 1
        n_val = min(n_val, len(members) - 1)
        perm = rng.permutation(len(members))
        val.extend(members[j] for j in perm[:n_val])
    val = sorted(val)
    train = sorted(set(rest) - set(val))
    return train, val, test


def collate(samples: Sequence[dict]) -> dict:
    """Samples -> a batch: arrays stacked (numpy), numbers as arrays, strings and JPEG lists kept as lists."""
    if not samples:
        raise ValueError("collate: no samples")
    out = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        v0 = values[0]
        if isinstance(v0, np.ndarray):
            out[key] = np.stack(values)
        elif isinstance(v0, (bool, int, float, np.integer, np.floating)):
            out[key] = np.asarray(values)
        else:
            out[key] = values  # strings (instructions) and lists of JPEG bytes (decode=False)
    return out


def model_inputs(batch: dict) -> dict:
    """Only what the model reads (``video.*``, ``state.*``, ``action.*``, the instruction and a reward clip's
    ``actions``): labels and bookkeeping (target, feedback, episode, row, time) stay out of ``RewardModel.prepare``."""
    return {k: v for k, v in batch.items()
            if k.startswith(("video.", "state.", "action.")) or k in (INSTRUCTION, ACTIONS)}


def decode_batch(batch: dict, device: str | torch.device = "cpu") -> dict:
    """A batch from ``decode=False`` samples: JPEG lists -> uint8 tensors [B, T, h, w, 3] on ``device``
    (one batched torchvision decode; on a GPU with device="cuda")."""
    out = dict(batch)
    for key, value in batch.items():
        if key.startswith("video.") and isinstance(value, list):
            b, t = len(value), len(value[0])
            flat = [blob for clip in value for blob in clip]
            frames = decode_jpegs(flat, device)  # [B*T, h, w, 3]
            out[key] = frames.reshape(b, t, *frames.shape[1:])
    return out

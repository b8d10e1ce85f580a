"""The inference API shared by the local and the remote runtimes: errors, ``ObservationSpec``, ``Chunk``
and the checks of observations and reward clips (numpy only: a robot talking to a remote server needs
neither torch nor a GPU).

Every check raises ``InferenceError`` with one line that names the offending key, e.g.
``observation['state.left_wheel']: non-finite value nan``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# observations may carry this optional key: the time the observation was taken, in seconds (any clock
# that only moves forward); it spaces the frames of the best-of-N reward clip (see best_of_n.py)
STAMP_KEY = "stamp"


class InferenceError(RuntimeError):
    """Inference cannot go on: a bad source, observation or reply, a model error, the server gone.
    The message is one line that names what was wrong."""


class InferenceTimeout(InferenceError):
    """A remote runtime got no reply within its ``timeout_s`` (the runtime stays usable)."""


def one_line(e: BaseException | str) -> str:
    """The first line of an exception's message (with its type when the message is empty)."""
    text = str(e).strip()
    if not text and isinstance(e, BaseException):
        return type(e).__name__
    return text.splitlines()[0] if text else ""


@dataclass(frozen=True)
class ObservationSpec:
    """What ``act`` / ``score`` need: keys, shapes and the chunk produced.

    ``video_keys``: uint8 RGB frames [h, w, 3] of any size (the processor crops and resizes);
    ``image_size``: (h, w) the model was trained at when the checkpoint records it (a client may resize
    to it to send less), else None; ``state_keys``: (key, dim) pairs, float values [dim] in robot units;
    ``language_key``: the instruction (a str); ``action_horizon`` x ``action_dim``: the chunk's shape."""

    video_keys: list = field(default_factory=lambda: ["video.ego_view"])
    image_size: tuple | None = None
    state_keys: list = field(default_factory=lambda: [("state.left_wheel", 1), ("state.right_wheel", 1),
                                                       ("state.acceleration", 1)])
    language_key: str = "annotation.human.action.task_description"
    action_horizon: int = 16
    action_dim: int = 2

    def __post_init__(self) -> None:
        if not self.video_keys or not all(isinstance(k, str) and k.startswith("video.") for k in self.video_keys):
            raise InferenceError(f"ObservationSpec.video_keys = {self.video_keys!r}: expected 'video.<name>' keys")
        object.__setattr__(self, "video_keys", list(self.video_keys))
        state = [(str(k), int(d)) for k, d in self.state_keys]
        if any(d <= 0 or not k.startswith("state.") for k, d in state):
            raise InferenceError(f"ObservationSpec.state_keys = {self.state_keys!r}: expected ('state.<name>', dim > 0)")
        object.__setattr__(self, "state_keys", state)
        if self.image_size is not None:
            size = tuple(int(v) for v in self.image_size)
            if len(size) != 2 or min(size) <= 0:
                raise InferenceError(f"ObservationSpec.image_size = {self.image_size!r}: expected (h, w) or None")
            object.__setattr__(self, "image_size", size)
        for name in ("action_horizon", "action_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise InferenceError(f"ObservationSpec.{name} = {v!r}: must be a positive integer")

    @property
    def state_dim(self) -> int:
        return sum(d for _, d in self.state_keys)

    def to_dict(self) -> dict:
        return {"video_keys": list(self.video_keys), "image_size": None if self.image_size is None else list(self.image_size),
                "state_keys": [[k, d] for k, d in self.state_keys], "language_key": self.language_key,
                "action_horizon": int(self.action_horizon), "action_dim": int(self.action_dim)}

    @classmethod
    def from_dict(cls, d: dict) -> "ObservationSpec":
        try:
            return cls(video_keys=list(d["video_keys"]), image_size=d.get("image_size"),
                       state_keys=[tuple(x) for x in d["state_keys"]], language_key=str(d["language_key"]),
                       action_horizon=int(d["action_horizon"]), action_dim=int(d["action_dim"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InferenceError(f"observation spec {d!r}: {one_line(e)}") from None


@dataclass(frozen=True)
class Chunk:
    """One inference result. ``actions`` [T, A] float32 in robot units (rad/s): the chunk to execute;
    ``scores`` [N] the reward model's scores of the N candidates (None when N == 1); ``chosen`` the
    executed candidate; ``model_s`` the time the runtime spent on it (remote: measured on the server)."""

    actions: np.ndarray
    scores: np.ndarray | None = None
    chosen: int = 0
    model_s: float = 0.0


# -- checks ------------------------------------------------------------------------------------
def _frame(value, key: str, lead: tuple = (), what: str = "observation") -> np.ndarray:
    a = value if isinstance(value, np.ndarray) else None
    shape = "[" + ", ".join([*(str(x) for x in lead), "h", "w", "3"]) + "]"
    if a is None or a.dtype != np.uint8 or a.ndim != len(lead) + 3 or a.shape[-1] != 3 \
            or a.shape[:len(lead)] != lead or min(a.shape[-3:-1], default=0) <= 0:
        got = f"{a.dtype} {list(a.shape)}" if a is not None else type(value).__name__
        raise InferenceError(f"{what}[{key!r}]: expected uint8 RGB {shape}, got {got}")
    return a


def _values(value, key: str, shape: tuple, what: str = "observation") -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InferenceError(f"{what}[{key!r}]: expected numbers of shape {list(shape)}, got {type(value).__name__}") from None
    if a.shape != shape and tuple(d for d in a.shape if d != 1) != tuple(d for d in shape if d != 1):
        raise InferenceError(f"{what}[{key!r}]: expected shape {list(shape)}, got {list(a.shape)}")
    a = a.reshape(shape)
    if not np.isfinite(a).all():
        bad = a[~np.isfinite(a)].reshape(-1)[0]
        raise InferenceError(f"{what}[{key!r}]: non-finite value {bad}")
    return a


def _language(obs: dict, key: str, what: str) -> str:
    if key not in obs:
        raise InferenceError(f"{what} lacks {key!r} (the instruction); keys: {sorted(obs)}")
    if not isinstance(obs[key], str):
        raise InferenceError(f"{what}[{key!r}]: expected the instruction as a str, got {type(obs[key]).__name__}")
    return obs[key]


def check_observation(spec: ObservationSpec, obs) -> dict:
    """-> a clean observation (only the spec's keys and ``stamp``; frames uint8 [h, w, 3], states float32
    [dim]); InferenceError naming the key for a missing key, a wrong dtype or shape, a non-finite value."""
    if not isinstance(obs, dict):
        raise InferenceError(f"observation: expected a dict, got {type(obs).__name__}")
    out: dict = {}
    for key in spec.video_keys:
        if key not in obs:
            raise InferenceError(f"observation lacks {key!r}; keys: {sorted(obs)}")
        out[key] = _frame(obs[key], key)
    for key, dim in spec.state_keys:
        if key not in obs:
            raise InferenceError(f"observation lacks {key!r}; keys: {sorted(obs)}")
        out[key] = _values(obs[key], key, (dim,))
    out[spec.language_key] = _language(obs, spec.language_key, "observation")
    if obs.get(STAMP_KEY) is not None:
        stamp = obs[STAMP_KEY]
        if isinstance(stamp, bool) or not isinstance(stamp, (int, float, np.floating, np.integer)) \
                or not np.isfinite(stamp):
            raise InferenceError(f"observation[{STAMP_KEY!r}]: expected a finite time in seconds, got {stamp!r}")
        out[STAMP_KEY] = float(stamp)
    return out


def check_clip(spec: ObservationSpec, clip, horizon: int, action_horizon: int = 0) -> dict:
    """A reward clip: frames uint8 [H, h, w, 3], states [H, dim], the instruction and, when the model
    takes actions (``action_horizon`` K > 0), ``actions`` [K, action_dim] in robot units."""
    if not isinstance(clip, dict):
        raise InferenceError(f"clip: expected a dict, got {type(clip).__name__}")
    out: dict = {}
    for key in spec.video_keys:
        if key not in clip:
            raise InferenceError(f"clip lacks {key!r}; keys: {sorted(clip)}")
        out[key] = _frame(clip[key], key, (horizon,), "clip")
    for key, dim in spec.state_keys:
        if key not in clip:
            raise InferenceError(f"clip lacks {key!r}; keys: {sorted(clip)}")
        out[key] = _values(clip[key], key, (horizon, dim), "clip")
    out[spec.language_key] = _language(clip, spec.language_key, "clip")
    if action_horizon > 0:
        if "actions" not in clip:
            raise InferenceError(f"clip lacks 'actions' [{action_horizon}, {spec.action_dim}]: this reward model "
                                 "scores actions too")
        out["actions"] = _values(clip["actions"], "actions", (action_horizon, spec.action_dim), "clip")
    elif "actions" in clip:
        raise InferenceError("clip['actions']: this reward model takes no actions (action_horizon 0)")
    return out

"""Local inference runtimes: the policy (optionally best-of-N) and the reward model in this process.

    runtime = open_policy("runs/sft/best", device="auto")        # or a preset ("tiny"), or "tcp://host:5555"
    runtime = open_policy("runs/rl/best", condition="good", guidance=2.0)   # a `train rl --method acfm` policy
    chunk = runtime.act({"video.ego_view": rgb, "state.left_wheel": [0.3], ..., spec.language_key: "Find Blue cube"})
    chunk.actions                                                 # [16, 2] float32 rad/s

    reward = open_reward("runs/reward/best")
    r = reward.score({"video.ego_view": frames_Hx.., "state.left_wheel": [[..]] * H, ..., language_key: "..."})

Device ``"auto"`` is CUDA when available. On CUDA the model runs in bfloat16 with CUDA graphs (the path
the robot-side CUDA tests cover); ``fast=True`` opts in to the whole inference fast path (``use_fast_path()``:
CUDA graphs, GPU image preprocessing, the DiT K/V cache, unmasked SDPA; docs/performance.md), measured on an
H200 but whose runtime-level CUDA tests (guidance, best-of-N) have not run on a GPU yet, so it is not the
default on the robot; ``cuda_graphs=False`` runs eagerly. On a CPU it runs eagerly in float32 whatever the flags. Observations
are checked before the model sees them (``api.check_observation``): a missing
key, a wrong dtype or shape, a non-finite state raise ``InferenceError`` naming the key.

Advantage-conditioned policies (``train rl --method acfm|both``) sample under their checkpoint's
``default_condition`` / ``default_guidance``; ``condition`` / ``guidance`` override them (None: the
checkpoint's). A plain policy given a condition (or a guidance other than 1) is refused at open.

Thread-safety: a runtime is NOT thread-safe. Use each one from a single thread (a node's inference
worker); CUDA graphs are captured and replayed on that thread's stream.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .api import (STAMP_KEY, Chunk, InferenceError, InferenceTimeout, ObservationSpec, check_clip,
                  check_observation, one_line)

LANGUAGE_KEY = "annotation.human.action.task_description"
# frame rate assumed for a reward checkpoint that does not record its training data's fps
# (extra.reward_training.fps): 10 Hz, the contract's dataset fps
DEFAULT_FRAME_RATE = 10.0
REMOTE_PREFIX = "tcp://"

__all__ = ["LocalPolicy", "LocalReward", "open_policy", "open_reward", "Chunk", "ObservationSpec",
           "InferenceError", "InferenceTimeout"]


# -- devices and sources ------------------------------------------------------------------------
def resolve_device(device: str = "auto"):
    """"auto" -> cuda when available, else cpu; -> (torch.device, dtype): bfloat16 on CUDA, float32 on a CPU."""
    import torch

    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InferenceError(f"device {device!r}: {one_line(e)} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError(f"device {device!r}: CUDA is not available on this machine (use auto or cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise InferenceError(f"device {device!r}: only cpu and cuda are supported")
    return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)


def _is_preset(source: str) -> bool:
    from gr00t_rlhf_train.model.configuration import PRESETS
    return source in PRESETS


def _checkpoint_meta(path: Path) -> dict:
    """Our checkpoint's gr00t_rlhf.json (an empty dict for an official directory)."""
    from gr00t_rlhf_train.model.checkpoint import CONFIG_NAME, read_meta
    return read_meta(path) if (path / CONFIG_NAME).is_file() else {}


def load_policy_model(source: str, device="auto", tokenizer=None):
    """A preset name (random weights, built directly on the device) or a checkpoint directory (ours or
    official) -> (Gr00tPolicy in eval mode on the device, checkpoint metadata). InferenceError otherwise."""
    import torch

    from gr00t_rlhf_train.model.policy import Gr00tPolicy

    dev, dtype = resolve_device(device)
    source = str(source)
    try:
        if _is_preset(source):
            with torch.device(dev):
                policy = Gr00tPolicy.from_config(source, tokenizer=tokenizer or "tiny")
            policy.to(dtype=dtype)
            meta: dict = {}
        else:
            path = Path(source)
            if not path.is_dir():
                from gr00t_rlhf_train.model.configuration import PRESETS
                raise InferenceError(f"neither a checkpoint directory nor a preset ({', '.join(sorted(PRESETS))}) "
                                     "nor tcp://HOST:PORT")
            meta = _checkpoint_meta(path)
            policy = Gr00tPolicy.from_pretrained(path, tokenizer=tokenizer, device=dev, dtype=dtype)
    except InferenceError as e:
        raise InferenceError(f"policy {source!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any load failure is a one-line refusal naming the source
        raise InferenceError(f"policy {source!r}: {one_line(e)}") from None
    policy.model.eval()
    return policy, meta


def load_reward_model(source: str, device="auto", tokenizer=None):
    """A reward checkpoint directory -> (RewardModel in eval mode on the device, metadata)."""
    from gr00t_rlhf_train.model.reward_model import RewardModel

    dev, dtype = resolve_device(device)
    source = str(source)
    path = Path(source)
    try:
        if not path.is_dir():
            raise InferenceError("not a reward-model checkpoint directory (nor tcp://HOST:PORT)")
        meta = _checkpoint_meta(path)
        if meta and meta.get("kind") != "reward_model":
            raise InferenceError(f"a {meta.get('kind')!r} checkpoint, not a reward model")
        rm = RewardModel.from_pretrained(path, tokenizer=tokenizer, device=dev, dtype=dtype)
    except InferenceError as e:
        raise InferenceError(f"reward model {source!r}: {e}") from None
    except Exception as e:  # noqa: BLE001
        raise InferenceError(f"reward model {source!r}: {one_line(e)}") from None
    rm.eval()
    return rm, meta


def spec_from_processor(processor, image_size=None) -> ObservationSpec:
    """The ObservationSpec of a Gr00tProcessor (its modality config and the model's chunk horizon)."""
    m = processor.modality
    return ObservationSpec(video_keys=[f"video.{v}" for v in m.video], image_size=image_size,
                           state_keys=[(f"state.{k}", d) for k, d in m.state.items()], language_key=LANGUAGE_KEY,
                           action_horizon=processor.model_config.action_head.action_horizon, action_dim=m.action_dim)


def _concat_actions(out: dict, processor) -> np.ndarray:
    """{"action.<name>": [..., T, dim]} -> [..., T, A] float32 in the modality's order."""
    parts = [np.asarray(out[f"action.{k}"]) for k in processor.modality.action]
    return np.concatenate(parts, axis=-1).astype(np.float32)


# -- reward ---------------------------------------------------------------------------------------
class LocalReward:
    """A RewardModel in this process. ``horizon`` H frames per clip, spaced at ``frame_rate`` Hz (the
    training data's fps); ``action_horizon`` K actions per clip (0: the model takes no actions);
    ``reward_range`` (low, high). ``score(clip) -> float``. Not thread-safe (see the module docstring)."""

    def __init__(self, model, frame_rate: float = DEFAULT_FRAME_RATE, cuda_graphs: bool = True,
                 image_size=None, source: str = "", fast: bool = False):
        if not (isinstance(frame_rate, (int, float)) and np.isfinite(frame_rate) and frame_rate > 0):
            raise InferenceError(f"reward frame_rate = {frame_rate!r}: must be a positive number of Hz")
        self.model, self.source = model, source
        self._head = model.head_config                     # horizon, actions, range (kept after close)
        self.frame_rate = float(frame_rate)
        self.spec = spec_from_processor(model.processor, image_size)
        self.device = next(model.parameters()).device
        self.cuda_graphs = bool(cuda_graphs and self.device.type == "cuda")
        self.fast_path = bool(fast and self.cuda_graphs)
        if self.fast_path:
            model.use_fast_path()
        elif self.cuda_graphs:
            model.use_cuda_graphs()
        self.model.eval()

    @classmethod
    def open(cls, source: str, device="auto", cuda_graphs: bool = True, tokenizer=None,
             fast: bool = False) -> "LocalReward":
        model, meta = load_reward_model(source, device, tokenizer)
        training = (meta.get("extra") or {}).get("reward_training") or {}
        fps = training.get("fps")
        size = training.get("image_size")
        return cls(model, float(fps) if fps else DEFAULT_FRAME_RATE, cuda_graphs,
                   tuple(size) if size else None, str(source), fast)

    @property
    def horizon(self) -> int:
        return int(self._head.horizon)

    @property
    def action_horizon(self) -> int:
        return int(getattr(self._head, "action_horizon", 0) or 0)

    @property
    def reward_range(self) -> tuple[float, float]:
        lo, hi = self._head.reward_range
        return float(lo), float(hi)

    def info(self) -> dict:
        return {"kind": "reward", "source": self.source, "device": str(self.device), "horizon": self.horizon,
                "frame_rate": self.frame_rate, "action_horizon": self.action_horizon,
                "reward_range": list(self.reward_range), "spec": self.spec.to_dict()}

    def check(self, clip) -> dict:
        return check_clip(self.spec, clip, self.horizon, self.action_horizon)

    def warmup(self, calls: int = 2, instruction: str = "Find Blue cube") -> None:
        """Score synthetic clips (on CUDA this captures the graphs), so the first real call is fast."""
        h, w = self.spec.image_size or (240, 320)
        clip = {k: np.zeros((self.horizon, h, w, 3), np.uint8) for k in self.spec.video_keys}
        clip.update({k: np.zeros((self.horizon, d), np.float32) for k, d in self.spec.state_keys})
        clip[self.spec.language_key] = instruction
        if self.action_horizon:
            clip["actions"] = np.zeros((self.action_horizon, self.spec.action_dim), np.float32)
        for _ in range(calls):
            self.score(clip)

    def score(self, clip: dict) -> float:
        """Reward of one clip on the target's scale (InferenceError for a bad clip or a model failure)."""
        if self.model is None:
            raise InferenceError(f"reward model {self.source or 'in memory'}: the runtime is closed")
        clean = self.check(clip)
        return self._score_one(clean)

    def _score_one(self, clean: dict) -> float:
        try:
            value = float(self.model.score(clean))
        except InferenceError:
            raise
        except Exception as e:  # noqa: BLE001
            raise InferenceError(f"reward model {self.source or 'in memory'}: {one_line(e)}") from None
        if not np.isfinite(value):
            raise InferenceError(f"reward model {self.source or 'in memory'}: non-finite score {value}")
        return value

    def close(self) -> None:
        self.model = None


# -- policy ---------------------------------------------------------------------------------------
def check_sampling(policy, condition, guidance, source: str = "") -> tuple[str | None, float | None]:
    """The run-time overrides of an advantage-conditioned policy -> (condition, guidance) as given (None: the
    checkpoint's default); InferenceError (one line naming the source) for a bad name or guidance, or a
    condition for a plain policy."""
    from gr00t_rlhf_train.model.configuration import ADVANTAGE_CONDITIONS

    if condition is not None and condition not in ADVANTAGE_CONDITIONS:
        raise InferenceError(f"policy {source or 'in memory'}: condition = {condition!r}: allowed "
                             f"{', '.join(ADVANTAGE_CONDITIONS)}")
    if guidance is not None:
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float, np.integer, np.floating)) \
                or not np.isfinite(guidance) or guidance < 0:
            raise InferenceError(f"policy {source or 'in memory'}: guidance = {guidance!r}: must be a finite "
                                 "number >= 0")
        guidance = float(guidance)
    try:
        policy.model.action_head.sampling_condition(condition, guidance)
    except ValueError as e:
        raise InferenceError(f"policy {source or 'in memory'}: {one_line(e)}") from None
    return condition, guidance


def effective_sampling(policy, condition=None, guidance=None) -> tuple[str | None, float | None]:
    """What the policy samples under: (condition name, guidance), or (None, None) for a plain policy."""
    from gr00t_rlhf_train.model.configuration import ADVANTAGE_CONDITIONS

    head = policy.model.action_head
    if not head.conditioned:
        return None, None
    index, g = head.sampling_condition(condition, guidance)
    return ADVANTAGE_CONDITIONS[index], g


class LocalPolicy:
    """A Gr00tPolicy in this process; with ``num_candidates`` N > 1 and an action-conditioned reward
    model, best-of-N (see best_of_n.py). ``act(observation, seed=None) -> Chunk``. Not thread-safe.
    ``condition`` / ``guidance``: an advantage-conditioned policy's sampling overrides (None: the checkpoint's)."""

    def __init__(self, policy, reward: LocalReward | None = None, num_candidates: int = 1,
                 cuda_graphs: bool = True, image_size=None, source: str = "", reward_source: str = "",
                 condition: str | None = None, guidance: float | None = None, fast: bool = False):
        if isinstance(num_candidates, bool) or not isinstance(num_candidates, (int, np.integer)) or num_candidates < 1:
            raise InferenceError(f"num_candidates = {num_candidates!r}: must be a positive integer")
        self.condition, self.guidance = check_sampling(policy, condition, guidance, source)
        self.policy, self.source = policy, source
        self.num_candidates = int(num_candidates)
        self.spec = spec_from_processor(policy.processor, image_size)
        self.device = policy.device
        self.cuda_graphs = bool(cuda_graphs and self.device.type == "cuda")
        self.fast_path = bool(fast and self.cuda_graphs and self.num_candidates == 1)
        self.best_of_n = None
        if self.num_candidates > 1:
            from .best_of_n import BestOfN
            self.best_of_n = BestOfN(policy, reward, self.num_candidates, self.cuda_graphs,
                                     reward_source=reward_source or getattr(reward, "source", ""),
                                     condition=self.condition, guidance=self.guidance)
        elif self.fast_path:
            policy.use_fast_path()
        elif self.cuda_graphs:
            policy.use_cuda_graphs()
        self.reward = reward

    @classmethod
    def open(cls, source: str, reward_model=None, num_candidates: int = 1, device="auto",
             cuda_graphs: bool = True, tokenizer=None, condition: str | None = None,
             guidance: float | None = None, fast: bool = False) -> "LocalPolicy":
        """Load the policy (and, for N > 1, the reward model) onto one device; the condition / guidance
        overrides are checked before the reward model loads."""
        from .best_of_n import check_best_of_n_args

        n = check_best_of_n_args(num_candidates, reward_model)
        policy, meta = load_policy_model(source, device, tokenizer)
        check_sampling(policy, condition, guidance, str(source))
        reward = None
        if n > 1:
            reward = reward_model if isinstance(reward_model, LocalReward) else \
                LocalReward.open(str(reward_model), device=str(policy.device), cuda_graphs=cuda_graphs,
                                 tokenizer=tokenizer, fast=fast)
        size = ((meta.get("extra") or {}).get("sft") or {}).get("image_size")   # the frames it was trained on
        return cls(policy, reward, n, cuda_graphs, tuple(size) if size else None, str(source),
                   getattr(reward, "source", ""), condition, guidance, fast)

    def info(self) -> dict:
        return {"kind": "policy", "source": self.source, "device": str(self.device),
                "dtype": str(self.policy.dtype).replace("torch.", ""), "cuda_graphs": self.cuda_graphs,
                "fast_path": self.fast_path, "num_candidates": self.num_candidates,
                "reward_model": self.reward.source if self.reward is not None else "",
                "spec": self.spec.to_dict()} | self.sampling()

    def sampling(self) -> dict:
        """{"condition", "guidance"}: what an advantage-conditioned policy samples under (None, None: a plain one)."""
        condition, guidance = effective_sampling(self.policy, self.condition, self.guidance)
        return {"condition": condition, "guidance": guidance}

    def warmup(self, calls: int = 2, instruction: str = "Find Blue cube") -> None:
        """Act on synthetic observations (on CUDA this captures the graphs), so the first real call is fast;
        the best-of-N history is left untouched."""
        h, w = self.spec.image_size or (240, 320)
        obs = {k: np.zeros((h, w, 3), np.uint8) for k in self.spec.video_keys}
        obs.update({k: np.zeros(d, np.float32) for k, d in self.spec.state_keys})
        obs[self.spec.language_key] = instruction
        history = self.best_of_n.new_history() if self.best_of_n is not None else None
        for _ in range(calls):
            self.act_with_history(obs, 0, history)

    def act(self, observation: dict, seed: int | None = None) -> Chunk:
        """Observation -> the chunk to execute (InferenceError for a bad observation or a model failure)."""
        return self.act_with_history(observation, seed, None)

    def act_with_history(self, observation: dict, seed: int | None, history) -> Chunk:
        """``act`` with the best-of-N clip history given by the caller (a server keeps one per client);
        None: the runtime's own."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise InferenceError(f"seed = {seed!r}: must be a non-negative integer or None")
        if self.policy is None:
            raise InferenceError(f"policy {self.source or 'in memory'}: the runtime is closed")
        clean = check_observation(self.spec, observation)
        t0 = time.perf_counter()
        try:
            if self.best_of_n is not None:
                actions, scores, chosen = self.best_of_n.act(clean, seed, history)
            else:
                obs = {k: v for k, v in clean.items() if k != STAMP_KEY}
                out = self.policy.get_action(obs, seed=seed, condition=self.condition, guidance=self.guidance)
                actions = _concat_actions(out, self.policy.processor)
                scores, chosen = None, 0
        except InferenceError:
            raise
        except Exception as e:  # noqa: BLE001 - a model failure is one line, the caller zeroes the wheels
            raise InferenceError(f"policy {self.source or 'in memory'}: {one_line(e)}") from None
        model_s = time.perf_counter() - t0
        if not np.isfinite(actions).all():
            raise InferenceError(f"policy {self.source or 'in memory'}: non-finite actions in the chunk")
        return Chunk(actions=actions, scores=scores, chosen=int(chosen), model_s=model_s)

    def close(self) -> None:
        if self.reward is not None:
            self.reward.close()
        self.policy = self.best_of_n = self.reward = None


# -- entry points ---------------------------------------------------------------------------------
def open_policy(source: str, reward_model=None, num_candidates: int = 1, device: str = "auto",
                cuda_graphs: bool = True, timeout_s: float = 1.0, tokenizer=None, connect_timeout_s: float = 10.0,
                condition: str | None = None, guidance: float | None = None, fast: bool = False):
    """A policy runtime: ``source`` is our checkpoint directory, an official GR00T N1 directory, a preset
    name (random weights) or ``tcp://HOST:PORT`` (a ``gr00t-rlhf serve policy`` server). ``reward_model``
    and ``num_candidates`` > 1 turn on best-of-N (the reward model is loaded only then). A remote runtime
    does best-of-N on the server (started with ``--num-candidates N --reward-model R``): there
    ``num_candidates`` must be 1 or the server's N, and ``reward_model`` is not used. ``timeout_s``: a
    remote request with no reply in this time raises InferenceTimeout; ``connect_timeout_s``: the wait for
    the server's first reply at open. ``condition`` / ``guidance``: an advantage-conditioned policy's
    sampling (None: the checkpoint's ``default_condition`` / ``default_guidance``); a plain policy given a
    condition is refused; a remote one samples as its server was started (``serve policy --condition
    --guidance``), so there they must be None or the server's. InferenceError with one line naming the
    source on any failure. ``fast`` (CUDA only): True opts in to the model's whole inference fast path; False
    (default) the CUDA graphs alone; a CPU runs eagerly either way."""
    source = str(source)
    if source.startswith(REMOTE_PREFIX):
        from .client import RemotePolicy
        return RemotePolicy(source, num_candidates=num_candidates, timeout_s=timeout_s,
                            connect_timeout_s=connect_timeout_s, condition=condition, guidance=guidance)
    return LocalPolicy.open(source, reward_model, num_candidates, device, cuda_graphs, tokenizer, condition, guidance,
                            fast)


def open_reward(source: str, device: str = "auto", cuda_graphs: bool = True, timeout_s: float = 1.0,
                tokenizer=None, connect_timeout_s: float = 10.0, fast: bool = False):
    """A reward runtime: a reward checkpoint directory or ``tcp://HOST:PORT`` (``gr00t-rlhf serve reward``).
    ``fast`` (CUDA only): True opts in to the reward model's whole fast path; False (default) the CUDA graphs alone."""
    source = str(source)
    if source.startswith(REMOTE_PREFIX):
        from .client import RemoteReward
        return RemoteReward(source, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s)
    return LocalReward.open(source, device, cuda_graphs, tokenizer, fast)

"""Best-of-N: sample N action chunks in one batched call and execute the one the reward model likes best.

What is scored. The reward model (trained with ``train reward --action-horizon K``) scores a clip of
its H frames + states + the instruction + K actions. For candidate chunk i the clip is:

* frames and states: the last H observations this runtime was given, spaced 1 / ``frame_rate`` s apart
  (the reward model's training fps) by the observations' ``stamp`` (seconds; the arrival time on the
  runtime's monotonic clock when absent): for each target time now - j / frame_rate (j = H-1 .. 0)
  the observation nearest to it (the newer of two equally near); when the history does not reach back
  that far, the oldest observation repeats — as training repeats an episode's first row. With
  observations rarer than the frame rate (a replan every few commands) an observation fills several
  frames of the clip. The history is emptied
  when the instruction changes, the time goes backwards or the frame size changes (a new episode);
* actions: the first K actions of candidate i (robot units, normalised with the reward checkpoint's
  action statistics), i.e. what the robot would do from now on — the reward model's verdict on
  "this observation history, followed by these actions".

How. The observation is the same for all N candidates, so the policy's backbone runs once and its
features are repeated N times for the flow-matching head, which integrates N independent noise draws
in one batch (the same chunks as the policy on the observation repeated N times with that noise;
a test checks it). Likewise the reward model's backbone runs once on the H frames and its head scores
the N candidates in one batch (``RewardModel.prepare`` with candidate actions [N, K, A]); the argmax
is executed (the first of equal scores). On CUDA both calls replay CUDA graphs (one per N and prompt
length, and per condition / guidance setting).

An advantage-conditioned policy (``train rl --method acfm|both``) samples its N candidates under its
checkpoint's ``default_condition`` / ``default_guidance`` or the runtime's ``condition`` / ``guidance``
overrides (classifier-free guidance doubles the head's batch to 2N).
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch

from .api import STAMP_KEY, InferenceError, one_line

GRAPH_INPUTS = ("input_ids", "attention_mask", "pixel_values", "state", "embodiment_id")


def check_best_of_n_args(num_candidates, reward_model) -> int:
    """-> N; InferenceError for N < 1 or N > 1 without a reward model."""
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, (int, np.integer)) or num_candidates < 1:
        raise InferenceError(f"num_candidates = {num_candidates!r}: must be a positive integer")
    if num_candidates > 1 and (reward_model is None or reward_model == ""):
        raise InferenceError(f"num_candidates = {num_candidates}: best-of-N needs a reward model that takes actions "
                             "(train reward --action-horizon K); reward_model is empty")
    return int(num_candidates)


class ClipHistory:
    """The recent observations of one robot, for the reward clip of best-of-N (see the module docstring)."""

    def __init__(self, horizon: int, frame_rate: float, max_len: int | None = None):
        self.horizon, self.period = int(horizon), 1.0 / float(frame_rate)
        self.entries: deque = deque(maxlen=max_len or 4 * self.horizon + 8)

    def add(self, obs: dict, language_key: str, video_keys: list) -> None:
        stamp = obs.get(STAMP_KEY)
        stamp = time.monotonic() if stamp is None else float(stamp)
        if self.entries:
            last_stamp, last = self.entries[-1]
            if (stamp < last_stamp or last[language_key] != obs[language_key]
                    or any(last[k].shape != obs[k].shape for k in video_keys)):
                self.entries.clear()                                   # a new episode
            elif stamp == last_stamp:
                self.entries.pop()                                     # the same instant: keep the newer data
        self.entries.append((stamp, obs))
        span = self.horizon * self.period                              # drop what no clip can use any more
        while len(self.entries) > 1 and self.entries[1][0] <= stamp - span:
            self.entries.popleft()

    def clip(self) -> list[dict]:
        """-> the H observations of the clip, oldest first (the newest is the last one added)."""
        if not self.entries:
            raise InferenceError("best-of-N: no observation in the history")
        now = self.entries[-1][0]
        stamps = np.array([s for s, _ in self.entries])
        out = []
        for j in range(self.horizon - 1, -1, -1):
            target = now - j * self.period
            i = int(np.searchsorted(stamps, target))                     # first observation at or after the target
            if i == len(stamps) or (i > 0 and target - stamps[i - 1] < stamps[i] - target):
                i -= 1                                                   # the one before is nearer
            out.append(self.entries[i][1])
        return out


class BestOfN:
    """N candidates from one batched policy call, scored by the reward model in one batched call."""

    def __init__(self, policy, reward, num_candidates: int, cuda_graphs: bool = False, reward_source: str = "",
                 condition: str | None = None, guidance: float | None = None):
        from gr00t_rlhf_train.model.cuda_graph import GraphedFunction

        n = check_best_of_n_args(num_candidates, reward)
        if reward.action_horizon <= 0:
            raise InferenceError(f"best-of-N needs a reward model that takes actions (train reward --action-horizon K); "
                                 f"{reward_source or reward.source or 'the reward model'} has none")
        spec_p, spec_r = policy.processor.modality, reward.model.processor.modality
        if spec_p.action != spec_r.action:
            raise InferenceError(f"best-of-N: the reward model's actions {spec_r.action} differ from the policy's "
                                 f"{spec_p.action}")
        keys_p = {f"video.{v}" for v in spec_p.video} | {f"state.{k}" for k in spec_p.state}
        missing = sorted(({*reward.spec.video_keys} | {k for k, _ in reward.spec.state_keys}) - keys_p)
        if missing:
            raise InferenceError(f"best-of-N: the reward model reads {missing}, which the policy's observation lacks")
        if reward.action_horizon > policy.config.action_head.action_horizon:
            raise InferenceError(f"best-of-N: the reward model reads {reward.action_horizon} actions, the policy's "
                                 f"chunk has {policy.config.action_head.action_horizon}")
        self.policy, self.reward, self.n = policy, reward, n
        policy.model.action_head.sampling_condition(condition, guidance)       # bad values: ValueError now
        self.condition, self.guidance = condition, guidance                     # None: the checkpoint's
        self.history = ClipHistory(reward.horizon, reward.frame_rate)
        self.last_timing: dict = {}                 # seconds of the last act: sample_s (policy), score_s (reward)
        self._sample = GraphedFunction(self._sample_body) if cuda_graphs else None

    # -- the two batched calls (also the bodies of their CUDA graphs) -----------------------------
    def _sample_body(self, inputs: dict, num_steps: int, condition: str | None = None,
                     guidance: float | None = None) -> torch.Tensor:
        """Backbone once on the observation [1, ...], the flow head on N noise draws -> [N, T, A]
        (an advantage-conditioned head under ``condition`` with ``guidance``; None: the checkpoint's)."""
        model = self.policy.model
        noise = inputs["noise"]                                                         # [N, T, A]
        n = noise.shape[0]
        feats = model.backbone(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
                               self._sample is not None)                               # [1, L, D]
        feats = feats.expand(n, -1, -1)                                                 # [N, L, D]
        mask = inputs["attention_mask"].expand(n, -1)                                   # [N, L]
        state = inputs["state"].to(feats.dtype).expand(n, -1, -1)                       # [N, 1, S]
        emb = inputs["embodiment_id"].expand(n)                                         # [N]
        # the VL keys/values of each DiT cross-attention block projected once for all steps (identical results)
        with model.action_head.model.inference_context():
            return model.action_head.sample(feats, mask, state, emb, num_steps=num_steps, noise=noise,
                                            condition=condition, guidance=guidance)

    @torch.no_grad()
    def sample(self, obs: dict, seed: int | None) -> np.ndarray:
        """-> N candidate chunks [N, T, A] float32 in robot units."""
        policy = self.policy
        batch = policy.prepare(obs)
        head = policy.model.action_head
        generator = torch.Generator(device=policy.device).manual_seed(seed) if seed is not None else None
        noise = head.initial_noise(self.n, policy.device, policy.model.backbone.linear.weight.dtype, generator)
        inputs = {k: batch[k] for k in GRAPH_INPUTS} | {"noise": noise}
        steps = head.config.num_inference_steps
        options = {"condition": self.condition, "guidance": self.guidance}     # part of the CUDA graph's key
        if self._sample is None:
            normalised = self._sample_body(inputs, steps, **options)
        else:
            from gr00t_rlhf_train.model.cuda_graph import weights_guard
            policy.model.eval()
            normalised = self._sample(inputs, guard=weights_guard(policy.model), num_steps=steps, **options)
        out = policy.processor.decode_actions(normalised)                               # robot units
        return np.concatenate([out[f"action.{k}"] for k in policy.processor.modality.action], -1).astype(np.float32)

    def reward_clip(self, history: ClipHistory, spec) -> dict:
        """The clip of the last H observations (without actions), as the reward model's prepare takes it."""
        frames = history.clip()
        clip = {k: np.stack([f[k] for f in frames]) for k in spec.video_keys}
        clip.update({k: np.stack([f[k] for f in frames]) for k, _ in spec.state_keys})
        clip[spec.language_key] = frames[-1][spec.language_key]
        return clip

    @torch.no_grad()
    def score(self, clip: dict, candidates: np.ndarray) -> np.ndarray:
        """The clip (H frames, no actions) + each candidate's first K actions -> scores [N] on the target's scale,
        in one call: the reward model's backbone runs once on the clip, its head on the N action sets
        (``RewardModel.prepare`` with candidate actions [N, K, A]; its CUDA graph when enabled)."""
        rm = self.reward.model
        rm.eval()
        batch = rm.prepare(clip | {"actions": candidates[:, :self.reward.action_horizon]})
        return rm.predict(batch).float().cpu().numpy().astype(np.float32)                 # [N]

    def act(self, obs: dict, seed: int | None, history: ClipHistory | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """-> (the chosen chunk [T, A], the N scores, the chosen index)."""
        history = history if history is not None else self.history
        spec = self.reward.spec
        history.add({k: v for k, v in obs.items()}, spec.language_key, spec.video_keys)
        policy_obs = {k: v for k, v in obs.items() if k != STAMP_KEY}
        t0 = time.perf_counter()
        candidates = self.sample(policy_obs, seed)                                       # [N, T, A]
        t1 = time.perf_counter()
        try:
            scores = self.score(self.reward_clip(history, spec), candidates)             # [N]
            self.last_timing = {"sample_s": t1 - t0, "score_s": time.perf_counter() - t1}
        except InferenceError:
            raise
        except Exception as e:  # noqa: BLE001
            raise InferenceError(f"reward model {self.reward.source or 'in memory'}: {one_line(e)}") from None
        if not np.isfinite(scores).all():
            raise InferenceError(f"reward model {self.reward.source or 'in memory'}: non-finite candidate scores")
        chosen = int(np.argmax(scores))
        return candidates[chosen], scores, chosen

    def new_history(self) -> ClipHistory:
        return ClipHistory(self.reward.horizon, self.reward.frame_rate)

"""Stage 2 with a frozen backbone: the backbone's features of every frame computed ONCE, then the head trains on them.

    store = FrameFeatures.build(model, [train_clips, val_clips], batch_size=64)   # one backbone pass per frame
    ds = CachedClips(train_clips, store)          # samples: frame indices + labels, no pictures
    outputs = store.forward(model, batch)         # == model(model.prepare(model_inputs(batch))) without augmentation

Why it is exact: with ``tuning="frozen"`` the backbone runs in eval mode without gradients
(``RewardModel.features``), so a frame's vision-language tokens depend only on its picture (centre
crop: the cache is built without crop augmentation) and its prompt (the episode's instruction). A clip
of H frames is H independent backbone sequences (``RewardModel.forward``), so its features are the H
frames' cached features; the state is normalised per frame too. Overlapping clips share frames, so the
backbone runs once per distinct frame (clips of 4 frames: 4x fewer backbone passes per epoch, and none
in later epochs).

Padding: frames are grouped by instruction (one prompt length per group: no padding inside a group);
a batch mixing instructions pads the shorter token sequences with zeros on the tokenizer's padding
side and masks them, as the processor does. The recomputing path pads to the batch's longest prompt
too; the real tokens' features are the same (causal LLM, padding masked), the padded positions are
masked by both heads (MLP: masked mean; DiT: masked cross-attention), so the head's outputs are equal.

Memory: frames x prompt tokens x feature width x 2 bytes in bf16 (the 2B model: ~0.3 MB a frame at
~100 tokens of 1536, e.g. 12.6 k frames of the seed reward dataset ~3.8 GB), held on the training
device. Each process of a multi-GPU run builds the whole store for itself (same numbers everywhere).
The store lives in memory for the run (a resumed run rebuilds it): it is keyed by the run itself,
whose backbone is frozen at its initial weights.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..data.samples import INSTRUCTION, RewardClips

ACTIONS = "actions"


@dataclass
class _Group:
    """The frames of one instruction: features [F, L, D] and normalised states [F, S] on the device."""

    features: torch.Tensor
    state: torch.Tensor


class FrameFeatures:
    """Backbone features and normalised states of every frame the given reward clips read."""

    def __init__(self, groups: list[_Group], frame_group: np.ndarray, frame_local: np.ndarray,
                 base: dict[int, int], embodiment_id: int, padding_side: str, seconds: float):
        self.groups = groups
        self.frame_group = torch.from_numpy(frame_group)       # [F] group of each frame
        self.frame_local = torch.from_numpy(frame_local)       # [F] index within its group
        self.base = base                                       # episode -> global index of its first frame
        self.embodiment_id = embodiment_id
        self.padding_side = padding_side
        self.seconds = seconds

    def __len__(self) -> int:
        return len(self.frame_group)

    @property
    def nbytes(self) -> int:
        return sum(g.features.numel() * g.features.element_size() + g.state.numel() * g.state.element_size()
                   for g in self.groups)

    @classmethod
    @torch.no_grad()
    def build(cls, model, clip_sets: list[RewardClips], batch_size: int = 64, autocast_dtype=None,
              progress: bool = True) -> "FrameFeatures":
        """Run the frozen backbone once over every frame (at the video rate) of the clips' episodes."""
        if model.tuning != "frozen":
            raise ValueError(f"feature cache: the backbone is trained (tuning = {model.tuning!r}); cached features "
                             "need --tuning frozen")
        t0 = time.time()
        cache = clip_sets[0].cache
        for clips in clip_sets:
            if clips.cache is not cache or clips.rows_mode != "frames":
                raise ValueError("feature cache: every clip set must read the same frame cache with rows='frames'")
        episodes = sorted({e for clips in clip_sets for e in clips.episodes})
        device = next(model.parameters()).device
        processor = model.processor
        video_key = clip_sets[0].video_key
        by_task: dict[str, list[tuple[int, np.ndarray]]] = {}
        for e in episodes:
            ep = cache.episode(e)
            by_task.setdefault(ep.task, []).append((e, ep.grid_rows(cache.fps)))
        base, order, total = {}, [], 0
        for task, eps in by_task.items():
            for e, rows in eps:
                base[e] = total
                order.append((task, e, rows))
                total += len(rows)
        frame_group = np.zeros(total, np.int64)
        frame_local = np.zeros(total, np.int64)
        groups: list[_Group] = []
        done = 0
        for gi, (task, eps) in enumerate(by_task.items()):
            feats, states, local = [], [], 0
            for e, rows in eps:
                ep = cache.episode(e)
                for s in range(0, len(rows), batch_size):
                    r = rows[s:s + batch_size]
                    obs = {INSTRUCTION: [task] * len(r), video_key: ep.frames(r).numpy()}
                    obs.update({f"state.{n}": ep.state[r, a:b] for n, (a, b) in cache.modality["state"].items()})
                    batch = {k: v.to(device) for k, v in processor(obs).items()}      # centre crop, no padding
                    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                        enabled=autocast_dtype is not None):
                        f = model.features(batch)                                        # [n, L, D]
                    feats.append(f)
                    states.append(batch["state"][:, 0])                                  # [n, S]
                    done += len(r)
                n = len(rows)
                frame_group[base[e]:base[e] + n] = gi
                frame_local[base[e]:base[e] + n] = local + np.arange(n)
                local += n
            groups.append(_Group(torch.cat(feats), torch.cat(states)))
            if progress:
                print(f"feature cache: {done}/{total} frames ({done / max(time.time() - t0, 1e-9):.0f} frames/s)",
                      file=sys.stderr)
        side = getattr(processor.tokenizer, "padding_side", "right") or "right"
        store = cls(groups, frame_group, frame_local, base, processor.modality.embodiment_id, side, time.time() - t0)
        if progress:
            print(f"feature cache: {total} frames, {store.nbytes / 2**20:.1f} MiB on {device}, {store.seconds:.1f} s",
                  file=sys.stderr)
        return store

    def gather(self, frames: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Global frame indices [B, H] -> features [B, H, L, D], mask [B, H, L], state [B, H, S]."""
        b, h = frames.shape
        flat = frames.reshape(-1).cpu()                                               # [B*H]
        gid, loc = self.frame_group[flat], self.frame_local[flat]
        present = torch.unique(gid).tolist()
        length = max(self.groups[g].features.shape[1] for g in present)
        ref = self.groups[present[0]]
        feats = torch.zeros(b * h, length, ref.features.shape[-1], dtype=ref.features.dtype, device=device)
        mask = torch.zeros(b * h, length, dtype=torch.long, device=device)
        state = torch.zeros(b * h, ref.state.shape[-1], dtype=ref.state.dtype, device=device)
        for g in present:
            sel = (gid == g).nonzero().squeeze(1)                                     # [n]
            grp = self.groups[g]
            idx = loc[sel].to(grp.features.device)
            n = grp.features.shape[1]
            span = slice(0, n) if self.padding_side == "right" else slice(length - n, length)
            sel_d = sel.to(device)
            feats[sel_d, span] = grp.features[idx].to(device)
            mask[sel_d, span] = 1
            state[sel_d] = grp.state[idx].to(device)
        return (feats.reshape(b, h, length, -1), mask.reshape(b, h, length), state.reshape(b, h, -1))

    def forward(self, model, batch: dict, actions=None) -> list[torch.Tensor]:
        """The reward head on a CachedClips batch (-> the refinement steps' estimates [B] each, as
        ``RewardModel.forward``). ``actions``: the clips' actions in robot units (default ``batch["actions"]``)."""
        device = next(model.head.parameters()).device
        dtype = next(model.head.parameters()).dtype
        frames = torch.as_tensor(np.asarray(batch["frames"]))                         # [B, H]
        feats, mask, state = self.gather(frames, device)
        b = frames.shape[0]
        embodiment = torch.full((b,), self.embodiment_id, dtype=torch.long, device=device)
        if actions is None:
            actions = batch.get(ACTIONS)
        acts = model.prepare_actions(actions, b) if model.head_config.action_horizon else None
        if acts is not None:
            acts = acts.to(device, dtype)
        return model.head(feats, mask, state.to(dtype), embodiment, acts)


class CachedClips(torch.utils.data.Dataset):
    """``RewardClips`` with the pictures replaced by indices into a ``FrameFeatures`` store: the same samples in
    the same order (``frames`` [H] instead of ``video.*`` and ``state.*``; labels, episode, row, actions kept).
    Holds no tensor of the store (picklable for DataLoader workers)."""

    def __init__(self, clips: RewardClips, store: FrameFeatures):
        self.clips, self.cache, self.episodes = clips, clips.cache, clips.episodes
        self.horizon, self.base = clips.horizon, dict(store.base)
        missing = sorted(set(clips.episodes) - set(self.base))
        if missing:
            raise ValueError(f"feature cache: episodes {missing[:10]} were not cached")
        self.seq = {e: clips.cache.episode(e).grid_rows(clips.cache.fps) for e in clips.episodes}
        self.index = np.array([(e, k) for e in clips.episodes for k in range(0, len(self.seq[e]), clips.stride)],
                              np.int64)                                               # [N, 2] (episode, position)
        if len(self.index) != len(clips):
            raise ValueError(f"feature cache: {len(self.index)} cached samples but {len(clips)} clips (rows mode "
                             f"{clips.rows_mode!r})")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        e, k = (int(v) for v in self.index[i])
        ep, seq = self.cache.episode(e), self.seq[e]
        t = int(seq[k])
        frames = self.base[e] + np.maximum(np.arange(k - self.horizon + 1, k + 1), 0)   # [H], first repeated
        out = {"frames": frames, "episode": e, "row": t, "time": float(ep.times[t]), INSTRUCTION: ep.task}
        if self.clips.action_horizon:
            out[ACTIONS] = self.clips.actions_at(ep, seq, k)                          # [K, A]
        if self.clips.target == "reward":
            out["target"] = float(ep.reward[t])
        elif self.clips.target == "feedback":
            out["target"] = float(self.cache.vocabulary.reward(int(ep.feedback[t])))
        return out

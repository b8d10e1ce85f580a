"""Image preprocessing on the model's device: uint8 frames on the host -> pixel values on the GPU.

The CPU path converts each frame to float, crops and resizes it on the host, then ships the float
[N, 3, S, S] tensor (600 KB per 224x224 view in fp32) to the GPU, a few ms per frame on a busy robot
computer. Here only the uint8 frame crosses the bus (230 KB for 320x240), through a pinned staging buffer
(asynchronous copy), and the crop, antialiased resize, uint8 rounding and [-1, 1] scaling run as a
handful of GPU kernels (inside the policy's CUDA graph when that lever is on too):

    pre = DevicePreprocessor(policy.processor, device="cuda")
    pixel_values = pre(frames)          # uint8 [N, H, W, 3] (numpy or tensor) -> [N, 3, S, S] on the device

Exactness: the pixels come from the processor's own image function (``Gr00tProcessor.image_tensor`` ->
``processor.preprocess_images``, which runs on tensors of any device), so both paths follow one definition
and the checkpoint's ``processor_format``. On CPU tensors the result is bit-identical (tested). On CUDA the
interpolation kernel rounds its float sums differently in the last bits; where the official format truncates
to uint8 a pixel lying on an integer boundary can then move by one step (2/255 after scaling): bounded in
tests/train/model/test_gpu_preprocess.py (GPU only) and far below bf16 weights' effect on the actions.
"""
from __future__ import annotations

import numpy as np
import torch


def as_frames(frames) -> torch.Tensor:
    """uint8 RGB frames [N, H, W, 3] (numpy array or tensor) -> a tensor; one-line ValueError otherwise."""
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames: expected uint8 [N, H, W, 3], got {frames.dtype} {frames.shape}")
        return torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.ndim != 4 \
            or frames.shape[-1] != 3:
        got = f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames: expected uint8 [N, H, W, 3], got {got}")
    return frames


class DevicePreprocessor:
    """The pixel values of ``processor`` (evaluation: centre crop, no jitter), computed on ``device`` from
    host uint8 frames. Not thread-safe: one pinned staging buffer per frame shape is reused by every call."""

    def __init__(self, processor, device: str | torch.device, dtype: torch.dtype = torch.float32):
        self.processor = processor
        self.device, self.dtype = torch.device(device), dtype
        self._staging: dict[tuple, tuple[torch.Tensor, torch.cuda.Event]] = {}

    def upload(self, frames) -> torch.Tensor:
        """uint8 [N, H, W, 3] (numpy array or tensor) -> the same frames on the device (pinned, async)."""
        frames = as_frames(frames)
        if frames.device.type != "cpu" or self.device.type != "cuda":
            return frames.to(self.device)
        key = tuple(frames.shape)
        if key not in self._staging:
            self._staging[key] = (torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True), torch.cuda.Event())
        staging, copied = self._staging[key]
        copied.synchronize()                 # the previous copy out of this buffer is done (at once, usually)
        staging.copy_(frames)
        out = staging.to(self.device, non_blocking=True)
        copied.record(torch.cuda.current_stream(self.device))
        return out

    def pixels(self, device_frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] already on the device -> [N, 3, S, S] in ``dtype`` (no host syncs: CUDA-graph safe)."""
        return self.processor.image_tensor(device_frames).to(self.dtype)

    def __call__(self, frames) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> pixel values [N, 3, S, S] on the device, in ``dtype``."""
        return self.pixels(self.upload(frames))


class FastInputs:
    """The processor's batch without its host image work: prompt, tokens, state and embodiment id from the
    processor's own functions, the newest uint8 frame of each view left as uint8 for the device.

    Tokenised prompts are cached per set of distinct instructions (a batch of 64 frames of one episode
    tokenises one prompt); padding depends only on each row and the longest row, so tokenising the
    distinct prompts and gathering rows gives the same tensors as tokenising all of them."""

    def __init__(self, processor, max_cached: int = 256):
        self.processor, self.max_cached = processor, max_cached
        self._tokens: dict[tuple, dict[str, torch.Tensor]] = {}

    def tokens(self, instructions: list[str], num_images: int) -> tuple[dict[str, torch.Tensor], bool]:
        """-> ({"input_ids", "attention_mask"} [B, L] on the CPU, unpadded)."""
        distinct = list(dict.fromkeys(instructions))
        key = (tuple(distinct), num_images)
        enc = self._tokens.get(key)
        if enc is None:
            proc = self.processor
            enc = proc.tokenize([proc.prompt(s, num_images) for s in distinct])
            enc["unpadded"] = bool(enc["attention_mask"].all())
            if len(self._tokens) >= self.max_cached:
                self._tokens.clear()
            self._tokens[key] = enc
        if len(distinct) == 1:
            n = len(instructions)
            return {k: enc[k].expand(n, -1) for k in ("input_ids", "attention_mask")}, enc["unpadded"]
        where = {s: i for i, s in enumerate(distinct)}
        rows = torch.tensor([where[s] for s in instructions])
        return {k: enc[k][rows] for k in ("input_ids", "attention_mask")}, enc["unpadded"]

    def __call__(self, obs: dict) -> tuple[dict, np.ndarray, bool]:
        """Observation (single or batched, as ``Gr00tProcessor.__call__`` takes it) -> (CPU tensors
        input_ids, attention_mask [B, L], state [B, 1, max_state_dim], embodiment_id [B]; uint8 frames
        [B*V, H, W, 3] sample-major; unpadded)."""
        proc = self.processor
        instructions, batched, views = proc.split_observation(obs)
        b = len(instructions)
        v = len(views)
        frames = views[0] if v == 1 else np.stack(views, axis=1).reshape(b * v, *views[0].shape[1:])  # [B*V, H, W, 3]
        batch, unpadded = self.tokens(instructions, v)
        head = proc.model_config.action_head
        state = proc.normalize_group(proc._group(obs, "state", b, batched), "state")       # [B, Ds]
        batch["state"] = torch.zeros(b, 1, head.max_state_dim)
        batch["state"][:, 0, :state.shape[-1]] = torch.from_numpy(state).float()
        batch["embodiment_id"] = torch.full((b,), proc.modality.embodiment_id, dtype=torch.long)
        return batch, frames, unpadded

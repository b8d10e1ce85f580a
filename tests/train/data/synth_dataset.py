"""Factory for tiny synthetic datasets written by the real DatasetWriter (reusable by any test).

    from synth_dataset import make_dataset, synth_image
    truth = make_dataset(tmp_path / "ds", episodes=2, frames=8)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gr00t_rlhf_train.data import DatasetWriter

BINARY = {0: "Doing bad", 1: "Doing good"}
SCORES = {k: f"score {k}" for k in range(-5, 6)}
TASKS = ("Find Blue cube", "Position yourself next to Green sphere")


def synth_image(size: tuple[int, int], episode: int, frame: int) -> np.ndarray:
    """A smooth, moving test picture (compresses like a camera image): uint8 [H, W, 3]."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)  # [H, W]
    r = 127 + 100 * np.sin((xx + 3 * frame) / 9.0)
    g = 127 + 100 * np.cos((yy - 2 * frame) / 7.0)
    b = np.full_like(xx, (40 * episode + 5 * frame) % 256)
    img = np.stack([r, g, b], -1)  # [H, W, 3]
    cy, cx = (h // 2 + frame) % h, (w // 3 + 2 * frame) % w  # a moving block
    img[max(cy - 4, 0):cy + 4, max(cx - 4, 0):cx + 4] = (250, 20, 20)
    return img.clip(0, 255).astype(np.uint8)


@dataclass
class EpisodeTruth:
    images: list[np.ndarray] = field(default_factory=list)
    state: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    validity: list[int] = field(default_factory=list)
    task: str = ""


def write_episode(writer: DatasetWriter, episode: int, frames: int, seed: int = 0, t0: float = 100.0,
                  task: str | None = None, commit: bool = True) -> EpisodeTruth:
    rng = np.random.default_rng(seed + episode)
    truth = EpisodeTruth(task=task or TASKS[episode % len(TASKS)])
    ep = writer.start_episode(truth.task)
    keys = sorted(writer.vocabulary.texts)
    for i in range(frames):
        img = synth_image(writer.image_size, episode, i)
        state = rng.normal(size=3).astype(np.float32)
        action = rng.uniform(-5, 5, size=2).astype(np.float32)
        t = t0 + i / writer.fps
        v = keys[(i // 3 + episode) % len(keys)]
        ep.add_frame(img, state, action, t, v)
        for lst, x in ((truth.images, img), (truth.state, state), (truth.action, action), (truth.timestamps, t),
                       (truth.validity, v)):
            lst.append(x)
    if commit:
        ep.commit()
    return truth


def make_dataset(root: Path, episodes: int = 2, frames: int = 8, size: tuple[int, int] = (64, 96), fps: float = 10.0,
                 vocabulary: dict[int, str] = BINARY) -> list[EpisodeTruth]:
    """Write ``episodes`` episodes of ``frames`` frames at ``root``; return what was written."""
    w = DatasetWriter.create(root, fps=fps, image_size=size, vocabulary=vocabulary)
    return [write_episode(w, e, frames + e) for e in range(episodes)]

"""Run by test_multi_process.py under ``accelerate launch --cpu --num_processes N`` (and plainly): the training
loop on a deterministic regression (no randomness in the loss), final weights to OUT/weights.safetensors.

    python ddp_regression.py OUT BATCH_SIZE
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from gr00t_rlhf_train.stages.loop import TrainConfig, train


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n: int = 96):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.01 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def mse(model, batch):
    pred = model(batch["x"]).squeeze(-1)
    return ((pred - batch["y"]) ** 2).mean(), {}


def main(out: str, batch_size: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    cfg = TrainConfig(out_dir=out, steps=12, batch_size=batch_size, lr=3e-2, warmup_steps=2, eval_every=0,
                      save_every=6, log_every=3, num_workers=0, seed=3)
    res = train(model, mse, Pairs(), cfg, save=lambda m, p: save_file(
        {k: v.contiguous() for k, v in m.state_dict().items()}, str(Path(p) / "weights.safetensors")))
    import os
    if os.environ.get("RANK", "0") == "0":
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(Path(out) / "weights.safetensors"))
        (Path(out) / "loss.txt").write_text(f"{res.train_loss}\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

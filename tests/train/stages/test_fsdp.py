"""FSDP (stages/sharding.py) under ``accelerate launch`` with the shipped config/accelerate/fsdp.yaml, 2 processes on
the CPU (gloo): it trains what DDP trains, resumes exactly, and writes the same checkpoint files.

The model is the tiny GR00T policy (its Llama decoder layers, SigLIP encoder layers and DiT blocks are the shards);
each launch costs ~20-30 s on 2 busy cores: marked slow.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_multi_process import LAUNCH, REPO, _run

from gr00t_rlhf_train.stages.loop import TrainConfig, TrainConfigError, train
from gr00t_rlhf_train.stages.sharding import UNIT_CLASSES, unit_classes, wants_fsdp

FSDP = [a for a in LAUNCH if a != "--multi_gpu"][:3] + ["--config_file", str(REPO / "config/accelerate/fsdp.yaml")] \
    + [a for a in LAUNCH if a != "--multi_gpu"][3:]


def _sft(launch: list[str], cache, out, steps: int) -> None:
    _run(launch + ["-m", "gr00t_rlhf_train.cli", "train", "sft", "--data", str(cache), "--preset", "tiny",
                   "--holdout", "4", "--steps", str(steps), "--batch-size", "4", "--lr", "2e-3", "--warmup-steps", "2",
                   "--schedule", "constant", "--eval-every", "3", "--save-every", "3", "--log-every", "3",
                   "--num-workers", "0", "--seed", "0", "--out", str(out)])


def _records(out) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from test_sft import write_dataset

    from gr00t_rlhf_train.data.cache import build_cache

    root = tmp_path_factory.mktemp("fsdp")
    write_dataset(root / "ds")
    return build_cache(root / "ds", root / "cache", image_size=48, progress=False)


@pytest.mark.slow
def test_fsdp_trains_what_ddp_trains_and_resumes(cache, tmp_path):
    """FSDP 3 steps, then FSDP resumed to 6 == DDP 6 steps straight: same weights (float rounding of the
    sharded reductions), same losses, the same optimizer-state file layout; one writer."""
    _sft(FSDP, cache, tmp_path / "fsdp", 3)
    _sft(FSDP, cache, tmp_path / "fsdp", 6)                                    # resumes from last/ at step 3
    _sft(LAUNCH, cache, tmp_path / "ddp", 6)
    f, d = tmp_path / "fsdp" / "last", tmp_path / "ddp" / "last"
    a, b = load_file(str(f / "model.safetensors")), load_file(str(d / "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in b:
        assert (a[k].float() - b[k].float()).abs().max() < 1e-4, k
    oa, ob = load_file(str(f / "optimizer.safetensors")), load_file(str(d / "optimizer.safetensors"))
    assert sorted(oa) == sorted(ob) and all(oa[k].shape == ob[k].shape for k in ob)
    assert json.loads((f / "trainer_state.json").read_text())["step"] == 6
    assert (f / "rng_rank1.safetensors").is_file() and (tmp_path / "fsdp" / "best" / "model.safetensors").is_file()
    losses = {(r["step"], k): r[k] for r in _records(tmp_path / "fsdp") for k in ("train/loss", "eval/val_loss")
              if k in r}
    ddp = {(r["step"], k): r[k] for r in _records(tmp_path / "ddp") for k in ("train/loss", "eval/val_loss")
           if k in r}
    assert losses.keys() == ddp.keys() and all(abs(losses[k] - ddp[k]) < 1e-4 for k in ddp), (losses, ddp)


def test_the_blocks_of_the_policy_are_the_shards():
    from gr00t_rlhf_train.model.configuration import preset
    from gr00t_rlhf_train.model.gr00t_n1 import Gr00tN1

    model = Gr00tN1(preset("tiny"), 0)
    names = unit_classes(model)
    assert set(UNIT_CLASSES) <= names
    found = {type(m).__name__ for m in model.modules()} & names
    assert {"LlamaDecoderLayer", "SiglipEncoderLayer", "TransformerBlock"} <= found


def test_fsdp_is_asked_by_the_config_or_by_accelerate(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert wants_fsdp(True) and not wants_fsdp(False)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert wants_fsdp(False)


def test_fp16_with_fsdp_is_a_one_line_error(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path / "o"), steps=1, warmup_steps=0, precision="fp16", fsdp=True,
                      num_workers=0)
    with pytest.raises(TrainConfigError, match=r"precision = 'fp16'.*FSDP"):
        train(torch.nn.Linear(2, 1), lambda m, b: (m(b).sum(), {}), [torch.zeros(2)], cfg)


def test_one_process_with_fsdp_trains_unsharded(tmp_path):
    """fsdp=True in a single process: nothing to shard, the plain loop runs (same result as fsdp=False)."""
    data = [torch.tensor([float(i), 1.0]) for i in range(8)]

    def run(out, fsdp):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        train(model, lambda m, b: (((m(b).squeeze(-1) - b[:, 0]) ** 2).mean(), {}), data,
              TrainConfig(out_dir=str(out), steps=3, warmup_steps=1, batch_size=4, num_workers=0, fsdp=fsdp, cpu=True,
                          eval_every=0))
        return model.weight.detach().clone()

    assert torch.equal(run(tmp_path / "a", True), run(tmp_path / "b", False))

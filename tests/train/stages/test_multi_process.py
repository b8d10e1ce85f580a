"""Training under ``accelerate launch`` with 2 processes on the CPU (gloo): DDP equals one process with the joint batch.

accelerate 1.15's ``accelerate launch --cpu --num_processes 2`` starts ONE process (its simple launcher; several
CPU processes need mpirun and a hostfile), so these tests launch ``--multi_gpu --num_processes 2`` (torchrun
underneath), and the loop forms the gloo group itself on a machine without CUDA (``loop.use_cpu``).
Each launch costs ~20-40 s on 2 busy cores: marked slow.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["CUDA_VISIBLE_DEVICES"] = ""                     # the CPU path even on a GPU machine
    return env


def _run(cmd: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_two_processes_equal_one_with_the_joint_batch(tmp_path):
    """Deterministic loss (no random draws): 2 processes x batch 4 == 1 process x batch 8, up to float rounding;
    only the main process writes the weights, every rank its RNG state."""
    script = str(HERE / "ddp_regression.py")
    _run(LAUNCH + [script, str(tmp_path / "ddp"), "4"])
    _run([sys.executable, script, str(tmp_path / "one"), "8"])
    a, b = load_file(str(tmp_path / "ddp" / "weights.safetensors")), load_file(str(tmp_path / "one" / "weights.safetensors"))
    for k in b:
        assert (a[k] - b[k]).abs().max() < 1e-5, k
    last = tmp_path / "ddp" / "last"
    assert (last / "rng_rank0.safetensors").is_file() and (last / "rng_rank1.safetensors").is_file()
    steps = [json.loads(x)["step"] for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))            # one writer


@pytest.mark.slow
def test_train_reward_with_cached_features_under_accelerate(tmp_path):
    from test_reward_stage import SIZE, write_dataset

    from gr00t_rlhf_train.data.cache import build_cache

    write_dataset(tmp_path / "ds", episodes=6, frames=12)
    cache = build_cache(tmp_path / "ds", tmp_path / "cache", image_size=SIZE, progress=False)
    out = tmp_path / "run"
    proc = _run(LAUNCH + ["-m", "gr00t_rlhf_train.cli", "train", "reward", str(cache), "--out", str(out),
                          "--holdout", "5", "--val-fraction", "0.25", "--horizon", "2", "--head", "mlp",
                          "--head-hidden", "64", "--tuning", "frozen", "--cache-features", "--steps", "12",
                          "--batch-size", "4", "--lr", "5e-3", "--warmup-steps", "2", "--eval-every", "6",
                          "--save-every", "6", "--log-every", "3", "--num-workers", "0"])
    assert proc.stdout.count("train reward: 12 steps") == 1, proc.stdout           # the main process's summary
    assert (out / "best").is_dir() and (out / "last" / "rng_rank1.safetensors").is_file()
    record = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if "train/loss" in x][-1]
    assert record["train/samples_per_s"] > 0 and record["train/loss"] == record["train/loss"]   # finite, logged

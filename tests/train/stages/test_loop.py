"""The shared training loop on a small regression problem (CPU, seconds)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from gr00t_rlhf_train.stages.loop import TIMING_KEYS, TrainConfig, TrainConfigError, lr_factor, train


class Pairs(torch.utils.data.Dataset):
    """y = x @ w + noise, 4 inputs."""

    def __init__(self, n: int = 96, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.01 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.body(x).squeeze(-1)


def mse(model, batch):
    pred = model(batch["x"])
    loss = ((pred - batch["y"]) ** 2).mean()
    return loss, {"mae": float((pred.detach() - batch["y"]).abs().mean())}


def cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(out_dir=str(tmp_path / "run"), steps=30, batch_size=8, lr=5e-2, warmup_steps=3, eval_every=10,
                save_every=10, log_every=5, num_workers=0, seed=1)
    return TrainConfig(**(base | kw))


def read_metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_and_files_written(tmp_path):
    ds = Pairs()
    model = Net()
    evals = []

    def evaluate(m):
        with torch.no_grad():
            v = float(((m(ds.x) - ds.y) ** 2).mean())
        evals.append(v)
        return {"val_mse": v}

    initial = evaluate(model)["val_mse"]
    evals.clear()
    saved = []
    res = train(model, mse, ds, cfg(tmp_path, best_metric="val_mse", best_mode="min"), evaluate=evaluate,
                save=lambda m, p: saved.append(p))
    run = tmp_path / "run"
    assert res.steps == 30 and res.start_step == 0
    assert evals[-1] < 0.2 * initial
    rows = read_metrics(run)
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [5, 10, 15, 20, 25, 30]
    assert train_rows[-1]["train/loss"] < train_rows[0]["train/loss"]
    assert {"train/lr", "train/mae", "train/grad_norm"} <= set(train_rows[0])
    assert [r["step"] for r in rows if "eval/val_mse" in r] == [10, 20, 30]
    for name in ("last", "best"):
        assert json.loads((run / name / "train_config.json").read_text())["steps"] == 30
    state = json.loads((run / "last" / "trainer_state.json").read_text())
    assert state["step"] == 30 and state["best"] == pytest.approx(min(evals))
    assert set(load_file(str(run / "last" / "trainable.safetensors"))) == {"body.0.weight", "body.0.bias",
                                                                           "body.2.weight", "body.2.bias"}
    assert not list(run.glob("*.tmp")) and not list(run.glob("*.old"))
    assert res.best_checkpoint == str(run / "best") and res.last_checkpoint == str(run / "last")
    assert model.frozen.weight.grad is None


def test_schedule_warmup_then_cosine(tmp_path):
    c = cfg(tmp_path, steps=10, warmup_steps=2, min_lr_ratio=0.1)
    f = [lr_factor(c, s) for s in range(10)]
    assert f[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert all(a > b for a, b in zip(f[2:], f[3:]))
    assert f[-1] > 0.1 and lr_factor(c, 10) == pytest.approx(0.1)
    const = cfg(tmp_path, steps=10, warmup_steps=0, schedule="constant")
    assert {lr_factor(const, s) for s in range(10)} == {1.0}
    assert [lr_factor(cfg(tmp_path, steps=4, warmup_steps=1, schedule="constant"), s) for s in range(4)] == [0.5, 1, 1, 1]
    assert cfg(tmp_path, steps=200, warmup_ratio=0.05).warmup_steps == 10


class Crash(RuntimeError):
    pass


def test_resume_continues_exactly(tmp_path):
    """Interrupted at step 17 with a checkpoint at 10: the resumed run ends with the same weights, the same
    lr per step and the same losses as an uninterrupted one."""
    ds = Pairs()
    full = Net()
    train(full, mse, ds, cfg(tmp_path / "a", grad_accum=2))

    calls = {"n": 0}

    def crashing(model, batch):
        calls["n"] += 1
        if calls["n"] > 17 * 2:
            raise Crash("simulated crash")
        return mse(model, batch)

    with pytest.raises(Crash):
        train(Net(), crashing, ds, cfg(tmp_path / "b", grad_accum=2))
    assert json.loads((tmp_path / "b" / "run" / "last" / "trainer_state.json").read_text())["step"] == 10
    resumed = Net()
    res = train(resumed, mse, ds, cfg(tmp_path / "b", grad_accum=2))
    assert res.start_step == 10 and res.steps == 30
    for (n, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), n
    ra, rb = read_metrics(tmp_path / "a" / "run"), read_metrics(tmp_path / "b" / "run")
    strip = [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in ra]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rb]


@pytest.mark.parametrize("field,value,word", [
    ("steps", 0, "steps"), ("batch_size", -1, "batch_size"), ("lr", 0.0, "lr"), ("schedule", "linear", "schedule"),
    ("precision", "fp8", "precision"), ("warmup_steps", 100, "warmup_steps"), ("best_mode", "up", "best_mode"),
    ("grad_accum", 1.5, "grad_accum"),
])
def test_bad_config_one_line(tmp_path, field, value, word):
    with pytest.raises(TrainConfigError) as e:
        cfg(tmp_path, **{field: value})
    msg = str(e.value)
    assert f"TrainConfig.{word}" in msg and "\n" not in msg


def test_refuses_to_overwrite_without_resume(tmp_path):
    ds = Pairs()
    train(Net(), mse, ds, cfg(tmp_path, steps=5, warmup_steps=1))
    with pytest.raises(TrainConfigError, match="resume"):
        train(Net(), mse, ds, cfg(tmp_path, steps=5, warmup_steps=1, resume=False))


def test_too_small_dataset_and_nothing_to_train(tmp_path):
    with pytest.raises(TrainConfigError, match="batch_size"):
        train(Net(), mse, Pairs(n=4), cfg(tmp_path))
    frozen = Net().requires_grad_(False)
    with pytest.raises(TrainConfigError, match="nothing to train"):
        train(frozen, mse, Pairs(), cfg(tmp_path))


def test_unknown_best_metric(tmp_path):
    with pytest.raises(TrainConfigError, match="best_metric"):
        train(Net(), mse, Pairs(), cfg(tmp_path, steps=10, best_metric="auroc"), evaluate=lambda m: {"mse": 1.0})


def test_workers_give_the_same_batches(tmp_path):
    a, b = Net(), Net()
    train(a, mse, Pairs(), cfg(tmp_path / "w0", steps=6, warmup_steps=1, num_workers=0))
    train(b, mse, Pairs(), cfg(tmp_path / "w2", steps=6, warmup_steps=1, num_workers=2))
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


def test_throughput_is_logged_and_summarised(tmp_path):
    res = train(Net(), mse, Pairs(), cfg(tmp_path, steps=10, warmup_steps=1, num_workers=2))
    rec = [r for r in read_metrics(tmp_path / "run") if "train/loss" in r]
    assert rec and all(r["train/steps_per_s"] > 0 and 0 <= r["train/data_wait_fraction"] <= 1 for r in rec)
    assert res.steps_per_second > 0 and res.samples_per_second == pytest.approx(res.steps_per_second * 8)
    assert 0 <= res.data_wait_fraction <= 1 and res.gpu_utilization is None      # CPU: not measured


def test_workers_start_once_across_epochs(tmp_path):
    """Several epochs through one endless loader (workers kept) give the batches of the epoch permutations."""
    seen = []

    def recording(model, batch):
        seen.append(batch["x"].clone())
        return mse(model, batch)

    ds = Pairs(n=24)
    train(Net(), recording, ds, cfg(tmp_path, steps=9, warmup_steps=1, num_workers=2))   # 3 batches/epoch, 3 epochs
    from gr00t_rlhf_train.stages.loop import epoch_batches
    c = cfg(tmp_path, steps=9, warmup_steps=1)
    want = [ds[i]["x"] for e in range(3) for b in epoch_batches(24, c, e, 0, 1) for i in b]
    assert torch.equal(torch.cat(seen), torch.stack(want))


def test_prepare_fn_runs_ahead_in_a_thread_with_the_same_result(tmp_path):
    """Host preparation in the background thread == the same work inside loss_fn; its errors reach the caller."""
    import threading

    threads = set()

    def prepare(batch):
        threads.add(threading.current_thread().name)
        return {"x": batch["x"] * 2, "y": batch["y"]}

    def doubled(model, batch):
        return mse(model, {"x": batch["x"] * 2, "y": batch["y"]})

    a, b = Net(), Net()
    train(a, doubled, Pairs(), cfg(tmp_path / "a", steps=8, warmup_steps=1))
    train(b, mse, Pairs(), cfg(tmp_path / "b", steps=8, warmup_steps=1), prepare_fn=prepare)
    assert threads == {"prepare-batches"}
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)

    def broken(batch):
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        train(Net(), mse, Pairs(), cfg(tmp_path / "c", steps=4, warmup_steps=1), prepare_fn=broken)

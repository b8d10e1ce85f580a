"""The one training loop every stage uses (SFT, reward model, RL).

    cfg = TrainConfig(out_dir="runs/sft", steps=2000, batch_size=32, lr=1e-4)
    result = train(model, loss_fn, dataset, cfg, evaluate=evaluate, save=save, collate_fn=collate)

* ``loss_fn(model, batch) -> (loss tensor, {name: float})`` — the stage's objective on one micro-batch;
* ``evaluate(model) -> {metric: float}`` — periodic validation (every ``eval_every`` steps and at the end,
  on the main process, model in eval mode), logged and used to keep ``out_dir/best`` by ``best_metric``;
* ``save(model, path)`` — writes the stage's self-describing checkpoint (e.g. ``save_pretrained``).

A *step* is one optimizer update: ``grad_accum`` micro-batches of ``batch_size`` samples per process
(effective batch = batch_size x grad_accum x processes). The learning rate is a pure function of the
step (linear warm-up, then cosine to ``min_lr_ratio`` x lr, or constant), so a resumed run sets the
same rate at every step as an uninterrupted one. The data order is a pure function of (seed, epoch):
each epoch is a fresh permutation, split across processes, batches that do not fill up are dropped;
a resumed run skips the micro-batches already consumed (augmentation drawn in DataLoader workers is
seeded by the micro-batch the loader starts at, so after a resume it differs; with num_workers=0 it is
exact). Training runs through ``accelerate`` (bf16 autocast on CUDA with ``precision="auto"``, fp32
on the CPU; DDP under ``accelerate launch``, or FSDP with ``config/accelerate/fsdp.yaml`` or ``fsdp=True``:
``sharding.py``; see docs/training.md "Throughput and multi-GPU"; DeepSpeed is refused with a one-line error).

Loading: ONE DataLoader over an endless batch sampler, so the ``num_workers`` worker processes start
once and keep ``prefetch_factor`` batches each ready across epoch boundaries; batches are pinned and
copied asynchronously on CUDA. Every log record carries the throughput: ``train/steps_per_s``,
``train/samples_per_s``, ``train/data_wait_ms`` (time the step waited for its batch: loading that
starves the GPU shows here), ``train/data_wait_fraction`` and, where ``torch.cuda.utilization`` works
(pynvml), ``train/gpu_util`` (%); the TrainResult has the run's means.

Checkpoints: ``out_dir/last`` every ``save_every`` steps and at the end (what ``save`` writes plus the
resumable state, see ``train_state.py``; no pickle anywhere), ``out_dir/best`` when ``best_metric``
improves; ``train_config.json`` beside both. Logs: ``out_dir/metrics.jsonl`` (one JSON object per log
or eval step), TensorBoard event files in ``out_dir/tensorboard`` when the ``tensorboard`` package is
installed, a tqdm bar. A run finding ``out_dir/last`` resumes from it (``resume=True``).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from gr00t_rlhf_train.data.samples import worker_context

from . import train_state as ts

SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BEST_MODES = ("max", "min")
# log keys that measure time (they differ between two otherwise identical runs)
TIMING_KEYS = ("time", "train/steps_per_s", "train/samples_per_s", "train/data_wait_ms", "train/data_wait_fraction",
               "train/gpu_util")


class TrainConfigError(ValueError):
    """A TrainConfig field is invalid; the message names the field and the value."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (saved as ``train_config.json`` beside every checkpoint)."""

    out_dir: str
    steps: int = 1000                 # optimizer updates in all
    batch_size: int = 32              # samples per micro-batch per process
    grad_accum: int = 1               # micro-batches per update
    lr: float = 1e-4                  # peak learning rate (param groups may scale it: "lr_scale")
    weight_decay: float = 1e-5        # AdamW decay of matrices (biases, norms and embeddings of dim < 2: none)
    warmup_steps: int = 50            # linear warm-up length in steps ...
    warmup_ratio: float | None = None  # ... or as a fraction of ``steps`` (wins when given)
    schedule: str = "cosine"          # cosine (after the warm-up) | constant (after the warm-up)
    min_lr_ratio: float = 0.0         # the cosine ends at lr x min_lr_ratio
    eval_every: int = 100             # steps between evaluations (0: only at the end)
    save_every: int = 500             # steps between out_dir/last checkpoints (0: only at the end)
    log_every: int = 10               # steps between metrics.jsonl / TensorBoard / progress updates
    seed: int = 0
    precision: str = "auto"           # auto: bf16 on CUDA, fp32 on the CPU | fp32 | bf16 | fp16
    num_workers: int = 2              # DataLoader worker processes
    max_grad_norm: float = 1.0        # gradient clipping (0: none)
    best_metric: str | None = None    # keep out_dir/best by this evaluate() metric
    best_mode: str = "max"            # max | min
    resume: bool = True               # continue from out_dir/last if present
    betas: tuple[float, float] = (0.95, 0.999)   # AdamW betas (GR00T fine-tuning uses 0.95, 0.999)
    cpu: bool = False                 # force the CPU even where CUDA is available
    find_unused_parameters: bool = False  # DDP option for models with conditionally used parameters
    prefetch_factor: int = 4          # batches each worker keeps ready (num_workers > 0)
    fsdp: bool = False                # shard weights, gradients and optimizer state across processes (FSDP2);
                                      # also on under an accelerate FSDP config (ACCELERATE_USE_FSDP)

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> TrainConfigError:
            return TrainConfigError(f"TrainConfig.{name} = {getattr(self, name)!r}: {why}")

        if not str(self.out_dir):
            raise bad("out_dir", "must be a directory path")
        for name in ("steps", "batch_size", "grad_accum"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "must be an integer >= 1")
        for name in ("warmup_steps", "eval_every", "save_every", "log_every", "num_workers", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name, "must be an integer >= 0")
        if self.log_every == 0:
            raise bad("log_every", "must be >= 1")
        if isinstance(self.prefetch_factor, bool) or not isinstance(self.prefetch_factor, int) \
                or self.prefetch_factor < 1:
            raise bad("prefetch_factor", "must be an integer >= 1")
        for name in ("lr", "weight_decay", "max_grad_norm", "min_lr_ratio"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(name, "must be a finite number >= 0")
        if self.lr <= 0:
            raise bad("lr", "must be > 0")
        if self.min_lr_ratio > 1:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        if self.warmup_ratio is not None:
            if not isinstance(self.warmup_ratio, (int, float)) or not 0 <= self.warmup_ratio < 1:
                raise bad("warmup_ratio", "must be in [0, 1)")
            self.warmup_steps = int(math.ceil(self.warmup_ratio * self.steps))
        if self.warmup_steps > self.steps:
            raise bad("warmup_steps", f"is longer than the run (steps = {self.steps}); lower it or use warmup_ratio")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"allowed {SCHEDULES}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"allowed {PRECISIONS}")
        if self.best_mode not in BEST_MODES:
            raise bad("best_mode", f"allowed {BEST_MODES}")
        if self.best_metric is not None and not (isinstance(self.best_metric, str) and self.best_metric):
            raise bad("best_metric", "must be a metric name returned by evaluate() or None")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise bad("betas", "must be two numbers in [0, 1)")
        self.betas = (float(betas[0]), float(betas[1]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise TrainConfigError(f"TrainConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    @property
    def mixed_precision(self) -> str:
        """accelerate's ``mixed_precision`` for this config on this machine."""
        if self.precision == "auto":
            return "bf16" if torch.cuda.is_available() and not self.cpu else "no"
        return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[self.precision]


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of the peak lr for the update with index ``step`` (0-based): linear warm-up
    (step + 1) / (warmup_steps + 1), the peak 1 at step ``warmup_steps``, then a cosine towards
    ``min_lr_ratio`` (reached at step ``steps``, one past the last update), or constant 1."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    """What a run did (also printed as the stage's summary)."""

    out_dir: str
    steps: int                        # updates done in all (resumed ones included)
    start_step: int                   # 0, or the step resumed from
    train_loss: float | None          # mean loss over the last log window
    eval_metrics: dict = field(default_factory=dict)   # the last evaluation
    best_metric: float | None = None
    best_step: int | None = None
    last_checkpoint: str | None = None
    best_checkpoint: str | None = None
    seconds: float = 0.0              # wall time of this invocation
    samples_per_second: float = 0.0   # training samples (all processes) per second of training steps
    steps_per_second: float = 0.0     # optimizer updates per second of training steps (no eval, no saving)
    data_wait_fraction: float = 0.0   # share of the step time spent waiting for batches (0: never starved)
    gpu_utilization: float | None = None   # mean torch.cuda.utilization() over the log records (%), if known

    def to_dict(self) -> dict:
        return asdict(self)


# -- data order -------------------------------------------------------------------------------
def epoch_batches(n: int, cfg: TrainConfig, epoch: int, rank: int, world: int) -> list[list[int]]:
    """Micro-batches (index lists) of one epoch for one process: a permutation from (seed, epoch) cut into
    global batches of ``batch_size x world`` samples, of which process ``rank`` takes the ``rank``-th slice;
    full batches only. So the samples of a step do not depend on the number of processes: 2 processes with
    ``batch_size`` B see together exactly the samples 1 process sees with 2B (with DDP's gradient mean,
    the same update up to float rounding when the loss itself draws nothing at random)."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    b, per_epoch = cfg.batch_size, n // (cfg.batch_size * world)
    return [perm[(i * world + rank) * b:(i * world + rank + 1) * b] for i in range(per_epoch)]


class EndlessBatches:
    """The batch sampler of ``micro_batches``: epoch after epoch of ``epoch_batches``, starting at micro-batch
    ``start`` (so a resumed run skips the ones consumed before it). Endless: one DataLoader, workers kept."""

    def __init__(self, n: int, cfg: TrainConfig, start: int, rank: int, world: int):
        self.n, self.cfg, self.rank, self.world = n, cfg, rank, world
        self.per_epoch = n // (cfg.batch_size * world)
        if self.per_epoch == 0:
            raise TrainConfigError(f"TrainConfig.batch_size = {cfg.batch_size}: the training set has {n} samples, "
                                   f"fewer than one batch of {cfg.batch_size} x {world} process(es)")
        self.start = start

    def __iter__(self):
        epoch, offset = divmod(self.start, self.per_epoch)
        while True:
            yield from epoch_batches(self.n, self.cfg, epoch, self.rank, self.world)[offset:]
            epoch, offset = epoch + 1, 0


def micro_batches(dataset, cfg: TrainConfig, start: int, rank: int, world: int,
                  collate_fn: Callable | None, pin_memory: bool = False) -> Iterable:
    """Endless micro-batches, skipping the first ``start`` (consumed before a resume)."""
    sampler = EndlessBatches(len(dataset), cfg, start, rank, world)
    g = torch.Generator().manual_seed(cfg.seed * 7_919 + start * 104_729 + rank)
    workers = cfg.num_workers
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=workers,
                                         generator=g, multiprocessing_context=worker_context(workers),
                                         pin_memory=pin_memory, prefetch_factor=cfg.prefetch_factor if workers else None)
    yield from loader


# -- processes --------------------------------------------------------------------------------
def world_size() -> int:
    """Processes of this run (``WORLD_SIZE`` set by ``accelerate launch`` / torchrun; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this is the process that writes files and prints summaries (rank 0, or the only one)."""
    return os.environ.get("RANK", "0") == "0"


def use_cpu(cfg: TrainConfig) -> bool:
    """Train on the CPU: asked for, or several processes on a machine without CUDA (gloo)."""
    return cfg.cpu or (world_size() > 1 and not torch.cuda.is_available())


def process_device(cfg: TrainConfig) -> torch.device:
    """This process's training device (what the loop's Accelerator will use), known before ``train()``."""
    if world_size() == 1:
        return torch.device("cuda" if torch.cuda.is_available() and not cfg.cpu else "cpu")
    from accelerate import PartialState
    return PartialState(cpu=use_cpu(cfg)).device


def main_process_first(cfg: TrainConfig):
    """Context: the main process runs the block first, the others after it (e.g. building a frame cache once)."""
    if world_size() == 1:
        from contextlib import nullcontext
        return nullcontext()
    from accelerate import PartialState
    return PartialState(cpu=use_cpu(cfg)).main_process_first()


# -- host preparation ahead of the GPU -------------------------------------------------------------
class Prefetched:
    """Iterate ``prepare_fn(batch)`` over ``batches`` in a background thread, ``depth`` batches ahead: host work
    that needs the model (``RewardModel.prepare``: crops, resize, tokenizer; torch and the tokenizer release
    the GIL) overlaps the GPU's work on the previous step. ``lock`` is held while a batch is prepared, so
    an evaluation holding it never runs the processor concurrently with the thread. Errors re-raise here."""

    _END = object()

    def __init__(self, batches: Iterable, prepare_fn: Callable, lock, depth: int = 2):
        import queue
        import threading

        self.queue: "queue.Queue" = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(iter(batches), prepare_fn, lock), daemon=True,
                                       name="prepare-batches")
        self.thread.start()

    def _run(self, batches, prepare_fn, lock) -> None:
        import queue

        try:
            for batch in batches:
                with lock:
                    item = prepare_fn(batch)
                while not self.stop.is_set():
                    try:
                        self.queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
        except BaseException as e:                          # noqa: BLE001 - handed to the consumer
            self.queue.put((Prefetched._END, e))

    def __iter__(self):
        return self

    def __next__(self):
        item = self.queue.get()
        if isinstance(item, tuple) and len(item) == 2 and item[0] is Prefetched._END:
            raise item[1]
        return item

    def close(self) -> None:
        self.stop.set()


# -- logging ----------------------------------------------------------------------------------
class MetricsLog:
    """metrics.jsonl (always) + TensorBoard (when the ``tensorboard`` package is importable)."""

    def __init__(self, out_dir: Path, resume_step: int, enabled: bool):
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if self.path.is_file():
            # a resumed run redoes the steps after its checkpoint: drop their old records
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:
            self.tb = None

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": round(time.time(), 3)} | {k: float(v) for k, v in values.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# -- throughput -------------------------------------------------------------------------------
class Throughput:
    """Step timing of the loop: wall time per step, the part spent waiting for batches, GPU utilisation.

    ``window()`` -> the log record's ``train/*`` throughput values since the last call; ``summary()`` -> the
    run's means (TrainResult fields). Step times are host wall times between a step's start and the loss read
    that ends it (``float(loss)`` waits for the GPU), so they include the GPU's work."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.t_start = 0.0
        self.win = [0, 0, 0.0, 0.0]          # steps, samples, seconds, waiting seconds (this log window)
        self.all = [0, 0, 0.0, 0.0]          # the same over the run
        self.util: list[float] = []

    def step_started(self) -> None:
        self.t_start = time.perf_counter()

    class _Wait:
        def __init__(self, meter: "Throughput"):
            self.meter = meter

        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            dt = time.perf_counter() - self.t
            self.meter.win[3] += dt
            self.meter.all[3] += dt

    def waiting(self) -> "Throughput._Wait":
        return Throughput._Wait(self)

    def step_done(self, samples: int) -> None:
        dt = time.perf_counter() - self.t_start
        for acc in (self.win, self.all):
            acc[0] += 1
            acc[1] += samples
            acc[2] += dt

    def gpu_utilization(self) -> float | None:
        """torch.cuda.utilization() in % (None without CUDA or without pynvml)."""
        if not self.cuda:
            return None
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:                     # noqa: BLE001 - pynvml missing or NVML unavailable: not measured
            return None

    def window(self) -> dict:
        steps, samples, seconds, wait = self.win
        self.win = [0, 0, 0.0, 0.0]
        if not steps:
            return {}
        out = {"train/steps_per_s": steps / max(seconds, 1e-9), "train/samples_per_s": samples / max(seconds, 1e-9),
               "train/data_wait_ms": 1000 * wait / steps, "train/data_wait_fraction": wait / max(seconds, 1e-9)}
        util = self.gpu_utilization()
        if util is not None:
            self.util.append(util)
            out["train/gpu_util"] = util
        return out

    def summary(self) -> dict:
        steps, samples, seconds, wait = self.all
        return {"steps_per_second": steps / max(seconds, 1e-9), "samples_per_second": samples / max(seconds, 1e-9),
                "data_wait_fraction": wait / max(seconds, 1e-9),
                "gpu_utilization": float(np.mean(self.util)) if self.util else None}


# -- the loop ---------------------------------------------------------------------------------
class _LossModule(nn.Module):
    """Wraps model + loss_fn so that DDP sees a forward call (gradient sync needs one)."""

    def __init__(self, model: nn.Module, loss_fn: Callable):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def param_groups(model: nn.Module, trainable_parameters, weight_decay: float) -> list[dict]:
    """AdamW groups: given groups (dicts with "params", optional "lr_scale"/"weight_decay") or parameters;
    by default every parameter that requires grad, matrices decayed, vectors/scalars not."""
    if trainable_parameters is None:
        trainable_parameters = [p for p in model.parameters() if p.requires_grad]
    items = list(trainable_parameters)
    if items and isinstance(items[0], dict):
        groups = []
        for g in items:
            g = dict(g)
            g["params"] = [p for p in g["params"] if p.requires_grad]
            g.setdefault("weight_decay", weight_decay)
            g.setdefault("lr_scale", 1.0)
            groups.append(g)
    else:
        params = [p for p in items if p.requires_grad]
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay, "lr_scale": 1.0},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0, "lr_scale": 1.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise TrainConfigError("nothing to train: no parameter requires grad (check the tuning flags)")
    return groups


def _reject_existing(out: Path, cfg: TrainConfig) -> None:
    if not cfg.resume and (ts.resolve_dir(out / "last") is not None):
        raise TrainConfigError(f"TrainConfig.resume = False but {out / 'last'} holds a checkpoint: "
                               "choose another out_dir or resume")


def _config_changes(directory: Path, cfg: TrainConfig) -> list[str]:
    f = directory / ts.CONFIG_NAME
    if not f.is_file():
        return []
    old = json.loads(f.read_text())
    new = cfg.to_dict()
    return [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in new
            if k not in ("resume", "num_workers", "prefetch_factor", "out_dir", "fsdp") and k in old and old[k] != new[k]]


def train(model: nn.Module, loss_fn: Callable, train_dataset, cfg: TrainConfig,
          evaluate: Callable | None = None, save: Callable | None = None, collate_fn: Callable | None = None,
          trainable_parameters=None, prepare_fn: Callable | None = None) -> TrainResult:
    """Train ``model`` for ``cfg.steps`` updates (see the module docstring); -> TrainResult.

    ``prepare_fn(batch) -> batch``: host preparation run in one background thread ahead of the step
    (``Prefetched``; e.g. ``train reward`` with ``num_workers=0``); ``loss_fn`` gets its result."""
    import threading
    from contextlib import nullcontext

    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer
    from accelerate.utils import DistributedDataParallelKwargs, send_to_device
    from tqdm.auto import tqdm

    from .sharding import Sharded, clip_grad_norm, wants_fsdp

    t0 = time.time()
    out = Path(cfg.out_dir)
    _reject_existing(out, cfg)
    if wants_fsdp(cfg.fsdp) and cfg.mixed_precision == "fp16":
        raise TrainConfigError("TrainConfig.precision = 'fp16': not supported with FSDP (no loss scaling of "
                               "sharded gradients); use bf16 or auto")
    world = world_size()
    if world == 1:
        # one process: a second train() in it (a notebook, the tests) may use another precision; accelerate
        # keeps the first one's state process-wide and would refuse (its own tests reset it the same way)
        from accelerate.state import AcceleratorState
        AcceleratorState._reset_state()
    # several processes without a GPU: accelerate forms the gloo group only when told cpu=True; without it
    # every process would train alone into the same out_dir
    acc = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                      cpu=use_cpu(cfg), kwargs_handlers=[DistributedDataParallelKwargs(
                          find_unused_parameters=cfg.find_unused_parameters, gradient_as_bucket_view=True)])
    if acc.distributed_type.name == "DEEPSPEED":
        raise TrainConfigError("accelerate DEEPSPEED: not supported by the training loop; use DDP "
                               "(config/accelerate/ddp.yaml) or FSDP (config/accelerate/fsdp.yaml)")
    fsdp = wants_fsdp(cfg.fsdp) and acc.num_processes > 1        # one process: nothing to shard
    if acc.num_processes != world:
        raise TrainConfigError(f"launched as {world} processes (WORLD_SIZE) but accelerate formed a group of "
                               f"{acc.num_processes} ({acc.distributed_type}): check the accelerate config")
    main = acc.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed + acc.process_index)
    np.random.seed((cfg.seed + acc.process_index) % 2**32)

    shard = Sharded(model, acc) if fsdp else None      # the main process's replica: copied before sharding
    model.to(acc.device)
    model.train()
    groups = param_groups(model, trainable_parameters, cfg.weight_decay)
    for g in groups:
        g["lr"] = cfg.lr * g["lr_scale"] * lr_factor(cfg, 0)
    if shard is None:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        wrapped, optimizer = acc.prepare(_LossModule(model, loss_fn), optimizer)
    else:       # FSDP: sharded by sharding.py, not by accelerate (one code path on GPUs and, with gloo, the CPU)
        wrapped = shard.wrap(_LossModule(model, loss_fn), cfg.mixed_precision)
        groups = shard.param_groups(groups)          # (the old groups would keep the unsharded weights alive)
        optimizer = AcceleratedOptimizer(torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas,
                                                           weight_decay=cfg.weight_decay), device_placement=False)
    # evaluation and checkpoints see the unsharded model: the model itself, or (FSDP) the synced replica
    saved_model = model if shard is None else shard.replica

    step, best, best_step, resumed = 0, None, None, 0
    previous = ts.resolve_dir(out / "last") if cfg.resume else None
    if previous is not None:
        changes = _config_changes(previous, cfg)
        if changes and main:
            print(f"resuming from {previous} with a changed config: {'; '.join(changes)}", file=sys.stderr)
        trainer = ts.read_state(previous, model, optimizer.optimizer, acc.process_index,
                                load=None if shard is None else lambda w, o: shard.load(w, optimizer.optimizer, o))
        step, best, best_step = int(trainer["step"]), trainer.get("best"), trainer.get("best_step")
        resumed = step
        if main:
            print(f"resumed from {previous} at step {step}/{cfg.steps}", file=sys.stderr)
    log = MetricsLog(out, step, main)

    def save_to(name: str, extra: dict, rng: tuple | None = None) -> Path:
        target = out / name
        tmp = ts.staging_dir(target) if main else target.with_name(target.name + ".tmp")
        acc.wait_for_everyone()
        if shard is not None:
            shard.sync_replica()                    # collective
        if main and save is not None:
            save(saved_model, tmp)
        if main:
            (tmp / ts.CONFIG_NAME).write_text(json.dumps(cfg.to_dict(), indent=1))
        if name == "last":
            opt_state = optimizer.optimizer.state_dict() if shard is None else shard.optimizer_state(optimizer.optimizer)
            ts.write_state(tmp, saved_model, opt_state, {"step": step, "best": best, "best_step": best_step} | extra,
                           acc.process_index, main, rng)
        elif main:
            (tmp / "best.json").write_text(json.dumps({"step": step, "metric": cfg.best_metric, "value": best} | extra))
        acc.wait_for_everyone()
        if main:
            ts.commit_dir(tmp, target)
        return target

    def run_eval() -> dict:
        """Evaluate on the main process; every process gets the metrics and takes the same best/save decision
        (save_to is collective: all processes must call it)."""
        nonlocal best, best_step
        if evaluate is None:
            return {}
        payload: list = [None]
        if shard is not None:
            shard.sync_replica()                    # collective
        if main:
            with (shard.replica_on(acc.device) if shard is not None else nullcontext(model)) as target:
                target.eval()
                try:
                    with prep_lock, torch.no_grad(), acc.autocast():       # the training precision
                        payload = [{k: float(v) for k, v in evaluate(target).items()}]
                except Exception as e:                          # noqa: BLE001 - re-raised on every process below
                    payload = [f"{type(e).__name__}: {e}"]
                    if acc.num_processes == 1:
                        raise
                target.train()
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list
            broadcast_object_list(payload, from_process=0)
        if isinstance(payload[0], str):
            raise RuntimeError(f"evaluate() failed at step {step}: {payload[0]}")
        metrics = payload[0]
        log.write(step, {f"eval/{k}": v for k, v in metrics.items()})
        if cfg.best_metric is not None:
            if cfg.best_metric not in metrics:
                raise TrainConfigError(f"TrainConfig.best_metric = {cfg.best_metric!r}: evaluate() returned "
                                       f"{sorted(metrics)}")
            value = metrics[cfg.best_metric]
            better = best is None or (value > best if cfg.best_mode == "max" else value < best)
            if better and math.isfinite(value):
                best, best_step = value, step
                save_to("best", {"eval": metrics})
        return metrics

    pin = acc.device.type == "cuda"
    batches = micro_batches(train_dataset, cfg, step * cfg.grad_accum, acc.process_index, acc.num_processes,
                            collate_fn, pin_memory=pin)
    prep_lock = threading.Lock()
    if prepare_fn is not None:
        batches = Prefetched(batches, prepare_fn, prep_lock)
    meter = Throughput(acc.device)
    bar = tqdm(total=cfg.steps, initial=step, disable=not main, desc="train", dynamic_ncols=True)
    window: list[float] = []
    window_logs: dict[str, list[float]] = {}
    last_loss, metrics, updating = None, {}, False
    last_saved = step if previous is not None else None
    boundary = ts.rng_to_files()            # RNG at the last step boundary (for a save on Ctrl-C)
    try:
        while step < cfg.steps:
            factor = lr_factor(cfg, step)
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * g.get("lr_scale", 1.0) * factor
            meter.step_started()
            for _ in range(cfg.grad_accum):
                with meter.waiting():
                    batch = send_to_device(next(batches), acc.device, non_blocking=pin)
                with acc.accumulate(wrapped):
                    loss, logs = wrapped(batch)
                    if not torch.isfinite(loss.detach()):
                        raise FloatingPointError(f"loss is {loss.item()} at step {step}: lower TrainConfig.lr "
                                                 f"(= {cfg.lr}) or check the data")
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm > 0:
                        params = [p for g in optimizer.param_groups for p in g["params"]]
                        grad_norm = acc.clip_grad_norm_(params, cfg.max_grad_norm) if shard is None else \
                            clip_grad_norm(params, cfg.max_grad_norm)
                        window_logs.setdefault("grad_norm", []).append(float(grad_norm))
                    if acc.sync_gradients:
                        updating = True
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                window.append(float(loss.detach()))
                for k, v in (logs or {}).items():
                    window_logs.setdefault(k, []).append(float(v))
            meter.step_done(cfg.batch_size * cfg.grad_accum * acc.num_processes)
            step += 1
            updating = False
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean = torch.tensor(float(np.mean(window)), device=acc.device)
                last_loss = float(acc.reduce(mean, "mean"))
                values = {"train/loss": last_loss, "train/lr": cfg.lr * factor} | {
                    f"train/{k}": float(np.mean(v)) for k, v in window_logs.items()} | meter.window()
                log.write(step, values)
                bar.set_postfix(loss=f"{last_loss:.4g}", lr=f"{cfg.lr * factor:.2e}")
                window, window_logs = [], {}
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                metrics = run_eval() or metrics
            if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps:
                save_to("last", {})
                last_saved = step
            if acc.num_processes == 1:
                boundary = ts.rng_to_files()
    except KeyboardInterrupt:
        # Ctrl-C: keep the finished steps (one process only: the others may be anywhere in a collective)
        if acc.num_processes == 1 and not updating and step > (last_saved or 0):
            bar.close()
            save_to("last", {}, rng=boundary)
            print(f"interrupted: saved {out / 'last'} at step {step}; run again to continue", file=sys.stderr)
        raise
    finally:
        if isinstance(batches, Prefetched):
            batches.close()
        bar.close()
        log.close()
    elapsed = time.time() - t0
    best_dir = out / "best"
    return TrainResult(out_dir=str(out), steps=step, start_step=resumed, train_loss=last_loss, eval_metrics=metrics,
                       best_metric=best, best_step=best_step,
                       last_checkpoint=str(out / "last") if last_saved is not None else None,
                       best_checkpoint=str(best_dir) if best_dir.is_dir() else None,
                       seconds=elapsed, **meter.summary())

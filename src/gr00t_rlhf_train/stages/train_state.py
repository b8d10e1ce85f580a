"""Resumable training state without pickle: optimizer, trainable weights, RNG, step.

A ``last/`` checkpoint of the training loop holds, beside what the stage's ``save`` writes:

    trainable.safetensors        the trainable parameters and the persistent buffers, by name
    optimizer.safetensors        every tensor of ``optimizer.state_dict()["state"]``, flattened to
                                 ``state.<param index>.<name>`` (AdamW: step, exp_avg, exp_avg_sq)
    rng_rank<r>.safetensors      torch CPU (and CUDA) generator states of process r
    trainer_state.json           step, best metric, the optimizer's param_groups and non-tensor state,
                                 python / numpy RNG states
    train_config.json            the resolved TrainConfig

Nothing is read with ``torch.load``: tensors come from safetensors, the rest from JSON.
Directories are written to ``<name>.tmp`` and renamed into place, so a crash while saving leaves
the previous checkpoint intact (``<name>.old`` is used if the crash came between the two renames).
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

TRAINABLE_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.safetensors"
STATE_NAME = "trainer_state.json"
CONFIG_NAME = "train_config.json"


class TrainStateError(ValueError):
    """A training-state file is missing or does not fit the model/optimizer; the message names it."""


# -- atomic directories -----------------------------------------------------------------------
def resolve_dir(path: Path) -> Path | None:
    """The checkpoint directory to read: ``path``, or ``path.old`` left by a crash between renames."""
    if (path / STATE_NAME).is_file():
        return path
    old = path.with_name(path.name + ".old")
    if (old / STATE_NAME).is_file():
        return old
    return None


def staging_dir(path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: Path, path: Path) -> Path:
    """Rename ``tmp`` to ``path``, keeping the previous ``path`` as ``path.old`` until the rename is done."""
    old = path.with_name(path.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)
    return path


# -- weights ----------------------------------------------------------------------------------
def trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters that require grad + persistent buffers, by name (the live tensors: DTensors when sharded)."""
    out = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = {n for n, _ in model.named_parameters()}
    for n, b in model.state_dict().items():
        if n not in names and torch.is_tensor(b):
            out[n] = b
    return out


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``trainable_tensors``, detached on the CPU."""
    return {n: t.detach().cpu().contiguous() for n, t in trainable_tensors(model).items()}


def trainable_shapes(model: nn.Module) -> dict[str, tuple]:
    """Names and (global) shapes of what ``trainable_state`` saves, without copying (works on sharded models)."""
    return {n: tuple(t.shape) for n, t in trainable_tensors(model).items()}


def read_trainable(model: nn.Module, file: Path) -> dict[str, torch.Tensor]:
    """The saved trainable parameters and buffers, checked against ``model``'s names and shapes."""
    saved = load_file(str(file))
    expected = trainable_shapes(model)
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    wrong = sorted(k for k in set(saved) & set(expected) if tuple(saved[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise TrainStateError(f"{file} does not fit the model: missing {missing[:5]} ({len(missing)}), "
                              f"unexpected {unexpected[:5]} ({len(unexpected)}), shape mismatches {wrong[:5]} "
                              f"({len(wrong)}) — was the run started with other tuning flags?")
    return saved


def copy_into(model: nn.Module, trainable: dict[str, torch.Tensor]) -> None:
    """Copy trainable parameters and buffers (checked by ``read_trainable``) into ``model``."""
    state = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for k, v in trainable.items():
            state[k].copy_(v.to(state[k].device, state[k].dtype))


# -- optimizer --------------------------------------------------------------------------------
def optimizer_to_files(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """``optimizer.state_dict()`` -> (tensors for safetensors, JSON-able rest: param_groups and non-tensor
    per-parameter state)."""
    tensors, scalars = {}, {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def read_optimizer(file: Path, rest: dict, optimizer: torch.optim.Optimizer) -> dict:
    """The saved optimizer state dict (index-keyed, as ``optimizer.state_dict()``), checked against the group
    sizes of ``optimizer``."""
    tensors = load_file(str(file))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in rest.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = rest["param_groups"]
    current = [len(g["params"]) for g in optimizer.param_groups]
    if [len(g["params"]) for g in groups] != current:
        raise TrainStateError(f"{file}: the optimizer had parameter groups of sizes "
                              f"{[len(g['params']) for g in groups]}, now {current}"
                              " — the trainable parameters changed since the checkpoint")
    return {"state": state, "param_groups": groups}


# -- RNG --------------------------------------------------------------------------------------
def rng_to_files() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    rest = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    return tensors, rest


def rng_from_files(file: Path, rest: dict) -> None:
    tensors = load_file(str(file))
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])
    if "python" in rest:
        v, state, gauss = rest["python"]
        random.setstate((v, tuple(state), gauss))
    if "numpy" in rest:
        name, keys, pos, has_gauss, gauss = rest["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


# -- whole state ------------------------------------------------------------------------------
def write_state(directory: Path, model: nn.Module, optimizer_state: dict, trainer: dict,
                rank: int = 0, main: bool = True, rng: tuple | None = None) -> None:
    """Write the resumable state into ``directory`` (weights and ``optimizer_state`` = ``optimizer.state_dict()``
    by the main process, RNG by every rank; ``rng``: a snapshot from ``rng_to_files()`` taken at the step
    boundary, else the current state)."""
    rng_tensors, rng_rest = rng if rng is not None else rng_to_files()
    save_file(rng_tensors, str(directory / f"rng_rank{rank}.safetensors"))
    if not main:
        return
    save_file(trainable_state(model), str(directory / TRAINABLE_NAME))
    opt_tensors, opt_rest = optimizer_to_files(optimizer_state)
    save_file(opt_tensors, str(directory / OPTIMIZER_NAME))
    (directory / STATE_NAME).write_text(json.dumps(trainer | {"optimizer": opt_rest, "rng": rng_rest}, indent=1))


def read_state(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, rank: int = 0,
               load=None) -> dict:
    """Restore weights, optimizer and RNG from ``directory``; -> the trainer dict (step, best, ...).
    ``load(trainable, optimizer_state)``: how to apply the weights and optimizer state (an FSDP run shards
    them); by default they are copied into ``model`` and ``optimizer``."""
    f = directory / STATE_NAME
    try:
        trainer = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TrainStateError(f"{f}: cannot read the training state ({e})") from None
    for name in (TRAINABLE_NAME, OPTIMIZER_NAME):
        if not (directory / name).is_file():
            raise TrainStateError(f"{directory / name} is missing: the checkpoint is incomplete")
    trainable = read_trainable(model, directory / TRAINABLE_NAME)
    optimizer_state = read_optimizer(directory / OPTIMIZER_NAME, trainer.pop("optimizer"), optimizer)
    if load is not None:
        load(trainable, optimizer_state)
    else:
        copy_into(model, trainable)
        optimizer.load_state_dict(optimizer_state)
    rng_rest = trainer.pop("rng", {})
    rng_file = directory / f"rng_rank{rank}.safetensors"
    if rng_file.is_file():
        rng_from_files(rng_file, rng_rest if rank == 0 else {})
    return trainer

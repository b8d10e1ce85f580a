"""FSDP for the training loop: parameters, gradients and optimizer state sharded across the processes.

    shard = Sharded(model, acc)                  # before sharding: a full replica of the model on the main process
    wrapped = shard.wrap(loss_module)            # torch FSDP2 (``fully_shard``): each block, then the root
    ...train with ``wrapped``...
    shard.sync_replica()                         # collective: the trainable weights gathered into the replica
    evaluate(shard.replica); save(shard.replica) # main process only, as without FSDP

Blocks (``UNIT_CLASSES``: the backbone's Llama decoder layers and SigLIP encoder layers, the DiT blocks of the
action head and the reward head; plus any ``_no_split_modules`` a transformers model declares) are sharded one
by one, so a forward or backward pass holds one gathered block at a time; what is left (embeddings, projector,
heads) belongs to the root. A run is FSDP when ``accelerate launch`` runs with an FSDP config
(``config/accelerate/fsdp.yaml``: ``ACCELERATE_USE_FSDP``) or ``TrainConfig.fsdp`` is set; on GPUs and, with
gloo, on the CPU (the tests). With bf16 (the default on CUDA) the blocks gather their weights in bf16 and reduce gradients in fp32
(``MixedPrecisionPolicy``), under the loop's autocast as in DDP; the sharded parameters and optimizer state stay
fp32. With fp32 (the CPU) an FSDP run computes what a DDP run computes, up to the order of float sums.

Evaluation and checkpoints keep their single-process code: the main process holds an unsharded replica (on the
CPU, moved to the GPU only to evaluate) and ``sync_replica`` copies the trainable weights into it (frozen ones never
change). The resumable optimizer state is gathered into the same file format as a DDP or single-process run
(``train_state.py``: index-keyed), so a run can resume on another number of GPUs, with or without FSDP.
"""
from __future__ import annotations

import copy
import os
from contextlib import contextmanager

import torch
from torch import nn

UNIT_CLASSES = ("LlamaDecoderLayer", "SiglipEncoderLayer", "TransformerBlock")


def wants_fsdp(fsdp: bool) -> bool:
    """The run shards: asked for (``TrainConfig.fsdp``) or launched with an accelerate FSDP config."""
    return fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")


def unit_classes(model: nn.Module) -> set[str]:
    """Class names of the blocks to shard one by one: ours plus transformers' ``_no_split_modules``."""
    names = set(UNIT_CLASSES)
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or ())
    return names


class Sharded:
    """A model sharded with FSDP2 over the processes of ``acc`` and its unsharded replica on the main process."""

    def __init__(self, model: nn.Module, acc):
        self.model = model
        self.acc = acc
        self.main = acc.is_main_process
        # the replica is copied from the unsharded model on the CPU (frozen weights never change afterwards)
        self.replica = copy.deepcopy(model).cpu() if self.main else None
        self.names: dict[int, str] = {}
        self.wrapped: nn.Module | None = None
        self.prefix = ""

    def wrap(self, root: nn.Module, mixed_precision: str = "no", attribute: str = "model") -> nn.Module:
        """Shard ``root`` (which holds the model as ``root.<attribute>``): every unit block, then the root.
        ``mixed_precision`` "bf16": the gathered weights are bf16 (half the traffic, bf16 compute as under
        autocast), gradients are reduced in fp32 into the fp32 shards."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        self.names = {id(p): n for n, p in self.model.named_parameters()}
        mesh = init_device_mesh(self.acc.device.type, (self.acc.num_processes,))
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if mixed_precision == "bf16" else MixedPrecisionPolicy()
        classes = unit_classes(self.model)
        for m in list(self.model.modules()):
            if m is not self.model and type(m).__name__ in classes:
                fully_shard(m, mesh=mesh, mp_policy=policy)
        fully_shard(root, mesh=mesh, mp_policy=policy)
        self.wrapped, self.prefix = root, f"{attribute}."
        return root

    def param_groups(self, groups: list[dict]) -> list[dict]:
        """Optimizer groups built before sharding -> the same groups over the sharded parameters (by name; drop
        the old groups: they hold the unsharded weights)."""
        current = dict(self.model.named_parameters())
        out = []
        for g in groups:
            g = dict(g)
            g["params"] = [current[self.names[id(p)]] if id(p) in self.names else p for p in g["params"]]
            out.append(g)
        return out

    # -- gathering (collective: every process calls) ----------------------------------------------
    def sync_replica(self) -> nn.Module | None:
        """Copy the current trainable weights and buffers into the main process's replica; -> the replica."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.wrapped, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True, ignore_frozen_params=True))
        if self.main:
            state = {k[len(self.prefix):]: v for k, v in state.items()}
            result = self.replica.load_state_dict(state, strict=False)
            if result.unexpected_keys:
                raise RuntimeError(f"FSDP: gathered weights the replica lacks: {result.unexpected_keys[:5]}")
        return self.replica

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict | None:
        """The optimizer's full state gathered on the main process, keyed as ``optimizer.state_dict()`` of an
        unsharded run (parameter indices in group order); None on the other processes."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        full = get_optimizer_state_dict(self.wrapped, optimizer, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
        if not self.main:
            return None
        state, groups, index = {}, [], 0
        for g in full["param_groups"]:
            ids = []
            for fqn in g["params"]:
                if fqn in full["state"]:
                    state[index] = full["state"][fqn]
                ids.append(index)
                index += 1
            groups.append({k: v for k, v in g.items() if k != "params"} | {"params": ids})
        return {"state": state, "param_groups": groups}

    def load(self, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, optim_state: dict) -> None:
        """Resume: every process gives the full trainable weights (by the model's names) and the index-keyed
        optimizer state read from a checkpoint; each keeps its shard (the main process also fills its replica)."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(self.wrapped, {self.prefix + k: v for k, v in trainable.items()}, options=options)
        if self.main:
            self.replica.load_state_dict(trainable, strict=False)
        names = {id(p): n for n, p in self.wrapped.named_parameters()}
        fqns = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
        state = {fqns[int(i)]: v for i, v in optim_state["state"].items()}
        groups, start = [], 0
        for g in optim_state["param_groups"]:
            groups.append({k: v for k, v in g.items() if k != "params"} | {"params": fqns[start:start + len(g["params"])]})
            start += len(g["params"])
        set_optimizer_state_dict(self.wrapped, optimizer, {"state": state, "param_groups": groups}, options=options)

    @contextmanager
    def replica_on(self, device: torch.device):
        """The main process's replica on ``device`` for the block (then back on the CPU)."""
        self.replica.to(device)
        try:
            yield self.replica
        finally:
            self.replica.cpu()


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Clip the (sharded) gradients of ``parameters`` to a total norm of ``max_norm``; -> the norm before."""
    norm = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm        # a DTensor when sharded

"""CUDA-graph replay of fixed-shape inference calls: the opt-in fast path of the policy and reward model.

At batch 1 the eager model is bound by kernel launches (SigLIP, 12 Llama layers and 4 x 16 DiT
blocks make a few thousand small kernels per action chunk, each launched from Python). A CUDA
graph records every kernel of one call once and replays them all with one launch.

``GraphedFunction(fn)`` captures ``fn(inputs, **options)`` (``inputs`` a dict of tensors,
``options`` hashable Python values such as the number of denoising steps) once per signature
(input names, shapes, dtypes, devices, the options and a caller's ``guard``) into static input buffers. A
call copies the new inputs into those buffers, replays the graph and returns copies of the outputs
(a tensor, or a list / tuple of tensors). On a non-CUDA device it simply calls ``fn``, so the same
code runs on a CPU.

What ``fn`` must respect: no host reads of tensor values during the capture (``.item()``,
``int(t)``, ``if t.any()``), no random numbers (pass noise in as an input), no Python branches on
input values. The graph reads the weights at the addresses they had when it was captured: in-place
updates (optimizer steps, ``load_state_dict``) are seen, replaced tensors (``.to(...)``) are not,
so call ``reset()`` after moving the model (``Gr00tPolicy.to`` and the guard below do this).
"""
from __future__ import annotations

import gc

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class FastPath:
    """Which inference speed levers of a policy / reward model are on; ``FastPath()`` = all but compile.

    ``cuda_graphs``: replay one CUDA graph per input signature (this module). ``gpu_preprocess``: frames
    cross to the device as uint8 and are preprocessed there (gpu_preprocess.py). ``kv_cache``: the DiT's
    cross-attention keys/values are projected once per chunk (``DiT.inference_context``). ``unmasked_sdpa``:
    no attention masks when the host knows the batch has no padding (flash kernels). ``compile``:
    ``torch.compile`` of the SigLIP, Llama and DiT layers (``set_compiled``; optional, measure before use)."""

    cuda_graphs: bool = True
    gpu_preprocess: bool = True
    kv_cache: bool = True
    unmasked_sdpa: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"FastPath.{f.name} = {getattr(self, f.name)!r}: must be true or false")

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    @classmethod
    def resolve(cls, fast: "FastPath | bool", **levers: bool) -> "FastPath":
        """True -> all but compile, False -> none (the plain path), a FastPath as is; keyword levers override."""
        if fast is True:
            fast = cls()
        elif fast is False:
            fast = cls(False, False, False, False, False)
        elif not isinstance(fast, cls):
            raise ValueError(f"fast path {fast!r}: expected true, false or a FastPath")
        unknown = set(levers) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"fast path levers {sorted(unknown)}: allowed {[f.name for f in fields(cls)]}")
        return cls(**(fast.__dict__ | levers)) if levers else fast


PLAIN = FastPath(False, False, False, False, False)


def backbone_layers(backbone: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated layers of an ``EagleBackbone``: SigLIP encoder layers, then the Llama decoder layers."""
    eagle = backbone.model
    vision = getattr(getattr(eagle.vision_model.vision_model, "encoder", None), "layers", [])
    return [*vision, *eagle.language_model.model.layers]


def set_compiled(layers: list[torch.nn.Module], enabled: bool) -> None:
    """``torch.compile`` each layer in place (the ``compile`` lever), or return it to the plain module call.

    Layer by layer, not the whole model: fixed shapes, no graph breaks across the backbone's host-side
    checks, and (dynamo inlines module parameters as inputs) one compiled graph serves every layer of a
    class. While on, every call of those layers runs compiled, training included."""
    for layer in layers:
        if enabled:
            layer.compile(dynamic=False)
        elif getattr(layer, "_compiled_call_impl", None) is not None:
            layer._compiled_call_impl = None


def capturing() -> bool:
    """True while the current CUDA stream is being captured into a graph (False without CUDA)."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def weights_guard(module: torch.nn.Module) -> tuple:
    """Where and what the first parameter is: changes when the module is moved or cast, so graphs are re-captured."""
    p = next(module.parameters())
    return (p.device, p.dtype, p.data_ptr())


def _copy_out(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, (list, tuple)):
        return type(out)(_copy_out(o) for o in out)
    raise TypeError(f"a graphed function must return tensors or lists/tuples of them, got {type(out).__name__}")


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    outputs: Any


class GraphedFunction:
    """``fn(inputs: dict[str, Tensor], **options) -> tensors``, replayed from CUDA graphs (one per signature)."""

    def __init__(self, fn: Callable[..., Any], warmup: int = 2, max_graphs: int = 8):
        if warmup < 1:
            raise ValueError(f"GraphedFunction warmup = {warmup}: needs at least 1 eager call before a capture")
        if max_graphs < 1:
            raise ValueError(f"GraphedFunction max_graphs = {max_graphs}: must be at least 1")
        self.fn, self.warmup, self.max_graphs = fn, warmup, max_graphs
        self._graphs: OrderedDict[tuple, _Captured] = OrderedDict()

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def reset(self) -> None:
        """Drop every captured graph (and the memory it holds); the next call captures again."""
        self._graphs.clear()

    def __call__(self, inputs: dict[str, torch.Tensor], guard: tuple = (), **options) -> Any:
        devices = {v.device for v in inputs.values()}
        if len(devices) != 1:
            raise ValueError(f"graphed inputs must share one device, got {sorted(map(str, devices))}")
        if next(iter(devices)).type != "cuda":
            return self.fn(inputs, **options)
        signature = tuple((k, tuple(v.shape), v.dtype, v.device) for k, v in sorted(inputs.items()))
        key = (guard, tuple(sorted(options.items())), *signature)
        entry = self._graphs.get(key)
        if entry is None:
            if guard and any(k[0] != guard for k in self._graphs):
                self.reset()                     # the weights moved: every graph points at freed memory
            entry = self._graphs[key] = self._capture(inputs, options)
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
            for name, value in inputs.items():
                entry.inputs[name].copy_(value)
        entry.graph.replay()
        return _copy_out(entry.outputs)

    def _capture(self, inputs: dict[str, torch.Tensor], options: dict) -> _Captured:
        device = next(iter(inputs.values())).device
        static = {k: v.clone() for k, v in inputs.items()}
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):            # eager warm-up: lazy inits, cuBLAS workspaces, input checks
            for _ in range(self.warmup):
                self.fn(static, **options)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # No garbage collection while capturing: a collected CUDAGraph (e.g. of a dropped runtime whose graphs
        # sit in a reference cycle) resets itself, which CUDA refuses during a capture and the capture fails
        # ("operation not permitted when stream is capturing"). torch.cuda.graph collects once on entry.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            with torch.cuda.graph(graph):
                outputs = self.fn(static, **options)
        finally:
            if was_enabled:
                gc.enable()
        return _Captured(graph, static, outputs)

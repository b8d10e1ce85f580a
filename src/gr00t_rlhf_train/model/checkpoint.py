"""Checkpoint I/O: the official GR00T N1 layout (read) and our own layout (read and write).

Official layout (nvidia/GR00T-N1-2B or a fine-tune of it)::

    config.json                      GR00T_N1 config (backbone_cfg, action_head_cfg, ...)
    model.safetensors | model.safetensors.index.json + shards
    experiment_cfg/metadata.json     per embodiment: normalisation statistics and modality shapes

Our layout::

    model.safetensors                every weight (LoRA adapters included for reward models)
    gr00t_rlhf.json                  architecture, modality config, statistics, feedback vocabulary,
                                     reward-head / LoRA settings, training extras
    tokenizer/                       the tokenizer (save_pretrained)

Weights are read only with safetensors (never ``torch.load`` of a pickle). Before any tensor is
read, every key and shape is checked against the model; a mismatch raises CheckpointMismatchError
listing the missing, unexpected and wrongly shaped keys. The only exception: an official file may carry
the tensors named in ``OFFICIAL_UNUSED_KEYS`` (known leftovers that the official model never reads); they
are skipped with one log line.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .configuration import ActionHeadConfig, BackboneConfig, DataConfig, LanguageConfig, ModelConfig, preset
from .gr00t_n1 import Gr00tN1
from .processor import LEGACY_FORMAT, Gr00tProcessor, ModalityConfig
from .tokenizer import TokenizerNotFoundError, image_token_id, load_tokenizer

CONFIG_NAME = "gr00t_rlhf.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
FORMAT = "gr00t_rlhf/1"
# GR00T N1 embodiment tags with a fixed projector index (others need an explicit id).
EMBODIMENT_IDS = {"new_embodiment": 31, "gr1": 24}
# Tensors of official GR00T N1 files that no module of the official N1 model reads, accepted by exact name
# (any shape) and skipped: nvidia/GR00T-N1-2B carries the weight and bias of a small auxiliary
# ``action_head.decode_layer`` (a leftover of pre-release training; Isaac-GR00T's N1 FlowmatchingActionHead
# builds no such module, so transformers' non-strict from_pretrained leaves them unused).
OFFICIAL_UNUSED_KEYS = frozenset({"action_head.decode_layer.weight", "action_head.decode_layer.bias"})

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint directory is incomplete or malformed; the message names the file."""


class CheckpointMismatchError(CheckpointError):
    """Checkpoint keys or shapes differ from the model's."""


# -- weights --------------------------------------------------------------------------------
def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a directory (single file or sharded index)."""
    if (path / WEIGHTS_NAME).is_file():
        return [path / WEIGHTS_NAME]
    index = path / INDEX_NAME
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise CheckpointError(f"{index} names shards that are absent: {missing}")
        return [path / s for s in shards]
    pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
    hint = f" (found {pickles}: pickled weights are not loaded; convert them to safetensors)" if pickles else ""
    raise CheckpointError(f"no {WEIGHTS_NAME} or {INDEX_NAME} in {path}{hint}")


def checkpoint_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                shapes[key] = tuple(sf.get_slice(key).get_shape())
    return shapes


def check_keys(expected: dict[str, tuple], found: dict[str, tuple], source: str = "checkpoint",
               ignore: frozenset[str] = frozenset()) -> None:
    """Raise CheckpointMismatchError listing missing / unexpected keys and shape mismatches.

    Keys in ``ignore`` that the file has and the model lacks are not unexpected (the caller skips them)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected) - set(ignore))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or wrong):
        return
    lines = [f"{source} does not match the model:"]

    def block(title: str, keys: list[str], fmt) -> None:
        if keys:
            lines.append(f"  {title} ({len(keys)}):")
            lines.extend(f"    {fmt(k)}" for k in keys[:50])
            if len(keys) > 50:
                lines.append(f"    ... and {len(keys) - 50} more")

    block("missing keys", missing, lambda k: f"{k} {tuple(expected[k])}")
    block("unexpected keys", unexpected, lambda k: f"{k} {tuple(found[k])}")
    block("shape mismatches", wrong, lambda k: f"{k}: checkpoint {tuple(found[k])}, model {tuple(expected[k])}")
    raise CheckpointMismatchError("\n".join(lines))


def _rebuild_buffers(model: nn.Module, device: torch.device) -> None:
    """Recompute non-persistent buffers (rotary frequencies, position ids) after ``to_empty``."""
    for name, module in model.named_modules():
        names = getattr(module, "_non_persistent_buffers_set", set())
        if not names:
            continue
        if not hasattr(module, "config"):
            raise RuntimeError(f"cannot rebuild buffers {sorted(names)} of {name} ({type(module).__name__})")
        with torch.device(device):
            fresh = type(module)(module.config)
        for b in names:
            module.register_buffer(b, fresh.get_buffer(b), persistent=False)


def load_weights(model: nn.Module, files: list[Path], source: str, device="cpu", dtype=None,
                 ignore: frozenset[str] = frozenset()) -> nn.Module:
    """Strict key/shape check, then load the tensors (works for a model built on the meta device).

    ``ignore``: names of known unused tensors that the file may carry; those present are skipped and
    named in one log line (``OFFICIAL_UNUSED_KEYS`` for official files)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = checkpoint_shapes(files)
    check_keys(expected, found, source, ignore)
    skipped = sorted(k for k in found if k in ignore and k not in expected)
    if skipped:
        logger.info("%s: ignored %d known unused tensor(s): %s", source, len(skipped), ", ".join(skipped))
    on_meta = any(p.is_meta for p in model.parameters())
    if on_meta:
        model.to_empty(device=device)
        _rebuild_buffers(model, torch.device(device))
    state = {}
    for f in files:
        with safe_open(str(f), framework="pt", device=str(device)) as sf:
            for key in sf.keys():
                if key in skipped:
                    continue
                t = sf.get_tensor(key)
                state[key] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    model.load_state_dict(state, strict=True, assign=on_meta)
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)


# -- our layout -------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, kind: str, model: nn.Module, processor: Gr00tProcessor,
                    feedback_vocabulary: dict | None = None, head: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write model.safetensors + gr00t_rlhf.json + tokenizer/ into ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_NAME), metadata={"format": FORMAT, "kind": kind})
    processor.tokenizer.save_pretrained(str(path / "tokenizer"))
    meta = {
        "format": FORMAT,
        "kind": kind,
        "model": processor.model_config.to_dict(),
        "modality": processor.modality.to_dict(),
        "stats": processor.stats,
        "feedback_vocabulary": {str(k): v for k, v in (feedback_vocabulary or {}).items()},
        "head": head,
        "tokenizer": "tokenizer",
        "extra": extra or {},
    }
    (path / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
    return path


def read_meta(path: str | Path) -> dict:
    path = Path(path)
    f = path / CONFIG_NAME
    if not f.is_file():
        raise CheckpointError(f"{path} is not a gr00t_rlhf checkpoint: {CONFIG_NAME} is missing")
    meta = json.loads(f.read_text())
    for key in ("format", "kind", "model", "modality", "stats"):
        if key not in meta:
            raise CheckpointError(f"{f}: field {key!r} is missing")
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{f}: format {meta['format']!r}, this version reads {FORMAT!r}")
    return meta


def _tokenizer_for(path: Path, meta_tokenizer: str | None, override):
    if override is not None:
        return load_tokenizer(override) if isinstance(override, (str, Path)) else override
    if meta_tokenizer is None:
        raise TokenizerNotFoundError(f"{path}: no tokenizer recorded; pass tokenizer=")
    local = path / meta_tokenizer
    return load_tokenizer(local if local.is_dir() else meta_tokenizer)


def modality_from_meta(modality: dict) -> ModalityConfig:
    """A saved modality dict -> ModalityConfig. Files written before ``processor_format`` existed keep
    their behaviour: the legacy prompt / image format and no colour jitter (new configs default to the
    official format)."""
    modality = dict(modality)
    if "processor_format" not in modality:
        modality.update(processor_format=LEGACY_FORMAT, color_jitter=None)
    return ModalityConfig(**modality)


def load_processor(path: Path, meta: dict, tokenizer=None) -> Gr00tProcessor:
    config = ModelConfig.from_dict(meta["model"])
    tok = _tokenizer_for(path, meta.get("tokenizer"), tokenizer)
    return Gr00tProcessor(config, modality_from_meta(meta["modality"]), meta["stats"], tok)


def read_policy(path: str | Path, tokenizer=None, device="cpu", dtype=None, embodiment_tag: str | None = None,
                data_config: DataConfig | None = None) -> tuple[Gr00tN1, Gr00tProcessor, dict]:
    """Our checkpoint or an official GR00T N1 directory -> (model, processor, feedback vocabulary).

    ``data_config``: for an official directory only (``read_official``); our checkpoints carry their own.
    ``policy.load_policy`` / ``Gr00tPolicy.from_pretrained`` wrap the parts into a Gr00tPolicy."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    if (path / CONFIG_NAME).is_file():
        meta = read_meta(path)
        if meta["kind"] != "policy":
            raise CheckpointError(f"{path / CONFIG_NAME}: kind is {meta['kind']!r}, expected 'policy'")
        processor = load_processor(path, meta, tokenizer)
        with torch.device("meta"):
            model = Gr00tN1(processor.model_config, image_token_id(processor.tokenizer))
        load_weights(model, weight_files(path), str(path), device=device, dtype=dtype)
        fb = {int(k) if k.lstrip("-").isdigit() else k: v for k, v in meta.get("feedback_vocabulary", {}).items()}
        return model, processor, fb
    if (path / "config.json").is_file():
        model, processor = read_official(path, tokenizer=tokenizer, device=device, dtype=dtype,
                                         embodiment_tag=embodiment_tag, data_config=data_config)
        return model, processor, {}
    raise CheckpointError(f"{path} holds neither {CONFIG_NAME} (our checkpoint) nor config.json (official GR00T N1)")


# -- official layout ---------------------------------------------------------------------------
def config_from_official(cfg: dict) -> ModelConfig:
    """Map an official GR00T_N1 ``config.json`` onto our ModelConfig (the 2B preset for what it leaves out)."""
    base = preset("gr00t-n1-2b")
    head_cfg = dict(cfg.get("action_head_cfg") or {})
    dit = dict(head_cfg.get("diffusion_model_cfg") or {})
    back = dict(cfg.get("backbone_cfg") or {})
    h = base.action_head
    action_head = ActionHeadConfig(
        action_dim=head_cfg.get("action_dim", cfg.get("action_dim", h.action_dim)),
        action_horizon=head_cfg.get("action_horizon", cfg.get("action_horizon", h.action_horizon)),
        max_state_dim=head_cfg.get("max_state_dim", h.max_state_dim),
        hidden_size=head_cfg.get("hidden_size", h.hidden_size),
        input_embedding_dim=head_cfg.get("input_embedding_dim", h.input_embedding_dim),
        backbone_embedding_dim=head_cfg.get("backbone_embedding_dim", h.backbone_embedding_dim),
        max_num_embodiments=head_cfg.get("max_num_embodiments", h.max_num_embodiments),
        num_layers=dit.get("num_layers", h.num_layers),
        num_heads=dit.get("num_attention_heads", h.num_heads),
        head_dim=dit.get("attention_head_dim", h.head_dim),
        dropout=dit.get("dropout", h.dropout),
        max_seq_len=head_cfg.get("max_seq_len", h.max_seq_len),
        num_timestep_buckets=head_cfg.get("num_timestep_buckets", h.num_timestep_buckets),
        num_inference_steps=head_cfg.get("num_inference_timesteps", h.num_inference_steps),
        noise_beta_alpha=head_cfg.get("noise_beta_alpha", h.noise_beta_alpha),
        noise_beta_beta=head_cfg.get("noise_beta_beta", h.noise_beta_beta),
        noise_s=head_cfg.get("noise_s", h.noise_s),
    )
    lang = base.backbone.language.__dict__ | {"select_layer": back.get("select_layer", base.backbone.language.select_layer)}
    backbone = BackboneConfig(vision=base.backbone.vision, language=LanguageConfig(**lang),
                              project_to_dim=base.backbone.project_to_dim)
    return ModelConfig(name=f"official:{cfg.get('model_type', 'gr00t_n1')}", backbone=backbone, action_head=action_head)


def official_metadata(path: Path, embodiment_tag: str | None,
                      data_config: DataConfig | None = None) -> tuple[ModalityConfig, dict]:
    """experiment_cfg/metadata.json -> (modality config, statistics) of one embodiment.

    Without ``data_config`` every camera / state / action key of the file, in its order, min_max (what
    this reader always did). With one, ``data_config.resolve`` picks the keys, their order and the modes
    (the official data config's role: Isaac-GR00T gr00t/experiment/data_config.py); a key the file lacks is
    a one-line ConfigError naming it and the metadata file."""
    f = path / "experiment_cfg" / "metadata.json"
    if not f.is_file():
        raise CheckpointError(f"{f} is missing: an official checkpoint needs its normalisation statistics "
                              "(experiment_cfg/metadata.json, written by GR00T fine-tuning)")
    meta = json.loads(f.read_text())
    tags = sorted(meta)
    tag = embodiment_tag or ("new_embodiment" if "new_embodiment" in meta else (tags[0] if len(tags) == 1 else None))
    if tag is None or tag not in meta:
        raise CheckpointError(f"{f}: embodiment {embodiment_tag!r} not found; choose one of {tags}")
    entry = meta[tag]
    stats = entry.get("statistics")
    if not stats or "state" not in stats or "action" not in stats:
        raise CheckpointError(f"{f}: {tag}.statistics with 'state' and 'action' is missing")
    modalities = entry.get("modalities", {})

    def dims(group: str) -> dict[str, int]:
        out = {}
        for name, s in stats[group].items():
            shape = modalities.get(group, {}).get(name, {}).get("shape")
            out[name] = int(shape[0]) if shape else len(s["max"])
        return out

    video = list(modalities.get("video", {})) or ["ego_view"]
    if tag not in EMBODIMENT_IDS:
        raise CheckpointError(f"{f}: embodiment {tag!r} has no known projector index; known: {sorted(EMBODIMENT_IDS)}")
    layout = {"video": video, "state": dims("state"), "action": dims("action")}
    if data_config is not None:
        layout = data_config.resolve(layout, str(f))
    modality = ModalityConfig(**layout, embodiment_tag=tag, embodiment_id=EMBODIMENT_IDS[tag])
    return modality, {group: {name: stats[group][name] for name in getattr(modality, group)}
                      for group in ("state", "action")}


def read_official(path: str | Path, tokenizer=None, device="cpu", dtype=None,
                  embodiment_tag: str | None = None,
                  data_config: DataConfig | None = None) -> tuple[Gr00tN1, Gr00tProcessor]:
    """An official GR00T N1 directory -> (model, processor) (strict key and shape check).

    ``data_config`` (None: every key of experiment_cfg/metadata.json in its order, min_max) selects and
    orders the state / action / camera keys and the modes via ``DataConfig.resolve``; it becomes the
    model's ``config.data`` (so its normalisation semantics, official by default, are saved with it)."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{cfg_file} is missing")
    config = config_from_official(json.loads(cfg_file.read_text()))
    if data_config is not None:
        config = dataclasses.replace(config, data=data_config)
    files = weight_files(path)
    modality, stats = official_metadata(path, embodiment_tag, data_config)
    if tokenizer is None:
        raise TokenizerNotFoundError(
            f"{path} is an official checkpoint, which ships no tokenizer: pass tokenizer= (a directory such as "
            "Isaac-GR00T's gr00t/model/backbone/eagle2_hg_model, or a SmolLM2 name in your Hugging Face cache)")
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    if len(tok) > config.backbone.language.vocab_size:
        raise CheckpointError(f"the tokenizer has {len(tok)} tokens, the model's vocabulary {config.backbone.language.vocab_size}")
    with torch.device("meta"):
        model = Gr00tN1(config, image_token_id(tok))
    load_weights(model, files, str(path), device=device, dtype=dtype, ignore=OFFICIAL_UNUSED_KEYS)
    return model, Gr00tProcessor(config, modality, stats, tok)


# ``load_policy`` / ``load_official`` (-> Gr00tPolicy) moved to policy.py, which builds on this module
# (policy -> checkpoint, never the reverse at import time). The old names still resolve here for callers
# outside the package; policy.py is imported only when one of them is used.
_MOVED = {"load_policy", "load_official"}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib
        return getattr(importlib.import_module(".policy", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

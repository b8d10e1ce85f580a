"""``gr00t-rlhf model info PRESET_OR_PATH``: parameter counts per component, dtype and memory.

The network is built on the meta device, so even the 2B preset is described without allocating it.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from .configuration import PRESETS, ModelConfig, preset

_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
_SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F64": "float64", "I64": "int64"}


def describe(source: str) -> dict:
    """Preset name or checkpoint directory -> a summary dict (counts, dtypes, memory)."""
    import torch  # here, not at import: `gr00t-rlhf --help` must stay fast

    from .checkpoint import CONFIG_NAME, CheckpointError, config_from_official, weight_files
    from .gr00t_n1 import Gr00tN1, parameter_counts

    info: dict = {"source": source}
    weights_dtype: dict[str, int] = {}
    if source in PRESETS:
        config, kind = preset(source), "preset"
    else:
        path = Path(source)
        if not path.is_dir():
            raise CheckpointError(f"{source!r} is neither a preset ({sorted(PRESETS)}) nor a checkpoint directory")
        if (path / CONFIG_NAME).is_file():
            meta = json.loads((path / CONFIG_NAME).read_text())
            config, kind = ModelConfig.from_dict(meta["model"]), meta.get("kind", "?")
        elif (path / "config.json").is_file():
            config, kind = config_from_official(json.loads((path / "config.json").read_text())), "official"
        else:
            raise CheckpointError(f"{path} holds neither {CONFIG_NAME} nor config.json")
        from safetensors import safe_open
        counter: Counter = Counter()
        for f in weight_files(path):
            with safe_open(str(f), framework="pt") as sf:
                for key in sf.keys():
                    sl = sf.get_slice(key)
                    n = 1
                    for d in sl.get_shape():
                        n *= d
                    counter[_SAFETENSORS_DTYPES.get(str(sl.get_dtype()), str(sl.get_dtype()))] += n
        weights_dtype = dict(counter)
    with torch.device("meta"):
        model = Gr00tN1(config)
    counts = parameter_counts(model)
    info.update(kind=kind, name=config.name, parameters=dict(counts),
                memory_gib={dt: counts["total"] * b / 2**30 for dt, b in _BYTES.items()},
                image_size=config.backbone.vision.image_size, image_tokens=config.backbone.num_image_tokens,
                action_horizon=config.action_head.action_horizon)
    if weights_dtype:
        info["checkpoint_dtypes"] = weights_dtype
    return info


def _print(info: dict) -> None:
    print(f"{info['source']}  ({info['kind']}, architecture {info['name']})")
    print(f"  image {info['image_size']} px -> {info['image_tokens']} tokens/image; action chunk {info['action_horizon']}")
    print("  parameters:")
    for k, v in info["parameters"].items():
        print(f"    {k:32s} {v:>15,}")
    if "checkpoint_dtypes" in info:
        print("  checkpoint dtypes: " + ", ".join(f"{k}: {v:,}" for k, v in info["checkpoint_dtypes"].items()))
    print("  weights in memory: " + ", ".join(f"{k} {v:.2f} GiB" for k, v in info["memory_gib"].items()))


def _info(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .configuration import ConfigError

    try:
        info = describe(args.source)
    except (CheckpointError, ConfigError, OSError, ValueError) as e:
        print(f"gr00t-rlhf model info: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2)) if args.json else _print(info)
    return 0


def register(subparsers) -> None:
    model = subparsers.add_parser("model", help="GR00T N1 model tools")
    sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    sub.required = True
    info = sub.add_parser("info", help="parameter counts per component, dtype, memory")
    info.add_argument("source", metavar="PRESET_OR_PATH", help=f"a preset ({', '.join(PRESETS)}) or a checkpoint dir")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)

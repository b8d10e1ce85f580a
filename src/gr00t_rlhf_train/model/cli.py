"""``gr00t-rlhf model info PRESET_OR_PATH``: parameter counts per component, dtype and memory.
``gr00t-rlhf model parity --checkpoint DIR --official-src PATH``: our model against the official
Isaac-GR00T N1 code on the same inputs (``parity.py``).

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


def _parity(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .configuration import ConfigError
    from .parity import ParityError, official_runner, run_parity
    from .tokenizer import TokenizerNotFoundError

    prefix = "gr00t-rlhf model parity: error:"
    try:
        if not Path(args.checkpoint).is_dir():
            raise CheckpointError(f"--checkpoint {args.checkpoint}: no such directory")
        official = official_runner(args.checkpoint, args.official_src, args.device, args.dtype, args.official_python)
        tokenizer = args.tokenizer
        if tokenizer is None and not (Path(args.checkpoint) / "gr00t_rlhf.json").is_file():
            tokenizer = str(Path(args.official_src).expanduser() / "gr00t" / "model" / "backbone" / "eagle2_hg_model")
        import torch

        report = run_parity(args.checkpoint, official, tokenizer=tokenizer, device=args.device,
                            dtype=torch.bfloat16 if args.dtype == "bf16" else None, instruction=args.instruction,
                            seed=args.seed, embodiment_tag=args.embodiment_tag)
    except (ParityError, CheckpointError, ConfigError, TokenizerNotFoundError, OSError, ValueError) as e:
        print(f"{prefix} {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"parity of {args.checkpoint} against {args.official_src} ({args.device}, {args.dtype}):")
        print("\n".join("  " + line for line in report.lines()))
    return 0


def register(subparsers) -> None:
    model = subparsers.add_parser("model", help="GR00T N1 model tools")
    sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    sub.required = True
    info = sub.add_parser("info", help="parameter counts per component, dtype, memory")
    info.add_argument("source", metavar="PRESET_OR_PATH", help=f"a preset ({', '.join(PRESETS)}) or a checkpoint dir")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)
    parity = sub.add_parser("parity", help="compare with the official Isaac-GR00T N1 code on the same inputs",
                            description="Run this package's model and the official Isaac-GR00T N1 code on one fixed "
                            "observation with the same initial noise; report prompt token ids, pixel, backbone "
                            "feature and action differences.")
    parity.add_argument("--checkpoint", required=True, metavar="DIR", help="official GR00T N1 checkpoint directory")
    parity.add_argument("--official-src", required=True, metavar="PATH",
                        help="root of a clone of NVIDIA/Isaac-GR00T at an N1-era commit")
    parity.add_argument("--official-python", metavar="PY",
                        help="Python with the official code's requirements (default: this one)")
    parity.add_argument("--tokenizer", metavar="DIR",
                        help="tokenizer directory (default: PATH/gr00t/model/backbone/eagle2_hg_model)")
    parity.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parity.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="both models' dtype (default fp32)")
    parity.add_argument("--instruction", default="pick up the red cube and place it in the bowl")
    parity.add_argument("--seed", type=int, default=0, help="frames, state and initial noise (default 0)")
    parity.add_argument("--embodiment-tag", help="embodiment of experiment_cfg/metadata.json (default: new_embodiment)")
    parity.add_argument("--json", action="store_true", help="print JSON")
    parity.set_defaults(func=_parity)

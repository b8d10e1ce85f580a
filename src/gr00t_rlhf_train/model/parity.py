"""Parity harness: this package's GR00T N1 against the official Isaac-GR00T N1 code, same checkpoint.

``gr00t-rlhf model parity --checkpoint DIR --official-src PATH [--device cuda]`` builds one fixed
observation (synthetic frames, a state in the middle of the statistics' range, an instruction), runs
both implementations on it and reports:

* prompt token ids: ours == official (the official ``EagleProcessor`` on the official prompt);
* pixel values: max |ours - official| (the official VideoCrop / VideoResize / VideoToNumpy, eval mode);
* the two models on the SAME inputs (the official tensors): backbone features and the action chunk from
  the SAME initial noise (drawn here, injected into the official ``get_action`` in place of its
  ``torch.randn``): max and mean |diff|;
* end to end: our processor + model against the official processor + model (same noise).

The official side runs in a separate Python process (``--official-python``, default this one) that
imports only the official code, torch, numpy and safetensors: this file doubles as that worker
(``python parity.py --worker ...``), so the official code may live in its own environment (it needs
transformers 4.x, this package 5.x). Tensors travel through safetensors files in a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

WORKER_FAILED = 3          # exit status of a worker that could not import or run the official code


class ParityError(RuntimeError):
    """The harness cannot run; the one-line message says what to install or pass."""


@dataclass
class ParityReport:
    """What ``run_parity`` measured (max / mean absolute differences; actions are normalised model outputs)."""

    prompt_ids_equal: bool
    prompt_length: tuple[int, int]            # (ours, official)
    pixel_max_diff: float
    features_max_diff: float                  # both models on the official inputs
    features_mean_diff: float
    actions_max_diff: float                   # both models on the official inputs, same noise
    actions_mean_diff: float
    end_to_end_actions_max_diff: float        # our processor + model vs the official processor + model
    end_to_end_actions_mean_diff: float

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        ours, theirs = self.prompt_length
        return [
            f"prompt token ids      {'equal' if self.prompt_ids_equal else 'DIFFERENT'} (ours {ours}, official {theirs} tokens)",
            f"pixel values          max |diff| {self.pixel_max_diff:.3g}",
            f"backbone features     max |diff| {self.features_max_diff:.3g}, mean {self.features_mean_diff:.3g} (same inputs)",
            f"actions               max |diff| {self.actions_max_diff:.3g}, mean {self.actions_mean_diff:.3g} (same inputs, same noise)",
            f"actions, end to end   max |diff| {self.end_to_end_actions_max_diff:.3g}, "
            f"mean {self.end_to_end_actions_mean_diff:.3g} (each side's own preprocessing, same noise)",
        ]


# -- the fixed inputs ------------------------------------------------------------------------------
def synthetic_frames(views: int, height: int = 240, width: int = 320, seed: int = 0):
    """uint8 [V, H, W, 3]: smooth gradients plus seeded noise (deterministic for a seed)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for v in range(views):
        base = np.stack([(x * (3 + v)) % 256, (y * 2 + 40 * v) % 256, ((x + y) // 2) % 256], -1)
        frames.append(np.clip(base + rng.integers(-20, 21, base.shape), 0, 255))
    return np.stack(frames).astype(np.uint8)


def parity_observation(processor, instruction: str, seed: int = 0) -> dict:
    """One observation for ``processor``: a synthetic frame per camera, each state key at the middle of
    its min/max statistics, the instruction."""
    import numpy as np

    frames = synthetic_frames(len(processor.modality.video), seed=seed)
    obs = {f"video.{name}": frames[i] for i, name in enumerate(processor.modality.video)}
    for name in processor.modality.state:
        s = processor.stats["state"][name]
        obs[f"state.{name}"] = (np.asarray(s["min"], dtype=np.float64) + np.asarray(s["max"], dtype=np.float64)) / 2
    obs["task"] = instruction
    return obs


# -- comparison ------------------------------------------------------------------------------------
def _diff(a, b) -> tuple[float, float]:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ParityError(f"shapes differ: ours {a.shape}, official {b.shape}")
    d = np.abs(a - b)
    return float(d.max()) if d.size else 0.0, float(d.mean()) if d.size else 0.0


def compare(ours: dict, official: dict) -> ParityReport:
    """``ours``: input_ids, pixel_values, features_same / actions_same (our model on the official inputs),
    actions (our whole pipeline); ``official``: input_ids, pixel_values, features, actions -> the report."""
    import numpy as np

    ids_a, ids_b = np.asarray(ours["input_ids"]), np.asarray(official["input_ids"])
    equal = ids_a.shape == ids_b.shape and bool((ids_a == ids_b).all())
    pix = _diff(ours["pixel_values"], official["pixel_values"])[0] if np.shape(ours["pixel_values"]) == np.shape(
        official["pixel_values"]) else float("inf")
    f_max, f_mean = _diff(ours["features_same"], official["features"])
    a_max, a_mean = _diff(ours["actions_same"], official["actions"])
    e_max, e_mean = _diff(ours["actions"], official["actions"])
    return ParityReport(equal, (int(ids_a.shape[-1]), int(ids_b.shape[-1])), pix, f_max, f_mean, a_max, a_mean,
                        e_max, e_mean)


def run_parity(checkpoint: str | Path, official: Callable[[dict], dict], tokenizer=None, device: str = "cpu",
               dtype=None, instruction: str = "pick up the red cube and place it in the bowl", seed: int = 0,
               embodiment_tag: str | None = None) -> ParityReport:
    """Load our model from ``checkpoint``, build the fixed request, get the official outputs from
    ``official(request)`` (``official_runner(...)`` for the real code) and compare."""
    import numpy as np
    import torch

    from .policy import Gr00tPolicy

    kwargs = {"tokenizer": tokenizer, "device": device, "dtype": dtype}
    if embodiment_tag is not None:
        kwargs["embodiment_tag"] = embodiment_tag
    policy = Gr00tPolicy.from_pretrained(checkpoint, **kwargs)
    model, processor = policy.model.eval(), policy.processor
    head = model.config.action_head
    obs = parity_observation(processor, instruction, seed)
    batch = processor(obs)
    noise = torch.randn(1, head.action_horizon, head.action_dim, generator=torch.Generator().manual_seed(seed))
    frames = np.stack([obs[f"video.{name}"] for name in processor.modality.video])          # [V, H, W, 3]
    request = {"frames": frames, "instruction": instruction, "state": batch["state"].numpy(),
               "embodiment_id": batch["embodiment_id"].numpy(), "noise": noise.numpy(),
               "image_size": model.config.backbone.vision.image_size,
               "num_steps": head.num_inference_steps}
    theirs = official(request)
    missing = [k for k in ("input_ids", "attention_mask", "pixel_values", "features", "actions") if k not in theirs]
    if missing:
        raise ParityError(f"the official side returned no {', '.join(missing)}")

    def run(inputs: dict) -> tuple:
        on = {k: torch.as_tensor(np.asarray(v)).to(device) for k, v in inputs.items()}
        on["pixel_values"] = on["pixel_values"].float()
        on["state"], on["embodiment_id"] = batch["state"].to(device), batch["embodiment_id"].to(device)
        with torch.no_grad():
            feats, _ = model.features(on)
            acts = model.sample_actions(on, num_steps=head.num_inference_steps,
                                        noise=noise.to(device=device, dtype=feats.dtype))
        return feats.float().cpu().numpy(), acts.float().cpu().numpy()

    same_inputs = {k: theirs[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    features_same, actions_same = run(same_inputs)
    _, actions = run({k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")})
    ours = {"input_ids": batch["input_ids"].numpy(), "pixel_values": batch["pixel_values"].numpy(),
            "features_same": features_same, "actions_same": actions_same, "actions": actions}
    return compare(ours, theirs)


# -- the official side, in its own process ----------------------------------------------------------
def official_runner(checkpoint: str | Path, official_src: str | Path, device: str = "cpu", dtype: str = "fp32",
                    python: str | None = None, timeout: float = 1800.0) -> Callable[[dict], dict]:
    """-> ``official(request)`` running this file as a worker under ``python`` with ``official_src`` on its
    path. Raises ParityError (one line) when the source tree is not an Isaac-GR00T checkout."""
    src = Path(official_src).expanduser()
    if not src.is_dir():
        raise ParityError(f"--official-src {src}: no such directory (pass a clone of NVIDIA/Isaac-GR00T at an "
                          "N1-era commit)")
    if not (src / "gr00t" / "model" / "gr00t_n1.py").is_file():
        raise ParityError(f"--official-src {src}: no gr00t/model/gr00t_n1.py there (pass the root of a clone of "
                          "NVIDIA/Isaac-GR00T at an N1-era commit)")

    def run(request: dict) -> dict:
        from safetensors.numpy import load_file, save_file

        with tempfile.TemporaryDirectory(prefix="gr00t_parity_") as tmp:
            tmp = Path(tmp)
            arrays = {k: v for k, v in request.items() if hasattr(v, "dtype")}
            save_file(arrays, str(tmp / "request.safetensors"))
            (tmp / "request.json").write_text(json.dumps({k: v for k, v in request.items() if k not in arrays}))
            cmd = [python or sys.executable, str(Path(__file__).resolve()), "--worker", str(tmp),
                   "--official-src", str(src), "--checkpoint", str(Path(checkpoint).resolve()),
                   "--device", device, "--dtype", dtype]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                last = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
                raise ParityError(last[-1] if last else f"the official worker exited with status {proc.returncode}")
            return dict(load_file(str(tmp / "response.safetensors")))

    return run


def _worker(argv: list[str]) -> int:
    """Run the official N1 on the request in ``DIR`` and write ``DIR/response.safetensors``."""
    p = argparse.ArgumentParser(prog="parity.py --worker")
    p.add_argument("--worker", required=True)
    p.add_argument("--official-src", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    args = p.parse_args(argv)
    sys.path.insert(0, args.official_src)
    try:
        import numpy as np
        import torch
        from safetensors.numpy import load_file, save_file
        from transformers.feature_extraction_utils import BatchFeature

        from gr00t.data.transform.video import VideoCrop, VideoResize, VideoToNumpy, VideoToTensor
        from gr00t.model.backbone.eagle2_hg_model.inference_eagle_repo import EagleProcessor
        from gr00t.model.gr00t_n1 import GR00T_N1
        from gr00t.model.transforms import DEFAULT_SYSTEM_MESSAGE
    except Exception as e:  # noqa: BLE001 - any import failure is reported as one line
        print(f"the official N1 code does not import from {args.official_src} under {sys.executable}: "
              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (install Isaac-GR00T's N1 requirements "
              "into that Python, e.g. pip install -e <clone>, or pass --official-python)", file=sys.stderr)
        return WORKER_FAILED
    try:
        tmp = Path(args.worker)
        req = load_file(str(tmp / "request.safetensors"))
        meta = json.loads((tmp / "request.json").read_text())
        frames = req["frames"]                                                       # [V, H, W, 3] uint8
        h, w, size = frames.shape[1], frames.shape[2], int(meta["image_size"])
        key = "video.parity"
        crop = VideoCrop(apply_to=[key], scale=0.95)
        crop._original_resolutions = {key: (w, h)}
        resize = VideoResize(apply_to=[key], height=size, width=size, interpolation="linear")
        x = VideoToTensor.to_tensor(frames)                                           # [V, 3, H, W] in [0, 1]
        images = VideoToNumpy.to_numpy(resize.get_transform("eval")(crop.get_transform("eval")(x)))
        prompt = [{"role": "system", "content": DEFAULT_SYSTEM_MESSAGE},
                  {"role": "user", "content": meta["instruction"], "image": [{"np_array": im} for im in images]}]
        vl = EagleProcessor().prepare_input({"prompt": prompt})
        dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
        model = GR00T_N1.from_pretrained(args.checkpoint).to(device=args.device, dtype=dtype).eval()
        model.action_head.num_inference_timesteps = int(meta["num_steps"])
        noise = torch.from_numpy(req["noise"]).to(args.device, dtype)
        real_randn = torch.randn

        def injected_randn(*a, **k):                                 # the official get_action draws its noise here
            size_ = k.get("size", a[0] if len(a) == 1 else a)
            if tuple(size_) == tuple(noise.shape):
                return noise.clone()
            return real_randn(*a, **k)

        with torch.no_grad():
            backbone_in = BatchFeature(data={"pixel_values": vl["pixel_values"].to(args.device, dtype),
                                             "input_ids": vl["input_ids"].to(args.device),
                                             "attention_mask": vl["attention_mask"].to(args.device)})
            backbone_out = model.backbone(backbone_in)
            action_in = BatchFeature(data={"state": torch.from_numpy(req["state"]).to(args.device, dtype),
                                           "embodiment_id": torch.from_numpy(req["embodiment_id"]).to(args.device)})
            torch.randn = injected_randn
            try:
                actions = model.action_head.get_action(backbone_out, action_in)["action_pred"]
            finally:
                torch.randn = real_randn
        save_file({"input_ids": vl["input_ids"].cpu().numpy().astype(np.int64),
                   "attention_mask": vl["attention_mask"].cpu().numpy().astype(np.int64),
                   "pixel_values": vl["pixel_values"].float().cpu().numpy(),
                   "features": backbone_out["backbone_features"].float().cpu().numpy(),
                   "actions": actions.float().cpu().numpy()}, str(tmp / "response.safetensors"))
    except Exception as e:  # noqa: BLE001
        print(f"the official N1 run failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return WORKER_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))

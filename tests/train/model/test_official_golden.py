"""Golden tests of the pieces pinned against the official Isaac-GR00T N1 behaviour (docs/model.md,
"Exactness against the official GR00T N1"): prompt text and token ids, left padding, image preprocessing
of a fixed synthetic image, training augmentations, and old checkpoints keeping their format."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from gr00t_rlhf_train.model.configuration import ConfigError
from gr00t_rlhf_train.model.policy import Gr00tPolicy
from gr00t_rlhf_train.model.processor import (LEGACY_FORMAT, OFFICIAL_FORMAT, ModalityConfig, official_crop_box,
                                              preprocess_images)

INSTRUCTION = "Find Blue cube"
# the official prompt of one camera (tiny preset: 4 image tokens instead of 64)
PROMPT_1 = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>\nFind Blue cube<|im_end|>\n"
            "<|im_start|>assistant\n")
# its ids with the built-in tiny tokenizer ("assistant" is an added token, 409, as 49161 is officially)
TINY_IDS = [1, 85, 91, 312, 71, 79, 201, 347, 324, 265, 377, 362, 354, 78, 223, 409, 16, 2, 201, 1, 87, 85, 298,
            201, 400, 402, 402, 402, 402, 401, 201, 274, 320, 286, 2, 201, 1, 409, 201]


def synthetic_image(h: int = 240, w: int = 320) -> np.ndarray:
    """A fixed uint8 RGB test card [h, w, 3] (pure integer arithmetic: the same on every machine)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 7 + y * 3) % 256, (x * x + 5 * y) % 256, (x * y // 7 + 11 * x) % 256], -1).astype(np.uint8)


# -- prompt and tokens ---------------------------------------------------------------------------
def test_official_prompt_text_one_camera(tiny_policy):
    assert tiny_policy.processor.modality.processor_format == OFFICIAL_FORMAT
    assert tiny_policy.processor.prompt(INSTRUCTION, 1) == PROMPT_1


def test_official_prompt_labels_each_camera(tiny_policy):
    block = "<img>" + "<IMG_CONTEXT>" * 4 + "</img>\n"
    text = tiny_policy.processor.prompt(INSTRUCTION, 2)
    assert f"<|im_start|>user\n<image 1>{block}<image 2>{block}Find Blue cube<|im_end|>" in text
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


def test_instruction_is_passed_verbatim(tiny_policy):
    # N1 neither lower-cases nor strips punctuation (N1.5's formalize_language came later)
    assert "Go to the RED cube, now!<|im_end|>" in tiny_policy.processor.prompt("Go to the RED cube, now!", 1)


def test_tiny_prompt_token_ids_are_pinned(tiny_policy, observation):
    batch = tiny_policy.processor(observation())
    assert batch["input_ids"][0].tolist() == TINY_IDS
    assert batch["attention_mask"].all()


def test_batches_are_padded_on_the_left_with_im_end(tiny_policy, observation):
    obs = observation(batch=2) | {"task": [INSTRUCTION, INSTRUCTION + " and then stop near the red object"]}
    batch = tiny_policy.processor(obs)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    pad = tiny_policy.processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    n = int((mask[0] == 0).sum())
    assert n > 0 and mask[1].all()
    assert mask[0, :n].sum() == 0 and mask[0, n:].all()                  # zeros first, then the prompt
    assert (ids[0, :n] == pad).all() and ids[0, n:].tolist() == TINY_IDS


def test_left_padding_keeps_eager_and_graph_safe_equal_everywhere(tiny_policy, observation):
    obs = observation(batch=2) | {"task": ["Stop", INSTRUCTION + " and then stop near the red object"]}
    batch = tiny_policy.processor(obs)
    eager, _ = tiny_policy.model.features(batch)
    safe, _ = tiny_policy.model.features(batch, graph_safe=True)
    torch.testing.assert_close(safe, eager, rtol=1e-5, atol=1e-5)       # pad positions included
    assert torch.isfinite(eager).all()


@pytest.mark.skipif(not os.environ.get("GR00T_EAGLE_TOKENIZER"),
                    reason="set GR00T_EAGLE_TOKENIZER to Isaac-GR00T's gr00t/model/backbone/eagle2_hg_model")
def test_official_2b_tokenizer_ids():
    from gr00t_rlhf_train.model.configuration import preset
    from gr00t_rlhf_train.model.processor import Gr00tProcessor
    from gr00t_rlhf_train.model.tokenizer import load_tokenizer

    tok = load_tokenizer(os.environ["GR00T_EAGLE_TOKENIZER"])
    stats = {g: {k: {"min": [-1.0] * d, "max": [1.0] * d} for k, d in dims.items()}
             for g, dims in (("state", ModalityConfig().state), ("action", ModalityConfig().action))}
    proc = Gr00tProcessor(preset("gr00t-n1-2b"), ModalityConfig(), stats, tok)
    ids = proc.tokenize([proc.prompt(INSTRUCTION, 1)])["input_ids"][0].tolist()
    # ids of eagle2_hg_model/tokenizer_config.json: <|im_start|> 1, <|im_end|> 2, <img> 49152, </img> 49153,
    # <IMG_CONTEXT> 49154, "assistant" 49161 (an added token: also inside "helpful assistant.")
    assert ids[0] == 1 and ids.count(49154) == 64 and ids.count(49152) == 1 and ids.count(49153) == 1
    assert ids.count(49161) == 2 and ids[-3:-1] == [1, 49161] and ids.count(2) == 2
    assert proc.pad_token_id() == 2


# -- images --------------------------------------------------------------------------------------
def test_crop_box_truncates_the_size_and_rounds_the_offset_half_to_even():
    assert official_crop_box(240, 320, 0.95) == (6, 8, 228, 304)
    assert official_crop_box(45, 64, 0.95) == (2, 2, 42, 60)       # int(42.75) = 42; round(1.5) = 2
    assert official_crop_box(7, 9, 0.95) == (0, 0, 6, 8)           # round(0.5) = 0
    from torchvision.transforms.v2 import functional as TF
    x = torch.arange(45 * 64, dtype=torch.float32).reshape(1, 1, 45, 64)
    top, left, ch, cw = official_crop_box(45, 64, 0.95)
    torch.testing.assert_close(x[..., top:top + ch, left:left + cw], TF.center_crop(x, [ch, cw]))


def test_image_preprocessing_golden_values():
    out = preprocess_images(synthetic_image()[None], 224)
    assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
    got = [float(out[0, c, y, x]) for c, y, x in [(0, 0, 0), (1, 100, 50), (2, 223, 223), (0, 37, 211)]]
    np.testing.assert_allclose(got, [-0.4042969, -0.0039368, 0.4824219, 0.1298828], atol=1e-6)
    assert float(out.double().sum()) == pytest.approx(-662.7963562011719, abs=1e-6)
    assert float(out.double().abs().sum()) == pytest.approx(60177.45669555664, abs=1e-6)
    assert torch.equal(out, out.to(torch.bfloat16).float())            # bfloat16 values, as official


def test_image_preprocessing_equals_the_official_torchvision_pipeline():
    """The official chain rebuilt from the same library calls: VideoToTensor, CenterCrop, Resize(bilinear,
    antialias), VideoToNumpy, then PIL -> ToTensor -> Normalize(0.5, 0.5) -> bfloat16 (EagleProcessor)."""
    from PIL import Image
    from torchvision import transforms as T1
    from torchvision.transforms import v2 as T

    frames = np.stack([synthetic_image(), synthetic_image()[::-1].copy()])            # [2, 240, 320, 3]
    x = torch.from_numpy(frames).to(torch.float32) / 255.0
    x = x.permute(0, 3, 1, 2)
    x = T.CenterCrop((int(240 * 0.95), int(320 * 0.95)))(x)
    x = T.Resize((224, 224), interpolation=T.InterpolationMode.BILINEAR, antialias=True)(x)
    u8 = (x.permute(0, 2, 3, 1) * 255).to(torch.uint8).numpy()
    post = T1.Compose([T1.ToTensor(), T1.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))])
    want = torch.stack([post(Image.fromarray(f)) for f in u8]).to(torch.bfloat16).float()
    assert torch.equal(preprocess_images(frames, 224), want)


def test_training_augmentation_is_random_reproducible_and_off_at_inference():
    frames = synthetic_image(60, 80)[None]
    plain = preprocess_images(frames, 56)
    assert torch.equal(plain, preprocess_images(frames, 56))                          # inference: deterministic
    jit = (0.3, 0.4, 0.5, 0.08)
    a = preprocess_images(frames, 56, generator=torch.Generator().manual_seed(1), jitter=jit)
    b = preprocess_images(frames, 56, generator=torch.Generator().manual_seed(1), jitter=jit)
    c = preprocess_images(frames, 56, generator=torch.Generator().manual_seed(2), jitter=jit)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, plain)
    crop_only = preprocess_images(frames, 56, generator=torch.Generator().manual_seed(1), jitter=None)
    g = torch.Generator().manual_seed(1)
    top, left, ch, cw = official_crop_box(60, 80, 0.95, g)
    box = frames[:, top:top + ch, left:left + cw]
    assert torch.equal(crop_only, preprocess_images(box, 56, crop_scale=1.0))        # jitter None: crop only
    two = preprocess_images(np.concatenate([frames, frames]), 56, generator=torch.Generator().manual_seed(1),
                            jitter=jit)
    assert torch.equal(two[0], two[1])                       # one draw for all views of a sample


def test_processor_jitters_only_when_training(tiny_policy, observation):
    obs = observation()
    base = tiny_policy.processor(obs)["pixel_values"]
    assert torch.equal(base, tiny_policy.processor(obs)["pixel_values"])
    train = tiny_policy.processor(obs, generator=torch.Generator().manual_seed(0))["pixel_values"]
    assert train.shape == base.shape and not torch.equal(train, base)


def test_bad_jitter_and_format_are_one_line_errors():
    with pytest.raises(ConfigError, match="processor_format = 'x'"):
        ModalityConfig(processor_format="x")
    with pytest.raises(ConfigError, match="color_jitter"):
        ModalityConfig(color_jitter=(0.3, 0.4))
    with pytest.raises(ValueError, match="expected uint8"):
        preprocess_images(np.zeros((1, 8, 8, 3), np.float32), 8)


# -- old checkpoints keep their format -----------------------------------------------------------
def test_checkpoint_without_processor_format_keeps_the_legacy_behaviour(tiny_policy, observation, tmp_path):
    ckpt = tiny_policy.save_pretrained(tmp_path / "new")
    meta = json.loads((ckpt / "gr00t_rlhf.json").read_text())
    assert meta["modality"]["processor_format"] == OFFICIAL_FORMAT
    assert Gr00tPolicy.from_pretrained(ckpt).processor.modality.color_jitter == (0.3, 0.4, 0.5, 0.08)
    for key in ("processor_format", "color_jitter"):
        del meta["modality"][key]
    (ckpt / "gr00t_rlhf.json").write_text(json.dumps(meta))
    old = Gr00tPolicy.from_pretrained(ckpt).processor
    assert old.modality.processor_format == LEGACY_FORMAT and old.modality.color_jitter is None
    text = old.prompt(INSTRUCTION, 1)
    assert "system" not in text and text.startswith("<|im_start|>user\n<img>")
    obs = observation(batch=2) | {"task": ["Stop", INSTRUCTION]}
    batch = old(obs)
    assert batch["attention_mask"][0, 0] == 1 and batch["attention_mask"][0, -1] == 0   # right padding
    frames = np.asarray(obs["video.ego_view"])                                              # [2, 48, 64, 3]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[:, :, 1:47, 1:62]              # round(45.6)=46, 61
    x = torch.nn.functional.interpolate(x, size=(56, 56), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(batch["pixel_values"], (x / 255.0 - 0.5) / 0.5, rtol=0, atol=0)


# -- the parity harness (the official side played by our own model: the official code is not here) --------
def _ours_as_official(policy):
    """``official(request)`` computed with one of our policies, the way the official worker does it."""
    def run(request: dict) -> dict:
        proc, frames = policy.processor, request["frames"]
        enc = proc.tokenize([proc.prompt(request["instruction"], len(frames))])
        batch = enc | {"pixel_values": proc.image_tensor(frames), "state": torch.from_numpy(request["state"]),
                       "embodiment_id": torch.from_numpy(request["embodiment_id"])}
        with torch.no_grad():
            feats, _ = policy.model.features(batch)
            acts = policy.model.sample_actions(batch, num_steps=request["num_steps"],
                                               noise=torch.from_numpy(request["noise"]))
        return {k: v.numpy() for k, v in enc.items()} | {"pixel_values": batch["pixel_values"].numpy(),
                                                          "features": feats.numpy(), "actions": acts.numpy()}
    return run


def test_parity_of_a_checkpoint_with_itself_is_exact(tiny_policy, tmp_path):
    from gr00t_rlhf_train.model.parity import run_parity

    ckpt = tiny_policy.save_pretrained(tmp_path / "ckpt")
    report = run_parity(ckpt, _ours_as_official(Gr00tPolicy.from_pretrained(ckpt)))
    assert report.prompt_ids_equal and report.prompt_length[0] == report.prompt_length[1] > 4
    assert report.pixel_max_diff == 0 and report.features_max_diff == 0
    assert report.actions_max_diff == 0 and report.end_to_end_actions_max_diff == 0
    assert "prompt token ids      equal" in report.lines()[0]


def test_parity_reports_model_and_prompt_differences(tiny_policy, tmp_path):
    from gr00t_rlhf_train.model.parity import compare, run_parity

    ckpt = tiny_policy.save_pretrained(tmp_path / "ckpt")
    other = Gr00tPolicy.from_pretrained(ckpt)
    with torch.no_grad():
        other.model.action_head.action_decoder.layer2.b.add_(0.01)        # a different action head
    report = run_parity(ckpt, _ours_as_official(other))
    assert report.features_max_diff == 0 and report.actions_max_diff == pytest.approx(0.01, rel=1e-3)
    z = np.zeros((1, 2, 3))
    ours = {"input_ids": np.array([[1, 2, 3]]), "pixel_values": z, "features_same": z, "actions_same": z, "actions": z}
    theirs = {"input_ids": np.array([[1, 2]]), "pixel_values": z + 0.5, "features": z, "actions": z}
    report = compare(ours, theirs)
    assert not report.prompt_ids_equal and report.prompt_length == (3, 2) and report.pixel_max_diff == 0.5
    assert "DIFFERENT" in report.lines()[0] and report.to_dict()["prompt_ids_equal"] is False


def test_parity_worker_without_the_official_code_is_one_line(tiny_policy, tmp_path):
    from gr00t_rlhf_train.model.parity import ParityError, official_runner, run_parity

    src = tmp_path / "Isaac-GR00T"
    (src / "gr00t" / "model").mkdir(parents=True)
    (src / "gr00t" / "model" / "gr00t_n1.py").write_text("")
    ckpt = tiny_policy.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ParityError) as e:
        run_parity(ckpt, official_runner(ckpt, src))
    msg = str(e.value)
    assert "\n" not in msg and "does not import" in msg and "pip install -e" in msg

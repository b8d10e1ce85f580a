"""Tokenizer loading (offline, clear errors) and `gr00t-rlhf model info`."""
from __future__ import annotations

import json

import pytest

from gr00t_rlhf_train.cli import main
from gr00t_rlhf_train.model.tokenizer import (EAGLE_TOKENS, TokenizerNotFoundError, build_tiny_tokenizer,
                                              image_token_id, load_tokenizer)


def test_tiny_tokenizer_round_trips_through_a_directory(tmp_path):
    tok = build_tiny_tokenizer()
    assert all(t in tok.get_vocab() for t in EAGLE_TOKENS)
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert image_token_id(again) == image_token_id(tok)
    text = again.apply_chat_template([{"role": "user", "content": "Find Blue cube"}], tokenize=False,
                                     add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "absent")
    with pytest.raises(TokenizerNotFoundError, match="Hugging Face cache"):
        load_tokenizer("nobody-has-this/tokenizer-xyz")


def test_model_info_tiny(capsys):
    assert main(["model", "info", "tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"]["total"] == info["parameters"]["backbone"] + info["parameters"]["action_head"]


def test_model_info_2b_and_checkpoint(capsys, tiny_policy, tmp_path):
    assert main(["model", "info", "gr00t-n1-2b"]) == 0
    assert "2,190,016,752" in capsys.readouterr().out
    tiny_policy.save_pretrained(tmp_path / "ckpt")
    assert main(["model", "info", str(tmp_path / "ckpt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "policy" and "float32" in info["checkpoint_dtypes"]


def test_model_info_on_a_bad_path_is_one_line(capsys):
    from gr00t_rlhf_train.cli import main

    assert main(["model", "info", "/no/such/checkpoint"]) == 1
    err = capsys.readouterr().err
    assert "neither a preset" in err and "Traceback" not in err


def test_cli_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from gr00t_rlhf_ros.cli import main\n" \
           "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _eagle_like_directory(path):
    """A GPT-2-style tokenizer directory shaped like Isaac-GR00T's eagle2_hg_model: "assistant" is a BPE
    vocabulary token AND an added token declared at another id (after the 12 Eagle tokens' slot)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["assistant", "assistant.", "user", "system", "You are a helpful assistant."] * 50,
                            trainer=trainer)
    path.mkdir()
    tok.model.save(str(path))
    n = len(json.loads((path / "vocab.json").read_text()))
    decoder = {str(i): {"content": t, "special": True} for i, t in enumerate(["<|endoftext|>", "<|im_start|>",
                                                                            "<|im_end|>"])}
    decoder.update({str(n + k): {"content": t, "special": t != "assistant", "normalized": t == "assistant"}
                    for k, t in enumerate(EAGLE_TOKENS)})
    (path / "tokenizer_config.json").write_text(json.dumps({
        "added_tokens_decoder": decoder, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"}))
    return n


def test_declared_added_token_ids_win_over_the_bpe_vocabulary(tmp_path):
    n = _eagle_like_directory(tmp_path / "eagle")
    bpe_id = json.loads((tmp_path / "eagle" / "vocab.json").read_text())["assistant"]
    assistant = n + EAGLE_TOKENS.index("assistant")                  # 49161 in the real files
    tok = load_tokenizer(tmp_path / "eagle")
    assert tok.convert_tokens_to_ids("assistant") == assistant != bpe_id
    assert tok("<|im_start|>assistant\n")["input_ids"][:2] == [1, assistant]
    assert assistant in tok("You are a helpful assistant.")["input_ids"]
    assert [tok.convert_tokens_to_ids(t) for t in EAGLE_TOKENS] == list(range(n, n + 12))
    assert tok.decode(tok("a helpful assistant.")["input_ids"]) == "a helpful assistant."
    tok.save_pretrained(tmp_path / "saved")                           # what a checkpoint keeps
    again = load_tokenizer(tmp_path / "saved")
    assert again("<|im_start|>assistant\n")["input_ids"] == tok("<|im_start|>assistant\n")["input_ids"]


def test_model_parity_errors_are_one_line(capsys, tmp_path):
    (tmp_path / "ckpt").mkdir()
    assert main(["model", "parity", "--checkpoint", str(tmp_path / "ckpt"), "--official-src",
                 str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--official-src" in err and "no such directory" in err
    (tmp_path / "src").mkdir()
    assert main(["model", "parity", "--checkpoint", str(tmp_path / "ckpt"), "--official-src", str(tmp_path / "src")]) == 1
    assert "gr00t/model/gr00t_n1.py" in capsys.readouterr().err
    assert main(["model", "parity", "--checkpoint", str(tmp_path / "absent"), "--official-src", str(tmp_path)]) == 1
    assert "--checkpoint" in capsys.readouterr().err


def test_a_plain_smollm2_style_tokenizer_gets_the_eagle_ids(tmp_path):
    n = _eagle_like_directory(tmp_path / "plain")
    config = tmp_path / "plain" / "tokenizer_config.json"
    spec = json.loads(config.read_text())
    spec["added_tokens_decoder"] = {k: v for k, v in spec["added_tokens_decoder"].items() if int(k) < 3}
    config.write_text(json.dumps(spec))                          # SmolLM2 alone: no Eagle tokens declared
    tok = load_tokenizer(tmp_path / "plain")
    assert [tok.convert_tokens_to_ids(t) for t in EAGLE_TOKENS] == list(range(n, n + 12))
    assert tok("<|im_start|>assistant\n")["input_ids"][:2] == [1, n + EAGLE_TOKENS.index("assistant")]

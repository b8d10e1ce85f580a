"""Tokenizer loading for GR00T N1 (SmolLM2 vocabulary + Eagle image tokens) and a built-in tiny one.

The official model reads prompts with the SmolLM2 tokenizer to which Eagle2 added 12 tokens
(``<img>`` = 49152, ``</img>``, ``<IMG_CONTEXT>`` = 49154, ...). ``load_tokenizer`` takes a local
directory or a name already in the user's Hugging Face cache (never downloads); a plain SmolLM2
tokenizer gets the Eagle tokens added in the official order. ``build_tiny_tokenizer`` trains a
small byte-level BPE offline (for the ``tiny`` preset, the tests and the simulated demo).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

IMAGE_START = "<img>"
IMAGE_END = "</img>"
IMAGE_CONTEXT = "<IMG_CONTEXT>"
# Tokens Eagle2 appended to SmolLM2's vocabulary, in id order (49152 ... 49163).
EAGLE_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>",
                "assistant", "<interval>", "</interval>")

# ChatML, the format of SmolLM2-Instruct and Eagle2 ("qwen2-chat" template).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

TINY_TOKENIZER_NAME = "tiny"

_TINY_CORPUS = (
    "Find Blue cube", "Find Green sphere", "Find Red cylinder", "Position yourself next to Green sphere",
    "Position yourself next to Blue cube", "Move around the red object before proceeding to the goal",
    "Avoid the blue sphere, the red cube and the green cylinder", "Drive forward, turn left, turn right, stop",
    "You are a helpful robot assistant. Go to the goal without touching obstacles.",
    "Doing good", "Doing bad", "the robot moves towards the target object in the arena",
)


class TokenizerNotFoundError(FileNotFoundError):
    """No tokenizer at the given directory or in the local Hugging Face cache."""


def build_tiny_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer offline, with the Eagle tokens and a chat template.

    Deterministic: the same call gives the same vocabulary. len(tokenizer) <= vocab_size + 16.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(_TINY_CORPUS) * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    return _with_eagle_tokens(fast)


@lru_cache(maxsize=1)
def _tiny() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


def _with_eagle_tokens(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    vocab = tokenizer.get_vocab()
    if not any(t in vocab for t in EAGLE_TOKENS if t != "assistant"):
        # a plain SmolLM2-style tokenizer: the 12 Eagle tokens at the next ids, in the official order, with
        # "assistant" an added token at its Eagle id even though the BPE vocabulary has it (as Eagle2 does)
        base = len(tokenizer)
        tokenizer.add_tokens(list(EAGLE_TOKENS), special_tokens=False)
        tokenizer = pin_declared_ids(tokenizer, {t: base + k for k, t in enumerate(EAGLE_TOKENS)})
    elif IMAGE_CONTEXT not in vocab or IMAGE_START not in vocab or IMAGE_END not in vocab:
        tokenizer.add_tokens([t for t in (IMAGE_START, IMAGE_END, IMAGE_CONTEXT) if t not in vocab])
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def declared_token_ids(directory: Path) -> dict[str, int]:
    """Explicit ids of added tokens in a tokenizer directory (``tokenizer_config.json``
    ``added_tokens_decoder``, else ``added_tokens.json``): what the official slow tokenizer encodes them as."""
    config = directory / "tokenizer_config.json"
    if config.is_file():
        decoder = json.loads(config.read_text()).get("added_tokens_decoder") or {}
        if decoder:
            return {entry["content"]: int(i) for i, entry in decoder.items()}
    added = directory / "added_tokens.json"
    return {k: int(v) for k, v in json.loads(added.read_text()).items()} if added.is_file() else {}


def pin_declared_ids(tokenizer: PreTrainedTokenizerBase, declared: dict[str, int]) -> PreTrainedTokenizerBase:
    """Give added tokens the ids their files declare when the loaded tokenizer disagrees.

    Eagle2 declares ``assistant`` = 49161 as an added token although SmolLM2's BPE vocabulary already holds
    "assistant" (another id). The official (slow) tokenizer encodes every "assistant" as 49161 - in the
    prompt's ``<|im_start|>assistant`` and inside "helpful assistant." - while a tokenizers-backed one (all
    of transformers 5) keeps the vocabulary id. The text is always split at added tokens first, so the BPE
    id of such a token is never produced: moving the vocabulary entry to the declared id gives the official
    encoding for every text (tokens after it, shifted by one, are moved back the same way)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    wrong = {t: i for t, i in declared.items() if tokenizer.convert_tokens_to_ids(t) not in (i, None)}
    if backend is None or not wrong:
        return tokenizer
    from tokenizers import Tokenizer

    spec = json.loads(backend.to_str())
    vocab = spec.get("model", {}).get("vocab")
    if not isinstance(vocab, dict):
        return tokenizer
    # every declared token goes into the vocabulary at its id, so that rebuilding the added vocabulary
    # (which looks each added token up in the vocabulary first) reproduces the declared ids
    taken = {i: t for t, i in vocab.items()}
    for token, token_id in declared.items():
        if taken.get(token_id, token) != token and taken[token_id] not in declared:
            raise ValueError(f"tokenizer: {token!r} is declared as id {token_id}, which the vocabulary gives to "
                             f"{taken[token_id]!r}")
        vocab[token] = token_id       # never produced by BPE: the text is split at added tokens first
    for entry in spec.get("added_tokens", []):
        if entry["content"] in declared:
            entry["id"] = declared[entry["content"]]
    tokenizer._tokenizer = Tokenizer.from_str(json.dumps(spec))
    still = {t: tokenizer.convert_tokens_to_ids(t) for t in wrong}
    if any(still[t] != wrong[t] for t in wrong):
        raise ValueError(f"tokenizer: could not give added tokens their declared ids (wanted {wrong}, got {still})")
    return tokenizer


def load_tokenizer(source: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer from a local directory, the built-in ``tiny`` one, or a Hugging Face name
    already in the local cache. Raises TokenizerNotFoundError (never downloads, never falls back)."""
    if str(source) == TINY_TOKENIZER_NAME:
        return _tiny()
    path = Path(source).expanduser()
    looks_like_path = path.is_absolute() or str(source).startswith((".", "~")) or path.exists()
    if looks_like_path and not path.is_dir():
        raise TokenizerNotFoundError(f"tokenizer directory {path} does not exist; pass a directory holding "
                                     "tokenizer.json / tokenizer_config.json, or a name in your Hugging Face cache")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path if looks_like_path else source), local_files_only=True)
    except (OSError, ValueError) as e:
        where = f"directory {path}" if looks_like_path else f"Hugging Face cache entry {source!r}"
        raise TokenizerNotFoundError(
            f"no tokenizer found in {where} ({e.__class__.__name__}: {str(e).splitlines()[0]}). GR00T N1 needs the "
            "SmolLM2 tokenizer with Eagle's image tokens: pass --tokenizer DIR (e.g. Isaac-GR00T's "
            "gr00t/model/backbone/eagle2_hg_model) or download HuggingFaceTB/SmolLM2-1.7B-Instruct into your cache "
            "first (huggingface-cli download ...)."
        ) from None
    if looks_like_path:
        tokenizer = pin_declared_ids(tokenizer, declared_token_ids(path))
    return _with_eagle_tokens(tokenizer)


def image_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    token_id = tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer has no {IMAGE_CONTEXT} token")
    return int(token_id)

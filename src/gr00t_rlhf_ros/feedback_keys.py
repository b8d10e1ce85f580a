"""What an operator's key press or typed line means (plain logic of feedback_node).

Single keys (terminal in raw mode): the keymap sends feedback keys; ``s``/``e``/``d`` start, end
and discard an episode; ``h`` prints help; ``q`` quits. Typed lines (stdin not a terminal, e.g. a
script) may also be an integer (``-3``) or a word (``start``, ``stop``, ``discard``, ``quit``).
"""
from __future__ import annotations

from dataclasses import dataclass

from gr00t_rlhf_train.feedback import FeedbackVocabulary

EPISODE_KEYS = {"s": "start", "e": "stop", "d": "discard", "q": "quit", "h": "help", "?": "help"}
WORDS = {"start": "start", "stop": "stop", "discard": "discard", "quit": "quit", "help": "help"}
# shifted digit row for negative scores on a US keyboard: ! -> -1 ... % -> -5
_NEGATIVE = "!@#$%"


@dataclass(frozen=True)
class Command:
    kind: str            # "feedback" | "start" | "stop" | "discard" | "quit" | "help"
    value: int | None = None


def default_keymap(vocab: FeedbackVocabulary) -> dict[str, int]:
    """Binary: g = good (1), b = bad (0). Scores: 0-9 = 0..9, !@#$% = -1..-5 (those in the vocabulary)."""
    if set(vocab.texts) == {0, 1}:
        return {"g": 1, "b": 0}
    keymap = {str(k): k for k in vocab.keys if 0 <= k <= 9}
    keymap.update({_NEGATIVE[-k - 1]: k for k in vocab.keys if -5 <= k <= -1})
    return keymap


def parse_keymap(entries: list[str], vocab: FeedbackVocabulary, where: str = "keymap") -> dict[str, int]:
    """``["g=1", "b=0"]`` -> {"g": 1, "b": 0}; every value must be a vocabulary key."""
    keymap = {}
    for e in entries:
        key, sep, value = e.partition("=")
        if not sep or len(key) != 1:
            raise ValueError(f"{where}: entry {e!r} must look like 'g=1' (one character, '=', a feedback key)")
        if key in EPISODE_KEYS:
            raise ValueError(f"{where}: key {key!r} is reserved for {EPISODE_KEYS[key]}")
        try:
            keymap[key] = vocab.check(int(value), where)
        except ValueError as err:
            raise ValueError(f"{where}: entry {e!r}: {err}") from None
    return keymap


def interpret(token: str, keymap: dict[str, int], vocab: FeedbackVocabulary) -> Command | None:
    """A key press or a typed line -> Command, or None when it means nothing (ignored)."""
    token = token.strip()
    if not token:
        return None
    if token in keymap:
        return Command("feedback", keymap[token])
    if token in EPISODE_KEYS:
        return Command(EPISODE_KEYS[token])
    if token.lower() in WORDS:
        return Command(WORDS[token.lower()])
    try:
        key = int(token)
    except ValueError:
        return None
    return Command("feedback", key) if key in vocab.texts else None


def help_text(keymap: dict[str, int], vocab: FeedbackVocabulary) -> str:
    lines = ["feedback keys:"]
    lines += [f"  {k}  -> {v:>2}  {vocab.texts[v]}" for k, v in keymap.items()]
    lines += ["  s start episode   e end (stop) episode   d discard episode   h help   q quit"]
    return "\n".join(lines)

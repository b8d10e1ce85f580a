"""Human feedback vocabularies: the integer keys an operator sends and what they mean.

A vocabulary maps keys to texts (``meta/rewards.jsonl`` of a dataset), names the JSON key its
rows use (``annotation.human.validity`` or ``annotation.human.score``), says which key holds
before any feedback arrives, and turns a key into the frame's ``next.reward``: binary
vocabularies (keys {0, 1}) give ``reward = key``; others (e.g. scores -5..5) give
``reward = key / max|key|`` (in [-1, 1]). Used by the recorder, the feedback node, the dataset
reader and writer, and the reward model's checkpoint.

Datasets store a frame's feedback in the ``annotation.human.validity`` column in one of two
styles; :func:`resolve_feedback_column` tells them apart (the rule is in its docstring):

- GR00T style (what our writer produces): every feedback text is a task of ``meta/tasks.jsonl``
  and the column holds its TASK INDEX, as for any ``annotation.<source>.<kind>`` column;
- seed style (the three seed datasets): the column holds the feedback KEY of ``rewards.jsonl``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

VALIDITY_KEY = "annotation.human.validity"
SCORE_KEY = "annotation.human.score"


@dataclass(frozen=True)
class FeedbackVocabulary:
    texts: dict[int, str]                 # key -> meaning, e.g. {0: "Doing bad", 1: "Doing good"}
    key_field: str = VALIDITY_KEY         # the JSON key of meta/rewards.jsonl rows
    default: int | None = None            # key in force before the operator says anything

    def __post_init__(self):
        if not self.texts:
            raise ValueError("FeedbackVocabulary.texts: at least one key is needed")
        bad = [(k, v) for k, v in self.texts.items()
               if not isinstance(k, int) or isinstance(k, bool) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"FeedbackVocabulary.texts: {bad!r}: keys must be integers and texts strings")
        if self.default is not None and self.default not in self.texts:
            raise ValueError(f"FeedbackVocabulary.default: {self.default!r} is not a key of {sorted(self.texts)}")
        seen: dict[str, int] = {}
        for k, v in sorted(self.texts.items()):
            if v in seen:
                raise ValueError(f"FeedbackVocabulary.texts: keys {seen[v]} and {k} share the text {v!r}; "
                                 "each key needs its own text (texts are stored as tasks)")
            seen[v] = k
        if self.key_field not in (VALIDITY_KEY, SCORE_KEY):
            raise ValueError(f"FeedbackVocabulary.key_field: {self.key_field!r} must be {VALIDITY_KEY!r} or {SCORE_KEY!r}")

    @classmethod
    def of(cls, texts: "dict[int, str] | FeedbackVocabulary", key_field: str = VALIDITY_KEY) -> "FeedbackVocabulary":
        return texts if isinstance(texts, FeedbackVocabulary) else cls({int(k): str(v) for k, v in texts.items()}, key_field)

    @property
    def is_binary(self) -> bool:
        return set(self.texts) <= {0, 1}

    def text(self, key: int) -> str | None:
        return self.texts.get(int(key))

    @property
    def keys(self) -> list[int]:
        return sorted(self.texts)

    def check(self, key: int, where: str = "feedback") -> int:
        """``key`` if it is in the vocabulary, else ValueError naming ``where`` and the allowed keys."""
        if key not in self.texts:
            raise ValueError(f"{where}: {key!r} is not a feedback key (allowed: {self.keys})")
        return key

    def reward(self, key: int) -> float:
        """The frame's ``next.reward`` for feedback ``key`` (see the module docstring)."""
        self.check(key)
        if self.is_binary:
            return float(key)
        return key / max(abs(k) for k in self.texts)

    def to_jsonl_rows(self) -> list[dict]:
        """The lines of ``meta/rewards.jsonl``."""
        return [{self.key_field: k, "feedback": self.texts[k]} for k in self.keys]

    def to_json(self) -> dict:
        return {"key_field": self.key_field, "default": self.default,
                "texts": {str(k): v for k, v in sorted(self.texts.items())}}

    @classmethod
    def from_json(cls, doc: dict) -> "FeedbackVocabulary":
        return cls({int(k): str(v) for k, v in doc["texts"].items()}, doc.get("key_field", VALIDITY_KEY),
                   doc.get("default"))

    @classmethod
    def from_rows(cls, rows: list[dict], where: str = "rewards.jsonl") -> "FeedbackVocabulary":
        """Parse the rows of a ``meta/rewards.jsonl`` (keyed by validity or by score)."""
        if not rows:
            raise ValueError(f"{where}: the feedback vocabulary is empty")
        texts, key_field = {}, None
        for i, row in enumerate(rows):
            col = next((c for c in (VALIDITY_KEY, SCORE_KEY) if c in row), None)
            key = row.get(col) if col else None
            if col is None or not isinstance(row.get("feedback"), str) or not isinstance(key, int) or isinstance(key, bool):
                raise ValueError(f"{where} line {i + 1}: needs an integer '{VALIDITY_KEY}' or '{SCORE_KEY}' "
                                 f"and a 'feedback' text: {row}")
            key_field = key_field or col
            texts[key] = row["feedback"]
        return cls(texts, key_field)


TASK_STYLE = "task-index"  # the column holds tasks.jsonl indices of feedback texts (GR00T, our writer)
KEY_STYLE = "key"  # the column holds feedback keys of rewards.jsonl (the seed datasets)


@dataclass(frozen=True)
class FeedbackColumn:
    """How a feedback column was read: its style, value -> feedback key, and a note if ambiguous."""
    style: str  # TASK_STYLE or KEY_STYLE
    keys: dict[int, int]  # stored value -> feedback key (for KEY_STYLE: identity; may hold unknown keys)
    note: str | None = None  # set when both readings were possible and differ
    unknown: tuple[int, ...] = ()  # KEY_STYLE values that are not keys of the vocabulary


def resolve_feedback_column(values: Iterable[int], tasks: Mapping[int, str], vocabulary: FeedbackVocabulary,
                            rewards: Mapping[int, Iterable[float]] | None = None) -> FeedbackColumn:
    """Decide how an ``annotation.human.validity`` column stores feedback, and map it to keys.

    Rule: the column holds TASK INDICES if every value is an index into ``tasks`` (tasks.jsonl)
    whose text is one of the vocabulary's texts; otherwise it holds feedback KEYS (seed style).
    When both readings are possible and give different keys, the ``next.reward`` values stored
    with each column value (``rewards``: value -> rewards seen, optional) decide if only one
    reading reproduces them through :meth:`FeedbackVocabulary.reward`; otherwise the task
    reading wins and ``note`` says so. ValueError (naming the values) when the column is mixed: some values only
    make sense as task indices of feedback texts and others are neither (not tasks of feedback
    texts, not keys). Values that are unknown keys in a key-style column are returned in
    ``unknown`` (the caller warns and falls back to the labels found in the data).
    """
    uniq = sorted({int(v) for v in values})
    by_text = {t: k for k, t in vocabulary.texts.items()}
    as_task = {v: by_text.get(tasks.get(v)) for v in uniq}  # value -> key via its task text (or None)
    if uniq and all(k is not None for k in as_task.values()):
        note = None
        if set(uniq) <= set(vocabulary.texts) and any(as_task[v] != v for v in uniq):
            def fits(key_of) -> bool:
                return all(abs(vocabulary.reward(key_of[v]) - float(r)) < 1e-4
                           for v in uniq for r in (rewards or {}).get(v, ()))
            task_fits, key_fits = fits(as_task), fits({v: v for v in uniq})
            if key_fits and not task_fits:
                return FeedbackColumn(KEY_STYLE, {v: v for v in uniq})
            if not (task_fits and not key_fits and rewards):
                note = (f"values {uniq} are both task indices of feedback texts and feedback keys; "
                        "read as task indices (GR00T style)")
        return FeedbackColumn(TASK_STYLE, as_task, note)
    unknown = tuple(v for v in uniq if v not in vocabulary.texts)
    task_only = [v for v in uniq if as_task[v] is not None and v not in vocabulary.texts]
    if task_only:
        not_task = [v for v in uniq if as_task[v] is None]
        raise ValueError(f"mixed feedback column: values {task_only} fit only as task indices of feedback texts, "
                         f"values {not_task} are not task indices of feedback texts; neither reading fits all")
    return FeedbackColumn(KEY_STYLE, {v: v for v in uniq}, None, unknown)


BINARY = FeedbackVocabulary({0: "Doing bad", 1: "Doing good"}, VALIDITY_KEY, default=1)
SCORE = FeedbackVocabulary({
    -5: "Extremely far from target, completely wrong direction",
    -4: "Very far off course with major navigation errors",
    -3: "Significant deviation from optimal path",
    -2: "Too distant from target, needs substantial correction",
    -1: "Slightly off target, minor course adjustment needed",
    0: "Neither close nor far",
    1: "Approaching target but still at distance",
    2: "Getting closer, acceptable distance range",
    3: "Good proximity to target location",
    4: "Very close to optimal position",
    5: "At the target position",
}, SCORE_KEY, default=0)
PRESETS = {"binary": BINARY, "score": SCORE}


def load_vocabulary(spec: str) -> FeedbackVocabulary:
    """``"binary"``, ``"score"``, or the path of a rewards.jsonl / vocabulary JSON file."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"feedback vocabulary {spec!r}: not a preset ({', '.join(PRESETS)}) and no such file")
    text = path.read_text()
    try:
        if path.suffix == ".jsonl":
            return FeedbackVocabulary.from_rows([json.loads(line) for line in text.splitlines() if line.strip()],
                                                str(path))
        return FeedbackVocabulary.from_json(json.loads(text))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a feedback vocabulary: {e}") from None

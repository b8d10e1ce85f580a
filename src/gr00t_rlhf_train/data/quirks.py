"""Collects the known defects ("quirks") a reader works around and warns once per kind.

The seed datasets are messy (architecture doc §4). Each workaround is reported through a
:class:`QuirkLog`: the first occurrence of a kind emits a :class:`DatasetQuirkWarning`, later ones
only bump a counter, so reading 100 episodes with the same defect warns once, not 100 times.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from gr00t_rlhf_train.data.errors import DatasetQuirkWarning


@dataclass
class Quirk:
    kind: str  # stable identifier, e.g. "state-width"
    message: str  # the first occurrence, naming the file and the field
    count: int = 1


class QuirkLog:
    def __init__(self, dataset: str, emit: bool = True):
        self.dataset = dataset
        self.emit = emit
        self.quirks: dict[str, Quirk] = {}

    def report(self, kind: str, message: str) -> None:
        q = self.quirks.get(kind)
        if q is not None:
            q.count += 1
            return
        self.quirks[kind] = Quirk(kind, message)
        if self.emit:
            warnings.warn(message, DatasetQuirkWarning, stacklevel=3)

    def __contains__(self, kind: str) -> bool:
        return kind in self.quirks

    def __iter__(self):
        return iter(self.quirks.values())

    def __len__(self) -> int:
        return len(self.quirks)

"""Check a whole dataset and list every problem: errors (unusable) and worked-around quirks."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gr00t_rlhf_train.data import features as F
from gr00t_rlhf_train.data.errors import DatasetError
from gr00t_rlhf_train.data.reader import LeRobotDataset


@dataclass
class ValidationReport:
    root: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dataset: LeRobotDataset | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def validate(root: str | Path, decode: bool = True) -> ValidationReport:
    """Open ``root``, load every episode and (``decode``) the first and last frame of every video."""
    rep = ValidationReport(Path(root))
    try:
        ds = LeRobotDataset(root, warn=False)
    except DatasetError as e:
        rep.errors.append(str(e))
        return rep
    rep.dataset = ds
    for i in range(ds.num_episodes):
        try:
            ep = ds.episode(i)
        except DatasetError as e:
            rep.errors.append(str(e))
            continue
        for key in ds.video_keys:
            try:
                v = ep.video(key)
                if decode:
                    v.frame(0)
                    v.frame(len(v) - 1)
            except DatasetError as e:
                rep.errors.append(str(e))
    if not rep.errors:
        try:
            ds.stats  # noqa: B018 - reports a stale stats.json as a quirk
        except DatasetError as e:
            rep.errors.append(str(e))
    staging = ds.root / F.STAGING_DIR
    if staging.is_dir() and any(staging.iterdir()):
        rep.warnings.append(f"{staging}: holds an interrupted episode; DatasetWriter.resume() recovers or discards it")
    for q in ds.quirks:
        rep.warnings.append(q.message + (f" (and {q.count - 1} more)" if q.count > 1 else ""))
    ds.close()
    return rep

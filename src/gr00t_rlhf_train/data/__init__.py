"""LeRobot v2.0 (GR00T flavour) datasets: reading, crash-safe writing, video, stats, time alignment,
and the frame cache that training reads.

    from gr00t_rlhf_train.data import LeRobotDataset, DatasetWriter, Aligner, SourceSpec

The names are imported on first use: the frame cache (``data.cache``, ``data.samples``) must load
on a GPU machine that has no video decoder (PyAV), which only the reader and writer need.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "AlignedFrame": "align", "Aligner": "align", "Message": "align", "SourceSpec": "align",
    "align_offline": "align", "merge_streams": "align",
    "DatasetError": "errors", "DatasetQuirkWarning": "errors", "DatasetWriteError": "errors",
    "Episode": "reader", "LeRobotDataset": "reader",
    "DatasetWriter": "writer", "EpisodeWriter": "writer",
    "FrameCache": "cache", "CachedEpisode": "cache", "build_cache": "cache",
}
__all__ = sorted(_EXPORTS) + ["FeedbackVocabulary"]


def __getattr__(name: str):
    if name == "FeedbackVocabulary":
        from gr00t_rlhf_train.feedback import FeedbackVocabulary
        return FeedbackVocabulary
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

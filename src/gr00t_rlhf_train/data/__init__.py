"""LeRobot v2.0 (GR00T flavour) datasets: reading, crash-safe writing, video, stats, time alignment.

    from gr00t_rlhf_train.data import LeRobotDataset, DatasetWriter, Aligner, SourceSpec
"""
from gr00t_rlhf_train.data.align import AlignedFrame, Aligner, Message, SourceSpec, align_offline, merge_streams
from gr00t_rlhf_train.data.errors import DatasetError, DatasetQuirkWarning, DatasetWriteError
from gr00t_rlhf_train.feedback import FeedbackVocabulary
from gr00t_rlhf_train.data.reader import Episode, LeRobotDataset
from gr00t_rlhf_train.data.writer import DatasetWriter, EpisodeWriter

__all__ = [
    "AlignedFrame", "Aligner", "DatasetError", "DatasetQuirkWarning", "DatasetWriteError", "DatasetWriter",
    "Episode", "EpisodeWriter", "LeRobotDataset", "Message", "SourceSpec", "FeedbackVocabulary", "align_offline",
    "merge_streams",
]

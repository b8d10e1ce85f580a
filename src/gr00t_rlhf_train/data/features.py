"""Feature keys and fixed names of the LeRobot v2.0 (GR00T flavour) datasets of this project.

Every other module names columns, meta files and modality keys through these constants, so a
renamed key is a one-line change. The same names are listed in ``config/contract.yaml``.
"""
from __future__ import annotations

# parquet columns
STATE = "observation.state"
ACTION = "action"
TIMESTAMP = "timestamp"
TASK_DESCRIPTION = "annotation.human.action.task_description"
TASK_INDEX = "task_index"
VALIDITY = "annotation.human.validity"
SCORE = "annotation.human.score"  # the key of score vocabularies (-5..5) in some rewards.jsonl
EPISODE_INDEX = "episode_index"
INDEX = "index"
REWARD = "next.reward"
DONE = "next.done"

# video
EGO_VIEW = "observation.images.ego_view"
VIDEO_KEYS = (EGO_VIEW,)

# names of the vector entries
STATE_NAMES = ("left_wheel", "right_wheel", "acceleration")
ACTION_NAMES = ("left_wheel", "right_wheel")

# modality.json keys (GR00T): "<group>.<name>" -> (source column, start, end)
MODALITY_STATE = {
    "state.left_wheel": (STATE, 0, 1),
    "state.right_wheel": (STATE, 1, 2),
    "state.acceleration": (STATE, 2, 3),
}
MODALITY_ACTION = {"action.wheel_commands": (ACTION, 0, 2)}
MODALITY_VIDEO = {"video.ego_view": EGO_VIEW}
MODALITY_ANNOTATION = ("annotation.human.action.task_description", "annotation.human.validity")
EMBODIMENT_TAG = "new_embodiment"

# numeric columns that get statistics in meta/stats.json
STATS_KEYS = (STATE, ACTION, TIMESTAMP, REWARD, VALIDITY, TASK_INDEX)
STAT_NAMES = ("mean", "std", "min", "max", "q01", "q99")

# layout
CODEBASE_VERSION = "v2.0"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
META_DIR = "meta"
INFO = "meta/info.json"
EPISODES = "meta/episodes.jsonl"
TASKS = "meta/tasks.jsonl"
MODALITY = "meta/modality.json"
STATS = "meta/stats.json"
REWARDS = "meta/rewards.jsonl"
STAGING_DIR = ".staging"

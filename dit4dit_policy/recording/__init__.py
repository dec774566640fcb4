"""Teleoperation recording without ROS: one ROS 2 bag (MCAP, written with rosbags) per episode,
episode metadata, and recovery of episodes a crash or kill interrupted.

The layout and every field of episode.json: `dit4dit_policy.recording.episode`. The ROS node that
feeds it: `dit4dit_policy.nodes.recorder_node`.
"""

from dit4dit_policy.recording.config import RecorderConfig
from dit4dit_policy.recording.episode import (
    EpisodeInfo,
    claim_output_dir,
    episode_folder,
    episode_folders,
    joint_table_hash,
    next_episode_index,
    read_episode,
)
from dit4dit_policy.recording.queue import ByteQueue
from dit4dit_policy.recording.recovery import (
    BagRepair,
    recover_episode,
    remove_discarded,
    repair_bag,
    unfinished_episodes,
)
from dit4dit_policy.recording.writer import EpisodeWriter, TopicSpec, WriterStats

__all__ = [
    "BagRepair",
    "ByteQueue",
    "EpisodeInfo",
    "EpisodeWriter",
    "RecorderConfig",
    "TopicSpec",
    "WriterStats",
    "claim_output_dir",
    "episode_folder",
    "episode_folders",
    "joint_table_hash",
    "next_episode_index",
    "read_episode",
    "recover_episode",
    "remove_discarded",
    "repair_bag",
    "unfinished_episodes",
]

"""Recorded demonstrations -> LeRobot datasets -> training samples.

- `bag_episode`: one teleop recorder episode (rosbag2 MCAP + episode.json) as stamp-ordered arrays
- `xr_import`: episodes recorded by Unitree's XR teleoperation tool
- `convert`: either kind -> a LeRobot v2.1 dataset (`dit4dit convert`), resampled with the policy
  node's own pairing rules (`dit4dit_policy.policy.sync`)
- `lerobot`, `video`: the dataset layout (ours and GR00T-flavoured v2.0/v2.1) and its mp4 videos
- `dataset`: `open_training_dataset`, the samples DiT4DiT trains on
- `synthetic`: recordings with known content, for tests and benchmarks
"""

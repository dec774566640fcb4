"""DiT4DiT video-action policy on the Unitree G1: model, safety, robot link and ROS 2 nodes."""

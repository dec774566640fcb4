"""Evaluating a policy on recorded episodes: open loop (each recorded observation through the node's
preprocessing and serving path, chunks compared with the recorded actions) and closed loop (a bag
replayed into the running stack, the commands recorded and compared between checkpoints).

The core modules (open_loop, playback, metrics, replay_record, compare, plots) never import ROS;
`replay` drives the real nodes and `cli` adds the `dit4dit` subcommands.
"""

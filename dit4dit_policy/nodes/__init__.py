"""Thin rclpy nodes: parameters, QoS, timers and message conversion; the logic lives in the core."""

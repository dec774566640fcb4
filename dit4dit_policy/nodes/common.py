"""What every node of the package does the same way: stamps to seconds, and spinning until
Ctrl-C or SIGTERM with the node's own stop (damping, worker shutdown) run before it goes; and the
base of the package's ROS clients (`RosClient`)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def stamp_seconds(stamp: Time) -> float:
    return stamp.sec + 1e-9 * stamp.nanosec


def spin_until_shutdown(node: Node, stop: Callable[[], None]) -> None:
    """Spin `node` until Ctrl-C or SIGTERM, then call `stop`, destroy the node and shut down.

    Single-threaded: rclpy's MultiThreadedExecutor busy-spins a core while a callback of a
    mutually exclusive group runs (measured: 94 % CPU). SIGTERM (systemd, launch) is turned into
    the same orderly path as Ctrl-C, never a kill in mid-command.
    """
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A callback that was publishing when the shutdown invalidated the context fails with an
        # RCLError; after a requested shutdown that is the shutdown, not a fault.
        if rclpy.ok():
            raise
    finally:
        stop()
        node.destroy_node()
        rclpy.try_shutdown()


class RosClient:
    """A node in an rclpy context of its own, spun by a thread of its own, so that a client can
    live beside anything else (the demo, a benchmark, a test, another client). Subclasses create
    their publishers, subscriptions and service clients on `self.node`, then call `start_spinning()`."""

    def __init__(self, domain_id: int, name: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self.closing = threading.Event()
        self._threads: list[threading.Thread] = []

    def start_spinning(self, *workers: Callable[[], None]) -> None:
        """Start spinning, and any extra worker loops (they should return once `closing` is set)."""
        for target in (self._spin, *workers):
            thread = threading.Thread(target=target, name=f"{self.node.get_name()}-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spin(self) -> None:
        while not self.closing.is_set():
            self._executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.closing.set()
        for thread in self._threads:
            thread.join(2.0)
        self._executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

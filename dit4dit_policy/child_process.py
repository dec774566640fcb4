"""Calls into a child process over a multiprocessing Pipe: what the motor-loop process and the
simulator process share. The child answers each `(method, args)` request with `("ok", result)` or
`("error", exception)` until it is sent "close" or its parent is gone; the parent side waits for
the answer with a timeout and raises the child's exception as its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def serve_calls(conn: Any, methods: tuple[str, ...], call: Callable[[str, tuple], Any], what: str) -> None:
    """Answer requests until "close" or the parent is gone; `call(method, args)` does the work."""
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if method == "close":
            return
        if method not in methods:
            conn.send(("error", ValueError(f"unknown {what} call {method!r}")))
            continue
        try:
            result = call(method, args)
        except Exception as e:
            conn.send(("error", e))
        else:
            conn.send(("ok", result))


class ChildCalls:
    """The parent's end: one call at a time (a lock), each answered within its timeout."""

    def __init__(self, conn: Any, proc: Any, name: str):
        self.conn, self.proc, self.name = conn, proc, name
        self.lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def wait(self, timeout: float, what: str) -> Any:
        """The next answer (the child's exception raised here); the caller holds the lock or is alone."""
        if not self.conn.poll(timeout):
            raise RuntimeError(f"{self.name} did not answer {what} within {timeout} s (alive: {self.alive})")
        kind, value = self.conn.recv()
        if kind == "error":
            raise value
        return value

    def call(self, method: str, *args: Any, timeout: float) -> Any:
        with self.lock:
            if not self.alive:
                raise RuntimeError(f"{self.name} is not running (exit code {self.proc.exitcode})")
            self.conn.send((method, args))
            return self.wait(timeout, method)

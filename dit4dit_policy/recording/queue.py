"""A FIFO bounded by the bytes it holds, between the threads that receive messages and the one
that writes them: memory stays bounded however far the writer falls behind."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class ByteQueue(Generic[T]):
    """Items with a size in bytes. `put` refuses (returns False) an item that would take the total
    past `max_bytes`, so the caller can count the drop; it never blocks the receiving thread."""

    def __init__(self, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._peak = 0
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T, nbytes: int, force: bool = False) -> bool:
        """Append `item`; False if it does not fit or the queue is closed. `force` admits it past the
        bound (for the recorder's own few small markers, which must never be lost)."""
        with self._cond:
            if self._closed or (not force and self._bytes + nbytes > self.max_bytes):
                return False
            self._items.append((item, nbytes))
            self._bytes += nbytes
            self._peak = max(self._peak, self._bytes)
            self._cond.notify()
            return True

    def get(self, timeout: float | None) -> T | None:
        """The oldest item, waiting up to `timeout` s; None on timeout or once closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            item, nbytes = self._items.popleft()
            self._bytes -= nbytes
            return item

    def close(self, discard: bool = False) -> None:
        """Refuse further puts; `get` drains what is left (nothing, with `discard`), then returns None."""
        with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
                self._bytes = 0
            self._cond.notify_all()

    @property
    def closed_and_empty(self) -> bool:
        with self._cond:
            return self._closed and not self._items

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def peak_bytes(self) -> int:
        return self._peak

    def __len__(self) -> int:
        return len(self._items)

"""One episode as one ROS 2 bag (MCAP, written with rosbags), fed from any thread, written by one
thread of its own through a queue bounded in bytes.

What a crash or kill can lose: rosbags closes an MCAP chunk once it holds 1 MiB; each closed chunk
is handed to the operating system at once, and at least every `flush_period` seconds the pending
chunk is closed too and the file fsync'ed. `recover_episode` makes such a file readable up to its
last complete chunk.

Memory: the queue holds at most `max_queue_bytes`; rosbags holds the pending chunk (about 1 MiB)
and, for the bag's index, about 100 bytes per closed chunk (some 20 MB per hour of two raw
640x480 cameras at 30 Hz), released when the episode ends.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from dit4dit_policy.recording.episode import EpisodeInfo, marker, write_episode
from dit4dit_policy.recording.queue import ByteQueue
from dit4dit_policy.recording.recovery import repair_bag

STRING = "std_msgs/msg/String"
# A queued message costs its payload plus the tuple, int and bytes object headers around it.
_ITEM_OVERHEAD = 100


@cache
def typestore() -> Typestore:
    """Message definitions written into the bags (ROS 2 Jazzy; the CDR of these types is the same on Humble)."""
    return get_typestore(Stores.ROS2_JAZZY)


def string_cdr(text: str) -> bytes:
    """A std_msgs/msg/String as CDR bytes."""
    store = typestore()
    return bytes(store.serialize_cdr(store.types[STRING](data=text), STRING))


@dataclass(frozen=True)
class TopicSpec:
    name: str
    msgtype: str  # e.g. "sensor_msgs/msg/Image"


class _Counts:
    __slots__ = ("received", "written", "dropped_full", "dropped_error")

    def __init__(self) -> None:
        # Each counter has one writing thread: received/dropped_full the callers', the rest the writer's.
        self.received = self.written = self.dropped_full = self.dropped_error = 0

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_error


@dataclass(frozen=True)
class WriterStats:
    received: dict[str, int]
    written: dict[str, int]
    dropped: dict[str, int]
    queue_bytes: int
    queue_peak_bytes: int
    max_queue_bytes: int
    flushed: int  # messages in chunks handed to the operating system (what a kill of the process cannot lose)
    bag_bytes: int
    error: str | None


class EpisodeWriter:
    """Creates `folder` as a rosbag2 folder (refusing an existing one), writes the start marker, any
    `initial` messages (e.g. the latched instruction) and episode.json, then records what `write`
    is given until `close` or `discard`."""

    def __init__(
        self,
        folder: Path,
        topics: Sequence[TopicSpec],
        marker_topic: str,
        info: EpisodeInfo,
        *,
        max_queue_bytes: int,
        flush_period: float,
        start_ns: int,
        initial: Iterable[tuple[str, bytes]] = (),
    ):
        folder = Path(folder)
        names = [t.name for t in topics] + [marker_topic]
        if len(set(names)) != len(names):
            raise ValueError(f"a topic is listed twice: {names}")
        unknown = [t.msgtype for t in topics if t.msgtype not in typestore().fielddefs]
        if unknown:
            raise ValueError(f"unknown message types {unknown}")
        if flush_period <= 0:
            raise ValueError(f"flush_period must be > 0 s, got {flush_period}")
        if folder.exists():
            raise FileExistsError(f"episode folder {folder} already exists; refusing to overwrite it")
        self.folder = folder
        self.info = info
        self.mcap = folder / f"{folder.name}.mcap"
        self.flush_period = flush_period
        self._queue: ByteQueue[tuple[str, int, bytes]] = ByteQueue(max_queue_bytes)
        self._marker_topic = marker_topic
        self._counts = {name: _Counts() for name in names}
        self._last_ts = start_ns
        self._chunks = self._flushed = 0
        self._synced = -1
        self.error: str | None = None

        folder.parent.mkdir(parents=True, exist_ok=True)
        self._bag = Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP)
        try:
            self._bag.open()
        except WriterError as e:  # created by someone else since the check above
            raise FileExistsError(f"episode folder {folder}: {e}") from e
        try:
            self._connections = {
                t.name: self._bag.add_connection(t.name, t.msgtype, typestore=typestore()) for t in topics
            }
            self._connections[marker_topic] = self._bag.add_connection(marker_topic, STRING, typestore=typestore())
            info.topics = {t.name: {"type": t.msgtype, "messages": 0, "dropped": 0} for t in topics}
            info.topics[marker_topic] = {"type": STRING, "messages": 0, "dropped": 0}
            info.start_time_ns = start_ns
            for topic, data in [(marker_topic, string_cdr(marker("start", info))), *initial]:
                self._counts[topic].received += 1
                self._write_now(topic, start_ns, data)
            self._sync()  # the connections and the start are on disk before anything else is
            write_episode(folder, info)
        except BaseException:
            with suppress(Exception):
                self._bag.abort()
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name=f"recorder-{folder.name}", daemon=True)
        self._thread.start()

    # Any thread ---------------------------------------------------------------------------------
    def write(self, topic: str, timestamp_ns: int, data: bytes) -> bool:
        """Queue one serialized message; False if it was dropped (queue full, or no longer recording)."""
        counts = self._counts.get(topic)
        if counts is None:
            raise ValueError(f"topic {topic!r} is not recorded in this episode; recorded: {sorted(self._counts)}")
        if not self._accepting:
            return False
        counts.received += 1
        if not self._queue.put((topic, timestamp_ns, data), len(data) + _ITEM_OVERHEAD):
            counts.dropped_full += 1
            return False
        return True

    def stats(self) -> WriterStats:
        try:
            size = self.mcap.stat().st_size
        except FileNotFoundError:
            size = 0
        return WriterStats(
            received={t: c.received for t, c in self._counts.items()},
            written={t: c.written for t, c in self._counts.items()},
            dropped={t: c.dropped for t, c in self._counts.items()},
            queue_bytes=self._queue.nbytes,
            queue_peak_bytes=self._queue.peak_bytes,
            max_queue_bytes=self._queue.max_bytes,
            flushed=self._flushed,
            bag_bytes=size,
            error=self.error,
        )

    # The owner's thread -------------------------------------------------------------------------
    def close(self, success: bool | None, end_ns: int, status: str = "complete") -> EpisodeInfo:
        """Write the stop marker, drain the queue, finish the bag and episode.json. `status`
        "interrupted" is for a recorder stopping on its own (shutdown); a write error makes it so too."""
        info = self.info
        info.status = status
        info.success = success if status == "complete" else None
        self._accepting = False
        stop = string_cdr(marker("stop", info))
        self._counts[self._marker_topic].received += 1
        self._queue.put((self._marker_topic, end_ns, stop), len(stop), force=True)
        self._queue.close()
        self._thread.join()
        if self.error is None:
            try:
                self._bag.close()
            except Exception as e:  # noqa: BLE001 (any failure to finish is reported, the data recovered)
                self.error = f"{type(e).__name__}: {e}"
        counts = {t: c.written for t, c in self._counts.items()}
        end = self._last_ts
        if self.error is not None:
            with suppress(Exception):
                self._bag.abort()
            repair = repair_bag(self.folder)
            counts, end = repair.counts, repair.end_ns
            info.status, info.success, info.error = "interrupted", None, self.error
            info.recovery = repair.as_record()
        else:
            for path in (self.mcap, self.folder / "metadata.yaml"):
                _fsync(path)
        for topic, entry in info.topics.items():
            entry["messages"] = counts.get(topic, 0)
            # After a failed write this includes what was in the chunk that never reached the disk.
            entry["dropped"] = self._counts[topic].received - entry["messages"]
        info.dropped = sum(entry["dropped"] for entry in info.topics.values())
        info.end_time_ns = end
        info.duration_s = (end - info.start_time_ns) / 1e9
        write_episode(self.folder, info)
        return info

    def discard(self) -> None:
        """Stop and delete the episode folder (renamed first, so no half-deleted episode_NNNNNN remains)."""
        self._accepting = False
        self._queue.close(discard=True)
        self._thread.join()
        with suppress(Exception):
            self._bag.abort()
        trash = self.folder.with_name(f".discarded-{self.folder.name}-{uuid.uuid4().hex[:8]}")
        self.folder.rename(trash)
        shutil.rmtree(trash)

    # Writer thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        next_sync = time.monotonic() + self.flush_period
        while True:
            item = self._queue.get(timeout=max(0.0, next_sync - time.monotonic()))
            if item is not None:
                topic, ts, data = item
                if self.error is None:
                    try:
                        self._write_now(topic, ts, data)
                    except Exception as e:  # noqa: BLE001 (a failed write ends writing and is reported, never silent)
                        self.error = f"{type(e).__name__}: {e}"
                        self._counts[topic].dropped_error += 1
                else:
                    self._counts[topic].dropped_error += 1
            elif self._queue.closed_and_empty:
                return
            if self.error is None and time.monotonic() >= next_sync:
                try:
                    self._sync()
                except OSError as e:
                    self.error = f"{type(e).__name__}: {e}"
                next_sync = time.monotonic() + self.flush_period

    def _write_now(self, topic: str, ts: int, data: bytes) -> None:
        # Bag time never decreases, so a bag recovered without an index still reads in order.
        ts = max(ts, self._last_ts)
        self._bag.write(self._connections[topic], ts, data)
        self._last_ts = ts
        self._counts[topic].written += 1
        # rosbags closes a chunk at 1 MiB into its file object's buffer: hand it to the OS at once.
        storage = self._bag.storage
        if len(storage.chunks) != self._chunks:
            storage.bio.flush()
            self._chunks = len(storage.chunks)
            self._flushed = self._written_total()

    def _sync(self) -> None:
        """Close the pending chunk (rosbags' McapWriter keeps it in memory until 1 MiB) and fsync."""
        total = self._written_total()
        if total == self._synced:
            return
        storage = self._bag.storage
        if storage.chunk.bio.tell():
            storage.close_chunk()
        storage.bio.flush()
        os.fsync(storage.bio.fileno())
        self._chunks = len(storage.chunks)
        self._flushed = self._synced = total

    def _written_total(self) -> int:
        return sum(c.written for c in self._counts.values())


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())

"""Playing chosen topics of a recorded bag back at their recorded timing, without ROS: which message
goes out when, and with which header stamp. The bag_player node only creates publishers and hands
them what this gives it, as the recorded CDR bytes.

Timing: message i of loop pass p is due (log_i - bag_start + p * period) / speed seconds after
playback starts, on the monotonic clock. The schedule is absolute: a late publication (a slow
read, a busy core) delays that message only, never the ones after it. `period` is the bag's span
plus its mean message interval, so a loop's next pass starts one interval after the last message.

Stamps: a header stamp s becomes start_stamp + (s - bag_start + p * period) / speed, start_stamp
being the wall-clock time playback started. Stamps keep their offsets from the messages' recorded
timing (a camera's exposure delay stays), scaled by the speed, and come out near "now", so the
policy node's staleness checks pass; each loop pass stamps later than the one before. An all-zero
stamp stays zero: it means "stamp on arrival" to its receiver.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dit4dit_policy.data.bag_episode import BagFormatError

HEADER_TYPE = "std_msgs/msg/Header"
# Plain CDR (XCDR1, what ROS 2 writes) encapsulation ids -> struct byte order.
_BYTE_ORDER = {b"\x00\x00": ">", b"\x00\x01": "<"}
_STAMP_AT = 4  # after the 4-byte encapsulation header, a leading Header starts with stamp.sec, stamp.nanosec
_INT32_MAX = 2**31 - 1


def header_stamp_ns(raw: bytes) -> int:
    """The header stamp (ns) of a CDR message whose first field is a std_msgs/Header."""
    order = _byte_order(raw)
    sec, nanosec = struct.unpack_from(f"{order}iI", raw, _STAMP_AT)
    return sec * 10**9 + nanosec


def with_header_stamp(raw: bytes, stamp_ns: int) -> bytes:
    """A copy of a CDR message whose first field is a std_msgs/Header, with its stamp replaced."""
    order = _byte_order(raw)
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    if not 0 <= sec <= _INT32_MAX:
        raise ValueError(f"stamp {stamp_ns} ns does not fit a builtin_interfaces/Time")
    out = bytearray(raw)
    struct.pack_into(f"{order}iI", out, _STAMP_AT, sec, nanosec)
    return bytes(out)


def _byte_order(raw: bytes) -> str:
    if len(raw) < _STAMP_AT + 8:
        raise ValueError(f"a {len(raw)}-byte message cannot hold a CDR header stamp")
    order = _BYTE_ORDER.get(bytes(raw[:2]))
    if order is None:
        raise ValueError(f"not a plain CDR message (encapsulation {bytes(raw[:2]).hex()}): cannot restamp it")
    return order


@dataclass(frozen=True)
class Timeline:
    """Recorded time -> playback time and stamps (module docstring). All times in ns except offsets."""

    bag_start: int  # ns, the bag's first log time
    period: int  # ns of recorded time from one loop pass to the next
    speed: float

    def __post_init__(self) -> None:
        if isinstance(self.speed, bool) or not isinstance(self.speed, int | float) or not math.isfinite(self.speed):
            raise ValueError(f"speed must be a finite number > 0, got {self.speed!r}")
        if self.speed <= 0:
            raise ValueError(f"speed must be a finite number > 0, got {self.speed!r}")
        if self.period <= 0:
            raise ValueError(f"a loop pass must last > 0 ns, got {self.period}")

    @classmethod
    def of_bag(cls, start: int, end: int, count: int, speed: float) -> Timeline:
        """For a bag whose messages span start..end ns (log times), `count` of them."""
        if count < 1 or end < start:
            raise ValueError(f"need at least one message and end >= start, got {count} over {start}..{end}")
        span = end - start
        interval = span // (count - 1) if count > 1 else 0
        return cls(bag_start=start, period=max(span + interval, 1), speed=speed)

    def due(self, log_time: int, loop_pass: int) -> float:
        """Seconds after playback start when a message logged at `log_time` goes out in `loop_pass`."""
        return (log_time - self.bag_start + loop_pass * self.period) * 1e-9 / self.speed

    def restamp(self, stamp: int, loop_pass: int, start_stamp: int) -> int:
        """The header stamp (ns) a message recorded with `stamp` carries in `loop_pass` of a
        playback that started at wall-clock `start_stamp`; 0 stays 0."""
        if stamp == 0:
            return 0
        return start_stamp + round((stamp - self.bag_start + loop_pass * self.period) / self.speed)

    def recorded_time(self, stamp: int, start_stamp: int) -> float:
        """Inverse of `restamp` for pass 0: seconds of recorded time since the bag's start."""
        return (stamp - start_stamp) * self.speed * 1e-9


@dataclass
class PlayStats:
    published: dict[str, int] = field(default_factory=dict)  # messages per topic
    lateness: list[float] = field(default_factory=list)  # s each message went out after it was due
    passes: int = 0  # loop passes begun
    stopped: bool = False  # ended by a stop request rather than by the bag's end

    def lateness_ms(self) -> dict[str, float]:
        if not self.lateness:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        ms = np.asarray(self.lateness) * 1e3
        return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}


Message = tuple[str, int, bytes]  # (topic, log time ns, CDR bytes)


def play(
    messages: Callable[[], Iterable[Message]],
    timeline: Timeline,
    has_header: Mapping[str, bool],
    publish: Callable[[str, bytes], None],
    wait: Callable[[float], bool],
    *,
    loop: bool = False,
    clock: Callable[[], float] = time.monotonic,
    stamp_clock: Callable[[], int] = time.time_ns,
    on_pass: Callable[[int, int, PlayStats], None] = lambda loop_pass, start_stamp, stats: None,
) -> PlayStats:
    """Publish what `messages()` yields (one pass, in log-time order) at its due time, restamped,
    once or until stopped if `loop`. `wait(seconds)` sleeps up to that long and answers True when
    playback is to stop (threading.Event.wait). `on_pass(pass, start_stamp, stats)` is called as
    each pass begins, with the wall-clock stamp (ns) playback started at and the figures so far."""
    stats = PlayStats()
    start, start_stamp = clock(), stamp_clock()
    loop_pass = 0
    while True:
        on_pass(loop_pass, start_stamp, stats)
        stats.passes += 1
        for topic, log_time, raw in messages():
            due = start + timeline.due(log_time, loop_pass)
            delay = due - clock()
            if wait(max(delay, 0.0)):
                stats.stopped = True
                return stats
            if has_header[topic]:
                raw = with_header_stamp(raw, timeline.restamp(header_stamp_ns(raw), loop_pass, start_stamp))
            stats.lateness.append(max(clock() - due, 0.0))
            publish(topic, raw)
            stats.published[topic] = stats.published.get(topic, 0) + 1
        if not loop:
            return stats
        loop_pass += 1


@dataclass(frozen=True)
class BagTopic:
    name: str
    msgtype: str  # e.g. sensor_msgs/msg/Image
    has_header: bool  # its first field is a std_msgs/Header (so it is restamped)
    count: int


class BagSource:
    """Chosen topics of one rosbag2 folder, as recorded CDR in log-time order (read again on each
    pass, so that an episode's camera frames never all sit in memory)."""

    def __init__(self, folder: str | Path, topics: Sequence[str]):
        from rosbags.highlevel import AnyReader  # heavy; only reading bags needs it

        self.folder = Path(folder)
        if not topics:
            raise ValueError("no topics to play: name at least one")
        if not (self.folder / "metadata.yaml").is_file():
            raise FileNotFoundError(f"{self.folder}: not a rosbag2 folder (no metadata.yaml)")
        try:
            with AnyReader([self.folder]) as reader:
                recorded = {c.topic: c for c in reader.connections}
                missing = [t for t in topics if t not in recorded]
                if missing:
                    raise BagFormatError(f"{self.folder}: no topic(s) {missing} in the bag; it has {sorted(recorded)}")
                self.topics = {
                    t: BagTopic(
                        t,
                        recorded[t].msgtype,
                        _leading_header(reader.typestore, recorded[t].msgtype),
                        sum(c.msgcount for c in reader.connections if c.topic == t),
                    )
                    for t in dict.fromkeys(topics)
                }
                self.start, self.end, self.count = reader.start_time, reader.end_time, reader.message_count
        except BagFormatError:
            raise
        except Exception as e:  # rosbags raises many kinds for a damaged bag; all mean "unreadable"
            raise BagFormatError(f"{self.folder}: unreadable bag: {e}") from e
        empty = [t for t, info in self.topics.items() if info.count == 0]
        if empty:
            raise BagFormatError(f"{self.folder}: topic(s) {empty} have no messages")

    def timeline(self, speed: float) -> Timeline:
        """Timing over the whole bag (all topics), so a bag plays with its own start and length
        whichever topics are chosen."""
        return Timeline.of_bag(self.start, self.end, self.count, speed)

    def messages(self) -> Iterator[Message]:
        from rosbags.highlevel import AnyReader

        with AnyReader([self.folder]) as reader:
            connections = [c for c in reader.connections if c.topic in self.topics]
            for connection, log_time, raw in reader.messages(connections=connections):
                yield connection.topic, log_time, bytes(raw)


def _leading_header(typestore: object, msgtype: str) -> bool:
    fields = typestore.fielddefs[msgtype][1]  # type: ignore[attr-defined]
    return bool(fields) and fields[0][0] == "header" and fields[0][1][1] == HEADER_TYPE

"""Make an episode that was never finished (crash, kill, power loss, failed write) readable.

A bag interrupted while being written is an MCAP file without its summary and footer: rosbags
refuses it ("File end magic is invalid"). `repair_bag` keeps every complete record from the start
of the file, cuts an incomplete tail (a chunk or index record the writer did not finish), appends a
data-end record and a footer without a summary section (the MCAP form of an unindexed file,
which rosbags and other MCAP readers read by a linear scan), and writes the rosbag2 metadata.yaml
from what rosbags then reads in it. `recover_episode` also marks episode.json "interrupted".

Record framing per the MCAP specification: magic, then records of (opcode u8, length u64, body),
little-endian.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from dit4dit_policy.recording.episode import (
    EPISODE_JSON,
    EpisodeInfo,
    episode_folders,
    episode_index,
    read_episode,
    utc_now,
    write_episode,
)

MAGIC = b"\x89MCAP0\r\n"
_HEADER, _FOOTER, _CHUNK, _DATA_END = 0x01, 0x02, 0x06, 0x0F
# Records that may stand in a data section (schema, channel, message, chunk, message index,
# attachment, metadata); anything else, e.g. the zeros a file system leaves after a power loss,
# ends the readable part.
_DATA_OPS = {0x03, 0x04, 0x05, 0x06, 0x07, 0x09, 0x0C}
_CHUNK_OPS = {0x03, 0x04, 0x05}
_RECORD = struct.Struct("<BQ")
_CHUNK_HEAD = struct.Struct("<QQQI")
_TRAILER = struct.Struct("<BQI").pack(_DATA_END, 4, 0) + struct.Struct("<BQQQI").pack(_FOOTER, 20, 0, 0, 0) + MAGIC


@dataclass(frozen=True)
class BagRepair:
    """What `repair_bag` found: message counts per topic, bag time range, and what it changed."""

    counts: dict[str, int]
    types: dict[str, str]
    start_ns: int | None
    end_ns: int | None
    bytes_discarded: int
    indexed: bool  # False: the .mcap has no summary (it was repaired) and is read by a linear scan

    def as_record(self) -> dict[str, Any]:
        return {"recovered_at": utc_now(), "bytes_discarded": self.bytes_discarded, "indexed": self.indexed}


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<I", len(data)) + data


def _chunk_is_whole(body: bytes) -> bool:
    """A chunk whose declared sizes, checksum and inner records all add up."""
    if len(body) < _CHUNK_HEAD.size + 4:
        return False
    _, _, uncompressed_size, crc = _CHUNK_HEAD.unpack_from(body)
    pos = _CHUNK_HEAD.size
    (name_len,) = struct.unpack_from("<I", body, pos)
    compression = body[pos + 4 : pos + 4 + name_len]
    pos += 4 + name_len
    if pos + 8 > len(body):
        return False
    (records_len,) = struct.unpack_from("<Q", body, pos)
    records = memoryview(body)[pos + 8 :]
    if len(records) != records_len:
        return False
    if compression:  # the recorder never compresses; a foreign chunk is judged by its framing alone
        return True
    if records_len != uncompressed_size or (crc and zlib.crc32(records) != crc):
        return False
    pos = 0
    while pos < records_len:
        if pos + _RECORD.size > records_len:
            return False
        op, length = _RECORD.unpack_from(records, pos)
        pos += _RECORD.size + length
        if op not in _CHUNK_OPS or pos > records_len:
            return False
    return True


def readable_end(path: Path) -> int:
    """Offset just past the last complete record of the MCAP file's data section; 0 if the file
    does not even hold a complete magic and header. ValueError if it is not an MCAP file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(len(MAGIC) + _RECORD.size)
        if not MAGIC.startswith(head[: len(MAGIC)]):
            raise ValueError(f"{path} is not an MCAP file (wrong magic bytes)")
        if len(head) < len(MAGIC) + _RECORD.size:
            return 0
        op, length = _RECORD.unpack_from(head, len(MAGIC))
        pos = len(MAGIC) + _RECORD.size + length
        if op != _HEADER:
            raise ValueError(f"{path} is not an MCAP file (no header record)")
        if pos > size:
            return 0
        while pos + _RECORD.size <= size:
            f.seek(pos)
            op, length = _RECORD.unpack(f.read(_RECORD.size))
            end = pos + _RECORD.size + length
            if op not in _DATA_OPS or end > size:
                break
            if op == _CHUNK and not _chunk_is_whole(f.read(length)):
                break
            pos = end
        return pos


def _make_readable(path: Path) -> int:
    """Cut the incomplete tail and close the data section; returns the bytes cut."""
    size = path.stat().st_size
    end = readable_end(path)
    with path.open("r+b") as f:
        if end == 0:  # killed before the header reached the disk: nothing was recorded
            header = _string("ros2") + _string("dit4dit_policy recovery")
            f.write(MAGIC + _RECORD.pack(_HEADER, len(header)) + header)
        else:
            f.seek(end)
        f.truncate()
        f.write(_TRAILER)
        f.flush()
        os.fsync(f.fileno())
    return size - end


def _type_hash(connection: Connection) -> str:
    """RIHS01 of the type from the definition stored in the bag (what AnyReader checks it against)."""
    if connection.msgdef.format != MessageDefinitionFormat.MSG:
        return ""
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
    return store.hash_rihs01(connection.msgtype)


def _write_metadata(folder: Path, mcap: Path, reader: Reader) -> None:
    """rosbag2 metadata.yaml (version 9) for one MCAP file, as rosbags' own writer lays it out."""
    count = reader.message_count
    start = reader.start_time
    duration = reader.duration - 1 if count else 0
    info = {
        "version": 9,
        "storage_identifier": "mcap",
        "relative_file_paths": [mcap.name],
        "duration": {"nanoseconds": duration},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": count,
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": c.topic,
                    "type": c.msgtype,
                    "serialization_format": c.ext.serialization_format,
                    "offered_qos_profiles": dump_qos_v9(c.ext.offered_qos_profiles),
                    "type_description_hash": _type_hash(c),
                },
                "message_count": c.msgcount,
            }
            for c in reader.connections
        ],
        "compression_format": "",
        "compression_mode": "",
        "files": [
            {
                "path": mcap.name,
                "starting_time": {"nanoseconds_since_epoch": start},
                "duration": {"nanoseconds": duration},
                "message_count": count,
            }
        ],
        "custom_data": None,
        "ros_distro": "rosbags",
    }
    tmp = folder / ".metadata.yaml.tmp"
    tmp.write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, default_flow_style=False, sort_keys=False))
    tmp.replace(folder / "metadata.yaml")


def _opens(mcap: Path) -> bool:
    reader = Reader(mcap)
    try:
        reader.open()
    except ReaderError:
        return False
    reader.close()
    return True


def repair_bag(folder: Path) -> BagRepair:
    """Make the rosbag2 folder of an unfinished episode readable by rosbags (AnyReader): the .mcap
    up to its last complete chunk, and metadata.yaml if it is missing. A bag already complete is
    left as it is."""
    folder = Path(folder)
    mcap = folder / f"{folder.name}.mcap"
    if not mcap.exists():  # killed between creating the folder and the file: nothing was recorded
        mcap.touch()
    discarded, indexed = 0, True
    if not _opens(mcap):
        discarded, indexed = _make_readable(mcap), False
    reader = Reader(mcap)
    try:
        reader.open()
    except ReaderError as e:
        raise ValueError(f"{mcap}: still unreadable after repair: {e}") from e
    try:
        if not indexed or not (folder / "metadata.yaml").exists():
            _write_metadata(folder, mcap, reader)
        count = reader.message_count
        return BagRepair(
            counts={c.topic: c.msgcount for c in reader.connections},
            types={c.topic: c.msgtype for c in reader.connections},
            start_ns=reader.start_time if count else None,
            end_ns=reader.end_time - 1 if count else None,
            bytes_discarded=discarded,
            indexed=indexed,
        )
    finally:
        reader.close()


def recover_episode(folder: Path) -> EpisodeInfo:
    """Make an unfinished episode readable (`repair_bag`) and mark its episode.json "interrupted"
    (written afresh, with what the bag tells, if it is missing). Returns the new metadata."""
    folder = Path(folder)
    index = episode_index(folder)
    if index is None or not folder.is_dir():
        raise ValueError(f"{folder} is not an episode folder (episode_NNNNNN)")
    if (folder / EPISODE_JSON).exists():
        info = read_episode(folder)
        if info.status != "recording" and (folder / "metadata.yaml").exists():
            raise ValueError(f"{folder} is {info.status}: nothing to recover")
    else:  # killed before episode.json was written
        info = EpisodeInfo(index, "recording", "", "", "", "", "", "", 0)
    repair = repair_bag(folder)
    info.status, info.success = "interrupted", None
    info.topics = {t: {"type": repair.types[t], "messages": n, "dropped": None} for t, n in repair.counts.items()}
    info.dropped = None
    if repair.start_ns is not None:
        info.start_time_ns = info.start_time_ns or repair.start_ns
        info.end_time_ns = repair.end_ns
        info.duration_s = (repair.end_ns - info.start_time_ns) / 1e9
    info.recovery = repair.as_record()
    write_episode(folder, info)
    return info


def unfinished_episodes(output_dir: Path) -> list[Path]:
    """Episode folders whose bag was never finished or whose episode.json still says "recording"."""
    found = []
    for folder in episode_folders(output_dir):
        if not (folder / "metadata.yaml").exists():
            found.append(folder)
            continue
        try:
            if read_episode(folder).status == "recording":
                found.append(folder)
        except (FileNotFoundError, ValueError):  # recover_episode then says what is wrong with it
            found.append(folder)
    return found


def remove_discarded(output_dir: Path) -> list[Path]:
    """Finish deleting episodes whose discard was cut short (they were renamed .discarded-* first)."""
    output_dir = Path(output_dir)
    leftovers = sorted(output_dir.glob(".discarded-episode_*")) if output_dir.is_dir() else []
    for path in leftovers:
        shutil.rmtree(path)
    return leftovers

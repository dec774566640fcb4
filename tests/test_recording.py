"""The recorder's core without ROS: episode bags, episode.json, the byte-bounded queue, and recovery
of bags a kill or a failed write left unfinished. Bags are read back with rosbags' AnyReader, as
the dataset converter reads them."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from dit4dit_policy.config import resolve
from dit4dit_policy.recording import (
    ByteQueue,
    EpisodeInfo,
    EpisodeWriter,
    RecorderConfig,
    TopicSpec,
    claim_output_dir,
    episode_folder,
    joint_table_hash,
    next_episode_index,
    read_episode,
    recover_episode,
    remove_discarded,
    unfinished_episodes,
)
from dit4dit_policy.recording.recovery import readable_end
from dit4dit_policy.recording.writer import typestore

CAM, JOINTS, MARKER = "/camera/color/image_raw", "/joint_states", "/recorder/episode"
TOPICS = [TopicSpec(CAM, "sensor_msgs/msg/Image"), TopicSpec(JOINTS, "sensor_msgs/msg/JointState")]
T0 = 1_700_000_000_000_000_000


def image(i: int, h: int = 48, w: int = 64) -> bytes:
    """A serialized sensor_msgs/Image whose pixels and stamp say which one it is."""
    ts = typestore()
    t = ts.types
    msg = t["sensor_msgs/msg/Image"](
        header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id="head"),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=np.full(h * w * 3, i % 251, dtype=np.uint8),
    )
    return bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))


def joints(i: int) -> bytes:
    ts = typestore()
    t = ts.types
    msg = t["sensor_msgs/msg/JointState"](
        header=t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=i, nanosec=0), frame_id=""),
        name=["left_elbow_joint", "right_elbow_joint"],
        position=np.array([0.001 * i, -0.001 * i]),
        velocity=np.zeros(2),
        effort=np.zeros(2),
    )
    return bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


def new_info(index: int = 0, task: str = "put the cup on the plate") -> EpisodeInfo:
    return EpisodeInfo(
        episode=index,
        status="recording",
        task=task,
        operator="alice",
        robot_variant="g1_29dof",
        joint_table="g1_29dof.yaml",
        joint_table_hash=joint_table_hash("g1_29dof.yaml"),
        started_at="2026-01-01T00:00:00.000+00:00",
        start_time_ns=0,
    )


def open_writer(folder: Path, **kwargs) -> EpisodeWriter:
    kwargs = {"max_queue_bytes": 64 << 20, "flush_period": 0.2, "start_ns": T0, **kwargs}
    return EpisodeWriter(folder, TOPICS, MARKER, new_info(), **kwargs)


def read_bag(folder: Path) -> list[tuple[str, str, int, bytes]]:
    """(topic, type, bag time, raw CDR) of every message, in bag order."""
    with AnyReader([folder]) as reader:
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


def wait_written(writer: EpisodeWriter, topic: str, n: int) -> None:
    deadline = time.monotonic() + 10
    while writer.stats().written[topic] < n:
        assert time.monotonic() < deadline, "writer thread did not catch up"
        time.sleep(0.005)


# Bags and metadata --------------------------------------------------------------------------------
def test_when_messages_are_written_expect_them_in_the_bag_in_order_with_types_and_markers(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    writer = open_writer(folder)
    sent = []
    for i in range(30):
        sent.append((CAM, T0 + 10 * i, image(i)))
        sent.append((JOINTS, T0 + 10 * i + 5, joints(i)))
    for topic, t, data in sent:
        assert writer.write(topic, t, data)
    info = writer.close(success=True, end_ns=T0 + 1000)

    messages = read_bag(folder)
    assert [(m[0], m[2], m[3]) for m in messages[1:-1]] == sent
    types = {m[0]: m[1] for m in messages}
    assert types == {CAM: "sensor_msgs/msg/Image", JOINTS: "sensor_msgs/msg/JointState", MARKER: "std_msgs/msg/String"}
    with AnyReader([folder]) as reader:
        decoded = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]
    assert json.loads(decoded[0].data) == {
        "event": "start", "episode": 0, "task": "put the cup on the plate", "operator": "alice"
    }
    assert json.loads(decoded[-1].data) == {"event": "stop", "episode": 0, "success": True, "status": "complete"}
    assert decoded[5].header.stamp.sec == 2 and decoded[5].height == 48 and decoded[5].data[0] == 2
    assert list(decoded[6].position) == pytest.approx([0.002, -0.002])

    on_disk = read_episode(folder)
    assert on_disk == info
    assert on_disk.status == "complete" and on_disk.success is True and on_disk.error is None
    assert on_disk.topics == {
        CAM: {"type": "sensor_msgs/msg/Image", "messages": 30, "dropped": 0},
        JOINTS: {"type": "sensor_msgs/msg/JointState", "messages": 30, "dropped": 0},
        MARKER: {"type": "std_msgs/msg/String", "messages": 2, "dropped": 0},
    }
    assert on_disk.start_time_ns == T0 and on_disk.end_time_ns == T0 + 1000 and on_disk.duration_s == 1e-6
    assert on_disk.joint_table_hash == hashlib.sha256(resolve("g1_29dof.yaml").read_bytes()).hexdigest()
    assert sorted(p.name for p in folder.iterdir()) == ["episode.json", "episode_000000.mcap", "metadata.yaml"]


def test_when_initial_messages_are_given_expect_them_right_after_the_start_marker(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    writer = EpisodeWriter(
        folder,
        [*TOPICS, TopicSpec("/dit4dit/instruction", "std_msgs/msg/String")],
        MARKER,
        new_info(),
        max_queue_bytes=1 << 20,
        flush_period=1.0,
        start_ns=T0,
        initial=[("/dit4dit/instruction", b"latched")],
    )
    writer.write(JOINTS, T0 + 1, joints(0))
    writer.close(success=False, end_ns=T0 + 2)
    topics = [m[0] for m in read_bag(folder)]
    assert topics == [MARKER, "/dit4dit/instruction", JOINTS, MARKER]
    assert read_episode(folder).success is False


def test_when_receive_times_go_back_expect_bag_time_never_decreasing(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    writer = open_writer(folder)
    for t in (T0 + 50, T0 + 20, T0 + 60, T0 - 5):
        writer.write(JOINTS, t, joints(0))
    writer.close(success=True, end_ns=T0 + 10)
    assert [m[2] for m in read_bag(folder)] == [T0, T0 + 50, T0 + 50, T0 + 60, T0 + 60, T0 + 60]


def test_when_the_episode_folder_exists_expect_refusal_and_the_folder_untouched(tmp_path: Path):
    folder = episode_folder(tmp_path, 3)
    folder.mkdir()
    (folder / "keep.txt").write_text("earlier work")
    with pytest.raises(FileExistsError, match="episode_000003 already exists; refusing to overwrite"):
        open_writer(folder)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def test_when_a_topic_is_unknown_or_listed_twice_expect_a_clear_error_and_no_folder(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    with pytest.raises(ValueError, match="listed twice"):
        EpisodeWriter(folder, [*TOPICS, TopicSpec(MARKER, "std_msgs/msg/String")], MARKER, new_info(),
                      max_queue_bytes=1 << 20, flush_period=1.0, start_ns=T0)
    with pytest.raises(ValueError, match="unknown message types.*no_msgs/msg/Nope"):
        EpisodeWriter(folder, [TopicSpec("/x", "no_msgs/msg/Nope")], MARKER, new_info(),
                      max_queue_bytes=1 << 20, flush_period=1.0, start_ns=T0)
    assert not folder.exists()
    writer = open_writer(folder)
    with pytest.raises(ValueError, match="'/elsewhere' is not recorded"):
        writer.write("/elsewhere", T0, b"")
    writer.close(success=True, end_ns=T0)


def test_when_discarded_expect_the_folder_gone_and_later_writes_refused(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    writer = open_writer(folder)
    for i in range(20):
        writer.write(CAM, T0 + i, image(i))
    writer.discard()
    assert not folder.exists()
    assert list(tmp_path.iterdir()) == []
    assert writer.write(CAM, T0 + 99, image(99)) is False
    assert next_episode_index(tmp_path) == 0


def test_when_episodes_exist_expect_the_next_index_after_the_highest(tmp_path: Path):
    assert next_episode_index(tmp_path / "absent") == 0
    for i in (0, 1, 4):
        episode_folder(tmp_path, i).mkdir()
    (tmp_path / "episode_9").mkdir()  # not six digits: not an episode
    (tmp_path / "notes").mkdir()
    assert next_episode_index(tmp_path) == 5


def test_when_two_recorders_claim_one_output_dir_expect_the_second_refused(tmp_path: Path):
    lock = claim_output_dir(tmp_path / "out")
    code = textwrap.dedent(f"""
        from dit4dit_policy.recording import claim_output_dir
        try:
            claim_output_dir({str(tmp_path / "out")!r})
        except RuntimeError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "is in use by another recorder (pid" in out
    lock.close()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out == ""


# The queue and memory bound -----------------------------------------------------------------------
def test_when_the_byte_queue_is_full_expect_puts_refused_and_bytes_within_the_bound():
    q: ByteQueue[int] = ByteQueue(100)
    assert q.put(1, 60) and q.put(2, 40)
    assert not q.put(3, 1)
    assert q.nbytes == 100 and len(q) == 2
    assert q.get(0) == 1 and q.nbytes == 40
    assert q.put(4, 60) and not q.put(5, 1)
    assert q.put(6, 10, force=True) and q.nbytes == 110
    assert [q.get(0), q.get(0), q.get(0)] == [2, 4, 6]
    assert q.get(0.01) is None and q.peak_bytes == 110
    q.close()
    assert not q.put(7, 1) and q.closed_and_empty


def test_when_the_byte_queue_closes_expect_the_rest_drained_or_with_discard_dropped():
    q: ByteQueue[int] = ByteQueue(10)
    q.put(1, 1)
    q.put(2, 1)
    q.close()
    assert not q.closed_and_empty
    assert [q.get(None), q.get(None), q.get(None)] == [1, 2, None]
    q = ByteQueue(10)
    q.put(1, 1)
    q.close(discard=True)
    assert q.get(None) is None and q.nbytes == 0
    with pytest.raises(ValueError, match="max_bytes must be > 0"):
        ByteQueue(0)


def test_when_a_message_is_bigger_than_the_queue_expect_it_dropped_and_counted(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    writer = open_writer(folder, max_queue_bytes=20_000)
    big, small = image(1, 120, 160), joints(1)  # 57.6 kB of pixels; the joint state fits
    assert len(big) > 20_000 > len(small)
    for i in range(5):
        assert writer.write(CAM, T0 + i, big) is False
        assert writer.write(JOINTS, T0 + i, small) is True
    stats = writer.stats()
    assert stats.received[CAM] == 5 and stats.dropped[CAM] == 5 and stats.dropped[JOINTS] == 0
    info = writer.close(success=True, end_ns=T0 + 10)
    assert info.topics[CAM] == {"type": "sensor_msgs/msg/Image", "messages": 0, "dropped": 5}
    assert info.topics[JOINTS]["messages"] == 5 and info.dropped == 5
    assert [m[0] for m in read_bag(folder)].count(JOINTS) == 5


def test_when_a_burst_overfills_the_queue_expect_every_message_written_or_counted_as_dropped(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    bound = 200_000
    writer = open_writer(folder, max_queue_bytes=bound)
    frames = [image(i, 120, 160) for i in range(8)]  # ~57.6 kB each: three fit at once
    accepted = [writer.write(CAM, T0 + i, frames[i % 8]) for i in range(300)]
    stats = writer.stats()
    assert stats.queue_peak_bytes <= bound
    info = writer.close(success=True, end_ns=T0 + 1000)
    assert info.topics[CAM]["messages"] == sum(accepted)
    assert info.topics[CAM]["dropped"] == accepted.count(False) == info.dropped
    in_bag = [(t, raw) for topic, _, t, raw in read_bag(folder) if topic == CAM]
    assert in_bag == [(T0 + i, frames[i % 8]) for i in range(300) if accepted[i]]


# Recovery -------------------------------------------------------------------------------------------
def finished_bag(tmp_path: Path, n: int = 200) -> tuple[Path, list[tuple[str, int, bytes]]]:
    """A complete episode with many chunks (a ~38 kB image per message: a chunk per ~27 of them)."""
    folder = episode_folder(tmp_path, 0)
    writer = open_writer(folder)
    sent = [(CAM, T0 + i, image(i, 100, 128)) for i in range(n)]
    for m in sent:
        assert writer.write(*m)
    writer.close(success=True, end_ns=T0 + n)
    return folder, sent


def unfinish(folder: Path, cut: int, tail: bytes = b"") -> None:
    """What a kill leaves: the .mcap cut at `cut` (plus `tail`), no metadata.yaml, episode.json "recording"."""
    mcap = folder / f"{folder.name}.mcap"
    data = mcap.read_bytes()[:cut] + tail
    mcap.write_bytes(data)
    (folder / "metadata.yaml").unlink(missing_ok=True)
    info = read_episode(folder)
    info.status, info.success = "recording", None
    (folder / "episode.json").write_text(info.to_json())


def test_when_the_bag_is_cut_anywhere_expect_recovery_to_keep_a_growing_prefix(tmp_path: Path):
    pristine, sent = finished_bag(tmp_path / "src")
    size = (pristine / "episode_000000.mcap").stat().st_size
    data_end = readable_end(pristine / "episode_000000.mcap")  # the complete bag's data section
    assert 0 < data_end < size
    recovered_counts = []
    for k, cut in enumerate([30, 200, *np.linspace(1000, data_end, 12).astype(int).tolist(), size - 5]):
        folder = tmp_path / f"cut{k}" / "episode_000000"
        shutil.copytree(pristine, folder)
        unfinish(folder, cut)
        assert unfinished_episodes(folder.parent) == [folder]
        info = recover_episode(folder)
        assert info.status == "interrupted" and info.success is None and info.dropped is None
        assert info.recovery["indexed"] is False
        messages = read_bag(folder)
        cam = [(m[0], m[2], m[3]) for m in messages if m[0] == CAM]
        assert cam == sent[: len(cam)], f"cut at {cut}: not a prefix of what was written"
        assert info.topics.get(CAM, {}).get("messages", 0) == len(cam)
        assert unfinished_episodes(folder.parent) == []
        recovered_counts.append(len(cam))
    assert recovered_counts == sorted(recovered_counts)
    assert recovered_counts[0] == 0 and len(set(recovered_counts)) >= 6  # chunk by chunk (~1 MiB each)
    assert recovered_counts[-2] == recovered_counts[-1] == len(sent)


def test_when_zeros_follow_the_cut_expect_them_discarded_like_any_incomplete_tail(tmp_path: Path):
    folder, sent = finished_bag(tmp_path)
    cut = readable_end(folder / "episode_000000.mcap") - 5000  # inside the last chunk's records
    unfinish(folder, cut, tail=bytes(64 * 1024))
    info = recover_episode(folder)
    assert info.recovery["bytes_discarded"] > 64 * 1024
    cam = [(m[0], m[2], m[3]) for m in read_bag(folder) if m[0] == CAM]
    assert 0 < len(cam) < len(sent) and cam == sent[: len(cam)]


def test_when_nothing_reached_the_disk_expect_an_empty_readable_episode(tmp_path: Path):
    folder = episode_folder(tmp_path, 7)
    folder.mkdir()
    (folder / "episode_000007.mcap").write_bytes(b"\x89MCA")  # killed inside the magic bytes
    info = recover_episode(folder)
    assert info.episode == 7 and info.status == "interrupted" and info.topics == {}
    assert read_bag(folder) == []
    assert read_episode(folder) == info


def test_when_the_file_is_not_mcap_expect_a_clear_error_and_the_file_untouched(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    folder.mkdir()
    mcap = folder / "episode_000000.mcap"
    mcap.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(ValueError, match="episode_000000.mcap is not an MCAP file"):
        recover_episode(folder)
    assert mcap.read_bytes() == b"SQLite format 3\x00" + bytes(100)


def test_when_the_episode_is_complete_expect_recovery_to_refuse(tmp_path: Path):
    folder, _ = finished_bag(tmp_path, n=5)
    with pytest.raises(ValueError, match="is complete: nothing to recover"):
        recover_episode(folder)
    with pytest.raises(ValueError, match="not an episode folder"):
        recover_episode(tmp_path)


def test_when_episode_json_is_unreadable_expect_it_listed_and_recovery_to_name_the_file(tmp_path: Path):
    folder, _ = finished_bag(tmp_path, n=5)
    (folder / "episode.json").write_text("{not json")
    assert unfinished_episodes(tmp_path) == [folder]
    with pytest.raises(ValueError, match="episode_000000/episode.json: not valid JSON"):
        recover_episode(folder)


def test_when_a_discard_was_cut_short_expect_the_leftover_removed(tmp_path: Path):
    (tmp_path / ".discarded-episode_000002-1a2b3c4d" / "x").mkdir(parents=True)
    episode_folder(tmp_path, 1).mkdir()
    assert [p.name for p in remove_discarded(tmp_path)] == [".discarded-episode_000002-1a2b3c4d"]
    assert [p.name for p in tmp_path.iterdir()] == ["episode_000001"]


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from tests.test_recording import CAM, T0, image, open_writer
writer = open_writer(Path(sys.argv[1]), flush_period=0.05)
i = 0
while True:
    writer.write(CAM, T0 + i, image(i, 100, 128))
    i += 1
    if i % 10 == 0:
        print(writer.stats().flushed, flush=True)
        time.sleep(0.01)
"""


def test_when_the_writing_process_is_killed_expect_every_flushed_message_back_after_recovery(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        flushed = 0
        while flushed < 150:
            line = child.stdout.readline()
            assert line, "the writing process ended before it was killed"
            flushed = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert read_episode(folder).status == "recording"
    assert unfinished_episodes(tmp_path) == [folder]
    info = recover_episode(folder)
    cam = [(m[0], m[2], m[3]) for m in read_bag(folder) if m[0] == CAM]
    # Everything the writer reported on disk before the kill (the start marker is one of them).
    assert len(cam) >= flushed - 1
    assert cam == [(CAM, T0 + i, image(i, 100, 128)) for i in range(len(cam))]
    assert info.topics[CAM]["messages"] == len(cam) and info.status == "interrupted"


_FILE_SIZE_LIMITED_WRITER = """
import json, resource, signal, sys
from pathlib import Path
from tests.test_recording import CAM, T0, image, open_writer
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
writer = open_writer(Path(sys.argv[1]))
resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))
for i in range(200):
    writer.write(CAM, T0 + i, image(i, 100, 128))
info = writer.close(success=True, end_ns=T0 + 500)
print(json.dumps({"status": info.status, "error": info.error, "messages": info.topics[CAM]["messages"],
                  "dropped": info.topics[CAM]["dropped"], "recovery": info.recovery}))
"""


def test_when_writing_fails_expect_an_interrupted_episode_readable_up_to_the_failure(tmp_path: Path):
    folder = episode_folder(tmp_path, 0)
    out = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMITED_WRITER, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "interrupted" and "File too large" in result["error"]
    assert result["recovery"]["indexed"] is False
    cam = [(m[2], m[3]) for m in read_bag(folder) if m[0] == CAM]
    assert 0 < len(cam) == result["messages"] < 200
    assert result["messages"] + result["dropped"] == 200
    assert cam == [(T0 + i, image(i, 100, 128)) for i in range(len(cam))]
    assert read_episode(folder).error == result["error"]


# Parameters -----------------------------------------------------------------------------------------
def params(**changes) -> dict:
    from dit4dit_policy.config import load_yaml

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in tree.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    return {**flat(load_yaml("recorder.yaml")["recorder"]["ros__parameters"]), **changes}


def test_when_the_shipped_parameters_are_read_expect_a_valid_config():
    cfg = RecorderConfig.from_params(params())
    assert [t.msgtype for t in cfg.recorded_topics()] == [
        "sensor_msgs/msg/Image", "sensor_msgs/msg/JointState", "sensor_msgs/msg/JointState", "std_msgs/msg/String"
    ]
    compressed = RecorderConfig.from_params(params(**{"topics.image_transport": "compressed"}))
    assert compressed.recorded_topics()[0].msgtype == "sensor_msgs/msg/CompressedImage"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output_dir": ""}, "output_dir is empty"),
        ({"topics.image_transport": "jpeg"}, "image_transport must be raw or compressed, got 'jpeg'"),
        ({"max_queue_bytes": 0}, "max_queue_bytes must be > 0"),
        ({"flush_period": -1.0}, "flush_period must be > 0"),
        ({"status_rate": 0.0}, "status_rate must be > 0"),
        ({"robot_variant": "g2"}, "unknown robot variant 'g2'"),
        ({"joint_table": "nope.yaml"}, "config file 'nope.yaml' not found"),
        ({"topics.teleop_command": "/joint_states"}, "topics.joint_states and topics.teleop_command name the same"),
        ({"topics.images": ["/a", "/a"]}, r"topics.images\[0\] and topics.images\[1\] name the same"),
        ({"services.stop": ""}, "services.stop is empty"),
    ],
)
def test_when_a_parameter_is_bad_expect_an_error_naming_it(changes, message):
    with pytest.raises(ValueError, match=message):
        RecorderConfig.from_params(params(**changes))

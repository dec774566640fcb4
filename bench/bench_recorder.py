"""Benchmark the teleoperation recorder's sustained throughput.

Starts the recorder node as its own process; this process publishes two 640x480 rgb8 cameras at
30 Hz, joint states at 500 Hz (the whole joint table) and operator commands at 50 Hz, for
--seconds, into one episode. Reports what was sent, received, dropped and written, the bytes and
frames per second that reached the bag, the recorder's queue high-water mark, CPU and peak memory,
how long the last messages took to arrive after streaming ended, and how long the stop service
took (draining the queue and finishing the bag). The bag is read
back with rosbags' AnyReader and checked against episode.json, then deleted (--keep keeps it).

    python bench/bench_recorder.py [--seconds 60] [--json out.json] [--output-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rosbags.highlevel import AnyReader

from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.nodes.recorder_client import RecorderClient
from dit4dit_policy.recording import episode_folder, next_episode_index, read_episode
from dit4dit_policy.runner import NodeSpec, ProcessGroup

CAMERAS = ["/camera/head/image_raw", "/camera/wrist/image_raw"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--output-dir", type=Path, help="record here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the recorded episode")
    args = parser.parse_args()

    out = args.output_dir or Path(tempfile.mkdtemp(prefix="bench_recorder_"))
    domain = random.randint(1, 100)
    overrides = {"output_dir": str(out), "topics.images": CAMERAS, "status_rate": 5.0}
    client = RecorderClient(domain, images=CAMERAS)
    samples: list[dict[str, str]] = []
    loads: list[float] = []  # the machine is shared: how busy it was tells how far to trust the figures
    with ProcessGroup(env={"ROS_DOMAIN_ID": str(domain)}, log_dir=out / "logs") as group:
        recorder = group.start("recorder", NodeSpec("recorder", params_files=["recorder.yaml"], overrides=overrides))
        try:
            client.wait_for_recorder()
            folder = episode_folder(out, next_episode_index(out))
            started = client.start()
            if not started.success:
                raise RuntimeError(started.message)
            cpu0, t0 = cpu_seconds(recorder.pid), time.monotonic()
            done = threading.Event()

            def sample() -> None:
                while not done.wait(1.0):
                    samples.append(client.last_status())
                    loads.append(os.getloadavg()[0])

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            sent = client.stream(args.seconds, camera_hz=30.0, image_size=(480, 640), joint_hz=500.0, command_hz=50.0)
            streamed = time.monotonic() - t0
            # Reliable delivery repairs a lost sample at the writer's next heartbeat: stopping at once
            # would cut off what is still in flight. Wait (bounded) until the recorder saw all that was sent.
            settle_t = time.monotonic()
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: all(client.last_status().get(f"received.{t}") == str(n) for t, n in sent.items()),
                         10.0, "the recorder to receive everything sent")
            settle_s = time.monotonic() - settle_t
            done.set()
            sampler.join()
            stop_t = time.monotonic()
            stopped = client.stop(True, timeout=300)
            stop_s = time.monotonic() - stop_t
            cpu = cpu_seconds(recorder.pid) - cpu0
            rss = peak_rss_bytes(recorder.pid)
            group.check_alive()
        finally:
            client.close()

    if not stopped.success:
        raise RuntimeError(f"stop failed: {stopped.message}")
    info = read_episode(folder)
    with AnyReader([folder]) as reader:
        in_bag = {c.topic: c.msgcount for c in reader.connections}
        read_back = sum(1 for _ in reader.messages())
    bag_bytes = sum(p.stat().st_size for p in folder.iterdir())
    recorded = {t: info.topics[t]["messages"] for t in sent}
    duration = info.duration_s
    frames = sum(recorded[c] for c in CAMERAS)
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_1min_during_run": f"mean {sum(loads) / len(loads):.1f}, max {max(loads):.1f}",
        "seconds_streamed": round(streamed, 2),
        "episode_duration_s": round(duration, 2),
        "sent": sent,
        "recorded": recorded,
        "dropped_by_recorder": info.dropped,
        "lost_before_recorder": {t: sent[t] - recorded[t] - info.topics[t]["dropped"] for t in sent},
        "bag_matches_episode_json": in_bag == {t: e["messages"] for t, e in info.topics.items()}
        and read_back == sum(in_bag.values()),
        "frames_per_s": round(frames / duration, 1),
        "messages_per_s": round(sum(recorded.values()) / duration, 1),
        "bag_mb_per_s": round(bag_bytes / duration / 1e6, 2),
        "bag_bytes": bag_bytes,
        "queue_peak_bytes": max(int(s.get("queue_peak_bytes", 0)) for s in samples) if samples else None,
        "recorder_cpu_percent_of_one_core": round(100 * cpu / streamed, 1),
        "recorder_peak_rss_mb": round(rss / 1e6, 1),
        "delivery_wait_after_streaming_s": round(settle_s, 2),
        "stop_service_s": round(stop_s, 3),
        "episode_status": info.status,
    }
    table = Table(title="recorder: two 640x480 rgb8 cameras at 30 Hz, joint states at 500 Hz, commands at 50 Hz")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, str(value))
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()

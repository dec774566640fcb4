"""Benchmark the simulated G1 on this machine: speed with rendering, and the scripted expert's success rate.

1. Offline (one thread, as fast as it goes): the expert drives the arm through the safety limiter
   (dit4dit_policy.sim.harness) while the head camera renders every 1/camera_rate_hz of simulated
   time: real-time factor, physics step time, render time per frame; then the render time at other
   camera sizes.
2. Real time (as the g1_sim node runs it, without ROS): the simulation process (physics + the
   robot's DDS side) and the frame renderer in this process for --seconds: real-time factor,
   LowState_ rate, real-time slips, frames rendered and dropped, CPU of both processes.
3. The expert alone over --episodes randomised episodes (harness, no rendering): touched, back
   home, episode times, limiter clamps.

    python bench/bench_sim.py [--episodes 50] [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.sim.camera import gl_backend
from dit4dit_policy.sim.config import SimConfig, load_sim_configs
from dit4dit_policy.sim.expert import ReachExpert, load_expert_config
from dit4dit_policy.sim.harness import ExpertHarness
from dit4dit_policy.sim.physics import G1Sim, sim_model
from dit4dit_policy.sim.process import SimProcess, SimSpec
from dit4dit_policy.sim.renderer import FrameRenderer


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def offline(sim_seconds: float, seed: int) -> dict:
    sim = G1Sim(*load_sim_configs(**{"task.seed": seed}))
    harness = ExpertHarness(sim, ReachExpert(sim.table, load_expert_config()))
    harness.settle()
    sim.render()  # the GL context is made outside the measurement
    frame_period = 1.0 / sim.config.camera_rate_hz
    render_s: list[float] = []
    next_frame = sim.time
    start_sim, start = sim.time, time.perf_counter()
    while sim.time - start_sim < sim_seconds:
        if sim.task.done:
            sim.reset()
        harness.tick()
        if sim.time >= next_frame:
            t0 = time.perf_counter()
            sim.render()
            render_s.append(time.perf_counter() - t0)
            next_frame += frame_period
    wall = time.perf_counter() - start
    # Physics alone: the same law, no limiter, expert or camera.
    law = harness.mixer.law
    n = 2000
    t0 = time.perf_counter()
    sim.step(law, n)
    step_us = (time.perf_counter() - t0) / n * 1e6
    sim.close()
    r = np.array(render_s) * 1e3
    return {
        "sim_seconds": sim_seconds,
        "real_time_factor": sim_seconds / wall,
        "physics_step_us": step_us,
        "render_ms_mean": float(r.mean()),
        "render_ms_p50": float(np.percentile(r, 50)),
        "render_ms_p99": float(np.percentile(r, 99)),
        "frames": len(r),
        "render_share_of_wall": float(r.sum() / 1e3 / wall),
    }


def render_sweep(sizes: list[tuple[int, int]], frames: int = 60) -> dict:
    """Render time per frame of the head camera at other resolutions (same scene, same state)."""
    sim_config, task = load_sim_configs()
    out = {}
    for width, height in sizes:
        sim = G1Sim(SimConfig(**{**sim_config.__dict__, "camera_width": width, "camera_height": height}), task)
        sim.render()
        times = []
        for _ in range(frames):
            t0 = time.perf_counter()
            sim.render()
            times.append(time.perf_counter() - t0)
        sim.close()
        out[f"{width}x{height}"] = float(np.percentile(times, 50) * 1e3)
    return out


def realtime(seconds: float) -> dict:
    sim_config, task = load_sim_configs()
    spec = SimSpec(sim_config, task, domain_id=random.randint(100, 232), network_interface="lo")
    renderer = FrameRenderer(sim_model(sim_config, load_joint_table()), sim_config.camera_width,
                             sim_config.camera_height, lambda frame: None).start()
    proc = SimProcess(spec, on_snapshot=renderer.submit)
    try:
        time.sleep(2.0)  # start-up
        s0, cpu_child0, cpu_self0, w0 = proc.stats(), cpu_seconds(proc.pid), time.process_time(), time.monotonic()
        r0 = renderer.frames_rendered
        time.sleep(seconds)
        s1, cpu_child1, cpu_self1, w1 = proc.stats(), cpu_seconds(proc.pid), time.process_time(), time.monotonic()
        r1 = renderer.frames_rendered
    finally:
        final = proc.close()
        renderer.stop()
    wall = w1 - w0
    return {
        "seconds": wall,
        "real_time_factor": (s1["sim_time"] - s0["sim_time"]) / wall,
        "lowstate_hz": (s1["states_published"] - s0["states_published"]) / wall,
        "slips": final["slips"],
        "frames_per_s": (r1 - r0) / wall,
        "frames_dropped": renderer.frames_dropped,
        "render_ms_mean": renderer.render_seconds / max(renderer.frames_rendered, 1) * 1e3,
        "cpu_percent_sim_process": 100 * (cpu_child1 - cpu_child0) / wall,
        "cpu_percent_renderer_process": 100 * (cpu_self1 - cpu_self0) / wall,
    }


def expert_episodes(episodes: int, seed: int) -> dict:
    sim = G1Sim(*load_sim_configs(**{"task.seed": seed}))
    harness = ExpertHarness(sim, ReachExpert(sim.table, load_expert_config()))
    start = time.perf_counter()
    results = [harness.run_episode(timeout=20.0) for _ in range(episodes)]
    wall = time.perf_counter() - start
    done = [r.done_time for r in results if r.done]
    clamps = np.array([r.clamped["acceleration"] for r in results])
    return {
        "episodes": episodes,
        "seed": seed,
        "touched": sum(r.success for r in results),
        "done": len(done),
        "success_rate": len(done) / episodes,
        "done_time_s_mean": float(np.mean(done)) if done else None,
        "done_time_s_max": float(np.max(done)) if done else None,
        "acceleration_clamps_per_episode_mean": float(clamps.mean()),
        "acceleration_clamps_per_episode_max": int(clamps.max()),
        "other_clamps": int(sum(r.clamped[k] for r in results for k in ("position", "velocity", "effort"))),
        "failed_episodes": [r.episode for r in results if not r.done],
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=50, help="randomised episodes for the expert's success rate")
    parser.add_argument("--seconds", type=float, default=20.0, help="wall time of the real-time run")
    parser.add_argument("--sim-seconds", type=float, default=30.0, help="simulated time of the offline run")
    parser.add_argument("--seed", type=int, default=1, help="task seed of the expert's episodes")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    console = Console()
    sim_config, _ = load_sim_configs()
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "gl_backend": gl_backend(),
        "camera": f"{sim_config.camera_width}x{sim_config.camera_height} at {sim_config.camera_rate_hz:g} Hz",
        "physics_rate_hz": sim_config.physics_rate_hz,
    }
    console.print("offline run ...")
    figures["offline"] = offline(args.sim_seconds, args.seed)
    figures["render_ms_p50_by_size"] = render_sweep([(64, 48), (160, 120), (320, 240), (640, 480)])
    console.print("real-time run ...")
    figures["realtime"] = realtime(args.seconds)
    console.print(f"expert over {args.episodes} episodes ...")
    figures["expert"] = expert_episodes(args.episodes, args.seed)

    for part in ("offline", "render_ms_p50_by_size", "realtime", "expert"):
        table = Table(title=part)
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in figures[part].items():
            table.add_row(key, f"{value:.3g}" if isinstance(value, float) else str(value))
        console.print(table)
    console.print(f"{figures['machine']}; GL {figures['gl_backend']}; camera {figures['camera']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

"""Open-loop evaluation of a checkpoint on recorded episodes, through the policy node's own path.

Each recorded camera frame is paired with a joint state as the node pairs them (nearest header
stamp within `slop`; joint states with NaN/inf are refused, as the node refuses them), decoded as
the node converts camera messages, and served by what the node serves with: `open_runtime` and
`ObservationPolicy` (which runs `preprocessing.image_to_model`), holding the instruction the node
would hold at that time. Action k of a chunk is the target for t_obs + (k + 1) * action_period
(policy/chunking.py); the recorded action at that time is the operator's command, interpolated
linearly between command messages (policy/sync.interpolate, as in training; the bridge's own
reference, a B-spline of the commands, trails that by about half a command interval). A frame is
evaluated only when its whole chunk lies within the recorded commands: nothing is extrapolated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dit4dit_policy.config import load_yaml
from dit4dit_policy.data.bag_episode import BagEpisode, BagFormatError, find_bag_episodes, read_bag_episode
from dit4dit_policy.evaluation.metrics import error_stats, joint_error_stats, joint_groups, latency_stats
from dit4dit_policy.files import staged_folder
from dit4dit_policy.policy.config import PolicyConfig
from dit4dit_policy.policy.sync import Observation, interpolate, pair_within_slop

SUMMARY_FILE = "summary.json"
Progress = Callable[[int, int], None]  # (observations done, total)


@dataclass(frozen=True)
class NodeSettings:
    """The policy node's parameters that decide what the model sees and how chunks are timed,
    read from its parameter file so that the evaluation matches a deployed node."""

    state_joints: tuple[str, ...]
    action_joints: tuple[str, ...]
    camera_topic: str
    slop: float
    action_period: float
    backend: str
    device: str
    precision: str
    text_encoder_path: str

    @classmethod
    def from_params_file(cls, file: str | Path = "policy.yaml") -> NodeSettings:
        try:
            p = load_yaml(file)["policy_node"]["ros__parameters"]
            settings = cls(
                state_joints=tuple(p["state_joints"]),
                action_joints=tuple(p["action_joints"]),
                camera_topic=p["topics"]["image"],
                slop=p["slop"],
                action_period=p["action_period"],
                backend=p["backend"],
                device=p["device"],
                precision=p["precision"],
                text_encoder_path=p["text_encoder_path"],
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"{file}: not a policy node parameter file (missing {e})") from e
        PolicyConfig(slop=settings.slop, action_period=settings.action_period)  # validates both
        return settings

    def with_runtime(self, backend: str | None, device: str | None, precision: str | None) -> NodeSettings:
        """These settings with the given runtime choices replacing the file's (None keeps it)."""
        return replace(
            self,
            backend=backend or self.backend,
            device=device or self.device,
            precision=precision or self.precision,
        )


@dataclass(frozen=True)
class Selection:
    """Which observations of an episode are evaluated: camera frames (stamp-order indices) and their
    joint states (indices into the episode's joint stream)."""

    frames: np.ndarray
    joints: np.ndarray
    eligible: int  # frames that could be evaluated, before the stride
    skipped: dict[str, int]  # frames that could not, by reason


@dataclass(frozen=True)
class EpisodeResult:
    name: str
    folder: Path
    obs_stamps: np.ndarray  # [N] frame stamps (s)
    predicted: np.ndarray  # [N, H, D] chunks, radians
    recorded: np.ndarray  # [N, H, D] recorded commands at the chunk's action times
    latency: np.ndarray  # [N] seconds per ObservationPolicy call (preprocessing + inference)
    selection: Selection
    command_stamps: np.ndarray  # the recorded command trajectory, for plots
    command_positions: np.ndarray  # [M, D]
    origin: float  # the episode's first frame stamp: plots count seconds from here
    action_period: float


def episode_folders(bag: Path) -> list[Path]:
    """One episode folder (a rosbag2 folder) or every `episode_NNNNNN` folder under `bag`."""
    if not bag.exists():
        raise FileNotFoundError(f"{bag}: no such bag or folder of episodes")
    if (bag / "metadata.yaml").is_file():
        return [bag]
    return find_bag_episodes(bag)


def select_observations(episode: BagEpisode, settings: NodeSettings, horizon: int, stride: int = 1) -> Selection:
    """The frames to evaluate (every `stride`-th usable one) and the joint states the node pairs them with."""
    if episode.cameras.get(settings.camera_topic) is None:
        raise BagFormatError(
            f"{episode.folder}: no camera topic {settings.camera_topic!r} (the policy node's topics.image); "
            f"the episode has {sorted(episode.cameras)}"
        )
    frames = episode.cameras[settings.camera_topic].stamps
    q = _select(episode.joint_states, settings.state_joints, episode)
    _select(episode.commands, settings.action_joints, episode)
    finite = np.flatnonzero(np.all(np.isfinite(q), axis=1))
    commands = episode.commands.stamps
    dt = settings.action_period
    covered = (frames + dt >= commands[0]) & (frames + horizon * dt <= commands[-1])
    partner = np.full(frames.size, -1)
    if finite.size:
        paired = pair_within_slop(frames, episode.joint_states.stamps[finite], settings.slop)
        partner = np.where(paired >= 0, finite[np.maximum(paired, 0)], -1)
    ok = covered & (partner >= 0)
    eligible = np.flatnonzero(ok)
    chosen = eligible[::stride]
    return Selection(
        frames=chosen,
        joints=partner[chosen],
        eligible=int(eligible.size),
        skipped={
            "chunk_outside_recorded_commands": int(np.sum(~covered)),
            "no_joint_state_within_slop": int(np.sum(covered & (partner < 0))),
        },
    )


def recorded_actions(
    episode: BagEpisode, action_joints: tuple[str, ...], obs_stamps: np.ndarray, horizon: int, action_period: float
) -> np.ndarray:
    """The recorded commands [N, H, D] at each chunk's action times t_obs + (k + 1) * action_period."""
    times = np.asarray(obs_stamps, dtype=np.float64)[:, None] + action_period * np.arange(1, horizon + 1)
    values = interpolate(episode.commands.stamps, _select(episode.commands, action_joints, episode), times.ravel())
    return values.reshape(times.shape[0], horizon, len(action_joints))


def evaluate_episode(
    episode: BagEpisode,
    policy: Any,
    settings: NodeSettings,
    selection: Selection,
    advance: Callable[[], None] = lambda: None,
) -> EpisodeResult:
    """Run `policy` (an ObservationPolicy) on the selected observations of `episode`."""
    cfg = policy.runtime.cfg
    horizon, dims = cfg.action.horizon, cfg.action.real_dim
    camera = episode.cameras[settings.camera_topic]
    obs_stamps = camera.stamps[selection.frames]
    q = _select(episode.joint_states, settings.state_joints, episode)
    tasks = episode.tasks_at(obs_stamps)
    n = selection.frames.size
    predicted = np.empty((n, horizon, dims))
    latency = np.empty(n)
    frames = episode.images(settings.camera_topic, selection.frames.tolist())
    for k, frame in enumerate(frames):
        j = selection.joints[k]
        policy.instruction = tasks[k]
        obs = Observation(frame, float(obs_stamps[k]), q[j], float(episode.joint_states.stamps[j]))
        start = time.perf_counter()
        chunk = policy(obs)
        latency[k] = time.perf_counter() - start
        if chunk.shape != (horizon, dims):
            raise RuntimeError(f"the runtime returned a chunk of shape {chunk.shape}, expected {(horizon, dims)}")
        predicted[k] = chunk
        advance()
    commands = _select(episode.commands, settings.action_joints, episode)
    return EpisodeResult(
        name=episode.name,
        folder=episode.folder,
        obs_stamps=obs_stamps,
        predicted=predicted,
        recorded=recorded_actions(episode, settings.action_joints, obs_stamps, horizon, settings.action_period),
        latency=latency,
        selection=selection,
        command_stamps=episode.commands.stamps,
        command_positions=commands,
        origin=float(camera.stamps[0]),
        action_period=settings.action_period,
    )


def error_summary(errors: np.ndarray, names: tuple[str, ...], action_period: float) -> dict[str, Any]:
    """Figures of chunk errors [N, H, D] (radians): overall, per joint group, per joint, per chunk
    step (all joints, and per group)."""
    groups = joint_groups(names)
    index = {n: i for i, n in enumerate(names)}
    horizon = errors.shape[1]
    return {
        **joint_error_stats(errors, names),
        "per_step": [
            {"step": k, "time_s": (k + 1) * action_period, **error_stats(errors[:, k, :])} for k in range(horizon)
        ],
        "per_group_step_mae": {
            g: [error_stats(errors[:, k, [index[n] for n in members]])["mae"] for k in range(horizon)]
            for g, members in groups.items()
        },
    }


def run_open_loop(
    bag: Path,
    checkpoint: Path,
    out: Path,
    settings: NodeSettings,
    *,
    stride: int = 1,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate `checkpoint` on the episode(s) at `bag` and write `out/`: summary.json, one
    predictions/<episode>.npz and plots/<episode>.png per episode, plots/error_by_step.png.
    Returns the summary. Everything is checked before the model runs; `out` is written whole or
    not at all, and an existing `out` is replaced only with `force`."""
    import torch

    from dit4dit_policy.evaluation import plots
    from dit4dit_policy.model.checkpoint import read_checkpoint_config
    from dit4dit_policy.model.text import build_text_encoder
    from dit4dit_policy.policy.serving import ObservationPolicy
    from dit4dit_policy.runtime.runtime import open_runtime

    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    folders = episode_folders(bag)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint {checkpoint}: no such folder")
    cfg = read_checkpoint_config(checkpoint)
    if len(settings.state_joints) != cfg.state.joints or len(settings.action_joints) != cfg.action.real_dim:
        raise ValueError(
            f"checkpoint {checkpoint} takes {cfg.state.joints} state joints and commands {cfg.action.real_dim}; "
            f"the node's state_joints has {len(settings.state_joints)}, action_joints {len(settings.action_joints)}"
        )
    joint_groups(settings.action_joints)  # every action joint must be in the joint table
    episodes = [read_bag_episode(folder) for folder in folders]
    selections = [select_observations(e, settings, cfg.action.horizon, stride) for e in episodes]
    total = sum(s.frames.size for s in selections)
    if total == 0:
        reasons = {e.name: s.skipped for e, s in zip(episodes, selections, strict=True)}
        raise ValueError(f"no observation can be evaluated in {bag}; frames skipped by reason: {reasons}")

    # As the node builds its runtime (policy_node.py): the preset's text encoder unless a local one is given.
    text_encoder = None
    if settings.text_encoder_path:
        text_encoder = build_text_encoder(cfg.text.encoder_config(path=settings.text_encoder_path))
    runtime = open_runtime(
        settings.backend, checkpoint, text_encoder=text_encoder, device=settings.device, precision=settings.precision
    )
    policy = ObservationPolicy(runtime, "")
    torch.manual_seed(seed)  # the sampler's noise: a rerun gives the same chunks
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    results = [evaluate_episode(e, policy, settings, s, advance) for e, s in zip(episodes, selections, strict=True)]
    summary = _summary(results, settings, checkpoint, cfg.name, stride, seed)
    with staged_folder(out) as staging:
        (staging / "predictions").mkdir()
        (staging / "plots").mkdir()
        for r in results:
            if r.obs_stamps.size:
                _write_predictions(r, settings, staging / "predictions" / f"{r.name}.npz")
                plots.open_loop_trajectories(r, settings.action_joints, staging / "plots" / f"{r.name}.png")
        overall = summary["overall"]["error"]
        plots.error_by_step(overall, settings.action_period, staging / "plots" / "error_by_step.png")
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def _select(stream: Any, names: tuple[str, ...], episode: BagEpisode) -> np.ndarray:
    try:
        return stream.select(names)
    except KeyError as e:
        raise BagFormatError(f"{episode.folder}: {e.args[0]}") from e


def _summary(
    results: list[EpisodeResult], settings: NodeSettings, checkpoint: Path, preset: str, stride: int, seed: int
) -> dict[str, Any]:
    names = settings.action_joints
    episodes = []
    for r in results:
        n = int(r.obs_stamps.size)
        entry: dict[str, Any] = {
            "name": r.name,
            "folder": str(r.folder),
            "observations": n,
            "eligible": r.selection.eligible,
            "skipped": r.selection.skipped,
            "error": error_summary(r.predicted - r.recorded, names, settings.action_period) if n else None,
            "latency": latency_stats(r.latency) if n else None,
            "predictions": f"predictions/{r.name}.npz" if n else None,
            "plot": f"plots/{r.name}.png" if n else None,
        }
        episodes.append(entry)
    errors = np.concatenate([r.predicted - r.recorded for r in results if r.obs_stamps.size])
    latencies = np.concatenate([r.latency for r in results])
    return {
        "checkpoint": str(checkpoint),
        "preset": preset,
        "backend": settings.backend,
        "device": settings.device,
        "precision": settings.precision,
        "seed": seed,
        "stride": stride,
        "camera_topic": settings.camera_topic,
        "slop_s": settings.slop,
        "action_period_s": settings.action_period,
        "horizon": int(results[0].predicted.shape[1]),
        "state_joints": list(settings.state_joints),
        "action_joints": list(names),
        "joint_groups": joint_groups(names),
        "units": "radians; latency in ms",
        "episodes": episodes,
        "overall": {
            "episodes": len(results),
            "observations": int(errors.shape[0]),
            "error": error_summary(errors, names, settings.action_period),
            "latency": latency_stats(latencies),
            "plot": "plots/error_by_step.png",
        },
    }


def _write_predictions(r: EpisodeResult, settings: NodeSettings, path: Path) -> None:
    np.savez_compressed(
        path,
        obs_stamps=r.obs_stamps,
        predicted=r.predicted,
        recorded=r.recorded,
        latency_s=r.latency,
        frames=r.selection.frames,
        joint_states=r.selection.joints,
        action_joints=np.array(settings.action_joints),
        action_period=np.float64(settings.action_period),
    )

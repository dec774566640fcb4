"""Settings of the simulated G1 and its task, validated at construction.

Their values are written down once, in config/sim.yaml (section g1_sim, where each is documented):
`sim_configs(params)` builds both from the node's flat, dotted parameters, `load_sim_configs()`
from the file.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from dit4dit_policy.config import section_params

SIM_PARAMS_FILE = "sim.yaml"
SIM_SECTION = "g1_sim"


def check_number(
    name: str, value: object, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False
) -> None:
    """ValueError naming `name` unless value is a finite real in [low, high] ((low, high] with open_low)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bound = f"({low}" if open_low else f"[{low}"
        raise ValueError(f"{name} must be a finite number in {bound}, {high}], got {value!r}")


def check_interval(name: str, pair: tuple[float, float], low: float = -math.inf, high: float = math.inf) -> None:
    """ValueError naming `name` unless pair is [min, max] with low <= min <= max <= high."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ValueError(f"{name} must be [min, max], got {pair!r}")
    for v in pair:
        check_number(name, v, low, high)
    if not pair[0] <= pair[1]:
        raise ValueError(f"{name} must be [min, max] with min <= max, got {list(pair)}")


@dataclass(frozen=True)
class TaskConfig:
    """Reach-and-touch: where the block may be placed, what counts as touching it, what counts as home."""

    block_x: tuple[float, float]  # m, pelvis frame
    block_y: tuple[float, float]
    block_yaw: tuple[float, float]  # rad
    success_distance: float  # m
    seed: int
    home_tolerance: float  # rad
    home_speed: float  # rad/s

    def __post_init__(self) -> None:
        check_interval("block_x", self.block_x, 0.0, 1.0)
        check_interval("block_y", self.block_y, -1.0, 1.0)
        check_interval("block_yaw", self.block_yaw, -math.pi, math.pi)
        check_number("success_distance", self.success_distance, 0.0, 0.1)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        check_number("home_tolerance", self.home_tolerance, 0.0, 1.0, open_low=True)
        check_number("home_speed", self.home_speed, 0.0, 10.0, open_low=True)


PHYSICS_RATES = (500.0, 1000.0, 1500.0, 2000.0)


@dataclass(frozen=True)
class SimConfig:
    """The simulator: physics, LowState rate, base, camera."""

    physics_rate_hz: float
    fixed_base: bool
    camera_width: int
    camera_height: int
    camera_fovy: float  # deg
    camera_rate_hz: float
    mode_machine: int
    realtime_priority: int

    def __post_init__(self) -> None:
        if self.physics_rate_hz not in PHYSICS_RATES:
            raise ValueError(f"physics_rate_hz must be one of {PHYSICS_RATES} (whole steps per 500 Hz LowState), "
                             f"got {self.physics_rate_hz!r}")
        if not isinstance(self.fixed_base, bool):
            raise ValueError(f"fixed_base must be true or false, got {self.fixed_base!r}")
        for name in ("camera_width", "camera_height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 16 <= v <= 1920:
                raise ValueError(f"{name} must be an integer in 16..1920, got {v!r}")
        check_number("camera_fovy", self.camera_fovy, 1.0, 170.0)
        check_number("camera_rate_hz", self.camera_rate_hz, 0.0, 120.0, open_low=True)
        if isinstance(self.mode_machine, bool) or not isinstance(self.mode_machine, numbers.Integral) or not (
            0 <= self.mode_machine <= 255
        ):
            raise ValueError(f"mode_machine must be a uint8 (0..255), got {self.mode_machine!r}")
        p = self.realtime_priority
        if isinstance(p, bool) or not isinstance(p, numbers.Integral) or not 0 <= p <= 99:
            raise ValueError(f"realtime_priority must be an integer in 0..99 (0: ordinary scheduling), got {p!r}")

    @property
    def timestep(self) -> float:
        return 1.0 / self.physics_rate_hz


def sim_configs(p: dict[str, Any]) -> tuple[SimConfig, TaskConfig]:
    """SimConfig and TaskConfig from flat g1_sim parameters (KeyError naming a missing one)."""
    sim = SimConfig(
        physics_rate_hz=float(p["physics_rate_hz"]),
        fixed_base=p["fixed_base"],
        camera_width=p["camera.width"],
        camera_height=p["camera.height"],
        camera_fovy=p["camera.fovy"],
        camera_rate_hz=p["camera.rate_hz"],
        mode_machine=p["mode_machine"],
        realtime_priority=p["realtime_priority"],
    )
    task = TaskConfig(
        block_x=tuple(p["task.block_x"]),
        block_y=tuple(p["task.block_y"]),
        block_yaw=tuple(p["task.block_yaw"]),
        success_distance=p["task.success_distance"],
        seed=p["task.seed"],
        home_tolerance=p["task.home_tolerance"],
        home_speed=p["task.home_speed"],
    )
    return sim, task


def load_sim_configs(file: str = SIM_PARAMS_FILE, **overrides: Any) -> tuple[SimConfig, TaskConfig]:
    """From the config file, with some flat parameters overridden (e.g. {"task.seed": 3})."""
    p = section_params(file, SIM_SECTION)
    unknown = set(overrides) - set(p)
    if unknown:
        raise ValueError(f"unknown {SIM_SECTION} parameters {sorted(unknown)}; known: {sorted(p)}")
    return sim_configs({**p, **overrides})

"""The expert solving episodes in one process on simulated time: no DDS, no ROS, no wall clock.

The same chain as on the wire, minus the transports: the expert (50 Hz) submits right-arm targets
to the safety limiter the bridge runs (arm_sdk mode, the joint table's limits and gains); the
limiter steps at 500 Hz on the latest joint state; its targets, with the arm_sdk blend weight
ramped as G1Link ramps it, become the robot's motor law (g1.robot_side.CommandMixer) for the
physics. For the benchmark and the tests; the real processes are sim_node, safety_bridge and
expert_node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dit4dit_policy.g1.robot_side import CommandMixer, MotorCommand
from dit4dit_policy.safety import SafetyConfig, SafetyLimiter, SafetyState
from dit4dit_policy.sim.expert import ReachExpert
from dit4dit_policy.sim.physics import RIGHT_ARM, G1Sim

BRIDGE_RATE_HZ = 500.0
EXPERT_RATE_HZ = 50.0  # as config/expert.yaml rate_hz
WEIGHT_RAMP_TIME = 2.0  # s, as config/bridge.yaml weight_ramp_time
SETTLE_TIME = 3.0  # s: longer than the bridge's start-up ramp and weight ramp (2 s each)


@dataclass(frozen=True)
class EpisodeResult:
    episode: int
    success: bool
    done: bool  # back home after the touch
    success_time: float | None  # s of simulated time from the reset
    done_time: float | None
    clamped: dict[str, int] = field(default_factory=dict)  # limiter clamp counts during the episode


class ExpertHarness:
    def __init__(self, sim: G1Sim, expert: ReachExpert) -> None:
        self.sim = sim
        self.expert = expert
        self.limiter = SafetyLimiter(sim.table, SafetyConfig(mode="arm_sdk"))
        self.mixer = CommandMixer(sim.table)
        self._substeps = round(sim.config.physics_rate_hz / BRIDGE_RATE_HZ)
        self._expert_every = round(BRIDGE_RATE_HZ / EXPERT_RATE_HZ)
        self._ticks = 0
        self._weight = 0.0
        self._enabled = False

    def tick(self, stay_home: bool = False) -> None:
        """One bridge period (2 ms): the expert every 10th, the limiter, the physics."""
        sim, lim = self.sim, self.limiter
        now = sim.time
        r = sim.reading()
        lim.update_state(r.q, r.dq, now)
        if not self._enabled:
            lim.enable(now)
            self._enabled = True
        if self._ticks % self._expert_every == 0:
            task = sim.task
            block = task.state(sim.data).block_in_pelvis
            # After a touch the expert heads home: asking it "touched" keeps the arm at home.
            targets = self.expert.command(r.q, block, task.success or stay_home)
            lim.submit(RIGHT_ARM, targets, None, None, now, now)
        targets, weight = lim.step(now)
        dt = 1.0 / BRIDGE_RATE_HZ
        self._weight += min(max(weight - self._weight, -dt / WEIGHT_RAMP_TIME), dt / WEIGHT_RAMP_TIME)
        self.mixer.arm_sdk(MotorCommand.from_targets(targets, self._weight))
        sim.step(self.mixer.law, self._substeps)
        self._ticks += 1

    def settle(self, seconds: float = SETTLE_TIME) -> None:
        """The expert keeps the arm at home while the chain runs for `seconds` of simulated time.

        The first call is the bridge's activation: its start-up ramp and the arm_sdk blend weight
        ramp, during which the waist and the left arm, now held by the bridge without gravity
        compensation, sag to where they stay.
        """
        for _ in range(round(seconds * BRIDGE_RATE_HZ)):
            self.tick(stay_home=True)

    def run_episode(self, timeout: float = 20.0) -> EpisodeResult:
        """Reset, then run until the episode is done or `timeout` s of simulated time pass (settles first
        if the chain has not run yet)."""
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 s, got {timeout!r}")
        if not self._enabled:
            self.settle()
        sim = self.sim
        sim.reset()
        # Re-engage from the reset pose, as sim_session.Stack.new_episode has the bridge do.
        r = sim.reading()
        self.limiter.update_state(r.q, r.dq, sim.time)
        self.limiter.reset()
        self.limiter.enable(sim.time)
        before = dict(self.limiter.status(sim.time).clamped)
        start = sim.time
        while not sim.task.done and sim.time - start < timeout:
            self.tick()
            if self.limiter.state not in (SafetyState.RAMP, SafetyState.ACTIVE):
                raise RuntimeError(f"the limiter left RAMP/ACTIVE: {self.limiter.status(sim.time).as_dict()}")
        after = self.limiter.status(sim.time).clamped
        task = sim.task
        return EpisodeResult(
            episode=task.episode,
            success=task.success,
            done=task.done,
            success_time=task.success_time,
            done_time=task.done_time,
            clamped={k: after[k] - before.get(k, 0) for k in after},
        )

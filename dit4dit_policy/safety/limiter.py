"""The safety limiter: everything any policy asks of the motors passes through `SafetyLimiter`.

Times are float seconds of one monotonic clock, passed in by the caller and never read here.
States (the requested arm_sdk weight is 1 in RAMP/ACTIVE/HOLD and 0 everywhere else):

    DISABLED --enable--> RAMP --ramp_time from its first accepted command--> ACTIVE
    RAMP, ACTIVE --no accepted command for hold_after--> HOLD --fresh command--> RAMP or ACTIVE
    RAMP, ACTIVE, HOLD --no accepted command for damp_after--> DAMPING
    DAMPING --fresh command, or enable--> RAMP (again from the measured pose)
    RAMP, ACTIVE, HOLD, DAMPING --disable--> STOPPED --enable--> RAMP
    motors enabled and no LowState for state_timeout --> FAULT
    non-finite, implausible or malformed LowState, step time not increasing --> FAULT (any state)
    any state --estop--> ESTOP;  ESTOP, FAULT --reset--> DISABLED (any state --reset--> DISABLED)

The command watchdog counts from the last accepted command, or from the (re-)engagement if none
came since; the ramp's clock starts with its first command, and nothing moves before one.
DISABLED enables no motor. DAMPING, STOPPED, ESTOP and FAULT damp (kp 0, kd damping_kd bounded by
the effort limit) on the controllable joints; ESTOP and FAULT are latched until reset().
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

import numpy as np

from dit4dit_policy.easing import smoothstep
from dit4dit_policy.joint_table import GROUPS, JointTable
from dit4dit_policy.motor_targets import MotorTargets
from dit4dit_policy.safety.interpolation import CommandInterpolator
from dit4dit_policy.safety.limits import (
    EASE_TIME,
    LimitSnapshot,
    bound_effort,
    clamp_position,
    limit_motion,
    stopping_distance,
)


class SafetyState(Enum):
    DISABLED = "disabled"  # start-up and after reset(): no motor enabled
    RAMP = "ramp"  # from the measured pose to the commanded target over ramp_time from the first command
    ACTIVE = "active"  # following commands
    HOLD = "hold"  # commands late: stop on the current pose, normal gains
    DAMPING = "damping"  # commands lost: damping; a fresh command ramps again
    STOPPED = "stopped"  # disable() after running: damping, commands refused until enable()
    ESTOP = "estop"  # latched damping until reset()
    FAULT = "fault"  # latched damping until reset()


class Verdict(Enum):
    """What submit() (and update_state()) did with its input. Any rejection keeps the previous target."""

    ACCEPTED = "accepted"
    REJECTED_EMPTY = "rejected_empty"  # no joint named
    REJECTED_MALFORMED = "rejected_malformed"  # not numbers / names not strings
    REJECTED_LENGTH_MISMATCH = "rejected_length_mismatch"  # arrays not 1-D with one value per name
    REJECTED_DUPLICATE_NAME = "rejected_duplicate_name"
    REJECTED_UNKNOWN_JOINT = "rejected_unknown_joint"  # a name not in the joint table
    REJECTED_NOT_CONTROLLABLE = "rejected_not_controllable"  # a joint this mode/mask never commands
    REJECTED_NONFINITE = "rejected_nonfinite"  # NaN/inf in a value, the stamp or the time
    REJECTED_IMPLAUSIBLE = "rejected_implausible"  # a measured |q| or |dq| over MAX_MEASURED
    REJECTED_STALE_STAMP = "rejected_stale_stamp"  # stamp <= the last accepted one
    REJECTED_NOT_ENABLED = "rejected_not_enabled"  # DISABLED or STOPPED: enable() first
    REJECTED_LATCHED = "rejected_latched"  # ESTOP or FAULT: reset() first


class Fault(Enum):
    STATE_TIMEOUT = "state_timeout"  # motors enabled and no LowState for state_timeout
    STATE_NONFINITE = "state_nonfinite"  # NaN/inf in a measured q, dq or its time
    STATE_IMPLAUSIBLE = "state_implausible"  # a measured |q| or |dq| over MAX_MEASURED
    STATE_MALFORMED = "state_malformed"  # measured arrays of the wrong shape or not numbers
    CLOCK = "clock"  # step() time not finite or not after the previous step


class EnableResult(Enum):
    RAMPING = "ramping"
    ALREADY_ENABLED = "already_enabled"  # RAMP, ACTIVE or HOLD: nothing changes
    REFUSED_NO_STATE = "refused_no_state"  # no LowState within state_timeout: no pose to ramp from
    REFUSED_LATCHED = "refused_latched"  # ESTOP or FAULT: reset() first
    REFUSED_BAD_TIME = "refused_bad_time"  # `now` not finite


_POSITION = frozenset({SafetyState.RAMP, SafetyState.ACTIVE, SafetyState.HOLD})
_COMMANDING = _POSITION | {SafetyState.DAMPING, SafetyState.STOPPED}
_LATCHED = frozenset({SafetyState.ESTOP, SafetyState.FAULT})
_COMMAND_REJECTIONS = tuple(v for v in Verdict if v not in (Verdict.ACCEPTED, Verdict.REJECTED_IMPLAUSIBLE))
_QUANTITIES = ("position", "velocity", "acceleration", "effort")
_STATE_REJECTIONS = (
    Verdict.REJECTED_MALFORMED,
    Verdict.REJECTED_LENGTH_MISMATCH,
    Verdict.REJECTED_NONFINITE,
    Verdict.REJECTED_IMPLAUSIBLE,
    Verdict.REJECTED_STALE_STAMP,
)
# rad and rad/s far past anything the robot reaches: a reading beyond is as broken as a NaN, and
# bounding it keeps the effort arithmetic far from overflow.
MAX_MEASURED = 1e6

# Joint groups each control mode may command. arm_sdk blends into the robot's balance controller,
# which keeps the legs: they are never ours there.
CONTROL_GROUPS = {"arm_sdk": ("arm", "waist"), "lowcmd": GROUPS}


@dataclass(frozen=True)
class SafetyConfig:
    mode: str = "arm_sdk"  # "arm_sdk": arms + waist only; "lowcmd": every joint of the table
    masked_joints: tuple[str, ...] = ()  # joint names never commanded in any mode
    ramp_time: float = 2.0  # s, start-up move from the measured pose to the commanded target
    hold_after: float = 0.1  # s without an accepted command -> HOLD; also the longest interpolation
    damp_after: float = 0.5  # s without an accepted command -> DAMPING
    state_timeout: float = 0.1  # s without a LowState while motors are enabled -> FAULT
    damping_kd: float = 8.0  # N*m*s/rad when damping, reduced per joint to respect max_effort
    max_tick: float = 0.01  # s, <= EASE_TIME; a later tick moves no further than this long a tick would

    def __post_init__(self) -> None:
        if self.mode not in CONTROL_GROUPS:
            raise ValueError(f"SafetyConfig.mode must be one of {sorted(CONTROL_GROUPS)}, got {self.mode!r}")
        masked = self.masked_joints
        if isinstance(masked, str) or not isinstance(masked, Sequence) or not all(isinstance(n, str) for n in masked):
            raise ValueError(f"SafetyConfig.masked_joints must be a sequence of joint names, got {masked!r}")
        object.__setattr__(self, "masked_joints", tuple(masked))
        for name in ("ramp_time", "hold_after", "damp_after", "state_timeout", "damping_kd", "max_tick"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"SafetyConfig.{name} must be a finite number > 0, got {value!r}")
        if self.max_tick > EASE_TIME:
            # The approach steps at most (distance) * tick / EASE_TIME: a longer tick could pass its goal.
            raise ValueError(f"SafetyConfig.max_tick ({self.max_tick}) must be <= EASE_TIME ({EASE_TIME})")
        if not self.hold_after < self.damp_after:
            raise ValueError(f"SafetyConfig.hold_after ({self.hold_after}) must be < damp_after ({self.damp_after})")

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> SafetyConfig:
        """From the safety bridge's parameters, by their names in config/bridge.yaml."""
        return cls(
            mode=p["control_mode"],
            masked_joints=tuple(p["masked_joints"]),
            hold_after=p["hold_after"],
            damp_after=p["damp_after"],
            state_timeout=p["state_timeout"],
            ramp_time=p["ramp_time"],
            damping_kd=p["damping_kd"],
        )


def controllable_mask(table: JointTable, config: SafetyConfig) -> np.ndarray:
    """Rows of `table` the limiter may ever enable under `config` (bool array)."""
    unknown = [n for n in config.masked_joints if n not in table.names]
    if unknown:
        raise ValueError(f"SafetyConfig.masked_joints {unknown} are not in the {table.variant} joint table")
    groups = CONTROL_GROUPS[config.mode]
    return np.array([j.group in groups and j.name not in config.masked_joints for j in table.joints])


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class SafetyStatus:
    state: SafetyState
    fault: Fault | None  # the first fault since the last reset()
    requested_weight: float
    accepted: int  # commands accepted
    rejected: MappingProxyType[Verdict, int]  # commands rejected, per reason
    state_rejected: MappingProxyType[Verdict, int]  # LowStates rejected, per reason
    clamped: MappingProxyType[str, int]  # joint-ticks changed, per quantity (position, velocity, ...)
    late_commands: int  # accepted commands delivered behind the sender's schedule (CommandInterpolator.late)
    since_command: float  # s since the last accepted command (inf if none)
    since_state: float  # s since the last accepted LowState (inf if none)
    since_transition: float  # s in the current state

    def as_dict(self) -> dict[str, Any]:
        """Flat key -> value view with a fixed set of keys, for diagnostics."""
        values: dict[str, Any] = {
            "state": self.state.name,
            "fault": self.fault.name if self.fault else "none",
            "requested_weight": self.requested_weight,
            "accepted": self.accepted,
            "since_command": self.since_command,
            "since_state": self.since_state,
            "since_transition": self.since_transition,
        }
        values.update({f"rejected.{v.value}": n for v, n in self.rejected.items()})
        values.update({f"state_rejected.{v.value}": n for v, n in self.state_rejected.items()})
        values.update({f"clamped.{k}": n for k, n in self.clamped.items()})
        values["late_commands"] = self.late_commands
        return values


class SafetyLimiter:
    """Turns measured states and a stream of (possibly hostile) commands into always-safe motor targets.

    Thread-safe: every public method holds one lock. Command velocities are checked but not used:
    dq is the limiter's own, bounded trajectory velocity, so the damping term never pulls ahead of
    the position target. Effort is the feed-forward torque, kept per joint until the next command
    that names the joint (a command without effort sets 0 for the joints it names), scaled by the
    ramp and dropped in HOLD.
    """

    def __init__(self, table: JointTable, config: SafetyConfig | None = None):
        self.table = table
        self.config = SafetyConfig() if config is None else config
        self.limits = LimitSnapshot.from_table(table)
        self.controllable = _read_only(controllable_mask(table, self.config))
        self.controllable_names = tuple(n for n, c in zip(table.names, self.controllable, strict=True) if c)
        n = len(table.joints)
        self._index = {name: i for i, name in enumerate(table.names)}
        self._kp = _read_only(table.column("kp") * self.controllable)
        self._kd = _read_only(table.column("kd") * self.controllable)
        self._damping_kd = _read_only(self.config.damping_kd * self.controllable.astype(np.float64))
        self._zeros = _read_only(np.zeros(n))
        self._all_off = _read_only(np.zeros(n, dtype=bool))
        self._interp = CommandInterpolator(n, max_interval=self.config.hold_after)
        self._lock = threading.Lock()

        self._state = SafetyState.DISABLED
        self._fault: Fault | None = None
        self._t_transition: float | None = None  # None: set by the next step()
        # Latest accepted measurement; the default pose until one arrives (shown while DISABLED).
        self._q_meas = table.column("default_position")
        self._dq_meas = np.zeros(n)
        self._t_state: float | None = None
        # Commands: targets in table order, already inside the soft range.
        self._target = np.zeros(n)
        self._tau_cmd = np.zeros(n)
        self._last_stamp = -math.inf
        self._t_accepted: float | None = None
        self._t_watchdog = 0.0  # last accepted command, or the start of the current ramp
        # Output trajectory.
        self._start = self._zeros
        self._q = self._zeros
        self._v = self._zeros
        self._dt_v: float | None = None  # the tick self._v was taken over; None: at rest
        self._hold = self._zeros
        self._t_ramp: float | None = None  # None: the ramp clock starts at the first step() after a command
        self._t_step: float | None = None
        # Counters.
        self._accepted = 0
        self._rejected = dict.fromkeys(_COMMAND_REJECTIONS, 0)
        self._state_rejected = dict.fromkeys(_STATE_REJECTIONS, 0)
        self._clamped = dict.fromkeys(_QUANTITIES, 0)

    @property
    def state(self) -> SafetyState:
        return self._state

    # Inputs -----------------------------------------------------------------------------------
    def update_state(self, q_meas: np.ndarray, dq_meas: np.ndarray, now: float) -> Verdict:
        """The latest LowState joint arrays (table order) received at `now`.

        A malformed, non-finite or implausible state latches FAULT: the sensors can no longer be
        trusted. One not newer than the latest accepted is ignored; if fresh ones stop coming, the
        state timeout faults.
        """
        with self._lock:
            n = len(self._index)
            try:
                q = np.array(q_meas, dtype=np.float64)
                dq = np.array(dq_meas, dtype=np.float64)
                now = float(now)
            except (TypeError, ValueError):
                return self._reject_state(Verdict.REJECTED_MALFORMED, Fault.STATE_MALFORMED)
            if q.shape != (n,) or dq.shape != (n,):
                return self._reject_state(Verdict.REJECTED_LENGTH_MISMATCH, Fault.STATE_MALFORMED)
            if not (math.isfinite(now) and np.isfinite(q).all() and np.isfinite(dq).all()):
                return self._reject_state(Verdict.REJECTED_NONFINITE, Fault.STATE_NONFINITE)
            if not (np.abs(q).max() <= MAX_MEASURED and np.abs(dq).max() <= MAX_MEASURED):
                return self._reject_state(Verdict.REJECTED_IMPLAUSIBLE, Fault.STATE_IMPLAUSIBLE)
            if self._t_state is not None and not now > self._t_state:
                return self._reject_state(Verdict.REJECTED_STALE_STAMP, None)
            self._q_meas, self._dq_meas, self._t_state = q, dq, now
            return Verdict.ACCEPTED

    def submit(
        self,
        names: Sequence[str],
        position: np.ndarray,
        velocity: np.ndarray | None,
        effort: np.ndarray | None,
        stamp: float,
        now: float,
    ) -> Verdict:
        """A command for some of the joints; unnamed joints keep their previous target.

        Rejected whole on any problem, including naming a joint outside the controllable set (a
        whole-body policy must be trimmed to `controllable_names` by its adapter, on purpose).
        """
        with self._lock:
            verdict, rows, position, effort = self._check(names, position, velocity, effort, stamp, now)
            if verdict is not Verdict.ACCEPTED:
                self._rejected[verdict] += 1
                return verdict
            if self._state is SafetyState.DAMPING:
                self._start_ramp(now)
            lim = self.limits
            clipped = clamp_position(position, lim.lower[rows], lim.upper[rows])
            self._clamped["position"] += int(np.count_nonzero(clipped != position))
            self._target[rows] = clipped
            self._tau_cmd[rows] = effort
            self._interp.push(self._target, now, float(stamp))
            self._t_watchdog = self._t_accepted = now
            self._last_stamp = float(stamp)
            self._accepted += 1
            if self._state is SafetyState.HOLD:
                self._set_state(SafetyState.ACTIVE if self._ramp_done(now) else SafetyState.RAMP, now)
            return verdict

    def _check(self, names, position, velocity, effort, stamp, now):
        """(verdict, rows, position, effort) with the arrays converted when the verdict is ACCEPTED."""
        rejected = (None, None, None)
        try:
            names = list(names)
            position = np.asarray(position, dtype=np.float64)
            arrays = [position]
            if velocity is not None:
                arrays.append(np.asarray(velocity, dtype=np.float64))
            if effort is not None:
                effort = np.asarray(effort, dtype=np.float64)
                arrays.append(effort)
            times = (float(stamp), float(now))
            rows = [self._index.get(name) for name in names]
            distinct = len(set(names))
        except (TypeError, ValueError):
            return (Verdict.REJECTED_MALFORMED, *rejected)
        if not names:
            return (Verdict.REJECTED_EMPTY, *rejected)
        if any(a.shape != (len(names),) for a in arrays):
            return (Verdict.REJECTED_LENGTH_MISMATCH, *rejected)
        if distinct != len(names):
            return (Verdict.REJECTED_DUPLICATE_NAME, *rejected)
        if None in rows:
            return (Verdict.REJECTED_UNKNOWN_JOINT, *rejected)
        rows = np.array(rows)
        if not self.controllable[rows].all():
            return (Verdict.REJECTED_NOT_CONTROLLABLE, *rejected)
        if not (all(map(math.isfinite, times)) and all(np.isfinite(a).all() for a in arrays)):
            return (Verdict.REJECTED_NONFINITE, *rejected)
        if not times[0] > self._last_stamp:
            return (Verdict.REJECTED_STALE_STAMP, *rejected)
        if self._state in (SafetyState.DISABLED, SafetyState.STOPPED):
            return (Verdict.REJECTED_NOT_ENABLED, *rejected)
        if self._state in _LATCHED:
            return (Verdict.REJECTED_LATCHED, *rejected)
        return Verdict.ACCEPTED, rows, position, 0.0 if effort is None else effort

    # Operator ---------------------------------------------------------------------------------
    def enable(self, now: float) -> EnableResult:
        """Start driving: ramp from the measured pose (DISABLED, DAMPING and STOPPED only)."""
        with self._lock:
            if not math.isfinite(now):
                return EnableResult.REFUSED_BAD_TIME
            if self._state in _LATCHED:
                return EnableResult.REFUSED_LATCHED
            if self._state in _POSITION:
                return EnableResult.ALREADY_ENABLED
            if self._t_state is None or not now - self._t_state <= self.config.state_timeout:
                return EnableResult.REFUSED_NO_STATE
            self._start_ramp(now)
            return EnableResult.RAMPING

    def disable(self, now: float) -> None:
        """Hand back: damping with weight 0 and commands refused until enable(). Latches stay."""
        with self._lock:
            if self._state in _COMMANDING:
                self._set_state(SafetyState.STOPPED, now)

    def estop(self) -> None:
        """Latched damping until reset()."""
        with self._lock:
            self._set_state(SafetyState.ESTOP, None)

    def reset(self) -> None:
        """Clear ESTOP/FAULT (and stop anything else): DISABLED, to be enabled again."""
        with self._lock:
            self._fault = None
            self._set_state(SafetyState.DISABLED, None)

    # The control tick -------------------------------------------------------------------------
    def step(self, now: float) -> tuple[MotorTargets, float]:
        """The motor targets for this tick (read-only arrays, never changed afterwards) and the
        requested arm_sdk blend weight.

        `now` must increase from call to call; a time that is not finite or not after the previous
        one latches FAULT (damping): a broken clock must not leave the last targets in force.
        """
        with self._lock:
            prev = self._t_step
            if not math.isfinite(now) or (prev is not None and not now > prev):
                self._latch(Fault.CLOCK)
                dt = self.config.max_tick
            else:
                self._t_step = now
                dt = self.config.max_tick if prev is None else min(now - prev, self.config.max_tick)
                if self._t_transition is None:
                    self._t_transition = now
            self._watch(now, dt)
            if self._state in _POSITION:
                return self._position_output(now, dt), 1.0
            if self._state is SafetyState.DISABLED:
                q = _read_only(clamp_position(self._q_meas, self.limits.lower, self.limits.upper))
                z = self._zeros
                return MotorTargets(q=q, dq=z, tau=z, kp=z, kd=z, enabled=self._all_off), 0.0
            return self._damping_output(), 0.0

    def _watch(self, now: float, dt: float) -> None:
        """Deadline transitions, each taken on the first tick past its deadline (written to trip on NaN)."""
        state, cfg = self._state, self.config
        if state in _COMMANDING and not now - self._t_state <= cfg.state_timeout:
            self._latch(Fault.STATE_TIMEOUT)
        elif state in _POSITION:
            age = now - self._t_watchdog
            if not age <= cfg.damp_after:
                self._set_state(SafetyState.DAMPING, now)
            elif not age <= cfg.hold_after:
                if state is not SafetyState.HOLD:
                    self._enter_hold(now, dt)
            elif state is SafetyState.RAMP and self._ramp_done(now):
                self._set_state(SafetyState.ACTIVE, now)

    def _position_output(self, now: float, dt: float) -> MotorTargets:
        lim = self.limits
        if self._state is SafetyState.HOLD:
            goal, tau = self._hold, self._zeros  # a stale feed-forward is not trusted
        else:
            goal, tau = self._interp.sample(now), self._tau_cmd
            if self._state is SafetyState.RAMP:
                if self._t_ramp is None and self._interp.has_target:
                    # The ramp blends in the commands, so its clock starts with the first (on this
                    # tick: its first output is exactly the start pose). Started at enable, a policy
                    # that begins late, as after a reset, would meet a ramp mostly run.
                    self._t_ramp = now
                s = 0.0 if self._t_ramp is None else (now - self._t_ramp) / self.config.ramp_time
                # Smoothstep, not a line: the goal starts and ends the ramp at rest. A line starts
                # it at (target - start) / ramp_time at once, which the acceleration bound clips.
                alpha = smoothstep(s)
                goal = self._start + alpha * (goal - self._start)
                tau = alpha * tau
        dt_v = dt if self._dt_v is None else self._dt_v
        motion = limit_motion(
            goal, self._q, self._v, dt, dt_v, lim.lower, lim.upper, lim.max_velocity, lim.max_acceleration
        )
        v = motion.step / dt
        effort = bound_effort(motion.q, v, tau, self._kp, self._kd, self._q_meas, self._dq_meas, lim.max_effort)
        self._q, self._v, self._dt_v = _read_only(motion.q), _read_only(v), dt
        counts = self._clamped
        counts["position"] += motion.position_clamps
        counts["velocity"] += motion.velocity_clamps
        counts["acceleration"] += motion.acceleration_clamps
        counts["effort"] += effort.clamps
        return MotorTargets(
            q=self._q,
            dq=self._v,
            tau=_read_only(effort.tau),
            kp=_read_only(effort.kp),
            kd=_read_only(effort.kd),
            enabled=self.controllable,
        )

    def _damping_output(self) -> MotorTargets:
        lim, z = self.limits, self._zeros
        q = clamp_position(self._q_meas, lim.lower, lim.upper)  # kp is 0: q only reports the pose
        effort = bound_effort(q, z, z, z, self._damping_kd, self._q_meas, self._dq_meas, lim.max_effort)
        self._clamped["effort"] += effort.clamps
        return MotorTargets(q=_read_only(q), dq=z, tau=z, kp=z, kd=_read_only(effort.kd), enabled=self.controllable)

    # Transitions ------------------------------------------------------------------------------
    def _set_state(self, state: SafetyState, now: float | None) -> None:
        self._state = state
        self._t_transition = now

    def _latch(self, fault: Fault) -> None:
        """FAULT (an ESTOP stays ESTOP); the first fault is kept as the cause."""
        self._fault = self._fault or fault
        if self._state is not SafetyState.ESTOP and self._state is not SafetyState.FAULT:
            self._set_state(SafetyState.FAULT, None)

    def _reject_state(self, verdict: Verdict, fault: Fault | None) -> Verdict:
        self._state_rejected[verdict] += 1
        if fault is not None:
            self._latch(fault)
        return verdict

    def _start_ramp(self, now: float) -> None:
        """RAMP from the measured pose at rest, with no target but that pose."""
        lim = self.limits
        self._start = _read_only(clamp_position(self._q_meas, lim.lower, lim.upper))
        self._q, self._v, self._dt_v = self._start, self._zeros, None
        self._target = self._start.copy()
        self._tau_cmd = np.zeros_like(self._target)
        self._interp.reset(self._start)
        self._t_ramp = None
        self._t_watchdog = now
        self._set_state(SafetyState.RAMP, now)

    def _ramp_done(self, now: float) -> bool:
        return self._t_ramp is not None and now - self._t_ramp >= self.config.ramp_time

    def _enter_hold(self, now: float, dt: float) -> None:
        """HOLD where the output comes to rest braking at max acceleration, not where it is now."""
        lim = self.limits
        u = lim.max_acceleration * (dt * dt)
        overrun = np.copysign(stopping_distance(self._v * dt, u), self._v)
        self._hold = _read_only(clamp_position(self._q + overrun, lim.lower, lim.upper))
        self._set_state(SafetyState.HOLD, now)

    # Read-outs --------------------------------------------------------------------------------
    def status(self, now: float) -> SafetyStatus:
        with self._lock:
            return SafetyStatus(
                state=self._state,
                fault=self._fault,
                requested_weight=1.0 if self._state in _POSITION else 0.0,
                accepted=self._accepted,
                rejected=MappingProxyType(dict(self._rejected)),
                state_rejected=MappingProxyType(dict(self._state_rejected)),
                clamped=MappingProxyType(dict(self._clamped)),
                late_commands=self._interp.late,
                since_command=math.inf if self._t_accepted is None else now - self._t_accepted,
                since_state=math.inf if self._t_state is None else now - self._t_state,
                since_transition=0.0 if self._t_transition is None else now - self._t_transition,
            )

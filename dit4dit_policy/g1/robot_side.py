"""The robot's side of the G1 DDS protocol, shared by the stand-in robots (loopback, MuJoCo sim).

What every stand-in does the way the G1 does it:
- publishes rt/lowstate at a fixed rate with a valid CRC, an incrementing tick and the configured
  mode_machine;
- takes every sample on rt/lowcmd and rt/arm_sdk and drops (and counts) each one whose CRC is
  wrong, as the robot does;
- executes the accepted commands through `CommandMixer`: before any command a stand-in for the
  built-in controller holds the hold pose; once a rt/lowcmd command is accepted the whole body
  follows the latest one (motors with mode 0 are limp), as in debug mode; otherwise the latest
  rt/arm_sdk command drives the waist and arms, blended with the built-in hold by its weight
  (motor_cmd[29].q), and its slots with mode 0 stay on the hold.

A stand-in subclasses `RobotOnDds` and supplies the plant: `_advance(now)` moves it to wall time
`now` under `self.mixer`, `_reading()` says what the sensors read. The base class owns the DDS
entities, the loop thread, the counters and the waiting helpers.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from dit4dit_policy.g1.crc import lowcmd_crc_c, lowstate_crc_c
from dit4dit_policy.g1.link import (
    MAX_DOMAIN_ID,
    TOPIC_ARM_SDK,
    TOPIC_LOWCMD,
    TOPIC_LOWSTATE,
    WRITER_QOS,
    check_network_interface,
    join_domain,
    leave_domain,
    take_raw,
    write_raw,
)
from dit4dit_policy.g1.messages import (
    ARM_SDK_WEIGHT_SLOT,
    LOWSTATE_C,
    LowCmd_,
    LowState_,
    lowcmd_c_from_cdr,
    lowcmd_view,
    lowstate_c_to_cdr,
    lowstate_view,
)
from dit4dit_policy.joint_table import JointTable
from dit4dit_policy.motor_targets import MotorTargets
from dit4dit_policy.periodic import make_realtime

GRAVITY = 9.81
MAX_COMMANDS_PER_WAKE = 256
# Keep every command until the loop takes it, so that each one is CRC-checked and counted.
COMMAND_READER_QOS = Qos(Policy.Reliability.BestEffort, Policy.History.KeepAll)
_ANY_SAMPLE = SampleState.Any | ViewState.Any | InstanceState.Any
UPPER_BODY_GROUPS = ("waist", "arm")  # what rt/arm_sdk drives


@dataclass(frozen=True)
class RobotStats:
    states_published: int
    accepted_lowcmd: int
    accepted_arm_sdk: int
    dropped_bad_crc: int
    dropped_malformed: int


@dataclass(frozen=True)
class MotorCommand:
    """One accepted LowCmd_ as arrays in joint-table order, and its arm_sdk blend weight."""

    enabled: np.ndarray  # bool: mode != 0
    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    weight: float  # motor_cmd[29].q clipped to [0, 1]; only rt/arm_sdk reads it

    @classmethod
    def from_c(cls, buf: np.ndarray, slots: np.ndarray) -> MotorCommand:
        """From a LowCmd_ C-layout buffer (messages.LOWCMD_C)."""
        m = lowcmd_view(buf)["motor_cmd"]
        return cls(
            enabled=m["mode"][slots] != 0,
            q=m["q"][slots].astype(np.float64),
            dq=m["dq"][slots].astype(np.float64),
            tau=m["tau"][slots].astype(np.float64),
            kp=m["kp"][slots].astype(np.float64),
            kd=m["kd"][slots].astype(np.float64),
            weight=float(np.clip(m["q"][ARM_SDK_WEIGHT_SLOT], 0.0, 1.0)),
        )

    @classmethod
    def from_targets(cls, targets: MotorTargets, weight: float) -> MotorCommand:
        """What G1Link would write for these targets (float32 on the wire, as the robot reads them)."""
        f32 = [np.asarray(a, np.float32).astype(np.float64) for a in (targets.q, targets.dq, targets.tau)]
        gains = [np.asarray(a, np.float32).astype(np.float64) for a in (targets.kp, targets.kd)]
        on = np.asarray(targets.enabled, bool)
        return cls(on, *(np.where(on, a, 0.0) for a in (*f32, *gains)), weight=float(np.clip(weight, 0.0, 1.0)))


@dataclass(frozen=True)
class MotorLaw:
    """Per motor, joint-table order: effort = clip(u - kp*q - kd*dq + hold*bias, +-max_effort).

    tau + kp*(q_t - q) + kd*(dq_t - dq) is affine in (q, dq), and so is any blend of such laws, so
    one (u, kp, kd) per motor says what the motors do. `hold` is the share of the built-in
    controller in each motor; a plant with gravity passes its gravity torque as `bias`, so that the
    built-in hold (like the robot's own controller) keeps its pose without sagging.
    """

    u: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    hold: np.ndarray
    max_effort: np.ndarray

    def effort(self, q: np.ndarray, dq: np.ndarray, bias: np.ndarray | float = 0.0) -> np.ndarray:
        tau = self.u - self.kp * q - self.kd * dq + self.hold * bias
        return np.clip(tau, -self.max_effort, self.max_effort)


class CommandMixer:
    """The robot's choice of who drives each motor: rt/lowcmd, rt/arm_sdk blended with the hold, or the hold."""

    def __init__(self, table: JointTable, hold_q: np.ndarray | None = None) -> None:
        n = len(table.joints)
        self.hold_q = table.column("default_position") if hold_q is None else np.asarray(hold_q, np.float64)
        if self.hold_q.shape != (n,):
            raise ValueError(f"hold pose has shape {self.hold_q.shape}, expected ({n},) (joint-table order)")
        self.hold_kp = table.column("kp")
        self.hold_kd = table.column("kd")
        self.max_effort = table.column("max_effort")
        self.upper = np.array([j.group in UPPER_BODY_GROUPS for j in table.joints])
        self._lowcmd: MotorCommand | None = None
        self._arm_sdk: MotorCommand | None = None
        self._law = self._mix()

    def lowcmd(self, cmd: MotorCommand) -> None:
        """An accepted rt/lowcmd command: from now on the whole body follows rt/lowcmd (debug mode)."""
        self._lowcmd = cmd
        self._law = self._mix()

    def arm_sdk(self, cmd: MotorCommand) -> None:
        """An accepted rt/arm_sdk command (ignored for driving once rt/lowcmd has taken over)."""
        self._arm_sdk = cmd
        self._law = self._mix()

    def clear(self) -> None:
        """Back to the built-in hold, as after power-on."""
        self._lowcmd = self._arm_sdk = None
        self._law = self._mix()

    @property
    def law(self) -> MotorLaw:
        return self._law

    def _mix(self) -> MotorLaw:
        n = len(self.hold_q)
        hold_u, hold_kp, hold_kd = self.hold_kp * self.hold_q, self.hold_kp, self.hold_kd
        if self._lowcmd is not None:
            c = self._lowcmd
            on = c.enabled
            u = np.where(on, c.tau + c.kp * c.q + c.kd * c.dq, 0.0)
            return MotorLaw(u, np.where(on, c.kp, 0.0), np.where(on, c.kd, 0.0), np.zeros(n), self.max_effort)
        if self._arm_sdk is not None:
            c = self._arm_sdk
            on = c.enabled
            # per motor: the SDK's law where enabled, else the hold; upper body blended by weight
            w = np.where(self.upper, c.weight, 0.0)
            sdk_u = np.where(on, c.tau + c.kp * c.q + c.kd * c.dq, hold_u)
            sdk_kp, sdk_kd = np.where(on, c.kp, hold_kp), np.where(on, c.kd, hold_kd)
            sdk_hold = np.where(on, 0.0, 1.0)
            return MotorLaw(
                w * sdk_u + (1 - w) * hold_u,
                w * sdk_kp + (1 - w) * hold_kp,
                w * sdk_kd + (1 - w) * hold_kd,
                w * sdk_hold + (1 - w),
                self.max_effort,
            )
        return MotorLaw(hold_u, hold_kp.copy(), hold_kd.copy(), np.ones(n), self.max_effort)


@dataclass(frozen=True)
class Reading:
    """What the robot's sensors report, joints in table order."""

    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray
    quaternion: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # w, x, y, z
    gyroscope: tuple[float, float, float] = (0.0, 0.0, 0.0)
    accelerometer: tuple[float, float, float] = (0.0, 0.0, GRAVITY)
    rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)


class RobotOnDds(ABC):
    """A stand-in G1 on DDS; run it with start()/stop() or as a context manager."""

    thread_name = "robot_on_dds"

    def __init__(
        self,
        domain_id: int,
        network_interface: str,
        rate_hz: float,
        mode_machine: int,
        table: JointTable,
        hold_q: np.ndarray | None = None,
        realtime_priority: int = 0,
    ) -> None:
        """realtime_priority: SCHED_FIFO priority of the loop thread (0: ordinary scheduling)."""
        if not 0 <= domain_id <= MAX_DOMAIN_ID:
            raise ValueError(f"domain_id {domain_id!r} outside 0..{MAX_DOMAIN_ID}")
        check_network_interface(network_interface)
        if not (math.isfinite(rate_hz) and 0 < rate_hz <= 2000):
            raise ValueError(f"rate_hz must be in (0, 2000], got {rate_hz!r}")
        if not 0 <= mode_machine <= 255:
            raise ValueError(f"mode_machine must be a uint8 (0..255), got {mode_machine!r}")
        if not 0 <= realtime_priority <= 99:
            raise ValueError(f"realtime_priority must be in 0..99 (0: ordinary scheduling), got {realtime_priority!r}")
        self.realtime_priority = realtime_priority
        self.realtime = False  # whether the loop thread got SCHED_FIFO
        self.domain_id = domain_id
        self.network_interface = network_interface
        self.rate_hz = float(rate_hz)
        self.mode_machine = int(mode_machine)
        self.table = table
        self._slots = table.motor_indices
        self.mixer = CommandMixer(table, hold_q)
        self._last_lowcmd_raw: bytes | None = None
        self._last_arm_sdk_raw: bytes | None = None
        self._stats = RobotStats(0, 0, 0, 0, 0)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._participant = None
        self._guard: GuardCondition | None = None
        self._state_buf = np.zeros(LOWSTATE_C.itemsize, np.uint8)
        v = lowstate_view(self._state_buf)
        v["mode_machine"] = self.mode_machine
        v["motor_state"]["mode"][self._slots] = 1
        self._state = v

    # the plant

    @abstractmethod
    def _advance(self, now: float) -> None:
        """Move the plant to time.monotonic() == now under self.mixer.law (called from the loop thread)."""

    @abstractmethod
    def _reading(self) -> Reading:
        """The sensors now (called from the loop thread right after _advance)."""

    # lifecycle

    def start(self) -> RobotOnDds:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__}.start: already running")
        participant = join_domain(self.domain_id, self.network_interface)
        try:
            writer = DataWriter(participant, Topic(participant, TOPIC_LOWSTATE, LowState_), qos=WRITER_QOS)
            readers = {
                name: DataReader(participant, Topic(participant, name, LowCmd_), qos=COMMAND_READER_QOS)
                for name in (TOPIC_LOWCMD, TOPIC_ARM_SDK)
            }
            waitset = WaitSet(participant)
            for reader in readers.values():
                waitset.attach(ReadCondition(reader, _ANY_SAMPLE))
            self._guard = GuardCondition(participant)
            waitset.attach(self._guard)
        except BaseException:
            leave_domain(self.domain_id, participant)
            raise
        self._participant = participant
        self._stop.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(writer, readers, waitset), name=self.thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and leave the domain; re-raises an error that killed the loop. Idempotent."""
        if self._thread is None:
            return
        self._stop.set()
        self._guard.set(True)
        self._thread.join()
        self._thread = None
        self._guard = None
        participant, self._participant = self._participant, None
        leave_domain(self.domain_id, participant)
        if self._error is not None:
            raise RuntimeError(f"the {type(self).__name__} loop failed") from self._error

    def __enter__(self) -> RobotOnDds:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # what tests and nodes look at

    def stats(self) -> RobotStats:
        return self._stats

    @property
    def accepted_lowcmd(self) -> int:
        return self._stats.accepted_lowcmd

    @property
    def accepted_arm_sdk(self) -> int:
        return self._stats.accepted_arm_sdk

    @property
    def dropped_bad_crc(self) -> int:
        return self._stats.dropped_bad_crc

    @property
    def last_lowcmd(self) -> LowCmd_ | None:
        """The last command accepted on rt/lowcmd, exactly as received."""
        raw = self._last_lowcmd_raw
        return None if raw is None else LowCmd_.deserialize(raw)

    @property
    def last_arm_sdk(self) -> LowCmd_ | None:
        """The last command accepted on rt/arm_sdk, exactly as received."""
        raw = self._last_arm_sdk_raw
        return None if raw is None else LowCmd_.deserialize(raw)

    def wait_until(self, predicate: Callable[[RobotOnDds], bool], timeout: float) -> bool:
        """Wait until predicate(self) holds (checked after every loop event) or timeout s pass."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                if self._error is not None:
                    raise RuntimeError(f"the {type(self).__name__} loop failed") from self._error
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # the loop

    def _run(self, writer: DataWriter, readers: dict[str, DataReader], waitset: WaitSet) -> None:
        period = 1.0 / self.rate_hz
        self.realtime = make_realtime(self.realtime_priority)
        try:
            next_tick = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_tick:
                    self._advance(now)
                    self._publish(writer, self._reading())
                    next_tick += period
                    if next_tick < now:  # fell behind: skip ticks rather than burst
                        next_tick = now + period
                waitset.wait(max(0, int((next_tick - time.monotonic()) * 1e9)))
                for topic, reader in readers.items():
                    for raw in take_raw(reader, MAX_COMMANDS_PER_WAKE):
                        self.receive(topic, raw)
        except BaseException as e:
            self._error = e
        finally:
            with self._cond:
                self._cond.notify_all()

    def receive(self, topic: str, raw: bytes) -> bool:
        """One serialized LowCmd_ from `topic`: executed if its CRC is right, else dropped and counted."""
        s = self._stats
        try:
            buf = lowcmd_c_from_cdr(raw)
        except Exception:  # not a LowCmd_ we can read: the robot would not execute it either
            self._count(dropped_malformed=s.dropped_malformed + 1)
            return False
        if int(lowcmd_view(buf)["crc"]) != lowcmd_crc_c(buf):
            self._count(dropped_bad_crc=s.dropped_bad_crc + 1)
            return False
        cmd = MotorCommand.from_c(buf, self._slots)
        if topic == TOPIC_LOWCMD:
            self._last_lowcmd_raw = raw
            self.mixer.lowcmd(cmd)
            self._count(accepted_lowcmd=s.accepted_lowcmd + 1)
        else:
            self._last_arm_sdk_raw = raw
            self.mixer.arm_sdk(cmd)
            self._count(accepted_arm_sdk=s.accepted_arm_sdk + 1)
        return True

    def _count(self, **changes: int) -> None:
        with self._cond:
            self._stats = RobotStats(**{**self._stats.__dict__, **changes})
            self._cond.notify_all()

    def _publish(self, writer: DataWriter, r: Reading) -> None:
        v, slots = self._state, self._slots
        m = v["motor_state"]
        m["q"][slots] = r.q
        m["dq"][slots] = r.dq
        m["tau_est"][slots] = r.tau
        imu = v["imu_state"]
        imu["quaternion"] = r.quaternion
        imu["gyroscope"] = r.gyroscope
        imu["accelerometer"] = r.accelerometer
        imu["rpy"] = r.rpy
        v["tick"] = (int(v["tick"]) + 1) & 0xFFFFFFFF
        v["crc"] = lowstate_crc_c(self._state_buf)
        write_raw(writer, lowstate_c_to_cdr(self._state_buf))
        self._count(states_published=self._stats.states_published + 1)

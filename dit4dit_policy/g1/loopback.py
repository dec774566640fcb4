"""A stand-in G1 on DDS for tests and dry runs: publishes LowState_, executes LowCmd_ crudely.

What it does, per the robot's observable behaviour:
- publishes rt/lowstate at a fixed rate with a valid CRC, an incrementing tick, the configured
  mode_machine and an IMU at rest;
- takes every sample on rt/lowcmd and rt/arm_sdk and drops (and counts) each one whose CRC is
  wrong, as the robot does;
- moves its joints under the accepted commands.

The dynamics are deliberately crude: every joint is a unit inertia with viscous friction, driven
by tau + kp*(q_t - q) + kd*(dq_t - dq) clamped to the table's max_effort, with velocity and
position clamped to the table's limits. Before any command a stand-in for the built-in controller
holds the table's default pose with the table's gains. Once a rt/lowcmd command is accepted the
whole body follows the latest one (motors with mode 0 are limp), as in debug mode. Otherwise the
latest rt/arm_sdk command drives the waist and arms, blended with the built-in hold by its weight
(motor_cmd[29].q); slots with mode 0 stay on the built-in hold.
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
import time
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
from dit4dit_policy.joint_table import DEFAULT_VARIANT, JointTable, load_joint_table

GRAVITY = 9.81
FRICTION = 2.0  # N*m*s/rad viscous friction, so lightly damped PD gains settle in ~a second
MAX_STEP = 0.05  # s; a stalled loop integrates at most this much at once
MAX_COMMANDS_PER_WAKE = 256
# Keep every command until the loop takes it, so that each one is CRC-checked and counted.
COMMAND_READER_QOS = Qos(Policy.Reliability.BestEffort, Policy.History.KeepAll)
_ANY_SAMPLE = SampleState.Any | ViewState.Any | InstanceState.Any


@dataclass(frozen=True)
class LoopbackStats:
    states_published: int
    accepted_lowcmd: int
    accepted_arm_sdk: int
    dropped_bad_crc: int
    dropped_malformed: int


@dataclass
class _Command:
    """An accepted command, columns in table order."""

    raw: bytes
    mode: np.ndarray
    q: np.ndarray
    dq: np.ndarray
    tau: np.ndarray
    kp: np.ndarray
    kd: np.ndarray
    weight: float


class LoopbackRobot:
    """The stand-in robot; run it with start()/stop() or as a context manager."""

    def __init__(
        self,
        domain_id: int = 0,
        network_interface: str = "",
        rate_hz: float = 500.0,
        mode_machine: int = 5,
        table: JointTable | None = None,
    ) -> None:
        if not 0 <= domain_id <= MAX_DOMAIN_ID:
            raise ValueError(f"domain_id {domain_id!r} outside 0..{MAX_DOMAIN_ID}")
        check_network_interface(network_interface)
        if not (math.isfinite(rate_hz) and 0 < rate_hz <= 2000):
            raise ValueError(f"rate_hz must be in (0, 2000], got {rate_hz!r}")
        if not 0 <= mode_machine <= 255:
            raise ValueError(f"mode_machine must be a uint8 (0..255), got {mode_machine!r}")
        self.domain_id = domain_id
        self.network_interface = network_interface
        self.rate_hz = float(rate_hz)
        self.mode_machine = int(mode_machine)
        self.table = table if table is not None else load_joint_table()
        t = self.table
        self._slots = t.motor_indices
        self._upper = np.array([j.group in ("waist", "arm") for j in t.joints])
        self._hold_q = t.column("default_position")
        self._hold_kp = t.column("kp")
        self._hold_kd = t.column("kd")
        self._max_effort = t.column("max_effort")
        self._max_velocity = t.column("max_velocity")
        self._q_min = t.column("min_position")
        self._q_max = t.column("max_position")
        self._q = self._hold_q.copy()
        self._dq = np.zeros(len(self._slots))
        self._tau = np.zeros(len(self._slots))
        self._lowcmd: _Command | None = None
        self._arm_sdk: _Command | None = None
        self._stats = LoopbackStats(0, 0, 0, 0, 0)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._participant = None
        self._guard: GuardCondition | None = None
        # Preallocated state message: the IMU is at rest; joints and tick change every publish.
        self._state_buf = np.zeros(LOWSTATE_C.itemsize, np.uint8)
        v = lowstate_view(self._state_buf)
        v["mode_machine"] = self.mode_machine
        v["imu_state"]["quaternion"] = (1.0, 0.0, 0.0, 0.0)
        v["imu_state"]["accelerometer"] = (0.0, 0.0, GRAVITY)
        v["motor_state"]["mode"][self._slots] = 1
        self._state = v

    # lifecycle

    def start(self) -> LoopbackRobot:
        if self._thread is not None:
            raise RuntimeError("LoopbackRobot.start: already running")
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
        self._thread = threading.Thread(
            target=self._run, args=(writer, readers, waitset), name="loopback_robot", daemon=True
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
            raise RuntimeError("the loopback robot loop failed") from self._error

    def __enter__(self) -> LoopbackRobot:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # what tests look at

    def stats(self) -> LoopbackStats:
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
        cmd = self._lowcmd
        return None if cmd is None else LowCmd_.deserialize(cmd.raw)

    @property
    def last_arm_sdk(self) -> LowCmd_ | None:
        """The last command accepted on rt/arm_sdk, exactly as received."""
        cmd = self._arm_sdk
        return None if cmd is None else LowCmd_.deserialize(cmd.raw)

    def joint_positions(self) -> np.ndarray:
        """Current joint positions in table order."""
        with self._cond:
            return self._q.copy()

    def wait_until(self, predicate: Callable[[LoopbackRobot], bool], timeout: float) -> bool:
        """Wait until predicate(self) holds (checked after every loop event) or timeout s pass."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                if self._error is not None:
                    raise RuntimeError("the loopback robot loop failed") from self._error
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # the loop

    def _run(self, writer: DataWriter, readers: dict[str, DataReader], waitset: WaitSet) -> None:
        period = 1.0 / self.rate_hz
        try:
            last = time.monotonic()
            next_publish = last
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_publish:
                    self._step(min(now - last, MAX_STEP))
                    last = now
                    self._publish(writer)
                    next_publish += period
                    if next_publish < now:  # fell behind: skip ticks rather than burst
                        next_publish = now + period
                waitset.wait(max(0, int((next_publish - time.monotonic()) * 1e9)))
                for topic, reader in readers.items():
                    for raw in take_raw(reader, MAX_COMMANDS_PER_WAKE):
                        self._receive(topic, raw)
        except BaseException as e:
            self._error = e
        finally:
            with self._cond:
                self._cond.notify_all()

    def _receive(self, topic: str, raw: bytes) -> None:
        s = self._stats
        try:
            buf = lowcmd_c_from_cdr(raw)
        except Exception:  # not a LowCmd_ we can read: the robot would not execute it either
            self._update(dropped_malformed=s.dropped_malformed + 1)
            return
        v = lowcmd_view(buf)
        if int(v["crc"]) != lowcmd_crc_c(buf):
            self._update(dropped_bad_crc=s.dropped_bad_crc + 1)
            return
        m = v["motor_cmd"]
        slots = self._slots
        cmd = _Command(
            raw=raw,
            mode=m["mode"][slots].copy(),
            q=m["q"][slots].astype(np.float64),
            dq=m["dq"][slots].astype(np.float64),
            tau=m["tau"][slots].astype(np.float64),
            kp=m["kp"][slots].astype(np.float64),
            kd=m["kd"][slots].astype(np.float64),
            weight=float(np.clip(m["q"][ARM_SDK_WEIGHT_SLOT], 0.0, 1.0)),
        )
        if topic == TOPIC_LOWCMD:
            self._lowcmd = cmd
            self._update(accepted_lowcmd=s.accepted_lowcmd + 1)
        else:
            self._arm_sdk = cmd
            self._update(accepted_arm_sdk=s.accepted_arm_sdk + 1)

    def _update(self, **changes: int) -> None:
        with self._cond:
            self._stats = LoopbackStats(**{**self._stats.__dict__, **changes})
            self._cond.notify_all()

    def _step(self, dt: float) -> None:
        q, dq = self._q, self._dq
        hold = self._hold_kp * (self._hold_q - q) - self._hold_kd * dq
        if self._lowcmd is not None:
            c = self._lowcmd
            tau = np.where(c.mode != 0, c.tau + c.kp * (c.q - q) + c.kd * (c.dq - dq), 0.0)
        elif self._arm_sdk is not None:
            c = self._arm_sdk
            sdk = np.where(c.mode != 0, c.tau + c.kp * (c.q - q) + c.kd * (c.dq - dq), hold)
            tau = np.where(self._upper, c.weight * sdk + (1.0 - c.weight) * hold, hold)
        else:
            tau = hold
        tau = np.clip(tau, -self._max_effort, self._max_effort)
        new_dq = np.clip(dq + (tau - FRICTION * dq) * dt, -self._max_velocity, self._max_velocity)
        new_q = q + new_dq * dt
        at_stop = (new_q < self._q_min) | (new_q > self._q_max)
        with self._cond:
            self._q = np.clip(new_q, self._q_min, self._q_max)
            self._dq = np.where(at_stop, 0.0, new_dq)
            self._tau = tau

    def _publish(self, writer: DataWriter) -> None:
        v, slots = self._state, self._slots
        m = v["motor_state"]
        m["q"][slots] = self._q
        m["dq"][slots] = self._dq
        m["tau_est"][slots] = self._tau
        v["tick"] = (int(v["tick"]) + 1) & 0xFFFFFFFF
        v["crc"] = lowstate_crc_c(self._state_buf)
        write_raw(writer, lowstate_c_to_cdr(self._state_buf))
        self._update(states_published=self._stats.states_published + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loopback_robot",
        description="A stand-in Unitree G1 on DDS (rt/lowstate out, rt/lowcmd + rt/arm_sdk in).",
    )
    parser.add_argument("--domain", type=int, default=0, help="DDS domain id (robot: 0; simulators: 1)")
    parser.add_argument(
        "--interface", default="", help="network interface to pin, e.g. lo; default: Cyclone's choice"
    )
    parser.add_argument("--rate", type=float, default=500.0, help="LowState_ rate in Hz")
    parser.add_argument(
        "--mode-machine", type=int, default=5, help="mode_machine to report (robot variant id)"
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="seconds to run; 0 = until SIGINT/SIGTERM"
    )
    parser.add_argument("--variant", default=DEFAULT_VARIANT, help="joint table variant")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        table = load_joint_table(args.variant)
        robot = LoopbackRobot(args.domain, args.interface, args.rate, args.mode_machine, table).start()
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    started = time.monotonic()
    print(
        f"loopback_robot: domain {args.domain}, interface {args.interface or '(default)'}, "
        f"{args.rate:g} Hz, mode_machine {args.mode_machine}, variant {args.variant}",
        flush=True,
    )
    try:
        while not stop.wait(0.2):
            if args.duration > 0 and time.monotonic() - started >= args.duration:
                break
    finally:
        robot.stop()
    s = robot.stats()
    print(
        f"loopback_robot: ran {time.monotonic() - started:.1f} s; published {s.states_published} LowState_; "
        f"accepted {s.accepted_lowcmd} rt/lowcmd and {s.accepted_arm_sdk} rt/arm_sdk; "
        f"dropped {s.dropped_bad_crc} with a bad CRC and {s.dropped_malformed} malformed",
        flush=True,
    )
    return 0

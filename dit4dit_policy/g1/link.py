"""The DDS link to a Unitree G1: latest LowState_ in, LowCmd_ out (rclpy-free, plain cyclonedds).

Wire path. cyclonedds' Python serializer needs ~250 us per LowCmd_ and ~370 us per LowState_,
and holds the GIL while doing it; at 500 Hz that is both latency and a fifth of a core. So the link
keeps each message in its C layout (numpy, the layout the CRC is defined on), converts it to XCDR1
with a few byte slices, and hands the bytes to cyclonedds' raw write/take calls
(`cyclonedds._clayer.ddspy_write/ddspy_take`, the calls DataWriter.write/DataReader.take make
after serializing). LowState_ objects are built from the C layout only when someone asks.

Network. `LinkConfig.network_interface` pins Cyclone to one interface by creating the DDS domain
with an XML config (Unitree's own SDK does the same). "" leaves Cyclone's defaults, including any
CYCLONEDDS_URI, untouched. For the loopback interface the config also names 127.0.0.1 as a
unicast discovery peer, so discovery works where multicast on `lo` is filtered. A process has one
Cyclone config per domain id: joining a domain id twice with different interfaces is an error.
"""

from __future__ import annotations

import ipaddress
import math
import numbers
import re
import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
from cyclonedds._clayer import ddspy_take, ddspy_write
from cyclonedds.core import DDSException, InstanceState, Listener, Policy, SampleState, ViewState
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from dit4dit_policy.g1.crc import LOWCMD_CRC_BYTES, crc_words, lowstate_crc_c
from dit4dit_policy.g1.messages import (
    ARM_SDK_WEIGHT_SLOT,
    LOWCMD_C,
    LowCmd_,
    LowState_,
    lowcmd_c_to_cdr,
    lowcmd_from_c,
    lowcmd_view,
    lowstate_c_from_cdr,
    lowstate_from_c,
    lowstate_to_c,
    lowstate_view,
)
from dit4dit_policy.joint_table import JointTable, load_joint_table
from dit4dit_policy.motor_targets import MotorTargets

TOPIC_LOWSTATE = "rt/lowstate"
TOPIC_LOWCMD = "rt/lowcmd"
TOPIC_ARM_SDK = "rt/arm_sdk"
MODES = {"lowcmd": TOPIC_LOWCMD, "arm_sdk": TOPIC_ARM_SDK}
MAX_DOMAIN_ID = 232  # highest id whose default RTPS ports fit in 16 bits
# A pause between sends counts as at most this much ramp time, so resuming after a stall moves the
# arm_sdk weight by one small step instead of jumping.
MAX_RAMP_DT = 0.1
LOOPBACK_NAMES = ("lo", "lo0")
_IFACE_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_ANY_SAMPLE = SampleState.Any | ViewState.Any | InstanceState.Any
_TARGET_FIELDS = ("q", "dq", "tau", "kp", "kd")  # MotorTargets / MotorCmd_ float fields, in this order

# Latest-value reader: any writer matches a best-effort reader. Reliable keep-last-1 writer: matches
# best-effort and reliable readers (ROS 2 default QoS) and never blocks on a slow reader.
READER_QOS = Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(1))
WRITER_QOS = Qos(Policy.Reliability.Reliable(duration(milliseconds=100)), Policy.History.KeepLast(1))


class NoLowStateError(RuntimeError):
    """send() was called before any LowState_ arrived, so mode_machine is unknown."""


def check_network_interface(network_interface: str) -> None:
    """ValueError unless the value is "", an interface name or an IPv4 address (syntax only)."""
    if not isinstance(network_interface, str):
        raise ValueError(f"network_interface must be a string, got {network_interface!r}")
    if network_interface == "":
        return
    try:
        addr = ipaddress.ip_address(network_interface)
    except ValueError:
        if not _IFACE_NAME.match(network_interface):
            raise ValueError(
                f"network_interface {network_interface!r} is neither an interface name "
                "(1-15 of A-Z a-z 0-9 _ . : @ -) nor an IPv4 address"
            ) from None
        return
    if addr.version != 4:
        raise ValueError(f"network_interface {network_interface!r}: only IPv4 addresses are supported")


@dataclass(frozen=True)
class LinkConfig:
    domain_id: int = 0
    network_interface: str = ""  # "", an interface name (eth0, lo) or its IPv4 address
    mode: str = "arm_sdk"  # "lowcmd": whole body on rt/lowcmd; "arm_sdk": upper body on rt/arm_sdk
    weight_ramp_time: float = 2.0  # s for the arm_sdk blend weight to travel 0 -> 1
    # Drop LowState_ samples whose CRC is wrong; off only for simulators that leave crc at 0.
    verify_state_crc: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.domain_id, bool) or not isinstance(self.domain_id, numbers.Integral):
            raise ValueError(f"domain_id must be an int, got {self.domain_id!r}")
        if not 0 <= self.domain_id <= MAX_DOMAIN_ID:
            raise ValueError(f"domain_id {self.domain_id} outside 0..{MAX_DOMAIN_ID}")
        check_network_interface(self.network_interface)
        if self.mode not in MODES:
            raise ValueError(f"unknown link mode {self.mode!r}; known: {sorted(MODES)}")
        if not (
            isinstance(self.weight_ramp_time, numbers.Real)
            and math.isfinite(self.weight_ramp_time)
            and self.weight_ramp_time > 0
        ):
            raise ValueError(f"weight_ramp_time must be a finite number > 0 s, got {self.weight_ramp_time!r}")

    @property
    def command_topic(self) -> str:
        return MODES[self.mode]


# --- domains ---------------------------------------------------------------------------------


def cyclone_config_xml(network_interface: str) -> str | None:
    """The Cyclone XML that pins a domain to one interface; None for "" (Cyclone's defaults)."""
    check_network_interface(network_interface)
    if network_interface == "":
        return None
    try:
        addr = ipaddress.ip_address(network_interface)
    except ValueError:
        nic = f'<NetworkInterface name="{network_interface}" priority="default" multicast="default"/>'
        loopback = network_interface in LOOPBACK_NAMES
    else:
        nic = f'<NetworkInterface address="{addr}" priority="default" multicast="default"/>'
        loopback = addr.is_loopback
    peers = '<Discovery><Peers><Peer address="127.0.0.1"/></Peers></Discovery>' if loopback else ""
    return (
        '<CycloneDDS><Domain Id="any"><General><Interfaces>'
        f"{nic}</Interfaces></General>{peers}</Domain></CycloneDDS>"
    )


def _check_interface_exists(network_interface: str) -> None:
    if network_interface == "" or _is_ip(network_interface):
        return
    names = sorted(name for _, name in socket.if_nameindex())
    if network_interface not in names:
        raise ValueError(f"network interface {network_interface!r} does not exist here; available: {names}")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _delete_entity(entity) -> None:
    # cyclonedds-python has no public delete; Entity.__del__ is its delete (idempotent). Deleting a
    # participant deletes its readers/writers and waits for running listener callbacks.
    entity.__del__()


@dataclass
class _JoinedDomain:
    network_interface: str
    domain: Domain | None  # None: Cyclone's default config
    participants: int = 0


_domains: dict[int, _JoinedDomain] = {}
_domains_lock = threading.Lock()


def join_domain(domain_id: int, network_interface: str = "") -> DomainParticipant:
    """A new participant on a domain, creating the domain with the pinned config on first use.

    Release it with leave_domain. Every participant a process makes on one domain id shares that
    domain's config, so a second, different network_interface for the same id is a ValueError.
    """
    with _domains_lock:
        joined = _domains.get(domain_id)
        if joined is None:
            _check_interface_exists(network_interface)
            xml = cyclone_config_xml(network_interface)
            domain = None
            if xml is not None:
                try:
                    domain = Domain(domain_id, xml)
                except DDSException as e:
                    raise RuntimeError(
                        f"cannot create DDS domain {domain_id} on network interface {network_interface!r} "
                        f"(already created in this process outside dit4dit_policy.g1?): {e}"
                    ) from e
            joined = _JoinedDomain(network_interface, domain)
        elif joined.network_interface != network_interface:
            raise ValueError(
                f"DDS domain {domain_id} is already joined in this process on network interface "
                f"{joined.network_interface!r}; cannot also join it on {network_interface!r}"
            )
        try:
            participant = DomainParticipant(domain_id)
        except DDSException:
            if joined.participants == 0 and joined.domain is not None:
                _delete_entity(joined.domain)
            raise
        joined.participants += 1
        _domains[domain_id] = joined
        return participant


def leave_domain(domain_id: int, participant: DomainParticipant) -> None:
    """Delete a participant from join_domain (and the domain with its last participant)."""
    with _domains_lock:
        _delete_entity(participant)
        joined = _domains[domain_id]
        joined.participants -= 1
        if joined.participants == 0:
            if joined.domain is not None:
                _delete_entity(joined.domain)
            del _domains[domain_id]


def take_raw(reader: DataReader, n: int) -> list[bytes]:
    """Take up to n samples as serialized bytes (header included), skipping dispose/unregister infos."""
    ret = ddspy_take(reader._ref, _ANY_SAMPLE, n)
    if isinstance(ret, int):
        raise DDSException(ret, f"Occurred while taking raw samples from {reader!r}")
    return [data for data, info in ret if info.valid_data]


def write_raw(writer: DataWriter, data: bytes) -> None:
    """Write one serialized sample (header included) without cyclonedds' Python serializer."""
    ret = ddspy_write(writer._ref, data)
    if ret < 0:
        raise DDSException(ret, f"Occurred while writing a raw sample on {writer!r}")


# --- what the link sends and receives --------------------------------------------------------


@dataclass(frozen=True)
class StateSample:
    """A LowState_ as arrays: joints in JointTable order, IMU as sent."""

    q: np.ndarray
    dq: np.ndarray
    tau_est: np.ndarray
    quaternion: np.ndarray  # w, x, y, z
    gyroscope: np.ndarray  # rad/s
    accelerometer: np.ndarray  # m/s^2
    rpy: np.ndarray  # rad
    tick: int
    mode_machine: int
    recv_time: float  # time.monotonic() at receipt; nan if not received


def _sample_from_c(buf: np.ndarray, slots: np.ndarray, recv_time: float) -> StateSample:
    v = lowstate_view(buf)
    m = v["motor_state"]
    imu = v["imu_state"]
    return StateSample(
        q=m["q"][slots].astype(np.float64),
        dq=m["dq"][slots].astype(np.float64),
        tau_est=m["tau_est"][slots].astype(np.float64),
        quaternion=imu["quaternion"].astype(np.float64),
        gyroscope=imu["gyroscope"].astype(np.float64),
        accelerometer=imu["accelerometer"].astype(np.float64),
        rpy=imu["rpy"].astype(np.float64),
        tick=int(v["tick"]),
        mode_machine=int(v["mode_machine"]),
        recv_time=recv_time,
    )


def state_sample(state: LowState_, table: JointTable, recv_time: float = math.nan) -> StateSample:
    """A LowState_ object as arrays in the table's joint order."""
    return _sample_from_c(lowstate_to_c(state), table.motor_indices, recv_time)


@dataclass(frozen=True)
class _Received:
    buf: np.ndarray  # C layout
    recv_time: float
    mode_machine: int


# --- the link --------------------------------------------------------------------------------


class G1Link:
    """Joins the robot's DDS domain, tracks rt/lowstate and publishes LowCmd_ on rt/lowcmd or rt/arm_sdk.

    send() raises NoLowStateError until the first valid LowState_ has arrived: mode_machine must be
    copied from the robot, never guessed. One thread should call send(); the state side is
    thread-safe.
    """

    def __init__(self, config: LinkConfig | None = None, table: JointTable | None = None) -> None:
        self.config = config if config is not None else LinkConfig()
        self.table = table if table is not None else load_joint_table()
        self._slots = self.table.motor_indices
        if self.config.mode == "arm_sdk" and ARM_SDK_WEIGHT_SLOT in self._slots:
            raise ValueError(
                f"joint table {self.table.variant} uses motor slot {ARM_SDK_WEIGHT_SLOT}, which arm_sdk "
                "mode needs for the blend weight"
            )
        self._participant: DomainParticipant | None = None
        self._writer: DataWriter | None = None
        self._reader: DataReader | None = None
        self._latest: _Received | None = None
        self._latest_obj: tuple[_Received, LowState_] | None = None
        self._state_lock = threading.Lock()
        self._first_state = threading.Event()
        self._send_lock = threading.Lock()
        # Preallocated command: every send rewrites the table's slots in place; the other slots
        # stay zero (mode 0) apart from the arm_sdk weight slot.
        self._buf = np.zeros(LOWCMD_C.itemsize, np.uint8)
        self._cmd = lowcmd_view(self._buf)
        motor = self._cmd["motor_cmd"]
        self._mode_col = motor["mode"]
        self._cols = tuple(motor[name] for name in _TARGET_FIELDS)  # views into self._buf
        self._weight = 0.0  # arm_sdk blend weight last written; the robot starts on its own controller
        self._last_send: float | None = None
        self.states_received = 0
        self.state_crc_errors = 0
        self.state_decode_errors = 0
        self.commands_sent = 0

    # lifecycle

    def connect(self) -> G1Link:
        if self._participant is not None:
            raise RuntimeError("G1Link.connect: already connected")
        cfg = self.config
        participant = join_domain(cfg.domain_id, cfg.network_interface)
        with self._state_lock:  # a state from an earlier connection says nothing about this one
            self._latest = self._latest_obj = None
            self._first_state.clear()
        try:
            state_topic = Topic(participant, TOPIC_LOWSTATE, LowState_)
            cmd_topic = Topic(participant, cfg.command_topic, LowCmd_)
            self._writer = DataWriter(participant, cmd_topic, qos=WRITER_QOS)
            self._reader = DataReader(
                participant, state_topic, qos=READER_QOS, listener=Listener(on_data_available=self._on_state)
            )
        except BaseException:
            self._writer = self._reader = None
            leave_domain(cfg.domain_id, participant)
            raise
        self._participant = participant
        return self

    def close(self) -> None:
        """Leave the domain; idempotent. No state callback runs after this returns.

        close() sends nothing: in arm_sdk mode, first send with arm_sdk_weight=0 until
        arm_sdk_weight reaches 0, so the robot's own controller takes the arms back smoothly.
        """
        if self._participant is None:
            return
        participant, self._participant = self._participant, None
        self._writer = self._reader = None
        leave_domain(self.config.domain_id, participant)

    def __enter__(self) -> G1Link:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._participant is not None

    def matched_readers(self) -> int:
        """How many readers (the robot, a bridge) currently match the command writer."""
        if self._writer is None:
            return 0
        return self._writer.get_publication_matched_status().current_count

    # state

    def _on_state(self, reader: DataReader) -> None:
        now = time.monotonic()
        if reader is None:
            return  # close() deleted the reader while this callback was already queued
        try:
            samples = take_raw(reader, 16)
        except DDSException:
            return  # the reader is being deleted by close()
        for raw in samples:
            try:
                buf = lowstate_c_from_cdr(raw)
            except Exception:  # a peer with a different LowState_ type: count, never crash the listener
                self.state_decode_errors += 1
                continue
            v = lowstate_view(buf)
            if self.config.verify_state_crc and int(v["crc"]) != lowstate_crc_c(buf):
                self.state_crc_errors += 1
                continue
            with self._state_lock:
                self._latest = _Received(buf, now, int(v["mode_machine"]))
                self.states_received += 1
            self._first_state.set()

    def wait_for_state(self, timeout: float) -> bool:
        """Block until the first valid LowState_ has arrived (True) or timeout s pass (False)."""
        return self._first_state.wait(timeout)

    def latest_state(self) -> tuple[LowState_, float] | None:
        """The newest valid LowState_ and its receive time (time.monotonic()), or None."""
        latest = self._latest
        if latest is None:
            return None
        with self._state_lock:
            if self._latest_obj is None or self._latest_obj[0] is not latest:
                self._latest_obj = (latest, lowstate_from_c(latest.buf))
            return self._latest_obj[1], latest.recv_time

    def joint_arrays(self, state: LowState_) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """q, dq and tau_est of a LowState_ in this link's joint-table order."""
        motors = [state.motor_state[i] for i in self._slots]
        return (
            np.array([m.q for m in motors]),
            np.array([m.dq for m in motors]),
            np.array([m.tau_est for m in motors]),
        )

    def latest_sample(self) -> StateSample | None:
        """The newest valid LowState_ as arrays in table order (cheap: no LowState_ object is built)."""
        latest = self._latest
        if latest is None:
            return None
        return _sample_from_c(latest.buf, self._slots, latest.recv_time)

    # commands

    @property
    def arm_sdk_weight(self) -> float:
        """The blend weight written by the last send (arm_sdk mode); 0 before any send."""
        return self._weight

    def send(self, targets: MotorTargets, arm_sdk_weight: float = 1.0, now: float | None = None) -> LowCmd_:
        """Write one LowCmd_ and return exactly what was written.

        arm_sdk_weight is the weight to ramp toward (arm_sdk mode only; ignored for lowcmd): each
        send moves the written weight by at most min(dt, MAX_RAMP_DT) / weight_ramp_time, dt being
        the time since the previous send (`now`, default time.monotonic()).
        """
        writer = self._writer
        if writer is None:
            raise RuntimeError("G1Link.send: not connected; call connect() first")
        latest = self._latest
        if latest is None:
            raise NoLowStateError(
                f"G1Link.send: no valid LowState_ received on {TOPIC_LOWSTATE} yet; refusing to send "
                "without the robot's mode_machine"
            )
        arrays = self._checked(targets)
        arm_sdk = self.config.mode == "arm_sdk"
        if arm_sdk and not (isinstance(arm_sdk_weight, numbers.Real) and 0.0 <= arm_sdk_weight <= 1.0):
            raise ValueError(f"arm_sdk_weight must be a number in [0, 1], got {arm_sdk_weight!r}")
        with self._send_lock:
            if now is None:
                now = time.monotonic()
            values, en = arrays
            slots = self._slots
            self._mode_col[slots] = en
            for col, row in zip(
                self._cols, values * en, strict=True
            ):  # disabled rows -> 0 (values are finite)
                col[slots] = row
            if arm_sdk:
                dt = 0.0 if self._last_send is None else min(max(now - self._last_send, 0.0), MAX_RAMP_DT)
                step = dt / self.config.weight_ramp_time
                self._weight += min(max(float(arm_sdk_weight) - self._weight, -step), step)
                self._cols[0][ARM_SDK_WEIGHT_SLOT] = self._weight
            self._last_send = now
            self._cmd["mode_machine"] = latest.mode_machine
            self._cmd["crc"] = crc_words(self._buf[:LOWCMD_CRC_BYTES])
            write_raw(writer, lowcmd_c_to_cdr(self._buf))
            self.commands_sent += 1
            return lowcmd_from_c(self._buf)

    def _checked(self, t: MotorTargets) -> tuple[np.ndarray, np.ndarray]:
        """(values, enabled): q, dq, tau, kp, kd stacked as rows, after validating them."""
        n = len(self._slots)
        values = np.empty((len(_TARGET_FIELDS), n))
        for row, name in enumerate(_TARGET_FIELDS):
            a = np.asarray(getattr(t, name), dtype=np.float64)
            if a.shape != (n,):
                raise ValueError(f"MotorTargets.{name} has shape {a.shape}; the joint table needs ({n},)")
            values[row] = a
        en = np.asarray(t.enabled)
        if en.shape != (n,) or en.dtype != np.bool_:
            raise ValueError(
                f"MotorTargets.enabled must be a bool array of shape ({n},), got {en.dtype} {en.shape}"
            )
        if not np.isfinite(values).all():
            row, col = np.argwhere(~np.isfinite(values))[0]
            raise ValueError(f"MotorTargets.{_TARGET_FIELDS[row]} is not finite for {self.table.names[col]}")
        if (values[3:] < 0).any():  # kp, kd
            row, col = np.argwhere(values[3:] < 0)[0]
            raise ValueError(
                f"MotorTargets.{_TARGET_FIELDS[3 + row]} is negative for {self.table.names[col]}"
            )
        return values, en

"""The unitree_hg DDS message types the G1 speaks, as cyclonedds IDL structs.

Type names, member names, member order and member types must match the robot's IDL exactly:
DDS matches topics by type name and (with XTypes) by type shape, and the CRC is computed over the
C layout of these fields. All structs are `final`, as on the robot.

HandState_ and PressSensorState_ are not in the project's interface notes; their layout is the
one in Unitree's public unitree_sdk2 IDL (HandState_: motor_state, press_sensor_state, imu_state,
power_v, power_a, system_v, device_v, error u32[2], reserve u32[2]).
"""

# No `from __future__ import annotations` here: cyclonedds resolves field types from the live
# annotations, and string annotations like "types.uint8" do not resolve.
from dataclasses import dataclass, field

import cyclonedds.idl as idl
import cyclonedds.idl.annotations as annotate
import cyclonedds.idl.types as types
import numpy as np

NUM_MOTOR_SLOTS = 35
# Slot whose q carries the arm_sdk blend weight on rt/arm_sdk.
ARM_SDK_WEIGHT_SLOT = 29

_NS = "unitree_hg::msg::dds_::"


def _zeros(n: int):
    """A dataclass field defaulting to a fresh list of n zeros."""
    return field(default_factory=lambda: [0] * n)


@dataclass
@annotate.final
class MotorCmd_(idl.IdlStruct, typename=_NS + "MotorCmd_"):
    mode: types.uint8 = 0
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    tau: types.float32 = 0.0
    kp: types.float32 = 0.0
    kd: types.float32 = 0.0
    reserve: types.uint32 = 0


@dataclass
@annotate.final
class LowCmd_(idl.IdlStruct, typename=_NS + "LowCmd_"):
    mode_pr: types.uint8 = 0
    mode_machine: types.uint8 = 0
    motor_cmd: types.array[MotorCmd_, NUM_MOTOR_SLOTS] = field(
        default_factory=lambda: [MotorCmd_() for _ in range(NUM_MOTOR_SLOTS)]
    )
    reserve: types.array[types.uint32, 4] = _zeros(4)
    crc: types.uint32 = 0


@dataclass
@annotate.final
class MotorState_(idl.IdlStruct, typename=_NS + "MotorState_"):
    mode: types.uint8 = 0
    q: types.float32 = 0.0
    dq: types.float32 = 0.0
    ddq: types.float32 = 0.0
    tau_est: types.float32 = 0.0
    temperature: types.array[types.int16, 2] = _zeros(2)
    vol: types.float32 = 0.0
    sensor: types.array[types.uint32, 2] = _zeros(2)
    motorstate: types.uint32 = 0
    reserve: types.array[types.uint32, 4] = _zeros(4)


@dataclass
@annotate.final
class IMUState_(idl.IdlStruct, typename=_NS + "IMUState_"):
    quaternion: types.array[types.float32, 4] = field(default_factory=lambda: [0.0] * 4)  # w, x, y, z
    gyroscope: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)
    accelerometer: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)
    rpy: types.array[types.float32, 3] = field(default_factory=lambda: [0.0] * 3)
    temperature: types.int16 = 0


@dataclass
@annotate.final
class LowState_(idl.IdlStruct, typename=_NS + "LowState_"):
    version: types.array[types.uint32, 2] = _zeros(2)
    mode_pr: types.uint8 = 0
    mode_machine: types.uint8 = 0
    tick: types.uint32 = 0
    imu_state: IMUState_ = field(default_factory=IMUState_)
    motor_state: types.array[MotorState_, NUM_MOTOR_SLOTS] = field(
        default_factory=lambda: [MotorState_() for _ in range(NUM_MOTOR_SLOTS)]
    )
    # cyclonedds represents uint8 arrays as bytes
    wireless_remote: types.array[types.uint8, 40] = field(default_factory=lambda: bytes(40))
    reserve: types.array[types.uint32, 4] = _zeros(4)
    crc: types.uint32 = 0


@dataclass
@annotate.final
class HandCmd_(idl.IdlStruct, typename=_NS + "HandCmd_"):
    motor_cmd: types.sequence[MotorCmd_] = field(default_factory=list)
    reserve: types.array[types.uint32, 4] = _zeros(4)


@dataclass
@annotate.final
class PressSensorState_(idl.IdlStruct, typename=_NS + "PressSensorState_"):
    pressure: types.array[types.float32, 12] = field(default_factory=lambda: [0.0] * 12)
    temperature: types.array[types.float32, 12] = field(default_factory=lambda: [0.0] * 12)


@dataclass
@annotate.final
class HandState_(idl.IdlStruct, typename=_NS + "HandState_"):
    motor_state: types.sequence[MotorState_] = field(default_factory=list)
    press_sensor_state: types.sequence[PressSensorState_] = field(default_factory=list)
    imu_state: IMUState_ = field(default_factory=IMUState_)
    power_v: types.float32 = 0.0
    power_a: types.float32 = 0.0
    system_v: types.float32 = 0.0
    device_v: types.float32 = 0.0
    error: types.array[types.uint32, 2] = _zeros(2)
    reserve: types.array[types.uint32, 2] = _zeros(2)


def zero_lowcmd() -> LowCmd_:
    """A LowCmd_ with every field zero: all motors off (mode 0), crc not yet filled."""
    return LowCmd_()


def zero_lowstate() -> LowState_:
    """A LowState_ with every field zero (note: the IMU quaternion too, which is not a rotation)."""
    return LowState_()


# --- C layouts -------------------------------------------------------------------------------
# The robot computes CRCs over the little-endian, naturally aligned C struct of a message, so we
# keep that layout as numpy structured dtypes (align=True is C natural alignment). Pad bytes are
# never written, so they stay zero in buffers made with np.zeros.

MOTOR_CMD_C = np.dtype(
    [
        ("mode", "u1"),
        ("q", "<f4"),
        ("dq", "<f4"),
        ("tau", "<f4"),
        ("kp", "<f4"),
        ("kd", "<f4"),
        ("reserve", "<u4"),
    ],
    align=True,
)  # 28 bytes: mode, 3 pad, 5 x f32, u32
LOWCMD_C = np.dtype(
    [
        ("mode_pr", "u1"),
        ("mode_machine", "u1"),
        ("motor_cmd", MOTOR_CMD_C, (NUM_MOTOR_SLOTS,)),
        ("reserve", "<u4", (4,)),
        ("crc", "<u4"),
    ],
    align=True,
)  # 1004 bytes: 2 x u8, 2 pad, motor_cmd @4 (35 x 28), reserve @984, crc @1000

IMU_STATE_C = np.dtype(
    [
        ("quaternion", "<f4", (4,)),
        ("gyroscope", "<f4", (3,)),
        ("accelerometer", "<f4", (3,)),
        ("rpy", "<f4", (3,)),
        ("temperature", "<i2"),
    ],
    align=True,
)  # 56 bytes: 13 x f32, i16, 2 pad
MOTOR_STATE_C = np.dtype(
    [
        ("mode", "u1"),
        ("q", "<f4"),
        ("dq", "<f4"),
        ("ddq", "<f4"),
        ("tau_est", "<f4"),
        ("temperature", "<i2", (2,)),
        ("vol", "<f4"),
        ("sensor", "<u4", (2,)),
        ("motorstate", "<u4"),
        ("reserve", "<u4", (4,)),
    ],
    align=True,
)  # 56 bytes: mode, 3 pad, 4 x f32 @4, i16[2] @20, vol @24, sensor @28, motorstate @36, reserve @40
LOWSTATE_C = np.dtype(
    [
        ("version", "<u4", (2,)),
        ("mode_pr", "u1"),
        ("mode_machine", "u1"),
        ("tick", "<u4"),
        ("imu_state", IMU_STATE_C),
        ("motor_state", MOTOR_STATE_C, (NUM_MOTOR_SLOTS,)),
        ("wireless_remote", "u1", (40,)),
        ("reserve", "<u4", (4,)),
        ("crc", "<u4"),
    ],
    align=True,
)  # 2092 bytes: version @0, mode_pr @8, mode_machine @9, 2 pad, tick @12, imu @16 (56),
#    motor_state @72 (35 x 56), wireless_remote @2032, reserve @2072, crc @2088

assert (MOTOR_CMD_C.itemsize, LOWCMD_C.itemsize) == (28, 1004)
assert (IMU_STATE_C.itemsize, MOTOR_STATE_C.itemsize, LOWSTATE_C.itemsize) == (56, 56, 2092)

# A C-layout message is held as a flat uint8 buffer (the bytes the CRC covers) and edited through
# a structured view of it. Field writes through the view never touch pad bytes, so a buffer made
# by np.zeros keeps zero pads. (Copying or tuple-assigning *structured* arrays may copy pad bytes
# from uninitialised memory, which would silently corrupt CRCs: copy the uint8 buffer instead.)


def lowcmd_view(buf: np.ndarray) -> np.ndarray:
    """0-d LOWCMD_C view of a 1004-byte uint8 buffer; writing a field writes the buffer."""
    return buf.view(LOWCMD_C).reshape(())


def lowstate_view(buf: np.ndarray) -> np.ndarray:
    """0-d LOWSTATE_C view of a 2092-byte uint8 buffer; writing a field writes the buffer."""
    return buf.view(LOWSTATE_C).reshape(())


def lowcmd_to_c(cmd: LowCmd_) -> np.ndarray:
    """The C layout of a LowCmd_ object: 1004 uint8 with zero pad bytes."""
    if len(cmd.motor_cmd) != NUM_MOTOR_SLOTS:
        raise ValueError(f"LowCmd_.motor_cmd has {len(cmd.motor_cmd)} entries, expected {NUM_MOTOR_SLOTS}")
    buf = np.zeros(LOWCMD_C.itemsize, np.uint8)
    v = lowcmd_view(buf)
    v["mode_pr"] = cmd.mode_pr
    v["mode_machine"] = cmd.mode_machine
    m = v["motor_cmd"]
    for name in MOTOR_CMD_C.names:
        m[name] = [getattr(x, name) for x in cmd.motor_cmd]
    v["reserve"] = cmd.reserve
    v["crc"] = cmd.crc
    return buf


def lowcmd_from_c(buf: np.ndarray) -> LowCmd_:
    """The LowCmd_ object holding exactly the values of a C-layout buffer (floats are the f32 values)."""
    v = lowcmd_view(buf)
    m = v["motor_cmd"]
    cols = [m[name].tolist() for name in MOTOR_CMD_C.names]
    return LowCmd_(
        mode_pr=int(v["mode_pr"]),
        mode_machine=int(v["mode_machine"]),
        motor_cmd=[MotorCmd_(*row) for row in zip(*cols, strict=True)],
        reserve=v["reserve"].tolist(),
        crc=int(v["crc"]),
    )


def lowstate_to_c(state: LowState_) -> np.ndarray:
    """The C layout of a LowState_ object: 2092 uint8 with zero pad bytes."""
    if len(state.motor_state) != NUM_MOTOR_SLOTS:
        raise ValueError(
            f"LowState_.motor_state has {len(state.motor_state)} entries, expected {NUM_MOTOR_SLOTS}"
        )
    buf = np.zeros(LOWSTATE_C.itemsize, np.uint8)
    v = lowstate_view(buf)
    for name in ("version", "mode_pr", "mode_machine", "tick", "reserve", "crc"):
        v[name] = getattr(state, name)
    v["wireless_remote"] = np.frombuffer(bytes(state.wireless_remote), np.uint8)
    imu = v["imu_state"]
    for name in IMU_STATE_C.names:
        imu[name] = getattr(state.imu_state, name)
    m = v["motor_state"]
    for name in MOTOR_STATE_C.names:
        m[name] = [getattr(x, name) for x in state.motor_state]
    return buf


def lowstate_from_c(buf: np.ndarray) -> LowState_:
    """The LowState_ object holding exactly the values of a C-layout buffer (~10x faster than deserialize)."""
    v = lowstate_view(buf)
    imu = v["imu_state"]
    m = v["motor_state"]
    cols = [m[name].tolist() for name in MOTOR_STATE_C.names]
    return LowState_(
        version=v["version"].tolist(),
        mode_pr=int(v["mode_pr"]),
        mode_machine=int(v["mode_machine"]),
        tick=int(v["tick"]),
        imu_state=IMUState_(*(imu[name].tolist() for name in IMU_STATE_C.names)),
        motor_state=[MotorState_(*row) for row in zip(*cols, strict=True)],
        wireless_remote=v["wireless_remote"].tobytes(),
        reserve=v["reserve"].tolist(),
        crc=int(v["crc"]),
    )


# XCDR1 (what Cyclone and ROS 2 write for final structs) packs the same fields with alignment
# counted from the payload start, but without trailing struct padding. So the CDR payload is the
# C layout minus the pad bytes that C puts before the first nested struct:
#   LowCmd_:   CDR = C[0:2] + C[4:6] + C[8:1004]        (1000 bytes)
#   LowState_: CDR = C[0:70] + C[72:74] + C[76:2092]    (2088 bytes)
# C[5] and C[73] are pad bytes in both encodings. Converting with these slices is ~100x faster
# than cyclonedds' generic Python serializer, which matters at 500 Hz.
CDR_LE_HEADER = b"\x00\x01\x00\x00"  # encapsulation CDR_LE, options 0
_LOWCMD_CDR_SIZE = 4 + 1000
_LOWSTATE_CDR_SIZE = 4 + 2088


def lowcmd_c_to_cdr(buf: np.ndarray) -> bytes:
    """The serialized sample (CDR_LE header + XCDR1 payload) of a LowCmd_ C-layout buffer."""
    c = buf.tobytes()
    return b"".join((CDR_LE_HEADER, c[0:2], c[4:6], c[8:]))


def lowcmd_c_from_cdr(data: bytes) -> np.ndarray:
    """The C-layout buffer of a serialized LowCmd_ sample of any encoding.

    Little-endian XCDR1 (what every known G1 peer writes) takes the fast path; anything else goes
    through cyclonedds' own deserializer.
    """
    if len(data) == _LOWCMD_CDR_SIZE and data[:2] == CDR_LE_HEADER[:2]:
        p = data[4:]
        c = b"".join((p[0:2], b"\0\0", p[2:3], b"\0\0\0", p[4:]))
        return np.frombuffer(c, np.uint8).copy()
    return lowcmd_to_c(LowCmd_.deserialize(data))


def lowstate_c_to_cdr(buf: np.ndarray) -> bytes:
    """The serialized sample (CDR_LE header + XCDR1 payload) of a LowState_ C-layout buffer."""
    c = buf.tobytes()
    return b"".join((CDR_LE_HEADER, c[0:70], c[72:74], c[76:]))


def lowstate_c_from_cdr(data: bytes) -> np.ndarray:
    """The C-layout buffer of a serialized LowState_ sample of any encoding (see lowcmd_c_from_cdr)."""
    if len(data) == _LOWSTATE_CDR_SIZE and data[:2] == CDR_LE_HEADER[:2]:
        p = data[4:]
        c = b"".join((p[0:70], b"\0\0", p[70:71], b"\0\0\0", p[72:]))
        return np.frombuffer(c, np.uint8).copy()
    return lowstate_to_c(LowState_.deserialize(data))

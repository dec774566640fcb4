"""unitree_hg message types: names, layouts, and the fast C-layout <-> CDR conversions."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl._support import Endianness
from cyclonedds.topic import Topic
from g1_strategies import NO_SHRINK, check_same, lowcmds, lowstates
from hypothesis import given, settings

from dit4dit_policy.g1 import (
    HandCmd_,
    HandState_,
    IMUState_,
    LowCmd_,
    LowState_,
    MotorCmd_,
    MotorState_,
    PressSensorState_,
    zero_lowcmd,
    zero_lowstate,
)
from dit4dit_policy.g1.messages import (
    lowcmd_c_from_cdr,
    lowcmd_c_to_cdr,
    lowcmd_from_c,
    lowcmd_to_c,
    lowcmd_view,
    lowstate_c_from_cdr,
    lowstate_c_to_cdr,
    lowstate_from_c,
    lowstate_to_c,
)

# Field order from the interface notes (HandState_/PressSensorState_ from Unitree's public IDL).
FIELDS = {
    MotorCmd_: ["mode", "q", "dq", "tau", "kp", "kd", "reserve"],
    LowCmd_: ["mode_pr", "mode_machine", "motor_cmd", "reserve", "crc"],
    MotorState_: [
        "mode",
        "q",
        "dq",
        "ddq",
        "tau_est",
        "temperature",
        "vol",
        "sensor",
        "motorstate",
        "reserve",
    ],
    IMUState_: ["quaternion", "gyroscope", "accelerometer", "rpy", "temperature"],
    LowState_: [
        "version",
        "mode_pr",
        "mode_machine",
        "tick",
        "imu_state",
        "motor_state",
        "wireless_remote",
        "reserve",
        "crc",
    ],
    HandCmd_: ["motor_cmd", "reserve"],
    PressSensorState_: ["pressure", "temperature"],
    HandState_: [
        "motor_state",
        "press_sensor_state",
        "imu_state",
        "power_v",
        "power_a",
        "system_v",
        "device_v",
        "error",
        "reserve",
    ],
}


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_dds_type_names_fields_and_extensibility(cls, dds_domain):
    participant = DomainParticipant(dds_domain)
    topic = Topic(participant, f"rt/test_{cls.__name__}", cls)
    assert topic.get_type_name() == f"unitree_hg::msg::dds_::{cls.__name__}"
    assert [f.name for f in dataclasses.fields(cls)] == FIELDS[cls]
    assert cls.__idl_annotations__["extensibility"] == "final"


def test_field_types_match_the_reference():
    hints = typing.get_type_hints(LowCmd_, include_extras=True)
    assert "uint8" in str(hints["mode_pr"]) and "uint32" in str(hints["crc"])
    assert "35" in str(hints["motor_cmd"])
    hints = typing.get_type_hints(MotorState_, include_extras=True)
    assert "int16" in str(hints["temperature"]) and "2" in str(hints["temperature"])
    hints = typing.get_type_hints(LowState_, include_extras=True)
    assert "uint8" in str(hints["wireless_remote"]) and "40" in str(hints["wireless_remote"])


def test_zero_constructors():
    c = zero_lowcmd()
    assert len(c.motor_cmd) == 35 and all(m == MotorCmd_() for m in c.motor_cmd)
    assert c.crc == 0 and c.reserve == [0] * 4
    s = zero_lowstate()
    assert len(s.motor_state) == 35 and len(s.wireless_remote) == 40
    assert s.imu_state.quaternion == [0.0] * 4
    # distinct objects, not one shared default
    c.motor_cmd[0].q = 1.0
    assert zero_lowcmd().motor_cmd[0].q == 0.0 and c.motor_cmd[1].q == 0.0


def test_serialized_sizes():
    assert len(zero_lowcmd().serialize()) == 4 + 1000
    assert len(zero_lowstate().serialize()) == 4 + 2088


@settings(NO_SHRINK, max_examples=40)
@given(lowcmds)
def test_lowcmd_fast_cdr_equals_cyclonedds(cmd):
    c = lowcmd_to_c(cmd)
    check_same(lowcmd_c_to_cdr(c), cmd.serialize(), "fast LowCmd_ CDR")
    check_same(lowcmd_c_from_cdr(cmd.serialize()).tobytes(), c.tobytes(), "C layout from CDR")
    check_same(lowcmd_from_c(c), cmd, "LowCmd_ from C layout")
    check_same(LowCmd_.deserialize(lowcmd_c_to_cdr(c)), cmd, "deserialized fast CDR")


@settings(NO_SHRINK, max_examples=25)
@given(lowstates)
def test_lowstate_fast_cdr_equals_cyclonedds(state):
    c = lowstate_to_c(state)
    check_same(lowstate_c_to_cdr(c), state.serialize(), "fast LowState_ CDR")
    check_same(lowstate_c_from_cdr(state.serialize()).tobytes(), c.tobytes(), "C layout from CDR")
    check_same(LowState_.deserialize(lowstate_c_to_cdr(c)), state, "deserialized fast CDR")
    check_same(lowstate_from_c(c), state, "LowState_ from C layout")


def test_other_encodings_take_the_deserializer_path():
    cmd = zero_lowcmd()
    cmd.mode_machine = 9
    cmd.motor_cmd[3].kp = 42.0
    big = cmd.serialize(endianness=Endianness.Big)
    assert big[:2] == b"\x00\x00"  # CDR_BE
    assert lowcmd_c_from_cdr(big).tobytes() == lowcmd_to_c(cmd).tobytes()
    state = zero_lowstate()
    state.tick = 77
    big = state.serialize(endianness=Endianness.Big)
    assert lowstate_c_from_cdr(big).tobytes() == lowstate_to_c(state).tobytes()


def test_field_writes_keep_pad_bytes_zero():
    buf = np.zeros(1004, np.uint8)
    v = lowcmd_view(buf)
    v["mode_pr"] = 0xFF
    v["mode_machine"] = 0xFF
    m = v["motor_cmd"]
    for name in ("mode", "q", "dq", "tau", "kp", "kd", "reserve"):
        m[name] = np.full(35, 255 if name == "mode" else -1).astype(m[name].dtype)
    assert buf[2] == buf[3] == 0
    for i in range(35):
        assert (buf[4 + 28 * i + 1 : 4 + 28 * i + 4] == 0).all()
    # the CDR of a record keeps the pads zero too
    cdr = lowcmd_c_to_cdr(buf)
    assert cdr[4 + 3] == 0


def test_hand_messages_round_trip():
    # f32-exact values, so the round trip compares equal
    cmd = HandCmd_(
        motor_cmd=[MotorCmd_(mode=1, q=0.5, kp=1.5, kd=0.25) for _ in range(7)], reserve=[1, 2, 3, 4]
    )
    assert HandCmd_.deserialize(cmd.serialize()) == cmd
    state = HandState_(
        motor_state=[MotorState_(q=0.25) for _ in range(7)],
        press_sensor_state=[PressSensorState_(pressure=[1.0] * 12) for _ in range(9)],
        power_v=24.0,
        error=[1, 0],
    )
    assert HandState_.deserialize(state.serialize()) == state
    assert HandState_.deserialize(HandState_().serialize()) == HandState_()

"""The LowCmd_/LowState_ CRC against a naive bit-by-bit oracle written from the interface notes."""

from __future__ import annotations

import struct
import time

from g1_strategies import NO_SHRINK, check_same, lowcmds, lowstates, u32
from hypothesis import given, settings
from hypothesis import strategies as st

from dit4dit_policy.g1 import LowCmd_, LowState_, lowcmd_crc, lowstate_crc
from dit4dit_policy.g1.crc import crc32_mpeg2, crc_words
from dit4dit_policy.g1.messages import lowcmd_to_c, lowstate_to_c

POLY = 0x04C11DB7


def naive_crc_bits(bits) -> int:
    """CRC-32, poly 0x04C11DB7, init 0xFFFFFFFF, bits in the given order, no reflection, no xorout."""
    crc = 0xFFFFFFFF
    for bit in bits:
        top = crc >> 31
        crc = (crc << 1) & 0xFFFFFFFF
        if top ^ bit:
            crc ^= POLY
    return crc


def naive_word_crc(words) -> int:
    """Each 32-bit word fed most significant bit first."""
    return naive_crc_bits((w >> i) & 1 for w in words for i in range(31, -1, -1))


def naive_byte_crc(data: bytes) -> int:
    return naive_crc_bits((b >> i) & 1 for b in data for i in range(7, -1, -1))


# Independent C layouts written with struct (natural alignment spelled out as explicit pad bytes).
MOTOR_CMD_FMT = "B3x5fI"
LOWCMD_FMT = "<BB2x" + MOTOR_CMD_FMT * 35 + "4II"
IMU_FMT = "4f3f3f3fh2x"
MOTOR_STATE_FMT = "B3x4f2hf2II4I"
LOWSTATE_FMT = "<2IBB2xI" + IMU_FMT + MOTOR_STATE_FMT * 35 + "40B4II"


def pack_lowcmd(c: LowCmd_) -> bytes:
    vals = [c.mode_pr, c.mode_machine]
    for m in c.motor_cmd:
        vals += [m.mode, m.q, m.dq, m.tau, m.kp, m.kd, m.reserve]
    return struct.pack(LOWCMD_FMT, *vals, *c.reserve, c.crc)


def pack_lowstate(s: LowState_) -> bytes:
    i = s.imu_state
    vals = [
        *s.version,
        s.mode_pr,
        s.mode_machine,
        s.tick,
        *i.quaternion,
        *i.gyroscope,
        *i.accelerometer,
        *i.rpy,
        i.temperature,
    ]
    for m in s.motor_state:
        vals += [
            m.mode,
            m.q,
            m.dq,
            m.ddq,
            m.tau_est,
            *m.temperature,
            m.vol,
            *m.sensor,
            m.motorstate,
            *m.reserve,
        ]
    return struct.pack(LOWSTATE_FMT, *vals, *s.wireless_remote, *s.reserve, s.crc)


def test_byte_crc_known_answers():
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7  # the CRC-32/MPEG-2 check value
    assert crc32_mpeg2(b"") == 0xFFFFFFFF


@settings(NO_SHRINK, max_examples=60)
@given(st.binary(max_size=64))
def test_byte_crc_matches_naive(data):
    assert crc32_mpeg2(data) == naive_byte_crc(data)


@settings(NO_SHRINK, max_examples=60)
@given(st.lists(u32, max_size=40))
def test_word_crc_matches_naive(words):
    buf = struct.pack(f"<{len(words)}I", *words)
    assert crc_words(buf) == naive_word_crc(words)
    # the definition's equivalent form: CRC-32/MPEG-2 over each word's big-endian bytes
    assert crc_words(buf) == naive_byte_crc(struct.pack(f">{len(words)}I", *words))


def test_struct_formats_have_the_documented_sizes():
    assert struct.calcsize(LOWCMD_FMT) == 1004
    assert struct.calcsize(LOWSTATE_FMT) == 2092


def test_lowcmd_layout_offsets():
    c = LowCmd_()
    c.mode_pr, c.mode_machine = 0x11, 0x22
    c.motor_cmd[1].q = 1.5
    c.motor_cmd[34].reserve = 0xA1B2C3D4
    c.reserve = [0, 0, 0, 0xDEADBEEF]
    c.crc = 0x01020304
    b = lowcmd_to_c(c).tobytes()
    assert len(b) == 1004
    assert b[0:4] == bytes([0x11, 0x22, 0, 0])
    assert struct.unpack_from("<f", b, 4 + 28 + 4)[0] == 1.5  # motor_cmd[1].q: header, one motor, mode+pad
    assert struct.unpack_from("<I", b, 4 + 34 * 28 + 24)[0] == 0xA1B2C3D4
    assert struct.unpack_from("<I", b, 984 + 12)[0] == 0xDEADBEEF
    assert struct.unpack_from("<I", b, 1000)[0] == 0x01020304


def test_lowstate_layout_offsets():
    s = LowState_()
    s.tick = 0x0A0B0C0D
    s.imu_state.temperature = -2
    s.motor_state[0].q = 2.5
    s.motor_state[34].reserve = [0, 0, 0, 0x12345678]
    s.wireless_remote = bytes(range(40))
    s.crc = 0x55AA55AA
    b = lowstate_to_c(s).tobytes()
    assert len(b) == 2092
    assert struct.unpack_from("<I", b, 12)[0] == 0x0A0B0C0D
    assert struct.unpack_from("<h", b, 16 + 52)[0] == -2
    assert struct.unpack_from("<f", b, 72 + 4)[0] == 2.5
    assert struct.unpack_from("<I", b, 72 + 34 * 56 + 52)[0] == 0x12345678
    assert b[2032:2072] == bytes(range(40))
    assert struct.unpack_from("<I", b, 2088)[0] == 0x55AA55AA


@settings(NO_SHRINK, max_examples=40)
@given(lowcmds)
def test_lowcmd_crc_matches_naive_on_random_commands(cmd):
    packed = pack_lowcmd(cmd)
    check_same(lowcmd_to_c(cmd).tobytes(), packed, "LowCmd_ C layout")
    assert lowcmd_crc(cmd) == naive_word_crc(struct.unpack("<250I", packed[:1000]))


@settings(NO_SHRINK, max_examples=25)
@given(lowstates)
def test_lowstate_crc_matches_naive_on_random_states(state):
    packed = pack_lowstate(state)
    check_same(lowstate_to_c(state).tobytes(), packed, "LowState_ C layout")
    assert lowstate_crc(state) == naive_word_crc(struct.unpack("<522I", packed[:2088]))


def test_crc_ignores_the_crc_field_and_sees_every_other_word():
    c = LowCmd_()
    base = lowcmd_crc(c)
    c.crc = 12345
    assert lowcmd_crc(c) == base
    c.motor_cmd[34].kd = 1.0  # the last word before crc is reserve[3]; kd of the last motor is nearby
    assert lowcmd_crc(c) != base
    c.motor_cmd[34].kd = 0.0
    c.reserve[3] = 1
    assert lowcmd_crc(c) != base


def test_lowcmd_crc_is_fast():
    buf = lowcmd_to_c(LowCmd_())[:1000]
    t0 = time.perf_counter()
    for _ in range(1000):
        crc_words(buf)
    per_call = (time.perf_counter() - t0) / 1000
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} us per LowCmd_ CRC"

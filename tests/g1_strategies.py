"""Hypothesis strategies and helpers shared by the unitree_hg message tests (test_g1_crc, test_g1_messages)."""

from __future__ import annotations

from hypothesis import Phase, settings
from hypothesis import strategies as st

from dit4dit_policy.g1 import IMUState_, LowCmd_, LowState_, MotorCmd_, MotorState_


def check_same(got, want, what: str) -> None:
    """Equality with a short message: pytest's own diff of 1-2 KB values takes seconds, and
    hypothesis re-runs a failing example many times while shrinking it."""
    if got == want:
        return
    if isinstance(got, bytes) and isinstance(want, bytes):
        at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
        raise AssertionError(f"{what}: lengths {len(got)}/{len(want)}, first difference at byte {at}")
    raise AssertionError(f"{what}: values differ")


# Examples are whole messages: shrinking a failure would take hypothesis' full 5-minute budget,
# so report the failing example as found.
NO_SHRINK = settings(deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])

u8 = st.integers(0, 255)
u32 = st.integers(0, 2**32 - 1)
i16 = st.integers(-(2**15), 2**15 - 1)
f32 = st.floats(width=32, allow_nan=False)


def lists(s, n):
    """Exactly n draws from s: the fixed-size arrays of the IDL."""
    return st.lists(s, min_size=n, max_size=n)


motor_cmds = st.builds(MotorCmd_, u8, f32, f32, f32, f32, f32, u32)
lowcmds = st.builds(LowCmd_, u8, u8, lists(motor_cmds, 35), lists(u32, 4), u32)
motor_states = st.builds(MotorState_, u8, f32, f32, f32, f32, lists(i16, 2), f32, lists(u32, 2), u32, lists(u32, 4))
imus = st.builds(IMUState_, lists(f32, 4), lists(f32, 3), lists(f32, 3), lists(f32, 3), i16)
lowstates = st.builds(
    LowState_,
    lists(u32, 2),
    u8,
    u8,
    u32,
    imus,
    lists(motor_states, 35),
    st.binary(min_size=40, max_size=40),
    lists(u32, 4),
    u32,
)

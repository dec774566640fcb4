import numpy as np
import pytest

from dit4dit_policy.joint_table import load_joint_table


def test_when_default_variant_expect_29_joints_in_dds_order():
    table = load_joint_table()
    assert len(table.joints) == 29
    assert list(table.motor_indices) == list(range(29))
    assert table.names[15] == "left_shoulder_pitch_joint"
    assert table.names[28] == "right_wrist_yaw_joint"


@pytest.mark.parametrize(
    ("variant", "absent"),
    [("g1_23dof", {13, 14, 20, 21, 27, 28}), ("g1_29dof_waist_locked", {13, 14}), ("g1_29dof", set())],
)
def test_when_variant_selected_expect_absent_slots_missing(variant, absent):
    table = load_joint_table(variant)
    assert set(table.motor_indices) == set(range(29)) - absent


def test_when_unknown_variant_expect_error_naming_it():
    with pytest.raises(ValueError, match="g1_99dof"):
        load_joint_table("g1_99dof")


def test_when_limits_read_expect_defaults_inside_soft_range():
    table = load_joint_table()
    lo = table.column("min_position") + table.soft_margin
    hi = table.column("max_position") - table.soft_margin
    q0 = table.column("default_position")
    assert np.all((lo <= q0) & (q0 <= hi))
    assert np.all(table.command_velocity_limits() <= table.column("max_velocity"))


def test_when_joint_missing_expect_key_error_naming_joint():
    with pytest.raises(KeyError, match="tail_joint"):
        load_joint_table().index("tail_joint")

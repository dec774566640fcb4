"""The G1 link: unitree_hg messages, their CRC, the DDS link to the robot and a loopback robot.

Plain cyclonedds; nothing here imports rclpy or any ROS module.
"""

from dit4dit_policy.g1.crc import crc32_mpeg2, crc_words, lowcmd_crc, lowstate_crc
from dit4dit_policy.g1.link import (
    G1Link,
    LinkConfig,
    MotorTargets,
    NoLowStateError,
    StateSample,
    cyclone_config_xml,
    state_sample,
)
from dit4dit_policy.g1.loopback import LoopbackRobot, LoopbackStats
from dit4dit_policy.g1.messages import (
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

__all__ = [
    "G1Link",
    "HandCmd_",
    "HandState_",
    "IMUState_",
    "LinkConfig",
    "LoopbackRobot",
    "LoopbackStats",
    "LowCmd_",
    "LowState_",
    "MotorCmd_",
    "MotorState_",
    "MotorTargets",
    "NoLowStateError",
    "PressSensorState_",
    "StateSample",
    "crc32_mpeg2",
    "crc_words",
    "cyclone_config_xml",
    "lowcmd_crc",
    "lowstate_crc",
    "state_sample",
    "zero_lowcmd",
    "zero_lowstate",
]

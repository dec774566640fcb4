"""The real robot: the safety bridge (lifecycle; activate it explicitly) and the policy node.

    ros2 launch dit4dit_policy g1_manipulation.launch.py checkpoint:=/path/to/checkpoint \
        instruction:="put the cup on the plate" network_interface:=eth0
    ros2 lifecycle set /safety_bridge configure && ros2 lifecycle set /safety_bridge activate

Machines without `ros2 launch` start the same nodes with the same parameter files through
`dit4dit_policy.runner`.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "checkpoint": ("", "checkpoint folder the policy serves"),
    "instruction": ("", "task text until one arrives on /dit4dit/instruction"),
    "network_interface": ("", "robot LAN interface to pin DDS to, e.g. eth0"),
    "dds_domain": ("0", "the robot's DDS domain"),
    "control_mode": ("arm_sdk", "arm_sdk (arms + waist, balance by the robot) or lowcmd (whole body)"),
    "camera_topic": ("/camera/color/image_raw", "head camera image topic"),
    "backend": ("torch", "torch, torch-compiled, onnx or tensorrt"),
}


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("dit4dit_policy"), "config"])
    arg = LaunchConfiguration
    bridge = LifecycleNode(
        package="dit4dit_policy",
        executable="safety_bridge",
        name="safety_bridge",
        namespace="",
        output="screen",
        parameters=[
            PathJoinSubstitution([config, "bridge.yaml"]),
            {
                "dds_domain": ParameterValue(arg("dds_domain"), value_type=int),
                "network_interface": arg("network_interface"),
                "control_mode": arg("control_mode"),
            },
        ],
    )
    policy = Node(
        package="dit4dit_policy",
        executable="policy_node",
        name="policy_node",
        output="screen",
        parameters=[
            PathJoinSubstitution([config, "policy.yaml"]),
            {
                "checkpoint": arg("checkpoint"),
                "instruction": arg("instruction"),
                "backend": arg("backend"),
                "topics.image": arg("camera_topic"),
            },
        ],
    )
    declared = [DeclareLaunchArgument(name, default_value=d, description=h) for name, (d, h) in ARGUMENTS.items()]
    return LaunchDescription([*declared, bridge, policy])

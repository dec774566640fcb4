"""Record teleoperation episodes: the recorder node with config/recorder.yaml.

    ros2 launch dit4dit_policy record_teleop.launch.py output_dir:=/data/teleop operator:=alice \
        camera_topics:="[/camera/color/image_raw, /camera/wrist/image_raw]"
    ros2 service call /recorder/start std_srvs/srv/Trigger
    ros2 service call /recorder/stop std_srvs/srv/SetBool "{data: true}"     # true: the task succeeded
    ros2 service call /recorder/discard std_srvs/srv/Trigger

The task text comes from /dit4dit/instruction (std_msgs/String, transient-local). Machines without
`ros2 launch` start the same node with the same parameter file through `dit4dit_policy.runner`.
"""

# launch recognises list parameter types only as typing.List[...] (type_utils.is_typing_list), not list[...].
from typing import List  # noqa: UP035

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "output_dir": ("recordings", "folder the episode_NNNNNN bags go to"),
    "operator": ("", "who teleoperates (written into each episode's metadata)"),
    "camera_topics": ("[/camera/color/image_raw]", "camera image topics, a YAML list"),
    "image_transport": ("raw", "raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage)"),
    "robot_variant": ("g1_29dof", "g1_29dof, g1_29dof_waist_locked or g1_23dof"),
}


def generate_launch_description() -> LaunchDescription:
    config = PathJoinSubstitution([FindPackageShare("dit4dit_policy"), "config"])
    arg = LaunchConfiguration
    recorder = Node(
        package="dit4dit_policy",
        executable="recorder",
        name="recorder",
        output="screen",
        parameters=[
            PathJoinSubstitution([config, "recorder.yaml"]),
            {
                "output_dir": arg("output_dir"),
                "operator": arg("operator"),
                "robot_variant": arg("robot_variant"),
                "topics.images": ParameterValue(arg("camera_topics"), value_type=List[str]),  # noqa: UP006
                "topics.image_transport": arg("image_transport"),
            },
        ],
    )
    declared = [DeclareLaunchArgument(name, default_value=d, description=h) for name, (d, h) in ARGUMENTS.items()]
    return LaunchDescription([*declared, recorder])

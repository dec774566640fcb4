"""The simulated G1: the MuJoCo simulator, the safety bridge (activated by itself) and the policy node.

    ros2 launch dit4dit_policy g1_sim.launch.py checkpoint:=/path/to/checkpoint \
        instruction:="touch the red block"

The simulator speaks the robot's DDS protocol on dds_domain (1, the simulators' convention) and
publishes the head camera on camera_topic; the bridge drives it exactly as it would drive the
robot. Everything runs on the wall clock unless use_sim_time:=true (the simulator then publishes
/clock). Machines without `ros2 launch` start the same nodes with the same parameter files through
`dit4dit_policy.runner`.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "checkpoint": ("", "checkpoint folder the policy serves (default: the embedded checkpoints/sim_touch_tiny)"),
    # The text the embedded checkpoint was trained with (config/sim_session.yaml).
    "instruction": ("touch the red block with the right hand", "task text until one arrives on /dit4dit/instruction"),
    "dds_domain": ("1", "the simulated robot's DDS domain"),
    "network_interface": ("lo", "interface the robot-side DDS traffic stays on"),
    "camera_topic": ("/camera/color/image_raw", "head camera image topic"),
    "backend": ("torch", "torch, torch-compiled, onnx or tensorrt"),
    "use_sim_time": ("false", "true: every node follows the simulator's /clock"),
}


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("dit4dit_policy")
    config = PathJoinSubstitution([share, "config"])
    default_checkpoint = PathJoinSubstitution([share, "checkpoints", "sim_touch_tiny"])
    arg = LaunchConfiguration
    sim_time = {"use_sim_time": ParameterValue(arg("use_sim_time"), value_type=bool)}
    robot_side = {
        "dds_domain": ParameterValue(arg("dds_domain"), value_type=int),
        "network_interface": arg("network_interface"),
    }
    sim = Node(
        package="dit4dit_policy",
        executable="g1_sim",
        name="g1_sim",
        output="screen",
        parameters=[
            PathJoinSubstitution([config, "sim.yaml"]),
            {**robot_side, **sim_time, "topics.image": arg("camera_topic")},
        ],
    )
    bridge = LifecycleNode(
        package="dit4dit_policy",
        executable="safety_bridge",
        name="safety_bridge",
        namespace="",
        output="screen",
        parameters=[
            PathJoinSubstitution([config, "bridge.yaml"]),
            # The simulator needs a few seconds to build its model: wait for its first LowState.
            # state_timeout: the simulator's relaxation of config/sim_session.yaml (bridge_overrides).
            {**robot_side, **sim_time, "autostart": True, "activate_state_wait": 30.0, "state_timeout": 0.3},
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
                **sim_time,
                "checkpoint": PythonExpression(
                    ["'", arg("checkpoint"), "' or '", default_checkpoint, "'"]
                ),
                "instruction": arg("instruction"),
                "backend": arg("backend"),
                "topics.image": arg("camera_topic"),
            },
        ],
    )
    declared = [DeclareLaunchArgument(name, default_value=d, description=h) for name, (d, h) in ARGUMENTS.items()]
    return LaunchDescription([*declared, sim, bridge, policy])

"""ament_python build of dit4dit_policy (colcon build, or pip install -e . for development)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dit4dit_policy"


def share(folder: str, pattern: str = "*") -> tuple[str, list[str]]:
    return (f"share/{PACKAGE}/{folder}", sorted(f for f in glob(f"{folder}/{pattern}")))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        share("launch", "*.launch.py"),
        share("config", "*.yaml"),
        share("urdf", "*.urdf"),
        share("checkpoints/sim_touch_tiny"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dit4dit_policy maintainers",
    maintainer_email="maintainers@dit4dit-policy.dev",
    description="DiT4DiT video-action policy on the Unitree G1 with a safety-limiting DDS bridge.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "safety_bridge = dit4dit_policy.nodes.bridge_node:main",
            "loopback_robot = dit4dit_policy.g1.loopback:main",
            "dit4dit = dit4dit_policy.cli:main",
            "policy_node = dit4dit_policy.nodes.policy_node:main",
            "recorder = dit4dit_policy.nodes.recorder_node:main",
            "g1_sim = dit4dit_policy.nodes.sim_node:main",
            "sim_expert = dit4dit_policy.nodes.expert_node:main",
            "bag_player = dit4dit_policy.nodes.bag_player_node:main",
        ],
    },
)

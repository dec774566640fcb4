"""The repository is a ROS 2 ament_python package that colcon builds and `ros2 run` can start."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

from dit4dit_policy.config import package_share
from dit4dit_policy.runner import console_scripts

ROOT = package_share()


def test_when_package_xml_parsed_expect_format3_ament_python_with_message_dependencies():
    pkg = parse_package(str(ROOT / "package.xml"))
    assert pkg.package_format == 3
    assert pkg.name == "dit4dit_policy"
    assert pkg.get_build_type() == "ament_python"
    exec_deps = {d.name for d in pkg.exec_depends}
    imported = set()
    for path in (ROOT / "dit4dit_policy").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("from", "import") and words[1].split(".")[0].endswith("_msgs"):
                imported.add(words[1].split(".")[0])
            if words[:2] == ["import", "rclpy"] or (words[:1] == ["from"] and words[1:2] == ["rclpy"]):
                imported.add("rclpy")
    assert imported, "found no ROS imports at all: the scan is broken"
    assert imported <= exec_deps, f"package.xml lacks exec_depend for {sorted(imported - exec_deps)}"


def test_when_console_scripts_listed_expect_every_one_importable_with_main():
    scripts = console_scripts()
    assert {"safety_bridge", "loopback_robot"} <= set(scripts)
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), f"{name}: {target} is not callable"


@pytest.mark.slow
def test_when_colcon_builds_the_workspace_expect_executables_and_share_files(tmp_path: Path):
    ws = ROOT / "ros2_ws"
    assert (ws / "src" / "dit4dit_policy" / "package.xml").is_file(), "ros2_ws/src does not point at the package"
    colcon = Path(sys.executable).parent / "colcon"
    result = subprocess.run(
        [
            str(colcon),
            "--log-base",
            str(tmp_path / "log"),
            "build",
            "--build-base",
            str(tmp_path / "build"),
            "--install-base",
            str(tmp_path / "install"),
        ],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    prefix = tmp_path / "install" / "dit4dit_policy"
    executables = {p.name for p in (prefix / "lib" / "dit4dit_policy").iterdir()}
    assert set(console_scripts()) <= executables
    share = prefix / "share" / "dit4dit_policy"
    assert (share / "package.xml").is_file()
    assert (share / "urdf" / "g1_29dof.urdf").is_file()
    for cfg in (ROOT / "config").glob("*.yaml"):
        assert (share / "config" / cfg.name).is_file(), f"{cfg.name} not installed"
    assert (
        prefix.parent / "dit4dit_policy" / "share" / "ament_index" / "resource_index" / "packages" / "dit4dit_policy"
    ).is_file()

"""Launch files checked statically (launch_ros is not installable here): each parses, starts only
the package's own executables, and names only parameter files that exist and hold that node's
section. On a machine with ROS 2, `ros2 launch` runs them."""

from __future__ import annotations

import ast

import pytest

from dit4dit_policy.config import load_yaml, package_share
from dit4dit_policy.runner import console_scripts

LAUNCH_FILES = sorted((package_share() / "launch").glob("*.launch.py"))


def _nodes(tree: ast.AST) -> list[dict[str, object]]:
    """Keyword arguments (constants only) of every Node(...) / LifecycleNode(...) call."""
    found = []
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) in ("Node", "LifecycleNode"):
            kwargs = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant)}
            kwargs["yaml"] = [
                n.value for n in ast.walk(call) if isinstance(n, ast.Constant) and str(n.value).endswith(".yaml")
            ]
            found.append(kwargs)
    return found


def test_when_listed_expect_the_manipulation_launch_file():
    assert "g1_manipulation.launch.py" in [p.name for p in LAUNCH_FILES]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_when_parsed_expect_package_executables_and_existing_parameter_files(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    nodes = _nodes(tree)
    assert nodes, f"{path.name} starts no node"
    scripts = console_scripts()
    for node in nodes:
        assert node.get("package") == "dit4dit_policy"
        assert node["executable"] in scripts, f"{path.name}: {node['executable']} is not a console script"
        assert node["yaml"], f"{path.name}: {node['executable']} gets no parameter file"
        for name in node["yaml"]:
            params = load_yaml(name)
            assert node["name"] in params, f"{name} has no section for node {node['name']}"
            assert "ros__parameters" in params[node["name"]]

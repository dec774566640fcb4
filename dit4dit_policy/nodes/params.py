"""Declare a node's parameters from its YAML in config/, so defaults are written in one place.

`--ros-args --params-file other.yaml` still overrides any of them in the usual ROS way.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node

from dit4dit_policy.config import section_params

_ARRAY_TYPES = {
    str: ParameterType.PARAMETER_STRING_ARRAY,
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    bool: ParameterType.PARAMETER_BOOL_ARRAY,
}


def declare_from_yaml(node: Node, file: str, section: str) -> dict[str, Any]:
    """Declare every parameter of `section` in `file` with the file's value as default.

    Returns the effective values (after command-line overrides) as a flat dict with dotted names.
    """
    defaults = section_params(file, section)
    values: dict[str, Any] = {}
    for name, default in defaults.items():
        if isinstance(default, list):
            # An empty list carries no element type; the only ones in our files are name lists.
            elem = type(default[0]) if default else str
            descriptor = ParameterDescriptor(type=_ARRAY_TYPES[elem])
            node.declare_parameter(name, default, descriptor)
        else:
            node.declare_parameter(name, default)
        try:
            values[name] = node.get_parameter(name).value
        except ParameterUninitializedException:
            # ROS parses an empty list override as "not set"; it means an empty list.
            values[name] = []
    return values

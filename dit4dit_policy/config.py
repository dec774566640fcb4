"""Where configuration files live, and the one function that reads them.

Source checkouts read the repository's `config/`; a colcon or pip install reads
`<prefix>/share/dit4dit_policy/config`. `DIT4DIT_CONFIG_DIR` overrides both.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "dit4dit_policy"


def package_share() -> Path:
    """The folder holding config/, urdf/ and launch/ for this installation."""
    source_root = Path(__file__).resolve().parent.parent
    if (source_root / "package.xml").is_file():
        return source_root
    for prefix in (sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        share = Path(prefix) / "share" / PACKAGE
        if (share / "package.xml").is_file():
            return share
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share folder: not a source checkout, and no "
        f"share/{PACKAGE} under sys.prefix or AMENT_PREFIX_PATH"
    )


def config_dir() -> Path:
    override = os.environ.get("DIT4DIT_CONFIG_DIR")
    return Path(override) if override else package_share() / "config"


def resolve(path: str | os.PathLike[str]) -> Path:
    """A path as given if it exists, else the file of that name in the config folder."""
    p = Path(path)
    if p.is_file():
        return p
    candidate = config_dir() / p
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"config file {str(path)!r} not found (also looked in {config_dir()})")


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one YAML mapping; `path` may be a bare name inside the config folder."""
    p = resolve(path)
    with p.open() as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: how ROS names nested parameters."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def section_params(file: str, section: str) -> dict[str, Any]:
    """The flat parameters (dotted names) of one node's section of a parameter file."""
    try:
        return flatten(load_yaml(file)[section]["ros__parameters"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{file}: no '{section}: ros__parameters:' section") from e

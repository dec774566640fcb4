"""The recorder's parameters (config/recorder.yaml) as frozen, validated data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dit4dit_policy.joint_table import load_joint_table
from dit4dit_policy.recording.writer import STRING, TopicSpec

IMAGE_TYPES = {"raw": "sensor_msgs/msg/Image", "compressed": "sensor_msgs/msg/CompressedImage"}
JOINT_STATE = "sensor_msgs/msg/JointState"


@dataclass(frozen=True)
class RecorderConfig:
    output_dir: Path
    operator: str
    joint_table: str
    robot_variant: str
    images: tuple[str, ...]
    image_transport: str
    joint_states: str
    teleop_command: str
    instruction: str
    episode_marker: str
    status: str
    start_service: str
    stop_service: str
    discard_service: str
    max_queue_bytes: int
    flush_period: float
    status_rate: float

    def __post_init__(self) -> None:
        if self.image_transport not in IMAGE_TYPES:
            raise ValueError(
                f"parameter topics.image_transport must be raw or compressed, got {self.image_transport!r}"
            )
        for name in ("max_queue_bytes", "flush_period", "status_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"parameter {name} must be > 0, got {getattr(self, name)}")
        names = {
            **{f"topics.images[{i}]": t for i, t in enumerate(self.images)},
            "topics.joint_states": self.joint_states,
            "topics.teleop_command": self.teleop_command,
            "topics.instruction": self.instruction,
            "topics.episode_marker": self.episode_marker,
            "topics.status": self.status,
            "services.start": self.start_service,
            "services.stop": self.stop_service,
            "services.discard": self.discard_service,
        }
        seen: dict[str, str] = {}
        for param, name in names.items():
            if not name:
                raise ValueError(f"parameter {param} is empty")
            if name in seen:
                raise ValueError(f"parameters {seen[name]} and {param} name the same topic or service {name!r}")
            seen[name] = param
        try:
            load_joint_table(self.robot_variant, self.joint_table)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"parameters joint_table / robot_variant: {e}") from e

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> RecorderConfig:
        """From the node's flat parameter dict (dotted names, as `declare_from_yaml` returns it)."""
        if not p["output_dir"]:
            raise ValueError("parameter output_dir is empty: name the folder episodes go to")
        return cls(
            output_dir=Path(p["output_dir"]),
            operator=p["operator"],
            joint_table=p["joint_table"],
            robot_variant=p["robot_variant"],
            images=tuple(p["topics.images"]),
            image_transport=p["topics.image_transport"],
            joint_states=p["topics.joint_states"],
            teleop_command=p["topics.teleop_command"],
            instruction=p["topics.instruction"],
            episode_marker=p["topics.episode_marker"],
            status=p["topics.status"],
            start_service=p["services.start"],
            stop_service=p["services.stop"],
            discard_service=p["services.discard"],
            max_queue_bytes=p["max_queue_bytes"],
            flush_period=p["flush_period"],
            status_rate=p["status_rate"],
        )

    def recorded_topics(self) -> list[TopicSpec]:
        """What goes into each bag besides the episode markers."""
        image = IMAGE_TYPES[self.image_transport]
        return [
            *(TopicSpec(t, image) for t in self.images),
            TopicSpec(self.joint_states, JOINT_STATE),
            TopicSpec(self.teleop_command, JOINT_STATE),
            TopicSpec(self.instruction, STRING),
        ]

"""What a closed-loop replay leaves behind: the commands, on the bag's recorded time axis, in a folder.

`commands.npz` holds two streams for the policy's action joints: `command` (the JointState targets
the policy node sent the safety bridge, at their header stamps) and `wire` (the LowCmd_ position
targets the bridge wrote to the robot, at their arrival in the replaying process). Times are
seconds of recorded time since the bag's first message, so replays at different speeds share one
axis; both streams cover the playback and a short tail after it. `replay.json` says what was
replayed with what, and what the nodes reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

COMMANDS_FILE = "commands.npz"
INFO_FILE = "replay.json"
STREAMS = ("command", "wire")


@dataclass(frozen=True, eq=False)
class Stream:
    t: np.ndarray  # [N] recorded seconds since the bag's start, ascending
    q: np.ndarray  # [N, J] radians

    def __post_init__(self) -> None:
        if self.t.ndim != 1 or self.q.ndim != 2 or self.q.shape[0] != self.t.size:
            raise ValueError(f"a stream needs t [N] and q [N, J], got {self.t.shape} and {self.q.shape}")


@dataclass(frozen=True, eq=False)
class ReplayRecord:
    names: tuple[str, ...]  # the policy's action joints: the columns of every stream
    command: Stream
    wire: Stream
    info: dict[str, Any]

    def write(self, folder: Path) -> None:
        """Into an existing folder (the caller stages it)."""
        np.savez_compressed(
            folder / COMMANDS_FILE,
            names=np.array(self.names),
            **{f"{s}_{x}": getattr(getattr(self, s), x) for s in STREAMS for x in ("t", "q")},
        )
        (folder / INFO_FILE).write_text(json.dumps(self.info, indent=2))

    @classmethod
    def read(cls, folder: Path) -> ReplayRecord:
        folder = Path(folder)
        for name in (COMMANDS_FILE, INFO_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder}: not a replay folder (no {name}); make one with dit4dit replay-bag")
        try:
            with np.load(folder / COMMANDS_FILE) as data:
                names = tuple(str(n) for n in data["names"])
                streams = {s: Stream(data[f"{s}_t"], data[f"{s}_q"].reshape(-1, len(names))) for s in STREAMS}
            info = json.loads((folder / INFO_FILE).read_text())
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"{folder}: unreadable replay record: {e}") from e
        return cls(names=names, info=info, **streams)

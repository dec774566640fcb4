"""Start a set of the package's nodes as processes, for machines without `ros2 launch`.

Each node is the same console script `ros2 run dit4dit_policy <name>` would start, with the same
`--ros-args` (parameter files from config/, overrides), so a launch file and this runner start the
same thing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from dit4dit_policy.config import PACKAGE, resolve


def console_scripts() -> dict[str, str]:
    """The package's executables: name -> 'module:function'."""
    return {
        ep.name: ep.value
        for ep in entry_points(group="console_scripts")
        if ep.dist is not None and ep.dist.name.replace("-", "_") == PACKAGE
    }


@dataclass
class NodeSpec:
    executable: str
    params_files: list[str] = field(default_factory=list)
    overrides: dict[str, object] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        scripts = console_scripts()
        if self.executable not in scripts:
            raise ValueError(f"{self.executable!r} is not an executable of {PACKAGE}; known: {sorted(scripts)}")
        module, func = scripts[self.executable].split(":")
        ros_args: list[str] = []
        for f in self.params_files:
            ros_args += ["--params-file", str(resolve(f))]
        for key, value in self.overrides.items():
            ros_args += ["-p", f"{key}:={_ros_value(value)}"]
        # Exactly what the console script runs, without depending on where it was installed.
        launcher = f"import sys; from {module} import {func}; sys.exit({func}())"
        cmd = [sys.executable, "-c", launcher, *self.args]
        return cmd + (["--ros-args", *ros_args] if ros_args else [])


def _ros_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_ros_value(v) for v in value) + "]"
    return str(value)


class ProcessGroup:
    """Runs node processes; stops them with SIGTERM (so the bridge damps), then SIGKILL."""

    def __init__(self, env: dict[str, str] | None = None, log_dir: Path | None = None):
        self.env = {**os.environ, **(env or {})}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def start(self, name: str, spec: NodeSpec) -> subprocess.Popen:
        if name in self.procs:
            raise ValueError(f"a process named {name!r} is already running")
        out = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop())
            self._logs.append(out)
        proc = subprocess.Popen(spec.command(), env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"process {name!r} exited early with code {proc.returncode}{self._tail(name)}")

    def _tail(self, name: str) -> str:
        if self.log_dir is None:
            return ""
        log = self.log_dir / f"{name}.log"
        return "; last output:\n" + log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def stop(self, timeout: float = 10.0) -> dict[str, int]:
        """Stop in reverse start order, each within `timeout` s: the bridge damps while the robot
        (or simulator) it talks to is still there."""
        codes = {}
        for name, proc in reversed(self.procs.items()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[name] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        return codes

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Sessions on the simulated G1: the node set, started as processes, and the episodes run on it.

Three drivers share one stack (the simulator, the safety bridge, autostarted, on a DDS domain of
their own):
- `expert`: the scripted expert teleoperates through the bridge and the recorder records each
  episode, like a person with a teleoperation rig (`dit4dit collect`);
- `policy`: the policy node drives the bridge (the demo);
- `corrections`: the policy node drives the bridge while the expert, watching, publishes what it
  would command on the teleoperation topic, and the recorder records that as the action
  (`dit4dit collect --policy CKPT`): DAgger's demonstrations in the states the policy itself
  reaches, which expert-driven episodes never show it. The expert can label any state because
  its command is a function of what it observes, not of a plan.
Settings: config/sim_session.yaml; each node reads its own parameter file, as `ros2 launch
dit4dit_policy g1_sim.launch.py` would start them.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dit4dit_policy.config import load_yaml, package_share
from dit4dit_policy.runner import NodeSpec, ProcessGroup

SESSION_FILE = "sim_session.yaml"
DRIVERS = ("expert", "policy", "corrections")


@dataclass(frozen=True)
class SessionSettings:
    instruction: str
    checkpoint: Path
    bridge_overrides: dict[str, Any]
    collect: dict[str, Any]
    demo: dict[str, Any]

    @classmethod
    def load(cls, file: str = SESSION_FILE) -> SessionSettings:
        data = load_yaml(file)
        missing = {"instruction", "checkpoint", "bridge_overrides", "collect", "demo"} - data.keys()
        if missing:
            raise ValueError(f"{file}: missing {sorted(missing)}")
        return cls(
            instruction=str(data["instruction"]),
            checkpoint=package_share() / data["checkpoint"],
            bridge_overrides=dict(data["bridge_overrides"]),
            collect=dict(data["collect"]),
            demo=dict(data["demo"]),
        )


def _topic(file: str, section: str, key: str) -> str:
    return load_yaml(file)[section]["ros__parameters"]["topics"][key]


def stack_specs(
    dds_domain: int,
    driver: str,
    settings: SessionSettings,
    *,
    checkpoint: Path | None = None,
    recordings: Path | None = None,
) -> dict[str, NodeSpec]:
    """The node set, in start order (the group stops it in reverse: the bridge damps while the
    simulator is still there)."""
    if driver not in DRIVERS:
        raise ValueError(f"driver must be one of {DRIVERS}, got {driver!r}")
    if driver != "policy" and recordings is None:
        raise ValueError(f"the {driver} driver records: give a recordings folder")
    if driver != "expert" and checkpoint is None:
        raise ValueError(f"the {driver} driver needs a checkpoint")
    if driver == "expert":
        command_topic = _topic("expert.yaml", "sim_expert", "command")
    else:
        command_topic = _topic("policy.yaml", "policy_node", "joint_command")
    specs = {
        "sim": NodeSpec("g1_sim", ["sim.yaml"], {"dds_domain": dds_domain}),
        "bridge": NodeSpec(
            "safety_bridge",
            ["bridge.yaml"],
            {
                "dds_domain": dds_domain,
                "autostart": True,
                "topics.joint_command": command_topic,
                "diagnostics_rate": 5.0,
                **settings.bridge_overrides,
            },
        ),
    }
    if driver != "expert":
        specs["policy"] = NodeSpec(
            "policy_node", ["policy.yaml"], {"checkpoint": str(checkpoint), "instruction": settings.instruction}
        )
    if driver != "policy":
        specs["expert"] = NodeSpec("sim_expert", ["expert.yaml"])
        specs["recorder"] = NodeSpec("recorder", ["recorder.yaml"], {"output_dir": str(recordings)})
    return specs


@dataclass
class Stack:
    group: ProcessGroup
    ros_domain: int
    dds_domain: int
    logs: Path
    sim: Any  # nodes.sim_client.SimClient
    bridge: Any  # nodes.bridge_client.BridgeClient
    # The policy node's restart service; None where no policy drives.
    policy_restart: str | None
    # Header stamp (s) of the newest command the policy node published (set by running_stack).
    policy_command_stamp: float = float("-inf")
    # ROS time (s) of the policy node's latest restart (new_episode): its commands of the current
    # episode are stamped after it.
    policy_restarted: float = float("-inf")

    def check(self) -> None:
        """Raise if a node died or the bridge latched a fault: the session cannot go on."""
        self.group.check_alive()
        status = self.bridge.last_status()
        if status.get("state", "").lower() in ("fault", "estop"):
            raise RuntimeError(
                f"the safety bridge latched {status['state']}: {status.get('fault')} (logs: {self.logs})"
            )

    def new_episode(self, timeout: float = 10.0) -> dict:
        """Start an episode, as an operator would after resetting the scene; returns its task state.

        1. The bridge stops (/dit4dit/stop): damping, no position gains, commands refused. Its
           output would otherwise still hold the pose where the last episode ended and pull the arm
           back there the moment the simulator puts it home (measured: from 0.9 to 0.4 rad at the
           elbow within the ~30 ms until the bridge re-engaged).
        2. The simulator places a new block and puts the robot back home (a teleport, which a real
           robot cannot do).
        3. The policy node restarts: it drops its chunks and uses only what it observes from now
           on. The frames and joint states before showed the old scene, and a chunk inferred from
           them drove the arm back toward the old pose and then home (measured: commands at up to
           2.5x the velocity limit).
        4. The bridge re-engages (/dit4dit/reset) from the pose it measures, through its start-up
           ramp, with no target but that pose.
        5. With a policy, this returns once its first command of the new scene is out. Until then
           the bridge holds (no command for hold_after): the robot stays at home meanwhile.
        """
        from std_srvs.srv import Trigger

        def call(name: str, what: str) -> None:
            answer = self.bridge.call(Trigger, name, Trigger.Request(), timeout)
            if not answer.success:
                raise RuntimeError(f"{name} did not {what}: {answer.message} (logs: {self.logs})")

        call(self.bridge.topics["stop_service"], "stop the bridge")
        task = self.sim.reset()
        if self.policy_restart is not None:
            call(self.policy_restart, "restart the policy")
            self.policy_restarted = self.bridge.node.get_clock().now().nanoseconds * 1e-9
        call(self.bridge.topics["reset_service"], "re-engage the bridge")
        if self.policy_restart is not None:
            self.wait_for_policy_command(self.policy_restarted, timeout, "the policy's first command of the episode")
        return task

    def wait_for_policy_command(self, after: float, timeout: float, what: str) -> None:
        """Until the policy node has published a command stamped at or after `after` (s)."""
        from dit4dit_policy.nodes.bridge_client import wait_for

        wait_for(lambda: self.policy_command_stamp >= after, timeout, what)


@contextmanager
def running_stack(driver: str, settings: SessionSettings, **kwargs: Any) -> Iterator[Stack]:
    """Start the stack on fresh domains (no cross-talk with anything else on the machine); stop it on exit.

    The simulator comes first and the rest only once it runs, as on the robot: a bridge activated
    while the robot is still starting would see its state stream stall and latch a fault."""
    from dit4dit_policy.nodes.bridge_client import BridgeClient
    from dit4dit_policy.nodes.sim_client import SimClient

    dds_domain, ros_domain = random.randint(100, 232), random.randint(1, 100)
    logs = Path(tempfile.mkdtemp(prefix=f"dit4dit_{driver}_"))
    specs = stack_specs(dds_domain, driver, settings, **kwargs)
    with ProcessGroup(env={"ROS_DOMAIN_ID": str(ros_domain)}, log_dir=logs) as group, ExitStack() as clients:
        group.start("sim", specs.pop("sim"))
        sim = clients.enter_context(SimClient(ros_domain))
        sim.wait_for_sim(60.0)
        bridge = clients.enter_context(BridgeClient(ros_domain, name=f"{driver}_session"))
        for name, spec in specs.items():
            group.start(name, spec)
        restart = None if driver == "expert" else _topic("policy.yaml", "policy_node", "restart_service")
        stack = Stack(group, ros_domain, dds_domain, logs, sim, bridge, restart)
        if restart is not None:
            from sensor_msgs.msg import JointState

            from dit4dit_policy.nodes.common import stamp_seconds

            def on_command(msg: JointState) -> None:
                stack.policy_command_stamp = stamp_seconds(msg.header.stamp)

            topic = _topic("policy.yaml", "policy_node", "joint_command")
            bridge.node.create_subscription(JointState, topic, on_command, 10)
        yield stack


def progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )


def collect(
    recordings: Path,
    episodes: int,
    console: Console,
    settings: SessionSettings | None = None,
    policy: Path | None = None,
) -> dict:
    """Record `episodes` episodes into `recordings` (one bag each, success flag = the episode
    ended back home after the touch), the expert driving - or, given a `policy` checkpoint, the
    policy driving and the expert's commands recorded as the actions (the `corrections` driver).
    Existing episodes there are kept; new ones follow them."""
    from dit4dit_policy.nodes.bridge_client import wait_for
    from dit4dit_policy.nodes.recorder_client import RecorderClient

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    settings = settings or SessionSettings.load()
    driver = "expert" if policy is None else "corrections"
    timeout = float(settings.collect["episode_timeout" if policy is None else "corrections_timeout"])
    recordings = recordings.resolve()
    results = []
    with (
        running_stack(driver, settings, recordings=recordings, checkpoint=policy) as stack,
        ExitStack() as clients,
    ):
        console.print(
            f"simulated G1 on DDS domain {stack.dds_domain}, ROS domain {stack.ros_domain}; logs in {stack.logs}"
        )
        sim, bridge = stack.sim, stack.bridge
        recorder = RecorderClient(stack.ros_domain)
        clients.callback(recorder.close)
        recorder.wait_for_recorder(60.0)
        wait_for(
            lambda: bridge.last_status().get("state", "").lower() == "active",
            60.0,
            "the bridge to finish its start-up ramp",
        )
        recorder.instruct(settings.instruction)
        if policy is not None:
            stack.wait_for_policy_command(float("-inf"), 120.0, "the policy node's first commands")
        with progress(console) as bar:
            task = bar.add_task(f"{driver} episodes", total=episodes, note="")
            for _ in range(episodes):
                stack.check()
                stack.new_episode()
                started = recorder.start()
                if not started.success:
                    raise RuntimeError(f"the recorder did not start an episode: {started.message}")
                outcome = sim.wait_for_outcome(timeout)
                stopped = recorder.stop(outcome.done)
                if not stopped.success:
                    raise RuntimeError(f"the recorder did not finish episode {outcome.episode}: {stopped.message}")
                results.append({"episode": outcome.episode, "done": outcome.done, "time": outcome.time})
                done = sum(r["done"] for r in results)
                bar.update(task, advance=1, note=f"{done}/{len(results)} successful")
        stack.check()
    done = sum(r["done"] for r in results)
    console.print(f"{done} of {episodes} {driver} episodes successful; recordings in {recordings}")
    return {"episodes": results, "successful": done, "recordings": str(recordings)}


def _cmd_collect(args: Any) -> int:
    collect(args.out, args.episodes, Console(), policy=args.policy)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("collect", help="record scripted-expert teleoperation episodes on the simulated G1")
    p.add_argument("--out", type=Path, required=True, help="recordings folder (episodes are added to it)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument(
        "--policy",
        type=Path,
        help="checkpoint: the policy drives and the expert's commands are recorded as the actions (DAgger)",
    )
    p.set_defaults(run=_cmd_collect)

"""A ROS client of the simulated G1's task: reset episodes and wait for their outcome.

Used by data collection, the demo and the tests. Runs its own rclpy context and executor thread,
so it can live beside anything else (like bridge_client.BridgeClient).

    with SimClient(domain_id) as sim:
        task = sim.reset()                      # the new episode's task state (dict, see sim_node)
        outcome = sim.wait_for_outcome(30.0)    # success (touched), done (back home), times
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from rclpy.qos import DurabilityPolicy, QoSProfile
from std_msgs.msg import String
from std_srvs.srv import Trigger

from dit4dit_policy.config import section_params
from dit4dit_policy.nodes.bridge_client import wait_for
from dit4dit_policy.nodes.common import RosClient
from dit4dit_policy.sim.config import SIM_PARAMS_FILE, SIM_SECTION


@dataclass(frozen=True)
class Outcome:
    """How an episode went: `done` is the success of a whole episode (touched, then back home)."""

    episode: int
    success: bool  # the block was touched
    done: bool  # and the arm is back at home, at rest
    success_time: float | None  # s of simulated time from the reset to the touch
    done_time: float | None  # ... to back home
    waited: float  # s of wall time wait_for_outcome waited
    task: dict  # the last task state seen
    closest: float  # m: the smallest hand-to-block distance in the task states seen this episode (20 Hz)

    @property
    def time(self) -> float | None:
        """Episode time of the outcome: back home if done, else the touch, else None."""
        return self.done_time if self.done else self.success_time


class SimClient(RosClient):
    def __init__(self, domain_id: int, params_file: str = SIM_PARAMS_FILE, name: str = "sim_client"):
        super().__init__(domain_id, name)
        p = section_params(params_file, SIM_SECTION)
        self._reset_name = p["services.reset"]
        self._cond = threading.Condition()
        self._task: dict | None = None
        self._closest = float("inf")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(String, p["topics.task"], self._on_task, latched)
        self._reset = self.node.create_client(Trigger, self._reset_name)
        self.start_spinning()

    def _on_task(self, msg: String) -> None:
        task = json.loads(msg.data)
        with self._cond:
            self._note(task)
            self._cond.notify_all()

    def _note(self, task: dict) -> None:
        """Take a task state (under the lock): the newest episode's, and its closest approach."""
        if self._task is not None and task["episode"] < self._task["episode"]:
            return
        if self._task is None or task["episode"] != self._task["episode"]:
            self._closest = float("inf")
        self._closest = min(self._closest, task["hand_block_distance"])
        self._task = task

    def latest_task(self) -> dict | None:
        """The latest task state (None before the first)."""
        with self._cond:
            return self._task

    def wait_for_sim(self, timeout: float = 30.0) -> dict:
        """Until the simulator's task state and reset service are there; returns the task state."""
        wait_for(lambda: self.latest_task() is not None, timeout, "the simulator's task state")
        if not self._reset.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {self._reset_name} not available after {timeout} s")
        return self.latest_task()

    def reset(self, timeout: float = 10.0) -> dict:
        """Start a new episode; returns its task state. Later waits are for this episode."""
        if not self._reset.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {self._reset_name} not available after {timeout} s")
        future = self._reset.call_async(Trigger.Request())
        wait_for(future.done, timeout, f"an answer from {self._reset_name}")
        response = future.result()
        if not response.success:
            raise RuntimeError(f"{self._reset_name} failed: {response.message}")
        task = json.loads(response.message)
        with self._cond:
            self._note(task)
        return task

    def wait_for_outcome(self, timeout: float, until: str = "done") -> Outcome:
        """Wait until the current episode is `done` (touched, then back home) - or, with
        until="success", only touched - or `timeout` s (wall clock) pass; then say how it went."""
        if until not in ("done", "success"):
            raise ValueError(f"until must be 'done' or 'success', got {until!r}")
        start = time.monotonic()
        with self._cond:
            if self._task is None:
                raise RuntimeError("no task state yet: call wait_for_sim() or reset() first")
            episode = self._task["episode"]
            task = self._task
            while not task[until]:
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    break
                self._cond.wait(left)
                if self._task["episode"] != episode:  # reset by someone else: this episode is over
                    break
                task = self._task
        return Outcome(
            episode=task["episode"],
            success=task["success"],
            done=task["done"],
            success_time=task["success_time"],
            done_time=task["done_time"],
            waited=time.monotonic() - start,
            task=task,
            closest=self._closest,
        )

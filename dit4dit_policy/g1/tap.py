"""A passive reader of the commands on the robot's DDS topics: what the robot receives, as it sees it.

For the demo, the benchmark and tests; it writes nothing.
"""

from __future__ import annotations

import time

from cyclonedds.core import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from dit4dit_policy.g1.link import join_domain, leave_domain
from dit4dit_policy.g1.messages import LowCmd_


class CommandTap:
    """Keeps every LowCmd_ written on `topic` (rt/arm_sdk or rt/lowcmd), with its arrival time."""

    def __init__(self, domain_id: int, topic: str = "rt/arm_sdk", network_interface: str = ""):
        self._domain_id = domain_id
        self._participant = join_domain(domain_id, network_interface)
        qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepAll)
        self._reader = DataReader(self._participant, Topic(self._participant, topic, LowCmd_), qos=qos)
        self.samples: list[LowCmd_] = []
        self.arrivals: list[float] = []

    def poll(self) -> list[LowCmd_]:
        """Take what arrived since the last poll; returns every sample so far."""
        new = self._reader.take(N=10_000)
        now = time.monotonic()
        self.samples.extend(new)
        self.arrivals.extend([now] * len(new))
        return self.samples

    def close(self) -> None:
        if self._participant is not None:
            self._reader = None
            leave_domain(self._domain_id, self._participant)
            self._participant = None

"""Shared fixtures. DDS and ROS tests get a domain of their own so that parallel runs never cross-talk."""

from __future__ import annotations

import os
import random

import pytest

from dit4dit_policy.joint_table import load_joint_table


@pytest.fixture
def dds_domain() -> int:
    """A DDS domain id no other test process is likely to be using (valid ids are 0..232)."""
    return random.Random(os.getpid() ^ random.getrandbits(32)).randint(100, 232)


@pytest.fixture(scope="session")
def joint_table():
    return load_joint_table()


@pytest.fixture
def torch_one_thread():
    """Run the test with one torch thread: tiny tensors gain nothing from a second one (only synchronisation), and
    the machine is shared. Model tests request it module-wide with `pytestmark = pytest.mark.usefixtures(...)`."""
    import torch  # here, not at the top: the DDS/ROS tests that share this conftest never need torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

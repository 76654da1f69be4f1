"""The client tests talk to a simulator that accepts the shared test key and token."""

from __future__ import annotations

import pytest

from teckochecker.simulator import RunningSimulator
from tests.conftest import register_test_credentials


@pytest.fixture
def simulator(simulator: RunningSimulator) -> RunningSimulator:
    return register_test_credentials(simulator)

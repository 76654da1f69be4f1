"""A local stand-in for the OpenAI Batch API and the Keboola Job Queue, with fault injection.

Start it with `start_simulator()` (a background thread, free port) or `teckochecker simulate`; steer it
with `SimulatorControl`. See docs/SIMULATOR.md.
"""

from teckochecker.simulator.control import SimulatorControl, SimulatorError
from teckochecker.simulator.server import RunningSimulator, SimulatorServer, start_simulator

__all__ = ["RunningSimulator", "SimulatorControl", "SimulatorError", "SimulatorServer", "start_simulator"]

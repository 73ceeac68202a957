"""The bundled SMSC simulator: an operator's SMSC on a laptop, quirks included, and its control API.

`Simulator(config).run()` serves SMPP 3.4 binds and the HTTP control API; `load_config` reads and validates
config/simulator.yaml; `python -m simulator` runs it from the command line.
"""

from __future__ import annotations

from ._app import Addresses, Simulator
from ._config import ConfigError, SimulatorConfig, load_config, parse_config
from ._smsc import MoResult, Smsc, SmscStatistics

__all__ = [
    "Addresses",
    "ConfigError",
    "MoResult",
    "Simulator",
    "SimulatorConfig",
    "Smsc",
    "SmscStatistics",
    "load_config",
    "parse_config",
]

"""An Agora Cloud Recording emulator: the REST API, the recording tasks behind it, and the NCS sender.

Run it with ``python -m agora_emulator --port 8090 --notify-url http://127.0.0.1:8000/webhooks/agora ...``,
or in-process with ``Emulator(Config(...)).serve_in_thread()``. Faults and channel users are switched through
flags or the control API under ``/_emulator/``.
"""

from agora_emulator.app import Config, Emulator
from agora_emulator.faults import Fault, FaultError, parse_cli_fault, parse_fault

__all__ = ["Config", "Emulator", "Fault", "FaultError", "parse_cli_fault", "parse_fault"]

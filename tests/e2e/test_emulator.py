"""The emulator as its own process (``python -m agora_emulator``, as the contract runs it): its flags, its
control API, SIGTERM. Its behaviour in process: ``tests/integration/test_emulator.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.support.emulated import Sink, control
from tests.support.redis_server import free_port
from tests.support.stack import start_emulator_process


def test_command_line_emulator_serves_and_stops(sink: Sink, tmp_path: Path) -> None:
    """``python -m agora_emulator`` with the contract's flags serves the REST API and stops on SIGTERM."""
    process, url = start_emulator_process(
        tmp_path,
        "--notify-url", sink.url, "--ncs-secret", "s3cret", "--app-id", "cli-app", "--customer-id", "cid",
        "--customer-secret", "csecret", "--time-scale", "0.02",
        "--fault", "backup", "--fault", "slow:endpoint=start,delay=3,times=1",
    )  # fmt: skip
    try:
        answer = requests.post(
            f"{url}/v1/apps/cli-app/cloud_recording/acquire",
            json={"cname": "c", "uid": "1"},
            auth=("cid", "csecret"),
            timeout=5,
        )
        assert answer.status_code == 200 and answer.json()["resourceId"]
        faults = control(url, "GET", "faults")["faults"]
        assert [(f["kind"], f.get("endpoint"), f.get("delay"), f["times"]) for f in faults] == [
            ("backup", None, None, None),
            ("slow", "start", 3, 1),
        ]
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_quota_limits_from_the_command_line() -> None:
    """--max-recorders / --max-web-recorders reach the Config; defaults are Agora's 50 and 200; negative is refused."""
    from agora_emulator.__main__ import parse_args

    assert (parse_args([]).max_recorders, parse_args([]).max_web_recorders) == (50, 200)
    args = parse_args(["--max-recorders", "3", "--max-web-recorders", "0"])
    assert (args.max_recorders, args.max_web_recorders) == (3, 0)
    command = [sys.executable, "-m", "agora_emulator", "--port", str(free_port()), "--max-recorders", "-1"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "max_recorders" in refused.stderr
